//! The deploy's syntax check (issue 28), on each host: after the code is
//! staged in the deploy's store and before anything live changes, the .py
//! files the deploy writes (on a first deploy, all of them) are compiled
//! in memory by the interpreter that will run the bot there, as the
//! service user (the worker's `compile`). Only the host's interpreter can
//! say what its Python accepts; an unchanged file was checked when it was
//! deployed.
//!
//! A file that does not compile is run when the unit starts it or when
//! some .py file of the tree imports it (its module's last name component
//! among the names imported, in doubt run): that refuses the host. Any
//! other is a warning: a broken example that nothing imports does not
//! block a deploy.

use super::error::DeployError;
use super::probe::Facts;
use super::reply::{Broken, Compiled, Plan};
use super::session::{BotPython, EntryPoint};
use crate::interpreter::{launcher_args, SYSTEM};
use jarvis_model::manifest::Manifest;

/// The interpreter that runs the bot after this deploy, and the file the
/// unit starts. `python`: the deploy's `--python`, which builds the venv
/// the launcher then picks, when this deploy builds one.
pub fn bot_python(f: &Facts, python: Option<&str>) -> (BotPython, Option<EntryPoint>) {
    let exec = &f.exec_start;
    if let Some(args) = launcher_args(exec) {
        let chosen = python.map_or(BotPython::Launcher, |p| BotPython::Path(p.to_string()));
        return (chosen, entry(args, &f.code_dir));
    }
    let mut words = exec.iter().map(String::as_str).peekable();
    let mut first = words.next().unwrap_or("");
    // `/usr/bin/env [VAR=x]... python3 ARGS`.
    if first.rsplit('/').next() == Some("env") {
        while words
            .peek()
            .is_some_and(|w| w.contains('=') || w.starts_with('-'))
        {
            words.next();
        }
        first = words.next().unwrap_or("");
    }
    let rest: Vec<String> = words.map(String::from).collect();
    if first.rsplit('/').next().is_some_and(|n| n.starts_with("python")) {
        (BotPython::Path(first.to_string()), entry(&rest, &f.code_dir))
    } else {
        // A wrapper (a shell script): its interpreter is unknown.
        (BotPython::Path(SYSTEM.to_string()), None)
    }
}

/// The script or `-m` module among an interpreter's arguments, relative
/// to the code root; None for `-c` or a script outside the tree.
fn entry(args: &[String], code_dir: &str) -> Option<EntryPoint> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-m" => return it.next().map(|m| EntryPoint::Module(m.clone())),
            "-c" => return None,
            "-X" | "-W" => {
                it.next();
            }
            s if s.starts_with("-m") => return Some(EntryPoint::Module(s[2..].to_string())),
            s if s.starts_with('-') => {}
            s => {
                let rel = match s.strip_prefix('/') {
                    Some(_) => s.strip_prefix(&format!("{}/", code_dir.trim_end_matches('/')))?,
                    None => s,
                };
                return Some(EntryPoint::Script(rel.trim_start_matches("./").to_string()));
            }
        }
    }
    None
}

/// The .py files this deploy writes: the new, replaced and taken-over
/// ones of the swap's plan; on a first deploy, every one it ships.
pub fn changed(plan: &Plan, first: bool, manifest: &Manifest) -> Vec<String> {
    let py = |p: &&String| p.ends_with(".py");
    if first {
        return manifest
            .files()
            .map(|e| e.path.clone())
            .filter(|p| p.ends_with(".py"))
            .collect();
    }
    let mut files: Vec<String> = plan
        .put
        .iter()
        .chain(&plan.replace)
        .chain(&plan.taken_over)
        .filter(py)
        .cloned()
        .collect();
    files.sort();
    files.dedup();
    files
}

/// The interpreter as the host's report names it: `PATH (Python V)`.
pub fn interpreter(c: &Compiled) -> String {
    format!("{} (Python {})", c.python, c.version.as_deref().unwrap_or("?"))
}

fn at(b: &Broken) -> String {
    match b.line {
        Some(n) => format!("{} line {n}", b.path),
        None => b.path.clone(),
    }
}

/// The verdict on the host's report: the warnings (files not run that do
/// not compile, an interpreter other than the bot's), or the refusal when
/// a file the bot runs does not compile.
pub fn verdict(host: &str, c: &Compiled) -> Result<Vec<String>, DeployError> {
    let run: Vec<&Broken> = c.broken.iter().filter(|b| b.run).collect();
    if !run.is_empty() {
        return Err(DeployError::DoesNotCompile {
            host: host.to_string(),
            python: interpreter(c),
            files: run
                .iter()
                .map(|b| format!("{}: {} (run: {})", at(b), b.error, b.why))
                .collect(),
        });
    }
    let mut warnings: Vec<String> = c.note.iter().cloned().collect();
    warnings.extend(c.broken.iter().map(|b| {
        format!(
            "{} does not compile with {}: {}; deployed all the same: {}",
            at(b),
            interpreter(c),
            b.error,
            b.why
        )
    }));
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(exec: &str) -> Facts {
        Facts {
            code_dir: "/home/jarvis/Jarvis".into(),
            exec_start: exec.split_whitespace().map(String::from).collect(),
            ..Facts::default()
        }
    }

    #[test]
    fn the_units_interpreter_and_entry_point_are_the_ones_checked() {
        let script = |s: &str| Some(EntryPoint::Script(s.into()));
        let path = |s: &str| BotPython::Path(s.into());
        let cases = [
            (
                "/usr/bin/jarvisctl venv exec -- /home/jarvis/Jarvis/bots/supervisor.py",
                (BotPython::Launcher, script("bots/supervisor.py")),
            ),
            (
                "/home/jarvis/Jarvis/venv/bin/python -u bots/supervisor.py --x",
                (
                    path("/home/jarvis/Jarvis/venv/bin/python"),
                    script("bots/supervisor.py"),
                ),
            ),
            (
                "/usr/bin/python3.12 -X dev -m bots.supervisor",
                (
                    path("/usr/bin/python3.12"),
                    Some(EntryPoint::Module("bots.supervisor".into())),
                ),
            ),
            (
                "/usr/bin/env PYTHONPATH=/x python3 ./bots/gw/a_telegram_bot.py",
                (path("python3"), script("bots/gw/a_telegram_bot.py")),
            ),
            (
                "/usr/bin/python3 /opt/other/run.py",
                (path("/usr/bin/python3"), None),
            ),
            ("/bin/sh -c run.sh", (path(SYSTEM), None)),
        ];
        for (exec, want) in cases {
            assert_eq!(bot_python(&facts(exec), None), want, "{exec}");
        }
        // A deploy that builds the venv with --python: the launcher picks it.
        let f = facts("/usr/bin/jarvisctl venv exec -- /home/jarvis/Jarvis/bots/supervisor.py");
        assert_eq!(bot_python(&f, Some("python3.12")).0, path("python3.12"));
    }

    #[test]
    fn only_the_py_files_the_deploy_writes_are_checked_all_on_a_first_deploy() {
        let d = tempfile::tempdir().unwrap();
        for f in ["a.py", "b.py", "c.txt"] {
            std::fs::write(d.path().join(f), "x = 1\n").unwrap();
        }
        let m = Manifest::build(d.path()).unwrap();
        let plan = Plan {
            put: vec!["n.py".into(), "n.txt".into()],
            replace: vec!["a.py".into()],
            same: vec!["b.py".into()],
            ..Plan::default()
        };
        assert_eq!(changed(&plan, false, &m), ["a.py", "n.py"]);
        assert_eq!(changed(&plan, true, &m), ["a.py", "b.py"]);
    }
}
