//! The status document: what `status --json` prints (schema in docs/monitoring.md).

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

impl Verdict {
    /// The worst of `verdicts` (a host or an instance we know nothing about
    /// is worse than a degraded one, better than one that is down); UNKNOWN
    /// when there are none.
    pub fn worst(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        let rank = |v: &Verdict| match v {
            Verdict::Ok => 0,
            Verdict::Warning => 1,
            Verdict::Unknown => 2,
            Verdict::Critical => 3,
        };
        verdicts.into_iter().max_by_key(rank).unwrap_or(Verdict::Unknown)
    }
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
    /// The verdict on the bot alone: every finding but the host's own (free
    /// disk space, the package's records), which no deploy of the bot
    /// changes. What a deploy's verification judges.
    pub bot_verdict: Verdict,
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
    /// Set while the bot is restarting: what the loop looks like, and when
    /// it turns CRITICAL.
    pub crash_loop: Option<CrashLoop>,
    /// What could not be read as the user status ran as (a monitoring user
    /// without sudo); what comes from it is null or empty, never a zero.
    pub not_visible: Vec<NotVisible>,
    /// The program's own pause switch, when set (state "paused" while the
    /// bot is down): which switch, who set it and since when.
    pub pause: Option<crate::pause::Pause>,
    /// On a host with named instances (issue 26): one line per instance,
    /// the default's first when its code is there. `verdict` and
    /// `exit_code` are then the worst of them; everything else above is
    /// the default instance's. Absent on a host without named instances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<super::instances::Line>>,
}

/// A bot that is restarting instead of running (see `health/crashloop.rs`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct CrashLoop {
    /// The window the figures below are about (`status --crash-window`).
    pub window_s: f64,
    /// Automatic restarts within the window.
    pub restarts_in_window: Option<u64>,
    /// How long the bot has not been up (READY), without a break.
    pub down_s: Option<f64>,
    /// Down longer than this (half the window) is CRITICAL.
    pub critical_after_down_s: f64,
    /// How the last run ended: "exit-code, status 1", "signal 9 (KILL)",
    /// "oom-kill", ... (never systemd's "success" of the start under way).
    pub last_result: Option<String>,
    /// The bot's own last line before it ended, every .env value masked.
    pub last_error: Option<String>,
    /// Why it cannot start, when its preflight (`jarvisctl check
    /// --preflight`) said so: the first failed check.
    pub preflight: Option<String>,
}

/// Something `status` could not read as the user it ran as.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NotVisible {
    pub what: Hidden,
    /// "cannot see X as uid N (NAME): run as root or use the sudoers example".
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Hidden {
    /// The unit's journal: error lines, component records, restarts in 24 h.
    Journal,
    /// The code root: which Python runs, and the deployed files.
    CodeRoot,
    /// The environment files: the health port, and masking (so no error
    /// line or component error is shown).
    EnvFiles,
    /// The logs directory: its size, and under `jarvisctl run` the output.
    Logs,
    /// `jarvisctl run`'s state under /run.
    EngineState,
}

impl Status {
    /// Whether `what` was read.
    pub fn sees(&self, what: Hidden) -> bool {
        !self.not_visible.iter().any(|n| n.what == what)
    }
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
