//! Where things live. Every path goes through `Paths`, so that tests can run
//! `setup` and `check` as an ordinary user against a temporary root.

use std::path::{Path, PathBuf};

/// The unit's name, as installed.
pub const UNIT: &str = "jarvis-supervisor.service";

/// The weekly restart's timer: `configure --weekly-restart` turns it on and
/// off, `status` reports it.
pub const RESTART_TIMER: &str = "jarvis-supervisor-restart.timer";

/// The file in the unit's runtime directory that carries a failed
/// preflight's lines: written by `check --preflight`, read by `backoff` and
/// `status`.
pub const PREFLIGHT_FAILED: &str = "preflight-failed";

#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    /// The real system.
    pub fn system() -> Self {
        Paths {
            root: PathBuf::from("/"),
        }
    }

    /// A tree rooted at `dir`: `/etc/x` becomes `dir/etc/x`.
    pub fn rooted(dir: impl Into<PathBuf>) -> Self {
        Paths { root: dir.into() }
    }

    /// A relative `--root` is taken from the current directory now: `run
    /// --daemon` changes to / before it reads anything.
    pub fn from_root(root: Option<&Path>) -> Self {
        root.map_or_else(Self::system, |r| {
            Self::rooted(std::path::absolute(r).unwrap_or_else(|_| r.to_path_buf()))
        })
    }

    pub fn is_system(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Map an absolute path of the target system into this tree.
    pub fn host(&self, absolute: &Path) -> PathBuf {
        match absolute.strip_prefix("/") {
            Ok(rel) => self.root.join(rel),
            Err(_) => self.root.join(absolute),
        }
    }

    /// Directories systemd reads units from, lowest precedence first.
    pub fn unit_dirs(&self) -> Vec<PathBuf> {
        [
            "/lib/systemd/system",
            "/usr/lib/systemd/system",
            "/run/systemd/system",
            "/etc/systemd/system",
        ]
        .iter()
        .map(|d| self.host(Path::new(d)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_root_is_made_absolute_at_once() {
        let p = Paths::from_root(Some(Path::new("tree")));
        let want = std::env::current_dir().unwrap().join("tree/etc/x");
        assert_eq!(p.host(Path::new("/etc/x")), want);
    }
}
