//! The fallback engine of `jarvisctl run`: one event loop over a signalfd,
//! the notify socket and the log pipe. Timers are deadlines passed to
//! poll() as its timeout, so a healthy program costs no wakeups beyond its
//! own notify messages and output.

pub mod leftovers;
pub mod logsink;
pub mod members;
pub mod memory;
pub mod notify;
pub mod service;
mod spawn;
pub mod state;
mod trim;

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::paths::Paths;
use logsink::LogSink;
use members::Cgroup;
use memory::Limit;
use notify::NotifySocket;
use service::{ExecLine, Kind, NotifyAccess, Preserve, Restart, Service};
use state::{now_unix, State, StateFile};

/// Where `jarvisctl run` keeps its lock, pid file, notify socket and state.
pub const STATE_DIR: &str = "/run/jarvis-supervisor-run";
pub const LOCK_FILE: &str = "run.lock";
pub const PID_FILE: &str = "run.pid";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One line per event, on stderr (the engine log under --daemon). A
/// closed or broken stderr is ignored: it must never stop the supervision.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        // One write per line: stderr is unbuffered, and a line in pieces
        // costs a system call per piece (in the restart's path, too).
        let line = format!("jarvisctl run: {}\n", format_args!($($t)*));
        let _ = std::io::stderr().write_all(line.as_bytes());
    }};
}
pub(crate) use say;

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
    kill_reason: Option<&'static str>,
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
    /// The kernel's count of OOM kills in the program's cgroup at the last
    /// exit: a SIGKILL is an OOM kill only when this count grew.
    oom_seen: Option<u64>,
}

/// Pings and STATUS= go to state.json at most this often; a flood of them
/// must not turn into a flood of file writes.
/// The largest EnvironmentFile= read (a link to /dev/zero must not make
/// root read gigabytes); far above any real .env.
const ENV_MAX: u64 = 64 << 20;
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

fn is_clean(status: &std::process::ExitStatus) -> bool {
    match (status.code(), status.signal()) {
        (Some(0), _) => true,
        (_, Some(s)) => {
            [
                libc_sig(Signal::SIGHUP),
                libc_sig(Signal::SIGINT),
                libc_sig(Signal::SIGTERM),
            ]
            .contains(&s)
                || s == libc_sig(Signal::SIGPIPE)
        }
        _ => false,
    }
}

/// A name of the engine's own, the same at every run, for its cgroup: the
/// next run finds a killed run's processes there, and a test's engine
/// under --root does not share the installed one's.
fn cgroup_name(paths: &Paths, state_dir: &Path) -> String {
    if paths.is_system() {
        return "jarvis-supervisor-run".to_string();
    }
    // FNV-1a of the state directory's path.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in state_dir.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("jarvis-supervisor-run-{h:016x}")
}

fn libc_sig(s: Signal) -> i32 {
    s as i32
}

fn describe(status: &std::process::ExitStatus) -> String {
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

impl Engine {
    pub fn new(
        svc: Service,
        paths: &Paths,
        state_dir: &Path,
        account: Option<Account>,
        jarvisctl: PathBuf,
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
        let logs = LogSink::new(read, logdir.join(logsink::OUTPUT_FILE), owner)?;
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
            state: "starting".into(),
            engine_pid: std::process::id(),
            main_pid: None,
            n_restarts: 0,
            result: "success".into(),
            last_exit: None,
            last_watchdog_unix: None,
            watchdog_usec: svc.watchdog.map_or(0, |d| d.as_micros() as u64),
            status_text: String::new(),
            started_unix: now_unix(),
            memory_limit: limit.name().into(),
            cgroup: cgroup.as_ref().map(|c| c.dir.clone()),
            down_since_unix: Some(now_unix()),
            restarts_unix: Vec::new(),
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
            oom_seen: None,
        };
        engine.oom_seen = engine.limit.oom_kills();
        // This engine's state replaces the last one's before anyone is told
        // it started (`run --daemon`, the init script): status must never
        // show a finished run's "failed" for a start that is under way.
        engine.save();
        Ok(engine)
    }

    fn save(&mut self) {
        self.statefile.write(&self.st);
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
        if let Err(e) = cmd
            .args(["alert", "--reason", reason])
            .stdin(std::process::Stdio::null())
            .spawn()
        {
            say!("cannot run {} alert: {e}", self.jarvisctl.display());
        }
    }

    /// Save once this turn's work is done: a restart writes its state after
    /// the next program is started, not in the gap between the two.
    fn save_after_turn(&mut self) {
        let now = Instant::now();
        self.flush_at = Some(self.flush_at.map_or(now, |at| at.min(now)));
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
        self.logs.drain();
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
        let (trim, timeout) = if self.touched && long_wait && self.st.state == "running" {
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
        let (sig_ready, log_ready, notify_ready) = {
            let mut fds = vec![
                PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.logs.fd(), PollFlags::POLLIN),
            ];
            if let Some(n) = &self.notify {
                fds.push(PollFd::new(n.fd(), PollFlags::POLLIN));
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
            (ready(0), ready(1), ready(2))
        };
        if sig_ready || log_ready || notify_ready {
            self.touched = true;
        }
        // Output first: a line written just before an exit lands before the exit's message.
        if log_ready {
            if let Some(msg) = self.logs.drain() {
                say!("{msg}");
            }
        }
        if notify_ready {
            self.read_notify();
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

    // ----- starting -----

    fn start_cycle(&mut self) {
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
                self.st.state = "failed".into();
                self.st.result = "start-limit-hit".into();
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
        self.st.state = "starting".into();
        self.st.main_pid = None;
        self.save_after_turn();
        if let Err(e) = self.make_runtime_dirs() {
            say!("{e}");
            self.after_failed_start("exit-code", None);
            return;
        }
        self.run_condition(0);
    }

    /// `ExecCondition=` commands in turn, then the start proper.
    fn run_condition(&mut self, idx: usize) {
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
                self.after_failed_start("exit-code", None);
            }
        }
    }

    /// An `ExecCondition=` said no (exit 1-254): as systemd, the start is
    /// skipped, which is no failure: no restart, no alert; the engine ends.
    fn skipped(&mut self, argv: &[String], status: &std::process::ExitStatus) {
        say!(
            "ExecCondition={} exited, {}: start skipped (not a failure; no restart)",
            argv.join(" "),
            describe(status)
        );
        self.timer = None;
        self.remove_runtime_dirs(true);
        self.st.state = "stopped".into();
        self.st.result = "exec-condition".into();
        self.st.main_pid = None;
        self.save();
        self.done = Some(0);
    }

    fn run_pre(&mut self, idx: usize) {
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
                self.after_failed_start("exit-code", None);
            }
        }
    }

    fn set_start_timer(&mut self) {
        self.timer = self.svc.timeout_start.map(|d| (Instant::now() + d, Timer::Start));
    }

    fn became_ready(&mut self) {
        self.st.state = "running".into();
        self.st.down_since_unix = None;
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

    fn environment(&self, role: Role) -> Result<Vec<(String, String)>> {
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), DEFAULT_PATH.into()),
            ("INVOCATION_ID".into(), self.invocation_id.clone()),
        ];
        if let Some(a) = &self.account {
            env.push(("HOME".into(), a.home.display().to_string()));
            env.push(("USER".into(), a.name.clone()));
            env.push(("LOGNAME".into(), a.name.clone()));
            env.push(("SHELL".into(), a.shell.display().to_string()));
        }
        if !self.runtime_dirs.is_empty() {
            let dirs: Vec<String> = self
                .runtime_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            env.push(("RUNTIME_DIRECTORY".into(), dirs.join(":")));
        }
        if role == Role::Main {
            if let Some(n) = &self.notify {
                env.push(("NOTIFY_SOCKET".into(), n.path.display().to_string()));
            }
        }
        env.extend(self.svc.environment.iter().cloned());
        for f in &self.svc.environment_files {
            // Read as root from a directory the service user may write: a
            // link to a root-only KEY=VALUE file must not hand its values to
            // the bot (systemd follows it; the preflight, as the service
            // user, then refuses the start).
            match crate::untrusted::read(&f.path, self.account.as_ref().map(|a| a.uid), ENV_MAX) {
                Ok(bytes) => {
                    let parsed = crate::envfile::parse(&bytes);
                    if parsed.refused {
                        return Err(Error::new(format!(
                            "EnvironmentFile={} is not valid UTF-8; systemd refuses it too",
                            f.path.display()
                        ))
                        .with_note("check it with: jarvisctl env lint FILE"));
                    }
                    env.extend(parsed.vars.into_iter().map(|v| (v.key, v.value)));
                }
                Err(e) if f.optional && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("read EnvironmentFile", &f.path, e)),
            }
        }
        // Later assignments win, as in systemd; keep the last of each name
        // (an index, not a scan per name: a huge .env stays linear).
        let mut out: Vec<(String, String)> = Vec::new();
        let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (k, v) in env {
            match at.get(&k) {
                Some(&i) => out[i].1 = v,
                None => {
                    at.insert(k.clone(), out.len());
                    out.push((k, v));
                }
            }
        }
        if let Some(why) = crate::envfile::exec_refusal(out.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            let what = match role {
                Role::Main => "ExecStart=".to_string(),
                Role::Condition(i) => format!("ExecCondition= #{}", i + 1),
                Role::Pre(i) => format!("ExecStartPre= #{}", i + 1),
            };
            return Err(Error::new(format!("cannot start {what}: the environment is too large: {why}"))
                .with_note("keep large data in a file under data/ and put its path in the .env; check it with: jarvisctl check"));
        }
        Ok(out)
    }

    fn spawn(&mut self, argv: &[String], role: Role) -> Result<Pid> {
        let env = self.environment(role)?;
        let identity = self.account.as_ref().map(|a| {
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

    fn make_runtime_dirs(&self) -> Result<()> {
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
    fn remove_runtime_dirs(&self, final_stop: bool) {
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

    // ----- notify -----

    fn read_notify(&mut self) {
        let mut dirty = false;
        for _ in 0..4096 {
            let Some(msg) = self.notify.as_mut().and_then(|n| n.recv()) else {
                break;
            };
            let main = self
                .child
                .filter(|c| c.role == Role::Main)
                .map(|c| c.pid.as_raw());
            let allowed = match self.svc.notify_access {
                NotifyAccess::None => false,
                NotifyAccess::All => main.is_some(),
                NotifyAccess::Main => main.is_some() && msg.pid == main,
            };
            if !allowed {
                self.ignored_senders += 1;
                if self.ignored_senders.is_power_of_two() {
                    say!(
                        "ignored a notify message from pid {} (NotifyAccess={:?}, main pid {}); {} so far",
                        msg.pid.unwrap_or(0),
                        self.svc.notify_access,
                        main.unwrap_or(0),
                        self.ignored_senders
                    );
                }
                continue;
            }
            for line in msg.text.lines() {
                dirty |= self.notify_line(line);
            }
        }
        if dirty {
            self.save_soon();
        }
    }

    fn notify_line(&mut self, line: &str) -> bool {
        let Some((key, value)) = line.split_once('=') else {
            return false;
        };
        match (key, value) {
            ("READY", "1") => {
                if self.st.state == "starting" {
                    self.became_ready();
                }
                false
            }
            ("WATCHDOG", "1") => {
                self.st.last_watchdog_unix = Some(now_unix());
                if self.st.state == "running" {
                    if let Some(d) = self.watchdog {
                        self.timer = Some((Instant::now() + d, Timer::Watchdog));
                    }
                }
                true
            }
            ("WATCHDOG", "trigger") => {
                if self.st.state == "running" {
                    self.fire(Timer::Watchdog);
                }
                true
            }
            ("WATCHDOG_USEC", v) => {
                if let Ok(us) = v.parse::<u64>() {
                    self.watchdog = (us > 0).then(|| Duration::from_micros(us));
                    self.st.watchdog_usec = us;
                    if self.st.state == "running" {
                        self.timer = self.watchdog.map(|d| (Instant::now() + d, Timer::Watchdog));
                    }
                }
                true
            }
            ("STATUS", v) => {
                self.st.status_text = v.to_string();
                true
            }
            ("STOPPING", "1") => {
                say!("the program reports STOPPING=1");
                self.st.state = "stopping".into();
                if self.timer.is_some_and(|(_, t)| t == Timer::Watchdog) {
                    self.timer = None;
                }
                true
            }
            ("EXTEND_TIMEOUT_USEC", v) => {
                if let (Ok(us), Some((at, t))) = (v.parse::<u64>(), self.timer) {
                    if t == Timer::Start || t == Timer::Kill {
                        let new = Instant::now() + Duration::from_micros(us);
                        self.timer = Some((at.max(new), t));
                    }
                }
                false
            }
            _ => false,
        }
    }

    // ----- exits, timers, signals -----

    fn reap(&mut self) {
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

    fn exited(&mut self, child: Child, status: std::process::ExitStatus) {
        self.logs.drain();
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
    fn after_exit(&mut self, child: Child, status: std::process::ExitStatus) {
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
                    let result = child.kill_reason.unwrap_or(if status.code().is_some() {
                        "exit-code"
                    } else {
                        "signal"
                    });
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
                    let result = child.kill_reason.unwrap_or(if status.code().is_some() {
                        "exit-code"
                    } else {
                        "signal"
                    });
                    self.after_failed_start(result, Some(&status));
                }
            }
            Role::Main => {
                if self.stop_requested {
                    self.finish_stopped();
                    return;
                }
                let before_ready = self.svc.kind == Kind::Notify && self.st.state == "starting";
                let oom = self.oom_killed();
                let result = match child.kill_reason {
                    Some(r) => r,
                    None if status.signal() == Some(Signal::SIGKILL as i32) && oom => "oom-kill",
                    // As systemd: a clean exit before READY=1 breaks the
                    // notify protocol (the program's own pause does this;
                    // the restart's ExecCondition= then skips the start).
                    None if before_ready && status.code() == Some(0) => "protocol",
                    None if is_clean(&status) => "success",
                    None if status.code().is_some() => "exit-code",
                    None => "signal",
                };
                self.after_failed_start(result, Some(&status));
            }
        }
    }

    /// Whether the kernel OOM-killed a process of the program's cgroup since
    /// the last exit (its own count, which the service user cannot forge).
    fn oom_killed(&mut self) -> bool {
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
    fn after_failed_start(&mut self, result: &'static str, status: Option<&std::process::ExitStatus>) {
        self.st.result = result.into();
        self.st.last_exit = status.map(|s| s.code().unwrap_or_else(|| -s.signal().unwrap_or(0)));
        self.st.down_since_unix.get_or_insert_with(now_unix);
        let unclean_signal = result == "signal";
        let restart = match self.svc.restart {
            Restart::No => false,
            Restart::Always => true,
            Restart::OnSuccess => result == "success",
            Restart::OnFailure => result != "success",
            Restart::OnAbnormal => unclean_signal || matches!(result, "timeout" | "watchdog" | "oom-kill"),
            Restart::OnWatchdog => result == "watchdog",
            Restart::OnAbort => unclean_signal,
        };
        if !restart {
            self.remove_runtime_dirs(true);
            if result == "success" {
                say!("the program ended (result {result}); Restart= does not restart it");
                self.st.state = "stopped".into();
                self.done = Some(0);
            } else {
                say!("the program failed (result {result}); Restart= does not restart it");
                self.st.state = "failed".into();
                self.done = Some(1);
            }
            self.save();
            return;
        }
        self.remove_runtime_dirs(false);
        self.st.n_restarts += 1;
        self.st.state = "restarting".into();
        if self.st.restarts_unix.len() >= state::RESTARTS_KEPT {
            self.st.restarts_unix.remove(0);
        }
        self.st.restarts_unix.push(now_unix());
        say!(
            "result {result}; restart {} in {:.1}s (RestartSec=)",
            self.st.n_restarts,
            self.svc.restart_sec.as_secs_f64()
        );
        self.timer = Some((Instant::now() + self.svc.restart_sec, Timer::RestartDue));
        self.save_after_turn();
    }

    fn fire(&mut self, which: Timer) {
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
                self.signal_child(Signal::SIGTERM, "timeout", self.svc.timeout_stop);
            }
            Timer::Watchdog => {
                let w = self.watchdog.unwrap_or_default().as_secs_f64();
                say!("watchdog timeout: no WATCHDOG=1 within {w}s; sending SIGABRT");
                self.signal_child(Signal::SIGABRT, "watchdog", self.svc.timeout_abort);
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
    fn signal_child(&mut self, sig: Signal, reason: &'static str, grace: Option<Duration>) {
        let Some(c) = self.child.as_mut() else { return };
        c.kill_reason.get_or_insert(reason);
        let pid = c.pid;
        let _ = kill(pid, sig);
        self.signal_members(sig);
        self.timer = grace.map(|g| (Instant::now() + g, Timer::Kill));
    }

    /// The live processes the program started (and the program): those in
    /// its cgroup, else the engine's descendants (it is their subreaper).
    fn members(&self) -> Vec<i32> {
        match &self.cgroup {
            Some(cg) => cg.pids(),
            None => members::descendants(std::process::id() as i32),
        }
    }

    /// `sig` (then SIGCONT) to every one of them; SIGKILL through the
    /// cgroup's own kill where there is one.
    fn signal_members(&self, sig: Signal) {
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

    fn request_stop(&mut self, sig: Signal) {
        if self.stop_requested {
            say!("{sig} again: still waiting for the program to stop");
            return;
        }
        self.stop_requested = true;
        say!("{sig}: stopping");
        match self.child {
            Some(_) => {
                self.st.state = "stopping".into();
                self.save();
                self.signal_child(Signal::SIGTERM, "stop", self.svc.timeout_stop);
            }
            // Its leftovers already had SIGTERM; stop once they are gone.
            None if self.draining.is_some() => {
                self.st.state = "stopping".into();
                self.save();
            }
            None => self.finish_stopped(),
        }
    }

    fn finish_stopped(&mut self) {
        self.timer = None;
        self.remove_runtime_dirs(true);
        self.st.state = "stopped".into();
        self.st.main_pid = None;
        say!("stopped");
        self.save();
        self.done = Some(0);
    }
}
