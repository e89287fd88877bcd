//! The one way root runs a child that may be slow or hostile: the service
//! user's interpreter (through `jarvisctl exec-helper`), and root's own
//! tools (`systemctl`, `journalctl`). A child gets its input, its output is
//! read against a deadline and kept up to a bound, and when it ends or
//! runs out of time, every process it left is killed: the child's tree by
//! parent links, and the processes that escaped it (`setsid` and a parent
//! that exited) through the child subreaper, which makes them ours. Output
//! is never waited for after that: a process that holds a pipe open
//! elsewhere does not hold root. It runs in `/` unless the caller names a
//! directory: never in root's own working directory, which a program run
//! as the service user could otherwise read through.
//!
//! The operator's own commands (ssh and rsync to a host, see `ssh.rs`) run
//! here too, with [`Options::operator`]: no deadline for a long transfer,
//! the caller's directory, killed when a stream passes its bound, and what
//! they leave after a normal exit (an ssh ControlPersist master) left alone.
//! Every child stays in the caller's process group, so that the operator's
//! Ctrl-C reaches it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// How long a child may run, and how much of each of its output streams
/// is kept (the rest is read and dropped, so the child never blocks on a
/// full pipe).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub deadline: Duration,
    pub keep: usize,
}

impl Limits {
    /// Root's own tools (`systemctl show`, `journalctl`, `dpkg-query`): they
    /// answer in well under a second; a stuck journal or bus ends here, and
    /// `status` (a handful of them) stays within its documented bound.
    pub const TOOL: Limits = Limits {
        deadline: Duration::from_secs(5),
        keep: 16 << 20,
    };
}

/// How a child is run: [`Limits`], and what sets the operator's own
/// commands apart (see the module header).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// None: it runs until it ends (or is killed for its output).
    pub deadline: Option<Duration>,
    /// How much of each output stream is kept.
    pub keep: usize,
    /// A stream that passes `keep` gets the run killed, instead of its
    /// rest being read and dropped: an answer that large is hostile.
    pub kill_over_keep: bool,
    /// Run in the caller's directory, not `/`, when `cmd` names none: the
    /// operator's relative paths.
    pub callers_dir: bool,
    /// Kill what the child left once it exited by itself too, not only when
    /// the run is killed.
    pub sweep_on_exit: bool,
}

impl From<Limits> for Options {
    fn from(l: Limits) -> Options {
        Options {
            deadline: Some(l.deadline),
            keep: l.keep,
            kill_over_keep: false,
            callers_dir: false,
            sweep_on_exit: true,
        }
    }
}

impl Options {
    /// The operator's own command (ssh, rsync): no deadline, in the
    /// caller's directory, killed past `keep` per stream, and what it
    /// leaves after a normal exit left alone.
    pub fn operator(keep: usize) -> Options {
        Options {
            deadline: None,
            keep,
            kill_over_keep: true,
            callers_dir: true,
            sweep_on_exit: false,
        }
    }

    pub fn deadline(self, deadline: Option<Duration>) -> Options {
        Options { deadline, ..self }
    }
}

/// How a child ended.
#[derive(Debug)]
pub struct Ran {
    /// None: killed (at the deadline, or with `kill_over_keep` for its
    /// output).
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// A stream sent more than `keep`: what is kept is cut there.
    pub cut: bool,
    late: bool,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Killed at the deadline.
    pub fn timed_out(&self) -> bool {
        self.late
    }
}

/// Runs `cmd` with `input` on its stdin, within `limits`; see the module
/// header. Err: it could not be started.
pub fn run(cmd: Command, input: &[u8], limits: Limits) -> io::Result<Ran> {
    run_with(cmd, input, limits.into())
}

/// [`run`] with all its [`Options`].
pub fn run_with(mut cmd: Command, input: &[u8], opts: Options) -> io::Result<Ran> {
    if cmd.get_current_dir().is_none() && !opts.callers_dir {
        cmd.current_dir("/");
    }
    cmd.stdin(if input.is_empty() {
        Stdio::null()
    } else {
        Stdio::piped()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let reaping = Subreaper::hold();
    let t0 = Instant::now();
    let before = ticks_since_boot();
    let mut child = cmd.spawn()?;
    let root = child.id();
    // A child gone before its stat was read: born no earlier than now.
    let born = stat(root).map_or(before, |p| p.start);
    let _registered = Registered::new(root);
    let mut stdin = child.stdin.take().map(OwnedFd::from).map(File::from);
    let mut pipes = [
        Pipe::new(child.stdout.take().map(OwnedFd::from), opts.keep),
        Pipe::new(child.stderr.take().map(OwnedFd::from), opts.keep),
    ];
    if let Some(f) = &stdin {
        nonblocking(f);
    }
    let mut fed = 0;
    let mut late = false;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if opts.kill_over_keep && pipes.iter().any(|p| p.cut) {
            break None;
        }
        let left = match opts.deadline {
            Some(d) => d.saturating_sub(t0.elapsed()),
            None => Duration::MAX,
        };
        if left.is_zero() {
            late = true;
            break None;
        }
        // No descriptor tells when the child exits: a tick bounds how late
        // that is seen while a pipe is still held open by something else.
        let tick = left.min(Duration::from_millis(50));
        let mut fds = Vec::new();
        if let Some(f) = &stdin {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLOUT));
        }
        for p in &pipes {
            if let Some(f) = &p.file {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            }
        }
        let _ = poll(&mut fds, PollTimeout::from(tick.as_millis() as u16));
        drop(fds);
        if let Some(f) = &mut stdin {
            match f.write(&input[fed..]) {
                Ok(n) => fed += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => fed = input.len(),
            }
            if fed == input.len() {
                // Closed: the child reads to its end.
                stdin = None;
            }
        }
        for p in &mut pipes {
            p.read_available();
        }
    };
    drop(stdin);
    // The sweep kills the child with its tree, read while the child still
    // holds it: killed first, its children would be orphans in our group,
    // no longer told from another thread's.
    if status.is_none() || opts.sweep_on_exit {
        sweep(root, born, reaping.ours());
    }
    let status = match status {
        Some(s) => Some(s),
        None => {
            // Killed above (again, should the sweep have given up); it is
            // ours to reap, and SIGKILL is prompt.
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    // Whatever is already in the pipes; no wait for their end.
    for p in &mut pipes {
        p.read_available();
    }
    let [out, err] = pipes;
    Ok(Ran {
        status,
        cut: out.cut || err.cut,
        stdout: out.kept,
        stderr: err.kept,
        late,
    })
}

/// `cmd` as one of root's own tools, within `Limits::TOOL`: None when it
/// cannot be run.
pub fn tool(cmd: Command) -> Option<Ran> {
    run(cmd, b"", Limits::TOOL).ok()
}

/// One output stream, read without blocking, kept up to a bound.
struct Pipe {
    file: Option<File>,
    kept: Vec<u8>,
    keep: usize,
    /// More came than `keep`.
    cut: bool,
}

impl Pipe {
    fn new(fd: Option<OwnedFd>, keep: usize) -> Pipe {
        let file = fd.map(File::from);
        if let Some(f) = &file {
            nonblocking(f);
        }
        Pipe {
            file,
            kept: Vec::new(),
            keep,
            cut: false,
        }
    }

    fn read_available(&mut self) {
        let Some(f) = &mut self.file else { return };
        let mut buf = [0u8; 64 << 10];
        loop {
            match f.read(&mut buf) {
                Ok(0) => {
                    self.file = None;
                    return;
                }
                Ok(n) => {
                    let room = self.keep.saturating_sub(self.kept.len());
                    self.kept.extend_from_slice(&buf[..n.min(room)]);
                    if n > room {
                        // Past the bound: back to the loop, which kills
                        // the run or comes back for more (and drops it).
                        self.cut = true;
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.file = None;
                    return;
                }
            }
        }
    }
}

fn nonblocking(f: &File) {
    let _ = fcntl(f, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
}

/// Whether this process is a child subreaper, counted across threads: set
/// while any run is going, cleared after the last, and left alone when it
/// was set before (a caller that reaps for itself).
struct Subreaper {
    ours: bool,
}

/// (runs going, whether the subreaper bit is ours to clear).
static SUBREAPER: Mutex<(usize, bool)> = Mutex::new((0, false));

impl Subreaper {
    fn hold() -> Subreaper {
        let mut s = SUBREAPER.lock().unwrap_or_else(|e| e.into_inner());
        if s.0 == 0 {
            s.1 = !nix::sys::prctl::get_child_subreaper().unwrap_or(true)
                && nix::sys::prctl::set_child_subreaper(true).is_ok();
        }
        s.0 += 1;
        Subreaper { ours: s.1 }
    }

    /// Every orphan that reaches us is a run's: we set the bit.
    fn ours(&self) -> bool {
        self.ours
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        let mut s = SUBREAPER.lock().unwrap_or_else(|e| e.into_inner());
        s.0 -= 1;
        if s.0 == 0 && s.1 {
            let _ = nix::sys::prctl::set_child_subreaper(false);
            s.1 = false;
        }
    }
}

/// A process, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: u32,
    ppid: u32,
    pgrp: u32,
    /// Clock ticks after boot: with the pid, who it is.
    start: u64,
    zombie: bool,
}

fn stat(pid: u32) -> Option<Proc> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name, in parentheses, may hold anything: the fields follow the
    // last ')'.
    let f: Vec<&str> = s.get(s.rfind(')')? + 1..)?.split_whitespace().collect();
    Some(Proc {
        pid,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
        zombie: f.first() == Some(&"Z"),
    })
}

/// Now, in the unit of `Proc::start`, rounded down (one tick of slack).
fn ticks_since_boot() -> u64 {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |s| ((s * hz) as u64).saturating_sub(1))
}

fn processes() -> Vec<Proc> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .filter_map(stat)
                .collect()
        })
        .unwrap_or_default()
}

/// How long the sweep keeps at it: a process in uninterruptible sleep
/// dies when it wakes, and is not waited for beyond this.
const SWEEP: Duration = Duration::from_secs(2);

/// Kills every process of the run started at `root` (born at `born`),
/// except `root` itself once it has exited, and reaps those that are our
/// children, `root` excepted (its `Child` reaps it). A process of the tree
/// is one whose parent is: each pass kills what it finds, the dead
/// parents' children come to us, and the next pass finds them. With
/// `orphans_are_ours` (we set the subreaper bit), a child of ours born
/// after `root`, outside our process group and not another run's root,
/// is one that escaped a tree: what another thread starts with `Command`
/// stays in our group.
fn sweep(root: u32, born: u64, orphans_are_ours: bool) {
    let me = std::process::id();
    let our_group = nix::unistd::getpgrp().as_raw() as u32;
    let t0 = Instant::now();
    // pid -> start: a pid seen in the tree, not a later process that
    // reused it.
    let mut tree: HashMap<u32, u64> = HashMap::new();
    tree.insert(root, born);
    loop {
        let all = processes();
        let starts: HashMap<u32, u64> = all.iter().map(|p| (p.pid, p.start)).collect();
        let member =
            |tree: &HashMap<u32, u64>, pid: u32| starts.get(&pid).is_some_and(|s| tree.get(&pid) == Some(s));
        let mut found = true;
        while found {
            found = false;
            for p in &all {
                if p.start < born || member(&tree, p.pid) {
                    continue;
                }
                let escaped =
                    orphans_are_ours && p.ppid == me && p.pgrp != our_group && !other_runs_root(p.pid);
                if member(&tree, p.ppid) || escaped {
                    tree.insert(p.pid, p.start);
                    found = true;
                }
            }
        }
        let members: Vec<&Proc> = all.iter().filter(|p| member(&tree, p.pid)).collect();
        // A zombie is done once reaped: by us (our child, not `root`), or
        // by its parent, a member killed in this pass.
        let left = members
            .iter()
            .filter(|p| !(p.zombie && (p.pid == root || p.ppid != me)))
            .count();
        if left == 0 || t0.elapsed() > SWEEP {
            return;
        }
        for p in &members {
            let pid = Pid::from_raw(p.pid as i32);
            if !p.zombie {
                let _ = kill(pid, Signal::SIGKILL);
            }
            if p.ppid == me && p.pid != root {
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The roots of the runs going: children of ours, not orphans, whichever
/// thread runs them.
static ROOTS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

struct Registered(u32);

impl Registered {
    fn new(pid: u32) -> Registered {
        ROOTS.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
        Registered(pid)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        ROOTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != self.0);
    }
}

fn other_runs_root(pid: u32) -> bool {
    ROOTS.lock().unwrap_or_else(|e| e.into_inner()).contains(&pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", script]);
        c
    }

    fn alive(pid: u32) -> bool {
        stat(pid).is_some_and(|p| !p.zombie)
    }

    /// The pid a background process writes to `file` once it started.
    fn wait_for_pid(file: &Path) -> u32 {
        let t0 = Instant::now();
        loop {
            if let Some(pid) = std::fs::read_to_string(file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return pid;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no pid in {}",
                file.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn input_goes_in_and_output_comes_back_bounded() {
        let input = vec![b'x'; 300_000];
        let ran = run(
            sh("wc -c; head -c 100000 /dev/zero >&2"),
            &input,
            Limits {
                deadline: Duration::from_secs(10),
                keep: 1000,
            },
        )
        .unwrap();
        assert!(ran.success(), "{ran:?}");
        assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "300000");
        assert_eq!(ran.stderr.len(), 1000);
    }

    #[test]
    fn it_runs_in_the_root_directory_not_in_ours() {
        let ran = tool(sh("pwd")).unwrap();
        assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "/");
    }

    #[test]
    fn a_child_that_never_ends_is_killed_at_the_deadline_with_its_escaped_tree() {
        let d = tempfile::tempdir().unwrap();
        let pids = d.path().join("pids");
        // A grandchild in a session of its own holds stdout, and the child
        // sleeps: neither ends by itself.
        let script = format!(
            "setsid sh -c 'echo $$ >> {p}; exec sleep 1000' & echo $$ >> {p}; echo started; exec sleep 1000",
            p = pids.display()
        );
        let t0 = Instant::now();
        let ran = run(
            sh(&script),
            b"",
            Limits {
                deadline: Duration::from_millis(500),
                keep: 1 << 10,
            },
        )
        .unwrap();
        let took = t0.elapsed();
        assert!(ran.timed_out(), "{ran:?}");
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "started");
        let pids: Vec<u32> = std::fs::read_to_string(&pids)
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 2, "{pids:?}");
        for p in pids {
            assert!(!alive(p), "{p} survived the run");
        }
    }

    /// The operator's command (ssh, rsync): no deadline, the operator's
    /// directory and process group (Ctrl-C reaches it), and what it leaves
    /// after a normal exit (an ssh ControlPersist master) lives on.
    #[test]
    fn an_operator_command_runs_in_the_callers_directory_and_group_and_keeps_its_leftovers() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("pid");
        let script = format!(
            "setsid sh -c 'echo $$ > {p}; exec sleep 1000' >/dev/null 2>&1 & pwd; cat /proc/$$/stat",
            p = pidfile.display()
        );
        let ran = run_with(sh(&script), b"", Options::operator(1 << 20)).unwrap();
        assert!(ran.success() && !ran.cut && !ran.timed_out(), "{ran:?}");
        let out = String::from_utf8_lossy(&ran.stdout).into_owned();
        let (dir, stat) = out.split_once('\n').unwrap();
        assert_eq!(Path::new(dir), std::env::current_dir().unwrap());
        let pgrp: i32 = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(pgrp, nix::unistd::getpgrp().as_raw(), "{stat}");
        let pid = wait_for_pid(&pidfile);
        let survived = alive(pid);
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        assert!(survived, "the leftover {pid} was killed after a normal exit");
    }

    /// Without a deadline, output past the bound ends the run at once, with
    /// all it started; under the bound it is whole.
    #[test]
    fn an_operator_command_over_its_bound_is_killed_with_its_tree() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("pid");
        let script = format!(
            "sh -c 'echo $$ > {p}; exec sleep 1000' & until [ -s {p} ]; do sleep 0.01; done; yes; exec sleep 1000",
            p = pidfile.display()
        );
        let t0 = Instant::now();
        let ran = run_with(sh(&script), b"", Options::operator(1 << 20)).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        assert!(
            ran.cut && ran.status.is_none() && !ran.timed_out(),
            "{:?}",
            ran.status
        );
        assert_eq!(ran.stdout.len(), 1 << 20);
        let pid = wait_for_pid(&pidfile);
        assert!(!alive(pid), "{pid} survived the kill");

        let ran = run_with(sh("head -c 1048576 /dev/zero"), b"", Options::operator(1 << 20)).unwrap();
        assert!(
            ran.success() && !ran.cut && ran.stdout.len() == 1 << 20,
            "{:?}",
            ran.status
        );
    }

    /// At the deadline the child dies with a background process of its
    /// own group (a ProxyCommand's), not only with one that left it: killed
    /// first, the child would have orphaned it into ours. Root's tools and
    /// the operator's commands alike.
    #[test]
    fn at_the_deadline_a_background_process_in_our_group_dies_too() {
        let operator = Options::operator(1 << 10).deadline(Some(Duration::from_millis(300)));
        let tool = Options::from(Limits {
            deadline: Duration::from_millis(300),
            keep: 1 << 10,
        });
        for opts in [operator, tool] {
            let d = tempfile::tempdir().unwrap();
            let pidfile = d.path().join("pid");
            let script = format!(
                "sh -c 'echo $$ > {p}; exec sleep 1000' & until [ -s {p} ]; do sleep 0.01; done; echo waiting; exec sleep 1000",
                p = pidfile.display()
            );
            let t0 = Instant::now();
            let ran = run_with(sh(&script), b"", opts).unwrap();
            assert!(ran.timed_out() && !ran.cut, "{ran:?}");
            assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
            assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "waiting");
            let pid = wait_for_pid(&pidfile);
            assert!(!alive(pid), "{pid} survived the deadline ({opts:?})");
        }
    }

    #[test]
    fn a_child_that_exits_leaving_a_process_on_its_pipe_returns_at_once() {
        let d = tempfile::tempdir().unwrap();
        let pids = d.path().join("pids");
        // The intermediate `sh` exits: the sleeper is an orphan, ours.
        let script = format!(
            "sh -c 'setsid sh -c \"echo \\$\\$ > {p}; exec sleep 1000\" &'; sleep 0.2; echo done",
            p = pids.display()
        );
        let t0 = Instant::now();
        let ran = tool(sh(&script)).unwrap();
        assert!(ran.success(), "{ran:?}");
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "done");
        let pid: u32 = std::fs::read_to_string(&pids).unwrap().trim().parse().unwrap();
        assert!(!alive(pid), "the escaped sleeper {pid} survived");
    }
}
