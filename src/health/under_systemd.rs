//! The status from systemd: the unit's properties (`systemctl show -p`,
//! never `systemctl status` text), and PID 1's own journal lines about it
//! for the restarts and a crash loop's figures.

use std::collections::BTreeMap;

use super::crashloop;
use super::model::{CrashLoop, Status, Verdict};
use super::raise;
use crate::systemd;
use jarvis_model::masking::Masker;
use jarvis_model::paths::UNIT;

/// The unit's properties the status reads.
const PROPS: &[&str] = &[
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "MainPID",
    "NRestarts",
    "StatusText",
    "WatchdogUSec",
    "WatchdogTimestampMonotonic",
    "ExecMainStartTimestampMonotonic",
    "ActiveEnterTimestampMonotonic",
    "MemoryCurrent",
    "MemoryMax",
    "CPUUsageNSec",
    "ControlGroup",
    "ActiveExitTimestampMonotonic",
    "ExecMainStatus",
    "ExecCondition",
];

/// A property as a number, when it is one.
fn num<T: std::str::FromStr>(p: &BTreeMap<String, String>, k: &str) -> Option<T> {
    p.get(k).and_then(|v| v.parse().ok())
}

/// CLOCK_MONOTONIC in µs: systemd's `*TimestampMonotonic` are on it.
fn monotonic_now_us() -> Option<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    Some(t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
}

/// The bot's newest line in the window, from the unit's journal (newest
/// first, bounded): only what came through the service's output streams
/// (`_TRANSPORT=stdout`), never systemd's own messages about the unit, nor
/// the start steps' own lines; masked.
pub(super) fn last_words(secrets: &Masker, window_s: f64) -> Option<String> {
    let since = format!("-{}s", window_s.round() as u64);
    let out = crate::runner::tool(systemd::journal_command(
        UNIT,
        &["--output-fields=_TRANSPORT", "-r", "-n", "200", "--since", &since],
    ))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let bots: Vec<String> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["_TRANSPORT"].as_str() == Some("stdout"))
        })
        .filter_map(systemd::journal_entry)
        .map(|e| e.text)
        .collect();
    // Newest first here: last_words wants newest last.
    crashloop::last_words(bots.iter().rev().map(String::as_str)).map(|l| secrets.mask(l))
}

/// The systemd part of the status; false when systemd cannot tell or the
/// unit is not installed (the status is then complete).
pub(super) fn collect(st: &mut Status, crash_window_s: f64) -> bool {
    st.supervisor = Some("systemd".into());
    let Some(p) = systemd::show(UNIT, PROPS) else {
        raise(
            st,
            Verdict::Unknown,
            "cannot ask systemd (systemctl show failed or is missing)".into(),
        );
        return false;
    };
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    st.active_state = get("ActiveState");
    st.sub_state = get("SubState");
    st.result = get("Result");
    if get("LoadState") == "not-found" {
        st.state = "not-installed".into();
        raise(st, Verdict::Critical, format!("{UNIT} is not installed"));
        return false;
    }
    st.main_pid = num::<u32>(&p, "MainPID").filter(|&n| n > 0);
    st.n_restarts = num(&p, "NRestarts");
    st.status_text = p.get("StatusText").filter(|s| !s.is_empty()).cloned();
    st.cpu_s = num::<u64>(&p, "CPUUsageNSec").map(|n| n as f64 / 1e9);
    let now = monotonic_now_us();
    let since = |k: &str| -> Option<f64> {
        let t: u64 = num(&p, k)?;
        (t > 0)
            .then(|| now.map(|n| n.saturating_sub(t) as f64 / 1e6))
            .flatten()
    };
    st.state = match (st.active_state.as_str(), st.sub_state.as_str()) {
        ("activating", "auto-restart") => "restarting".into(),
        ("activating", _) if st.n_restarts.unwrap_or(0) > 0 => "restarting".into(),
        (a, _) => a.to_string(),
    };
    let (state, result) = (st.state.clone(), st.result.clone());
    match state.as_str() {
        "active" => {}
        // Judged once the bot's own last line is known (health::collect_all).
        "restarting" => {
            let (c, true_result) = systemd_crash_loop(&p, &result, crash_window_s);
            // systemd's Result= reads "success" while the next start runs.
            if let Some(r) = true_result.filter(|_| result == "success" || result.is_empty()) {
                st.result = r;
            }
            st.crash_loop = Some(c);
        }
        "activating" | "reloading" => raise(st, Verdict::Warning, "starting".into()),
        "failed" => raise(st, Verdict::Critical, format!("failed (result: {result})")),
        // A pause is said later (paused() replaces this); any other
        // exit of the condition is systemd's skip of a start that could
        // not even run the condition.
        "inactive" if result == "exec-condition" => raise(
            st,
            Verdict::Critical,
            skipped_start(p.get("ExecCondition").map(String::as_str).unwrap_or("")),
        ),
        other => raise(st, Verdict::Critical, format!("down ({other})")),
    }
    if st.state == "active" {
        // The process's age, as without systemd: a notify bot is active
        // only from READY, and what it wrote before READY (its first
        // component record) is still the running process's own.
        st.uptime_s =
            since("ExecMainStartTimestampMonotonic").or_else(|| since("ActiveEnterTimestampMonotonic"));
    }
    // Watchdog: age of the last WATCHDOG=1, or of READY=1 when none came yet.
    // systemctl show prints spans formatted ("3min"), timestamps raw.
    let period = p
        .get("WatchdogUSec")
        .and_then(|v| jarvis_model::timespan::secs(v))
        .filter(|&s| s > 0.0);
    st.watchdog.period_s = period;
    if st.state == "active" {
        st.watchdog.last_ping_age_s =
            since("WatchdogTimestampMonotonic").or_else(|| since("ActiveEnterTimestampMonotonic"));
    }
    // The cgroup's own count where it keeps one, else the processes' RSS.
    st.memory.current_bytes = num::<u64>(&p, "MemoryCurrent")
        .filter(|&m| m < u64::MAX)
        .or_else(|| p.get("ControlGroup").and_then(|cg| super::rss::rss_of_cgroup(cg)));
    st.memory.max_bytes = num::<u64>(&p, "MemoryMax").filter(|&m| m < u64::MAX);
    st.restarts_24h = restarts_24h();
    if let Some(t) = systemd::show(
        jarvis_model::paths::RESTART_TIMER,
        &["ActiveState", "NextElapseUSecRealtime"],
    ) {
        st.weekly_restart.enabled = t.get("ActiveState").is_some_and(|s| s == "active");
        st.weekly_restart.next = t
            .get("NextElapseUSecRealtime")
            .filter(|v| !v.is_empty() && *v != "n/a" && st.weekly_restart.enabled)
            .cloned();
    }
    true
}

/// A restarting unit's figures: down since it last left `active`, or since
/// the first failure in the window after it was last started; the restarts
/// and the true last result from PID 1's lines in the window (systemd's
/// Result= says "success" while the next start is under way).
fn systemd_crash_loop(
    p: &BTreeMap<String, String>,
    result: &str,
    window_s: f64,
) -> (CrashLoop, Option<String>) {
    let mut c = crashloop::start(window_s);
    let entries = systemd::own_entries_since(UNIT, &format!("-{}s", window_s.round() as u64));
    let lines: Vec<(Option<f64>, &str)> = entries
        .iter()
        .flatten()
        .map(|e| (e.unix, e.text.as_str()))
        .collect();
    let pid1 = crashloop::from_pid1(&lines);
    // ActiveExitTimestampMonotonic as unix time.
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let left_active = num::<u64>(p, "ActiveExitTimestampMonotonic")
        .filter(|&t| t > 0)
        .zip(monotonic_now_us())
        .map(|(t, now)| now_unix - now.saturating_sub(t) as f64 / 1e6);
    let since = match (left_active, pid1.failing_since) {
        (Some(a), Some(f)) => Some(a.max(f)),
        (a, f) => a.or(f),
    };
    c.down_s = since.map(|t| (now_unix - t).max(0.0));
    c.restarts_in_window = entries.is_some().then_some(pid1.restarts);
    c.last_result = pid1.last_result.or_else(|| {
        (!result.is_empty() && result != "success")
            .then(|| crashloop::describe_result(result, num(p, "ExecMainStatus")))
    });
    (c, pid1.result)
}

/// Why systemd skipped the last start, from the condition's recorded exit
/// (`systemctl show -p ExecCondition`: `{ path=... ; status=226 }`). systemd
/// takes every exit from 1 to 254 as "skip", its own failures to spawn the
/// command included, so those are named as the failures they are.
fn skipped_start(exec_condition: &str) -> String {
    let status = exec_condition
        .split(';')
        .find_map(|f| {
            f.trim_matches(|c: char| c == '{' || c == '}' || c.is_whitespace())
                .strip_prefix("status=")
        })
        .and_then(|v| v.trim().split(['/', ' ']).next()?.parse::<u32>().ok());
    let step = match status {
        Some(200) => Some("CHDIR: the code root (WorkingDirectory=) is missing"),
        Some(203) => Some("EXEC: /usr/bin/jarvisctl cannot be run"),
        Some(217) => Some("USER: the service user does not exist"),
        Some(226) => Some("NAMESPACE: a ReadWritePaths= directory is missing"),
        _ => None,
    };
    match (status, step) {
        (Some(n), Some(step)) => format!(
            "down: systemd skipped the start because its condition could not run (status {n}/{step}); fix: jarvisctl check names it, then jarvisctl start"
        ),
        (Some(1), None) => {
            "down: the last start was skipped by the pause switch, which is gone now; start it: jarvisctl start".into()
        }
        (Some(n), None) => format!(
            "down: systemd skipped the start, its condition exited {n}; fix: jarvisctl check, then jarvisctl start"
        ),
        (None, _) => "down: systemd skipped the start (result exec-condition); fix: jarvisctl check, then jarvisctl start".into(),
    }
}

fn restarts_24h() -> Option<u64> {
    let text = systemd::own_lines_24h(UNIT)?;
    Some(
        text.lines()
            .filter(|l| l.contains("Scheduled restart job"))
            .count() as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_start_names_the_spawn_failure_behind_it() {
        let show = "{ path=/usr/bin/jarvisctl ; argv[]=/usr/bin/jarvisctl condition ; ignore_errors=no ; start_time=[Mon 2026-12-07 01:47:34 UTC] ; stop_time=[Mon 2026-12-07 01:47:34 UTC] ; pid=197 ; code=exited ; status=226 }";
        let why = skipped_start(show);
        assert!(
            why.contains("226/NAMESPACE: a ReadWritePaths= directory is missing"),
            "{why}"
        );
        assert!(skipped_start("{ status=1 }").contains("pause switch"));
        assert!(skipped_start("").contains("result exec-condition"));
    }
}
