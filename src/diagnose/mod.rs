//! Every known reason the service would not start, each as a finding with
//! what was found and the command that fixes it: the unit and its user, the
//! code root's paths, the interpreter and the requirements, the
//! environment files, the host (disk, the unit's syntax, logrotate), and
//! what systemd recorded of the last runs. `jarvisctl check` prints them;
//! the preflight (`--preflight`) is the fast, certain part of them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::envcheck::EnvCheck;
use crate::envrules;
use crate::provision::{self, Account, DIR_MODE};
use crate::report::{self, Finding};
use crate::systemd;
pub(crate) use fixes::Fixes;
use host::{check_disk, check_logrotate, check_verify};
use jarvis_model::instance::Instance;
use jarvis_model::paths::{Paths, PREFLIGHT_FAILED};
use jarvis_model::unit::Unit;
use last_run::{check_history, check_last_run};
use python::{check_python, check_requirements};

mod fixes;
mod host;
mod last_run;
mod python;

/// only the restart; the backoff step of the next start repeats these lines
/// while it waits (see `backoff`). Kept in the unit's runtime directory.
pub fn remember_for_backoff(findings: &[Finding]) {
    let Some(dir) = systemd::runtime_directory() else {
        return;
    };
    let path = dir.join(PREFLIGHT_FAILED);
    let failed: Vec<String> = findings
        .iter()
        .filter(|f| f.level == report::Level::Fail)
        .map(|f| {
            format!(
                "✗ {}: {} — fix: {}",
                f.check,
                f.found,
                f.fix.as_deref().unwrap_or("")
            )
        })
        .collect();
    if failed.is_empty() {
        let _ = std::fs::remove_file(path);
    } else {
        let _ = std::fs::write(path, failed.join("\n") + "\n");
    }
}

/// The findings for `instance`, whose unit is `unit`. The host's own
/// checks (systemd's version, the package's logrotate snippet) and the
/// code's drift from the deploy in effect are the default instance's: a
/// deploy ships the default's code root.
pub fn checks(
    paths: &Paths,
    instance: &Instance,
    unit: &Unit,
    rules: &[envrules::Rule],
    preflight: bool,
) -> Vec<Finding> {
    let fixes = Fixes::new(instance, unit);
    let mut out = Vec::new();
    if let Some(m) = &unit.masked {
        out.push(Finding::fail(
            "unit",
            format!("{} masks the unit: systemd refuses every start", m.display()),
            format!("sudo systemctl unmask {}", fixes.unit()),
        ));
    }
    for w in &unit.warnings {
        out.push(Finding::warn(
            "unit",
            w.clone(),
            "fix or remove the line: KEY=VALUE under a [Section]",
        ));
    }
    let user = unit.user();
    let group = unit.group().unwrap_or_else(|| user.clone());
    let account = Account::lookup(&user, &group);
    match &account {
        Some(a) => out.push(Finding::pass(
            "user",
            format!("{user} exists (uid {}, group {group})", a.uid),
        )),
        None => out.push(Finding::fail(
            "user",
            format!("user {user} does not exist: the start fails with 217/USER"),
            fixes.provision(),
        )),
    }
    let code_root = unit
        .working_directory()
        .map(|w| w.path)
        .unwrap_or_else(|| PathBuf::from("/"));
    out.extend(check_paths(paths, unit, account.as_ref(), &code_root, &fixes));

    let exec = unit.exec_start();
    if let Some(script) = exec.iter().skip(1).find(|w| w.ends_with(".py")) {
        let script = code_root.join(script);
        if paths.host(&script).is_file() {
            out.push(Finding::pass("code", format!("{} is present", script.display())));
        } else {
            let fix = match instance {
                Instance::Default => format!(
                    // As root: the service user has no login shell.
                    "deploy the code: jarvisctl deploy --host root@HOST --code ./Jarvis, or rsync -a --chown={user}:{group} --exclude .env --exclude logs --exclude data ./Jarvis/ root@HOST:{}/",
                    code_root.display()
                ),
                // Deploy ships the default's code root.
                Instance::Named(_) => format!(
                    "put the instance's code there (as root): rsync -a --chown={user}:{group} --exclude .env --exclude logs --exclude data ./CODE/ root@HOST:{}/",
                    code_root.display()
                ),
            };
            out.push(Finding::fail(
                "code",
                format!("{} is missing", script.display()),
                fix,
            ));
        }
    }
    if let Some((chosen, _)) = crate::interpreter::of_unit(paths, unit) {
        match chosen {
            Ok(interp) => {
                let python = check_python(paths, &interp, account.as_ref(), &fixes);
                let runs = python.level == report::Level::Pass;
                out.push(python);
                if runs && !preflight {
                    out.extend(check_requirements(
                        paths,
                        &code_root,
                        &interp,
                        account.as_ref(),
                        &fixes,
                    ));
                }
            }
            Err(why) => out.push(Finding::fail("python", why.clone(), fixes.venv_build(""))),
        }
    }
    if !preflight && *instance == Instance::Default {
        out.extend(code_drift(paths, &code_root));
    }

    let version = systemd::version();
    let mut env_pythonpath = None;
    // Files outside the code root are root's server-wide settings
    // (/etc/default/jarvis-supervisor): linted the same, with no owner
    // rule, and what they set counts for the required variables of the
    // files after them (.env, which wins on a clash).
    let mut inherited = jarvis_model::envfile::Parsed::default();
    for env in unit.environment_files() {
        let host = paths.host(&env.path);
        let root_file = !env.path.starts_with(&code_root);
        if env.optional && !host.exists() && (rules.is_empty() || root_file) {
            continue;
        }
        let check = EnvCheck {
            account: if root_file { None } else { account.as_ref() },
            rules: if root_file { &[] } else { rules },
            systemd: version.unwrap_or(u32::MAX),
            inherited: Some(&inherited),
        };
        let (found, parsed) = check.run(&env.path, &host);
        out.extend(found);
        if let Some(p) = parsed {
            if let Some(v) = p.get("PYTHONPATH") {
                env_pythonpath = Some(v.to_string());
            }
            inherited.vars.extend(p.vars);
        }
    }
    out.push(check_pythonpath(
        unit,
        &code_root,
        env_pythonpath.as_deref(),
        &fixes,
    ));

    if preflight {
        return out;
    }
    out.push(check_disk(paths, unit, &code_root));
    if paths.is_system() {
        let default = *instance == Instance::Default;
        if default {
            match version {
                Some(v) => out.push(Finding::pass("systemd", systemd::meaning(v))),
                None => out.push(Finding::warn(
                    "systemd",
                    "systemctl not found: this host has no systemd",
                    "run the bot with the fallback engine: jarvisctl run --daemon",
                )),
            }
        }
        out.push(check_verify(instance));
        if default {
            out.push(check_logrotate(paths));
        }
        if systemd::running() {
            if let Some(f) = check_last_run(&fixes) {
                out.push(f);
            }
            out.extend(check_history(&fixes));
        }
    }
    out
}

fn check_paths(
    paths: &Paths,
    unit: &Unit,
    account: Option<&Account>,
    code_root: &Path,
    fixes: &Fixes,
) -> Vec<Finding> {
    let user = unit.user();
    let group = unit.group().unwrap_or_else(|| user.clone());
    let mut out = Vec::new();
    if !paths.host(code_root).is_dir() {
        out.push(Finding::fail(
            "path",
            format!(
                "{} (WorkingDirectory=) is missing: the bot cannot start (200/CHDIR)",
                code_root.display()
            ),
            fixes.code_root(code_root, &user, &group),
        ));
    }
    for rw in unit.read_write_paths().into_iter().filter(|p| !p.optional) {
        let host = paths.host(&rw.path);
        let shown = rw.path.display();
        let Ok(m) = std::fs::metadata(&host) else {
            out.push(Finding::fail(
                "path",
                format!("{shown} (ReadWritePaths=) is missing: the bot cannot start (226/NAMESPACE)"),
                fixes.directory(&rw.path, &user, &group),
            ));
            continue;
        };
        let Some(acct) = account else { continue };
        if !provision::is_managed(&rw.path, Some(code_root), &acct.home) {
            continue; // /tmp and the like: existing is enough
        }
        let mode = m.mode() & 0o7777;
        let shared_root = *fixes.instance() != Instance::Default && rw.path == code_root;
        if shared_root && (m.uid() != acct.uid || mode & 0o200 == 0) {
            // A named instance's ReadWritePaths= is its whole code root, and
            // a tree several instances share stays root's: its user writes
            // where the tree lets it, which is not a fault in itself.
            out.push(Finding::warn(
                "path",
                format!(
                    "{shown} (the code root) is not writable by {} (owner uid {}, mode {mode:04o}): the bot can write only where the tree lets its user",
                    acct.user,
                    m.uid()
                ),
                format!(
                    "if this instance alone runs from it and writes there: sudo chown {user}:{group} {shown}; a tree several instances share stays root's"
                ),
            ));
        } else if m.uid() != acct.uid || mode & 0o200 == 0 {
            out.push(Finding::fail(
                "path",
                format!("{shown} is not writable by {} (owner uid {}, mode {mode:04o}): the bot fails with EACCES", acct.user, m.uid()),
                fixes.directory(&rw.path, &user, &group),
            ));
        } else if mode != DIR_MODE {
            out.push(Finding::warn(
                "path",
                format!("{shown} has mode {mode:04o}, not {DIR_MODE:04o}"),
                fixes.directory(&rw.path, &user, &group),
            ));
        } else {
            out.push(Finding::pass(
                "path",
                format!("{shown} is {}'s, mode {mode:04o}", acct.user),
            ));
        }
    }
    out
}

fn check_pythonpath(unit: &Unit, code_root: &Path, from_env: Option<&str>, fixes: &Fixes) -> Finding {
    // EnvironmentFile= wins over Environment=, as in systemd.
    let from_unit = unit
        .words("Service", "Environment")
        .into_iter()
        .filter_map(|w| w.strip_prefix("PYTHONPATH=").map(str::to_string))
        .next_back();
    let value = from_env.map(str::to_string).or(from_unit);
    let root = code_root.to_string_lossy();
    let ok = value.as_deref().is_some_and(|v| {
        v.split(':')
            .any(|p| p.trim_end_matches('/') == root.trim_end_matches('/'))
    });
    if ok {
        Finding::pass("pythonpath", format!("PYTHONPATH includes {root}"))
    } else {
        Finding::fail(
            "pythonpath",
            format!("PYTHONPATH does not include {root}: the bot fails with ModuleNotFoundError: No module named 'core'"),
            format!(
                "set Environment=PYTHONPATH={root} (systemctl edit {}), and no other PYTHONPATH in .env",
                fixes.unit()
            ),
        )
    }
}

/// Shipped files that changed on the host since the deploy in effect, and
/// importable code that no deploy shipped, one finding each (the first
/// 20). Not in the preflight: it reads every shipped file.
fn code_drift(paths: &Paths, code_root: &Path) -> Vec<Finding> {
    use crate::drift::What;
    // A deploy cut off mid-swap: named as such, not as changed files.
    let unsettled = crate::deploy::settle::scan(paths);
    let lines = unsettled.describe();
    if !lines.is_empty() {
        return lines
            .into_iter()
            .map(|l| {
                let (what, fix) = l.split_once("; ").unwrap_or((l.as_str(), ""));
                Finding::fail("deploy", what.to_string(), fix.to_string())
            })
            .collect();
    }
    let Some(d) = crate::drift::check(paths, code_root) else {
        return Vec::new();
    };
    if d.changed.is_empty() {
        return vec![Finding::pass(
            "code",
            format!(
                "the {} shipped file(s) are as deploy {} shipped them, and no importable file that it did not ship is in the code",
                d.files, d.deploy
            ),
        )];
    }
    let restore = format!(
        "if not on purpose, restore them: jarvisctl deploy --rollback --to {} (from your workstation); \
         if on purpose, ship the change with your code",
        d.deploy
    );
    let fix = |c: &crate::drift::Changed| match c.what {
        What::Unshipped => format!(
            "Python can import it in place of shipped code; the bot writes no byte code \
             (PYTHONDONTWRITEBYTECODE=1), so it was put there: left from an install by hand, \
             or planted (then treat the bot's account as compromised). \
             Look at it, then remove it: sudo rm -r -- '{}/{}'",
            code_root.display(),
            c.path
        ),
        What::Unsearched => {
            "move what is not code out of the code root (or flatten it), so that it can be searched".into()
        }
        _ => restore.clone(),
    };
    let mut out: Vec<Finding> = d
        .changed
        .iter()
        .take(20)
        .map(|c| {
            let since = match c.what {
                What::Unshipped | What::Unsearched => format!("(deploy in effect: {})", d.deploy),
                _ => format!("since deploy {}", d.deploy),
            };
            Finding::warn(
                "code",
                format!("{}/{} {} {since}", code_root.display(), c.path, c.what.as_str()),
                fix(c),
            )
        })
        .collect();
    let more = d.changed.len().saturating_sub(20) + d.unshipped_more;
    if more > 0 {
        out.push(Finding::warn(
            "code",
            format!("and {more} more changed or unshipped file(s) in the code"),
            "run jarvisctl check again once the ones above are dealt with",
        ));
    }
    out
}
