//! `jarvisctl status`: the health of the service on this host, for people
//! (one line per finding) and monitors (`--json`, and the monitoring-plugin
//! exit codes 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). Everything comes from
//! systemd's properties (`systemctl show -p`), never from `systemctl status`
//! text. Error lines from the journal are shown with every `.env` value
//! masked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cli::StatusArgs;
use crate::error::Result;
use crate::heartbeat;
use crate::paths::{Paths, UNIT};
use crate::samples::{self, Sample};
use crate::systemd;
use crate::unit::Unit;

mod components;
mod crashloop;
mod fallback;
mod hosts;
mod model;
mod render;
mod textfile;

pub use model::*;
use render::{print_human, verdict_word};

const DISK_LOW: u64 = 1 << 30;

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
];

/// A monitoring plugin answers UNKNOWN (3) when it cannot say: a bad
/// argument, or a state it could not read.
pub fn run(paths: &Paths, args: &StatusArgs) -> Result<i32> {
    checked(paths, args).map_err(|e| e.with_code(Verdict::Unknown as i32))
}

fn checked(paths: &Paths, args: &StatusArgs) -> Result<i32> {
    let history = args
        .samples
        .clone()
        .unwrap_or_else(|| paths.host(Path::new(samples::PATH)));
    if args.trend {
        return trend(paths, &history, args.json);
    }
    let ping = ping_target(paths, args)?;
    let heartbeat = |code: i32| {
        if let Some(url) = &ping {
            heartbeat::ping(url, code);
        }
    };
    if args.record {
        // The timer's run: it succeeds whatever the check found; the ping
        // carries the verdict.
        heartbeat(record(paths, &history)?);
        return Ok(0);
    }
    if !args.host.is_empty() || args.hosts.is_some() {
        let mut targets = Vec::new();
        if let Some(f) = &args.hosts {
            targets.extend(crate::ssh::read_hosts_file(f)?);
        }
        for h in &args.host {
            targets.push(crate::ssh::Target::parse(h).map_err(|e| {
                crate::error::Error::new(format!("--host {e}"))
                    .with_note("example: --host root@vps1.example.org:22")
            })?);
        }
        if targets.is_empty() {
            return Err(crate::error::Error::new("the hosts file lists no host"));
        }
        if !(args.timeout > 0.0 && args.timeout < 3600.0) {
            return Err(crate::error::Error::new(format!(
                "--timeout {}: give a number of seconds above 0 and under 3600",
                args.timeout
            )));
        }
        let timeout = std::time::Duration::from_secs_f64(args.timeout);
        let rows = hosts::check_all(&targets, &args.ssh_option, timeout);
        let code = hosts::print(&rows, args.json);
        heartbeat(code);
        return Ok(code);
    }
    if !(args.crash_window >= 10.0 && args.crash_window <= 86400.0) {
        return Err(crate::error::Error::new(format!(
            "--crash-window {}: give a number of seconds, 10 to 86400",
            args.crash_window
        )));
    }
    if !(args.record_interval >= 1.0 && args.record_interval <= 86400.0) {
        return Err(crate::error::Error::new(format!(
            "--record-interval {}: give the bot's record interval in seconds, 1 to 86400",
            args.record_interval
        )));
    }
    let thresholds = crate::components::Thresholds {
        crashes_warn: args.warn_crashes,
        interval_s: args.record_interval,
    };
    let st = collect_all(paths, &thresholds, args.crash_window);
    if args.json {
        println!("{}", serde_json::to_string(&st).unwrap_or_default());
    } else {
        print_human(&st);
    }
    heartbeat(st.exit_code);
    Ok(st.exit_code)
}

/// `--ping URL`; else, for the timer's run (`--record`), the URL in
/// heartbeat.conf, so that pings stop when the timer stops, whoever else
/// runs status. A broken conffile is reported and skips the ping; it never
/// hides the check itself.
fn ping_target(paths: &Paths, args: &StatusArgs) -> Result<Option<String>> {
    if args.ping.is_some() {
        return heartbeat::target(args.ping.as_deref(), PathBuf::new());
    }
    if !args.record {
        return Ok(None);
    }
    match heartbeat::configured(&paths.host(Path::new(heartbeat::CONF))) {
        Ok(url) => Ok(url),
        Err(e) => {
            eprintln!("heartbeat: {e}; no ping sent");
            Ok(None)
        }
    }
}

fn num<T: std::str::FromStr>(p: &BTreeMap<String, String>, k: &str) -> Option<T> {
    p.get(k).and_then(|v| v.parse().ok())
}

fn monotonic_now_us() -> Option<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    Some(t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
}

pub fn collect(paths: &Paths) -> Status {
    collect_with(paths, &crate::components::Thresholds::default())
}

pub fn collect_with(paths: &Paths, thresholds: &crate::components::Thresholds) -> Status {
    collect_all(paths, thresholds, crashloop::DEFAULT_WINDOW_S)
}

/// The status; a restarting bot is judged over the last `crash_window_s`.
pub fn collect_all(paths: &Paths, thresholds: &crate::components::Thresholds, crash_window_s: f64) -> Status {
    let mut st = Status {
        schema: SCHEMA,
        state: "unknown".into(),
        package_version: systemd::package_version("jarvis-supervisor"),
        ..Status::default()
    };
    let unit = Unit::load(paths).ok();
    // Without systemd, the fallback engine's state says it all.
    let fallback = !systemd::running() && fallback::collect(paths, unit.as_ref(), &mut st, crash_window_s);
    if !fallback && !from_systemd(&mut st, crash_window_s) {
        st.exit_code = st.verdict as i32;
        return st;
    }
    // Both engines give the age of the last ping (of READY before the first).
    if let (Some(age), Some(per)) = (st.watchdog.last_ping_age_s, st.watchdog.period_s) {
        if age > per / 2.0 {
            raise(
                &mut st,
                Verdict::Warning,
                format!("last watchdog ping {age:.0} s ago (WatchdogSec={per:.0}s)"),
            );
        }
    }
    if let (Some(cur), Some(max)) = (st.memory.current_bytes, st.memory.max_bytes) {
        let pct = cur as f64 * 100.0 / max as f64;
        st.memory.percent_of_max = Some((pct * 10.0).round() / 10.0);
        if pct > 80.0 {
            raise(
                &mut st,
                Verdict::Warning,
                format!("memory at {pct:.0}% of MemoryMax"),
            );
        }
    }
    if let Some(u) = &unit {
        st.logs = logs(paths, u);
        if let Some(dir) = &st.logs.dir {
            st.disk_free_bytes = free_bytes(&paths.host(Path::new(dir)));
            if st.disk_free_bytes.is_some_and(|f| f < DISK_LOW) {
                raise(
                    &mut st,
                    Verdict::Warning,
                    "disk space low for the logs (under 1 GiB)".into(),
                );
            }
        }
        if let Some(d) = u
            .working_directory()
            .and_then(|w| crate::drift::check(paths, &w.path))
        {
            st.code_deploy = Some(d.deploy.clone());
            st.code_changed = d.changed.iter().map(crate::drift::Changed::describe).collect();
            if !d.changed.is_empty() {
                raise(&mut st, Verdict::Warning, crate::drift::summary(&d));
            }
        }
        st.python = python(paths, u, st.main_pid);
        if let Some(why) = st.python.problem.clone() {
            raise(&mut st, Verdict::Warning, format!("the next start fails: {why}"));
        }
        // Read once: the error lines and the components are masked with it.
        let secrets = secrets(paths, u);
        st.errors = match &secrets {
            None => {
                vec!["(error lines hidden: .env could not be read to mask its values; run as root)".into()]
            }
            Some(secrets) if fallback => fallback::error_lines(paths, u, secrets),
            Some(secrets) => error_lines(secrets),
        };
        // A restarting bot: its own last line, and the preflight's cause
        // (the service user's file: masked as the bot's text is).
        if let Some(c) = st.crash_loop.as_mut() {
            c.preflight = crashloop::preflight(paths, u).map(|p| mask(&p, secrets.as_deref().unwrap_or(&[])));
            c.last_error = match &secrets {
                None => Some("(hidden: .env could not be read to mask its values; run as root)".into()),
                Some(secrets) if fallback => fallback::last_words(u, secrets),
                Some(secrets) => journal_last_words(secrets, crash_window_s),
            };
        }
        // The components, while the bot runs: its values masked, or no
        // text of its shown at all when .env could not be read.
        if st.main_pid.is_some() {
            let c = components::collect(paths, u, fallback, secrets.as_deref().unwrap_or(&[]), thresholds);
            let (crit, warn) = crate::components::verdicts(&c, thresholds, st.uptime_s);
            for why in crit {
                raise(&mut st, Verdict::Critical, why);
            }
            for why in warn {
                raise(&mut st, Verdict::Warning, why);
            }
            st.components = c;
            if secrets.is_none() {
                for x in &mut st.components.list {
                    x.last_error = x.last_error.as_ref().map(|_| "(hidden: .env unreadable)".into());
                }
            }
        }
    }
    if let Some(c) = &st.crash_loop {
        let (v, why) = crashloop::verdict(c);
        raise(&mut st, v, why);
    }
    st.exit_code = st.verdict as i32;
    st
}

/// The bot's newest line in the window, from the unit's journal (newest
/// first, bounded): only what came through the service's output streams
/// (`_TRANSPORT=stdout`), never systemd's own messages about the unit, nor
/// the start steps' own lines; masked.
fn journal_last_words(secrets: &[String], window_s: f64) -> Option<String> {
    let since = format!("-{}s", window_s.round() as u64);
    let out = systemd::journal_command(
        UNIT,
        &["--output-fields=_TRANSPORT", "-r", "-n", "200", "--since", &since],
    )
    .output()
    .ok()?;
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
    crashloop::last_words(bots.iter().rev().map(String::as_str)).map(|l| mask(l, secrets))
}

/// The systemd part of the status; false when systemd cannot tell or the
/// unit is not installed (the status is then complete).
fn from_systemd(st: &mut Status, crash_window_s: f64) -> bool {
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
        // Judged once the bot's own last line is known (collect_all).
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
        other => raise(st, Verdict::Critical, format!("down ({other})")),
    }
    if st.state == "active" {
        st.uptime_s = since("ActiveEnterTimestampMonotonic");
    }
    // Watchdog: age of the last WATCHDOG=1, or of READY=1 when none came yet.
    // systemctl show prints spans formatted ("3min"), timestamps raw.
    let period = p
        .get("WatchdogUSec")
        .and_then(|v| crate::timespan::secs(v))
        .filter(|&s| s > 0.0);
    st.watchdog.period_s = period;
    if st.state == "active" {
        st.watchdog.last_ping_age_s = since("WatchdogTimestampMonotonic").or(st.uptime_s);
    }
    // The cgroup's own count where it keeps one, else the processes' RSS.
    st.memory.current_bytes = num::<u64>(&p, "MemoryCurrent")
        .filter(|&m| m < u64::MAX)
        .or_else(|| p.get("ControlGroup").and_then(|cg| rss_of_cgroup(cg)));
    st.memory.max_bytes = num::<u64>(&p, "MemoryMax").filter(|&m| m < u64::MAX);
    st.restarts_24h = restarts_24h();
    if let Some(t) = systemd::show(
        super::configure::RESTART_TIMER,
        &["ActiveState", "NextElapseUSecRealtime"],
    ) {
        st.weekly_restart.enabled = t.get("ActiveState").is_some_and(|s| s == "active");
        st.weekly_restart.next = t
            .get("NextElapseUSecRealtime")
            .filter(|v| !v.is_empty() && st.weekly_restart.enabled)
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

fn raise(st: &mut Status, v: Verdict, why: String) {
    st.verdict = st.verdict.max(v);
    st.reasons.push(why);
}

/// The resident memory of every process in the unit's cgroup, summed.
fn rss_of_cgroup(cg: &str) -> Option<u64> {
    let procs = [
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/systemd",
    ]
    .iter()
    .find_map(|root| std::fs::read_to_string(format!("{root}{cg}/cgroup.procs")).ok())?;
    sum_rss(procs.split_whitespace())
}

/// A process's resident memory in bytes (VmRSS), if it still exists.
fn vm_rss(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// The summed RSS of `pids`; None when none of them could be read.
fn sum_rss<'a>(pids: impl Iterator<Item = &'a str>) -> Option<u64> {
    let sizes: Vec<u64> = pids.filter_map(vm_rss).collect();
    (!sizes.is_empty()).then(|| sizes.iter().sum())
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `--record`: one sample, quietly; the bot's state never fails the timer.
fn record(paths: &Paths, history: &Path) -> Result<i32> {
    let st = collect(paths);
    let s = Sample {
        t: now_s(),
        rss: st.memory.current_bytes,
        restarts: st.n_restarts,
        state: st.state.clone(),
    };
    samples::append(history, &s)?;
    // Prometheus (node_exporter's textfile collector), when a directory is
    // set or the default one exists. A failure is said, never fatal: the
    // sample and the ping matter more.
    if let Some(dir) = textfile::dir() {
        if let Err(e) = textfile::write(&dir, &st) {
            e.print();
        }
    }
    Ok(st.exit_code)
}

#[derive(Debug, Serialize)]
struct Trend {
    samples: usize,
    slope_24h_mib_per_hour: Option<f64>,
    slope_7d_mib_per_hour: Option<f64>,
    current_bytes: Option<u64>,
    max_bytes: Option<u64>,
    /// Hours until MemoryMax at the 24 h slope, when it grows.
    reaches_max_in_hours: Option<f64>,
    /// True when that is within 7 days.
    flagged: bool,
}

/// `--trend`: exit 0 when memory is stable, 1 when it would reach
/// MemoryMax within 7 days, 3 with too few samples to tell.
fn trend(paths: &Paths, history: &Path, json: bool) -> Result<i32> {
    let all = samples::read(history);
    let now = now_s();
    let st = collect(paths);
    let s24 = samples::slope_mib_per_hour(&all, now, 86_400);
    let s7 = samples::slope_mib_per_hour(&all, now, 7 * 86_400);
    let current = st
        .memory
        .current_bytes
        .or_else(|| all.iter().rev().find_map(|s| s.rss));
    let max = st.memory.max_bytes;
    let reaches = match (s24, current, max) {
        (Some(slope), Some(cur), Some(max)) if slope > 0.0 => {
            Some(((max.saturating_sub(cur)) as f64 / (1u64 << 20) as f64 / slope * 10.0).round() / 10.0)
        }
        _ => None,
    };
    let flagged = reaches.is_some_and(|h| h <= 7.0 * 24.0);
    let t = Trend {
        samples: all.len(),
        slope_24h_mib_per_hour: s24.map(|v| (v * 10.0).round() / 10.0),
        slope_7d_mib_per_hour: s7.map(|v| (v * 10.0).round() / 10.0),
        current_bytes: current,
        max_bytes: max,
        reaches_max_in_hours: reaches,
        flagged,
    };
    let code = if s24.is_none() {
        3
    } else if flagged {
        1
    } else {
        0
    };
    if json {
        println!("{}", serde_json::to_string(&t).unwrap_or_default());
    } else {
        let fmt =
            |v: Option<f64>| v.map_or("not enough samples".to_string(), |v| format!("{v:+.1} MiB/hour"));
        println!("memory trend from {} samples in {}", t.samples, history.display());
        println!("last 24 h: {}", fmt(t.slope_24h_mib_per_hour));
        println!("last 7 days: {}", fmt(t.slope_7d_mib_per_hour));
        match reaches {
            Some(h) if flagged => println!("WARNING: at this rate memory reaches MemoryMax in {h:.1} hours"),
            Some(h) => println!("at this rate memory reaches MemoryMax in {:.1} days", h / 24.0),
            None => println!("memory is not growing"),
        }
    }
    Ok(code)
}

fn restarts_24h() -> Option<u64> {
    let text = systemd::own_lines_24h(UNIT)?;
    Some(
        text.lines()
            .filter(|l| l.contains("Scheduled restart job"))
            .count() as u64,
    )
}

/// The unit's logs directory: the `ReadWritePaths=` entry named logs.
pub(crate) fn logs_dir(unit: &Unit) -> Option<std::path::PathBuf> {
    unit.read_write_paths()
        .into_iter()
        .map(|p| p.path)
        .find(|p| p.ends_with("logs"))
}

fn logs(paths: &Paths, unit: &Unit) -> Logs {
    let Some(dir) = logs_dir(unit) else {
        return Logs::default();
    };
    let mut size = 0u64;
    let mut newest: Option<std::time::SystemTime> = None;
    if let Ok(rd) = std::fs::read_dir(paths.host(&dir)) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            size += m.len();
            let name = e.file_name().to_string_lossy().into_owned();
            let rotated =
                name.ends_with(".gz") || name.rsplit('.').next().is_some_and(|s| s.parse::<u32>().is_ok());
            if rotated {
                if let Ok(t) = m.modified() {
                    newest = Some(newest.map_or(t, |n| n.max(t)));
                }
            }
        }
    }
    Logs {
        dir: Some(dir.display().to_string()),
        size_bytes: Some(size),
        newest_rotated_age_s: newest.and_then(|t| t.elapsed().ok()).map(|d| d.as_secs()),
    }
}

fn python(paths: &Paths, unit: &Unit, main_pid: Option<u32>) -> Python {
    let mut out = Python::default();
    if let Some((chosen, _)) = crate::interpreter::of_unit(paths, unit) {
        match chosen {
            Ok(i) => {
                out.path = Some(i.path.display().to_string());
                out.source = serde_json::to_value(i.source)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from));
            }
            Err(why) => out.problem = Some(why),
        }
    }
    if let Some(pid) = main_pid {
        // The bot's own argv: its text, so shown defused.
        out.running_as = std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .and_then(|b| {
                b.split(|&c| c == 0)
                    .next()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
            })
            .filter(|a| !a.is_empty());
        out.running_exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.display().to_string());
    }
    out
}

fn free_bytes(path: &Path) -> Option<u64> {
    let mut probe = path.to_path_buf();
    while !probe.exists() && probe.pop() {}
    let st = nix::sys::statvfs::statvfs(&probe).ok()?;
    Some(st.blocks_available() * st.fragment_size())
}

/// Every value of the unit's `.env` files, longest first, to mask.
pub(crate) fn secrets(paths: &Paths, unit: &Unit) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for env in unit.environment_files() {
        // As root, in the service user's directory: no link, no FIFO, bounded.
        match crate::untrusted::read(&paths.host(&env.path), None, crate::envcheck::ENV_MAX) {
            Ok(bytes) => {
                let parsed = crate::envfile::parse(&bytes);
                // Short values too: masking takes them as whole words.
                out.extend(parsed.vars.into_iter().map(|v| v.value).filter(|v| !v.is_empty()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Unreadable: the values cannot be masked, so no line is shown.
            Err(_) => return None,
        }
    }
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    Some(out)
}

pub fn mask(line: &str, secrets: &[String]) -> String {
    jarvis_supervisor::masking::mask(line, secrets)
}

fn looks_bad(line: &str) -> bool {
    let low = line.to_lowercase();
    ["error", "exception", "traceback", "fatal", "failed", "✗"]
        .iter()
        .any(|w| low.contains(w))
}

/// The last error-looking lines of the unit's journal in the last 24 h.
fn error_lines(secrets: &[String]) -> Vec<String> {
    let lines = systemd::journal(UNIT, &["--since", "-24h", "-n", "2000"]);
    let bad: Vec<&str> = lines
        .iter()
        .map(|e| e.text.as_str())
        .filter(|l| looks_bad(l))
        .collect();
    bad[bad.len().saturating_sub(5)..]
        .iter()
        .map(|l| mask(l, secrets))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_hides_every_value_longest_first() {
        let secrets = vec!["123456789:abcdef".to_string(), "abcdef".to_string()];
        assert_eq!(
            mask("url bot123456789:abcdef/x and abcdef", &secrets),
            "url bot****/x and ****"
        );
    }
}
