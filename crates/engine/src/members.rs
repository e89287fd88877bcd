//! Every process the program started, not only its process group: a
//! `setsid` or a double fork leaves the group, and `stop` must end those too
//! (issue 24), as systemd's KillMode=control-group does.
//!
//! Where this host lets the engine make a cgroup, the program runs in one of
//! its own, even without MemoryMax=: on cgroup v2 (or the v2 hierarchy of a
//! hybrid host) a directory at the root of the cgroup2 mount, ended with
//! `cgroup.kill`; on cgroup v1 a child of the engine's own cgroup in the
//! freezer hierarchy (frozen, then killed, so a fork cannot race the kill),
//! else the pids or memory hierarchy (killed in rounds until empty). The
//! kernel keeps the list; no process can leave it.
//!
//! Without one, the engine is a child subreaper: an escaped process is
//! re-parented to it, so the program's processes are the engine's
//! descendants.

use std::fs;
use std::path::PathBuf;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::memory::{mounts, own_v1_cgroup};

/// The program's own cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub dir: PathBuf,
    v1_freezer: bool,
}

/// How many SIGKILL rounds before giving up on processes that survive them
/// (in uninterruptible sleep, say); each round re-reads the list.
const KILL_ROUNDS: u32 = 50;

impl Cgroup {
    pub fn at(dir: PathBuf) -> Cgroup {
        let v1_freezer = dir.join("freezer.state").exists();
        Cgroup { dir, v1_freezer }
    }

    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// The live (not zombie) processes in it, from the kernel's list.
    pub fn pids(&self) -> Vec<i32> {
        let text = fs::read_to_string(self.procs()).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .filter(|&p| live(p))
            .collect()
    }

    /// SIGKILL to every process in it, without a fork escaping between the
    /// read of the list and the kill: `cgroup.kill` (v2, Linux 5.14) does it
    /// in the kernel; the v1 freezer stops them all first; else rounds
    /// until the list is empty. How many were in it.
    pub fn kill_all(&self) -> usize {
        let n = self.pids().len();
        if n == 0 {
            return 0;
        }
        if fs::write(self.dir.join("cgroup.kill"), "1").is_ok() {
            return n;
        }
        let frozen = self.v1_freezer && self.freeze();
        for _ in 0..KILL_ROUNDS {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for &p in &pids {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            if frozen {
                // Every member is stopped and has its SIGKILL: they die once thawed.
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        if frozen {
            let _ = fs::write(self.dir.join("freezer.state"), "THAWED");
        }
        n
    }

    /// Freeze the v1 freezer cgroup; true once the kernel says FROZEN.
    fn freeze(&self) -> bool {
        let state = self.dir.join("freezer.state");
        if fs::write(&state, "FROZEN").is_err() {
            return false;
        }
        for _ in 0..500 {
            if fs::read_to_string(&state).is_ok_and(|s| s.trim() == "FROZEN") {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        false
    }

    /// Removed once empty; a cgroup that still has processes stays (the
    /// next run finds them there).
    pub fn remove(&self) {
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Alive and not a zombie.
pub fn live(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| *s != "Z" && *s != "X"))
}

/// The fields of /proc/PID/stat after the command name: state, ppid, pgrp, ...
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The program's cgroup: found again (the last run's, after a crash) or
/// made, and one line that says which. `name` is one per engine, the same
/// at every run of it, so that the next run finds a killed run's processes;
/// on v2 it is the directory MemoryMax= uses too.
pub fn setup(name: &str) -> (Option<Cgroup>, String) {
    let mut why = Vec::new();
    for (mount, opts) in mounts("cgroup2") {
        if opts.split(',').any(|o| o == "ro") {
            why.push(format!("{} is read-only", mount.display()));
            continue;
        }
        let dir = mount.join(name);
        match fs::create_dir_all(&dir) {
            Ok(()) => return made(Cgroup::at(dir), "cgroup v2"),
            Err(e) => why.push(format!("cannot make {}: {e}", dir.display())),
        }
    }
    let v1 = mounts("cgroup");
    for ctrl in ["freezer", "pids", "memory"] {
        let Some((mount, _)) = v1.iter().find(|(_, o)| o.split(',').any(|x| x == ctrl)) else {
            continue;
        };
        let dir = mount.join(own_v1_cgroup(ctrl).trim_start_matches('/')).join(name);
        match fs::create_dir_all(&dir) {
            Ok(()) => return made(Cgroup::at(dir), &format!("cgroup v1 {ctrl}")),
            Err(e) => why.push(format!("cannot make {}: {e}", dir.display())),
        }
    }
    if why.is_empty() {
        why.push("no cgroup file system mounted".into());
    }
    (
        None,
        format!(
            "no cgroup for the program ({}): stop ends the engine's descendants (it is their subreaper), and the next run ends a killed run's processes by their INVOCATION_ID",
            why.join("; ")
        ),
    )
}

fn made(cg: Cgroup, kind: &str) -> (Option<Cgroup>, String) {
    let line = format!(
        "the program runs in a {kind} cgroup of its own, {}: stop ends every process in it",
        cg.dir.display()
    );
    (Some(cg), line)
}

/// The live descendants of `root` (the engine, their subreaper), from /proc.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Some(f) = stat_fields(pid) {
                let ppid = f.get(1).and_then(|p| p.parse::<i32>().ok()).unwrap_or(0);
                parent_of.push((pid, ppid, f[0] != "Z" && f[0] != "X"));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp, _)| *pp == p).map(|(c, _, _)| *c));
        i += 1;
    }
    found
        .into_iter()
        .skip(1)
        .filter(|p| parent_of.iter().any(|(c, _, up)| c == p && *up))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    #[test]
    fn a_process_in_a_session_of_its_own_is_still_a_descendant() {
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "setsid sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(sh.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let sleep: i32 = line.trim().parse().unwrap();
        let found = descendants(std::process::id() as i32);
        let _ = kill(Pid::from_raw(sleep), Signal::SIGKILL);
        let _ = sh.wait();
        assert!(found.contains(&(sh.id() as i32)), "{found:?}");
        assert!(found.contains(&sleep), "{sleep} not in {found:?}");
        assert!(!found.contains(&(std::process::id() as i32)));
        assert!(!live(sleep) || !descendants(std::process::id() as i32).contains(&sleep));
    }
}
