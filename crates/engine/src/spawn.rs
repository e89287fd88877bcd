//! Starting the program: one clone and one exec, as runit's fork and exec.
//! The clone shares our memory and suspends us until the exec
//! (CLONE_VM | CLONE_VFORK, as posix_spawn does): nothing of ours is copied,
//! and the program starts as soon as it can. Between the two, the child
//! does what systemd does there, with no second exec: a new session (no controlling
//! terminal: a bot on root's terminal could push input into root's shell
//! with TIOCSTI, and the session is the process group the engine signals),
//! the cgroup or the rlimit, the drop to the service user (supplementary
//! groups, gid, uid), the parent-death signal *after* the uid change (which
//! clears it), umask, working directory, an empty signal mask, no_new_privs
//! when the unit asks, and no descriptor but 0, 1 and 2. Exit codes follow
//! systemd's (200 CHDIR, 203 EXEC, 205 LIMITS, 214 SETSCHEDULER (used for the
//! rest), 216 GROUP, 217 USER, 218 CAPABILITIES, 219
//! CGROUP, 220 SETSID).
//!
//! Everything the child needs is prepared before the clone: after it, the
//! child allocates nothing, takes no lock and writes no memory of ours but
//! its own WATCHDOG_PID entry, so this stays sound even if the engine ever
//! runs a second thread.

// clone() and execve() with prepared pointer arrays: std's Command cannot
// put the child's own pid into WATCHDOG_PID, nor order the cgroup join
// before its own uid change. Sound because the child only makes system
// calls on memory prepared before the clone, then execs or _exits, while
// we wait for it.
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::libc;
use nix::sched::{clone, CloneCb, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{SigHandler, SigSet, Signal};
use nix::unistd::{Gid, Pid, Uid};

/// Who the program runs as: the groups are looked up before the fork.
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<Gid>,
}

/// One start, prepared.
pub struct Launch {
    /// Where to look for the program, in order (argv[0] itself when it
    /// names a path, else each directory of the program's PATH).
    candidates: Vec<CString>,
    program: String,
    argv: Vec<CString>,
    env: Vec<CString>,
    /// "WATCHDOG_PID=" and room for the child's pid, NUL-terminated.
    watchdog_pid: Option<Vec<u8>>,
    chdir: Option<CString>,
    /// The cgroup.procs files to join, one per hierarchy.
    cgroup_procs: Vec<CString>,
    /// The cgroup that only tracks the program's processes: joined if it
    /// can be; the engine checks, and without it ends the program's
    /// processes as their subreaper instead of failing the start.
    track_procs: Option<CString>,
    rlimit_data: Option<u64>,
    identity: Option<Identity>,
    umask: u32,
    no_new_privs: bool,
    ppid: Pid,
}

/// The child's stack from the clone to the exec: far more than the set-up
/// uses (its deepest frame is `fail`'s 1 KiB message); mapped on demand.
const CHILD_STACK: usize = 256 << 10;

const WATCHDOG_PID: &[u8] = b"WATCHDOG_PID=";

fn cstring(bytes: &[u8], what: &str) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what} holds a NUL byte"),
        )
    })
}

impl Launch {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        argv: &[String],
        env: &[(String, String)],
        watchdog_usec: Option<u128>,
        chdir: Option<&Path>,
        cgroup_procs: &[&Path],
        rlimit_data: Option<u64>,
        identity: Option<Identity>,
        umask: u32,
        no_new_privs: bool,
    ) -> std::io::Result<Launch> {
        let program = argv.first().cloned().unwrap_or_default();
        let path_var = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or(super::environment::DEFAULT_PATH);
        // As execvp: a name with a slash is a path (relative ones from the
        // working directory); otherwise each directory of PATH in turn.
        let candidates: Vec<PathBuf> = if program.contains('/') {
            vec![PathBuf::from(&program)]
        } else {
            path_var
                .split(':')
                .map(|d| {
                    if d.is_empty() {
                        Path::new(".")
                    } else {
                        Path::new(d)
                    }
                })
                .map(|d| d.join(&program))
                .collect()
        };
        let mut envs = Vec::with_capacity(env.len() + 1);
        for (k, v) in env {
            envs.push(cstring(format!("{k}={v}").as_bytes(), "an environment variable")?);
        }
        let mut watchdog_pid = None;
        if let Some(usec) = watchdog_usec {
            envs.push(cstring(
                format!("WATCHDOG_USEC={usec}").as_bytes(),
                "WATCHDOG_USEC",
            )?);
            let mut buf = WATCHDOG_PID.to_vec();
            buf.resize(WATCHDOG_PID.len() + 21, 0);
            watchdog_pid = Some(buf);
        }
        Ok(Launch {
            candidates: candidates
                .iter()
                .map(|p| cstring(p.as_os_str().as_bytes(), "the program's path"))
                .collect::<std::io::Result<_>>()?,
            argv: argv
                .iter()
                .map(|a| cstring(a.as_bytes(), "an argument"))
                .collect::<std::io::Result<_>>()?,
            program,
            env: envs,
            watchdog_pid,
            chdir: chdir
                .map(|d| cstring(d.as_os_str().as_bytes(), "WorkingDirectory="))
                .transpose()?,
            cgroup_procs: cgroup_procs
                .iter()
                .map(|p| cstring(p.as_os_str().as_bytes(), "the cgroup's path"))
                .collect::<std::io::Result<_>>()?,
            track_procs: None,
            rlimit_data,
            identity,
            umask,
            no_new_privs,
            ppid: nix::unistd::getpid(),
        })
    }

    /// Also join the tracking cgroup whose cgroup.procs is `procs`, if the
    /// kernel lets the program in.
    pub fn track(mut self, procs: &Path) -> std::io::Result<Launch> {
        self.track_procs = Some(cstring(procs.as_os_str().as_bytes(), "the cgroup's path")?);
        Ok(self)
    }

    /// Fork and exec with `stdout` and `stderr` as the program's 1 and 2
    /// and /dev/null as 0. The pid of the program, which is the child's.
    pub fn spawn(mut self, stdout: &OwnedFd, stderr: &OwnedFd) -> std::io::Result<Pid> {
        let null = std::fs::File::open("/dev/null")?;
        let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.env.iter().map(|e| e.as_ptr()).collect();
        if let Some(buf) = &self.watchdog_pid {
            envp.push(buf.as_ptr().cast());
        }
        envp.push(std::ptr::null());
        let fds = (null.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd());
        let mut stack = vec![0u8; CHILD_STACK];
        let launch = &mut self;
        let (argv, envp) = (&argv, &mut envp);
        let child: CloneCb = Box::new(move || -> isize { launch.child(fds, argv, envp) });
        // SAFETY: see the module's comment: the child runs `child` only, on
        // its own stack, and we wait (CLONE_VFORK) until it has exec'd or
        // exited before we touch anything it uses.
        let flags = CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK;
        unsafe { clone(child, &mut stack, flags, Some(libc::SIGCHLD)) }.map_err(std::io::Error::from)
    }

    /// In the child: set up, then exec; never returns.
    fn child(
        &mut self,
        (null, out, err): (RawFd, RawFd, RawFd),
        argv: &[*const libc::c_char],
        envp: &mut [*const libc::c_char],
    ) -> ! {
        // Standard descriptors first, so that every message below reaches
        // the log, as systemd's reach the journal.
        // Copied above 2 first: one of them may itself be 0, 1 or 2 (an
        // engine started with a standard descriptor closed).
        let mut high = [0; 3];
        for (i, from) in [null, out, err].into_iter().enumerate() {
            high[i] = unsafe { libc::fcntl(from, libc::F_DUPFD_CLOEXEC, 3) };
            if high[i] < 0 {
                fail(214, format_args!("cannot set up descriptor {i}: {}", errno()));
            }
        }
        for (to, from) in high.into_iter().enumerate() {
            if unsafe { libc::dup2(from, to as RawFd) } < 0 {
                fail(214, format_args!("cannot set up descriptor {to}: {}", errno()));
            }
        }
        if let Err(e) = nix::unistd::setsid() {
            fail(220, format_args!("cannot start a new session: {e}"));
        }
        for procs in &self.cgroup_procs {
            // "0": the writing process, before it gives up root.
            let fd = unsafe { libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
            if fd < 0 || unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
                fail(
                    219,
                    format_args!("cannot join the cgroup {}: {}", show(procs), errno()),
                );
            }
            unsafe { libc::close(fd) };
        }
        if let Some(procs) = &self.track_procs {
            let fd = unsafe { libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
            if fd >= 0 {
                unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
                unsafe { libc::close(fd) };
            }
        }
        if let Some(limit) = self.rlimit_data {
            if let Err(e) = setrlimit(Resource::RLIMIT_DATA, limit, limit) {
                fail(205, format_args!("cannot set RLIMIT_DATA={limit}: {e}"));
            }
        }
        if let Some(id) = &self.identity {
            if let Err(e) = nix::unistd::setgroups(&id.groups) {
                fail(216, format_args!("cannot set the supplementary groups: {e}"));
            }
            if let Err(e) = nix::unistd::setgid(Gid::from_raw(id.gid)) {
                fail(216, format_args!("cannot change to group {}: {e}", id.gid));
            }
            if let Err(e) = nix::unistd::setuid(Uid::from_raw(id.uid)) {
                fail(217, format_args!("cannot change to user {}: {e}", id.uid));
            }
        }
        // After the uid change, which clears it; then make sure the engine
        // did not die before it was set.
        if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
            fail(214, format_args!("cannot set the parent-death signal: {e}"));
        }
        if nix::unistd::getppid() != self.ppid {
            fail(
                214,
                format_args!("the supervisor exited before the program started"),
            );
        }
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(self.umask as _));
        if let Some(dir) = &self.chdir {
            if unsafe { libc::chdir(dir.as_ptr()) } != 0 {
                fail(
                    200,
                    format_args!("cannot change to WorkingDirectory={}: {}", show(dir), errno()),
                );
            }
        }
        // The engine blocks the signals it reads through its signalfd, and
        // Rust's runtime ignores SIGPIPE (an ignored signal stays ignored
        // across exec): the program starts with neither, as under systemd.
        if let Err(e) = SigSet::empty().thread_set_mask() {
            fail(214, format_args!("cannot reset the signal mask: {e}"));
        }
        if let Err(e) = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
            fail(214, format_args!("cannot reset SIGPIPE: {e}"));
        }
        if self.no_new_privs {
            if let Err(e) = nix::sys::prctl::set_no_new_privs() {
                fail(
                    218,
                    format_args!("cannot set no_new_privs (NoNewPrivileges=yes): {e}"),
                );
            }
        }
        close_from(3);
        if let Some(buf) = &mut self.watchdog_pid {
            write_pid(buf, std::process::id());
            // The last entry before the terminating null.
            let n = envp.len();
            envp[n - 2] = buf.as_ptr().cast();
        }
        let mut last = 0;
        for path in &self.candidates {
            unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            last = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            // As execvp: a missing or unusable entry of PATH, try the next.
            if ![libc::ENOENT, libc::ENOTDIR, libc::EACCES].contains(&last) {
                break;
            }
        }
        fail(
            203,
            format_args!(
                "cannot execute {}: {}",
                self.program,
                nix::errno::Errno::from_raw(last).desc()
            ),
        );
    }
}

fn errno() -> &'static str {
    nix::errno::Errno::last().desc()
}

fn show(c: &CString) -> std::path::Display<'_> {
    Path::new(OsStr::from_bytes(c.as_bytes())).display()
}

/// "WATCHDOG_PID=" then `pid` in decimal and a NUL, in place.
fn write_pid(buf: &mut [u8], pid: u32) {
    let mut digits = [0u8; 10];
    let mut n = 0;
    let mut v = pid;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = WATCHDOG_PID.len();
    for i in 0..n {
        buf[start + i] = digits[n - 1 - i];
    }
    buf[start + n] = 0;
}

/// Closes every descriptor from `first` up: one the engine's caller left
/// open (a root-only file, say) must not reach the program.
fn close_from(first: u32) {
    // close_range(2), Linux 5.9; else one by one up to the limit.
    if unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) } == 0 {
        return;
    }
    let max = match nix::sys::resource::getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => soft.min(1 << 20),
        Err(_) => 1024,
    };
    for fd in first as u64..max {
        unsafe { libc::close(fd as RawFd) };
    }
}

/// A line on the log (fd 2) and the exit code, without allocating.
fn fail(code: i32, what: std::fmt::Arguments) -> ! {
    let mut buf = [0u8; 1024];
    let len = buf.len();
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = cur.write_fmt(format_args!("jarvisctl run: {what}\n"));
    let n = (cur.position() as usize).min(len);
    let _ = nix::unistd::write(unsafe { BorrowedFd::borrow_raw(2) }, &buf[..n]);
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_is_written_in_place_and_terminated() {
        for pid in [1u32, 42, 4_194_304, u32::MAX] {
            let mut buf = WATCHDOG_PID.to_vec();
            buf.resize(WATCHDOG_PID.len() + 21, 0xff);
            write_pid(&mut buf, pid);
            let text = std::ffi::CStr::from_bytes_until_nul(&buf).unwrap();
            assert_eq!(text.to_str().unwrap(), format!("WATCHDOG_PID={pid}"));
        }
    }

    fn launch(program: &str, env: &[(String, String)]) -> Launch {
        Launch::new(&[program.into()], env, None, None, &[], None, None, 0o22, false).unwrap()
    }

    fn candidates(l: &Launch) -> Vec<&str> {
        l.candidates.iter().map(|c| c.to_str().unwrap()).collect()
    }

    #[test]
    fn a_bare_name_is_searched_on_the_programs_path_a_path_is_not() {
        let env = vec![("PATH".to_string(), "/opt/a::/opt/b".to_string())];
        assert_eq!(
            candidates(&launch("bot", &env)),
            ["/opt/a/bot", "./bot", "/opt/b/bot"]
        );
        assert_eq!(candidates(&launch("./bin/bot", &env)), ["./bin/bot"]);
        // No PATH in the program's environment: systemd's default.
        assert_eq!(candidates(&launch("python3", &[]))[0], "/usr/local/sbin/python3");
    }
}
