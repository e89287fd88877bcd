//! Everything a deploy can fail with, as one type. Each message says what
//! failed, where (the host's name goes in front of it in the summary and
//! the progress lines), and what to do; the command turns it into the
//! crate's `Error` with its exit code.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::host_paths::{CURRENT, LOCK, PACKAGES, STEP_LOCK};
use super::reply::Room;
use jarvis_model::error::{exit, Error};

#[derive(Debug)]
pub enum DeployError {
    // -- On this machine, before any host is contacted.
    /// No `--code DIR` where one is needed.
    NoCode,
    NotADirectory(PathBuf),
    /// Files the bot runs do not compile with its interpreter on the host:
    /// each as `PATH line N: ERROR (run: WHY)`.
    DoesNotCompile {
        host: String,
        /// `PATH (Python V)`.
        python: String,
        files: Vec<String>,
    },
    /// The `.env` to send fails `env lint`: the findings, never a value.
    EnvLint {
        file: PathBuf,
        findings: Vec<String>,
    },
    CannotReadPackage {
        path: PathBuf,
        why: String,
    },
    NotAPackage(PathBuf),
    Unreadable {
        path: PathBuf,
        why: String,
    },
    NotAWheelhouse(PathBuf),
    TempFile(String),
    /// An error of a shared module (hosts file, manifest, env rules).
    Local(Error),

    // -- Reaching the host.
    /// ssh or rsync cannot be started here; `fix` says what to install.
    CannotRun {
        tool: &'static str,
        why: String,
        fix: &'static str,
    },
    /// The host's answer was larger than we read.
    TooBig(String),
    NoAnswer(Duration),
    SshFailed(String),
    SshKilled,
    /// A remote command exited with a code: its last line.
    Exited {
        code: i32,
        last: String,
    },
    /// The host's step lock stayed taken.
    StepBusy(Duration),
    /// The deploy lock is held by another deploy.
    Locked,
    LockFailed(String),
    /// The host worker printed no JSON report.
    NoReport {
        code: i32,
        last: String,
    },
    /// The host worker's own error (exit 2).
    Worker(String),
    /// The worker's error from before it changed anything live (a swap
    /// that did not fit or whose staging failed): nothing to undo.
    WorkerUntouched(String),
    NoStatus(String),
    NoJarvisctl,

    // -- What the host has.
    MissingTool(&'static str),
    /// `/tmp` cannot take a small write (full, or read-only): why.
    TmpUnwritable(String),
    /// A filesystem the deploy writes to lacks the room it needs.
    NoRoom {
        /// "the code root", "the deploy history".
        what: &'static str,
        room: Box<Room>,
        /// Bytes written there besides the worker's (the package, .env).
        extra: u64,
    },
    NoUnit(String),
    SeveralUnits(String),
    /// The hosts file's code_dir is not the one the host's unit runs.
    CodeDirMismatch {
        want: String,
        unit: String,
        have: String,
    },

    // -- The deploy's steps.
    SyncFailed {
        code: Option<i32>,
        why: String,
    },
    CopyPackageFailed(String),
    StoreDiffers {
        n: u64,
        paths: Vec<String>,
    },
    /// Conflicts found by the plan: one line each, with the way out.
    Conflicts(Vec<String>),
    ChangedWhileRunning(Vec<String>),
    /// A rollback's swap met conflicts.
    RollbackConflicts(Vec<String>),
    NoPreviousPackage {
        version: String,
        name: String,
        ext: String,
    },
    NoKeptPackage(String),
    Install {
        file: String,
        why: Box<DeployError>,
    },
    RestartFailed(String),
    Crashed(String),
    NotStable {
        pid: u64,
        settle: u64,
        after: f64,
        last: String,
    },
    NotReady {
        ready: u64,
        last: String,
    },

    // -- The environment.
    NoVenvCommands,
    NoAdoptReport(String),
    BuildFailed(String),
    SwitchFailed {
        target: String,
        why: Box<DeployError>,
    },
    SendWheelhouseFailed(String),

    // -- Rollbacks.
    NothingToRollBack,
    /// `deploys/current` is damaged and the live code matches no deploy.
    CurrentLost {
        why: String,
        deploys: usize,
    },
    MissingFromHistory(String),
    BeforePruned {
        before: String,
        id: String,
    },
    NotAnId(String),
    NotInHistory(String),
    /// What failed, and the error of the step.
    Step {
        doing: String,
        why: Box<DeployError>,
    },

    // -- What became of the host after a failure.
    Untouched(Box<DeployError>),
    NothingChanged(Box<DeployError>),
    RolledBack(Box<DeployError>),
    RollbackFailed {
        why: Box<DeployError>,
        undo: Box<DeployError>,
    },
}

pub type Result<T> = std::result::Result<T, DeployError>;

impl DeployError {
    pub fn step(doing: impl Into<String>, why: DeployError) -> DeployError {
        DeployError::Step {
            doing: doing.into(),
            why: Box::new(why),
        }
    }
}

/// "1.5 MiB".
fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

fn lines(l: &[String]) -> String {
    l.join("; ")
}

impl fmt::Display for DeployError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DeployError::*;
        match self {
            NoCode => write!(f, "no code to ship"),
            NotADirectory(p) => write!(f, "{} is not a directory", p.display()),
            DoesNotCompile { host, python, files } => write!(
                f,
                "{} file(s) the bot runs do not compile with {python} on {host}: {}{}; \
                 fix it and deploy again (a file counts as run when it is the unit's entry point \
                 or a .py file of the tree imports it)",
                files.len(),
                files.iter().take(10).cloned().collect::<Vec<_>>().join("; "),
                if files.len() > 10 { "; ..." } else { "" }
            ),
            EnvLint { file, findings } => write!(
                f,
                "{} does not pass env lint, nothing was sent: {}",
                file.display(),
                lines(findings)
            ),
            CannotReadPackage { path, why } => write!(f, "cannot read {}: {why}", path.display()),
            NotAPackage(p) => write!(f, "{}: not a .deb or .rpm", p.display()),
            Unreadable { path, why } => write!(f, "{} is not a readable package: {why}", path.display()),
            NotAWheelhouse(p) => write!(f, "the wheelhouse {} is not a directory", p.display()),
            TempFile(e) => write!(f, "{e}"),
            Local(e) => write!(f, "{e}"),

            CannotRun { tool, why, fix } => write!(f, "cannot run {tool}: {why}{fix}"),
            TooBig(why) => write!(f, "{why}"),
            NoAnswer(t) => write!(f, "no answer within {} s", t.as_secs()),
            SshFailed(last) => write!(f, "ssh failed: {last}"),
            SshKilled => write!(f, "ssh was killed"),
            Exited { code, last } => write!(f, "exited {code}: {last}"),
            StepBusy(waited) => write!(
                f,
                "another deploy step still holds {STEP_LOCK} on the host after {} s (one cut off earlier may \
                 still be finishing there); try again when it ends",
                waited.as_secs()
            ),
            Locked => write!(
                f,
                "another deploy is running on this host (it holds {LOCK}); nothing was changed: try again when it ends"
            ),
            LockFailed(last) => write!(f, "cannot take the deploy lock {LOCK}: {last}"),
            NoReport { code, last } => write!(
                f,
                "the host's deploy step gave no report (exit {code}): {last}"
            ),
            Worker(e) | WorkerUntouched(e) => write!(f, "{e}"),
            NoStatus(last) => write!(f, "no status report: {last}"),
            NoJarvisctl => write!(f, "jarvisctl is not installed there"),

            MissingTool(what) => write!(f, "{what}"),
            TmpUnwritable(why) => write!(
                f,
                "/tmp on the host cannot take a small write ({why}): the bot and the deploy's steps need it; \
                 nothing on the host was changed. Free space there (du -xh --max-depth=2 /tmp | sort -h | tail), \
                 or remount it read-write, then deploy again"
            ),
            NoRoom { what, room, extra } => {
                let needed = room.needed + extra;
                let margin = room.margin.max(if *extra > 0 { super::reply::MARGIN } else { 0 });
                let want = (needed + margin).saturating_sub(room.free);
                write!(
                    f,
                    "not enough space for {what} ({}) on {}: the deploy writes {} there ({} file(s) and \
                     director(ies)) and keeps {} spare, {} ({} inodes) is free; nothing on the host was changed. \
                     Free {}space there (what is big: du -xh --max-depth=2 {} | sort -h | tail), then deploy again",
                    room.path,
                    room.place(),
                    human(needed),
                    room.needed_inodes,
                    human(margin),
                    human(room.free),
                    room.free_inodes,
                    if want > 0 { format!("at least {} of ", human(want)) } else { String::new() },
                    room.mount
                )
            }
            NoUnit(looked) => write!(
                f,
                "no installed unit with a WorkingDirectory= (looked at {looked}): install the package first \
                 (apt install ./jarvis-supervisor_*.deb), then deploy"
            ),
            SeveralUnits(units) => write!(
                f,
                "several units run code ({units}): deploy does not know which one to use"
            ),
            CodeDirMismatch { want, unit, have } => write!(
                f,
                "the hosts file says code_dir = {want:?}, but {unit} on the host runs the code from {have}: \
                 remove code_dir from the hosts file (deploy reads it from the host), or fix the unit's drop-in"
            ),

            SyncFailed { code, why } => write!(
                f,
                "code sync failed (exit {}): {why}",
                code.map_or("-".into(), |c| c.to_string())
            ),
            CopyPackageFailed(last) => write!(f, "copying the package failed: {last}"),
            StoreDiffers { n, paths } => write!(
                f,
                "{n} file(s) on the host differ from what was sent (did the code change during the deploy?): {}",
                paths.join(", ")
            ),
            Conflicts(l) => write!(
                f,
                "{} conflict(s), nothing on the host was changed: {}",
                l.len(),
                lines(l)
            ),
            ChangedWhileRunning(l) => {
                write!(f, "files changed on the host while the deploy ran: {}", lines(l))
            }
            RollbackConflicts(l) => write!(f, "nothing was changed: {}", lines(l)),
            NoPreviousPackage { version: v, name, ext } => write!(
                f,
                "no package of the installed version {v} is kept on the host to roll back to; nothing was changed. \
                 Ship it once with --package (same version: it is kept, not installed), or copy it to {PACKAGES}/{name}_{v}.{ext}"
            ),
            NoKeptPackage(v) => write!(f, "no package of version {v} is kept on the host"),
            Install { file, why } => write!(f, "install of {file} failed: {why}"),
            RestartFailed(why) => write!(f, "restart failed: {why}"),
            Crashed(last) => write!(f, "the bot crashed after the restart: {last}"),
            NotStable {
                pid,
                settle,
                after,
                last,
            } => write!(
                f,
                "the bot became ready (pid {pid}) but did not stay up for {settle} s: after {after:.0} s {last}"
            ),
            NotReady { ready, last } => write!(f, "not ready within {ready} s: {last}"),

            NoVenvCommands => write!(
                f,
                "the host's jarvisctl cannot build environments (jarvisctl venv switch is missing): \
                 deploy the package first (--package with the code unchanged), then the new requirements"
            ),
            NoAdoptReport(last) => write!(f, "jarvisctl venv adopt gave no report: {last}"),
            BuildFailed(why) => write!(f, "the environment build failed: {why}"),
            SwitchFailed { target, why } => {
                write!(f, "switching the environment to {target} failed: {why}")
            }
            SendWheelhouseFailed(last) => write!(f, "sending the wheelhouse failed: {last}"),

            NothingToRollBack => write!(f, "no deploy is in effect on this host: nothing to roll back"),
            CurrentLost { why, deploys } => write!(
                f,
                "{CURRENT} is damaged ({why}), and the live code matches none of the {deploys} deploy(s) in the history \
                 (files changed by hand since): see `jarvisctl deploy --list`, then deploy with --take-over for the \
                 changed files, or return to one with --rollback --to ID"
            ),
            MissingFromHistory(id) => {
                write!(f, "the deploy in effect, {id}, is missing from the history")
            }
            BeforePruned { before, id } => write!(
                f,
                "deploy {before}, which {id} replaced, was pruned (--keep): roll back with --to one of --list"
            ),
            NotAnId(to) => write!(f, "{to:?} is not a deploy id (see jarvisctl deploy --list)"),
            NotInHistory(to) => {
                write!(f, "deploy {to} is not in this host's history (see --list)")
            }
            Step { doing, why } => write!(f, "{doing} failed: {why}"),

            Untouched(why) => write!(f, "{why}; the live code was not touched"),
            NothingChanged(why) => write!(f, "{why}; nothing on the host was changed"),
            RolledBack(why) => write!(
                f,
                "{why}; rolled back: the previous version runs and is healthy"
            ),
            RollbackFailed { why, undo } => write!(f, "{why}; ROLLBACK FAILED too: {undo}"),
        }
    }
}

impl From<Error> for DeployError {
    fn from(e: Error) -> DeployError {
        DeployError::Local(e)
    }
}

/// The command's edge: exit code and the note that says what to do.
impl From<DeployError> for Error {
    fn from(e: DeployError) -> Error {
        let text = e.to_string();
        match e {
            DeployError::Local(e) => e,
            DeployError::NoCode => Error::new(text)
                .with_code(exit::USAGE)
                .with_note("give the local code directory with --code DIR"),
            DeployError::NotADirectory(_) | DeployError::NotAPackage(_) => {
                Error::new(text).with_code(exit::USAGE)
            }
            DeployError::NotAWheelhouse(_) => Error::new(text).with_code(exit::USAGE).with_note(
                "build one with: pip wheel -r requirements.txt -w DIR (for the hosts' Python and platform)",
            ),
            DeployError::EnvLint { ref file, .. } => {
                let note = format!("see jarvisctl env lint {}", file.display());
                Error::new(text).with_note(note)
            }
            _ => Error::new(text),
        }
    }
}
