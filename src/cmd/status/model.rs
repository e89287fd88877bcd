//! The status document: what `status --json` prints (schema in README).

use serde::{Deserialize, Serialize};

/// The JSON schema's version; bumped on any incompatible change.
pub const SCHEMA: u32 = 2;

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
    /// active, activating, restarting, failed, inactive, paused, not-installed, unknown.
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
    /// The program's own pause switch, when set (state "paused" while the
    /// bot is down): which switch, who set it and since when.
    pub pause: Option<crate::pause::Pause>,
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
