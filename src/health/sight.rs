//! What `status` can see as the user it runs as. Root sees everything. A
//! monitoring user (NRPE's `nagios`, the Icinga agent) sees what systemd
//! shows anyone (`systemctl show`), and no more than its permissions allow
//! of the rest: the journal (only in group `adm` or `systemd-journal`), the
//! code root, `.env`, the logs, the engine's state. What it cannot read is
//! named, and is unknown (`null`) in the document, never a zero or a
//! finding of its own.

use std::io::ErrorKind;
use std::path::Path;

use super::model::{Hidden, NotVisible, Status};

pub(super) struct Sight {
    pub uid: u32,
    name: String,
}

impl Sight {
    pub fn me() -> Sight {
        let uid = nix::unistd::geteuid().as_raw();
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(|| "no name".into(), |u| u.name);
        Sight { uid, name }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether this user reads the system journal: journald's own file
    /// says, through its mode and ACLs (access(2)).
    pub fn journal(&self) -> bool {
        if self.is_root() {
            return true;
        }
        for dir in ["/var/log/journal", "/run/log/journal"] {
            let Ok(rd) = std::fs::read_dir(dir) else { continue };
            for machine in rd.flatten() {
                let file = machine.path().join("system.journal");
                if file.exists() {
                    return nix::unistd::access(&file, nix::unistd::AccessFlags::R_OK).is_ok();
                }
            }
        }
        false
    }

    /// Whether `path` is out of this user's sight: a permission denied on
    /// it or on a directory above it (a missing path is seen: it is missing).
    pub fn denied(&self, path: &Path) -> bool {
        if self.is_root() {
            return false;
        }
        let no = |e: std::io::Error| e.kind() == ErrorKind::PermissionDenied;
        match std::fs::symlink_metadata(path) {
            Err(e) => no(e),
            Ok(m) if m.is_dir() => std::fs::read_dir(path).is_err_and(no),
            Ok(_) => std::fs::File::open(path).is_err_and(no),
        }
    }

    /// Says in `st` that `what` could not be read.
    pub fn note(&self, st: &mut Status, what: Hidden, described: &str) {
        if st.not_visible.iter().any(|n| n.what == what) {
            return;
        }
        st.not_visible.push(NotVisible {
            what,
            message: format!(
                "cannot see {described} as uid {} ({}): run as root or use the sudoers example",
                self.uid, self.name
            ),
        });
    }
}
