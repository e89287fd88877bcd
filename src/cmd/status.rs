//! `jarvisctl status`: the health of the service on this host, for people
//! (one line per finding) and monitors (`--json`, and the monitoring-plugin
//! exit codes 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). Everything comes from
//! systemd's properties (`systemctl show -p`), never from `systemctl status`
//! text. Error lines from the journal are shown with every `.env` value
//! masked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::cli::StatusArgs;
use crate::error::Result;
use crate::heartbeat;
use crate::paths::{Paths, UNIT};
use crate::samples::{self, Sample};
use crate::systemd;
use crate::unit::Unit;

mod components;
mod fallback;
mod hosts;
mod textfile;

/// The JSON schema's version; bumped on any incompatible change.
const SCHEMA: u32 = 2;
const DISK_LOW: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    #[default]
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Watchdog {
    pub period_s: Option<f64>,
    pub last_ping_age_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Memory {
    pub current_bytes: Option<u64>,
    pub max_bytes: Option<u64>,
    pub percent_of_max: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Logs {
    pub dir: Option<String>,
    pub size_bytes: Option<u64>,
    pub newest_rotated_age_s: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Status {
    pub schema: u32,
    pub verdict: Verdict,
    pub exit_code: i32,
    /// Why the verdict is not OK, one sentence each.
    pub reasons: Vec<String>,
    /// active, activating, restarting, failed, inactive, not-installed, unknown.
    pub state: String,
    pub active_state: String,
    pub sub_state: String,
    pub result: String,
    pub main_pid: Option<u32>,
    pub uptime_s: Option<f64>,
    pub n_restarts: Option<u64>,
    pub restarts_24h: Option<u64>,
    pub status_text: Option<String>,
    pub watchdog: Watchdog,
    pub memory: Memory,
    pub cpu_s: Option<f64>,
    pub logs: Logs,
    pub disk_free_bytes: Option<u64>,
    /// The last error lines of the last 24 h, every .env value masked.
    pub errors: Vec<String>,
    pub package_version: Option<String>,
    /// What supervises the bot: "systemd", or "jarvisctl run" on a host
    /// without systemd.
    pub supervisor: Option<String>,
    /// The opt-in weekly restart: whether its timer runs, and when it fires next.
    pub weekly_restart: WeeklyRestart,
    /// The deploy whose manifest the live code was compared with, when one
    /// is in effect (`jarvisctl deploy`).
    pub code_deploy: Option<String>,
    /// Shipped files whose content changed on the host since that deploy,
    /// as "PATH (changed|missing|not a regular file)".
    pub code_changed: Vec<String>,
    pub python: Python,
    /// The bot's components, as it reports them (schema 2).
    pub components: crate::components::Components,
}

/// Which Python runs the bot (see `interpreter`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Python {
    /// What the unit starts now: the code root's venv, else the system's.
    pub path: Option<String>,
    /// venv, system, or unit (ExecStart= names it).
    pub source: Option<String>,
    /// Why it cannot start, when it cannot (a broken venv).
    pub problem: Option<String>,
    /// What the running bot was started as (its argv[0]), and the binary
    /// that runs (/proc/PID/exe: a venv made with links shows the system's).
    pub running_as: Option<String>,
    pub running_exe: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct WeeklyRestart {
    pub enabled: bool,
    pub next: Option<String>,
}

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
    let st = collect_with(paths, &thresholds);
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
    let mut st = Status {
        schema: SCHEMA,
        state: "unknown".into(),
        package_version: package_version(),
        ..Status::default()
    };
    let unit = Unit::load(paths).ok();
    // Without systemd, the fallback engine's state says it all.
    let fallback = !systemd::running() && fallback::collect(paths, unit.as_ref(), &mut st);
    if !fallback && !from_systemd(&mut st) {
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
        st.errors = match secrets(paths, u) {
            None => {
                vec!["(error lines hidden: .env could not be read to mask its values; run as root)".into()]
            }
            Some(secrets) if fallback => fallback::error_lines(paths, u, &secrets),
            Some(secrets) => error_lines(&secrets),
        };
        // The components, while the bot runs: its values masked, or no
        // text of its shown at all when .env could not be read.
        if st.main_pid.is_some() {
            let secrets = secrets(paths, u);
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
    st.exit_code = st.verdict as i32;
    st
}

/// The systemd part of the status; false when systemd cannot tell or the
/// unit is not installed (the status is then complete).
fn from_systemd(st: &mut Status) -> bool {
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
        "restarting" => raise(
            st,
            Verdict::Warning,
            format!("restarting (last result: {result})"),
        ),
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
    let Ok(out) = Command::new("journalctl")
        .args([
            "-u",
            UNIT,
            "--since",
            "-24h",
            "-n",
            "2000",
            "-o",
            "cat",
            "--no-pager",
            "-q",
        ])
        .output()
    else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let bad: Vec<&str> = text.lines().filter(|l| looks_bad(l)).collect();
    bad[bad.len().saturating_sub(5)..]
        .iter()
        .map(|l| mask(l, secrets))
        .collect()
}

fn package_version() -> Option<String> {
    let dpkg = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "jarvis-supervisor"])
        .output();
    if let Ok(o) = dpkg {
        if o.status.success() && !o.stdout.is_empty() {
            return Some(String::from_utf8_lossy(&o.stdout).into_owned());
        }
    }
    let rpm = Command::new("rpm")
        .args(["-q", "--qf", "%{VERSION}-%{RELEASE}", "jarvis-supervisor"])
        .output();
    if let Ok(o) = rpm {
        if o.status.success() {
            return Some(String::from_utf8_lossy(&o.stdout).into_owned());
        }
    }
    None
}

fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

fn human_secs(s: f64) -> String {
    let s = s as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// One line for the components, then one per component that is not
/// running or has crashed; the bot's text defused.
fn print_components(c: &crate::components::Components) {
    use crate::output::printable;
    let t = &c.thresholds;
    let from = match c.source.as_str() {
        "" => return,
        "health" => format!(
            "from /health, status {}",
            printable(c.health.as_deref().unwrap_or("?"))
        ),
        "none" => "no component record yet".into(),
        src => format!(
            "from the newest record in the {}, {} old",
            if src == "journal" {
                "journal"
            } else {
                "bot's output"
            },
            c.age_s.map_or("?".into(), human_secs)
        ),
    };
    println!(
        "components: {}/{} running ({from}; WARNING at {} crashes/h of one, CRITICAL on a give-up or no record for {:.0} s)",
        c.running,
        c.total,
        t.crashes_warn,
        3.0 * t.interval_s
    );
    for x in &c.list {
        if x.state == "running" && x.crashes_1h == 0 && !x.gave_up {
            continue;
        }
        let mut line = format!("  {}: {}", printable(&x.name), printable(&x.state));
        if let Some(r) = x.restarts {
            line.push_str(&format!(", restarts {r}"));
        }
        if x.crashes_1h > 0 {
            line.push_str(&format!(", {} crash(es) in the last hour", x.crashes_1h));
        }
        if x.gave_up {
            line.push_str(", gave up (Max restarts reached)");
        }
        if let Some(e) = &x.last_error {
            line.push_str(&format!("; last error: {}", printable(e)));
        }
        println!("{line}");
    }
}

/// Performance data, monitoring-plugin style: `label=value[UOM];warn;crit;min;max`,
/// only for what was measured.
fn perfdata(st: &Status) -> String {
    let mut out = Vec::new();
    if let Some(c) = st.memory.current_bytes {
        let max = st.memory.max_bytes.map(|m| m.to_string()).unwrap_or_default();
        out.push(format!("memory={c}B;;;0;{max}"));
    }
    if let Some(n) = st.restarts_24h {
        out.push(format!("restarts_24h={n};;;0"));
    }
    if let Some(a) = st.watchdog.last_ping_age_s {
        let period = st
            .watchdog
            .period_s
            .map(|p| format!("{p:.0}"))
            .unwrap_or_default();
        out.push(format!("watchdog_age={a:.1}s;;{period};0"));
    }
    if let Some(up) = st.uptime_s {
        out.push(format!("uptime={up:.0}s;;;0"));
    }
    let c = &st.components;
    if c.total > 0 {
        out.push(format!("components_running={};;;0;{}", c.running, c.total));
        out.push(format!("components_failed={};;1;0;{}", c.failed(), c.total));
    }
    out.join(" ")
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Ok => "OK",
        Verdict::Warning => "WARNING",
        Verdict::Critical => "CRITICAL",
        Verdict::Unknown => "UNKNOWN",
    }
}

/// What `print_human` shows of text that came from outside.
fn defused(st: &Status) -> Status {
    use crate::output::printable;
    let list = |v: &[String]| v.iter().map(|s| printable(s)).collect();
    let one = |v: &Option<String>| v.as_deref().map(printable);
    Status {
        reasons: list(&st.reasons),
        errors: list(&st.errors),
        code_changed: list(&st.code_changed),
        state: printable(&st.state),
        active_state: printable(&st.active_state),
        sub_state: printable(&st.sub_state),
        result: printable(&st.result),
        status_text: one(&st.status_text),
        supervisor: one(&st.supervisor),
        package_version: one(&st.package_version),
        code_deploy: one(&st.code_deploy),
        logs: Logs {
            dir: one(&st.logs.dir),
            ..st.logs.clone()
        },
        weekly_restart: WeeklyRestart {
            next: one(&st.weekly_restart.next),
            ..st.weekly_restart.clone()
        },
        python: Python {
            path: one(&st.python.path),
            source: one(&st.python.source),
            problem: one(&st.python.problem),
            running_as: one(&st.python.running_as),
            running_exe: one(&st.python.running_exe),
        },
        ..st.clone()
    }
}

fn print_human(st: &Status) {
    let st = &defused(st);
    let verdict = verdict_word(st.verdict);
    let why = if st.reasons.is_empty() {
        String::new()
    } else {
        format!(": {}", st.reasons.join("; "))
    };
    let perf = perfdata(st);
    if perf.is_empty() {
        println!("{verdict}{why}");
    } else {
        // The monitoring-plugin form: Nagios and Icinga graph what follows `|`.
        println!("{verdict}{why} | {perf}");
    }
    let mut state = format!(
        "state: {} ({}/{}), last result {}",
        st.state, st.active_state, st.sub_state, st.result
    );
    if let Some(pid) = st.main_pid {
        state.push_str(&format!(", main pid {pid}"));
    }
    if let Some(up) = st.uptime_s {
        state.push_str(&format!(", up {}", human_secs(up)));
    }
    println!("{state}");
    if st.state == "not-installed" || st.state == "unknown" {
        return;
    }
    match st.restarts_24h {
        Some(day) => println!(
            "restarts: {} since the last manual start, {day} in the last 24 h",
            st.n_restarts.unwrap_or(0)
        ),
        None => println!(
            "restarts: {} since the last manual start",
            st.n_restarts.unwrap_or(0)
        ),
    }
    if let Some(s) = &st.supervisor {
        println!("supervisor: {s}");
    }
    print_components(&st.components);
    match (st.watchdog.last_ping_age_s, st.watchdog.period_s) {
        (Some(a), Some(p)) => println!("watchdog: last ping {} ago (WatchdogSec={p:.0}s)", human_secs(a)),
        (None, Some(p)) => println!("watchdog: WatchdogSec={p:.0}s, no ping while not running"),
        _ => println!("watchdog: off"),
    }
    let mem = match (st.memory.current_bytes, st.memory.max_bytes) {
        (Some(c), Some(m)) => format!(
            "{} of {} ({:.1}%)",
            human_bytes(c),
            human_bytes(m),
            c as f64 * 100.0 / m as f64
        ),
        (Some(c), None) => human_bytes(c),
        _ => "not measured".into(),
    };
    println!("memory: {mem}; CPU {:.1} s in all", st.cpu_s.unwrap_or(0.0));
    if let Some(id) = &st.code_deploy {
        if st.code_changed.is_empty() {
            println!("code: as shipped by deploy {id}");
        } else {
            println!(
                "code: {} file(s) changed since deploy {id}:",
                st.code_changed.len()
            );
            for c in &st.code_changed {
                println!("  {c}");
            }
        }
    }
    let p = &st.python;
    match (&p.running_as, &p.running_exe, &p.path, &p.problem) {
        (Some(a), Some(e), _, _) if a != e => println!("python: running {a} ({e})"),
        (Some(a), _, _, _) => println!("python: running {a}"),
        (None, _, _, Some(why)) => println!("python: {why}"),
        (None, _, Some(path), None) => println!(
            "python: {path} ({}) at the next start",
            p.source.as_deref().unwrap_or("?")
        ),
        _ => {}
    }
    if let Some(t) = &st.status_text {
        println!("status: {t}");
    }
    if let Some(dir) = &st.logs.dir {
        let newest = st
            .logs
            .newest_rotated_age_s
            .map_or("none rotated yet".into(), |a| {
                format!("newest rotated {} old", human_secs(a as f64))
            });
        println!(
            "logs: {dir}: {}; {newest}",
            human_bytes(st.logs.size_bytes.unwrap_or(0))
        );
    }
    if let Some(f) = st.disk_free_bytes {
        println!("disk: {} free", human_bytes(f));
    }
    if st.errors.is_empty() {
        println!("errors: none in the last 24 h");
    }
    for e in &st.errors {
        println!("error: {e}");
    }
    println!(
        "package: {}",
        st.package_version
            .as_deref()
            .unwrap_or("not installed by a package")
    );
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

    #[test]
    fn perfdata_follows_the_plugin_format_and_names_only_what_was_measured() {
        let mut st = Status::default();
        assert_eq!(perfdata(&st), "");
        st.memory.current_bytes = Some(52_428_800);
        st.memory.max_bytes = Some(1_073_741_824);
        st.restarts_24h = Some(3);
        st.watchdog.last_ping_age_s = Some(4.25);
        st.watchdog.period_s = Some(60.0);
        st.uptime_s = Some(3600.4);
        let p = perfdata(&st);
        assert_eq!(
            p,
            "memory=52428800B;;;0;1073741824 restarts_24h=3;;;0 watchdog_age=4.2s;;60;0 uptime=3600s;;;0"
        );
        // Each item: label=value[UOM];warn;crit;min[;max], no spaces inside.
        for item in p.split(' ') {
            let (label, rest) = item.split_once('=').unwrap();
            assert!(
                label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{item}"
            );
            let fields: Vec<&str> = rest.split(';').collect();
            assert!((4..=5).contains(&fields.len()), "{item}");
            let value = fields[0].trim_end_matches(|c: char| c.is_ascii_alphabetic());
            assert!(value.parse::<f64>().is_ok(), "{item}");
        }
    }
}
