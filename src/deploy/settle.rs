//! The host's own finish of a deploy that was cut off (issue 27): the
//! power went, the disk filled, the worker was killed. Run as root before
//! every start of the bot (`ExecStartPre=+jarvisctl settle`, which the
//! fallback engine runs too, so boot is covered on both engines), by the
//! package's postinst, and by `status --record`; `status` and `check` name
//! what it would settle. It works from the journal on disk (`meta.json`),
//! with the deploy's own undo, run here with sh instead of over ssh: a swap
//! cut off is undone (it was never verified), a store cut off before its
//! swap is dropped, and a damaged `current` is rebuilt from the live code.
//!
//! A deploy whose client is alive holds the deploy lock: then nothing is
//! touched, and a start during its swap waits for the swap's step lock, so
//! that the bot never starts on half a swap (`dpkg -i` mid-swap, issue 27
//! item 3).

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;

use super::error::{DeployError, Result};
use super::host_paths::{CURRENT, DEPLOYS, LOCK, STEP_LOCK, SWAP_LOCK};
use super::hosts::Host;
use super::ids::{order, valid_id};
use super::journal::Meta;
use super::recovery::{self, Cut, Finish};
use super::remote::SshSession;
use super::settings::SshSettings;
use crate::ssh::Target;
use jarvis_model::paths::Paths;

/// The most of a `meta.json` read: a journal is a few hundred bytes.
const META_MAX: u64 = 1 << 20;
/// How long a start waits for a live deploy's swap to end (the unit's
/// TimeoutStartSec= is 300 s).
const SWAP_WAIT: Duration = Duration::from_secs(240);

/// What the history on this host shows as not settled.
#[derive(Debug, Default)]
pub struct Pending {
    pub cuts: Vec<Cut>,
    /// Why `current` is damaged.
    pub current_damaged: Option<String>,
    /// A deploy's client holds the deploy lock: what is in progress is its.
    pub live: bool,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.cuts.is_empty() && self.current_damaged.is_none()
    }

    /// One line per finding, with what settles it (none while a deploy is
    /// under way: it settles what it finds first).
    pub fn describe(&self) -> Vec<String> {
        if self.live {
            return Vec::new();
        }
        let fix = "run `jarvisctl settle` (a start of the bot settles it first)";
        let mut out: Vec<String> = self
            .cuts
            .iter()
            .map(|c| {
                if c.restarted() {
                    format!(
                        "deploy {} was interrupted while {}, after its swap: the bot may run its unverified code; \
                         run `jarvisctl restart`, which undoes it before the start",
                        c.id,
                        c.phase()
                    )
                } else if c.swapped {
                    format!(
                        "deploy {} was interrupted while {}: the code may be part old, part new; {fix} to undo it",
                        c.id,
                        c.phase()
                    )
                } else {
                    format!(
                        "deploy {} was interrupted while {}, before its swap (the live code is whole); {fix} to drop its store",
                        c.id,
                        c.phase()
                    )
                }
            })
            .collect();
        if let Some(why) = &self.current_damaged {
            out.push(format!(
                "{CURRENT} is damaged ({why}); {fix} to rebuild it from the live code"
            ));
        }
        out
    }
}

/// Reads the history on this host (root's: nothing the service user can
/// write), without a lock and without changing anything.
pub fn scan(paths: &Paths) -> Pending {
    let deploys = paths.host(Path::new(DEPLOYS));
    let Ok(dir) = std::fs::read_dir(&deploys) else {
        return Pending::default();
    };
    let mut rows: Vec<(String, Meta)> = Vec::new();
    let mut befores = Vec::new();
    for e in dir.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        if !valid_id(&id) || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let meta = match read_bounded(&e.path().join("meta.json")) {
            Some(text) => Meta::parse(&text),
            None => Meta::default(),
        };
        if e.path().join("before.tsv").is_file() {
            befores.push(id.clone());
        }
        rows.push((id, meta));
    }
    rows.sort_by_key(|(id, _)| order(id));
    let raw = read_bounded(&deploys.join("current"));
    let current = raw
        .as_deref()
        .map(str::trim)
        .filter(|id| valid_id(id) && rows.iter().any(|(i, _)| i == id));
    let current_damaged = match (&raw, current) {
        (Some(text), None) => Some(match text.trim() {
            id if valid_id(id) => format!("it names deploy {id}, which is not in the history"),
            _ => format!("it holds no deploy id: {} byte(s)", text.len()),
        }),
        _ => None,
    };
    let cuts = recovery::interrupted(&rows, current, |id| befores.iter().any(|b| b == id));
    let live = !cuts.is_empty() && under_way(&paths.host(Path::new(LOCK)));
    Pending {
        cuts,
        current_damaged,
        live,
    }
}

/// Whether a process holds the deploy lock, read from /proc/locks: taking
/// the lock, even shared and for an instant, could refuse a deploy's start.
fn under_way(lock: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Ok(locks)) = (std::fs::metadata(lock), std::fs::read_to_string("/proc/locks")) else {
        return false;
    };
    crate::live::flock_holder(&locks, m.dev(), m.ino()).is_some()
}

fn read_bounded(path: &Path) -> Option<String> {
    use std::io::Read;
    let f = File::open(path).ok()?;
    let mut text = String::new();
    f.take(META_MAX).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Held by the settle at work, so that two never run at once.
const SETTLE_LOCK: &str = "/run/jarvis-settle.lock";

/// What `jarvisctl settle` did.
#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Settled {
    /// Nothing was cut off.
    Nothing,
    /// A deploy is under way (its client holds the lock): it finishes or
    /// undoes its own swap. `waited_s`: how long this start waited for its
    /// swap to end.
    LiveDeploy {
        id: Option<String>,
        phase: String,
        waited_s: f64,
    },
    /// A step of a deploy whose client is gone still runs (dpkg, a
    /// restart): settled at the next start.
    StepRunning { id: Option<String>, phase: String },
    /// A deploy cut off after its swap, left for the bot's next start.
    LeftForStart { id: String, phase: String },
    /// Settled: each line says what was done.
    Done { done: Vec<String>, seconds: f64 },
}

/// Settles what [`scan`] finds. Root only: it rewrites the code root.
/// With `bot_may_run` (status --record), a deploy cut off after its swap
/// is left for the next start: the bot may have started on its code, and
/// files put back under it would be imported beside the new ones.
pub fn settle(paths: &Paths, by: &str, bot_may_run: bool) -> Result<Settled> {
    if scan(paths).is_empty() {
        return Ok(Settled::Nothing);
    }
    // One settle at a time (a start's and the health timer's): the deploy
    // lock another settle holds must never read as a live deploy's, or a
    // start would go on while that settle is still putting files back.
    let _one = wait_for_lock(&paths.host(Path::new(SETTLE_LOCK)), SWAP_WAIT)?;
    // Read again: the settle before may have done it all.
    let pending = Pending {
        live: false,
        ..scan(paths)
    };
    if pending.is_empty() {
        return Ok(Settled::Nothing);
    }
    if let Some(c) = pending.cuts.iter().find(|c| bot_may_run && c.restarted()) {
        return Ok(Settled::LeftForStart {
            id: c.id.clone(),
            phase: c.phase(),
        });
    }
    let t0 = Instant::now();
    // A swap under way (a live deploy's, or one whose client was cut off)
    // ends first: the bot never starts on half of it. Only the worker's
    // apply holds this lock, and it never waits for a start.
    wait_for_free(&paths.host(Path::new(SWAP_LOCK)), SWAP_WAIT)?;
    let Some(_lock) = try_lock(&paths.host(Path::new(LOCK)))? else {
        // The deploy that holds the lock is the newest in progress.
        let live = pending.cuts.iter().rev().find(|c| c.meta.in_progress());
        return Ok(Settled::LiveDeploy {
            id: live.map(|c| c.id.clone()),
            phase: live.map_or_else(|| "starting".to_string(), Cut::phase),
            waited_s: round(t0.elapsed()),
        });
    };
    // A step of a deploy whose client is gone still runs (its dpkg or its
    // restart, which may be what runs this very command): it changes no
    // code file, and undoing now would wait for it, which waits for us.
    // What it leaves is settled at the next start.
    if under_way(&paths.host(Path::new(STEP_LOCK))) {
        let cut = pending.cuts.iter().rev().find(|c| c.meta.in_progress());
        return Ok(Settled::StepRunning {
            id: cut.map(|c| c.id.clone()),
            phase: cut.map_or_else(|| "-".to_string(), Cut::phase),
        });
    }
    let host = Host::plain(Target {
        name: "settle".into(),
        destination: "localhost".into(),
        port: None,
    });
    let ssh = SshSettings {
        options: Vec::new(),
        connect: Duration::from_secs(10),
    };
    let s = SshSession {
        host: &host,
        ssh: &ssh,
        bwlimit: None,
        local: true,
    };
    let facts = super::session::Session::probe(&s)?;
    let mut done = pending.describe();
    // Only a swap that may be half done stops the start. A store not
    // dropped, or a `current` that cannot be rebuilt, is bookkeeping: the
    // live code is whole, and the bot starts (status goes on naming it).
    let mixed = pending.cuts.iter().any(|c| c.swapped);
    match recovery::recover(&s, &facts, Finish::Host { by }) {
        Ok(_) => {}
        Err(e) if mixed => return Err(e),
        Err(e) => done.push(format!("not settled: {e}")),
    }
    match recovery::repair_current(&s, &facts.code_dir) {
        Ok(Some((why, id))) => done.push(format!(
            "{CURRENT} was damaged ({why}): it names {id} again, whose files the live code holds"
        )),
        Ok(None) => {}
        Err(e) => done.push(format!("not settled: {e}")),
    }
    Ok(Settled::Done {
        done,
        seconds: round(t0.elapsed()),
    })
}

fn round(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// The deploy lock, or None while a deploy's client holds it.
fn try_lock(path: &Path) -> Result<Option<Flock<File>>> {
    let file = open_lock(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(DeployError::LockFailed(format!("{}: {e}", path.display()))),
    }
}

/// Takes the lock at `path`, waiting at most `max`; held until dropped.
fn wait_for_lock(path: &Path, max: Duration) -> Result<Flock<File>> {
    let deadline = Instant::now() + max;
    let mut file = open_lock(path)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(l),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(_) => return Err(DeployError::StepBusy(max)),
        }
    }
}

/// Waits until no process holds the lock at `path`, at most `max`: taken
/// for an instant only (a worker that comes then waits that long).
fn wait_for_free(path: &Path, max: Duration) -> Result<()> {
    wait_for_lock(path, max).map(drop)
}

fn open_lock(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| DeployError::LockFailed(format!("{}: {e}", path.display())))
}
