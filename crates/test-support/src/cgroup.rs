//! A cgroup of its own for each container.
//!
//! With `--keep-unit`, nspawn puts the container in `payload/` below the
//! cgroup nspawn itself runs in. Every container started from one test
//! process would then share one tree, and the systemds inside would create,
//! limit, kill and remove the same `system.slice/UNIT` directories: a unit
//! start in one container failed with status 219/CGROUP while another
//! container stopped its unit of the same name. So each container's nspawn
//! is started in a child cgroup of its own, in every hierarchy this process
//! is in.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Own {
    /// One directory per hierarchy, made by `create`.
    dirs: Vec<PathBuf>,
}

impl Own {
    /// Make `NAME` below this process's cgroup in each hierarchy that can
    /// take it. cpuset is left out: a v1 cpuset child starts with no CPUs,
    /// and systemd inside does not use it.
    pub fn create(name: &str) -> Own {
        let mut dirs = Vec::new();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let ours = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        for line in ours.lines() {
            let mut f = line.splitn(3, ':');
            let (Some(_), Some(ctl), Some(path)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if ctl.split(',').any(|c| c == "cpuset") {
                continue;
            }
            let Some(base) = hierarchy_dir(&mounts, ctl, path) else {
                continue;
            };
            let dir = base.join(name);
            match fs::create_dir(&dir) {
                Ok(()) => dirs.push(dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => dirs.push(dir),
                Err(e) => {
                    // nspawn still works from the shared cgroup, as before,
                    // with the risk above: say so.
                    eprintln!(
                        "e2e: cannot make the container's own cgroup {} ({e}): it shares this process's cgroup with the other containers",
                        dir.display()
                    );
                }
            }
        }
        Own { dirs }
    }

    /// The `cgroup.procs` files to write the nspawn process's pid into.
    pub fn procs_files(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.join("cgroup.procs").display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The CPU time everything in the container has used so far: cgroup
    /// v1's `cpuacct.usage`, or v2's `usage_usec` in `cpu.stat`.
    pub fn cpu_time(&self) -> Option<Duration> {
        self.dirs.iter().find_map(|d| {
            if let Ok(ns) = fs::read_to_string(d.join("cpuacct.usage")) {
                return ns.trim().parse().ok().map(Duration::from_nanos);
            }
            let stat = fs::read_to_string(d.join("cpu.stat")).ok()?;
            stat.lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|us| us.trim().parse().ok())
                .map(Duration::from_micros)
        })
    }

    /// Remove the cgroups, deepest first, once the container is gone (the
    /// kernel lets a cgroup go only when no process is left in it).
    pub fn remove(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in &self.dirs {
            loop {
                remove_tree(dir);
                if !dir.exists() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if dir.exists() {
                eprintln!(
                    "e2e: the container's cgroup {} is still in use: left in place",
                    dir.display()
                );
            }
        }
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// The directory of this process's cgroup `path` in the hierarchy with
/// controllers `ctl` ("" is the unified one), from the mount table.
fn hierarchy_dir(mountinfo: &str, ctl: &str, path: &str) -> Option<PathBuf> {
    for m in mountinfo.lines() {
        let Some((mine, theirs)) = m.split_once(" - ") else {
            continue;
        };
        let mine: Vec<&str> = mine.split(' ').collect();
        let theirs: Vec<&str> = theirs.split(' ').collect();
        let (Some(root), Some(point), Some(fstype), Some(opts)) =
            (mine.get(3), mine.get(4), theirs.first(), theirs.get(2))
        else {
            continue;
        };
        let fits = if ctl.is_empty() {
            *fstype == "cgroup2"
        } else {
            *fstype == "cgroup" && ctl.split(',').all(|c| opts.split(',').any(|o| o == c))
        };
        if !fits {
            continue;
        }
        // The path is relative to the mount's own root.
        let rel = path.strip_prefix(root.trim_end_matches('/')).unwrap_or(path);
        return Some(Path::new(point).join(rel.trim_start_matches('/')));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
";

    #[test]
    fn each_hierarchy_is_found_by_its_controllers() {
        assert_eq!(
            hierarchy_dir(MOUNTINFO, "", "/").unwrap(),
            Path::new("/sys/fs/cgroup/unified")
        );
        assert_eq!(
            hierarchy_dir(MOUNTINFO, "name=systemd", "/system.slice/ci.service").unwrap(),
            Path::new("/sys/fs/cgroup/systemd/system.slice/ci.service")
        );
        assert_eq!(
            hierarchy_dir(MOUNTINFO, "cpu,cpuacct", "/").unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            hierarchy_dir(MOUNTINFO, "memory", "/process_api/d4").unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/d4")
        );
        assert_eq!(hierarchy_dir(MOUNTINFO, "pids", "/"), None);
    }
}
