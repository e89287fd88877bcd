//! `jarvisctl status`: the health of the service on this host, for people
//! (one line per finding) and monitors (`--json`, and the monitoring-plugin
//! exit codes 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). Everything comes from
//! systemd's properties (`systemctl show -p`), never from `systemctl status`
//! text. Error lines from the journal are shown with every `.env` value
//! masked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::heartbeat;
use crate::samples::{self, Sample};
use crate::systemd;
use jarvis_cli::StatusArgs;
use jarvis_model::error::Result;
use jarvis_model::masking::Masker;
use jarvis_model::paths::{Paths, UNIT};
use jarvis_model::unit::Unit;

mod components;
mod crashloop;
mod fallback;
mod hosts;
mod model;
mod render;
mod sight;
mod textfile;
mod trend;

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
    "ExecCondition",
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
        return trend::run(paths, &history, args.json);
    }
    let ping = ping_target(paths, args)?;
    let heartbeat = |code: i32| {
        if let Some(m) = &ping {
            heartbeat::ping(m, code);
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
                jarvis_model::error::Error::new(format!("--host {e}"))
                    .with_note("example: --host root@vps1.example.org:22")
            })?);
        }
        if targets.is_empty() {
            return Err(jarvis_model::error::Error::new("the hosts file lists no host"));
        }
        if !(args.timeout > 0.0 && args.timeout < 3600.0) {
            return Err(jarvis_model::error::Error::new(format!(
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
        return Err(jarvis_model::error::Error::new(format!(
            "--crash-window {}: give a number of seconds, 10 to 86400",
            args.crash_window
        )));
    }
    if !(args.record_interval >= 1.0 && args.record_interval <= 86400.0) {
        return Err(jarvis_model::error::Error::new(format!(
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
fn ping_target(paths: &Paths, args: &StatusArgs) -> Result<Option<heartbeat::Monitor>> {
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
    let sight = sight::Sight::me();
    if !systemd::running() && sight.denied(&fallback::state_file(paths)) {
        sight.note(&mut st, Hidden::EngineState, "jarvisctl run's state");
        raise(
            &mut st,
            Verdict::Unknown,
            "cannot read jarvisctl run's state".into(),
        );
        st.exit_code = st.verdict as i32;
        return st;
    }
    // Without systemd, the fallback engine's state says it all.
    let fallback = !systemd::running() && fallback::collect(paths, unit.as_ref(), &mut st, crash_window_s);
    if !fallback && !from_systemd(&mut st, crash_window_s) {
        st.exit_code = st.verdict as i32;
        return st;
    }
    if !fallback && !sight.journal() {
        sight.note(&mut st, Hidden::Journal, "the journal");
        st.restarts_24h = None;
    }
    paused(paths, unit.as_ref(), &mut st);
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
        if let Some(dir) = st
            .logs
            .dir
            .clone()
            .filter(|d| sight.denied(&paths.host(Path::new(d))))
        {
            sight.note(&mut st, Hidden::Logs, &format!("the logs in {dir}"));
            st.logs.size_bytes = None;
            st.logs.newest_rotated_age_s = None;
        }
        let code_root = u.working_directory().map(|w| w.path);
        if let Some(root) = code_root
            .as_ref()
            .filter(|r| sight.denied(&paths.host(&r.join(crate::interpreter::VENV_PYTHON))))
        {
            sight.note(
                &mut st,
                Hidden::CodeRoot,
                &format!("the code root {}", root.display()),
            );
        }
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
        if let Some(d) = code_root
            .filter(|_| st.sees(Hidden::CodeRoot))
            .and_then(|root| crate::drift::check(paths, &root))
        {
            st.code_deploy = Some(d.deploy.clone());
            st.code_changed = d.changed.iter().map(crate::drift::Changed::describe).collect();
            if !d.changed.is_empty() {
                raise(&mut st, Verdict::Warning, crate::drift::summary(&d));
            }
        }
        st.python = python(paths, u, st.main_pid);
        if !st.sees(Hidden::CodeRoot) {
            // Unknown, not broken: the venv could not be looked at.
            st.python.path = None;
            st.python.source = None;
            st.python.problem = None;
        }
        if let Some(why) = st.python.problem.clone() {
            raise(&mut st, Verdict::Warning, format!("the next start fails: {why}"));
        }
        // Built once: the error lines and the components are masked with it.
        let secrets = crate::secrets::masker(paths, u);
        if secrets.is_none() && !sight.is_root() {
            sight.note(&mut st, Hidden::EnvFiles, "the environment files (.env)");
        }
        // Where the error lines and component records come from.
        let output_seen = if fallback {
            st.sees(Hidden::Logs)
        } else {
            st.sees(Hidden::Journal)
        };
        st.errors = match &secrets {
            _ if !output_seen => Vec::new(),
            None => {
                vec!["(error lines hidden: .env could not be read to mask its values; run as root)".into()]
            }
            Some(secrets) if fallback => fallback::error_lines(paths, u, secrets),
            Some(secrets) => error_lines(secrets),
        };
        // A restarting bot: its own last line, and the preflight's cause
        // (the service user's file: masked as the bot's text is).
        if let Some(c) = st.crash_loop.as_mut() {
            c.preflight =
                crashloop::preflight(paths, u).map(|p| secrets.as_ref().map_or(p.clone(), |m| m.mask(&p)));
            c.last_error = match &secrets {
                None => Some("(hidden: .env could not be read to mask its values; run as root)".into()),
                Some(secrets) if fallback => fallback::last_words(u, secrets),
                Some(secrets) => journal_last_words(secrets, crash_window_s),
            };
        }
        // The components, while the bot runs: its values masked, or no
        // text of its shown at all when .env could not be read.
        if st.main_pid.is_some() {
            let mut c = components::collect(
                paths,
                u,
                fallback,
                secrets.as_ref().unwrap_or(&Masker::default()),
                thresholds,
            );
            if !output_seen && c.source == "none" {
                // Not a bot without records: records this user cannot read.
                c.source = "hidden".into();
            }
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
fn journal_last_words(secrets: &Masker, window_s: f64) -> Option<String> {
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
        st.uptime_s = since("ActiveEnterTimestampMonotonic");
    }
    // Watchdog: age of the last WATCHDOG=1, or of READY=1 when none came yet.
    // systemctl show prints spans formatted ("3min"), timestamps raw.
    let period = p
        .get("WatchdogUSec")
        .and_then(|v| jarvis_model::timespan::secs(v))
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

/// A bot stopped by the program's own pause switch is "paused", and OK:
/// the operator chose it, so no monitor pages for it and the heartbeat
/// stays green; `jarvis_supervisor_paused` and this state say it. The
/// engine's view of that stop (inactive, a skipped start, or the notify
/// protocol failure of the program's own exit 0) is replaced. A switch set
/// while the bot still runs is a WARNING: it takes effect at the next start.
fn paused(paths: &Paths, unit: Option<&Unit>, st: &mut Status) {
    let Some(p) = unit.and_then(|u| crate::pause::detect(paths, u)) else {
        return;
    };
    if st.main_pid.is_none() && st.state != "active" {
        st.state = "paused".into();
        st.verdict = Verdict::Ok;
        st.reasons.clear();
    } else {
        raise(
            st,
            Verdict::Warning,
            "the pause switch is set but the bot still runs: it pauses at its next start (stop it now: jarvisctl pause)".into(),
        );
    }
    st.pause = Some(p);
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
        let written = textfile::write(&dir, &st)
            .and_then(|f| textfile::remember(&paths.host(Path::new(textfile::WHERE)), &f));
        if let Err(e) = written {
            e.print();
        }
    }
    Ok(st.exit_code)
}

fn restarts_24h() -> Option<u64> {
    let text = systemd::own_lines_24h(UNIT)?;
    Some(
        text.lines()
            .filter(|l| l.contains("Scheduled restart job"))
            .count() as u64,
    )
}

fn logs(paths: &Paths, unit: &Unit) -> Logs {
    let Some(dir) = unit.logs_dir() else {
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

/// A line the program logged as an error, judged by its form, never by a
/// word inside a message (`ready pid=43 write_errors=0` is not one): a
/// logging level of ERROR, CRITICAL or FATAL (`... - ERROR - ...` as the
/// program logs, or `ERROR:`/`ERROR ` at the start as Python's defaults
/// and plain prints do), a traceback, a Python exception line
/// (`ModuleNotFoundError: No module named 'aiohttp'`), Python's own fatal
/// error, or the preflight's `✗` line.
fn looks_bad(line: &str) -> bool {
    const LEVELS: [&str; 3] = ["ERROR", "CRITICAL", "FATAL"];
    let level_field = LEVELS.iter().any(|l| line.contains(&format!(" - {l} - ")));
    let level_first = LEVELS.iter().any(|l| {
        line.strip_prefix(l)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', ' ']))
            || line.starts_with(&format!("[{l}]"))
    });
    level_field
        || level_first
        || line.starts_with("Traceback")
        || line.starts_with("Fatal Python error")
        || line.starts_with("✗ ")
        || exception_line(line)
}

/// `RuntimeError: boom`, `aiohttp.client_exceptions.ClientConnectorError:
/// ...`, `KeyError`: a dotted name ending in Error or Exception, at the
/// start of the line, alone or before `: `.
fn exception_line(line: &str) -> bool {
    let name = line.split_once(": ").map_or(line, |(n, _)| n);
    let last = name.rsplit('.').next().unwrap_or(name);
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && (last.ends_with("Error") || last.ends_with("Exception"))
}

/// What the error lines are read from: the newest entries of the last
/// 24 h, a bounded number of them, whatever the bot's log volume.
pub(crate) fn error_window() -> crate::recent::Window {
    crate::recent::Window {
        since: Some(jarvis_model::state::now_unix() - 86_400.0),
        entries: 2_000,
        bytes: 1 << 20,
    }
}

/// The last 5 error lines of `lines` (oldest first), masked.
fn last_errors<'a>(lines: impl Iterator<Item = &'a str>, secrets: &Masker) -> Vec<String> {
    let bad: Vec<&str> = lines.filter(|l| looks_bad(l)).collect();
    bad[bad.len().saturating_sub(5)..]
        .iter()
        .map(|l| secrets.mask(l))
        .collect()
}

/// The newest error lines of the unit's journal in the last 24 h.
fn error_lines(secrets: &Masker) -> Vec<String> {
    let lines = crate::recent::journal(UNIT, &error_window());
    last_errors(lines.iter().map(|e| e.text.as_str()), secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_are_the_programs_levels_not_words_in_a_message() {
        // As the program and Python write them (docs/supervised-program.md).
        for bad in [
            "2026-12-01 05:28:18,129 - jarvis.supervisor - ERROR - [buy_bot] Component crashed (attempt 3/100): boom",
            "2026-12-01 05:28:18,129 - jarvis.supervisor - ERROR - [buy_bot] Max restarts reached, giving up",
            "2026-12-01 05:28:18,129 - jarvis.treasury - CRITICAL - wallet unreachable",
            "Traceback (most recent call last):",
            "RuntimeError: simulated failure of buy_bot",
            "ModuleNotFoundError: No module named 'aiohttp'",
            "aiohttp.client_exceptions.ClientConnectorError: Cannot connect to host",
            "KeyError",
            "Fatal Python error: Segmentation fault",
            "ERROR: request to https://api.telegram.org/bot****/getMe failed: timeout",
            "ERROR:root:plain logging.basicConfig format",
            "✗ env: TELEGRAM_BOT_TOKEN is missing — fix: add it to .env",
        ] {
            assert!(looks_bad(bad), "not an error line: {bad}");
        }
        for fine in [
            "standin: ready pid=43 write_errors=0",
            "2026-12-01 05:28:18,129 - jarvis.supervisor - INFO - errors so far: 0, failed orders: 0",
            "2026-12-01 05:28:18,129 - jarvis.supervisor - INFO - === COMPONENT HEALTH ===",
            "  buy_bot: failed (restarts: 100)",
            "  File \"bots/buy_bot.py\", line 1, in run",
            "2026-12-01 05:28:18,129 - jarvis.errors - WARNING - retrying after a timeout error",
            "ERRORS=0 in the last batch",
            "Exception handling is on",
            "",
        ] {
            assert!(!looks_bad(fine), "taken for an error line: {fine}");
        }
    }

    #[test]
    fn the_newest_error_lines_are_kept_in_order() {
        let lines = [
            "ERROR: one",
            "fine",
            "ERROR: two",
            "ERROR: three",
            "ERROR: four",
            "ERROR: five",
            "ERROR: six with SECRET",
        ];
        let got = last_errors(lines.into_iter(), &Masker::new(&["SECRET".to_string()]));
        assert_eq!(
            got,
            [
                "ERROR: two",
                "ERROR: three",
                "ERROR: four",
                "ERROR: five",
                "ERROR: six with ****"
            ]
        );
    }

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

    #[test]
    fn the_help_names_the_schema_that_is_printed() {
        use clap::CommandFactory;
        let cli = jarvis_cli::Cli::command();
        let status = cli.find_subcommand("status").expect("a status subcommand");
        let json = status
            .get_arguments()
            .find(|a| a.get_id() == "json")
            .expect("status --json");
        let help = json.get_help().map(ToString::to_string).unwrap_or_default();
        assert!(help.contains(&format!("(schema {SCHEMA},")), "{help}");
    }

    #[test]
    fn masking_hides_every_value_longest_first() {
        let secrets = vec!["123456789:abcdef".to_string(), "abcdef".to_string()];
        assert_eq!(
            Masker::new(&secrets).mask("url bot123456789:abcdef/x and abcdef"),
            "url bot****/x and ****"
        );
    }
}
