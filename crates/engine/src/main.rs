//! `jarvis-engine`: the event loop of `jarvisctl run`, in a binary of its
//! own. `jarvisctl run` reads and checks the unit, takes the
//! single-instance lock, then execs this in the same process (same pid, the
//! lock's descriptor kept). A supervisor lives for months; this binary
//! holds only what supervising needs, without the CLI, TLS, TOML, regex
//! and JSON-reading code of jarvisctl, so that its resident memory is that
//! of runit's runsv (issue 17). Not meant to be run by hand.
//!
//! Arguments, all from `jarvisctl run`: `--lock-fd N` (required),
//! `--jarvisctl PATH` (required, for `jarvisctl alert`), `--root DIR`,
//! `--unit FILE`, `--instance NAME`, `--detached`.
// Three files use unsafe, each saying why at the place: crates/engine/src/spawn.rs,
// trim.rs and main.rs (docs/design.md, "Unsafe code").
#![deny(unsafe_code)]

use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};

use jarvis_engine::{Account, Engine, LOCK_FILE, PID_FILE};
use jarvis_model::error::{Error, Result};
use jarvis_model::instance::Instance;
use jarvis_model::paths::Paths;
use jarvis_model::service::Service;
use jarvis_model::unit::Unit;

struct Args {
    lock_fd: i32,
    jarvisctl: PathBuf,
    root: Option<PathBuf>,
    unit: Option<PathBuf>,
    instance: Instance,
    detached: bool,
}

fn parse(mut argv: impl Iterator<Item = std::ffi::OsString>) -> Result<Args> {
    let usage = || Error::new("jarvis-engine is started by `jarvisctl run`").with_note("run: jarvisctl run");
    let (mut lock_fd, mut jarvisctl, mut root, mut unit, mut detached) = (None, None, None, None, false);
    let mut instance = Instance::Default;
    while let Some(a) = argv.next() {
        match a.to_str() {
            Some("--detached") => detached = true,
            Some("--lock-fd") => {
                lock_fd = argv
                    .next()
                    .and_then(|v| v.to_str()?.parse::<i32>().ok())
                    .filter(|fd| *fd > 2);
            }
            Some("--jarvisctl") => jarvisctl = argv.next().map(PathBuf::from),
            Some("--root") => root = argv.next().map(PathBuf::from),
            Some("--unit") => unit = argv.next().map(PathBuf::from),
            Some("--instance") => {
                let name = argv.next().ok_or_else(usage)?;
                instance = Instance::Named(name.to_str().ok_or_else(usage)?.parse()?);
            }
            _ => return Err(usage()),
        }
    }
    Ok(Args {
        lock_fd: lock_fd.ok_or_else(usage)?,
        jarvisctl: jarvisctl.ok_or_else(usage)?,
        root,
        unit,
        instance,
        detached,
    })
}

fn main() {
    // `ps`, `pidof`, the logrotate stanza and the init script know the
    // engine by the name of the command that started it.
    let _ = nix::sys::prctl::set_name(c"jarvisctl");
    let paths_dir = |args: &Args| {
        let paths = Paths::from_root(args.root.as_deref());
        let dir = paths.host(&args.instance.engine_dir());
        (paths, dir)
    };
    let result = parse(std::env::args_os().skip(1)).and_then(|args| {
        let (paths, dir) = paths_dir(&args);
        let _lock = hold_lock(args.lock_fd, &dir)?;
        let result = supervise(&paths, &dir, &args);
        let _ = std::fs::remove_file(dir.join(PID_FILE));
        result
    });
    let code = result.unwrap_or_else(|err| {
        err.print();
        err.exit_code()
    });
    std::process::exit(code);
}

/// The single-instance lock that `jarvisctl run` took and passed on: the
/// descriptor must be the lock file of this state directory, and locked
/// by us (flock on our own lock succeeds; on any other file we refuse).
fn hold_lock(fd: i32, dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::unix::fs::MetadataExt;
    let path = dir.join(LOCK_FILE);
    let not_ours = || {
        Error::new(format!("descriptor {fd} is not the lock {}", path.display()))
            .with_note("start the engine with: jarvisctl run")
    };
    #[allow(unsafe_code)]
    // SAFETY: only passed to fcntl(F_GETFD), which fails cleanly on a
    // descriptor that is not open.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let flags = fcntl(borrowed, FcntlArg::F_GETFD).map_err(|_| not_ours())?;
    #[allow(unsafe_code)]
    // SAFETY: open (F_GETFD above), and owned by nothing else in this
    // process: jarvisctl run left it to us across exec.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    // Close-on-exec again: the program must not inherit it.
    let _ = fcntl(
        &file,
        FcntlArg::F_SETFD(FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC),
    );
    let (held, named) = (file.metadata(), std::fs::metadata(&path));
    match (held, named) {
        (Ok(h), Ok(n)) if h.dev() == n.dev() && h.ino() == n.ino() => {}
        _ => return Err(not_ours()),
    }
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        Error::new(format!("another jarvisctl run holds the lock {}", path.display()))
            .with_note("stop it first with: jarvisctl stop")
    })
}

fn supervise(paths: &Paths, dir: &Path, args: &Args) -> Result<i32> {
    // jarvisctl run has read and checked this same unit a moment ago.
    let unit = match &args.unit {
        Some(f) => Unit::load_file(f)?,
        None => Unit::load_named(paths, &args.instance.unit())?,
    };
    let svc = Service::from_unit(&unit)?;
    let account = Account::resolve(svc.user.as_deref(), svc.group.as_deref())?;
    let engine = Engine::new(svc, paths, dir, account, args.jarvisctl.clone(), &args.instance)?;
    if args.detached {
        // Tell the waiting parent, then let go of its pipe.
        // The parent may be gone (killed while waiting): never fatal.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "locked {}", std::process::id());
        let _ = out.flush();
        if let Ok(null) = std::fs::File::open("/dev/null") {
            let _ = nix::unistd::dup2_stdout(&null);
        }
    }
    engine.run()
}
