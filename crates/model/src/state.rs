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
    /// The same moments on CLOCK_BOOTTIME (seconds since boot), which a
    /// change of the wall clock does not move: ages are taken from these
    /// when present (an older engine's file has none of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_watchdog_boot_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_since_boot_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarts_boot_s: Vec<f64>,
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

/// Seconds since boot on CLOCK_BOOTTIME: never jumps with the wall clock,
/// and counts a suspend (as /proc's process start times do).
pub fn now_boot() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
        .unwrap_or(0.0)
}

/// The age of a moment recorded as `boot` (CLOCK_BOOTTIME) and `wall`:
/// from the boot clock when there is a stamp of this boot, else from the
/// wall clock (an older engine's file).
pub fn age(boot: Option<f64>, wall: f64, now_boot: f64, now_unix: f64) -> f64 {
    match boot {
        Some(b) if b <= now_boot => now_boot - b,
        _ => (now_unix - wall).max(0.0),
    }
}

/// What reading `state.json` found.
#[derive(Debug)]
pub enum Read {
    /// No file: no engine ran since boot (the directory is in /run).
    Missing,
    /// A file that is not an engine's state: truncated, emptied, garbage.
    /// The text says what is wrong with it, never its content.
    Corrupt(String),
    Ok(Box<State>),
}

/// state.json is a few hundred bytes; more is not the engine's.
const MAX_STATE_BYTES: u64 = 1 << 20;

pub struct StateFile {
    path: PathBuf,
    tmp: PathBuf,
    /// What the last write put there: a change by anyone else is seen.
    written: Vec<u8>,
}

impl StateFile {
    pub fn new(dir: &Path) -> StateFile {
        StateFile {
            path: dir.join("state.json"),
            tmp: dir.join(".state.json.tmp"),
            written: Vec::new(),
        }
    }

    /// The last state written, if any (what `jarvisctl status` reads).
    pub fn read(dir: &Path) -> Option<State> {
        match StateFile::check(dir) {
            Read::Ok(st) => Some(*st),
            _ => None,
        }
    }

    /// The last state written, or why there is none.
    pub fn check(dir: &Path) -> Read {
        use std::io::Read as _;
        let path = dir.join("state.json");
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Read::Missing,
            Err(e) => return Read::Corrupt(format!("unreadable: {e}")),
        };
        let mut text = Vec::new();
        if let Err(e) = file.take(MAX_STATE_BYTES + 1).read_to_end(&mut text) {
            return Read::Corrupt(format!("unreadable: {e}"));
        }
        if text.len() as u64 > MAX_STATE_BYTES {
            return Read::Corrupt(format!("over {MAX_STATE_BYTES} bytes"));
        }
        if text.iter().all(u8::is_ascii_whitespace) {
            return Read::Corrupt("empty".into());
        }
        // Where it breaks, never what it holds (serde's message may quote it).
        match serde_json::from_slice(&text) {
            Ok(st) => Read::Ok(Box::new(st)),
            Err(e) => {
                let at = format!("line {} column {}, {} bytes", e.line(), e.column(), text.len());
                Read::Corrupt(match e.classify() {
                    serde_json::error::Category::Eof => format!("truncated: it ends at {at}"),
                    serde_json::error::Category::Data => {
                        format!("not the engine's state: a wrong field at {at}")
                    }
                    _ => format!("not the engine's JSON: broken at {at}"),
                })
            }
        }
    }

    /// Best effort: a full disk must not stop the supervision. Whether
    /// the file now holds `st`.
    pub fn write(&mut self, st: &State) -> bool {
        let Ok(mut text) = serde_json::to_vec_pretty(st) else {
            return false;
        };
        text.push(b'\n');
        if std::fs::write(&self.tmp, &text).is_ok() && std::fs::rename(&self.tmp, &self.path).is_ok() {
            self.written = text;
            return true;
        }
        // A full filesystem (/run, issue 27): the half-written temporary
        // file gives its space back, and the state goes over the old file in
        // place, where that takes no new block, rather than going stale
        // (status would show a dead pid as running).
        let _ = std::fs::remove_file(&self.tmp);
        match crate::filesystem::rewrite_in_place(&self.path, &text, crate::filesystem::Tail::Spaces) {
            Ok(held) => {
                self.written = held;
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the file still holds what the last write put there: false
    /// when someone else changed, truncated or removed it.
    pub fn intact(&self) -> bool {
        use std::io::Read as _;
        let mut now = Vec::new();
        std::fs::File::open(&self.path)
            .and_then(|f| f.take(self.written.len() as u64 + 1).read_to_end(&mut now))
            .is_ok_and(|_| now == self.written)
    }
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

    /// Issue 27, item 9: a truncated, emptied or garbage file is named as
    /// such (and where it breaks), not taken for "no engine"; its content
    /// is never repeated.
    #[test]
    fn a_damaged_file_is_named_corrupt_not_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(StateFile::check(dir.path()), Read::Missing));
        let p = dir.path().join("state.json");
        let cases: [(&[u8], &str); 4] = [
            (&TODAY.as_bytes()[..40], "truncated: it ends at line 3"),
            (b"", "empty"),
            (b"\n  \n", "empty"),
            (b"secret-token-garbage", "not the engine's JSON"),
        ];
        let wrong = TODAY.replace("4242", "\"secret\"");
        for (bytes, says) in cases {
            std::fs::write(&p, bytes).unwrap();
            match StateFile::check(dir.path()) {
                Read::Corrupt(why) => {
                    assert!(why.starts_with(says), "{why}");
                    assert!(!why.contains("secret"), "{why}");
                }
                other => panic!("{bytes:?} read as {other:?}"),
            }
            assert!(StateFile::read(dir.path()).is_none());
        }
        std::fs::write(&p, &wrong).unwrap();
        match StateFile::check(dir.path()) {
            Read::Corrupt(why) => assert!(
                why.starts_with("not the engine's state") && !why.contains("secret"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_changed_behind_the_writer_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::new(dir.path());
        let st: State = serde_json::from_str(TODAY).unwrap();
        f.write(&st);
        assert!(f.intact());
        std::fs::write(dir.path().join("state.json"), &TODAY.as_bytes()[..100]).unwrap();
        assert!(!f.intact());
        f.write(&st);
        assert!(f.intact());
        std::fs::remove_file(dir.path().join("state.json")).unwrap();
        assert!(!f.intact());
    }

    /// Issue 27, item 13: a wall clock 3 hours ahead (or behind) does not
    /// age a moment that has a boot-clock stamp; an older file's moment is
    /// aged by the wall clock, as before.
    #[test]
    fn ages_come_from_the_boot_clock_when_it_was_recorded() {
        let (now_boot, now_unix) = (5000.0, 1_796_000_000.0);
        let jumped = now_unix + 10_800.0;
        assert_eq!(age(Some(4998.0), now_unix - 2.0, now_boot, jumped), 2.0);
        assert_eq!(
            age(Some(4998.0), now_unix - 2.0, now_boot, now_unix - 10_800.0),
            2.0
        );
        assert_eq!(age(None, now_unix - 2.0, now_boot, now_unix), 2.0);
        // A boot stamp from after now is not this boot's: the wall clock.
        assert_eq!(age(Some(9000.0), now_unix - 7.0, now_boot, now_unix), 7.0);
        assert!(super::now_boot() > 0.0);
    }

    /// The new stamps are optional: a file without them reads, and one
    /// with them writes them back.
    #[test]
    fn boot_stamps_round_trip_and_are_optional() {
        let mut st: State = serde_json::from_str(TODAY).unwrap();
        assert_eq!(st.last_watchdog_boot_s, None);
        st.last_watchdog_boot_s = Some(12.5);
        st.restarts_boot_s = vec![3.0, 4.0];
        let (text, again) = write_read(&st);
        assert!(text.contains("\"last_watchdog_boot_s\": 12.5"), "{text}");
        assert_eq!(again.restarts_boot_s, [3.0, 4.0]);
        assert_eq!(again.down_since_boot_s, None);
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
}
