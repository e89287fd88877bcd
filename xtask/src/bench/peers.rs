//! Each supervisor set up in a private directory to run the same child, how
//! to find its own processes, and how to rotate its log its own documented
//! way. A `Running` stops every process it started when dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::procfs;
use super::stats::{self, Stamps};
use super::tools::Tools;
use crate::run::Result;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Supervisord,
    Pm2,
    Runit,
    Daemontools,
    S6,
    Jarvisctl,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Supervisord,
        Kind::Pm2,
        Kind::Runit,
        Kind::Daemontools,
        Kind::S6,
        Kind::Jarvisctl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Supervisord => "supervisord",
            Kind::Pm2 => "PM2",
            Kind::Runit => "runit runsv + svlogd",
            Kind::Daemontools => "daemontools supervise + multilog",
            Kind::S6 => "s6-supervise + s6-log",
            Kind::Jarvisctl => "jarvisctl run",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Kind::Supervisord => "supervisord",
            Kind::Pm2 => "pm2",
            Kind::Runit => "runit",
            Kind::Daemontools => "daemontools",
            Kind::S6 => "s6",
            Kind::Jarvisctl => "jarvisctl",
        }
    }

    /// Is `name`, in the log directory, one of the child's log files?
    /// multilog rotates by renaming `current` to `previous`, then links
    /// `previous` to `@<stamp>.s` and unlinks it: `previous` holds lines for
    /// that moment (the same file twice is counted once, see `log_files`).
    fn is_log(self, name: &str) -> bool {
        match self {
            Kind::Supervisord | Kind::Pm2 => name.starts_with("out.log"),
            Kind::Runit | Kind::S6 => name == "current" || name.starts_with('@'),
            Kind::Daemontools => name == "current" || name == "previous" || name.starts_with('@'),
            Kind::Jarvisctl => name.starts_with("supervisor.stdout"),
        }
    }
}

pub struct Running {
    pub kind: Kind,
    dir: PathBuf,
    log_dir: PathBuf,
    stamps: PathBuf,
    /// Processes the bench spawned, reaped on drop.
    spawned: Vec<Child>,
    /// The supervisor's root processes: the trees the bench stops.
    roots: Vec<u32>,
    /// The process that supervises the child, alone (not its logger, nor
    /// the supervisor of its logger): one of `roots`.
    main: Option<u32>,
    child_exe: PathBuf,
    pm2: Option<(PathBuf, PathBuf)>,
}

fn io(what: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", what.display())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(io(path))
}

fn executable(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io(path))
}

fn out_file(dir: &Path, name: &str) -> Result<File> {
    let p = dir.join(name);
    File::create(&p).map_err(io(&p))
}

/// Send `sig` to each of `pids` (one that is gone already is no error).
pub fn signal(sig: Signal, pids: &[u32]) {
    for p in pids {
        let _ = kill(Pid::from_raw(*p as i32), sig);
    }
}

pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

fn spawn(cmd: &mut Command, dir: &Path, name: &str) -> Result<Child> {
    cmd.stdin(Stdio::null())
        .stdout(out_file(dir, &format!("{name}.out"))?)
        .stderr(out_file(dir, &format!("{name}.err"))?)
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))
}

/// Start `kind` in the fresh directory `dir`, supervising the child with
/// `words` (its mode and options; the stamp file is added here).
pub fn start(kind: Kind, tools: &Tools, dir: &Path, words: &[String]) -> Result<Running> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let stamps = dir.join("stamps");
    let child = tools.child.canonicalize().map_err(io(&tools.child))?;
    // MODE STAMPS OPTIONS…, as the child reads them.
    let mut argv = vec![words[0].clone(), stamps.display().to_string()];
    argv.extend(words[1..].iter().cloned());
    let mut r = Running {
        kind,
        dir: dir.to_path_buf(),
        log_dir: dir.join("log"),
        stamps,
        spawned: Vec::new(),
        roots: Vec::new(),
        main: None,
        child_exe: child,
        pm2: None,
    };
    // From here on, dropping `r` on an error stops what was started.
    match kind {
        Kind::Supervisord => supervisord(&mut r, tools, &argv)?,
        Kind::Pm2 => pm2(&mut r, tools, &argv)?,
        Kind::Runit => runit(&mut r, tools, &argv)?,
        Kind::Daemontools => daemontools(&mut r, tools, &argv)?,
        Kind::S6 => s6(&mut r, tools, &argv)?,
        Kind::Jarvisctl => jarvisctl(&mut r, tools, &argv)?,
    }
    Ok(r)
}

fn supervisord(r: &mut Running, tools: &Tools, argv: &[String]) -> Result<()> {
    std::fs::create_dir_all(&r.log_dir).map_err(io(&r.log_dir))?;
    let conf = r.dir.join("supervisord.conf");
    // startsecs=0: the child counts as started at once, so supervisord never
    // gives up on it; no log rotation of its own (maxbytes=0).
    write(
        &conf,
        &format!(
            "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n\
             childlogdir={d}\n\n[program:child]\ncommand={c} {a}\ndirectory={d}\nautostart=true\n\
             autorestart=true\nstartsecs=0\nstartretries=1000000\nredirect_stderr=true\n\
             stdout_logfile={l}/out.log\nstdout_logfile_maxbytes=0\nstdout_logfile_backups=0\n",
            d = r.dir.display(),
            c = r.child_exe.display(),
            a = argv.join(" "),
            l = r.log_dir.display()
        ),
    )?;
    let c = spawn(
        Command::new(&tools.supervisord).arg("-c").arg(&conf),
        &r.dir,
        "supervisord",
    )?;
    r.adopt_main(c);
    Ok(())
}

/// PM2's daemon, with its home in the run directory; `pm2 start` leaves it
/// running and writes its pid.
fn pm2(r: &mut Running, tools: &Tools, argv: &[String]) -> Result<()> {
    std::fs::create_dir_all(&r.log_dir).map_err(io(&r.log_dir))?;
    let home = r.dir.join("pm2home");
    let eco = r.dir.join("ecosystem.json");
    let app = serde_json::json!({"apps": [{
        "name": "child",
        "script": r.child_exe,
        "args": argv,
        "interpreter": "none",
        "cwd": r.dir,
        "autorestart": true,
        "restart_delay": 0,
        "min_uptime": 0,
        "max_restarts": 1_000_000_000u64,
        "out_file": r.log_dir.join("out.log"),
        "error_file": r.dir.join("err.log"),
        "merge_logs": true,
        "time": false,
        "watch": false,
    }]});
    write(&eco, &app.to_string())?;
    r.pm2 = Some((tools.pm2.clone(), home.clone()));
    let st = Command::new(&tools.pm2)
        .env("PM2_HOME", &home)
        .arg("start")
        .arg(&eco)
        .stdin(Stdio::null())
        .stdout(out_file(&r.dir, "pm2-start.out")?)
        .stderr(out_file(&r.dir, "pm2-start.err")?)
        .status()
        .map_err(|e| format!("cannot run pm2: {e}"))?;
    let pid = std::fs::read_to_string(home.join("pm2.pid"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| format!("pm2 start failed ({st}); see {}", r.dir.display()))?;
    r.roots.push(pid);
    r.main = Some(pid);
    Ok(())
}

/// A service directory whose ./run is the child itself (no shell in the
/// restart path): it reads its words from ./child.args.
fn service_dir(r: &Running, svc: &Path, argv: &[String], notify_fd: bool) -> Result<()> {
    std::fs::create_dir_all(svc).map_err(io(svc))?;
    std::os::unix::fs::symlink(&r.child_exe, svc.join("run")).map_err(io(svc))?;
    let mut line = argv.join(" ");
    if notify_fd {
        write(&svc.join("notification-fd"), "3\n")?;
        line.push_str(" notifyfd=3");
    }
    write(&svc.join("child.args"), &format!("{line}\n"))
}

/// runsv supervises svc and svc/log, with a pipe between them.
fn runit(r: &mut Running, tools: &Tools, argv: &[String]) -> Result<()> {
    let svc = r.dir.join("svc");
    service_dir(r, &svc, argv, false)?;
    std::fs::create_dir_all(svc.join("log")).map_err(io(&svc))?;
    std::fs::create_dir_all(&r.log_dir).map_err(io(&r.log_dir))?;
    // No size rotation (s0), keep every old file (n0).
    write(&r.log_dir.join("config"), "s0\nn0\n")?;
    executable(
        &svc.join("log/run"),
        &format!(
            "#!/bin/sh\nexec {} {}\n",
            tools.svlogd.display(),
            r.log_dir.display()
        ),
    )?;
    let c = spawn(Command::new(&tools.runsv).arg(&svc), &r.dir, "runsv")?;
    r.adopt_main(c);
    Ok(())
}

/// Two daemontools `supervise`, of svc and of svc/log, with a pipe between
/// them, as svscan sets them up (without svscan itself, as runsv runs
/// without runsvdir). svc/run is the child, as under runit and s6;
/// svc/log/run execs multilog, in files of 16 MB (its largest, `s`), all
/// kept (`n`), each line as the child wrote it (no `t` timestamp).
/// supervise pauses a second after each start, whatever the child does.
fn daemontools(r: &mut Running, tools: &Tools, argv: &[String]) -> Result<()> {
    let svc = r.dir.join("svc");
    service_dir(r, &svc, argv, false)?;
    let logsvc = svc.join("log");
    std::fs::create_dir_all(&logsvc).map_err(io(&logsvc))?;
    executable(
        &logsvc.join("run"),
        &format!(
            "#!/bin/sh\nexec {} s16777215 n100000 {}\n",
            tools.multilog.display(),
            r.log_dir.display()
        ),
    )?;
    let (rd, wr) = std::io::pipe().map_err(|e| e.to_string())?;
    let c = Command::new(&tools.supervise)
        .arg(&logsvc)
        .stdin(rd)
        .stdout(out_file(&r.dir, "supervise-log.out")?)
        .stderr(out_file(&r.dir, "supervise-log.err")?)
        .spawn()
        .map_err(|e| format!("cannot start supervise: {e}"))?;
    r.adopt(c);
    // Only stdout goes to the logger, as under svscan; supervise's own
    // warnings go to a file.
    let c = Command::new(&tools.supervise)
        .arg(&svc)
        .stdin(Stdio::null())
        .stdout(wr)
        .stderr(out_file(&r.dir, "supervise.err")?)
        .spawn()
        .map_err(|e| format!("cannot start supervise: {e}"))?;
    r.adopt_main(c);
    Ok(())
}

/// Two s6-supervise with a pipe between them, as s6-svscan sets up svc and
/// svc/log, without s6-svscan itself (as runsv runs without runsvdir).
fn s6(r: &mut Running, tools: &Tools, argv: &[String]) -> Result<()> {
    let svc = r.dir.join("svc");
    let logsvc = r.dir.join("svc-log");
    // With readiness notification, in case s6-supervise skips its pause
    // after a child that signalled it (in 2.11 it still pauses a second).
    service_dir(r, &svc, argv, true)?;
    std::fs::create_dir_all(&logsvc).map_err(io(&logsvc))?;
    // Files of 100 MB, and up to 1000 of them.
    executable(
        &logsvc.join("run"),
        &format!(
            "#!/bin/sh\nexec {} n1000 s100000000 {}\n",
            tools.s6_log.display(),
            r.log_dir.display()
        ),
    )?;
    let (rd, wr) = std::io::pipe().map_err(|e| e.to_string())?;
    let wr2 = wr.try_clone().map_err(|e| e.to_string())?;
    let c = Command::new(&tools.s6_supervise)
        .arg(&logsvc)
        .stdin(rd)
        .stdout(out_file(&r.dir, "s6-log-supervise.out")?)
        .stderr(out_file(&r.dir, "s6-log-supervise.err")?)
        .spawn()
        .map_err(|e| format!("cannot start s6-supervise: {e}"))?;
    r.adopt(c);
    let c = Command::new(&tools.s6_supervise)
        .arg(&svc)
        .stdin(Stdio::null())
        .stdout(wr)
        .stderr(wr2)
        .spawn()
        .map_err(|e| format!("cannot start s6-supervise: {e}"))?;
    r.adopt_main(c);
    Ok(())
}

/// `jarvisctl --root DIR run --unit FILE`, the child's logs in
/// WorkingDirectory/logs.
fn jarvisctl(r: &mut Running, tools: &Tools, argv: &[String]) -> Result<()> {
    let jarvisctl = tools
        .jarvisctl
        .as_ref()
        .ok_or("jarvisctl run: not available in this build")?;
    let wd = r.dir.join("wd");
    r.log_dir = wd.join("logs");
    std::fs::create_dir_all(&r.log_dir).map_err(io(&r.log_dir))?;
    let unit = r.dir.join("bench.service");
    // StartLimitIntervalSec=0 switches the start limit off; the large
    // burst says the same to an engine that reads only the burst.
    write(
        &unit,
        &format!(
            "[Unit]\nDescription=benchmark child\nStartLimitIntervalSec=0\nStartLimitBurst=1000000\n\n\
             [Service]\nType=simple\nExecStart={} {}\nWorkingDirectory={}\nRestart=always\nRestartSec=0\n",
            r.child_exe.display(),
            argv.join(" "),
            wd.display()
        ),
    )?;
    let c = spawn(
        Command::new(jarvisctl)
            .arg("--root")
            .arg(r.dir.join("root"))
            .arg("run")
            .arg("--unit")
            .arg(&unit),
        &r.dir,
        "jarvisctl",
    )?;
    r.adopt_main(c);
    Ok(())
}

impl Running {
    /// A supervisor process the bench spawned: a root of its trees.
    fn adopt(&mut self, c: Child) {
        self.roots.push(c.id());
        self.spawned.push(c);
    }

    /// The root that supervises the child itself.
    fn adopt_main(&mut self, c: Child) {
        self.main = Some(c.id());
        self.adopt(c);
    }

    /// The process that supervises the child, alone: supervisord, PM2's
    /// daemon, runsv, the child's supervise or s6-supervise, jarvisctl.
    pub fn supervisor_pid(&self) -> Option<u32> {
        self.main
    }

    pub fn stamps(&self) -> Stamps {
        stats::parse_stamps(&std::fs::read_to_string(&self.stamps).unwrap_or_default())
    }

    /// Every process of the supervisor's trees, the child's included.
    fn tree(&self) -> Vec<u32> {
        procfs::tree(&self.roots, &procfs::parents())
    }

    /// The supervisor's own processes: its trees less the child.
    pub fn supervisor_pids(&self) -> Vec<u32> {
        self.tree()
            .into_iter()
            .filter(|p| procfs::exe(*p).as_deref() != Some(self.child_exe.as_path()))
            .collect()
    }

    /// The log files, each once: a file under two names at once (multilog
    /// links `previous` to `@<stamp>.s`, then unlinks `previous`) is
    /// counted under the first name only.
    fn log_files(&self) -> Vec<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.log_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| self.kind.is_log(n)))
            .map(|e| e.path())
            .collect();
        v.sort();
        let mut seen = std::collections::HashSet::new();
        v.retain(|p| {
            std::fs::metadata(p)
                .map(|m| seen.insert((m.dev(), m.ino())))
                .unwrap_or(true)
        });
        v
    }

    pub fn log_bytes(&self) -> u64 {
        self.log_files()
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    pub fn log_texts(&self) -> Vec<Vec<u8>> {
        self.log_files()
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .collect()
    }

    fn named(&self, exe_name: &str) -> Vec<u32> {
        self.supervisor_pids()
            .into_iter()
            .filter(|p| procfs::exe(*p).is_some_and(|e| e.file_name().is_some_and(|n| n == exe_name)))
            .collect()
    }

    /// The pid in jarvisctl's pid file, if there is one.
    fn jarvisctl_pid(&self) -> Option<u32> {
        let dir = self.dir.join("root/run/jarvis-supervisor-run");
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
            .find_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
    }

    fn rename_log(&self, name: &str, i: usize) -> Result<()> {
        let from = self.log_dir.join(name);
        let to = self.log_dir.join(format!("{name}.{i}"));
        std::fs::rename(&from, &to).map_err(io(&from))
    }

    /// Rotate the child's log, the peer's own documented way.
    pub fn rotate(&self, i: usize) -> Result<()> {
        match self.kind {
            // supervisord reopens every log file on SIGUSR2.
            Kind::Supervisord => {
                self.rename_log("out.log", i)?;
                signal(Signal::SIGUSR2, &self.roots);
            }
            Kind::Pm2 => {
                self.rename_log("out.log", i)?;
                let (pm2, home) = self.pm2.as_ref().expect("pm2 paths");
                crate::run::output(Command::new(pm2).env("PM2_HOME", home).arg("reloadLogs"))?;
            }
            // svlogd, multilog and s6-log rotate their current file on
            // SIGALRM.
            Kind::Runit => signal(Signal::SIGALRM, &self.named("svlogd")),
            Kind::Daemontools => signal(Signal::SIGALRM, &self.named("multilog")),
            Kind::S6 => signal(Signal::SIGALRM, &self.named("s6-log")),
            // The contract: rename, then SIGHUP the pid in the pid file.
            Kind::Jarvisctl => {
                self.rename_log("supervisor.stdout", i)?;
                let pid = match self.jarvisctl_pid() {
                    Some(p) if p == self.roots[0] => p,
                    other => {
                        eprintln!(
                            "bench: warning: jarvisctl's pid file holds {other:?}, not jarvisctl's pid {}; \
                             signalling jarvisctl",
                            self.roots[0]
                        );
                        self.roots[0]
                    }
                };
                signal(Signal::SIGHUP, &[pid]);
            }
        }
        Ok(())
    }

    /// Is every supervisor process still alive?
    pub fn alive(&self) -> bool {
        self.roots
            .iter()
            .all(|p| procfs::stat(*p).is_some_and(|s| s.state != 'Z'))
    }
}

impl Drop for Running {
    /// Freeze the trees (a stopped supervisor cannot start a new child),
    /// until no new process appears in them, then kill them: only the
    /// processes this run started, found by pid from its own roots.
    fn drop(&mut self) {
        let mut frozen: Vec<(u32, u64)> = Vec::new();
        for _ in 0..20 {
            let fresh: Vec<u32> = self
                .tree()
                .into_iter()
                .filter(|p| !frozen.iter().any(|(f, _)| f == p))
                .collect();
            if fresh.is_empty() {
                break;
            }
            signal(Signal::SIGSTOP, &fresh);
            frozen.extend(
                fresh
                    .iter()
                    .filter_map(|p| Some((*p, procfs::stat(*p)?.start_time))),
            );
        }
        let live: Vec<u32> = frozen
            .iter()
            .filter(|(p, t)| procfs::alive(*p, *t))
            .map(|(p, _)| *p)
            .collect();
        signal(Signal::SIGKILL, &live);
        for c in &mut self.spawned {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The bench is a subreaper (see `supervisors::measure`): the killed
        // processes whose parent died are its children now; reap them.
        let me = std::process::id();
        wait_until(Duration::from_secs(2), || {
            frozen.iter().all(|(p, t)| {
                if procfs::stat(*p).is_some_and(|s| s.start_time == *t && s.ppid == me) {
                    let _ = waitpid(Pid::from_raw(*p as i32), None);
                }
                !procfs::alive(*p, *t)
            })
        });
    }
}
