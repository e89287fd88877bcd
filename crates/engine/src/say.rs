//! The engine's own log (its stderr: `engine.log` under `--daemon`), rate
//! limited and bounded: a crash loop or a full disk says the same thing
//! again and again, and the log lives in /run, which is memory.

use std::os::fd::AsFd;
use std::time::Instant;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// The engine log's most: past it (an O_APPEND file, as under --daemon)
/// it is emptied and starts again with a line that says so. It lives in
/// /run, which is memory, and no logrotate stanza covers it.
const ENGINE_LOG_MAX: u64 = 4 << 20;

static THROTTLE: std::sync::Mutex<Throttle> = std::sync::Mutex::new(Throttle::new());

/// Writes one of the engine's lines to stderr, through the throttle: one
/// write per line (stderr is unbuffered, and a line in pieces costs a
/// system call per piece, in the restart's path too).
pub fn say_line(line: String) {
    use std::io::Write as _;
    let lines = THROTTLE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(line, Instant::now());
    let mut err = std::io::stderr();
    for l in lines {
        let _ = err.write_all(l.as_bytes());
    }
    bound_stderr();
}

/// Empties stderr when it is an append-only regular file past ENGINE_LOG_MAX.
fn bound_stderr() {
    bound(&mut std::io::stderr(), ENGINE_LOG_MAX);
}

/// Empties `log` when it is an append-only regular file past `max` bytes,
/// and says so in it. A file not opened to append (a shell's `2>`) is left
/// alone: its writes would go on at the old offset.
fn bound<F: AsFd + std::io::Write>(log: &mut F, max: u64) -> bool {
    let Ok(meta) = nix::sys::stat::fstat(log.as_fd()) else {
        return false;
    };
    if meta.st_mode & nix::libc::S_IFMT != nix::libc::S_IFREG || (meta.st_size as u64) <= max {
        return false;
    }
    let append = fcntl(log.as_fd(), FcntlArg::F_GETFL)
        .is_ok_and(|f| OFlag::from_bits_truncate(f).contains(OFlag::O_APPEND));
    if !append || nix::unistd::ftruncate(log.as_fd(), 0).is_err() {
        return false;
    }
    let _ = log.write_all(
        format!(
            "jarvisctl run: this log passed {} KiB and was emptied (the program's own output is in its logs/ directory)\n",
            max >> 10
        )
        .as_bytes(),
    );
    true
}

/// Lines let through at once, then one a second: a flood of messages (a
/// crash loop, a full disk) cannot fill the engine log.
const SAY_BURST: f64 = 200.0;
const SAY_PER_SEC: f64 = 1.0;
/// The same line this many times in a row is still written (ten log
/// rotations are ten events); from the next one on it is folded.
const FOLD_AFTER: u64 = 10;
/// A folded line repeated this often is counted aloud even if no other comes.
const FOLD_MAX: u64 = 10_000;

/// The engine log's rate limit: the same line over ten times in a row is folded into a
/// count ("repeated N times"), and past the burst lines are dropped and
/// counted.
pub struct Throttle {
    last: String,
    /// Times in a row the last line was written.
    in_row: u64,
    repeats: u64,
    tokens: f64,
    at: Option<Instant>,
    dropped: u64,
}

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle {
            last: String::new(),
            in_row: 0,
            repeats: 0,
            tokens: SAY_BURST,
            at: None,
            dropped: 0,
        }
    }

    /// What to write for `line` said at `now`: nothing, or it with the
    /// counts of what was folded or dropped before it.
    pub fn admit(&mut self, line: String, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(at) = self.at {
            let gained = now.saturating_duration_since(at).as_secs_f64() * SAY_PER_SEC;
            self.tokens = (self.tokens + gained).min(SAY_BURST);
        }
        self.at = Some(now);
        let again = line == self.last;
        if again && self.in_row >= FOLD_AFTER {
            self.repeats += 1;
            if self.repeats < FOLD_MAX {
                return out;
            }
        }
        if self.repeats > 0 {
            out.push(format!(
                "jarvisctl run: (the line above repeated {} more time(s))\n",
                self.repeats
            ));
            self.repeats = 0;
            if again {
                return out;
            }
        }
        if self.tokens < 1.0 {
            self.dropped += 1;
            return out;
        }
        self.tokens -= 1.0;
        if self.dropped > 0 {
            out.push(format!(
                "jarvisctl run: {} line(s) of this log not written (at most {} at once, then {} a second)\n",
                self.dropped, SAY_BURST as u64, SAY_PER_SEC as u64
            ));
            self.dropped = 0;
        }
        self.in_row = if again { self.in_row + 1 } else { 1 };
        out.push(line.clone());
        self.last = line;
        out
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn said(t: &mut Throttle, line: &str, at: Instant) -> Vec<String> {
        t.admit(format!("jarvisctl run: {line}\n"), at)
    }

    #[test]
    fn an_append_only_log_past_its_bound_is_emptied_with_a_note() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("engine.log");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .unwrap();
        f.write_all(&[b'x'; 5000]).unwrap();
        assert!(!bound(&mut f, 8192), "under the bound");
        f.write_all(&[b'x'; 5000]).unwrap();
        assert!(bound(&mut f, 8192));
        f.write_all(b"jarvisctl run: next\n").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "jarvisctl run: this log passed 8 KiB and was emptied (the program's own output is in its logs/ directory)\njarvisctl run: next\n"
        );
        // Not opened to append: left alone.
        let mut g = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        std::io::Seek::seek(&mut g, std::io::SeekFrom::End(0)).unwrap();
        g.write_all(&[b'x'; 9000]).unwrap();
        assert!(!bound(&mut g, 8192));
    }

    #[test]
    fn the_same_line_again_is_folded_into_a_count() {
        let mut t = Throttle::new();
        let t0 = Instant::now();
        for _ in 0..FOLD_AFTER {
            assert_eq!(said(&mut t, "cannot write x", t0).len(), 1);
        }
        for _ in 0..500 {
            assert!(said(&mut t, "cannot write x", t0).is_empty());
        }
        assert_eq!(
            said(&mut t, "started", t0),
            [
                "jarvisctl run: (the line above repeated 500 more time(s))\n",
                "jarvisctl run: started\n"
            ]
        );
        // Folded for ever, yet counted aloud now and then.
        let n: usize = (0..FOLD_MAX * 2 + FOLD_AFTER - 1)
            .map(|_| said(&mut t, "started", t0).len())
            .sum();
        assert_eq!(n as u64, FOLD_AFTER - 1 + 2);
    }

    #[test]
    fn a_flood_of_lines_is_bounded_and_what_was_dropped_is_counted() {
        let mut t = Throttle::new();
        let t0 = Instant::now();
        let written: usize = (0..1_000)
            .map(|i| said(&mut t, &format!("line {i}"), t0).len())
            .sum();
        assert_eq!(written, SAY_BURST as usize);
        // Ten seconds later: ten more lines, the first with the count.
        let t1 = t0 + Duration::from_secs(10);
        let out: Vec<String> = (0..50)
            .flat_map(|i| said(&mut t, &format!("later {i}"), t1))
            .collect();
        assert_eq!(out.len(), 11, "{out:?}");
        assert!(out[0].contains("800 line(s) of this log not written"), "{out:?}");
    }
}
