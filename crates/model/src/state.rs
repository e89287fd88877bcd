//! `state.json` in the state directory: what `jarvisctl status` reads on a
//! host without systemd. Written whole, atomically (temp file + rename).

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Declares a state.json word as an enum: each variant is written as the
/// exact string older versions wrote, and a string this version does not
/// know (a newer engine's) is kept as it is, so that a reader still shows
/// it rather than taking the file for unreadable.
macro_rules! words {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($(#[$vm])* $v,)*
            /// A word this version does not know.
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$v => $s,)*
                    $name::Other(s) => s,
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match s.as_str() {
                    $($s => $name::$v,)*
                    _ => $name::Other(s),
                }
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.as_str().to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// Where the program is in its life (systemd's sub-state words).
    RunState {
        Starting = "starting",
        Running = "running",
        Stopping = "stopping",
        Restarting = "restarting",
        Failed = "failed",
        Stopped = "stopped",
    }
}

words! {
    /// How the last run ended (systemd's Result= words).
    RunResult {
        Success = "success",
        ExitCode = "exit-code",
        Signal = "signal",
        /// The kernel's count of OOM kills in the program's cgroup grew.
        OomKill = "oom-kill",
        Timeout = "timeout",
        Watchdog = "watchdog",
        StartLimitHit = "start-limit-hit",
        /// A clean exit before READY=1 (Type=notify).
        Protocol = "protocol",
        /// An ExecCondition= said no: the start was skipped.
        ExecCondition = "exec-condition",
        /// Killed by a stop (never written: a stop ends as `stopped`).
        Stop = "stop",
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub schema: u32,
    pub state: RunState,
    pub engine_pid: u32,
    pub main_pid: Option<i32>,
    pub n_restarts: u32,
    pub result: RunResult,
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
    /// The program's output lines that could not be written to its log
    /// (`logs/` full), since the engine started. Absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub output_lines_lost: u64,
    /// Since when the program's output cannot be written (it is counted
    /// and dropped); absent while it is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_lost_since_unix: Option<f64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
        if std::fs::write(&self.tmp, &text).is_ok() && std::fs::rename(&self.tmp, &self.path).is_ok() {
            return;
        }
        // A full filesystem (/run, issue 27): the half-written temporary
        // file gives its space back, and the state goes over the old file in
        // place, where that takes no new block, rather than going stale
        // (status would show a dead pid as running).
        let _ = std::fs::remove_file(&self.tmp);
        let _ = rewrite_in_place(&self.path, text);
    }
}

/// Writes `text` over the file at `path` from offset 0, padded with spaces
/// (JSON allows them at the end) to cover the old content, only when it
/// fits in the blocks the file already has. One write, no truncation.
fn rewrite_in_place(path: &Path, mut text: Vec<u8>) -> std::io::Result<()> {
    use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    let meta = f.metadata()?;
    let old = meta.len() as usize;
    let allocated = (meta.blocks() * 512) as usize;
    if text.len() > old.max(allocated) {
        return Err(std::io::ErrorKind::StorageFull.into());
    }
    if text.len() < old {
        text.pop();
        text.resize(old - 1, b' ');
        text.push(b'\n');
    }
    f.write_all_at(&text, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// state.json as the engine writes it today (serde_json's pretty form).
    const TODAY: &str = r#"{
  "schema": 1,
  "state": "restarting",
  "engine_pid": 4242,
  "main_pid": null,
  "n_restarts": 3,
  "result": "oom-kill",
  "last_exit": -9,
  "last_watchdog_unix": 1796000000.25,
  "watchdog_usec": 30000000,
  "status_text": "trading: 2 positions",
  "started_unix": 1795990000.5,
  "memory_limit": "cgroup",
  "cgroup": "/sys/fs/cgroup/jarvis-supervisor-run",
  "down_since_unix": 1796000001.0,
  "restarts_unix": [
    1795999000.0,
    1796000001.0
  ]
}
"#;

    /// What the first engine wrote: no cgroup, down_since_unix or restarts_unix.
    const FIRST_VERSION: &str = r#"{
  "schema": 1,
  "state": "failed",
  "engine_pid": 77,
  "main_pid": null,
  "n_restarts": 5,
  "result": "start-limit-hit",
  "last_exit": 1,
  "last_watchdog_unix": null,
  "watchdog_usec": 0,
  "status_text": "",
  "started_unix": 1795990000.0,
  "memory_limit": "none"
}"#;

    fn write_read(st: &State) -> (String, State) {
        let dir = tempfile::tempdir().unwrap();
        StateFile::new(dir.path()).write(st);
        let text = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
        (
            text,
            StateFile::read(dir.path()).expect("the file just written is read back"),
        )
    }

    #[test]
    fn todays_file_reads_as_enums_and_is_written_back_byte_for_byte() {
        let st: State = serde_json::from_str(TODAY).unwrap();
        assert_eq!(st.state, RunState::Restarting);
        assert_eq!(st.result, RunResult::OomKill);
        assert_eq!(st.restarts_unix, [1795999000.0, 1796000001.0]);
        let (text, again) = write_read(&st);
        assert_eq!(text, TODAY);
        assert_eq!(again.state, RunState::Restarting);
    }

    #[test]
    fn a_first_version_file_still_reads() {
        let st: State = serde_json::from_str(FIRST_VERSION).unwrap();
        assert_eq!(st.state, RunState::Failed);
        assert_eq!(st.result, RunResult::StartLimitHit);
        assert_eq!(st.cgroup, None);
        assert_eq!(st.down_since_unix, None);
        assert!(st.restarts_unix.is_empty());
    }

    #[test]
    fn every_word_is_written_as_older_versions_wrote_it() {
        let states = [
            (RunState::Starting, "starting"),
            (RunState::Running, "running"),
            (RunState::Stopping, "stopping"),
            (RunState::Restarting, "restarting"),
            (RunState::Failed, "failed"),
            (RunState::Stopped, "stopped"),
        ];
        for (v, word) in states {
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{word}\""));
            assert_eq!(
                serde_json::from_str::<RunState>(&format!("\"{word}\"")).unwrap(),
                v
            );
        }
        let results = [
            (RunResult::Success, "success"),
            (RunResult::ExitCode, "exit-code"),
            (RunResult::Signal, "signal"),
            (RunResult::OomKill, "oom-kill"),
            (RunResult::Timeout, "timeout"),
            (RunResult::Watchdog, "watchdog"),
            (RunResult::StartLimitHit, "start-limit-hit"),
            (RunResult::Protocol, "protocol"),
            (RunResult::ExecCondition, "exec-condition"),
            (RunResult::Stop, "stop"),
        ];
        for (v, word) in results {
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{word}\""));
            assert_eq!(
                serde_json::from_str::<RunResult>(&format!("\"{word}\"")).unwrap(),
                v
            );
        }
    }

    #[test]
    fn a_word_of_a_newer_engine_is_kept_not_refused() {
        let text = TODAY
            .replace("\"restarting\"", "\"auto-restart-queued\"")
            .replace("\"oom-kill\"", "\"core-dump\"");
        let st: State = serde_json::from_str(&text).unwrap();
        assert_eq!(st.state, RunState::Other("auto-restart-queued".into()));
        assert_eq!(st.result.as_str(), "core-dump");
        assert_eq!(write_read(&st).0, text);
    }

    #[test]
    fn a_rewrite_in_place_covers_the_old_text_and_never_grows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("state.json");
        let st: State = serde_json::from_str(TODAY).unwrap();
        std::fs::write(&f, format!("{TODAY}{}", " ".repeat(300))).unwrap();
        let mut text = serde_json::to_vec(&st).unwrap();
        text.push(b'\n');
        rewrite_in_place(&f, text.clone()).unwrap();
        let back = std::fs::read(&f).unwrap();
        assert_eq!(back.len(), TODAY.len() + 300, "the old tail is covered");
        let again: State = serde_json::from_slice(&back).expect("reads back");
        assert_eq!(again.n_restarts, st.n_restarts);
        // More than the file's blocks hold: refused, the old text stays.
        let before = std::fs::read(&f).unwrap();
        let blocks = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&f).unwrap()) as usize * 512;
        let huge = vec![b' '; blocks.max(before.len()) + 1];
        assert!(rewrite_in_place(&f, huge).is_err());
        assert_eq!(std::fs::read(&f).unwrap(), before);
    }
}
