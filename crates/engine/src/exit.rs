//! A process of the program ended: its group is emptied, the run's result
//! is decided, and Restart= says whether it starts again.

use std::os::unix::process::ExitStatusExt;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::{say, Child, Engine, KillReason, Role, Timer};
use jarvis_model::service::{ExecLine, Kind, Restart};
use jarvis_model::state::{self, now_unix, RunResult, RunState};

impl Engine {
    pub(super) fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(ws) => {
                    let Some(pid) = ws.pid() else { break };
                    let raw = match ws {
                        WaitStatus::Exited(_, c) => c << 8,
                        WaitStatus::Signaled(_, s, core) => s as i32 | if core { 0x80 } else { 0 },
                        _ => continue,
                    };
                    let status = std::process::ExitStatus::from_raw(raw);
                    if let Some(child) = self.child.filter(|c| c.pid == pid) {
                        self.child = None;
                        self.exited(child, status);
                    }
                }
            }
        }
        if let Some((c, status, _)) = self.draining {
            if self.members().is_empty() {
                self.draining = None;
                self.after_exit(c, status);
            }
        }
    }

    pub(super) fn exited(&mut self, child: Child, status: std::process::ExitStatus) {
        self.drain_output();
        if child.role == Role::Main {
            self.st.main_pid = None;
            say!("main process {} exited, {}", child.pid, describe(&status));
        }
        // What is left of its processes goes too, as systemd empties the
        // cgroup: SIGTERM, then SIGKILL after TimeoutStopSec=. They are
        // our descendants (we are their subreaper), so each exit wakes us
        // up through SIGCHLD.
        if !self.members().is_empty() {
            let pending_kill = self.timer.filter(|(_, t)| *t == Timer::Kill);
            if pending_kill.is_none() {
                say!(
                    "processes of its group remain: SIGTERM, then SIGKILL after {}",
                    self.svc
                        .timeout_stop
                        .map_or("no timeout".to_string(), |d| format!(
                            "TimeoutStopSec={}s",
                            d.as_secs_f64()
                        ))
                );
                self.signal_members(Signal::SIGTERM);
            }
            self.timer =
                pending_kill.or_else(|| self.svc.timeout_stop.map(|d| (Instant::now() + d, Timer::Kill)));
            self.draining = Some((child, status, 0));
            return;
        }
        self.after_exit(child, status);
    }

    /// The group of an exited process is empty (or given up on): go on.
    pub(super) fn after_exit(&mut self, child: Child, status: std::process::ExitStatus) {
        self.timer = None;
        match child.role {
            Role::Condition(i) => {
                let argv = self.svc.exec_condition[i].argv.clone();
                if self.stop_requested {
                    self.finish_stopped();
                } else if status.success() {
                    self.run_condition(i + 1);
                } else if child.kill_reason.is_none() && status.code().is_some_and(|c| (1..=254).contains(&c))
                {
                    self.skipped(&argv, &status);
                } else {
                    say!("ExecCondition={} exited, {}", argv.join(" "), describe(&status));
                    let result = child
                        .kill_reason
                        .map_or_else(|| ended_by(&status), KillReason::result);
                    self.after_failed_start(result, Some(&status));
                }
            }
            Role::Pre(i) => {
                let line: &ExecLine = &self.svc.exec_start_pre[i];
                let ok = status.success() || (line.ignore_failure && child.kill_reason.is_none());
                if !status.success() {
                    say!(
                        "ExecStartPre={} exited, {}{}",
                        line.argv.join(" "),
                        describe(&status),
                        if ok { " (ignored: '-' prefix)" } else { "" }
                    );
                }
                if ok {
                    self.run_pre(i + 1);
                } else if self.stop_requested {
                    self.finish_stopped();
                } else {
                    let result = child
                        .kill_reason
                        .map_or_else(|| ended_by(&status), KillReason::result);
                    self.after_failed_start(result, Some(&status));
                }
            }
            Role::Main => {
                if self.stop_requested {
                    self.finish_stopped();
                    return;
                }
                let before_ready = self.svc.kind == Kind::Notify && self.st.state == RunState::Starting;
                let oom = self.oom_killed();
                let result = match child.kill_reason {
                    Some(r) => r.result(),
                    None if status.signal() == Some(Signal::SIGKILL as i32) && oom => RunResult::OomKill,
                    // As systemd: a clean exit before READY=1 breaks the
                    // notify protocol (the program's own pause does this;
                    // the restart's ExecCondition= then skips the start).
                    None if before_ready && status.code() == Some(0) => RunResult::Protocol,
                    None if is_clean(&status) => RunResult::Success,
                    None => ended_by(&status),
                };
                self.after_failed_start(result, Some(&status));
            }
        }
    }

    /// Whether the kernel OOM-killed a process of the program's cgroup since
    /// the last exit (its own count, which the service user cannot forge).
    pub(super) fn oom_killed(&mut self) -> bool {
        let now = self.limit.oom_kills();
        let grew = matches!((self.oom_seen, now), (Some(before), Some(n)) if n > before)
            || matches!((self.oom_seen, now), (None, Some(n)) if n > 0);
        if now.is_some() {
            self.oom_seen = now;
        }
        if grew {
            say!(
                "the kernel's OOM killer ended a process of the program (oom_kill count of its cgroup: {})",
                now.unwrap_or(0)
            );
        }
        grew
    }

    /// After the program (or a start command) ended on its own, by a timeout
    /// or by the watchdog: restart or give up, per Restart=.
    pub(super) fn after_failed_start(
        &mut self,
        result: RunResult,
        status: Option<&std::process::ExitStatus>,
    ) {
        self.st.last_exit = status.map(|s| s.code().unwrap_or_else(|| -s.signal().unwrap_or(0)));
        if self.st.down_since_unix.is_none() {
            self.st.down_since_unix = Some(now_unix());
            self.st.down_since_boot_s = Some(state::now_boot());
        }
        let restart = restart_wanted(self.svc.restart, &result);
        self.st.result = result.clone();
        if !restart {
            self.remove_runtime_dirs(true);
            if result == RunResult::Success {
                say!("the program ended (result {result}); Restart= does not restart it");
                self.st.state = RunState::Stopped;
                self.done = Some(0);
            } else {
                say!("the program failed (result {result}); Restart= does not restart it");
                self.st.state = RunState::Failed;
                self.done = Some(1);
            }
            self.save();
            return;
        }
        self.remove_runtime_dirs(false);
        self.st.n_restarts += 1;
        self.st.state = RunState::Restarting;
        if self.st.restarts_unix.len() >= state::RESTARTS_KEPT {
            self.st.restarts_unix.remove(0);
        }
        self.st.restarts_unix.push(now_unix());
        if self.st.restarts_boot_s.len() >= state::RESTARTS_KEPT {
            self.st.restarts_boot_s.remove(0);
        }
        self.st.restarts_boot_s.push(state::now_boot());
        say!(
            "result {result}; restart {} in {:.1}s (RestartSec=)",
            self.st.n_restarts,
            self.svc.restart_sec.as_secs_f64()
        );
        self.timer = Some((Instant::now() + self.svc.restart_sec, Timer::RestartDue));
        self.save_after_turn();
    }
}

/// How a process ended on its own, when nothing else explains it.
fn ended_by(status: &std::process::ExitStatus) -> RunResult {
    if status.code().is_some() {
        RunResult::ExitCode
    } else {
        RunResult::Signal
    }
}

/// An exit systemd counts as clean: status 0, or death by SIGHUP, SIGINT,
/// SIGTERM or SIGPIPE.
fn is_clean(status: &std::process::ExitStatus) -> bool {
    match (status.code(), status.signal()) {
        (Some(0), _) => true,
        (_, Some(s)) => [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM, Signal::SIGPIPE]
            .iter()
            .any(|&sig| sig as i32 == s),
        _ => false,
    }
}

/// Whether Restart= restarts after a run that ended with `result`.
fn restart_wanted(restart: Restart, result: &RunResult) -> bool {
    let unclean_signal = *result == RunResult::Signal;
    match restart {
        Restart::No => false,
        Restart::Always => true,
        Restart::OnSuccess => *result == RunResult::Success,
        Restart::OnFailure => *result != RunResult::Success,
        Restart::OnAbnormal => {
            unclean_signal
                || matches!(
                    result,
                    RunResult::Timeout | RunResult::Watchdog | RunResult::OomKill
                )
        }
        Restart::OnWatchdog => *result == RunResult::Watchdog,
        Restart::OnAbort => unclean_signal,
    }
}

/// As systemd's log says it: `code=exited, status=N` or `code=killed, signal=NAME`.
pub(super) fn describe(status: &std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("code=exited, status={c}"),
        (_, Some(s)) => format!(
            "code=killed, signal={}",
            Signal::try_from(s).map_or(s.to_string(), |sig| sig
                .as_str()
                .trim_start_matches("SIG")
                .to_string())
        ),
        _ => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_follows_systemds_table() {
        use RunResult as R;
        // systemd.service(5), "Table 2. Exit causes and the effect of the Restart= settings",
        // with oom-kill counted as abnormal.
        let results = [
            R::Success,
            R::ExitCode,
            R::Signal,
            R::Timeout,
            R::Watchdog,
            R::OomKill,
        ];
        let table: [(Restart, [bool; 6]); 7] = [
            (Restart::No, [false, false, false, false, false, false]),
            (Restart::Always, [true, true, true, true, true, true]),
            (Restart::OnSuccess, [true, false, false, false, false, false]),
            (Restart::OnFailure, [false, true, true, true, true, true]),
            (Restart::OnAbnormal, [false, false, true, true, true, true]),
            (Restart::OnAbort, [false, false, true, false, false, false]),
            (Restart::OnWatchdog, [false, false, false, false, true, false]),
        ];
        for (restart, row) in table {
            for (result, want) in results.iter().zip(row) {
                assert_eq!(
                    restart_wanted(restart, result),
                    want,
                    "Restart={restart:?}, result {result}"
                );
            }
        }
    }

    #[test]
    fn a_clean_exit_is_status_0_or_a_stop_signal() {
        let exited = |c: i32| std::process::ExitStatus::from_raw(c << 8);
        let killed = |s: Signal| std::process::ExitStatus::from_raw(s as i32);
        assert!(is_clean(&exited(0)));
        assert!(!is_clean(&exited(1)));
        for s in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM, Signal::SIGPIPE] {
            assert!(is_clean(&killed(s)), "{s}");
        }
        assert!(!is_clean(&killed(Signal::SIGKILL)));
        assert!(!is_clean(&killed(Signal::SIGABRT)));
        assert_eq!(ended_by(&exited(3)), RunResult::ExitCode);
        assert_eq!(ended_by(&killed(Signal::SIGSEGV)), RunResult::Signal);
        assert_eq!(describe(&exited(3)), "code=exited, status=3");
        assert_eq!(describe(&killed(Signal::SIGKILL)), "code=killed, signal=KILL");
    }
}
