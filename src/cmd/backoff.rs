//! `jarvisctl backoff`: the unit's `ExecStartPre=`. systemd 252 has no
//! growing restart delay (`RestartSteps=` arrived in 254), so this gives the
//! same backoff on every version: the first start that follows the previous
//! one within `--stable-after` seconds goes ahead at once, each further one
//! waits twice as long as the last (from `--base`), up to `--max`; a long
//! healthy run resets it. The state lives in the unit's
//! runtime directory, which systemd keeps across restarts but removes on a
//! stop, so a manual stop and start is never delayed.

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cli::BackoffArgs;
use crate::error::{exit, Error, Result};

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Starts in a row that came soon after the one before.
    pub quick_restarts: u32,
    /// When the previous start went ahead (seconds since the epoch).
    pub last_start: Option<u64>,
}

/// The delay before this start, and the new count of quick restarts.
pub fn next(state: &State, now: u64, args: &BackoffArgs) -> (Duration, u32) {
    let quick = match state.last_start {
        Some(t) if now.saturating_sub(t) < args.stable_after => state.quick_restarts.saturating_add(1),
        _ => 0,
    };
    // The first quick restart waits only RestartSec=: a single crash must be
    // back within seconds (the bot needs up to 7 s more to be READY).
    if quick <= 1 {
        return (Duration::ZERO, quick);
    }
    let secs = args
        .base
        .saturating_mul(1u64 << (quick - 2).min(32))
        .min(args.max);
    (Duration::from_secs(secs), quick)
}

pub fn run(args: &BackoffArgs) -> Result<i32> {
    let state_path = match &args.state {
        Some(p) => p.clone(),
        None => match crate::systemd::runtime_directory() {
            Some(dir) => dir.join("backoff.json"),
            None => {
                return Err(Error::new("no state file: $RUNTIME_DIRECTORY is not set")
                    .with_note("run it from the unit (RuntimeDirectory=) or pass --state FILE"))
            }
        },
    };
    let state: State = match fs::read(&state_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => State::default(),
    };
    let (delay, quick) = next(&state, now(), args);
    // Why the previous start failed, if its preflight said so: shown while
    // the unit waits here, which is where `systemctl status` finds it.
    if let Some(dir) = state_path.parent() {
        if let Ok(lines) = fs::read_to_string(dir.join(super::check::PREFLIGHT_FAILED)) {
            println!("backoff: the previous start failed its preflight:");
            print!("{lines}");
        }
    }
    if !delay.is_zero() {
        println!(
            "backoff: start {} in a row within {} s of the previous one; waiting {} s",
            quick + 1,
            args.stable_after,
            delay.as_secs()
        );
        std::thread::sleep(delay);
    }
    let new = State {
        quick_restarts: quick,
        last_start: Some(now()),
    };
    let bytes =
        serde_json::to_vec(&new).map_err(|e| Error::new(format!("cannot encode backoff state: {e}")))?;
    write_atomic(&state_path, &bytes)?;
    Ok(exit::OK)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("create a file in", dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("replace", path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> BackoffArgs {
        BackoffArgs {
            base: 1,
            max: 60,
            stable_after: 120,
            state: None,
        }
    }

    #[test]
    fn delays_double_up_to_the_cap_and_reset_after_a_healthy_run() {
        let a = args();
        let mut st = State::default();
        let mut t = 1_000;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let (d, q) = next(&st, t, &a);
            seen.push(d.as_secs());
            st = State {
                quick_restarts: q,
                last_start: Some(t),
            };
            t += 5;
        }
        assert_eq!(seen, vec![0, 0, 1, 2, 4, 8, 16, 32, 60, 60]);
        let (d, q) = next(&st, t + 500, &a);
        assert_eq!((d, q), (Duration::ZERO, 0));
    }
}
