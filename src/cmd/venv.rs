//! `jarvisctl venv`: the bot's Python environment, `venv/` in the code root.
//! `exec` is the unit's ExecStart= (see `interpreter` for why a launcher).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::interpreter;
use crate::output;
use crate::provision::Account;
use jarvis_cli::{VenvBuildArgs, VenvExecArgs, VenvRollbackArgs, VenvSwitchArgs};
use jarvis_model::error::{exit, Error, Result};
use jarvis_model::instance::Instance;
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

/// Picks the interpreter and becomes it: same pid, same environment, so
/// systemd's MainPID, NOTIFY_SOCKET and the watchdog carry over. Runs as
/// the service user (ExecStart=, or the engine after its privilege drop).
pub fn exec(paths: &Paths, args: &VenvExecArgs) -> Result<i32> {
    let code_root = match (&args.code_root, &args.instance) {
        (Some(d), _) => d.clone(),
        (None, Some(name)) => {
            let instance = Instance::from_arg(Some(name))?.made(paths)?;
            paths.host(&code_root_of(&Unit::load_named(paths, &instance.unit())?)?)
        }
        // A named instance's ExecStart= too: its unit sets the working
        // directory to its own code root.
        (None, None) => std::env::current_dir()
            .map_err(|e| Error::new(format!("cannot tell the working directory: {e}")))?,
    };
    let chosen = interpreter::choose(&code_root).map_err(Error::new)?;
    // -B as well as the unit's PYTHONDONTWRITEBYTECODE=1: the .env comes
    // later (EnvironmentFile= overrides Environment=) and may clear the
    // variable; the flag it cannot. Byte code the bot wrote would be run.
    let err = Command::new(&chosen.path)
        .arg0(&chosen.path)
        .arg("-B")
        .args(&args.args)
        .exec();
    Err(Error::new(format!("cannot run {}: {err}", chosen.path.display()))
        .with_note("install python3 (3.11 or newer), or build the environment: sudo jarvisctl venv build"))
}

fn code_root_of(unit: &Unit) -> Result<PathBuf> {
    unit.working_directory()
        .map(|w| w.path)
        .ok_or_else(|| Error::new("the unit has no WorkingDirectory=: no code root to build in"))
}

/// The instance a build, switch, rollback or adopt acts on: the one named,
/// else the default. On a host whose instances run from different code
/// roots, none named is refused with the list: acting on all would
/// rebuild every bot's environment at once.
fn instance(paths: &Paths, name: Option<&str>) -> Result<Instance> {
    if let Some(n) = name {
        return Instance::from_arg(Some(n))?.made(paths);
    }
    let named = Instance::installed(paths, false);
    if named.is_empty() {
        return Ok(Instance::Default);
    }
    let root = |i: &Instance| {
        Unit::load_named(paths, &i.unit())
            .ok()
            .and_then(|u| u.working_directory())
            .map(|w| w.path)
    };
    let all: Vec<(Instance, Option<PathBuf>)> = std::iter::once(Instance::Default)
        .chain(named.into_iter().map(Instance::Named))
        .map(|i| {
            let r = root(&i);
            (i, r)
        })
        .collect();
    if all.iter().all(|(_, r)| *r == all[0].1) {
        return Ok(Instance::Default);
    }
    let list: Vec<String> = all
        .iter()
        .map(|(i, r)| match r {
            Some(r) => format!("{i} ({})", r.display()),
            None => format!("{i} (no code root)"),
        })
        .collect();
    Err(Error::new(format!(
        "this host runs several instances: say which with --instance NAME: {}",
        list.join(", ")
    ))
    .with_note("each code root has an environment of its own, and venv changes one at a time: doing all at once would move every bot to a new environment together")
    .with_code(exit::USAGE))
}

/// The instance's code root, its host path and its service user, from its unit.
fn target(paths: &Paths, instance: &Instance) -> Result<(PathBuf, PathBuf, Account)> {
    let unit = Unit::load_named(paths, &instance.unit())?;
    let code_root = code_root_of(&unit)?;
    let user = unit.user();
    let group = unit.group().unwrap_or_else(|| user.clone());
    let acct = Account::lookup(&user, &group).ok_or_else(|| {
        let fix = match instance {
            Instance::Default => "sudo jarvisctl setup".to_string(),
            Instance::Named(n) => crate::instances::add_command(n, &unit, None, None),
        };
        Error::new(format!("the service user {user} does not exist")).with_note(fix)
    })?;
    Ok((paths.host(&code_root), code_root, acct))
}

/// How long a build may take (pip downloads and compiles), and what is
/// kept of the builder's output: its report is the last line.
const BUILD_LIMITS: crate::runner::Limits = crate::runner::Limits {
    deadline: std::time::Duration::from_secs(30 * 60),
    keep: 4 << 20,
};

/// How long a switch, rollback or adopt may take: a few renames.
const SWITCH_LIMITS: crate::runner::Limits = crate::runner::Limits {
    deadline: std::time::Duration::from_secs(60),
    keep: 1 << 20,
};

/// Runs the builder as the service user, `input` on its stdin, within
/// `limits`; its JSON report.
fn builder(
    instance: &Instance,
    acct: &Account,
    python: &Path,
    args: &[&std::ffi::OsStr],
    input: &[u8],
    limits: crate::runner::Limits,
) -> Result<(i32, Value)> {
    let mut cmd = crate::interpreter::as_service_user(acct, python).ok_or_else(|| {
        Error::new(format!(
            "only root or {} may build the environment: it is built as {}",
            acct.user, acct.user
        ))
        .with_note(format!("sudo jarvisctl venv build{}", instance.flag()))
    })?;
    // The builder, run by the base interpreter as the service user.
    crate::python::isolated(&mut cmd, crate::python::VENV_BUILD)
        .args(args)
        .env_clear()
        .env("HOME", &acct.home)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8");
    let out = crate::runner::run(cmd, input, limits)
        .map_err(|e| Error::new(format!("cannot run {}: {e}", python.display())))?;
    if out.timed_out() {
        return Err(Error::new(format!(
            "the build as {} did not end within {} s and was killed, with every process it started",
            acct.user,
            limits.deadline.as_secs()
        ))
        .with_note(format!(
            "the environment in use is unchanged; see what it was doing: sudo jarvisctl venv build{}, then look at its last lines",
            instance.flag()
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = stdout
        .lines()
        .next_back()
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .ok_or_else(|| {
            Error::new(format!(
                "the build as {} ended without a report (exit {:?}): {}",
                acct.user,
                out.status.and_then(|s| s.code()),
                output::printable(&masked(String::from_utf8_lossy(&out.stderr).trim()))
            ))
        })?;
    Ok((out.status.and_then(|s| s.code()).unwrap_or(1), report))
}

/// A URL's user and password (an index with a token) never printed.
fn masked(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            out.push_str("****");
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

fn text(v: &Value, key: &str) -> String {
    output::printable(&masked(v[key].as_str().unwrap_or("")))
}

fn restart_hint(instance: &Instance) -> String {
    match instance {
        Instance::Default if crate::systemd::running() => {
            "restart to use it: sudo systemctl restart jarvis-supervisor".to_string()
        }
        Instance::Default => "restart to use it: sudo service jarvis-supervisor restart".to_string(),
        // On either engine.
        Instance::Named(_) => format!("restart to use it: sudo jarvisctl restart{}", instance.flag()),
    }
}

pub fn build(paths: &Paths, args: &VenvBuildArgs) -> Result<i32> {
    let instance = instance(paths, args.instance.as_deref())?;
    let (host_root, code_root, acct) = target(paths, &instance)?;
    // Root reads the file and hands it over: the service user may not be
    // able to open a file root names (deploy's staged copy), and the code
    // root's own is read as the service user's file, never followed.
    let requirements = match &args.requirements {
        Some(p) => std::fs::read(p)
            .map_err(|e| Error::io("read", p, e).with_note("name the requirements file to build from"))?,
        None => {
            let p = host_root.join("requirements.txt");
            jarvis_model::untrusted::read(&p, None, 1 << 20).map_err(|e| {
                Error::io("read", &p, e)
                    .with_note("the environment is built from requirements.txt in the code root")
            })?
        }
    };
    let wheelhouse = args.wheelhouse.clone().unwrap_or_default();
    if !args.json {
        eprintln!(
            "building the environment in {}/venvs as {} with {} ...",
            code_root.display(),
            acct.user,
            args.installer
        );
    }
    let (code, report) = builder(
        &instance,
        &acct,
        &args.python,
        &[
            "build".as_ref(),
            host_root.as_os_str(),
            "-".as_ref(),
            wheelhouse.as_os_str(),
            args.installer.as_ref(),
            args.python.as_os_str(),
            crate::python::REQUIREMENTS_READER.as_ref(),
            if args.no_switch { "no-switch" } else { "switch" }.as_ref(),
        ],
        &requirements,
        BUILD_LIMITS,
    )?;
    if args.json {
        println!("{report}");
        return Ok(code.min(1));
    }
    for s in report["skipped"].as_array().into_iter().flatten() {
        println!(
            "- skipped: {} (its markers exclude this host: {})",
            text(s, "name"),
            text(s, "marker")
        );
    }
    if code != 0 {
        let what = match report["requirement"].as_str() {
            Some(name) => format!("requirement {} failed: ", output::printable(name)),
            None => String::new(),
        };
        println!(
            "✗ venv: {what}{}; the environment in use is unchanged",
            text(&report, "error")
        );
        return Ok(1);
    }
    println!(
        "✓ venv: built {} with {} in {} s; venv -> {}{}",
        text(&report, "venv"),
        text(&report, "installer"),
        report["seconds"],
        text(&report, "venv"),
        match report["previous"].as_str() {
            Some(_) => format!(" (previous: {}, kept for rollback)", text(&report, "previous")),
            None => String::new(),
        }
    );
    println!("{}", restart_hint(&instance));
    Ok(0)
}

pub fn rollback(paths: &Paths, args: &VenvRollbackArgs) -> Result<i32> {
    let instance = instance(paths, args.instance.as_deref())?;
    let (host_root, _, acct) = target(paths, &instance)?;
    let (code, report) = builder(
        &instance,
        &acct,
        Path::new(crate::interpreter::SYSTEM),
        &["rollback".as_ref(), host_root.as_os_str()],
        b"",
        SWITCH_LIMITS,
    )?;
    if args.json {
        println!("{report}");
    } else if code == 0 {
        println!(
            "✓ venv -> {} (was {})",
            text(&report, "venv"),
            text(&report, "previous")
        );
        println!("{}", restart_hint(&instance));
    } else {
        println!("✗ venv: {}", text(&report, "error"));
    }
    Ok(code.min(1))
}

pub fn switch(paths: &Paths, args: &VenvSwitchArgs) -> Result<i32> {
    let instance = instance(paths, args.instance.as_deref())?;
    let (host_root, _, acct) = target(paths, &instance)?;
    let (code, report) = builder(
        &instance,
        &acct,
        Path::new(crate::interpreter::SYSTEM),
        &["switch".as_ref(), host_root.as_os_str(), args.target.as_ref()],
        b"",
        SWITCH_LIMITS,
    )?;
    if args.json {
        println!("{report}");
    } else if code == 0 {
        let now = report["venv"]
            .as_str()
            .map_or("none (the system's python3)".to_string(), |_| {
                text(&report, "venv")
            });
        println!(
            "✓ venv -> {now} (was {})",
            report["previous"]
                .as_str()
                .map_or("none".to_string(), |_| text(&report, "previous"))
        );
        println!("{}", restart_hint(&instance));
    } else {
        println!("✗ venv: {}", text(&report, "error"));
    }
    Ok(code.min(1))
}

pub fn adopt(paths: &Paths, args: &VenvRollbackArgs) -> Result<i32> {
    let instance = instance(paths, args.instance.as_deref())?;
    let (host_root, _, acct) = target(paths, &instance)?;
    let (code, report) = builder(
        &instance,
        &acct,
        Path::new(crate::interpreter::SYSTEM),
        &["adopt".as_ref(), host_root.as_os_str()],
        b"",
        SWITCH_LIMITS,
    )?;
    if args.json {
        println!("{report}");
    } else if code == 0 {
        println!(
            "venv -> {}",
            report["venv"]
                .as_str()
                .map_or("none (the system's python3)".to_string(), |_| text(
                    &report, "venv"
                ))
        );
    } else {
        println!("✗ venv: {}", text(&report, "error"));
    }
    Ok(code.min(1))
}
