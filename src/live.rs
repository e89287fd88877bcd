//! The fallback engine as the kernel sees it, for when its own files are
//! damaged (issue 27, item 9): the process that holds `run.lock`
//! (/proc/locks), taken for the engine only on evidence the service user
//! cannot forge: the lock file and the state directory are the trusted
//! owner's (root's on an installed system), the process runs as that user
//! with the engine's binary, and it holds the lock file open. A pid read
//! from a file is never signalled on its word alone.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use jarvis_engine::LOCK_FILE;

/// Who holds the engine's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Nobody: no engine runs.
    Free,
    /// The engine, verified; its program's main process if one runs.
    Engine { pid: u32, main_pid: Option<u32> },
    /// Held, but not by a process that passes the checks: why not.
    Untrusted(String),
}

/// The engine binary's file name (`jarvisctl run` execs it).
const ENGINE_EXE: &str = "jarvis-engine";

/// The holder of `dir`'s run.lock. `root_only`: the trusted owner must be
/// root (an installed system); else the state directory's owner (a test
/// tree under --root).
pub fn holder(dir: &Path, root_only: bool) -> Holder {
    let lock = dir.join(LOCK_FILE);
    let (Ok(dir_meta), Ok(lock_meta)) = (std::fs::symlink_metadata(dir), std::fs::symlink_metadata(&lock))
    else {
        return Holder::Free;
    };
    let locks = match std::fs::read_to_string("/proc/locks") {
        Ok(t) => t,
        Err(e) => return Holder::Untrusted(format!("cannot read /proc/locks: {e}")),
    };
    let Some(pid) = flock_holder(&locks, lock_meta.dev(), lock_meta.ino()) else {
        return Holder::Free;
    };
    let owner = dir_meta.uid();
    let trusted = if root_only { owner == 0 } else { true };
    if !trusted || lock_meta.uid() != owner || !lock_meta.is_file() || lock_meta.mode() & 0o022 != 0 {
        return Holder::Untrusted(format!(
            "{} or {} is not owned and writable only by {} (uid {}, mode {:o})",
            dir.display(),
            lock.display(),
            if root_only {
                "root"
            } else {
                "the state directory's owner"
            },
            lock_meta.uid(),
            lock_meta.mode() & 0o7777
        ));
    }
    match check_engine(pid, owner, lock_meta.dev(), lock_meta.ino()) {
        Ok(()) => Holder::Engine {
            pid,
            main_pid: main_child(pid),
        },
        Err(why) => Holder::Untrusted(format!("pid {pid} holds {} but {why}", lock.display())),
    }
}

/// The pid that holds a whole-file flock on (dev, ino) in /proc/locks'
/// text: `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF` (the device as
/// hex major:minor); waiting lines (`->`) are not holders.
pub fn flock_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

/// The checks that make `pid` the engine: every uid of it is `owner`, its
/// binary is the engine's, and it holds the lock file (dev, ino) open.
fn check_engine(pid: u32, owner: u32, dev: u64, ino: u64) -> std::result::Result<(), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("its /proc entry is unreadable: {e}"))?;
    let uids: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|v| v.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    if uids.len() != 4 || uids.iter().any(|&u| u != owner) {
        return Err(format!("it does not run as uid {owner} (its uids: {uids:?})"));
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map_err(|e| format!("its binary is unreadable: {e}"))?;
    // An upgrade replaces the binary under a running engine: "(deleted)".
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.trim_end_matches(" (deleted)") != ENGINE_EXE {
        return Err(format!("its binary is {}, not {ENGINE_EXE}", exe.display()));
    }
    let holds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("its descriptors are unreadable: {e}"))?
        .flatten()
        .any(|fd| std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino));
    if !holds {
        return Err("it does not hold the lock file open".into());
    }
    Ok(())
}

/// The engine's program: its child that leads a process group of its own
/// (the engine starts each command so; its `jarvisctl alert` does not).
fn main_child(engine: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let (_, rest) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()?
            .rsplit_once(") ")
            .map(|(a, b)| (a.to_string(), b.to_string()))?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (ppid, pgrp): (u32, u32) = (f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?);
        (ppid == engine && pgrp == pid).then_some(pid)
    })
}

/// When `pid` started, in seconds on CLOCK_BOOTTIME (the kernel's start
/// time of the process, which no change of the wall clock moves).
pub fn started_boot_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks: u64 = stat
        .rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_read_from_proc_locks_and_waiters_are_not_holders() {
        let dev = nix::sys::stat::makedev(0, 0x1a);
        let locks = "1: POSIX  ADVISORY  WRITE 77 00:1a:999 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 00:1a:1234 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 5151 00:1a:1234 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 6000 08:01:1234 0 EOF\n";
        assert_eq!(flock_holder(locks, dev, 1234), Some(4242));
        assert_eq!(
            flock_holder(locks, dev, 999),
            None,
            "a POSIX lock is not the engine's flock"
        );
        assert_eq!(
            flock_holder(locks, nix::sys::stat::makedev(8, 1), 1234),
            Some(6000)
        );
        assert_eq!(flock_holder(locks, dev, 5), None);
    }

    /// The test process holds a flock on a file of its own: it is found,
    /// and refused as the engine (its binary is the test's).
    #[test]
    fn a_lock_held_by_another_binary_is_not_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(holder(dir.path(), false), Holder::Free);
        let _held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
        match holder(dir.path(), false) {
            Holder::Untrusted(why) => assert!(
                why.contains(&format!("pid {} holds", std::process::id()))
                    && why.contains("not jarvis-engine"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_process_start_time_is_on_the_boot_clock() {
        let me = started_boot_s(std::process::id()).unwrap();
        let now = jarvis_model::state::now_boot();
        assert!(me > 0.0 && me <= now + 0.02, "{me} {now}");
    }
}
