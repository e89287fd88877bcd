//! `state.json` in the state directory: what `jarvisctl status` reads on a
//! host without systemd. Written whole, atomically (temp file + rename).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub schema: u32,
    /// starting, running, stopping, restarting, failed, stopped
    pub state: Cow<'static, str>,
    pub engine_pid: u32,
    pub main_pid: Option<i32>,
    pub n_restarts: u32,
    /// success, exit-code, signal, oom-kill (the kernel's count of OOM kills
    /// in the program's cgroup grew), timeout, watchdog, start-limit-hit
    pub result: Cow<'static, str>,
    /// The last exit: the exit status, or the signal number as a negative number.
    pub last_exit: Option<i32>,
    pub last_watchdog_unix: Option<f64>,
    pub watchdog_usec: u64,
    pub status_text: String,
    pub started_unix: f64,
    /// cgroup, rlimit or none
    pub memory_limit: Cow<'static, str>,
    /// The program's own cgroup directory, if the engine made one: status
    /// looks there for processes that outlive the engine.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// Since when the program has not been up (READY): the last exit of a
    /// run that was, or this engine's first start; None while it is up.
    #[serde(default)]
    pub down_since_unix: Option<f64>,
    /// When each of the last automatic restarts was decided (the newest
    /// RESTARTS_KEPT), for the restarts in `status`'s window.
    #[serde(default)]
    pub restarts_unix: Vec<f64>,
}

/// How many restart times `state.json` keeps.
pub const RESTARTS_KEPT: usize = 64;

pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub struct StateFile {
    path: PathBuf,
    tmp: PathBuf,
}

impl StateFile {
    pub fn new(dir: &Path) -> StateFile {
        StateFile {
            path: dir.join("state.json"),
            tmp: dir.join(".state.json.tmp"),
        }
    }

    /// The last state written, if any (what `jarvisctl status` reads).
    pub fn read(dir: &Path) -> Option<State> {
        let text = std::fs::read(dir.join("state.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Best effort: a full disk must not stop the supervision.
    pub fn write(&self, st: &State) {
        let Ok(mut text) = serde_json::to_vec_pretty(st) else {
            return;
        };
        text.push(b'\n');
        if std::fs::write(&self.tmp, &text).is_ok() {
            let _ = std::fs::rename(&self.tmp, &self.path);
        }
    }
}
