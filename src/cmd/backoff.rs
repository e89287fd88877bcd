//! `jarvisctl backoff`: the unit's `ExecStartPre=`. systemd 252 has no
//! growing restart delay (`RestartSteps=` arrived in 254), so this gives the
//! same backoff on every version: the first start that follows the previous
//! one within `--stable-after` seconds goes ahead at once, each further one
//! waits twice as long as the last (from `--base`), up to `--max`; a long
//! healthy run resets it. The state lives in the unit's
//! runtime directory, which systemd keeps across restarts but removes on a
//! stop, so a manual stop and start is never delayed.
//!
//! The state never costs the start (issue 27): when the file cannot be
//! replaced (`/run` full), the count is rewritten in place in the file that
//! is already there (its block is allocated; the file is padded to a fixed
//! size for that), and when there is no file to rewrite, each start waits
//! the longest delay (`--max`) instead: the bot still starts, with backoff,
//! and the journal names the full filesystem (once while the file is
//! rewritten in place; at each start when there is no file to rewrite,
//! since nothing then remembers that it was said).
//!
//! A stop during the wait ends it at once (issue 27): SIGTERM, which is what
//! systemd and the fallback engine send to `ExecStartPre=` on a stop, ends
//! the wait and exits 0. Killed by the signal, the step would count as a
//! failure (`Result=signal`): the unit left `failed` and its `OnFailure=`
//! alert fired by an operator's `apt remove`, `stop` or deploy.

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
    /// The last record was rewritten in place because the file could not
    /// be replaced: the full filesystem was already reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_place: bool,
}

/// The state file's size, the JSON padded with spaces: a rewrite in place
/// of this many bytes needs no new block, even on a full filesystem.
const STATE_SIZE: usize = 256;

/// How the new state was kept.
#[derive(Debug)]
pub enum Recorded {
    /// The file was replaced whole, as normal.
    Replaced,
    /// The file could not be replaced; the existing one was rewritten.
    InPlace(std::io::Error),
    /// Nothing could be written: the next start will not know this one.
    Lost(std::io::Error),
}

/// `st` as JSON padded with spaces to STATE_SIZE (JSON allows them at the end).
fn padded(st: &State) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(st).unwrap_or_default();
    if bytes.len() < STATE_SIZE {
        bytes.resize(STATE_SIZE - 1, b' ');
        bytes.push(b'\n');
    }
    bytes
}

/// Keeps `st` at `path`: replaced whole by `replace`, else rewritten in
/// place in the file already there (one write from offset 0, no create, no
/// truncate: nothing that needs a new block).
pub fn record_with(
    path: &std::path::Path,
    st: &State,
    replace: impl FnOnce(&std::path::Path, &[u8]) -> std::io::Result<()>,
) -> Recorded {
    let err = match replace(path, &padded(st)) {
        Ok(()) => return Recorded::Replaced,
        Err(e) => e,
    };
    let in_place = State {
        in_place: true,
        ..*st
    };
    let written = jarvis_model::filesystem::rewrite_in_place(
        path,
        &padded(&in_place),
        jarvis_model::filesystem::Tail::Spaces,
    );
    match written {
        Ok(_) => Recorded::InPlace(err),
        Err(_) => Recorded::Lost(err),
    }
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

/// SIGTERM, blocked so that it waits for `wait` instead of killing us.
fn term_set() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGTERM);
    set.add(nix::sys::signal::Signal::SIGINT);
    set
}

/// Waits `d`, or less when a stop (SIGTERM, or SIGINT by hand) comes:
/// true when it came. The signals must be blocked (`term_set`): they are
/// read from a signalfd, pending ones included.
fn wait(d: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    if d.is_zero() {
        return false;
    }
    let Ok(fd) = SignalFd::with_flags(&term_set(), SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) else {
        // No signalfd: a plain sleep that a stop still ends (killed by it,
        // as before: a failure to systemd, but never a wait).
        let _ = term_set().thread_unblock();
        std::thread::sleep(d);
        return false;
    };
    let deadline = std::time::Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let ms = PollTimeout::try_from(left.as_millis().clamp(1, 60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(&fd), PollFlags::POLLIN)];
        // EINTR (another signal): wait the rest.
        if poll(&mut fds, ms).is_ok_and(|n| n > 0) && matches!(fd.read_signal(), Ok(Some(_))) {
            return true;
        }
    }
}

/// Said when a stop ended the wait: the start is not made, and the state
/// is left as it was (this start did not happen).
fn stopped() -> Result<i32> {
    println!("backoff: stopped during the wait: this start is not made");
    Ok(exit::OK)
}

pub fn run(args: &BackoffArgs) -> Result<i32> {
    // Before anything: a stop that comes at any point is seen by `wait`.
    if let Err(e) = term_set().thread_block() {
        return Err(Error::new(format!("cannot block SIGTERM: {e}")));
    }
    // From here a stop is pending until a wait takes it; with no wait to
    // make, the step ends at once anyway, with status 0.
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
        if wait(delay) {
            return stopped();
        }
    }
    let new = State {
        quick_restarts: quick,
        last_start: Some(now()),
        after_ready,
        in_place: false,
    };
    match record_with(&state_path, &new, write_atomic) {
        Recorded::Replaced if state.in_place => {
            println!("backoff: {} is written normally again", state_path.display());
        }
        Recorded::Replaced => {}
        // Said at the first start that found it full, not at each.
        Recorded::InPlace(_) if state.in_place => {}
        Recorded::InPlace(e) => println!(
            "backoff: cannot replace {}: {e}; {}: the backoff count is kept by rewriting the file in place; free space there",
            state_path.display(),
            jarvis_model::filesystem::describe(&state_path)
        ),
        Recorded::Lost(e) => {
            // Without a record the next start cannot tell a crash loop
            // from a first start: every start waits the longest delay, so
            // a loop still backs off and never reaches the start limit at
            // once a second.
            println!(
                "backoff: cannot record its state in {}: {e}; {}: waiting the longest delay ({} s, --max) before each start until it can; free space there",
                state_path.display(),
                jarvis_model::filesystem::describe(&state_path),
                args.max
            );
            if wait(Duration::from_secs(args.max).saturating_sub(delay)) {
                return stopped();
            }
        }
    }
    Ok(exit::OK)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A new file renamed over the old: a reader never sees half of it. The
/// temporary file goes with its error (a full filesystem keeps none).
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
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

    #[test]
    fn a_stop_ends_the_wait_at_once_and_no_stop_waits_it_out() {
        // In a thread of its own: the signal is sent to that thread only,
        // blocked there, so it can only reach the wait's signalfd.
        std::thread::spawn(|| {
            term_set().thread_block().expect("block SIGTERM");
            let t = std::time::Instant::now();
            assert!(
                !wait(Duration::from_millis(300)),
                "a wait with no stop was cut short"
            );
            assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
            // raise(3) sends to the calling thread.
            nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).expect("raise");
            let t = std::time::Instant::now();
            assert!(wait(Duration::from_secs(30)), "the stop did not end the wait");
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        })
        .join()
        .expect("the waiting thread");
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
                in_place: false,
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

    fn full(_: &std::path::Path, _: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(nix::libc::ENOSPC))
    }

    fn read(path: &std::path::Path) -> State {
        serde_json::from_slice(&fs::read(path).unwrap()).expect("the state reads back")
    }

    #[test]
    fn a_full_filesystem_keeps_the_count_in_the_existing_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("backoff.json");
        let st = |q, t| State {
            quick_restarts: q,
            last_start: Some(t),
            after_ready: 0,
            in_place: false,
        };
        assert!(matches!(
            record_with(&f, &st(1, 100), write_atomic),
            Recorded::Replaced
        ));
        assert_eq!(fs::metadata(&f).unwrap().len() as usize, STATE_SIZE);
        assert_eq!(read(&f), st(1, 100));
        // The filesystem fills: the count still goes up, in the same file.
        assert!(matches!(record_with(&f, &st(2, 105), full), Recorded::InPlace(_)));
        assert_eq!(
            read(&f),
            State {
                in_place: true,
                ..st(2, 105)
            }
        );
        assert_eq!(fs::metadata(&f).unwrap().len() as usize, STATE_SIZE);
        // An unpadded file of an older version is rewritten too.
        fs::write(&f, br#"{"quick_restarts":3,"last_start":110}"#).unwrap();
        assert!(matches!(record_with(&f, &st(4, 120), full), Recorded::InPlace(_)));
        assert_eq!(
            read(&f),
            State {
                in_place: true,
                ..st(4, 120)
            }
        );
        // A longer old file: its tail is blanked, never left to be read.
        fs::write(&f, vec![b'x'; 600]).unwrap();
        assert!(matches!(record_with(&f, &st(5, 130), full), Recorded::InPlace(_)));
        assert_eq!(
            read(&f),
            State {
                in_place: true,
                ..st(5, 130)
            }
        );
        // No file to rewrite: lost, and the caller waits --max.
        let g = d.path().join("none.json");
        assert!(matches!(record_with(&g, &st(1, 1), full), Recorded::Lost(_)));
        assert!(!g.exists());
        // A symbolic link is not followed.
        std::os::unix::fs::symlink(&f, &g).unwrap();
        assert!(matches!(record_with(&g, &st(9, 9), full), Recorded::Lost(_)));
        assert_eq!(read(&f).quick_restarts, 5);
    }
}
