//! Which Python runs the bot. The shipped unit starts it through
//! `jarvisctl venv exec -- SCRIPT`, which picks `<code root>/venv/bin/python`
//! when that exists, else the system's `python3`, at every start. A venv
//! built by hand (the program's own guide does so) or by `jarvisctl venv
//! build` is used with no unit edit and no daemon-reload, and removing it
//! falls back at the next start. `check`, `status` and `run` ask this
//! module, so they agree with the launcher. An ExecStart= that names an
//! interpreter itself (an operator's drop-in) is taken as it is.
//!
//! Root never runs the venv's interpreter: the service user can write it.
//! Whoever needs it to run something (its version, its packages) goes
//! through `as_service_user`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::provision::Account;
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

/// The interpreter when the code root has no venv.
pub const SYSTEM: &str = "/usr/bin/python3";

/// The venv's interpreter, relative to the code root.
pub const VENV_PYTHON: &str = "venv/bin/python";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `<code root>/venv/bin/python`.
    Venv,
    /// The system's python3: the code root has no venv.
    System,
    /// ExecStart= names the interpreter itself.
    Unit,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Venv => "the code root's venv",
            Source::System => "the system's python3: the code root has no venv/bin/python",
            Source::Unit => "named by ExecStart=",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Interpreter {
    /// As the host sees it (not under `--root`).
    pub path: PathBuf,
    pub source: Source,
}

/// What `jarvisctl venv exec` picks in `code_root` (a host path): the venv's
/// interpreter when one is there, even a broken one (an error, never a
/// silent fall back to a python without the bot's packages).
pub fn choose(code_root: &Path) -> Result<Interpreter, String> {
    let venv = code_root.join(VENV_PYTHON);
    match std::fs::symlink_metadata(&venv) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Interpreter {
            path: PathBuf::from(SYSTEM),
            source: Source::System,
        }),
        _ => {
            use std::os::unix::fs::PermissionsExt;
            let runs =
                std::fs::metadata(&venv).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if runs {
                Ok(Interpreter {
                    path: venv,
                    source: Source::Venv,
                })
            } else {
                let target = std::fs::read_link(&venv)
                    .map(|t| format!(" (a link to {}, which is gone)", t.display()))
                    .unwrap_or_default();
                Err(format!(
                    "{} cannot run{target}: rebuild the environment with `sudo jarvisctl venv build`, or remove {} to use {SYSTEM}",
                    venv.display(),
                    code_root.join("venv").display()
                ))
            }
        }
    }
}

/// Whether the unit starts the bot through the launcher: `jarvisctl venv
/// exec -- ARGS`; the ARGS.
pub fn launcher_args(exec: &[String]) -> Option<&[String]> {
    let (first, rest) = exec.split_first()?;
    if !first.ends_with("/jarvisctl") || rest.len() < 2 || rest[0] != "venv" || rest[1] != "exec" {
        return None;
    }
    let rest = &rest[2..];
    Some(match rest.iter().position(|a| a == "--") {
        Some(i) => &rest[i + 1..],
        None => rest,
    })
}

/// The interpreter the unit runs on this host, as the launcher would pick
/// it now, and the script's arguments. Err: the venv's interpreter is
/// broken (the message says how to fix it).
pub fn of_unit(paths: &Paths, unit: &Unit) -> Option<(Result<Interpreter, String>, Vec<String>)> {
    let exec = unit.exec_start();
    if let Some(args) = launcher_args(&exec) {
        let code_root = unit.working_directory().map(|w| w.path)?;
        let chosen = choose(&paths.host(&code_root)).map(|i| Interpreter {
            // Shown as on the host, not as under --root.
            path: match i.source {
                Source::Venv => code_root.join(VENV_PYTHON),
                _ => i.path,
            },
            source: i.source,
        });
        return Some((chosen, args.to_vec()));
    }
    let (first, rest) = exec.split_first()?;
    Some((
        Ok(Interpreter {
            path: PathBuf::from(first),
            source: Source::Unit,
        }),
        rest.to_vec(),
    ))
}

/// A command that runs `program` as the service user, never as root: as
/// root through `jarvisctl exec-helper` (a new session, no inherited
/// descriptor, the service user's groups, no_new_privs); as the service
/// user itself, directly, in a process group of its own. None for anyone
/// else: they cannot. It starts in `/`, never in the caller's directory
/// (root's, which the program could read through); run it with
/// `runner::run`, which bounds its time and ends all it leaves behind.
pub fn as_service_user(acct: &Account, program: &Path) -> Option<Command> {
    use std::os::unix::process::CommandExt;
    let me = nix::unistd::geteuid().as_raw();
    if me == acct.uid {
        let mut c = Command::new(program);
        c.current_dir("/").process_group(0);
        return Some(c);
    }
    if me != 0 {
        return None;
    }
    let mut c = Command::new("/proc/self/exe");
    c.args(["exec-helper", "--no-new-privs", "--ppid"])
        .arg(std::process::id().to_string())
        .args([
            "--uid",
            &acct.uid.to_string(),
            "--gid",
            &acct.gid.to_string(),
            "--user",
            &acct.user,
        ])
        .arg("--")
        .arg(program)
        .current_dir("/");
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_launcher_is_recognised_and_its_script_found() {
        let w = words("/usr/bin/jarvisctl venv exec -- /c/bots/supervisor.py --x");
        assert_eq!(
            launcher_args(&w).unwrap(),
            &words("/c/bots/supervisor.py --x")[..]
        );
        assert!(launcher_args(&words("/usr/bin/python3 /c/bots/supervisor.py")).is_none());
        assert!(launcher_args(&words("/usr/bin/jarvisctl status")).is_none());
    }

    #[test]
    fn a_venv_wins_a_broken_one_is_an_error_none_is_the_system() {
        let d = tempfile::tempdir().unwrap();
        let i = choose(d.path()).unwrap();
        assert_eq!((i.source, i.path), (Source::System, PathBuf::from(SYSTEM)));
        std::fs::create_dir_all(d.path().join("venv/bin")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/python3.99", d.path().join(VENV_PYTHON)).unwrap();
        let e = choose(d.path()).unwrap_err();
        assert!(
            e.contains("python3.99, which is gone") && e.contains("venv build"),
            "{e}"
        );
        std::fs::remove_file(d.path().join(VENV_PYTHON)).unwrap();
        std::os::unix::fs::symlink("/bin/sh", d.path().join(VENV_PYTHON)).unwrap();
        assert_eq!(choose(d.path()).unwrap().source, Source::Venv);
    }
}
