//! Starting the program: the start limit, ExecCondition=, ExecStartPre=,
//! ExecStart= and READY; the processes' launch and runtime directories.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use nix::unistd::Pid;

use super::members::{self, Cgroup};
use super::memory::Limit;
use super::{environment, leftovers, say, spawn, Child, Engine, Role, Timer};
use jarvis_model::error::{Error, Result};
use jarvis_model::service::{Kind, Preserve};
use jarvis_model::state::{RunResult, RunState};

impl Engine {
    pub(super) fn start_cycle(&mut self) {
        let now = Instant::now();
        let interval = self.svc.start_limit_interval;
        if !interval.is_zero() && self.svc.start_limit_burst > 0 {
            while self
                .starts
                .front()
                .is_some_and(|t| now.duration_since(*t) > interval)
            {
                self.starts.pop_front();
            }
            if self.starts.len() >= self.svc.start_limit_burst as usize {
                say!(
                    "start limit hit: {} starts within {}s (StartLimitBurst={}, StartLimitIntervalSec={}s); giving up",
                    self.starts.len(),
                    interval.as_secs_f64(),
                    self.svc.start_limit_burst,
                    interval.as_secs_f64()
                );
                say!("note: fix the cause (see the program output above), then start it again");
                self.st.state = RunState::Failed;
                self.st.result = RunResult::StartLimitHit;
                self.st.main_pid = None;
                self.remove_runtime_dirs(true);
                self.save();
                // At once, as systemd's OnFailure= does (jarvisctl alert).
                self.alert(&format!(
                    "jarvisctl run gave up: start limit hit ({} starts within {}s)",
                    self.starts.len(),
                    interval.as_secs_f64()
                ));
                self.done = Some(1);
                return;
            }
            self.starts.push_back(now);
        }
        self.start_began = now;
        // Made after the last start, off the path from an exit to the next
        // start (it reads /dev/urandom).
        self.invocation_id = match std::mem::take(&mut self.next_invocation_id) {
            id if id.is_empty() => leftovers::invocation_id(),
            id => id,
        };
        self.st.state = RunState::Starting;
        self.st.main_pid = None;
        self.save_after_turn();
        if let Err(e) = self.make_runtime_dirs() {
            say!("{e}");
            self.after_failed_start(RunResult::ExitCode, None);
            return;
        }
        self.run_condition(0);
    }

    /// `ExecCondition=` commands in turn, then the start proper.
    pub(super) fn run_condition(&mut self, idx: usize) {
        if self.stop_requested {
            self.finish_stopped();
            return;
        }
        let Some(line) = self.svc.exec_condition.get(idx) else {
            self.run_pre(0);
            return;
        };
        let argv = line.argv.clone();
        match self.spawn(&argv, Role::Condition(idx)) {
            Ok(pid) => {
                self.child = Some(Child {
                    pid,
                    role: Role::Condition(idx),
                    kill_reason: None,
                });
                self.set_start_timer();
            }
            Err(e) => {
                say!("{e}");
                self.after_failed_start(RunResult::ExitCode, None);
            }
        }
    }

    /// An `ExecCondition=` said no (exit 1-254): as systemd, the start is
    /// skipped, which is no failure: no restart, no alert; the engine ends.
    pub(super) fn skipped(&mut self, argv: &[String], status: &std::process::ExitStatus) {
        say!(
            "ExecCondition={} exited, {}: start skipped (not a failure; no restart)",
            argv.join(" "),
            super::exit::describe(status)
        );
        self.timer = None;
        self.remove_runtime_dirs(true);
        self.st.state = RunState::Stopped;
        self.st.result = RunResult::ExecCondition;
        self.st.main_pid = None;
        self.save();
        self.done = Some(0);
    }

    pub(super) fn run_pre(&mut self, idx: usize) {
        if self.stop_requested {
            self.finish_stopped();
            return;
        }
        let (argv, role) = match self.svc.exec_start_pre.get(idx) {
            Some(line) => (line.argv.clone(), Role::Pre(idx)),
            None => (self.svc.exec_start.argv.clone(), Role::Main),
        };
        match self.spawn(&argv, role) {
            Ok(pid) => {
                self.child = Some(Child {
                    pid,
                    role,
                    kill_reason: None,
                });
                if role == Role::Main {
                    self.next_invocation_id = leftovers::invocation_id();
                    self.st.main_pid = Some(pid.as_raw());
                    say!("started {} (pid {pid})", argv.join(" "));
                    if self.svc.kind == Kind::Simple {
                        self.became_ready();
                    } else {
                        self.set_start_timer();
                        self.save();
                    }
                } else {
                    self.set_start_timer();
                }
            }
            Err(e) => {
                say!("{e}");
                self.after_failed_start(RunResult::ExitCode, None);
            }
        }
    }

    pub(super) fn set_start_timer(&mut self) {
        self.timer = self.svc.timeout_start.map(|d| (Instant::now() + d, Timer::Start));
    }

    pub(super) fn became_ready(&mut self) {
        self.st.state = RunState::Running;
        self.st.down_since_unix = None;
        self.st.down_since_boot_s = None;
        self.timer = self.watchdog.map(|d| (Instant::now() + d, Timer::Watchdog));
        if self.svc.kind == Kind::Notify {
            say!(
                "ready (pid {}) after {:.1}s",
                self.st.main_pid.unwrap_or(0),
                self.start_began.elapsed().as_secs_f64()
            );
        }
        self.save();
    }

    pub(super) fn spawn(&mut self, argv: &[String], role: Role) -> Result<Pid> {
        let what = match role {
            Role::Main => "ExecStart=".to_string(),
            Role::Condition(i) => format!("ExecCondition= #{}", i + 1),
            Role::Pre(i) => format!("ExecStartPre= #{}", i + 1),
        };
        let notify_socket = match role {
            Role::Main => self.notify.as_ref().map(|n| n.path.as_path()),
            Role::Pre(_) | Role::Condition(_) => None,
        };
        let env = environment::assemble(
            &self.svc,
            &environment::Start {
                invocation_id: &self.invocation_id,
                account: self.account.as_ref(),
                runtime_dirs: &self.runtime_dirs,
                notify_socket,
                what: &what,
            },
        )?;
        // `+`: as systemd, the command keeps root (jarvisctl settle).
        let privileged = match role {
            Role::Pre(i) => self.svc.exec_start_pre.get(i).is_some_and(|l| l.privileged),
            Role::Condition(i) => self.svc.exec_condition.get(i).is_some_and(|l| l.privileged),
            Role::Main => self.svc.exec_start.privileged,
        };
        let identity = self.account.as_ref().filter(|_| !privileged).map(|a| {
            let gid = nix::unistd::Gid::from_raw(a.gid);
            let groups = std::ffi::CString::new(a.name.as_str())
                .ok()
                .and_then(|name| nix::unistd::getgrouplist(&name, gid).ok())
                .unwrap_or_else(|| vec![gid]);
            spawn::Identity {
                uid: a.uid,
                gid: a.gid,
                groups,
            }
        });
        let chdir = self
            .svc
            .working_directory
            .as_ref()
            .filter(|w| !w.optional || w.path.is_dir())
            .map(|w| w.path.as_path());
        let (cgroups, rlimit): (Vec<&Path>, _) = match &self.limit {
            Limit::Cgroup(procs) => (vec![procs.as_path()], None),
            Limit::Rlimit(max) => (vec![], Some(*max)),
            Limit::None => (vec![], None),
        };
        let track = self
            .cgroup
            .as_ref()
            .map(Cgroup::procs)
            .filter(|p| !cgroups.contains(&p.as_path()));
        let watchdog = match role {
            Role::Main => self.watchdog.map(|w| w.as_micros()),
            Role::Pre(_) | Role::Condition(_) => None,
        };
        let cannot = |e: std::io::Error| Error::new(format!("cannot start {}: {e}", argv.join(" ")));
        let launch = spawn::Launch::new(
            argv,
            &env,
            watchdog,
            chdir,
            &cgroups,
            rlimit,
            identity,
            self.svc.umask,
            self.svc.no_new_privileges,
        )
        .map_err(cannot)?;
        let launch = match &track {
            Some(procs) => launch.track(procs).map_err(cannot)?,
            None => launch,
        };
        let pid = launch.spawn(&self.log_write, &self.log_write).map_err(cannot)?;
        // Not let into the cgroup (a kernel's or a container's rule): an
        // empty cgroup would look like a program with nothing left, so its
        // processes are found as the engine's descendants from now on.
        if let Some(cg) = &self.cgroup {
            if members::live(pid.as_raw()) && !cg.pids().contains(&pid.as_raw()) {
                say!(
                    "the program could not join its cgroup {}; stop ends the engine's descendants instead (it is their subreaper)",
                    cg.dir.display()
                );
                cg.remove();
                self.cgroup = None;
                self.st.cgroup = None;
            }
        }
        let uid = self
            .account
            .as_ref()
            .map_or_else(|| nix::unistd::getuid().as_raw(), |a| a.uid);
        leftovers::record(&self.state_dir, pid, &self.invocation_id, uid);
        Ok(pid)
    }

    pub(super) fn make_runtime_dirs(&self) -> Result<()> {
        for d in &self.runtime_dirs {
            if !d.is_dir() {
                std::fs::create_dir_all(d).map_err(|e| Error::io("create RuntimeDirectory", d, e))?;
            }
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
            if let Some(a) = &self.account {
                std::os::unix::fs::chown(d, Some(a.uid), Some(a.gid))
                    .map_err(|e| Error::io("chown RuntimeDirectory", d, e))?;
            }
        }
        Ok(())
    }

    /// `restarting`: kept when RuntimeDirectoryPreserve=restart or yes.
    pub(super) fn remove_runtime_dirs(&self, final_stop: bool) {
        let keep = match self.svc.runtime_preserve {
            Preserve::Yes => true,
            Preserve::Restart => !final_stop,
            Preserve::No => false,
        };
        if !keep {
            for d in &self.runtime_dirs {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
}
