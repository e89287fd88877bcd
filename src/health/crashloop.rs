//! A bot that restarts instead of running, told as what it is: a crash
//! loop, with how often it restarted in a window, how long it has been
//! down, how its last run really ended and its own last line; or, when its
//! preflight fails (no code, no `.env`), that cause instead. Down for more
//! than half of the window is CRITICAL (`status --crash-window`, 10 min by
//! default: CRITICAL after 5 min down).

use std::path::Path;

use super::model::{CrashLoop, Verdict};
use super::render::human_secs;
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

/// The default window: CRITICAL after 5 minutes down.
pub const DEFAULT_WINDOW_S: f64 = 600.0;

/// The verdict and its one sentence for a bot that is restarting.
pub fn verdict(c: &CrashLoop) -> (Verdict, String) {
    let window = human_secs(c.window_s);
    let half = human_secs(c.critical_after_down_s);
    let restarts = c.restarts_in_window.map_or("restarts".to_string(), |n| {
        format!("{n} restart(s) in the last {window}")
    });
    let down = c
        .down_s
        .map_or(String::new(), |d| format!(", down {}", human_secs(d)));
    let critical = c.down_s.is_some_and(|d| d > c.critical_after_down_s);
    let mut why = match &c.preflight {
        Some(p) => format!("not starting: its preflight fails: {p} ({restarts}{down})"),
        None => {
            // One restart is a crash; a loop takes two.
            let what = if c.restarts_in_window.unwrap_or(0) >= 2 {
                "crash loop"
            } else {
                "restarting"
            };
            let mut s = format!("{what}: {restarts}{down}");
            if let Some(r) = &c.last_result {
                s.push_str(&format!(", last result {r}"));
            }
            if let Some(e) = &c.last_error {
                s.push_str(&format!("; its last line: {e}"));
            }
            s
        }
    };
    if critical {
        why.push_str(&format!(
            " (CRITICAL: down more than {half} of the last {window})"
        ));
        (Verdict::Critical, why)
    } else {
        why.push_str(&format!(
            " (CRITICAL once down more than {half} of the last {window})"
        ));
        (Verdict::Warning, why)
    }
}

/// A loop's figures before its text is added: the window and its threshold.
pub fn start(window_s: f64) -> CrashLoop {
    CrashLoop {
        window_s,
        critical_after_down_s: window_s / 2.0,
        ..CrashLoop::default()
    }
}

/// How a run ended, in words: systemd's result with its status or signal.
pub fn describe_result(result: &str, exit_status: Option<i32>) -> String {
    match (result, exit_status) {
        ("exit-code", Some(n)) => format!("exit-code, status {n}"),
        ("signal", Some(n)) if n > 0 => format!("signal {n} ({})", signal_name(n)),
        ("core-dump", Some(n)) if n > 0 => format!("core-dump, signal {n} ({})", signal_name(n)),
        (r, _) => r.to_string(),
    }
}

fn signal_name(n: i32) -> String {
    nix::sys::signal::Signal::try_from(n)
        .map(|s| s.as_str().trim_start_matches("SIG").to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// What PID 1's lines about the unit in the window say (oldest first).
#[derive(Debug, PartialEq)]
pub struct Pid1 {
    /// Automatic restarts ("Scheduled restart job").
    pub restarts: u64,
    /// How the newest failed run ended, in words ("exit-code, status 1").
    pub last_result: Option<String>,
    /// systemd's word for it ("exit-code", "signal", "oom-kill").
    pub result: Option<String>,
    /// The first failure after the last "Started" line (READY under
    /// Type=notify): since then the bot has not been up. systemd's own
    /// timestamps do not say it: each automatic restart passes through
    /// inactive, so InactiveExitTimestamp is only the last restart.
    pub failing_since: Option<f64>,
}

pub fn from_pid1(entries: &[(Option<f64>, &str)]) -> Pid1 {
    let mut out = Pid1 {
        restarts: 0,
        last_result: None,
        result: None,
        failing_since: None,
    };
    let mut result: Option<String> = None;
    let mut status: Option<i32> = None;
    for &(t, l) in entries {
        if l.starts_with("Started ") {
            out.failing_since = None;
        }
        if l.contains("Scheduled restart job") {
            out.restarts += 1;
        }
        // "...: Main process exited, code=exited, status=1/FAILURE", or the
        // "Control process" of an ExecStartPre=.
        if let Some(rest) = l.split_once("process exited, code=").map(|(_, r)| r) {
            status = rest
                .split_once("status=")
                .and_then(|(_, s)| s.split('/').next())
                .and_then(|n| n.trim().parse().ok());
            out.failing_since = out.failing_since.or(t);
        }
        if let Some(r) = l
            .split_once("Failed with result '")
            .and_then(|(_, r)| r.split_once('\''))
        {
            result = Some(r.0.to_string());
            out.failing_since = out.failing_since.or(t);
        }
    }
    out.last_result = result.as_deref().map(|r| describe_result(r, status));
    out.result = result;
    out
}

/// Lines that `jarvisctl`'s own start steps write beside the bot's output
/// (the backoff's wait, the preflight's findings): not the bot's words.
fn ours(line: &str) -> bool {
    let l = line.trim_start();
    l.is_empty()
        || l.starts_with("backoff:")
        || l.starts_with("✗ ")
        || l.starts_with("! ")
        || l.starts_with("✓ ")
        || l.starts_with("jarvisctl")
}

/// The newest of `lines` (newest last) that the bot wrote.
pub fn last_words<'a>(lines: impl DoubleEndedIterator<Item = &'a str>) -> Option<&'a str> {
    lines.rev().find(|l| !ours(l)).map(str::trim_end)
}

/// The first failed check of the last preflight, which the unit's
/// `check --preflight` leaves in the runtime directory (removed when it
/// passes). Written by the service user: read as hostile, bounded.
pub fn preflight(paths: &Paths, unit: &Unit) -> Option<String> {
    let dir = unit.last("Service", "RuntimeDirectory")?;
    let first = dir.split_whitespace().next()?;
    let file = paths
        .host(Path::new("/run"))
        .join(first)
        .join(jarvis_model::paths::PREFLIGHT_FAILED);
    let bytes = jarvis_model::untrusted::read(&file, None, 16 * 1024).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    Some(line.trim_start_matches("✗ ").trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn looped(down: f64) -> CrashLoop {
        CrashLoop {
            restarts_in_window: Some(7),
            down_s: Some(down),
            last_result: Some(describe_result("exit-code", Some(1))),
            last_error: Some("standin: configured to fail at start".into()),
            ..start(DEFAULT_WINDOW_S)
        }
    }

    #[test]
    fn a_crash_loop_says_so_with_the_bots_line_and_turns_critical_after_half_the_window() {
        let (v, why) = verdict(&looped(90.0));
        assert_eq!(v, Verdict::Warning);
        assert_eq!(
            why,
            "crash loop: 7 restart(s) in the last 10 min, down 90 s, last result exit-code, status 1; \
             its last line: standin: configured to fail at start (CRITICAL once down more than 5 min of the last 10 min)"
        );
        assert!(!why.contains("success"));
        let (v, why) = verdict(&looped(301.0));
        assert_eq!(v, Verdict::Critical);
        assert!(
            why.ends_with("(CRITICAL: down more than 5 min of the last 10 min)"),
            "{why}"
        );
        // Exactly half is not yet "more than half".
        assert_eq!(verdict(&looped(300.0)).0, Verdict::Warning);
        // A single crash is a restart, not yet a loop.
        let once = CrashLoop {
            restarts_in_window: Some(1),
            last_result: Some(describe_result("signal", Some(9))),
            last_error: None,
            ..looped(2.0)
        };
        let (v, why) = verdict(&once);
        assert_eq!(v, Verdict::Warning);
        assert!(
            why.starts_with(
                "restarting: 1 restart(s) in the last 10 min, down 2 s, last result signal 9 (KILL) ("
            ),
            "{why}"
        );
        // The flag's window moves the threshold.
        let short = CrashLoop {
            down_s: Some(11.0),
            ..start(20.0)
        };
        let (v, why) = verdict(&short);
        assert_eq!(v, Verdict::Critical, "{why}");
        assert!(why.contains("down more than 10 s of the last 20 s"), "{why}");
    }

    #[test]
    fn a_failing_preflight_is_named_as_the_cause_instead() {
        let c = CrashLoop {
            preflight: Some("env: /home/jarvis/Jarvis/.env is missing — fix: ...".into()),
            ..looped(400.0)
        };
        let (v, why) = verdict(&c);
        assert_eq!(v, Verdict::Critical);
        assert!(
            why.starts_with("not starting: its preflight fails: env: /home/jarvis/Jarvis/.env is missing"),
            "{why}"
        );
        assert!(!why.contains("crash loop"), "{why}");
    }

    /// The fixture's lines, one second apart from t=1000.
    fn timed(text: &str) -> Vec<(Option<f64>, &str)> {
        text.lines()
            .enumerate()
            .map(|(i, l)| (Some(1000.0 + i as f64), l))
            .collect()
    }

    #[test]
    fn pid1_lines_give_the_restarts_the_true_last_result_and_since_when_it_fails() {
        let kill9 = include_str!("../../tests/fixtures/systemd/pid1-kill9.txt");
        let p = from_pid1(&timed(kill9));
        assert_eq!(
            (p.restarts, p.last_result.as_deref()),
            (2, Some("signal 9 (KILL)"))
        );
        // It was Started again after the last kill: up now.
        assert_eq!(p.failing_since, None);
        let oom = include_str!("../../tests/fixtures/systemd/pid1-oom-kill.txt");
        let p = from_pid1(&timed(oom));
        assert_eq!((p.restarts, p.last_result.as_deref()), (1, Some("oom-kill")));
        // A loop that never gets to "Started": failing since its first exit,
        // across every restart.
        let exit1 = "jarvis-supervisor.service: Control process exited, code=exited, status=1/FAILURE\n\
                     jarvis-supervisor.service: Failed with result 'exit-code'.\n\
                     jarvis-supervisor.service: Scheduled restart job, restart counter is at 1.\n\
                     Stopped jarvis-supervisor.service - Jarvis bot supervisor (bots/supervisor.py).\n\
                     Starting jarvis-supervisor.service - Jarvis bot supervisor (bots/supervisor.py)...\n\
                     jarvis-supervisor.service: Main process exited, code=exited, status=1/FAILURE\n\
                     jarvis-supervisor.service: Failed with result 'exit-code'.\n\
                     jarvis-supervisor.service: Scheduled restart job, restart counter is at 2.\n";
        let p = from_pid1(&timed(exit1));
        assert_eq!(
            p,
            Pid1 {
                restarts: 2,
                last_result: Some("exit-code, status 1".into()),
                result: Some("exit-code".into()),
                failing_since: Some(1000.0),
            }
        );
        assert_eq!(from_pid1(&[]).restarts, 0);
    }

    #[test]
    fn the_bots_last_line_skips_the_start_steps_own_lines() {
        let out = "standin: configured to fail at start\n\
                   backoff: start 4 in a row within 120 s of the previous one; waiting 2 s\n\
                   ✗ env: .env is missing — fix: x\n";
        assert_eq!(
            last_words(out.lines()),
            Some("standin: configured to fail at start")
        );
        assert_eq!(last_words("backoff: x\n".lines()), None);
    }
}
