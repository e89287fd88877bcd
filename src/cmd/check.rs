//! `jarvisctl check`: can the service start? Each check prints one line
//! with what it found and the command that fixes it. The postinst starts the
//! service only when every check passes.

use std::path::Path;

use serde::Serialize;

use crate::cli::CheckArgs;
use crate::error::{exit, Result};
use crate::output::Style;
use crate::paths::Paths;
use crate::provision::Account;
use crate::unit::Unit;

#[derive(Debug, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub ok: bool,
    pub found: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

pub fn run(paths: &Paths, args: &CheckArgs) -> Result<i32> {
    let unit = Unit::load(paths)?;
    let findings = checks(paths, &unit);
    let ok = findings.iter().all(|f| f.ok);
    if args.json {
        println!("{}", serde_json::json!({ "ok": ok, "checks": findings }));
    } else if !args.quiet {
        let style = Style::stdout();
        for f in &findings {
            let mark = if f.ok { style.pass() } else { style.fail() };
            match &f.fix {
                Some(fix) if !f.ok => println!("{mark} {}: {} — fix: {fix}", f.check, f.found),
                _ => println!("{mark} {}: {}", f.check, f.found),
            }
        }
    }
    Ok(if ok { exit::OK } else { exit::FAILURE })
}

fn checks(paths: &Paths, unit: &Unit) -> Vec<Finding> {
    let user = unit.user();
    let group = unit.group().unwrap_or_else(|| user.clone());
    let mut out = Vec::new();

    out.push(match Account::lookup(&user, &group) {
        Some(a) => Finding {
            check: "user",
            ok: true,
            found: format!("{user} exists (uid {})", a.uid),
            fix: None,
        },
        None => Finding {
            check: "user",
            ok: false,
            found: format!("user {user} does not exist"),
            fix: Some("sudo jarvisctl setup".into()),
        },
    });

    let exec = unit.exec_start();
    let code_root = unit.working_directory().map(|w| w.path).unwrap_or_default();
    if let Some(script) = exec.iter().skip(1).find(|w| w.ends_with(".py")) {
        let script_path = code_root.join(script);
        let present = paths.host(&script_path).is_file();
        out.push(Finding {
            check: "code",
            ok: present,
            found: if present {
                format!("{} is present", script_path.display())
            } else {
                format!("{} is missing", script_path.display())
            },
            fix: Some(format!(
                "deploy the code as the service user: rsync -a --exclude .env --exclude logs --exclude data ./Jarvis/ {user}@<host>:{}/",
                code_root.display()
            )),
        });
    }

    for env in unit.environment_files().into_iter().filter(|e| !e.optional) {
        out.push(env_present(paths, &env.path, &user));
    }
    out
}

fn env_present(paths: &Paths, path: &Path, user: &str) -> Finding {
    let present = paths.host(path).is_file();
    Finding {
        check: "env",
        ok: present,
        found: if present {
            format!("{} is present", path.display())
        } else {
            format!("{} is missing (the unit would fail with status 237)", path.display())
        },
        fix: Some(format!(
            "sudo -u {user} install -m 600 /dev/null {p} && sudo -u {user} editor {p}  (set TELEGRAM_BOT_TOKEN and TELEGRAM_ADMIN_IDS)",
            p = path.display()
        )),
    }
}
