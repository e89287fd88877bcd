//! The health wait after a restart, judged on evidence rather than on a
//! fixed sleep. The host streams its `jarvisctl status --json` over the one
//! connection; each record is judged as it comes:
//! - healthy (state active, the bot's verdict OK) with evidence of the
//!   program's own, written by the process that now runs: its `/health`
//!   says healthy, or its newest component record (younger than the
//!   process) has every component running. The deploy succeeds at once.
//! - healthy with no such evidence (a program with neither): it must stay
//!   so, with the same pid, for the settle window.
//! - restarting or failed before it was ever healthy: a crash, at once.
//! - healthy, then not, or another pid: it did not stay up.

use std::io::{BufRead, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::error::{DeployError, Result};
use super::remote::{cannot_run_ssh, last_line};
use super::reply::Status;

/// The longest status record read as one.
const LINE_MAX: u64 = 1 << 20;

/// The bot judged healthy: its pid, and on what evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Healthy {
    pub pid: u64,
    /// "its /health says healthy, 0.4 s after the restart", or the settle
    /// window it stayed up for.
    pub how: String,
}

impl std::fmt::Display for Healthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}: {}", self.pid, self.how)
    }
}

/// Runs `cmd`, which prints one status record (JSON) a line, and judges
/// each as it comes; `cmd` is ended (our own child, by its handle) once
/// decided.
pub fn follow(mut cmd: Command, ready: Duration, settle: Duration) -> Result<Healthy> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(cannot_run_ssh)?;
    let (tx, rx) = mpsc::channel::<Option<String>>();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout);
        loop {
            // A longer line is cut, not kept whole.
            let mut line = Vec::new();
            match lines.by_ref().take(LINE_MAX).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx
                        .send(Some(String::from_utf8_lossy(&line).into_owned()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(None);
    });
    let mut watch = Watch::new(ready, settle);
    let decided = loop {
        let step = match rx.recv_timeout(watch.next_by(Instant::now())) {
            Ok(Some(line)) => match serde_json::from_str::<Status>(line.trim()) {
                Ok(st) => watch.see(st, Instant::now()),
                Err(_) => watch.unreadable(
                    format!("no status from the host: {}", last_line(&line)),
                    Instant::now(),
                ),
            },
            Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                // The host's side ended: ssh's own error.
                let _ = child.wait();
                let mut err = String::new();
                if let Some(e) = child.stderr.take() {
                    let _ = e.take(LINE_MAX).read_to_string(&mut err);
                }
                break Err(DeployError::SshFailed(format!(
                    "the status stream ended: {}",
                    last_line(&err)
                )));
            }
            Err(RecvTimeoutError::Timeout) => watch.quiet(Instant::now()),
        };
        if let Step::Done(r) = step {
            break r;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    decided
}

pub enum Step {
    /// Go on reading.
    Wait,
    /// Decided: the healthy pid, or why not.
    Done(Result<Healthy>),
}

pub struct Watch {
    ready: Duration,
    settle: Duration,
    t0: Instant,
    /// The pid first seen healthy, and when.
    up: Option<(u64, Instant)>,
    last: String,
}

impl Watch {
    pub fn new(ready: Duration, settle: Duration) -> Watch {
        Watch::at(ready, settle, Instant::now())
    }

    fn at(ready: Duration, settle: Duration, t0: Instant) -> Watch {
        Watch {
            ready,
            settle,
            t0,
            up: None,
            last: "no status yet".into(),
        }
    }

    /// How long to wait for the next record before [`Watch::quiet`].
    pub fn next_by(&self, now: Instant) -> Duration {
        let until = match self.up {
            Some((_, since)) => since + self.settle,
            None => self.t0 + self.ready,
        };
        until.saturating_duration_since(now)
    }

    /// A line from the host that is no status record: said if nothing
    /// better comes.
    pub fn unreadable(&mut self, why: String, now: Instant) -> Step {
        self.last = why;
        self.quiet(now)
    }

    /// A record from the host.
    pub fn see(&mut self, st: Status, now: Instant) -> Step {
        let pid = st.main_pid.unwrap_or(0);
        self.last = st.describe();
        if self.up.is_none() && (st.is("restarting") || st.is("failed")) {
            return Step::Done(Err(DeployError::Crashed(format!(
                "{}{}",
                self.last,
                st.last_error()
            ))));
        }
        match (self.up, st.healthy()) {
            (None, true) => {
                if let Some(how) = st.evidence() {
                    return Step::Done(Ok(self.healthy(pid, how, now)));
                }
                self.up = Some((pid, now));
            }
            (Some((p, _)), true) if p == pid => {
                if let Some(how) = st.evidence() {
                    return Step::Done(Ok(self.healthy(pid, how, now)));
                }
            }
            (Some((p, since)), _) => {
                return Step::Done(Err(DeployError::NotStable {
                    pid: p,
                    settle: self.settle.as_secs(),
                    after: now.duration_since(since).as_secs_f64(),
                    last: self.last.clone(),
                }));
            }
            (None, false) => {}
        }
        self.quiet(now)
    }

    fn healthy(&self, pid: u64, how: String, now: Instant) -> Healthy {
        Healthy {
            pid,
            how: format!(
                "{how}, {:.1} s after the restart",
                now.duration_since(self.t0).as_secs_f64()
            ),
        }
    }

    /// No new record by now: the settle window over, or the ready timeout.
    pub fn quiet(&mut self, now: Instant) -> Step {
        match self.up {
            Some((pid, since)) if now.duration_since(since) >= self.settle => Step::Done(Ok(Healthy {
                pid,
                how: format!(
                    "up and OK for the settle window ({} s); the program gave no /health or component record",
                    self.settle.as_secs()
                ),
            })),
            Some(_) => Step::Wait,
            None if now.duration_since(self.t0) >= self.ready => Step::Done(Err(DeployError::NotReady {
                ready: self.ready.as_secs(),
                last: self.last.clone(),
            })),
            None => Step::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: &str) -> Status {
        serde_json::from_str(json).unwrap()
    }

    const HEALTHY_NO_EVIDENCE: &str =
        r#"{"state":"active","verdict":"OK","main_pid":7,"uptime_s":1.0,"components":{"source":"none"}}"#;
    const HEALTHY_RECORD: &str = r#"{"state":"active","verdict":"OK","main_pid":7,"uptime_s":2.0,"components":{"source":"journal","age_s":1.0,"running":3,"total":3}}"#;
    const OLD_RECORD: &str = r#"{"state":"active","verdict":"OK","main_pid":7,"uptime_s":2.0,"components":{"source":"journal","age_s":30.0,"running":3,"total":3}}"#;
    const HEALTH_OK: &str = r#"{"state":"active","bot_verdict":"OK","verdict":"WARNING","main_pid":7,"uptime_s":0.5,"components":{"source":"health","age_s":0,"health":"healthy","running":2,"total":2}}"#;

    fn done(s: Step) -> Option<Result<u64>> {
        match s {
            Step::Wait => None,
            Step::Done(r) => Some(r.map(|h| h.pid)),
        }
    }

    #[test]
    fn evidence_of_the_new_process_ends_the_wait_at_once() {
        let t0 = Instant::now();
        for (json, how) in [
            (
                HEALTHY_RECORD,
                "its component record has all 3 running, 0.5 s after the restart",
            ),
            (HEALTH_OK, "its /health says healthy, 0.5 s after the restart"),
        ] {
            let mut w = Watch::at(Duration::from_secs(60), Duration::from_secs(20), t0);
            match w.see(status(json), t0 + Duration::from_millis(500)) {
                Step::Done(Ok(h)) => assert_eq!(
                    h,
                    Healthy {
                        pid: 7,
                        how: how.into()
                    },
                    "{json}"
                ),
                _ => panic!("not healthy at once: {json}"),
            }
        }
    }

    #[test]
    fn a_record_older_than_the_process_or_none_waits_the_settle_window() {
        let t0 = Instant::now();
        for json in [OLD_RECORD, HEALTHY_NO_EVIDENCE] {
            let mut w = Watch::at(Duration::from_secs(60), Duration::from_secs(5), t0);
            assert!(done(w.see(status(json), t0)).is_none(), "{json}");
            assert!(done(w.see(status(json), t0 + Duration::from_secs(3))).is_none());
            assert_eq!(w.next_by(t0 + Duration::from_secs(3)), Duration::from_secs(2));
            match w.quiet(t0 + Duration::from_secs(5)) {
                Step::Done(Ok(h)) => {
                    assert_eq!(h.pid, 7);
                    assert!(
                        h.how.starts_with("up and OK for the settle window (5 s)"),
                        "{}",
                        h.how
                    );
                }
                _ => panic!("not healthy after the settle window: {json}"),
            }
        }
    }

    #[test]
    fn a_crash_before_health_or_a_new_pid_after_it_fails_at_once() {
        let t0 = Instant::now();
        let mut w = Watch::at(Duration::from_secs(60), Duration::from_secs(5), t0);
        let crashed = status(r#"{"state":"restarting","verdict":"CRITICAL","main_pid":0}"#);
        assert!(matches!(
            done(w.see(crashed, t0)),
            Some(Err(DeployError::Crashed(_)))
        ));

        let mut w = Watch::at(Duration::from_secs(60), Duration::from_secs(5), t0);
        assert!(done(w.see(status(HEALTHY_NO_EVIDENCE), t0)).is_none());
        let other = status(&HEALTHY_NO_EVIDENCE.replace("\"main_pid\":7", "\"main_pid\":8"));
        assert!(matches!(
            done(w.see(other, t0 + Duration::from_secs(1))),
            Some(Err(DeployError::NotStable { pid: 7, .. }))
        ));
    }

    #[test]
    fn nothing_healthy_within_the_ready_timeout_is_not_ready() {
        let t0 = Instant::now();
        let mut w = Watch::at(Duration::from_secs(10), Duration::from_secs(5), t0);
        let starting = status(r#"{"state":"activating","verdict":"WARNING","main_pid":7}"#);
        assert!(done(w.see(starting, t0 + Duration::from_secs(2))).is_none());
        assert!(done(w.unreadable("ssh: broken pipe".into(), t0 + Duration::from_secs(9))).is_none());
        match done(w.quiet(t0 + Duration::from_secs(10))) {
            Some(Err(DeployError::NotReady { ready: 10, last })) => assert_eq!(last, "ssh: broken pipe"),
            _ => panic!("not NotReady"),
        }
    }
}
