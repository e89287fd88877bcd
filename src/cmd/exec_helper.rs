//! `jarvisctl exec-helper` (hidden): what systemd does between fork and
//! exec, in safe code. `jarvisctl run` starts it with the program's
//! environment; it makes a new session (no controlling terminal: a bot on
//! root's terminal could push input into root's shell with TIOCSTI, and the
//! session is the process group the engine signals), joins the cgroup or
//! sets the rlimit, drops to the service user (supplementary groups, gid,
//! uid), sets the parent-death signal *after* the uid change (a uid change
//! clears it), sets the umask and working directory, and execs the program
//! in its own pid with no descriptor but 0, 1 and 2 (whatever its caller
//! left open, a root-only file say, stays behind). Exit codes follow
//! systemd's (200 CHDIR, 216 GROUP, 217 USER, 220 SETSID, 203 EXEC).

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::Signal;
use nix::unistd::{getppid, setgid, setgroups, setuid, Gid, Pid, Uid};

use jarvis_cli::ExecHelperArgs;
use jarvis_model::error::Result;

fn die(code: i32, msg: String) -> Result<i32> {
    eprintln!("jarvisctl run: {msg}");
    Ok(code)
}

pub fn run(args: &ExecHelperArgs) -> Result<i32> {
    if let Err(e) = nix::unistd::setsid() {
        return die(220, format!("cannot start a new session: {e}"));
    }
    if let Some(procs) = &args.cgroup_procs {
        if let Err(e) = std::fs::write(procs, std::process::id().to_string()) {
            return die(219, format!("cannot join the cgroup {}: {e}", procs.display()));
        }
    }
    if let Some(limit) = args.rlimit_data {
        if let Err(e) = setrlimit(Resource::RLIMIT_DATA, limit, limit) {
            return die(205, format!("cannot set RLIMIT_DATA={limit}: {e}"));
        }
    }
    if let Some(gid) = args.gid {
        let gid = Gid::from_raw(gid);
        let groups = match &args.user {
            Some(user) => {
                let name = CString::new(user.as_str()).unwrap_or_default();
                nix::unistd::getgrouplist(&name, gid).unwrap_or_else(|_| vec![gid])
            }
            None => vec![gid],
        };
        if let Err(e) = setgroups(&groups) {
            return die(216, format!("cannot set the supplementary groups: {e}"));
        }
        if let Err(e) = setgid(gid) {
            return die(216, format!("cannot change to group {gid}: {e}"));
        }
    }
    if let Some(uid) = args.uid {
        if let Err(e) = setuid(Uid::from_raw(uid)) {
            return die(217, format!("cannot change to user {uid}: {e}"));
        }
    }
    // After the uid change, which clears it. Then make sure the supervisor
    // did not die before it was set.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        return die(214, format!("cannot set the parent-death signal: {e}"));
    }
    if getppid() != Pid::from_raw(args.ppid as i32) {
        return die(
            214,
            "the supervisor exited before the program started".to_string(),
        );
    }
    if let Some(mask) = args.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    if let Some(dir) = &args.chdir {
        if let Err(e) = std::env::set_current_dir(dir) {
            return die(
                200,
                format!("cannot change to WorkingDirectory={}: {e}", dir.display()),
            );
        }
    }
    // The supervisor blocks the signals it reads through its signalfd; the
    // program starts with none blocked, as under systemd.
    if let Err(e) = nix::sys::signal::SigSet::empty().thread_set_mask() {
        return die(214, format!("cannot reset the signal mask: {e}"));
    }
    if args.no_new_privs {
        if let Err(e) = nix::sys::prctl::set_no_new_privs() {
            return die(218, format!("cannot set no_new_privs (NoNewPrivileges=yes): {e}"));
        }
    }
    close_inherited();
    let mut cmd = Command::new(&args.argv[0]);
    cmd.args(&args.argv[1..]);
    if let Some(usec) = args.watchdog_usec {
        cmd.env("WATCHDOG_USEC", usec.to_string());
        cmd.env("WATCHDOG_PID", std::process::id().to_string());
    }
    let err = cmd.exec();
    die(203, format!("cannot execute {}: {err}", args.argv[0]))
}

/// Closes every descriptor above 2: the engine's own are close-on-exec,
/// but one that the engine's caller left open would reach the program.
fn close_inherited() {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .filter(|&fd| fd > 2)
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        // The directory's own descriptor is gone by now: EBADF, ignored.
        let _ = nix::unistd::close(fd);
    }
}
