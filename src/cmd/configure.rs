//! `jarvisctl configure`: per-host settings as systemd drop-ins, written
//! atomically: `--weekly-restart SPEC|off`, the opt-in scheduled restart
//! (the plan's memory-leak mitigation), and `--code-root`/`--python`/`--show`
//! (`code_root`).

use std::path::Path;

use jarvis_cli::ConfigureArgs;
use jarvis_model::error::{exit, Error, Result};
use jarvis_model::instance::Instance;
use jarvis_model::paths::{Paths, RESTART_TIMER};
use jarvis_model::unit::Unit;

mod code_root;

const DROPIN: &str = "/etc/systemd/system/jarvis-supervisor-restart.timer.d/50-jarvisctl.conf";

pub fn run(paths: &Paths, args: &ConfigureArgs) -> Result<i32> {
    let instance = Instance::from_arg(args.instance.as_deref())?.made(paths)?;
    if args.show {
        return code_root::show(paths, &instance, args.json);
    }
    if let Instance::Named(n) = &instance {
        return Err(named(paths, &instance, n, args)?);
    }
    if args.code_root.is_some() || args.python.is_some() {
        code_root::set(paths, args.code_root.as_deref(), args.python.as_deref())?;
        if args.weekly_restart.is_none() {
            return Ok(exit::OK);
        }
    }
    let Some(spec) = &args.weekly_restart else {
        return Err(Error::new("nothing to configure").with_note(
            "e.g. jarvisctl configure --weekly-restart \"Sun 04:00\", --code-root DIR, --python PATH, --show",
        ));
    };
    let dropin = paths.host(Path::new(DROPIN));
    if spec == "off" {
        if dropin.exists() {
            std::fs::remove_file(&dropin).map_err(|e| Error::io("remove", &dropin, e))?;
            println!("removed {DROPIN}");
        }
        systemctl(paths, &["disable", "--now", RESTART_TIMER])?;
        println!("weekly restart off: {RESTART_TIMER} disabled and stopped");
        return Ok(exit::OK);
    }
    // systemd's own parser decides what a calendar spec is.
    match crate::systemd::analyze(&["calendar", spec]) {
        Some((true, _)) => {}
        Some((false, text)) => {
            return Err(Error::new(format!(
                "--weekly-restart {spec:?} is not a systemd calendar spec: {}",
                text.trim()
            ))
            .with_note("e.g. \"Sun 04:00\" or \"Mon *-*-* 03:30\"; see man systemd.time"))
        }
        None => {
            return Err(Error::new(format!(
                "cannot run systemd-analyze to check {spec:?} (or it did not answer in time)"
            ))
            .with_note("install systemd, or use a host where systemd runs"))
        }
    }
    crate::dropin::write(
        &dropin,
        &format!(
            "# Written by jarvisctl configure --weekly-restart.\n[Timer]\nOnCalendar=\nOnCalendar={spec}\n"
        ),
    )?;
    println!("wrote {DROPIN}: OnCalendar={spec}");
    systemctl(paths, &["daemon-reload"])?;
    systemctl(paths, &["enable", "--now", RESTART_TIMER])?;
    systemctl(paths, &["restart", RESTART_TIMER])?;
    println!("weekly restart on: {RESTART_TIMER} enabled; it restarts the bot only if it is running");
    Ok(exit::OK)
}

/// Why a named instance's settings are not changed here, with the command
/// that changes them. Its code root and interpreter are its drop-in, which
/// `instance add` writes whole (rewriting them here would leave two
/// writers of one file); the restart timer restarts the default alone.
fn named(
    paths: &Paths,
    instance: &Instance,
    name: &jarvis_model::instance::InstanceName,
    args: &ConfigureArgs,
) -> Result<Error> {
    if args.code_root.is_some() || args.python.is_some() {
        let unit = Unit::load_named(paths, &instance.unit())?;
        let python = args.python.as_deref();
        let cmd = crate::instances::add_command(name, &unit, args.code_root.as_deref(), python);
        return Ok(Error::new(format!(
            "configure --code-root and --python change the default instance; those of {} are in its drop-in, which instance add writes",
            instance.describe()
        ))
        .with_note(format!("run: {cmd}"))
        .with_code(exit::USAGE));
    }
    if args.weekly_restart.is_some() {
        return Ok(Error::new(format!(
            "--weekly-restart schedules {RESTART_TIMER}, which restarts the default instance only, not {}",
            instance.describe()
        ))
        .with_note(format!(
            "restart it on a schedule with a timer of your own whose service runs: jarvisctl restart --instance {name}"
        ))
        .with_code(exit::USAGE));
    }
    Ok(Error::new("nothing to configure").with_note(format!(
        "for a named instance: jarvisctl configure --show --instance {name}"
    )))
}

pub(super) fn systemctl(paths: &Paths, args: &[&str]) -> Result<()> {
    if !paths.is_system() {
        return Ok(()); // a rooted tree: files only
    }
    crate::systemd::systemctl(args).map_err(|e| {
        if e.starts_with("cannot run") {
            Error::new(e).with_note("this needs systemd")
        } else {
            Error::new(e).with_note("run it as root")
        }
    })?;
    Ok(())
}
