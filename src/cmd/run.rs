//! `jarvisctl run`: supervise the program without systemd, from the same
//! unit file. This module reads the unit, reports what cannot be honoured,
//! takes the single-instance lock, detaches for `--daemon`, and hands over
//! to the engine.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{Flock, FlockArg};

use jarvis_cli::RunArgs;
use jarvis_engine::{say, Account, LOCK_FILE, PID_FILE};
use jarvis_model::error::{Error, Result};
use jarvis_model::instance::Instance;
use jarvis_model::paths::Paths;
use jarvis_model::service::Service;
use jarvis_model::unit::Unit;
use jarvis_model::unitkeys;

fn load_unit(paths: &Paths, file: Option<&Path>, instance: &Instance) -> Result<Unit> {
    match file {
        Some(f) => Unit::load_file(f),
        None => Unit::load_named(paths, &instance.unit()),
    }
}

/// The settings of this unit that `jarvisctl run` cannot honour.
fn not_honoured(unit: &Unit) -> Vec<String> {
    unit.keys()
        .into_iter()
        .filter(|(s, k)| !unitkeys::honoured(s, k))
        .map(|(_, k)| k)
        .collect()
}

fn make_state_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| Error::io("create state directory", dir, e))
}

/// Take the single-instance lock, or say who holds it.
fn take_lock(dir: &Path) -> Result<Flock<File>> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        let pid = std::fs::read_to_string(dir.join(PID_FILE)).unwrap_or_default();
        let pid = pid.trim();
        if errno == nix::errno::Errno::EWOULDBLOCK {
            Error::new(format!(
                "another jarvisctl run is already supervising the program (pid {}, lock {})",
                if pid.is_empty() { "unknown" } else { pid },
                path.display()
            ))
            .with_note("stop it first with: jarvisctl stop")
        } else {
            Error::new(format!("cannot lock {}: {errno}", path.display()))
        }
    })
}

pub fn run(paths: &Paths, args: &RunArgs) -> Result<i32> {
    let instance = Instance::from_arg(args.instance.as_deref())?;
    // Each instance has an engine of its own: its own lock, pid file and
    // state, so one instance never reads as another's second run.
    let dir = paths.host(&instance.engine_dir());
    if args.daemon && !args.detached {
        make_state_dir(&dir)?;
        return daemonize(paths, args, &dir);
    }
    if args.detached {
        // Our own session: no controlling terminal, no signals from the
        // shell that started us.
        let _ = nix::unistd::setsid();
    }
    // Under systemd the installed unit is systemd's: a second supervisor of
    // the same bot would mean two bots.
    if args.unit.is_none() && paths.host(Path::new("/run/systemd/system")).is_dir() {
        let name = instance.unit();
        return Err(
            Error::new(format!("systemd is running on this host and supervises {name}")).with_note(format!(
                "use: systemctl start {name} (jarvisctl run is for hosts without systemd)"
            )),
        );
    }
    let unit = load_unit(paths, args.unit.as_deref(), &instance)?;
    let svc = Service::from_unit(&unit)?;
    if let Some(d) = &svc.description {
        say!("supervising {d}");
    }
    for w in &unit.warnings {
        say!("{w}");
    }
    if let Some(m) = &unit.masked {
        return Err(
            Error::new(format!("{} masks the unit: it is not started", m.display()))
                .with_note("unmask it (remove the link to /dev/null), then start again"),
        );
    }
    let skipped = not_honoured(&unit);
    if !skipped.is_empty() {
        say!("not honoured without systemd: {}", skipped.join(", "));
    }
    make_state_dir(&dir)?;
    let lock = take_lock(&dir)?;
    let pid_path = dir.join(PID_FILE);
    if let Err(e) = std::fs::write(&pid_path, format!("{}\n", std::process::id())) {
        // A full /run (issue 27) must not keep the bot from starting: the
        // lock still makes this the only engine; an empty pid file would
        // read as garbage, a missing one is named by stop with its fix.
        let _ = std::fs::remove_file(&pid_path);
        say!(
            "cannot write the pid file {}: {e}; {}: supervising without it (free space there; jarvisctl stop finds the engine with fuser -v {})",
            pid_path.display(),
            jarvis_model::filesystem::describe(&dir),
            dir.join(LOCK_FILE).display()
        );
    }
    let result = (|| {
        let account = Account::resolve(svc.user.as_deref(), svc.group.as_deref())?;
        if account.is_some() && !nix::unistd::geteuid().is_root() {
            return Err(Error::new("User= is set, and only root can switch to it")
                .with_note("run jarvisctl run as root"));
        }
        Err(exec_engine(paths, args, &lock))
    })();
    let _ = std::fs::remove_file(&pid_path);
    drop(lock);
    result
}

/// Where the engine binary is: in the package, /usr/libexec beside
/// /usr/bin; in a build tree, beside jarvisctl.
fn engine_binary(jarvisctl: &Path) -> Result<PathBuf> {
    let dir = jarvisctl.parent().unwrap_or(Path::new("/"));
    let prefix = dir.parent().unwrap_or(dir);
    let candidates = [
        prefix.join("libexec/jarvis-supervisor").join(ENGINE),
        dir.join(ENGINE),
    ];
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        Error::new(format!(
            "the engine binary is missing: neither {} nor {} exists",
            candidates[0].display(),
            candidates[1].display()
        ))
        .with_note(REINSTALL)
    })
}

const ENGINE: &str = "jarvis-engine";
const REINSTALL: &str = "reinstall the package: apt install --reinstall jarvis-supervisor (or dnf reinstall)";

/// Hand over to the engine binary, in this same process: same pid (the
/// pid file's), the lock's descriptor kept across the exec. Returns only
/// on failure.
fn exec_engine(paths: &Paths, args: &RunArgs, lock: &Flock<File>) -> Error {
    let jarvisctl = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return Error::new(format!("cannot find jarvisctl's own path: {e}")),
    };
    let engine = match engine_binary(&jarvisctl) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let fd = lock.as_raw_fd();
    if let Err(e) = nix::fcntl::fcntl(
        &**lock,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    ) {
        return Error::new(format!("cannot pass the lock to the engine: {e}"));
    }
    let mut cmd = Command::new(&engine);
    // "jarvisctl" in ps and pidof, as before the exec.
    cmd.arg0("jarvisctl");
    cmd.arg("--lock-fd").arg(fd.to_string());
    cmd.arg("--jarvisctl").arg(&jarvisctl);
    if !paths.is_system() {
        cmd.arg("--root").arg(paths.host(Path::new("/")));
    }
    if let Some(u) = &args.unit {
        cmd.arg("--unit")
            .arg(std::path::absolute(u).unwrap_or_else(|_| u.clone()));
    }
    if let Some(n) = &args.instance {
        cmd.arg("--instance").arg(n);
    }
    if args.detached {
        cmd.arg("--detached");
    }
    let e = cmd.exec();
    Error::new(format!("cannot start the engine {}: {e}", engine.display())).with_note(REINSTALL)
}

/// `--daemon`: start a detached copy of ourselves, wait until it holds the
/// lock (or has failed), and report.
fn daemonize(paths: &Paths, args: &RunArgs, dir: &Path) -> Result<i32> {
    let log_path = dir.join("engine.log");
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(&log_path)
        .map_err(|e| Error::io("open engine log", &log_path, e))?;
    let offset = log.seek(SeekFrom::End(0)).unwrap_or(0);
    // Our own path, not /proc/self/exe, so that ps and pidof show
    // "jarvisctl" (the logrotate stanza checks the name before HUP).
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let mut cmd = Command::new(exe);
    cmd.arg0("jarvisctl");
    if !paths.is_system() {
        cmd.arg("--root").arg(paths.host(Path::new("/")));
    }
    cmd.args(["run", "--detached"]);
    if let Some(u) = &args.unit {
        let abs = std::path::absolute(u).unwrap_or_else(|_| u.clone());
        cmd.arg("--unit").arg(abs);
    }
    if let Some(n) = &args.instance {
        cmd.arg("--instance").arg(n);
    }
    let stderr = log
        .try_clone()
        .map_err(|e| Error::io("open engine log", &log_path, e))?;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
    cmd.current_dir("/");
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::new(format!("cannot start the background engine: {e}")))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if let Some(pid) = line.strip_prefix("locked ") {
        println!(
            "jarvisctl run: running in the background, pid {} (its messages: {})",
            pid.trim(),
            log_path.display()
        );
        return Ok(0);
    }
    let _ = child.wait();
    let mut text = String::new();
    if let Ok(mut f) = File::open(&log_path) {
        let _ = f.seek(SeekFrom::Start(offset));
        let _ = f.read_to_string(&mut text);
    }
    for l in text.lines() {
        eprintln!("{}", crate::output::printable(l));
    }
    Err(
        Error::new("the background engine did not start (its messages are above)")
            .with_note(format!("the full log is {}", log_path.display())),
    )
}
