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

use jarvis_cli::BackoffArgs;
use jarvis_model::error::{exit, Error, Result};
use jarvis_model::paths::PREFLIGHT_FAILED;

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Starts in a row that came soon after the one before.
    pub quick_restarts: u32,
    /// When the previous start went ahead (seconds since the epoch).
    pub last_start: Option<u64>,
    /// Of those quick restarts, the ones after a run that got past its
    /// start (`--ready-after`): a crash loop of the running bot still
    /// backs off, but failed starts before it (setup) are not counted.
    #[serde(default)]
    pub after_ready: u32,
}

/// The delay before this start, and the new state's counts (quick
/// restarts, of them after a run that got past its start).
pub fn next(state: &State, now: u64, args: &BackoffArgs) -> (Duration, u32, u32) {
    let ran = state.last_start.map(|t| now.saturating_sub(t));
    let (quick, after_ready) = match ran {
        // A long healthy run: start afresh.
        Some(s) if s >= args.stable_after => (0, 0),
        // It got past its start, then crashed: the failed starts before it
        // (a missing .env during setup, ...) do not make this crash wait;
        // only the crashes of a started bot add up.
        Some(s) if s >= args.ready_after => {
            let n = state.after_ready.saturating_add(1);
            (n, n)
        }
        Some(_) => (state.quick_restarts.saturating_add(1), state.after_ready),
        None => (0, 0),
    };
    // The first quick restart waits only RestartSec=: a single crash must be
    // back within seconds (the bot needs up to 7 s more to be READY).
    if quick <= 1 {
        return (Duration::ZERO, quick, after_ready);
    }
    let secs = args
        .base
        .saturating_mul(1u64 << (quick - 2).min(32))
        .min(args.max);
    (Duration::from_secs(secs), quick, after_ready)
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
    let (delay, quick, after_ready) = next(&state, now(), args);
    // Why the previous start failed, if its preflight said so: shown while
    // the unit waits here, which is where `systemctl status` finds it.
    if let Some(dir) = state_path.parent() {
        if let Ok(lines) = fs::read_to_string(dir.join(PREFLIGHT_FAILED)) {
            println!("backoff: the previous start failed its preflight:");
            // Its findings may quote the service user's file names.
            for l in lines.lines() {
                println!("{}", crate::output::printable(l));
            }
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
        after_ready,
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
            ready_after: 30,
            state: None,
        }
    }

    /// Starts at these gaps (seconds after the previous start): the delay
    /// each one waits.
    fn delays(gaps: &[u64]) -> Vec<u64> {
        let a = args();
        let mut st = State::default();
        let mut t = 1_000;
        let mut seen = Vec::new();
        for gap in gaps {
            t += gap;
            let (d, q, r) = next(&st, t, &a);
            seen.push(d.as_secs());
            t += d.as_secs();
            st = State {
                quick_restarts: q,
                last_start: Some(t),
                after_ready: r,
            };
        }
        seen
    }

    #[test]
    fn delays_double_up_to_the_cap_and_reset_after_a_healthy_run() {
        assert_eq!(
            delays(&[0, 5, 5, 5, 5, 5, 5, 5, 5, 5]),
            vec![0, 0, 1, 2, 4, 8, 16, 32, 60, 60]
        );
        assert_eq!(delays(&[0, 5, 5, 5, 500]), vec![0, 0, 1, 2, 0]);
    }

    #[test]
    fn failed_starts_during_setup_do_not_inflate_the_first_real_crash() {
        // Six starts fail at once (no .env yet), then the bot runs 60 s (READY
        // after a few) and is killed with kill -9: that crash waits as a first
        // crash does, not 16 s.
        let d = delays(&[0, 2, 2, 2, 2, 2, 60]);
        assert_eq!(d[..6], [0, 0, 1, 2, 4, 8]);
        assert_eq!(d[6], 0, "{d:?}");
        // A second crash soon after it is a quick one: the base delay.
        assert_eq!(delays(&[0, 2, 2, 2, 2, 2, 60, 3])[7], 1);
        // A started bot that keeps crashing after 40 s still backs off.
        assert_eq!(delays(&[0, 40, 40, 40, 40, 40]), vec![0, 0, 1, 2, 4, 8]);
    }
}
