//! `jarvisctl configure`: per-host settings as systemd drop-ins, written
//! atomically: `--weekly-restart SPEC|off`, the opt-in scheduled restart
//! (the plan's memory-leak mitigation), and `--code-root`/`--python`/`--show`
//! (`code_root`).

use std::path::Path;

use jarvis_cli::ConfigureArgs;
use jarvis_model::error::{exit, Error, Result};
use jarvis_model::paths::{Paths, RESTART_TIMER};

mod code_root;

const DROPIN: &str = "/etc/systemd/system/jarvis-supervisor-restart.timer.d/50-jarvisctl.conf";

pub fn run(paths: &Paths, args: &ConfigureArgs) -> Result<i32> {
    if args.show {
        return code_root::show(paths, args.json);
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
