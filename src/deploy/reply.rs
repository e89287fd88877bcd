//! What the host answers, as types: the host worker's reports
//! (python/deploy_host.py `plan`, `apply`, `verify`, and its error), and
//! the reports of the host's own jarvisctl that deploy reads (`status
//! --json`, `venv adopt --json`, `venv build --json`). Every field has a
//! default: a host that leaves one out (an older worker, no code root
//! yet) reads as "none".

use serde::{Deserialize, Serialize};

use super::shell::sh_quote;

/// The worker's plan (and `apply`'s result, which has the same lists):
/// what moving the live code from one manifest to another does. Its
/// fields are in the order the `--json` summary has always printed them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Plan {
    /// Files already there with the shipped content, shipped by no deploy.
    pub adopted: Vec<String>,
    pub conflicts: Vec<Conflict>,
    pub delete: Vec<String>,
    /// Files with the right content but the wrong mode or owner.
    pub fix: Vec<String>,
    /// Files an earlier deploy shipped that changed on the host since.
    pub kept_changed: Vec<String>,
    pub mkdir: Vec<String>,
    pub put: Vec<String>,
    pub replace: Vec<String>,
    pub rmdir: Vec<String>,
    pub same: Vec<String>,
    pub taken_over: Vec<String>,
    /// Files no manifest lists: never touched.
    pub unshipped: u64,
    /// The host stopped counting them.
    pub unshipped_at_least: bool,
}

/// A shipped path that something else holds on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conflict {
    pub path: String,
    pub why: String,
}

impl Plan {
    /// One line per conflict, with the way out.
    pub fn conflict_lines(&self) -> Vec<String> {
        self.conflicts
            .iter()
            .map(|c| {
                format!(
                    "{}: {}; move it away, or take it over with --take-over {}",
                    c.path,
                    c.why,
                    sh_quote(&c.path)
                )
            })
            .collect()
    }

    /// The count of unshipped files; "N+" when the host stopped counting.
    pub fn unshipped_text(&self) -> String {
        if self.unshipped_at_least {
            format!("{}+", self.unshipped)
        } else {
            self.unshipped.to_string()
        }
    }
}

/// The worker's `verify` of a deploy's store against its manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Verify {
    /// The first 50 paths that differ.
    pub bad: Vec<String>,
    pub n_bad: u64,
}

/// The worker's report when it failed (exit 2).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WorkerError {
    pub error: Option<String>,
}

/// The part of the host's `jarvisctl status --json` the health wait reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Status {
    pub verdict: Option<String>,
    pub state: Option<String>,
    pub main_pid: Option<u64>,
    pub reasons: Vec<String>,
    pub errors: Vec<String>,
}

impl Status {
    pub fn is(&self, state: &str) -> bool {
        self.state.as_deref() == Some(state)
    }

    pub fn healthy(&self) -> bool {
        self.verdict.as_deref() == Some("OK") && self.is("active")
    }

    /// "state S, verdict V (reasons)".
    pub fn describe(&self) -> String {
        let mut s = format!(
            "state {}, verdict {}",
            self.state.as_deref().unwrap_or("?"),
            self.verdict.as_deref().unwrap_or("?")
        );
        if !self.reasons.is_empty() {
            s.push_str(&format!(" ({})", self.reasons.join("; ")));
        }
        s
    }

    /// The last error line that status found (values of .env masked by
    /// status itself), as "; last error: ...".
    pub fn last_error(&self) -> String {
        self.errors
            .last()
            .map(|l| format!("; last error: {}", l.trim()))
            .unwrap_or_default()
    }
}

/// `jarvisctl venv adopt --json`: the environment in use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Adopted {
    pub venv: Option<String>,
}

/// `jarvisctl venv build --json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Built {
    pub ok: bool,
    pub venv: Option<String>,
    /// The requirement that failed, if one did.
    pub requirement: Option<String>,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_without_a_code_root_reads_with_empty_lists() {
        let p: Plan =
            serde_json::from_str(r#"{"put": ["a.py"], "mkdir": ["bots"], "conflicts": [], "unshipped": 0}"#)
                .unwrap();
        assert_eq!(p.put, ["a.py"]);
        assert!(p.replace.is_empty() && !p.unshipped_at_least);
        let c: Plan = serde_json::from_str(
            r#"{"conflicts": [{"path": "x y", "why": "a file that no deploy shipped is there"}], "unshipped": 3, "unshipped_at_least": true}"#,
        )
        .unwrap();
        assert_eq!(
            c.conflict_lines(),
            ["x y: a file that no deploy shipped is there; move it away, or take it over with --take-over 'x y'"]
        );
        assert_eq!(c.unshipped_text(), "3+");
    }

    #[test]
    fn a_status_report_says_state_verdict_reasons_and_last_error() {
        let s: Status = serde_json::from_str(
            r#"{"verdict": "CRITICAL", "state": "failed", "main_pid": null, "reasons": ["a", "b"], "errors": ["x", " boom "]}"#,
        )
        .unwrap();
        assert!(!s.healthy() && s.is("failed"));
        assert_eq!(s.describe(), "state failed, verdict CRITICAL (a; b)");
        assert_eq!(s.last_error(), "; last error: boom");
    }
}
