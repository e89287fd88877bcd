//! The fallback engine of `jarvisctl run`: one event loop over a signalfd,
//! the notify socket and the log pipe. Timers are deadlines passed to
//! poll() as its timeout, so a healthy program costs no wakeups beyond its
//! own notify messages and output.
//!
//! Here: the engine's record and its turn of the loop. Its parts: `start`
//! (start limit, ExecCondition=, ExecStartPre=, ExecStart=, READY),
//! `exit` (an exit's result and Restart=), `stop` (timers that end the
//! program, signals to its group, a stop), `notify` (sd_notify messages),
//! `environment` (what a process starts with), `state` (state.json).

mod environment;
mod exit;
pub mod leftovers;
pub mod logsink;
pub mod members;
pub mod memory;
pub mod notify;
pub mod say;
mod spawn;
mod start;
mod stop;
mod trim;
mod watch;

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use jarvis_model::error::{Error, Result};
use jarvis_model::paths::Paths;
use jarvis_model::service::{Kind, NotifyAccess, Service};
use jarvis_model::state::{now_unix, RunResult, RunState, State, StateFile};
use logsink::LogSink;
use members::Cgroup;
use memory::Limit;
use notify::NotifySocket;

/// Where `jarvisctl run` keeps its lock, pid file, notify socket and state.
pub const STATE_DIR: &str = "/run/jarvis-supervisor-run";
pub const LOCK_FILE: &str = "run.lock";
pub const PID_FILE: &str = "run.pid";

/// One line per event, on stderr (the engine log under --daemon). A
/// closed or broken stderr is ignored: it must never stop the supervision.
/// Exported: `jarvisctl run` says its lines before the exec with the same prefix.
/// Rate-limited and bounded (see `say::say_line`).
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {{
        $crate::say::say_line(format!("jarvisctl run: {}\n", format_args!($($t)*)));
    }};
}

/// The service user, resolved once at start.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
}

impl Account {
    pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Account>> {
        use nix::unistd::{Group, User};
        let Some(name) = user else { return Ok(None) };
        // getpwnam_r through nix: the C library's own lookup (NSS), as
        // systemd does, and no extra crate in the engine binary.
        let lookup = |what: &str, e: nix::Error| {
            Error::new(format!("cannot look up {what}: {e}"))
                .with_note("check /etc/nsswitch.conf and /etc/passwd")
        };
        let u = User::from_name(name)
            .map_err(|e| lookup(&format!("User={name}"), e))?
            .ok_or_else(|| {
                Error::new(format!("User={name}: no such user on this host"))
                    .with_note("create it with: jarvisctl setup")
            })?;
        let gid = match group {
            None => u.gid.as_raw(),
            Some(g) => Group::from_name(g)
                .map_err(|e| lookup(&format!("Group={g}"), e))?
                .ok_or_else(|| {
                    Error::new(format!("Group={g}: no such group on this host"))
                        .with_note("create it with: jarvisctl setup")
                })?
                .gid
                .as_raw(),
        };
        Ok(Some(Account {
            name: name.to_string(),
            uid: u.uid.as_raw(),
            gid,
            home: u.dir,
            shell: u.shell,
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// TimeoutStartSec= for an ExecStartPre= command or until READY=1.
    Start,
    Watchdog,
    /// TimeoutStopSec=/TimeoutAbortSec= after SIGTERM/SIGABRT.
    Kill,
    RestartDue,
}

/// Why the engine is ending a process: the run's result if it then ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillReason {
    /// TimeoutStartSec= passed.
    Timeout,
    Watchdog,
    Stop,
}

impl KillReason {
    fn result(self) -> RunResult {
        match self {
            KillReason::Timeout => RunResult::Timeout,
            KillReason::Watchdog => RunResult::Watchdog,
            KillReason::Stop => RunResult::Stop,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Condition(usize),
    Pre(usize),
    Main,
}

#[derive(Debug, Clone, Copy)]
struct Child {
    pid: Pid,
    role: Role,
    /// Why we are killing it, when we are.
    kill_reason: Option<KillReason>,
}

pub struct Engine {
    svc: Service,
    account: Option<Account>,
    limit: Limit,
    /// The program's own cgroup, where this host lets us make one.
    cgroup: Option<Cgroup>,
    runtime_dirs: Vec<PathBuf>,
    notify: Option<NotifySocket>,
    logs: LogSink,
    log_write: OwnedFd,
    sigfd: SignalFd,
    st: State,
    statefile: StateFile,
    child: Option<Child>,
    timer: Option<(Instant, Timer)>,
    starts: VecDeque<Instant>,
    stop_requested: bool,
    done: Option<i32>,
    start_began: Instant,
    /// When the engine last dropped its clean pages (see `trim`).
    trimmed_at: Option<Instant>,
    /// Something ran since the last trim (its pages may be resident).
    touched: bool,
    watchdog: Option<Duration>,
    ignored_senders: u64,
    state_dir: PathBuf,
    /// systemd's INVOCATION_ID, new at each start; marks the group's processes.
    invocation_id: String,
    /// The next start's, ready in advance.
    next_invocation_id: String,
    /// An exited process whose group still has members, and SIGKILL rounds.
    draining: Option<(Child, std::process::ExitStatus, u32)>,
    last_save: Instant,
    /// A ping or STATUS= not yet in state.json (written at most every 100 ms).
    flush_at: Option<Instant>,
    /// Where `jarvisctl alert` finds heartbeat.conf when the engine gives up.
    paths: Paths,
    /// The jarvisctl that started this engine: it runs `jarvisctl alert`.
    jarvisctl: PathBuf,
    /// Which instance this engine runs: a named one's alert is its own
    /// (`jarvisctl alert --instance NAME`, its own heartbeat file).
    instance: jarvis_model::instance::Instance,
    /// The kernel's count of OOM kills in the program's cgroup at the last
    /// exit: a SIGKILL is an OOM kill only when this count grew.
    oom_seen: Option<u64>,
    /// state.json and run.pid, rewritten when anyone else damages them.
    watch: Option<watch::Watch>,
}

/// Pings and STATUS= go to state.json at most this often; a flood of them
/// must not turn into a flood of file writes.
const SAVE_EVERY: Duration = Duration::from_millis(100);
/// How often a running engine gives back its unused pages (see `trim`):
/// about 1 ms of work, once the program is ready and then at most this
/// often, only before a wait of a second or more.
const TRIM_EVERY: Duration = Duration::from_secs(30);

/// poll()'s timeout until `at` (none: wait for ever).
fn poll_timeout(at: Option<Instant>) -> PollTimeout {
    match at {
        None => PollTimeout::NONE,
        Some(at) => {
            let left = at.saturating_duration_since(Instant::now());
            // Round up: waking a little early would only poll again.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// A name of the engine's own, the same at every run, for its cgroup: the
/// next run finds a killed run's processes there, and a test's engine
/// under --root does not share the installed one's.
fn cgroup_name(paths: &Paths, state_dir: &Path) -> String {
    // The state directory's own name: one cgroup per instance.
    if paths.is_system() {
        return state_dir.file_name().map_or_else(
            || "jarvis-supervisor-run".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
    }
    // FNV-1a of the state directory's path.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in state_dir.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("jarvis-supervisor-run-{h:016x}")
}

impl Engine {
    pub fn new(
        svc: Service,
        paths: &Paths,
        state_dir: &Path,
        account: Option<Account>,
        jarvisctl: PathBuf,
        instance: &jarvis_model::instance::Instance,
    ) -> Result<Engine> {
        let owner = account.as_ref().map(|a| (a.uid, a.gid));
        // Signals arrive through the signalfd; children get a clean mask (std resets it).
        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGCHLD,
            Signal::SIGQUIT,
        ] {
            mask.add(s);
        }
        // A signal ignored by whoever started us (nohup ignores SIGHUP, a
        // shell's `&` SIGINT and SIGQUIT) would never reach the signalfd, and
        // would stay ignored in the program across exec. A handler (never
        // run while the signal is blocked) fixes both: exec resets a caught
        // signal to its default.
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT] {
            let _ = signal_hook::flag::register(s as i32, Arc::new(AtomicBool::new(false)));
        }
        mask.thread_block()
            .map_err(|e| Error::new(format!("cannot block signals: {e}")))?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| Error::new(format!("cannot create a signalfd: {e}")))?;

        // Orphans of the program are re-parented to us, not to an init that
        // may not reap them; the reap loop collects them. Without a cgroup,
        // this is also how stop finds every process the program started.
        let _ = nix::sys::prctl::set_child_subreaper(true);
        let cgroup_name = cgroup_name(paths, state_dir);
        let (limit, line) = memory::setup(svc.memory_max, &cgroup_name);
        say!("{line}");

        let notify = match svc.notify_access {
            NotifyAccess::None if svc.kind == Kind::Simple => None,
            _ => Some(NotifySocket::bind(&state_dir.join("notify"), owner)?),
        };

        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| Error::new(format!("cannot create the log pipe: {e}")))?;
        let _ = fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        let _ = fcntl(&read, FcntlArg::F_SETPIPE_SZ(logsink::PIPE_SIZE as i32));
        let logdir = svc
            .workdir()
            .map_or_else(|| state_dir.to_path_buf(), |w| w.join("logs"));
        let logs = LogSink::new(read, logdir.join(logsink::output_file(instance)), owner)?;
        say!("program output goes to {}", logs.path.display());
        // After the steps that can refuse the start: a refused start leaves
        // no cgroup behind.
        let (cgroup, line) = members::setup(&cgroup_name);
        say!("{line}");

        let runtime_dirs = svc
            .runtime_directory
            .iter()
            .map(|d| paths.host(Path::new("/run")).join(d))
            .collect();
        let st = State {
            schema: 1,
            state: RunState::Starting,
            engine_pid: std::process::id(),
            main_pid: None,
            n_restarts: 0,
            result: RunResult::Success,
            last_exit: None,
            last_watchdog_unix: None,
            watchdog_usec: svc.watchdog.map_or(0, |d| d.as_micros() as u64),
            status_text: String::new(),
            started_unix: now_unix(),
            memory_limit: limit.name().into(),
            cgroup: cgroup.as_ref().map(|c| c.dir.clone()),
            down_since_unix: Some(now_unix()),
            restarts_unix: Vec::new(),
            output_lines_lost: 0,
            output_lost_since_unix: None,
            last_watchdog_boot_s: None,
            down_since_boot_s: Some(jarvis_model::state::now_boot()),
            restarts_boot_s: Vec::new(),
        };
        let watchdog = svc.watchdog;
        let mut engine = Engine {
            svc,
            account,
            limit,
            cgroup,
            runtime_dirs,
            notify,
            logs,
            log_write: write,
            sigfd,
            st,
            statefile: StateFile::new(state_dir),
            child: None,
            timer: None,
            starts: VecDeque::new(),
            stop_requested: false,
            done: None,
            start_began: Instant::now(),
            trimmed_at: None,
            touched: true,
            watchdog,
            ignored_senders: 0,
            state_dir: state_dir.to_path_buf(),
            invocation_id: leftovers::invocation_id(),
            next_invocation_id: String::new(),
            draining: None,
            last_save: Instant::now(),
            flush_at: None,
            paths: paths.clone(),
            jarvisctl,
            instance: instance.clone(),
            oom_seen: None,
            watch: match watch::Watch::new(state_dir) {
                Ok(w) => Some(w),
                Err(e) => {
                    say!("{e}: a damaged state.json or run.pid is rewritten at the next change only");
                    None
                }
            },
        };
        engine.oom_seen = engine.limit.oom_kills();
        // This engine's state replaces the last one's before anyone is told
        // it started (`run --daemon`, the init script): status must never
        // show a finished run's "failed" for a start that is under way.
        engine.save();
        Ok(engine)
    }

    fn save(&mut self) {
        let _ = self.statefile.write(&self.st);
        self.last_save = Instant::now();
        self.flush_at = None;
    }

    /// Save soon: now if the last save is old enough, else at a deadline.
    fn save_soon(&mut self) {
        let due = self.last_save + SAVE_EVERY;
        if Instant::now() >= due {
            self.save();
        } else {
            self.flush_at = Some(due);
        }
    }

    /// The engine gave up: alert from a process of its own (`jarvisctl
    /// alert`), so that the engine's exit does not wait on a ping or a pager.
    fn alert(&self, reason: &str) {
        let mut cmd = std::process::Command::new(&self.jarvisctl);
        if !self.paths.is_system() {
            cmd.arg("--root").arg(self.paths.host(Path::new("/")));
        }
        // Its report goes where the engine's own messages go (stderr: the
        // engine log under --daemon, whose stdout is a closed pipe by then).
        if let Ok(err) = std::io::stderr().as_fd().try_clone_to_owned() {
            cmd.stdout(std::process::Stdio::from(err));
        }
        cmd.args(["alert", "--reason", reason]);
        if let jarvis_model::instance::Instance::Named(n) = &self.instance {
            cmd.arg("--instance").arg(n.as_str());
        }
        if let Err(e) = cmd.stdin(std::process::Stdio::null()).spawn() {
            say!("cannot run {} alert: {e}", self.jarvisctl.display());
        }
    }

    /// The program's output to its log; a change in what was lost goes to
    /// state.json (status reads it there).
    fn drain_output(&mut self) {
        for msg in self.logs.drain() {
            say!("{msg}");
        }
        let since = match (self.logs.failing(), self.st.output_lost_since_unix) {
            (true, None) => Some(now_unix()),
            (true, s) => s,
            (false, _) => None,
        };
        if self.logs.lines_lost != self.st.output_lines_lost || since != self.st.output_lost_since_unix {
            self.st.output_lines_lost = self.logs.lines_lost;
            self.st.output_lost_since_unix = since;
            self.save_soon();
        }
    }

    /// Save once this turn's work is done: a restart writes its state after
    /// the next program is started, not in the gap between the two.
    fn save_after_turn(&mut self) {
        let now = Instant::now();
        self.flush_at = Some(self.flush_at.map_or(now, |at| at.min(now)));
    }

    /// state.json or run.pid changed in the state directory: if not by us,
    /// written again from what this engine knows.
    fn repair(&mut self) {
        let Some(w) = &self.watch else { return };
        let touched = w.touched("state.json", PID_FILE);
        if touched.state && !self.statefile.intact() {
            self.save();
            if self.statefile.intact() {
                say!("state.json was changed by another process: written again from the live state");
            } else {
                say!("state.json was changed by another process and cannot be written again (is /run full?): status reads the live engine until the next write");
            }
        }
        let pid_path = self.state_dir.join(PID_FILE);
        let ours = format!("{}\n", std::process::id());
        if touched.pid && std::fs::read_to_string(&pid_path).ok().as_deref() != Some(ours.as_str()) {
            let tmp = self.state_dir.join(".run.pid.tmp");
            match std::fs::write(&tmp, &ours).and_then(|()| std::fs::rename(&tmp, &pid_path)) {
                Ok(()) => say!(
                    "{PID_FILE} was changed by another process: written again ({})",
                    ours.trim()
                ),
                Err(e) => say!("{PID_FILE} was changed by another process and cannot be written again: {e}"),
            }
        }
    }

    /// Run until stopped or given up; the exit code of `jarvisctl run`.
    pub fn run(mut self) -> Result<i32> {
        // What a killed predecessor left behind goes before anything starts.
        let grace = self.svc.timeout_stop.unwrap_or(Duration::from_secs(90));
        leftovers::end_previous(&self.state_dir, grace, self.cgroup.as_ref());
        self.start_cycle();
        while self.done.is_none() {
            self.turn();
        }
        self.drain_output();
        self.logs.flush_pending();
        self.save();
        // Kept while processes survive: status names them, the next run ends them.
        if self.members().is_empty() {
            leftovers::forget(&self.state_dir);
        }
        if let Limit::Cgroup(procs) = &self.limit {
            // Empty by now; a cgroup that still has processes stays.
            if let Some(dir) = procs.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
        if let Some(cg) = &self.cgroup {
            cg.remove();
        }
        Ok(self.done.unwrap_or(1))
    }

    fn turn(&mut self) {
        let next = match (self.timer.map(|(t, _)| t), self.flush_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = poll_timeout(next);
        // While the program runs, once something ran since the last trim,
        // before a long wait (a timer due soon would run code again), and
        // at most every TRIM_EVERY: the pages a watchdog ping or a flood of
        // output made resident go again, and a crash loop does not
        // re-fault them at every start. Too soon after the last one, the
        // wait ends when the next is allowed: one wakeup after activity,
        // none while idle.
        let long_wait = timeout == PollTimeout::NONE || timeout >= PollTimeout::from(1000u16);
        let trim_allowed = self.trimmed_at.map(|t| t + TRIM_EVERY);
        let (trim, timeout) = if self.touched && long_wait && self.st.state == RunState::Running {
            match trim_allowed {
                Some(at) if at > Instant::now() => {
                    (false, poll_timeout(Some(next.map_or(at, |n| n.min(at)))))
                }
                _ => (true, timeout),
            }
        } else {
            (false, timeout)
        };
        let scratch = self.logs.scratch_pages();
        let (sig_ready, log_ready, notify_ready, watch_ready) = {
            let mut fds = vec![
                PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.logs.fd(), PollFlags::POLLIN),
            ];
            if let Some(n) = &self.notify {
                fds.push(PollFd::new(n.fd(), PollFlags::POLLIN));
            }
            let watch_at = fds.len();
            if let Some(w) = &self.watch {
                fds.push(PollFd::new(w.fd(), PollFlags::POLLIN));
            }
            let polled = if trim {
                self.trimmed_at = Some(Instant::now());
                self.touched = false;
                trim::drop_pages_then_poll(&mut fds, timeout, scratch)
            } else {
                poll(&mut fds, timeout)
            };
            if polled.is_err() {
                return;
            }
            let ready = |i: usize| {
                fds.get(i)
                    .and_then(|f| f.revents())
                    .is_some_and(|r| !r.is_empty())
            };
            let notify_ready = self.notify.is_some() && ready(2);
            (ready(0), ready(1), notify_ready, ready(watch_at))
        };
        if sig_ready || log_ready || notify_ready {
            self.touched = true;
        }
        // Output first: a line written just before an exit lands before the exit's message.
        if log_ready {
            self.drain_output();
        }
        if notify_ready {
            self.read_notify();
        }
        if watch_ready {
            self.repair();
        }
        if sig_ready {
            while let Ok(Some(info)) = self.sigfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => self.reap(),
                    Ok(Signal::SIGHUP) => match self.logs.reopen() {
                        Ok(()) => say!("SIGHUP: reopened {}", self.logs.path.display()),
                        Err(e) => say!("SIGHUP: {e}; still writing to the old file"),
                    },
                    Ok(s) => self.request_stop(s),
                    Err(_) => {}
                }
            }
        }
        // Timers before the state file: a restart due now starts the
        // program first, and its save covers the exit's.
        if let Some((at, which)) = self.timer {
            if Instant::now() >= at {
                self.timer = None;
                self.touched = true;
                self.fire(which);
            }
        }
        if self.flush_at.is_some_and(|at| Instant::now() >= at) {
            self.save();
        }
    }
}
