//! `jarvisctl alert`: the service gave up (systemd's start limit, or
//! `jarvisctl run` giving up), so say so at once instead of at the health
//! timer's next run: ping the heartbeat URL's `/fail` endpoint and run the
//! `on_failure` command of `heartbeat.conf`. Run by
//! `jarvis-supervisor-alert.service` (the `OnFailure=` of the bot's unit)
//! and by the fallback engine.
//!
//! From systemd 254 on, `OnFailure=` also fires between automatic restarts
//! (systemd issue #27594): so, unless the caller knows (`--reason`), it
//! first watches the unit for RestartSec= and a little more, and alerts
//! only when no restart follows.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::AlertArgs;
use crate::error::Result;
use crate::heartbeat;
use crate::paths::{Paths, UNIT};

/// The on_failure command's time; a pager that hangs must not hold the unit.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(paths: &Paths, args: &AlertArgs) -> Result<i32> {
    let conf = heartbeat::read_conf(&paths.host(Path::new(heartbeat::CONF)))?;
    let reason = match &args.reason {
        Some(r) => r.clone(),
        None => match gave_up() {
            Some(r) => r,
            None => {
                println!("alert: {UNIT} is restarting, not given up: no alert");
                return Ok(0);
            }
        },
    };
    let mut ok = true;
    if conf.url.is_none() && conf.on_failure.is_none() {
        println!(
            "alert: {reason}; nothing to notify: set url or on_failure in {}",
            heartbeat::CONF
        );
    }
    if let Some(m) = conf.monitor() {
        match heartbeat::send(&m.for_give_up()) {
            Ok(()) => println!("alert: {reason}; pinged {}", m.shown(None)),
            Err(e) => {
                ok = false;
                eprintln!("alert: {reason}; the ping to {} failed: {e}", m.shown(None));
            }
        }
    }
    if let Some(cmd) = &conf.on_failure {
        match run_command(cmd, &reason) {
            Ok(()) => println!("alert: on_failure ran"),
            Err(e) => {
                ok = false;
                eprintln!("alert: on_failure of {}: {e}", heartbeat::CONF);
            }
        }
    }
    Ok(if ok { 0 } else { 1 })
}

/// Why the unit is failed for good; None when a restart follows.
fn gave_up() -> Option<String> {
    let props = ["ActiveState", "SubState", "Result", "NRestarts", "RestartUSec"];
    let first = crate::systemd::show(UNIT, &props).unwrap_or_default();
    let restart_sec = first
        .get("RestartUSec")
        .and_then(|v| crate::timespan::secs(v))
        .unwrap_or(0.1);
    let deadline = Instant::now() + Duration::from_secs_f64(restart_sec + 1.5);
    let mut last = first;
    loop {
        let state = last.get("ActiveState").map(String::as_str).unwrap_or("");
        if matches!(state, "activating" | "active" | "reloading") {
            return None;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        last = crate::systemd::show(UNIT, &props).unwrap_or_default();
    }
    let get = |k: &str| last.get(k).cloned().unwrap_or_default();
    Some(format!(
        "{UNIT} failed for good (result {}, after {} restarts): fix the cause, then systemctl reset-failed and start it",
        get("Result"),
        get("NRestarts")
    ))
}

fn run_command(cmd: &str, reason: &str) -> std::result::Result<(), String> {
    let mut child = Command::new("/bin/sh")
        .args(["-c", cmd])
        .env("JARVIS_ALERT_REASON", reason)
        .env("JARVIS_ALERT_UNIT", UNIT)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run /bin/sh: {e}"))?;
    let t0 = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(format!("it exited with {st}")),
            Ok(None) if t0.elapsed() > COMMAND_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "it ran over {} s and was killed",
                    COMMAND_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    }
}
