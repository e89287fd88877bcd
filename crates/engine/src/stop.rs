//! Ending the program: the timers that end it (start timeout, watchdog,
//! SIGKILL after the grace), signals to its whole group, and a stop.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{members, say, Engine, KillReason, Role, Timer};
use jarvis_model::state::RunState;

impl Engine {
    pub(super) fn fire(&mut self, which: Timer) {
        match which {
            Timer::RestartDue => self.start_cycle(),
            Timer::Start => {
                let limit = self.svc.timeout_start.unwrap_or_default().as_secs_f64();
                match self.child.map(|c| c.role) {
                    Some(Role::Main) => {
                        say!("start timed out: no READY=1 within TimeoutStartSec={limit}s; terminating")
                    }
                    _ => say!("ExecStartPre= timed out after TimeoutStartSec={limit}s; terminating"),
                }
                self.signal_child(Signal::SIGTERM, KillReason::Timeout, self.svc.timeout_stop);
            }
            Timer::Watchdog => {
                let w = self.watchdog.unwrap_or_default().as_secs_f64();
                say!("watchdog timeout: no WATCHDOG=1 within {w}s; sending SIGABRT");
                self.signal_child(Signal::SIGABRT, KillReason::Watchdog, self.svc.timeout_abort);
            }
            Timer::Kill => {
                if let Some(c) = self.child {
                    say!("pid {} did not exit in time; sending SIGKILL", c.pid);
                    let _ = kill(c.pid, Signal::SIGKILL);
                    self.signal_members(Signal::SIGKILL);
                } else if let Some((c, status, tries)) = self.draining {
                    if self.members().is_empty() || tries >= 10 {
                        if tries >= 10 {
                            say!(
                                "processes of group {} survive SIGKILL; going on without them",
                                c.pid
                            );
                        }
                        self.draining = None;
                        self.after_exit(c, status);
                    } else {
                        if tries == 0 {
                            say!(
                                "processes of group {} did not exit in time; sending SIGKILL",
                                c.pid
                            );
                        }
                        self.signal_members(Signal::SIGKILL);
                        // Not every member need be our child: look again soon.
                        self.draining = Some((c, status, tries + 1));
                        self.timer = Some((Instant::now() + Duration::from_millis(100), Timer::Kill));
                    }
                }
            }
        }
    }

    /// Signal the current child and every other process the program
    /// started, and arm the SIGKILL timer.
    pub(super) fn signal_child(&mut self, sig: Signal, reason: KillReason, grace: Option<Duration>) {
        let Some(c) = self.child.as_mut() else { return };
        c.kill_reason.get_or_insert(reason);
        let pid = c.pid;
        let _ = kill(pid, sig);
        self.signal_members(sig);
        self.timer = grace.map(|g| (Instant::now() + g, Timer::Kill));
    }

    /// The live processes the program started (and the program): those in
    /// its cgroup, else the engine's descendants (it is their subreaper).
    pub(super) fn members(&self) -> Vec<i32> {
        match &self.cgroup {
            Some(cg) => cg.pids(),
            None => members::descendants(std::process::id() as i32),
        }
    }

    /// `sig` (then SIGCONT) to every one of them; SIGKILL through the
    /// cgroup's own kill where there is one.
    pub(super) fn signal_members(&self, sig: Signal) {
        if let (Some(cg), Signal::SIGKILL) = (&self.cgroup, sig) {
            cg.kill_all();
            return;
        }
        // Again while a pass finds a process the last ones did not signal
        // (forked meanwhile), as systemd does; bounded.
        let mut signalled: Vec<i32> = Vec::new();
        for _ in 0..10 {
            let new: Vec<i32> = self
                .members()
                .into_iter()
                .filter(|p| !signalled.contains(p))
                .collect();
            if new.is_empty() {
                break;
            }
            for &p in &new {
                let _ = kill(Pid::from_raw(p), sig);
                if sig != Signal::SIGKILL {
                    let _ = kill(Pid::from_raw(p), Signal::SIGCONT);
                }
            }
            signalled.extend(new);
        }
    }

    pub(super) fn request_stop(&mut self, sig: Signal) {
        if self.stop_requested {
            say!("{sig} again: still waiting for the program to stop");
            return;
        }
        self.stop_requested = true;
        say!("{sig}: stopping");
        match self.child {
            Some(_) => {
                self.st.state = RunState::Stopping;
                self.save();
                self.signal_child(Signal::SIGTERM, KillReason::Stop, self.svc.timeout_stop);
            }
            // Its leftovers already had SIGTERM; stop once they are gone.
            None if self.draining.is_some() => {
                self.st.state = RunState::Stopping;
                self.save();
            }
            None => self.finish_stopped(),
        }
    }

    pub(super) fn finish_stopped(&mut self) {
        self.timer = None;
        self.remove_runtime_dirs(true);
        self.st.state = RunState::Stopped;
        self.st.main_pid = None;
        say!("stopped");
        self.save();
        self.done = Some(0);
    }
}
