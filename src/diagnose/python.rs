//! The interpreter that runs the bot, and the requirements installed in it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::Fixes;
use crate::interpreter::{Interpreter, Source};
use crate::provision::Account;
use crate::report::{self, Finding};
use jarvis_model::paths::Paths;

/// How long the interpreter has to tell its version (it takes tens of
/// milliseconds), and what is kept of its answer.
const PYTHON_LIMITS: crate::runner::Limits = crate::runner::Limits {
    deadline: std::time::Duration::from_secs(5),
    keep: 4 << 10,
};

/// How long the interpreter has to list its packages against
/// requirements.txt, and what is kept of its JSON report.
const REQUIREMENTS_LIMITS: crate::runner::Limits = crate::runner::Limits {
    deadline: std::time::Duration::from_secs(30),
    keep: 4 << 20,
};

/// The interpreter exists and runs, and is 3.11 or newer. It runs as the
/// service user, even in a root `check`: a venv's interpreter is theirs to
/// write. Fast enough for the preflight (`-I -S`: no site packages).
pub(super) fn check_python(
    paths: &Paths,
    interp: &Interpreter,
    account: Option<&Account>,
    fixes: &Fixes,
) -> Finding {
    let host = paths.host(&interp.path);
    let shown = interp.path.display();
    let why = interp.source.describe();
    let executable = std::fs::metadata(&host).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0);
    if !executable {
        return Finding::fail(
            "python",
            format!("the interpreter {shown} is missing ({why}): the start fails with 203/EXEC"),
            match interp.source {
                Source::Venv => fixes.venv_build(""),
                _ => "sudo apt install python3 (3.11 or newer)".to_string(),
            },
        );
    }
    let Some(mut cmd) = account.and_then(|a| crate::interpreter::as_service_user(a, &host)) else {
        return Finding::warn(
            "python",
            format!("{shown} ({why}) is present; not run: only root or the service user may run it"),
            "run check as root",
        );
    };
    cmd.args([
        "-I",
        "-S",
        "-c",
        "import sys; print('%d.%d' % sys.version_info[:2])",
    ])
    .env_clear();
    let out = crate::runner::run(cmd, b"", PYTHON_LIMITS).ok();
    if out.as_ref().is_some_and(|o| o.timed_out()) {
        return Finding::fail(
            "python",
            format!(
                "{shown} ({why}) did not tell its version within {} s and was killed: the start would hang",
                PYTHON_LIMITS.deadline.as_secs()
            ),
            format!("rebuild the environment: {}", fixes.venv_build("")),
        );
    }
    let version = out
        .filter(|o| o.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let parsed = version.as_deref().and_then(|v| {
        let (a, b) = v.split_once('.')?;
        Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?))
    });
    match parsed {
        Some(v) if v >= (3, 11) => {
            Finding::pass("python", format!("{shown} is Python {}.{} ({why})", v.0, v.1))
        }
        Some(v) => Finding::fail(
            "python",
            format!(
                "{shown} is Python {}.{} ({why}): the bot needs 3.11 or newer (asyncio.timeout)",
                v.0, v.1
            ),
            format!(
                "install Python 3.11+ and build the environment with it: {}",
                fixes.venv_build(" --python /usr/bin/python3.11")
            ),
        ),
        None => Finding::fail(
            "python",
            format!("{shown} ({why}) did not run: the start would fail"),
            format!("rebuild the environment: {}", fixes.venv_build("")),
        ),
    }
}

/// Every requirement of `requirements.txt` is installed in the interpreter
/// that runs the bot, at a version that satisfies it, its markers evaluated
/// by that interpreter, which runs as the service user. One finding per
/// missing or mismatched requirement; the rest summed up.
pub(super) fn check_requirements(
    paths: &Paths,
    code_root: &Path,
    interp: &Interpreter,
    account: Option<&Account>,
    fixes: &Fixes,
) -> Vec<Finding> {
    let file = code_root.join("requirements.txt");
    let shown = file.display();
    let bytes = match jarvis_model::untrusted::read(&paths.host(&file), None, 1 << 20) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            return vec![Finding::fail(
                "requirements",
                format!("cannot read {shown}: {e}"),
                "make it a regular file of the code, as deploy ships it",
            )]
        }
    };
    let python = interp.path.display();
    let report = account
        .and_then(|a| crate::interpreter::as_service_user(a, &paths.host(&interp.path)))
        .and_then(|mut cmd| {
            crate::python::isolated(&mut cmd, crate::python::REQUIREMENTS_READER)
                .env_clear()
                .env("LANG", "C.UTF-8");
            crate::runner::run(cmd, &bytes, REQUIREMENTS_LIMITS).ok()
        });
    let answer = report
        .as_ref()
        .filter(|o| !o.timed_out())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    let Some(report) = answer else {
        let why = match report {
            Some(o) if o.timed_out() => format!(
                "it did not answer within {} s and was killed",
                REQUIREMENTS_LIMITS.deadline.as_secs()
            ),
            _ => "it gave no report".to_string(),
        };
        return vec![Finding::warn(
            "requirements",
            format!("could not list the packages installed in {python} ({why})"),
            format!("rebuild the environment: {}", fixes.venv_build("")),
        )];
    };
    if let Some(e) = report["error"].as_str() {
        return vec![Finding::warn(
            "requirements",
            format!(
                "cannot check {shown} against {python}: {}",
                crate::output::printable(e)
            ),
            format!("build the environment, which has pip: {}", fixes.venv_build("")),
        )];
    }
    let mut out = Vec::new();
    let (mut ok, mut skipped) = (0, Vec::new());
    let word = |v: &serde_json::Value, k: &str| crate::output::printable(v[k].as_str().unwrap_or(""));
    for r in report["results"].as_array().into_iter().flatten() {
        let line = r["line"].as_u64().unwrap_or(0) as usize;
        let (name, spec) = (word(r, "name"), word(r, "spec"));
        match r["kind"].as_str().unwrap_or("") {
            "ok" => ok += 1,
            "skipped" => skipped.push(name),
            "missing" => out.push(
                Finding::fail(
                    "requirements",
                    format!("{name}{spec} ({shown} line {line}) is not installed in {python}: the components that import it crash"),
                    fixes.venv_build(""),
                )
                .at(line, None),
            ),
            "mismatch" => out.push(
                Finding::fail(
                    "requirements",
                    format!(
                        "{name} {} is installed in {python}; {shown} line {line} wants {spec}",
                        word(r, "installed")
                    ),
                    fixes.venv_build(""),
                )
                .at(line, None),
            ),
            "invalid" => out.push(
                Finding::warn(
                    "requirements",
                    format!("{shown} line {line} is not a requirement pip can read"),
                    format!("correct line {line} of {shown}"),
                )
                .at(line, None),
            ),
            _ => {}
        }
    }
    if out.iter().all(|f| f.level != report::Level::Fail) {
        out.push(Finding::pass(
            "requirements",
            format!("{ok} requirement(s) of {shown} installed in {python}"),
        ));
    }
    if !skipped.is_empty() {
        out.push(Finding::pass(
            "requirements",
            format!("skipped, their markers exclude this host: {}", skipped.join(", ")),
        ));
    }
    out
}
