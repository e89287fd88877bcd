//! `MemoryMax=`: a cgroup memory limit when this host lets the engine make
//! one (cgroup v2 with the memory controller, else the cgroup v1 memory
//! hierarchy), else RLIMIT_DATA on each process (a per-process cap on
//! private writable memory, which is what a leak grows).
//!
//! With a cgroup, the kernel's own count of OOM kills in it (`oom_kill` in
//! v2's `memory.events`, v1's `memory.oom_control`) is the engine's only
//! evidence of an OOM kill: a SIGKILL alone does not say who sent it.

use std::fs;
use std::path::{Path, PathBuf};

use jarvis_model::error::{Error, Result};

pub enum Limit {
    None,
    /// The cgroup.procs file the program joins.
    Cgroup(PathBuf),
    Rlimit(u64),
}

impl Limit {
    pub fn name(&self) -> &'static str {
        match self {
            Limit::None => "none",
            Limit::Cgroup(_) => "cgroup",
            Limit::Rlimit(_) => "rlimit",
        }
    }

    /// The kernel's count of OOM kills in the cgroup so far; None without
    /// a cgroup, or on a kernel that does not count them (before 4.13).
    pub fn oom_kills(&self) -> Option<u64> {
        match self {
            Limit::Cgroup(procs) => oom_kills(procs.parent()?),
            _ => None,
        }
    }
}

/// `oom_kill N` of a cgroup directory: v2 keeps it in memory.events, v1 in
/// memory.oom_control (the same key in both). Files the kernel writes, in a
/// directory only root can write.
pub fn oom_kills(dir: &Path) -> Option<u64> {
    ["memory.events", "memory.oom_control"].iter().find_map(|f| {
        let text = fs::read_to_string(dir.join(f)).ok()?;
        oom_kill_field(&text)
    })
}

fn oom_kill_field(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == "oom_kill").then(|| v.trim().parse().ok()).flatten()
    })
}

/// The mount points of this host's file systems of type `fstype`, with their
/// mount options.
pub fn mounts(fstype: &str) -> Vec<(PathBuf, String)> {
    let Ok(text) = fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && f[2] == fstype).then(|| (PathBuf::from(f[1]), f[3].to_string()))
        })
        .collect()
}

/// This process's cgroup in the v1 hierarchy of `controller` ("/" on a
/// plain host), from /proc/self/cgroup (`N:memory:/path`, or with
/// co-mounted controllers).
pub fn own_v1_cgroup(controller: &str) -> String {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    own_v1_cgroup_of(&text, controller)
}

fn own_v1_cgroup_of(text: &str, controller: &str) -> String {
    text.lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            ctrl.split(',').any(|c| c == controller).then(|| path.to_string())
        })
        .unwrap_or_else(|| "/".into())
}

/// Make the limit; returns it and one line that says what was done. `name`
/// is the cgroup's directory name (one per engine).
pub fn setup(max: Option<u64>, name: &str) -> (Limit, String) {
    let Some(max) = max else {
        return (Limit::None, "MemoryMax: not set, no memory limit".to_string());
    };
    let mut why = vec!["no cgroup2 mount".to_string()];
    match v2(max, name) {
        Ok((limit, line)) => return (limit, line),
        Err(e) => why[0] = e.to_string(),
    }
    match v1(max, name) {
        Ok((limit, line)) => return (limit, line),
        Err(e) => why.push(e.to_string()),
    }
    (
        Limit::Rlimit(max),
        format!(
            "MemoryMax={max}: no cgroup memory limit here ({}); applied as RLIMIT_DATA per process instead (no OOM kill to report: an allocation fails instead)",
            why.join("; ")
        ),
    )
}

fn v2(max: u64, name: &str) -> Result<(Limit, String)> {
    let mut why = "no cgroup2 mount".to_string();
    for (mount, _) in mounts("cgroup2") {
        let controllers = fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
        if !controllers.split_whitespace().any(|c| c == "memory") {
            why = format!("{} has no memory controller", mount.display());
            continue;
        }
        let dir = mount.join(name);
        let made = fs::create_dir_all(&dir)
            .and_then(|_| fs::write(mount.join("cgroup.subtree_control"), "+memory"))
            .and_then(|_| fs::write(dir.join("memory.max"), max.to_string()))
            .and_then(|_| fs::write(dir.join("memory.swap.max"), "0").or(Ok(())));
        match made {
            Ok(()) => {
                return Ok((
                    Limit::Cgroup(dir.join("cgroup.procs")),
                    format!("MemoryMax={max}: cgroup v2 limit in {}", dir.display()),
                ))
            }
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                why = format!("cannot make a cgroup in {}: {e}", mount.display());
            }
        }
    }
    Err(Error::new(why))
}

/// The v1 memory hierarchy: a child of the engine's own memory cgroup, so
/// that a limit set above the engine still holds for the program.
fn v1(max: u64, name: &str) -> Result<(Limit, String)> {
    let Some((mount, _)) = mounts("cgroup")
        .into_iter()
        .find(|(_, opts)| opts.split(',').any(|o| o == "memory"))
    else {
        return Err(Error::new("no cgroup v1 memory hierarchy"));
    };
    let own = own_v1_cgroup("memory");
    let dir = mount.join(own.trim_start_matches('/')).join(name);
    let made = fs::create_dir_all(&dir)
        .and_then(|_| fs::write(dir.join("memory.limit_in_bytes"), max.to_string()))
        // Memory plus swap at the same cap: the limit is not dodged by
        // swapping (the file exists only with swap accounting).
        .and_then(|_| fs::write(dir.join("memory.memsw.limit_in_bytes"), max.to_string()).or(Ok(())));
    match made {
        Ok(()) => Ok((
            Limit::Cgroup(dir.join("cgroup.procs")),
            format!("MemoryMax={max}: cgroup v1 memory limit in {}", dir.display()),
        )),
        Err(e) => {
            let _ = fs::remove_dir(&dir);
            Err(Error::new(format!(
                "cannot make a cgroup in {}: {e}",
                mount.display()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oom_kill_count_is_read_from_v2_and_v1_files() {
        // cgroup v2 memory.events, as the kernel writes it.
        let v2 = "low 0\nhigh 0\nmax 1423\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kill_field(v2), Some(2));
        // cgroup v1 memory.oom_control.
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n";
        assert_eq!(oom_kill_field(v1), Some(1));
        // A kernel before 4.13 has no count: no evidence, not zero.
        assert_eq!(oom_kill_field("oom_kill_disable 0\nunder_oom 0\n"), None);
    }

    #[test]
    fn the_v1_memory_cgroup_is_found_among_co_mounted_controllers() {
        let text = "9:name=systemd:/\n4:memory:/process_api/768a\n0::/\n";
        assert_eq!(own_v1_cgroup_of(text, "memory"), "/process_api/768a");
        assert_eq!(own_v1_cgroup_of("5:cpu,memory:/a/b\n", "memory"), "/a/b");
        assert_eq!(own_v1_cgroup_of("0::/user.slice\n", "memory"), "/");
    }
}
