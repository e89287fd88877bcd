//! `jarvisctl alert`: the service gave up (systemd's start limit, or
//! `jarvisctl run` giving up), so say so at once instead of at the health
//! timer's next run: ping the heartbeat URL's `/fail` endpoint and run the
//! `on_failure` command of `heartbeat.conf`. Run by
//! `jarvis-supervisor-alert.service` (the `OnFailure=` of the bot's unit)
//! and by the fallback engine. With `--instance NAME` (run by
//! `jarvis-supervisor-alert@NAME.service`, the template's `OnFailure=`),
//! the same for that instance's unit, from its own `heartbeat@NAME.conf`.
//!
//! From systemd 254 on, `OnFailure=` also fires between automatic restarts
//! (systemd issue #27594): so, unless the caller knows (`--reason`), it
//! first watches the unit for RestartSec= and a little more, and alerts
//! only when no restart follows.
//!
//! An operator's stop is not a give-up (issue 27): a stop or restart job
//! that ends a start step or a run unclean (`apt remove`, `systemctl stop`,
//! a deploy's restart during a crash loop) also leaves the unit failed and
//! fires `OnFailure=`. PID 1's own journal lines say which it was
//! (`failed_unit`): the service user cannot write them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::heartbeat;
use jarvis_cli::AlertArgs;
use jarvis_model::error::Result;
use jarvis_model::instance::Instance;
use jarvis_model::masking::Masker;
use jarvis_model::paths::Paths;

/// The on_failure command's time; a pager that hangs must not hold the unit.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(paths: &Paths, args: &AlertArgs) -> Result<i32> {
    // A named instance: its own unit, its own heartbeat file.
    let instance = Instance::from_arg(args.instance.as_deref())?;
    let unit_name = instance.unit();
    let conf_path = heartbeat::conf_of(&instance);
    let conf_file = conf_path.display().to_string();
    // A pause is the operator's choice, never a failure to alert about,
    // however the engine ended (a skipped start, or the program's own exit
    // 0 before READY, which systemd records as a protocol failure).
    let unit = jarvis_model::unit::Unit::load_named(paths, &unit_name).ok();
    if let Some(p) = unit.as_ref().and_then(|u| crate::pause::detect(paths, u)) {
        println!("alert: {}: no alert", p.describe());
        return Ok(0);
    }
    // Every hook the file sets up runs, even when another line is bad: the
    // give-up page is the one that matters most. The bad lines are named
    // now and make the exit non-zero after everything was tried.
    let (conf, problems) = heartbeat::read_conf_of(paths, &instance)?;
    for p in &problems {
        p.print();
    }
    let reason = match &args.reason {
        Some(r) => r.clone(),
        None => match gave_up(&unit_name) {
            Ending::GaveUp(r) => r,
            Ending::Restarting => {
                println!("alert: {unit_name} is restarting, not given up: no alert");
                return Ok(0);
            }
            Ending::Stopped => {
                println!("alert: {unit_name} was stopped (a stop or restart job, systemd's journal says), not given up: no alert");
                return Ok(0);
            }
        },
    };
    let mut ok = true;
    if conf.url.is_none() && conf.on_failure.is_none() {
        println!("alert: {reason}; nothing to notify: set url or on_failure in {conf_file}");
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
        // Masked with the bot's .env values (when readable) and the ping URL.
        let mut secrets = unit
            .as_ref()
            .and_then(|u| crate::secrets::values(paths, u))
            .unwrap_or_default();
        secrets.extend(conf.url.iter().cloned());
        match run_command(cmd, &reason, &unit_name, Masker::new(&secrets)) {
            Ok(()) => println!("alert: on_failure ran"),
            Err(e) => {
                ok = false;
                eprintln!("alert: on_failure of {conf_file}: {e}");
            }
        }
    }
    if !problems.is_empty() {
        eprintln!(
            "alert: {} bad line(s) in {conf_file} were skipped; every hook it sets up was tried",
            problems.len(),
        );
    }
    Ok(match (ok, problems.first()) {
        (false, _) => jarvis_model::error::exit::FAILURE,
        (true, Some(p)) => p.exit_code(),
        (true, None) => jarvis_model::error::exit::OK,
    })
}

/// How the unit's run ended, as far as an alert goes.
enum Ending {
    /// Failed for good: why.
    GaveUp(String),
    /// A restart follows.
    Restarting,
    /// An operator's stop or restart job ended it.
    Stopped,
}

/// Why `unit` is failed for good, or why that is not the case.
fn gave_up(unit: &str) -> Ending {
    let props = ["ActiveState", "SubState", "Result", "NRestarts", "RestartUSec"];
    let first = crate::systemd::show(unit, &props).unwrap_or_default();
    let restart_sec = first
        .get("RestartUSec")
        .and_then(|v| jarvis_model::timespan::secs(v))
        .unwrap_or(0.1);
    let deadline = Instant::now() + Duration::from_secs_f64(restart_sec + 1.5);
    let mut last = first;
    loop {
        let state = last.get("ActiveState").map(String::as_str).unwrap_or("");
        if matches!(state, "activating" | "active" | "reloading") {
            return Ending::Restarting;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        last = crate::systemd::show(unit, &props).unwrap_or_default();
    }
    let get = |k: &str| last.get(k).cloned().unwrap_or_default();
    if crate::failed_unit::of_unit(unit) == crate::failed_unit::FailedBy::Stop {
        return Ending::Stopped;
    }
    Ending::GaveUp(format!(
        "{unit} failed for good (result {}, after {} restarts): fix the cause, then systemctl reset-failed and start it",
        get("Result"),
        get("NRestarts")
    ))
}

/// The most lines of the command's output passed on: a command that
/// floods must not fill the journal.
const OUTPUT_LINES: usize = 200;

/// Runs `cmd` by `/bin/sh -c`, its stdout and stderr passed on line by line
/// to ours (the alert unit's journal under systemd, the engine's log under
/// `jarvisctl run`), each `.env` value and the heartbeat URL masked: the
/// unit's /tmp is private, so a file written there is gone after it.
fn run_command(cmd: &str, reason: &str, unit: &str, secrets: Masker) -> std::result::Result<(), String> {
    let (reader, writer) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    let err_writer = writer
        .try_clone()
        .map_err(|e| format!("cannot make a pipe: {e}"))?;
    let mut child = Command::new("/bin/sh")
        .args(["-c", cmd])
        .env("JARVIS_ALERT_REASON", reason)
        .env("JARVIS_ALERT_UNIT", unit)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(err_writer)
        .spawn()
        .map_err(|e| format!("cannot run /bin/sh: {e}"))?;
    // The command's own ends are closed: EOF comes when it (and whatever
    // it left behind) closes them.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        pass_on(reader, &secrets, &mut std::io::stdout().lock());
        let _ = done_tx.send(());
    });
    let t0 = Instant::now();
    let result = loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => break Ok(()),
            Ok(Some(st)) => break Err(format!("it exited with {st}")),
            Ok(None) if t0.elapsed() > COMMAND_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "it ran over {} s and was killed",
                    COMMAND_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => break Err(e.to_string()),
        }
    };
    // A process it left in the background may hold the pipe: its output
    // after this is not waited for.
    let _ = done_rx.recv_timeout(Duration::from_secs(1));
    result
}

/// Each line of `from`, masked and made printable, as `alert: on_failure: LINE`.
fn pass_on(from: impl std::io::Read, secrets: &Masker, to: &mut impl std::io::Write) {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(from).split(b'\n');
    let mut shown = 0usize;
    let mut more = 0usize;
    while let Some(Ok(raw)) = lines.next() {
        if shown == OUTPUT_LINES {
            more += 1;
            continue;
        }
        shown += 1;
        let text = String::from_utf8_lossy(&raw);
        let masked = secrets.mask(text.trim_end_matches('\r'));
        let _ = writeln!(to, "alert: on_failure: {}", crate::output::printable(&masked));
    }
    if more > 0 {
        let _ = writeln!(to, "alert: on_failure: ({more} more line(s) not shown)");
    }
    let _ = to.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_output_is_passed_on_masked_and_its_status_kept() {
        // The output goes to this test's stdout; what matters here is that
        // the command runs with the reason, and fails as it fails.
        assert_eq!(
            run_command("echo \"$JARVIS_ALERT_REASON\"", "gave up", "u", Masker::default()),
            Ok(())
        );
        let e = run_command("echo out; echo err >&2; exit 3", "r", "u", Masker::default()).unwrap_err();
        assert!(e.contains("exit status: 3"), "{e}");
    }

    #[test]
    fn lines_are_masked_bounded_and_defused() {
        let mut input = String::from("token s3cr3t-token refused\nbell \x1b[31m red\n");
        for i in 0..297 {
            input.push_str(&format!("line {i}\n"));
        }
        let mut out = Vec::new();
        pass_on(
            input.as_bytes(),
            &Masker::new(&["s3cr3t-token".to_string()]),
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        let ours: Vec<&str> = text.lines().collect();
        assert_eq!(ours[0], "alert: on_failure: token **** refused", "{text}");
        assert!(!text.contains("s3cr3t-token") && !text.contains('\x1b'), "{text}");
        assert!(ours[1].starts_with("alert: on_failure: bell "), "{text}");
        assert_eq!(ours.len(), OUTPUT_LINES + 1, "{text}");
        assert_eq!(
            ours[OUTPUT_LINES],
            "alert: on_failure: (99 more line(s) not shown)"
        );
    }
}
