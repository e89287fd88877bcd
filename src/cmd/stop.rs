//! `jarvisctl stop`: stop a running `jarvisctl run` gracefully. It sends
//! SIGTERM to the pid in the pid file and waits until the single-instance
//! lock is free, so "stopped" means the engine and the program are gone.

use std::fs::OpenOptions;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cli::StopArgs;
use crate::engine::service::Service;
use crate::engine::{LOCK_FILE, PID_FILE};
use crate::error::{Error, Result};
use crate::paths::Paths;

fn held(lock: &Path) -> bool {
    let Ok(file) = OpenOptions::new().read(true).write(true).open(lock) else {
        return false;
    };
    Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err()
}

pub fn run(paths: &Paths, args: &StopArgs) -> Result<i32> {
    let dir = super::run::state_dir(paths);
    let lock = dir.join(LOCK_FILE);
    if !held(&lock) {
        println!(
            "jarvisctl stop: jarvisctl run is not running (lock {} is free)",
            lock.display()
        );
        return Ok(0);
    }
    let pid_path = dir.join(PID_FILE);
    let pid: i32 = std::fs::read_to_string(&pid_path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| {
            Error::new(format!(
                "the lock {} is held but the pid file {} is missing or unreadable",
                lock.display(),
                pid_path.display()
            ))
            .with_note("find the process with: fuser -v LOCKFILE, then stop it with kill -TERM PID")
        })?;
    let wait = match args.timeout {
        Some(s) => Duration::from_secs(s),
        None => {
            let stop = super::run::load_unit(paths, args.unit.as_deref())
                .and_then(|u| Service::from_unit(&u))
                .ok()
                .and_then(|s| s.timeout_stop)
                .unwrap_or(Duration::from_secs(90));
            stop + Duration::from_secs(10)
        }
    };
    kill(Pid::from_raw(pid), Signal::SIGTERM)
        .map_err(|e| Error::new(format!("cannot send SIGTERM to jarvisctl run (pid {pid}): {e}")))?;
    let t0 = Instant::now();
    while held(&lock) {
        if t0.elapsed() > wait {
            return Err(Error::new(format!(
                "jarvisctl run (pid {pid}) is still running {}s after SIGTERM",
                wait.as_secs()
            ))
            .with_note(
                "see its messages in engine.log in the state directory; kill -KILL it as a last resort",
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "jarvisctl stop: stopped jarvisctl run (pid {pid}) in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    Ok(0)
}
