//! Processes of a previous `jarvisctl run` that was killed with `-9`.
//!
//! The program itself dies with its engine (parent-death signal), but its
//! own children do not, nor what it started with `setsid` or a double fork.
//! With a cgroup, they are all still in the program's cgroup, which the
//! next run finds at the same place: it ends every process in it.
//!
//! Without one, every start writes `run.group` (in the root-owned state
//! directory): the process group, the start's `INVOCATION_ID` (which
//! systemd also sets) and the program's uid. The next run ends the live
//! processes that carry that INVOCATION_ID and whose real, effective, saved
//! and file-system uids are all the program's: a stale pid number reused by
//! an unrelated process is never signalled, and the service user, who can
//! put the marker into any environment it makes, can point this only at
//! processes it owns outright (a set-uid program it runs keeps another
//! uid). A process that clears its environment escapes this; only a
//! cgroup holds every one.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::members::{live, Cgroup};
use super::say;

pub const GROUP_FILE: &str = "run.group";

/// A fresh 128-bit id, as hex, like systemd's INVOCATION_ID.
pub fn invocation_id() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn record(dir: &Path, pgid: Pid, id: &str, uid: u32) {
    let _ = fs::write(dir.join(GROUP_FILE), format!("{pgid} {id} {uid}\n"));
}

pub fn forget(dir: &Path) {
    let _ = fs::remove_file(dir.join(GROUP_FILE));
}

/// What `run.group` says: the group, the marker, and the uid (absent in
/// the file of an older engine: the group is required instead).
struct Recorded {
    pgid: i32,
    marker: Vec<u8>,
    uid: Option<u32>,
}

fn recorded(dir: &Path) -> Option<Recorded> {
    let text = fs::read_to_string(dir.join(GROUP_FILE)).ok()?;
    let mut words = text.split_whitespace();
    let pgid = words.next()?.parse::<i32>().ok()?;
    let id = words.next()?;
    let uid = words.next().and_then(|u| u.parse::<u32>().ok());
    Some(Recorded {
        pgid,
        marker: format!("INVOCATION_ID={id}").into_bytes(),
        uid,
    })
}

/// The real, effective, saved and fs uid, all four equal, from /proc/PID/status.
fn sole_uid(base: &Path) -> Option<u32> {
    let status = fs::read_to_string(base.join("status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    let uids: Vec<u32> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|u| u.parse().ok())
        .collect();
    (uids.len() == 4 && uids.iter().all(|u| *u == uids[0])).then(|| uids[0])
}

/// Live processes of the recorded run: its marker in their environment,
/// and its uid (or, from an older engine's file, its group).
fn members(r: &Recorded) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid as u32 == std::process::id() || !live(pid) {
            continue;
        }
        let base = PathBuf::from("/proc").join(pid.to_string());
        let ours = match r.uid {
            Some(uid) => sole_uid(&base) == Some(uid),
            None => fs::read_to_string(base.join("stat")).ok().is_some_and(|s| {
                s.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split_whitespace().nth(2).map(|g| g == r.pgid.to_string()))
                    .unwrap_or(false)
            }),
        };
        if !ours {
            continue;
        }
        let Ok(env) = fs::read(base.join("environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|v| v == r.marker.as_slice()) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// The processes the last run's program started that still run: those in
/// its cgroup, and (as root) those that carry its marker.
pub fn survivors(dir: &Path, cgroup: Option<&Cgroup>) -> Vec<i32> {
    let mut pids = cgroup.map(Cgroup::pids).unwrap_or_default();
    if let Some(r) = recorded(dir) {
        pids.extend(members(&r));
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// End what is left of the previous run: SIGTERM, then SIGKILL after
/// `grace`, until none is left. A one-time wait at start, before anything
/// is supervised.
pub fn end_previous(dir: &Path, grace: Duration, cgroup: Option<&Cgroup>) {
    let left = survivors(dir, cgroup);
    if left.is_empty() {
        forget(dir);
        return;
    }
    let t0 = Instant::now();
    say!(
        "{} process(es) of the previous run are still alive (pids {:?}; was jarvisctl run killed?): SIGTERM, then SIGKILL after {}s",
        left.len(),
        left,
        grace.as_secs_f64()
    );
    let signal_all = |pids: &[i32], sig: Signal| {
        for &pid in pids {
            let _ = kill(Pid::from_raw(pid), sig);
            if sig != Signal::SIGKILL {
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            }
        }
    };
    // In rounds: a fork between the read of the list and the signal
    // gets the next round's.
    let mut ended = left.clone();
    let mut still = left;
    while !still.is_empty() && t0.elapsed() < grace {
        signal_all(&still, Signal::SIGTERM);
        std::thread::sleep(Duration::from_millis(50));
        still = survivors(dir, cgroup);
        ended.extend(&still);
    }
    if !still.is_empty() {
        say!("pids {still:?} of the previous run did not exit in time; sending SIGKILL");
    }
    for _ in 0..100 {
        if still.is_empty() {
            break;
        }
        if let Some(cg) = cgroup {
            cg.kill_all();
        }
        signal_all(&still, Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(20));
        still = survivors(dir, cgroup);
        ended.extend(&still);
    }
    ended.sort_unstable();
    ended.dedup();
    if still.is_empty() {
        say!(
            "the previous run's {} process(es) ended in {:.2}s",
            ended.len(),
            t0.elapsed().as_secs_f64()
        );
        forget(dir);
    } else {
        say!("pids {still:?} of the previous run survive SIGKILL; starting anyway");
    }
}
