//! Findings of `check` and `env lint`: one line each for people, or JSON,
//! and the exit code. A finding never carries a secret value.

use serde::Serialize;

use crate::output::{printable, Style};
use jarvis_model::error::exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    /// Kept for the JSON schema: `level != fail`.
    pub ok: bool,
    pub found: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The instance it is about, when a host has several (`check`): its
    /// line starts with `[NAME]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

impl Finding {
    pub fn pass(check: &'static str, found: impl Into<String>) -> Self {
        Finding {
            check,
            level: Level::Pass,
            ok: true,
            found: found.into(),
            fix: None,
            line: None,
            key: None,
            instance: None,
        }
    }

    pub fn warn(check: &'static str, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            level: Level::Warn,
            fix: Some(fix.into()),
            ..Finding::pass(check, found)
        }
    }

    pub fn fail(check: &'static str, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            level: Level::Fail,
            ok: false,
            fix: Some(fix.into()),
            ..Finding::pass(check, found)
        }
    }

    pub fn of(mut self, instance: &jarvis_model::instance::Instance) -> Self {
        self.instance = Some(instance.to_string());
        self
    }

    pub fn at(mut self, line: usize, key: Option<String>) -> Self {
        self.line = Some(line);
        self.key = key;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Every finding.
    All,
    /// Only warnings and failures (the unit's preflight, in the journal).
    Problems,
    /// Nothing.
    Quiet,
    Json,
}

/// Print `findings` and return the exit code: 1 when any failed.
pub fn emit(findings: &[Finding], show: Show) -> i32 {
    let ok = findings.iter().all(|f| f.level != Level::Fail);
    match show {
        Show::Json => println!("{}", serde_json::json!({ "ok": ok, "checks": findings })),
        Show::Quiet => {}
        Show::All | Show::Problems => {
            let style = Style::stdout();
            for f in findings {
                if show == Show::Problems && f.level == Level::Pass {
                    continue;
                }
                let mark = match f.level {
                    Level::Pass => style.pass(),
                    Level::Warn => style.warn(),
                    Level::Fail => style.fail(),
                };
                // A finding may quote a file's name or a program's answer.
                let (check, found) = (f.check, printable(&f.found));
                let check = match &f.instance {
                    Some(i) => format!("[{i}] {check}"),
                    None => check.to_string(),
                };
                match (&f.fix, f.level) {
                    (Some(fix), Level::Warn | Level::Fail) => {
                        println!("{mark} {check}: {found} — fix: {}", printable(fix))
                    }
                    _ => println!("{mark} {check}: {found}"),
                }
            }
        }
    }
    if ok {
        exit::OK
    } else {
        exit::FAILURE
    }
}
