//! Starting, stopping and restarting the bot on whichever engine runs it:
//! systemd when it is this host's init, else the fallback engine
//! (`jarvisctl run --daemon`). Every action waits for the state it asked
//! for and reports what it saw; none says "done" while the bot is still in
//! the state the user asked to leave. Shared by the `start`, `stop`,
//! `restart`, `pause` and `resume` commands.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::live::{self, Holder};
use crate::pause::Pause;
use jarvis_cli::TargetArgs;
use jarvis_engine::{LOCK_FILE, PID_FILE, STATE_DIR};
use jarvis_model::error::Result;
use jarvis_model::instance::Instance;
use jarvis_model::paths::Paths;
use jarvis_model::service::Service;
use jarvis_model::state::{RunState, StateFile};
use jarvis_model::unit::Unit;

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(200);

/// Who runs the bot on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    Systemd,
    /// `jarvisctl run` (the init script starts it on a sysvinit host).
    JarvisctlRun,
}

/// Where the verbs act: the engine, the instance, and the unit that bounds
/// the waits.
pub struct Target {
    pub paths: Paths,
    pub engine: Engine,
    pub instance: Instance,
    /// `--unit FILE`: the fallback engine with that unit (tests, by hand).
    pub unit_file: Option<PathBuf>,
}

impl Target {
    /// The target of `--unit` / `--instance`, checked once here: a bad
    /// instance name is refused before anything acts.
    pub fn new(paths: &Paths, on: &TargetArgs) -> Result<Target> {
        let instance = Instance::from_arg(on.instance.as_deref())?;
        let unit_file = on.unit.as_deref();
        // As `jarvisctl run` decides: with systemd running, the installed
        // unit is systemd's.
        let systemd = unit_file.is_none() && paths.host(Path::new("/run/systemd/system")).is_dir();
        Ok(Target {
            paths: paths.clone(),
            engine: if systemd {
                Engine::Systemd
            } else {
                Engine::JarvisctlRun
            },
            instance,
            unit_file: unit_file.map(Path::to_path_buf),
        })
    }

    pub fn unit(&self) -> Result<Unit> {
        match &self.unit_file {
            Some(f) => Unit::load_file(f),
            None => Unit::load_named(&self.paths, &self.instance.unit()),
        }
    }

    /// The unit's name, for systemctl and journalctl.
    fn name(&self) -> String {
        self.instance.unit()
    }

    fn service(&self) -> Option<Service> {
        self.unit().and_then(|u| Service::from_unit(&u)).ok()
    }

    fn state_dir(&self) -> PathBuf {
        self.paths.host(&self.instance.engine_dir())
    }
}

/// The fallback engine's runtime directory (its lock, pid and state.json)
/// of the default instance: `run` makes it, `status` and these verbs read it.
pub fn state_dir(paths: &Paths) -> PathBuf {
    paths.host(Path::new(STATE_DIR))
}

/// What an action ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reached {
    /// Up and ready.
    Running,
    Stopped,
    /// Not started: the program's pause switch is set.
    Paused,
    /// It failed, or crashed while starting.
    Failed,
    /// Still starting or stopping when the wait ran out.
    TimedOut,
}

/// The report of one action (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub action: &'static str,
    pub engine: Engine,
    /// Whether the bot is in the state that was asked for.
    pub ok: bool,
    pub reached: Reached,
    pub main_pid: Option<u32>,
    /// The main pid before the action (restart: it must differ).
    pub previous_main_pid: Option<u32>,
    /// The engine's own words for the end state (ActiveState/SubState,
    /// or the engine's state), and its result.
    pub state: String,
    pub result: String,
    pub seconds: f64,
    /// What went wrong, one finding per line, each .env value masked.
    pub reasons: Vec<String>,
    pub pause: Option<Pause>,
}

impl Outcome {
    fn new(action: &'static str, engine: Engine) -> Outcome {
        Outcome {
            action,
            engine,
            ok: false,
            reached: Reached::Failed,
            main_pid: None,
            previous_main_pid: None,
            state: String::new(),
            result: String::new(),
            seconds: 0.0,
            reasons: Vec::new(),
            pause: None,
        }
    }

    /// Print (human: one line per finding) and give the exit code: 0 when
    /// the asked state was reached, 1 otherwise.
    pub fn report(&self, json: bool) -> i32 {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
        } else {
            let engine = match self.engine {
                Engine::Systemd => "systemd",
                Engine::JarvisctlRun => "jarvisctl run",
            };
            let pid = self
                .main_pid
                .map(|p| format!(", main pid {p}"))
                .unwrap_or_default();
            let what = match self.reached {
                Reached::Running => format!("running{pid}"),
                Reached::Stopped => match self.previous_main_pid {
                    Some(p) => format!("stopped (main pid {p} was running)"),
                    None => "stopped (it was not running)".into(),
                },
                Reached::Paused => "paused, not started".into(),
                Reached::Failed => format!("FAILED ({}, result {})", self.state, self.result),
                Reached::TimedOut => format!("still {} after the wait", self.state),
            };
            println!("{}: {what} ({engine}, {:.1} s)", self.action, self.seconds);
            if let Some(p) = &self.pause {
                println!("{}: {}", self.action, p.describe());
            }
            for r in &self.reasons {
                println!("{}: {}", self.action, crate::output::printable(r));
            }
        }
        i32::from(!self.ok)
    }
}

/// A state seen now.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub state: String,
    pub result: String,
    pub main_pid: Option<u32>,
    pub running: bool,
    /// Between states (starting, stopping, restarting).
    pub busy: bool,
    /// systemd's InvocationID, or the engine's pid: new at each start.
    pub invocation: String,
    pub n_restarts: u64,
    /// Waiting to restart after an exit (systemd's auto-restart, the
    /// engine's restarting).
    pub auto_restart: bool,
    /// `jarvisctl run` still holds its lock. It writes "stopped" before it
    /// exits: until it has, its pid file names a live engine, and the init
    /// script's `restart` took that start for "already running" (issue 27).
    pub engine_up: bool,
}

impl Seen {
    /// Stopped: nothing runs, nothing is on its way.
    fn down(&self) -> bool {
        !self.running && !self.busy && self.main_pid.is_none() && !self.engine_up
    }
}

/// Looks at the bot every [`POLL`] until `done` holds for what it sees, or
/// `bound` has passed since `t0`: the last state seen.
fn wait_for(t: &Target, t0: Instant, bound: Duration, mut done: impl FnMut(&Seen) -> bool) -> Seen {
    loop {
        let s = seen(t);
        if done(&s) || t0.elapsed() > bound {
            return s;
        }
        std::thread::sleep(POLL);
    }
}

fn systemd_seen(t: &Target) -> Seen {
    let p = crate::systemd::show(
        &t.name(),
        &[
            "ActiveState",
            "SubState",
            "MainPID",
            "Result",
            "InvocationID",
            "NRestarts",
        ],
    )
    .unwrap_or_default();
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let active = get("ActiveState");
    let sub = get("SubState");
    Seen {
        running: active == "active" && sub == "running",
        busy: matches!(active.as_str(), "activating" | "deactivating" | "reloading")
            || (active == "active" && sub != "running"),
        state: format!("{active}/{sub}"),
        result: get("Result"),
        main_pid: get("MainPID").parse().ok().filter(|&n| n > 0),
        invocation: get("InvocationID"),
        n_restarts: get("NRestarts").parse().unwrap_or(0),
        auto_restart: sub == "auto-restart",
        // PID 1 is the engine, and it never goes.
        engine_up: false,
    }
}

fn lock_held(lock: &Path) -> bool {
    let Ok(file) = OpenOptions::new().read(true).write(true).open(lock) else {
        return false;
    };
    Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err()
}

fn engine_seen(t: &Target) -> Seen {
    let dir = t.state_dir();
    let up = lock_held(&dir.join(LOCK_FILE));
    let Some(st) = StateFile::read(&dir) else {
        // No state to read (a damaged state.json): the live engine and
        // its program, as the kernel shows them.
        match live::holder(&dir, t.paths.is_system()) {
            Holder::Engine { pid, main_pid } => {
                return Seen {
                    state: "running (state.json unreadable)".into(),
                    running: main_pid.is_some(),
                    busy: main_pid.is_none(),
                    main_pid,
                    invocation: pid.to_string(),
                    engine_up: true,
                    ..Seen::default()
                }
            }
            Holder::Untrusted(_) => {
                return Seen {
                    state: "not running (its lock is held by a process that is not the engine)".into(),
                    ..Seen::default()
                }
            }
            Holder::Free => {}
        }
        return Seen {
            state: if up { "starting".into() } else { "inactive".into() },
            busy: up,
            engine_up: up,
            ..Seen::default()
        };
    };
    let state = if up {
        st.state.to_string()
    } else {
        format!("{} (engine gone)", st.state)
    };
    Seen {
        running: up && st.state == RunState::Running,
        busy: up
            && matches!(
                st.state,
                RunState::Starting | RunState::Stopping | RunState::Restarting
            ),
        state,
        result: st.result.to_string(),
        main_pid: st.main_pid.filter(|_| up).and_then(|p| u32::try_from(p).ok()),
        invocation: if up {
            st.engine_pid.to_string()
        } else {
            String::new()
        },
        n_restarts: u64::from(st.n_restarts),
        auto_restart: up && st.state == RunState::Restarting,
        engine_up: up,
    }
}

/// The bot of `t` as its engine shows it now (`status` of an instance).
pub fn seen(t: &Target) -> Seen {
    match t.engine {
        Engine::Systemd => systemd_seen(t),
        Engine::JarvisctlRun => engine_seen(t),
    }
}

fn pause_of(t: &Target) -> Option<Pause> {
    t.unit().ok().and_then(|u| crate::pause::detect(&t.paths, &u))
}

/// How long a start may take before it counts as stuck: TimeoutStartSec=
/// plus a margin (the backoff's delay is inside it).
pub fn start_bound(t: &Target, flag: Option<u64>) -> Duration {
    flag.map(Duration::from_secs).unwrap_or_else(|| {
        t.service()
            .and_then(|s| s.timeout_start)
            .unwrap_or(Duration::from_secs(90))
            + Duration::from_secs(10)
    })
}

/// How long a stop may take: TimeoutStopSec= (then SIGKILL) plus a margin.
pub fn stop_bound(t: &Target, flag: Option<u64>) -> Duration {
    flag.map(Duration::from_secs).unwrap_or_else(|| {
        t.service()
            .and_then(|s| s.timeout_stop)
            .unwrap_or(Duration::from_secs(90))
            + Duration::from_secs(10)
    })
}

// ----- stop -----

pub fn stop(t: &Target, bound: Duration) -> Outcome {
    let t0 = Instant::now();
    let mut out = Outcome::new("stop", t.engine);
    let before = seen(t);
    out.previous_main_pid = before.main_pid;
    let asked = match t.engine {
        Engine::Systemd => crate::systemd::systemctl(&["stop", "--no-block", &t.name()]),
        Engine::JarvisctlRun => signal_engine(t),
    };
    // No engine was signalled: nothing is on its way to stop, and the stop
    // did not do what was asked.
    let refused = asked.is_err() && t.engine == Engine::JarvisctlRun;
    let bound = if refused { Duration::ZERO } else { bound };
    if let Err(e) = asked {
        out.reasons.push(e);
    }
    // A start by another command after ours stopped it (a deploy's
    // restart beside the postinst's): the run we stopped is over, and
    // waiting for "nothing runs" would wait out the whole bound.
    let first = before.invocation.clone();
    let again =
        |s: &Seen| !s.down() && !first.is_empty() && !s.invocation.is_empty() && s.invocation != first;
    let end = wait_for(t, t0, bound, |s| s.down() || again(s));
    out.seconds = t0.elapsed().as_secs_f64();
    out.state = end.state.clone();
    out.result = end.result.clone();
    out.main_pid = end.main_pid;
    let down = end.down() || again(&end);
    if again(&end) {
        out.reasons.push(format!(
            "stopped; then another command started it again (now {}{})",
            end.state,
            end.main_pid
                .map(|p| format!(", main pid {p}"))
                .unwrap_or_default()
        ));
    }
    out.ok = down && !refused;
    out.reached = match (refused, down) {
        (true, _) => Reached::Failed,
        (false, true) => Reached::Stopped,
        (false, false) => Reached::TimedOut,
    };
    if !down && !refused {
        out.reasons.push(format!(
            "the bot is still {} {:.0} s after the stop was asked (the stop timeout plus 10 s)",
            end.state,
            bound.as_secs_f64()
        ));
        out.reasons.push(match t.engine {
            Engine::Systemd => format!("see why: journalctl -u {} -r -n 30", t.name()),
            Engine::JarvisctlRun => format!(
                "see why: tail -n 30 {}",
                t.state_dir().join("engine.log").display()
            ),
        });
    }
    out
}

/// SIGTERM to `jarvisctl run`, when it runs: the process that holds its
/// lock, once checked to be the engine (live.rs). The pid file is not
/// trusted: garbage there must neither block the stop nor aim it at another
/// process.
fn signal_engine(t: &Target) -> std::result::Result<(), String> {
    let dir = t.state_dir();
    let lock = dir.join(LOCK_FILE);
    let pid = match live::holder(&dir, t.paths.is_system()) {
        Holder::Free => return Ok(()),
        Holder::Engine { pid, .. } => pid,
        Holder::Untrusted(why) => {
            return Err(format!(
                "the lock {} is held, but not by the engine: {why}; see who holds it: fuser -v {}",
                lock.display(),
                lock.display()
            ))
        }
    };
    let pid_path = dir.join(PID_FILE);
    let said = std::fs::read_to_string(&pid_path).ok();
    let said = said.as_deref().map(str::trim);
    if said != Some(pid.to_string().as_str()) {
        // Said, not obeyed: the engine writes the file again itself.
        eprintln!(
            "stop: {} does not name the engine (pid {pid}, the holder of {}): stopping pid {pid}",
            pid_path.display(),
            lock.display()
        );
    }
    let pid = i32::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
    kill(Pid::from_raw(pid), Signal::SIGTERM)
        .map_err(|e| format!("cannot send SIGTERM to jarvisctl run (pid {pid}): {e}"))
}

// ----- start -----

pub fn start(t: &Target, bound: Duration) -> Outcome {
    again_if_skipped(t, bound, start_as("start", t, bound, None))
}

/// A start that systemd skipped by `ExecCondition=` while no pause switch
/// is set (the switch went just before, or systemd could not run the
/// condition: any exit 1-254, its own spawn failures included, reads as a
/// skip) is tried once more, and said.
fn again_if_skipped(t: &Target, bound: Duration, out: Outcome) -> Outcome {
    if t.engine != Engine::Systemd || out.ok || out.pause.is_some() || out.result != "exec-condition" {
        return out;
    }
    let mut second = start_as(out.action, t, bound, out.previous_main_pid);
    second.reasons.insert(
        0,
        format!(
            "the first start was skipped by ExecCondition= though no pause switch is set; started again (see: journalctl -u {} -r -n 20)",
            t.name()
        ),
    );
    second.seconds += out.seconds;
    second
}

pub fn restart(t: &Target, start_wait: Duration, stop_wait: Duration) -> Outcome {
    let before = seen(t);
    match t.engine {
        // systemd stops and starts in one job.
        Engine::Systemd => again_if_skipped(
            t,
            start_wait,
            start_as("restart", t, start_wait + stop_wait, before.main_pid),
        ),
        Engine::JarvisctlRun => {
            let stopped = stop(t, stop_wait);
            if !stopped.ok {
                let mut out = stopped;
                out.action = "restart";
                return out;
            }
            start_as("restart", t, start_wait, before.main_pid)
        }
    }
}

fn start_as(action: &'static str, t: &Target, bound: Duration, previous: Option<u32>) -> Outcome {
    let t0 = Instant::now();
    let since = std::time::SystemTime::now();
    let mut out = Outcome::new(action, t.engine);
    out.previous_main_pid = previous;
    let before = seen(t);
    if action == "start" && before.running {
        out.ok = true;
        out.reached = Reached::Running;
        out.main_pid = before.main_pid;
        out.state = before.state;
        out.result = before.result;
        out.reasons.push("it was already running; nothing done".into());
        return out;
    }
    let log = t.state_dir().join("engine.log");
    let log_offset = std::fs::metadata(&log).map_or(0, |m| m.len());
    let asked = match t.engine {
        Engine::Systemd => {
            // A unit that gave up (start limit) refuses a start until it is
            // reset; the operator asking to start it is that reset.
            if before.state.starts_with("failed") {
                let _ = crate::systemd::systemctl(&["reset-failed", &t.name()]);
            }
            let verb = if action == "restart" { "restart" } else { "start" };
            crate::systemd::systemctl(&[verb, "--no-block", &t.name()])
        }
        Engine::JarvisctlRun => spawn_engine(t),
    };
    if let Err(e) = asked {
        out.seconds = t0.elapsed().as_secs_f64();
        out.reasons.push(e);
        out.pause = pause_of(t);
        if out.pause.is_some() {
            out.reached = Reached::Paused;
        }
        return out;
    }
    // A new invocation (systemd's InvocationID, the engine's pid), then its
    // outcome: ready, failed, restarting (a crash at start), skipped. The
    // restart counter is taken when the new invocation is first seen
    // (systemd resets it at a manual start, the engine at its own).
    let mut base: Option<u64> = None;
    let end = wait_for(t, t0, bound, |s| {
        let new = !s.invocation.is_empty() && s.invocation != before.invocation;
        let gone = t.engine == Engine::JarvisctlRun && s.invocation.is_empty();
        if new && base.is_none() {
            base = Some(match t.engine {
                Engine::Systemd => s.n_restarts,
                Engine::JarvisctlRun => 0,
            });
        }
        let crashed = new && !s.running && (s.auto_restart || base.is_some_and(|b| s.n_restarts > b));
        let settled = new && !s.busy;
        // systemd may keep the old invocation's id through a skip.
        let skipped = t.engine == Engine::Systemd
            && !s.busy
            && !s.running
            && t0.elapsed() > Duration::from_secs(2)
            && s.result == "exec-condition";
        s.running && new || crashed || settled || gone || skipped
    });
    out.seconds = t0.elapsed().as_secs_f64();
    out.state = end.state.clone();
    out.result = end.result.clone();
    out.main_pid = end.main_pid;
    if end.running {
        out.reached = Reached::Running;
        out.ok = previous.is_none() || end.main_pid != previous;
        if !out.ok {
            out.reasons.push(format!(
                "the main pid is still {} : not restarted",
                previous.unwrap_or(0)
            ));
        }
        return out;
    }
    out.pause = pause_of(t);
    if out.pause.is_some() {
        out.reached = Reached::Paused;
        out.reasons
            .push("not started on purpose; resume it with: jarvisctl resume".into());
        return out;
    }
    let crashed = end.auto_restart || base.is_some_and(|b| end.n_restarts > b);
    out.reached = if end.busy && !crashed {
        Reached::TimedOut
    } else {
        Reached::Failed
    };
    if out.reached == Reached::TimedOut {
        out.reasons.push(format!(
            "not ready {:.0} s after the start (TimeoutStartSec= plus 10 s)",
            bound.as_secs_f64()
        ));
    } else if crashed {
        out.reasons
            .push("it crashed while starting and is restarting (with backoff)".into());
    }
    out.reasons.extend(why_not(t, since, &log, log_offset));
    out
}

/// `jarvisctl run --daemon`: returns once the engine holds its lock.
fn spawn_engine(t: &Target) -> std::result::Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find jarvisctl's own path: {e}"))?;
    let mut cmd = Command::new(exe);
    if !t.paths.is_system() {
        cmd.arg("--root").arg(t.paths.host(Path::new("/")));
    }
    cmd.args(["run", "--daemon"]);
    if let Some(u) = &t.unit_file {
        cmd.arg("--unit")
            .arg(std::path::absolute(u).unwrap_or_else(|_| u.clone()));
    }
    if let Instance::Named(n) = &t.instance {
        cmd.arg("--instance").arg(n.as_str());
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run jarvisctl run --daemon: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let last: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(format!(
        "jarvisctl run --daemon failed: {}",
        last[last.len().saturating_sub(3)..].join(" / ")
    ))
}

/// The last lines that say why the start failed: the unit's journal since
/// the start (systemd), or the engine's log since then; .env values masked.
fn why_not(t: &Target, since: std::time::SystemTime, log: &Path, offset: u64) -> Vec<String> {
    let lines: Vec<String> = match t.engine {
        Engine::Systemd => {
            let at = since
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut journal = Command::new("journalctl");
            let name = t.name();
            journal.args([
                "-u",
                &name,
                "--since",
                &format!("@{at}"),
                "-o",
                "cat",
                "--no-pager",
                "-q",
            ]);
            crate::runner::tool(journal)
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        }
        Engine::JarvisctlRun => {
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(log) {
                let _ = f.seek(SeekFrom::Start(offset));
                let _ = f.take(1 << 20).read_to_string(&mut text);
            }
            text.lines().map(String::from).collect()
        }
    };
    let secrets = t.unit().ok().map(|u| secrets(&t.paths, &u)).unwrap_or_default();
    let secrets = jarvis_model::masking::Masker::new(&secrets);
    let useful: Vec<&String> = lines.iter().filter(|l| !l.trim().is_empty()).collect();
    useful[useful.len().saturating_sub(4)..]
        .iter()
        .map(|l| format!("log: {}", secrets.mask(l)))
        .collect()
}

/// Every value of the unit's environment files, to mask.
fn secrets(paths: &Paths, unit: &Unit) -> Vec<String> {
    let mut out = Vec::new();
    for env in unit.environment_files() {
        if let Ok(bytes) = jarvis_model::untrusted::read(&paths.host(&env.path), None, 64 << 20) {
            out.extend(
                jarvis_model::envfile::parse(&bytes)
                    .vars
                    .into_iter()
                    .map(|v| v.value)
                    .filter(|v| !v.is_empty()),
            );
        }
    }
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out
}
