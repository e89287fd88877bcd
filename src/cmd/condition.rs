//! `jarvisctl condition`: the unit's `ExecCondition=`, run before every
//! start. Exit 1 when the program's pause switch is set, so the start is
//! skipped: not a failure, no restart, no alert. Exit 0 otherwise, and on
//! anything it cannot read (the program then decides for itself).
//!
//! systemd skips the start on ANY exit from 1 to 254 of this command, its
//! own spawn failures included (226/NAMESPACE when a ReadWritePaths=
//! directory is missing, 200/CHDIR...). So the unit runs it with `+`,
//! outside the sandbox, where those cannot happen, and it becomes the
//! service user itself before it looks at the code root: the switch is
//! judged as the program would judge it, and root never reads the service
//! user's files.

use crate::error::Result;
use crate::paths::Paths;

pub fn run(paths: &Paths) -> Result<i32> {
    if nix::unistd::geteuid().is_root() && !become_service_user(paths) {
        // Cannot tell as the service user: let the start go on.
        return Ok(0);
    }
    let here = std::env::current_dir().unwrap_or_default();
    // A panic would exit 101, which systemd takes as "skip the start":
    // whatever goes wrong here, the start goes on (the program decides).
    let paused = std::panic::catch_unwind(|| crate::pause::condition(&here)).unwrap_or(None);
    match paused {
        Some(why) => {
            // Never println!: a write error would panic, and any exit but
            // 0 skips the start, so only a pause may end here non-zero.
            use std::io::Write;
            let _ = writeln!(
                std::io::stdout(),
                "paused: {why}; not started (resume with: jarvisctl resume)"
            );
            Ok(1)
        }
        None => Ok(0),
    }
}

/// Drop root for the unit's `User=`/`Group=`: groups, gid, then uid.
fn become_service_user(paths: &Paths) -> bool {
    let Ok(unit) = crate::unit::Unit::load(paths) else {
        return false;
    };
    let user = unit.user();
    let group = unit.group().unwrap_or_else(|| user.clone());
    let Some(acct) = crate::provision::Account::lookup(&user, &group) else {
        return false;
    };
    if acct.uid == 0 {
        return true;
    }
    use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
    setgroups(&[Gid::from_raw(acct.gid)]).is_ok()
        && setgid(Gid::from_raw(acct.gid)).is_ok()
        && setuid(Uid::from_raw(acct.uid)).is_ok()
}
