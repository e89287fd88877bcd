//! `jarvisctl status` on a host without systemd: the same document, from
//! the state that `jarvisctl run` keeps (`/run/jarvis-supervisor-run/
//! state.json`), the program's processes in /proc, and the unit.

use super::{raise, Status, Verdict};
use crate::control::state_dir;
use crate::live::{self, Holder};
use jarvis_engine::leftovers;
use jarvis_engine::logsink::OUTPUT_FILE;
use jarvis_engine::members::Cgroup;
use jarvis_model::masking::Masker;
use jarvis_model::paths::Paths;
use jarvis_model::service::{self, Service};
use jarvis_model::state::{self, now_boot, now_unix, Read, RunState, StateFile};
use jarvis_model::unit::Unit;

fn alive_engine(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "jarvisctl")
}

/// RSS of every process in the program's process group (the engine puts
/// the program in a group of its own, led by it).
pub(super) fn rss_of_group(pgid: i32) -> Option<u64> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{name}/stat")) else {
            continue;
        };
        // Fields after the command name: state ppid pgrp ...
        let group = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|g| g.parse::<i32>().ok());
        if group == Some(pgid) {
            members.push(name);
        }
    }
    super::rss::sum_rss(members.iter().map(String::as_str))
}

/// Processes the program started that outlive the engine (it was killed
/// with -9, or they survived SIGKILL): the state is never just "stopped"
/// while they run.
fn survivors(paths: &Paths, cgroup: Option<std::path::PathBuf>, st: &mut Status) {
    let cgroup = cgroup.map(Cgroup::at);
    let left = leftovers::survivors(&state_dir(paths), cgroup.as_ref());
    if left.is_empty() {
        return;
    }
    let pids: Vec<String> = left.iter().map(i32::to_string).collect();
    st.sub_state = "processes-left".into();
    raise(
        st,
        Verdict::Critical,
        format!(
            "{} process(es) the bot started still run without jarvisctl run (pids {}): the next start ends them first (service jarvis-supervisor start), or end them now: kill {}",
            left.len(),
            pids.join(" "),
            pids.join(" ")
        ),
    );
}

/// The status from the fallback engine's state; false when this host has
/// neither a unit nor an engine state, and there is nothing to say.
pub fn collect(paths: &Paths, unit: Option<&Unit>, st: &mut Status, crash_window_s: f64) -> bool {
    st.supervisor = Some("jarvisctl run".into());
    let dir = state_dir(paths);
    let state = match StateFile::check(&dir) {
        Read::Ok(state) => Some(*state),
        Read::Missing => None,
        Read::Corrupt(why) => {
            from_the_kernel(paths, unit, &dir, Some(&why), st);
            return true;
        }
    };
    let Some(state) = state else {
        if unit.is_none() {
            return false;
        }
        if live::holder(&dir, paths.is_system()) != Holder::Free {
            from_the_kernel(paths, unit, &dir, None, st);
            return true;
        }
        st.state = "inactive".into();
        raise(
            st,
            Verdict::Critical,
            "down: jarvisctl run is not running (start it: service jarvis-supervisor start)".into(),
        );
        st.active_state = "inactive".into();
        return true;
    };
    st.result = state.result.to_string();
    st.n_restarts = Some(u64::from(state.n_restarts));
    st.status_text = Some(state.status_text.clone()).filter(|s| !s.is_empty());
    let engine_up = alive_engine(state.engine_pid);
    st.active_state = if engine_up {
        state.state.to_string()
    } else {
        "inactive".into()
    };
    st.sub_state = state.state.to_string();
    st.state = match (engine_up, &state.state) {
        (true, RunState::Running) => "active",
        // Starting again after a failed run is a restart (the backoff and
        // the preflight run in this state), as systemd's auto-restart is.
        (true, RunState::Starting) if state.n_restarts > 0 => "restarting",
        (true, RunState::Starting) => "activating",
        (true, RunState::Restarting) => "restarting",
        (true, RunState::Stopping) => "deactivating",
        (_, RunState::Failed) => "failed",
        (true, other) => other.as_str(),
        (false, _) => "inactive",
    }
    .to_string();
    match st.state.as_str() {
        "active" => {}
        // Judged once the bot's own last line is known (collect_all).
        "restarting" => st.crash_loop = Some(crash_loop(&state, crash_window_s)),
        "activating" => raise(st, Verdict::Warning, "starting".into()),
        "deactivating" => raise(st, Verdict::Warning, "stopping".into()),
        "failed" => raise(st, Verdict::Critical, format!("failed (result: {})", state.result)),
        _ if !engine_up && state.state != RunState::Stopped => raise(
            st,
            Verdict::Critical,
            format!(
                "jarvisctl run (pid {}) is gone without stopping: it was killed; start it again: service jarvis-supervisor start",
                state.engine_pid
            ),
        ),
        other => raise(st, Verdict::Critical, format!("down ({other})")),
    }
    if !engine_up {
        survivors(paths, state.cgroup.clone(), st);
    }
    let (now, boot) = (now_unix(), now_boot());
    // The bot's own start, from the kernel's start time of its process
    // (the boot clock); the engine's start only when /proc does not say.
    let bot_age = state
        .main_pid
        .and_then(|p| u32::try_from(p).ok())
        .and_then(live::started_boot_s)
        .map(|s| (boot - s).max(0.0));
    if st.state == "active" {
        st.main_pid = state.main_pid.and_then(|p| u32::try_from(p).ok());
        st.uptime_s = Some(bot_age.unwrap_or((now - state.started_unix).max(0.0)));
        st.memory.current_bytes = state.main_pid.and_then(rss_of_group);
    }
    let period = (state.watchdog_usec > 0).then(|| state.watchdog_usec as f64 / 1e6);
    st.watchdog.period_s = period;
    if st.state == "active" {
        st.watchdog.last_ping_age_s = Some(match state.last_watchdog_unix {
            Some(wall) => state::age(state.last_watchdog_boot_s, wall, boot, now),
            None => st.uptime_s.unwrap_or(0.0),
        });
    }
    memory_max(unit, st);
    true
}

fn memory_max(unit: Option<&Unit>, st: &mut Status) {
    if let Some(u) = unit {
        st.memory.max_bytes = Service::from_unit(u).ok().and_then(|s| s.memory_max).or_else(|| {
            u.last("Service", "MemoryMax")
                .and_then(|v| service::bytes("MemoryMax", &v).ok().flatten())
        });
    }
}

/// No state to read while the engine's lock is held (state.json damaged
/// or gone): what runs, as the kernel shows it, and the file named.
fn from_the_kernel(
    paths: &Paths,
    unit: Option<&Unit>,
    dir: &std::path::Path,
    corrupt: Option<&str>,
    st: &mut Status,
) {
    let file = dir.join("state.json");
    let damage = match corrupt {
        Some(why) => format!("{} is corrupt ({why})", file.display()),
        None => format!("{} is missing", file.display()),
    };
    match live::holder(dir, paths.is_system()) {
        Holder::Engine { pid, main_pid } => {
            let (state, sub) = if main_pid.is_some() {
                ("active", "running")
            } else {
                ("activating", "starting")
            };
            st.state = state.into();
            st.active_state = state.into();
            st.sub_state = sub.into();
            st.main_pid = main_pid;
            st.uptime_s = main_pid
                .and_then(live::started_boot_s)
                .map(|s| (now_boot() - s).max(0.0));
            st.memory.current_bytes = main_pid
                .and_then(|p| i32::try_from(p).ok())
                .and_then(rss_of_group);
            let what = match main_pid {
                Some(m) => format!("the bot runs (main pid {m})"),
                None => "no program of its runs yet".into(),
            };
            raise(
                st,
                Verdict::Warning,
                format!(
                    "{damage}: jarvisctl run (pid {pid}, the holder of its lock) is running and {what}; it writes the file again from its live state at once, or at its next change"
                ),
            );
        }
        Holder::Untrusted(_) if !nix::unistd::geteuid().is_root() => {
            st.state = "unknown".into();
            raise(
                st,
                Verdict::Unknown,
                format!("{damage}, and whether the holder of its lock is the engine can only be checked as root: run status as root"),
            );
        }
        Holder::Untrusted(why) => {
            st.state = "unknown".into();
            raise(
                st,
                Verdict::Critical,
                format!("{damage}, and its lock is held by a process that is not the engine: {why}"),
            );
        }
        Holder::Free => {
            st.state = "inactive".into();
            st.active_state = "inactive".into();
            raise(
                st,
                Verdict::Critical,
                format!("down: jarvisctl run is not running, and {damage} (the next start writes it again): service jarvis-supervisor start"),
            );
        }
    }
    memory_max(unit, st);
}

/// A restarting program's figures, from the engine's own record: down
/// since its last READY run ended (or the engine's first start), the
/// restarts it recorded in the window, and how the last run ended.
fn crash_loop(state: &jarvis_model::state::State, window_s: f64) -> super::CrashLoop {
    let (now, boot) = (now_unix(), now_boot());
    let mut c = super::crashloop::start(window_s);
    c.down_s = state
        .down_since_unix
        .map(|t| state::age(state.down_since_boot_s, t, boot, now));
    // The boot clock's record when the engine kept one for each restart.
    let boot_kept =
        !state.restarts_boot_s.is_empty() && state.restarts_boot_s.len() == state.restarts_unix.len();
    let ages: Vec<f64> = if boot_kept {
        state
            .restarts_boot_s
            .iter()
            .map(|&t| state::age(Some(t), 0.0, boot, now))
            .collect()
    } else {
        state.restarts_unix.iter().map(|&t| now - t).collect()
    };
    c.restarts_in_window = Some(ages.iter().filter(|&&a| a <= window_s).count() as u64);
    // last_exit: the status, or the signal as a negative number.
    let code = state.last_exit.map(|n| n.abs());
    c.last_result = Some(super::crashloop::describe_result(state.result.as_str(), code));
    c
}

/// The program's newest line in its output file (not the start steps'
/// own), masked.
pub fn last_words(unit: &Unit, secrets: &Masker) -> Option<String> {
    // The file the engine writes: the working directory's logs/, as the
    // unit names it (the engine does not re-root it under --root).
    let dir = Service::from_unit(unit).ok()?.workdir()?.join("logs");
    let file = dir.join(OUTPUT_FILE);
    let w = crate::recent::Window {
        since: None,
        entries: 1000,
        bytes: 64 * 1024,
    };
    let tail = crate::recent::file(&file, &w).ok()?;
    super::crashloop::last_words(tail.lines.iter().map(String::as_str)).map(|l| secrets.mask(l))
}

/// The engine's state file (as `StateFile::read` reads it).
pub(super) fn state_file(paths: &Paths) -> std::path::PathBuf {
    state_dir(paths).join("state.json")
}
