//! `MemoryMax=`: a cgroup v2 limit when a writable cgroup2 mount has the
//! memory controller, else RLIMIT_DATA on each process (a per-process cap on
//! private writable memory, which is what a leak grows).

use std::fs;
use std::path::PathBuf;

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
}

/// The cgroup2 mount points of this host.
fn cgroup2_mounts() -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// Make the limit; returns it and one line that says what was done.
pub fn setup(max: Option<u64>, name: &str) -> (Limit, String) {
    let Some(max) = max else {
        return (Limit::None, "MemoryMax: not set, no memory limit".to_string());
    };
    let mut why = "no cgroup2 mount".to_string();
    for mount in cgroup2_mounts() {
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
                return (
                    Limit::Cgroup(dir.join("cgroup.procs")),
                    format!("MemoryMax={max}: cgroup v2 limit in {}", dir.display()),
                )
            }
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                why = format!("cannot make a cgroup in {}: {e}", mount.display());
            }
        }
    }
    (
        Limit::Rlimit(max),
        format!(
            "MemoryMax={max}: no cgroup v2 memory limit here ({why}); applied as RLIMIT_DATA per process instead"
        ),
    )
}
