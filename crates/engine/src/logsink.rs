//! The program's stdout and stderr: one pipe, read by the engine and
//! appended to `logs/supervisor.stdout`. Only whole lines are written, so a reopen
//! (logrotate's rename, then SIGHUP) never splits or loses a line.
//!
//! A write that fails (`logs/` full, issue 27) keeps no piece of a line: a
//! line cut by the failure is taken back out of the file. The lines that
//! could not be written are counted; the first write that works again puts
//! "N output line(s) lost ..." in the file before the output, and the
//! engine says both ends of the streak once, in its own log.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use jarvis_model::error::{Error, Result};

/// Longest partial line kept back; a longer one is written as it is.
const MAX_PENDING: usize = 256 * 1024;
/// The log pipe's size, and one read of it: a whole pipe per read. Large
/// enough that a flood takes few system calls; small enough that the pages
/// the program writes are still in the CPU cache when the engine reads them.
/// Measured on a 2-core VM, 1 GB of 100-byte lines, five rounds side by
/// side: 256 KiB 1,860-2,150 MB/s; 1 MiB 650-1,320 MB/s (it had looked
/// best on another machine); cat 1,230-1,570 MB/s.
pub const PIPE_SIZE: usize = 256 << 10;
const READ_SIZE: usize = PIPE_SIZE;

/// The program's stdout and stderr, in its logs directory. Not `*.log`: the
/// package's copytruncate snippet matches those; this one has its own
/// rename-then-HUP stanza (jarvis-fallback). `status` reads its errors here.
pub const OUTPUT_FILE: &str = "supervisor.stdout";

/// The file of one instance's output in its `logs/`: the default's is
/// [`OUTPUT_FILE`]; a named one's carries its unit's name, since instances
/// that share a code tree share its `logs/` (each file is its own user's).
pub fn output_file(instance: &jarvis_model::instance::Instance) -> String {
    match instance {
        jarvis_model::instance::Instance::Default => OUTPUT_FILE.to_string(),
        named => format!("{}.stdout", named.unit().trim_end_matches(".service")),
    }
}

pub struct LogSink {
    read: OwnedFd,
    pub path: PathBuf,
    owner: Option<(u32, u32)>,
    file: File,
    pending: Vec<u8>,
    buf: Vec<u8>,
    /// Since when writes fail, and the lines lost since.
    failing: Option<Failing>,
    /// Output lines lost since the engine started (state.json).
    pub lines_lost: u64,
}

struct Failing {
    since: Instant,
    lost: u64,
    error: std::io::Error,
}

/// Opens the output file as root would open a file in a directory that the
/// service user writes: no symbolic link followed (it could point at
/// /etc/passwd), no hard link, no FIFO; made with 0640 and the service
/// user as owner when missing.
fn open(path: &Path, owner: Option<(u32, u32)>) -> Result<File> {
    if let Some(dir) = path.parent() {
        // Only logs/ itself: a missing WorkingDirectory= is a missing
        // deployment, not something to create here.
        jarvis_model::untrusted::ensure_dir(dir, 0o750, owner)
            .map(drop)
            .map_err(|e| {
                Error::io("create the log directory", dir, e)
                    .with_note("check WorkingDirectory= in the unit, and that the code is deployed there")
            })?;
    }
    jarvis_model::untrusted::open_append(path, 0o640, owner).map_err(|e| {
        Error::io("open the log file", path, e)
            .with_note("remove what stands at that path (the engine makes the file anew), and check the logs directory's owner")
    })
}

impl LogSink {
    pub fn new(read: OwnedFd, path: PathBuf, owner: Option<(u32, u32)>) -> Result<LogSink> {
        let file = open(&path, owner)?;
        Ok(LogSink {
            read,
            path,
            owner,
            file,
            pending: Vec::new(),
            buf: vec![0; READ_SIZE],
            failing: None,
            lines_lost: 0,
        })
    }

    /// The read buffer's whole pages, as (start, length): scratch between
    /// two drains, which the trim gives back while the engine waits (a
    /// flood makes all of it resident).
    pub fn scratch_pages(&mut self) -> (usize, usize) {
        let start = self.buf.as_mut_ptr() as usize;
        let first = (start + 0xfff) & !0xfff;
        let end = (start + self.buf.len()) & !0xfff;
        (first, end.saturating_sub(first))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Reopen the file at its path (after a rename). On failure the old
    /// file stays in use and the error is returned for the engine to print.
    pub fn reopen(&mut self) -> Result<()> {
        let file = open(&self.path, self.owner)?;
        self.file = file;
        Ok(())
    }

    /// True while writes fail (the output is being counted and dropped).
    pub fn failing(&self) -> bool {
        self.failing.is_some()
    }

    /// Read what is in the pipe (a bounded amount per call) and append the
    /// complete lines. Returns the messages for the engine's log: one when
    /// writes start failing, one when they work again.
    pub fn drain(&mut self) -> Vec<String> {
        let mut said = Vec::new();
        for _ in 0..16 {
            let n = match nix::unistd::read(&self.read, &mut self.buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let cut = match self.buf[..n].iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None if self.pending.len() + n > MAX_PENDING => n,
                None => 0,
            };
            if cut > 0 {
                // The held partial line, then the rest: no copy of the chunk.
                // A reopen only happens between drains, so the line still
                // lands whole in one file.
                let pending = std::mem::take(&mut self.pending);
                let buf = std::mem::take(&mut self.buf);
                self.append(&pending, &buf[..cut], &mut said);
                self.buf = buf;
                self.pending = pending;
                self.pending.clear();
            }
            self.pending.extend_from_slice(&self.buf[cut..n]);
            if n < self.buf.len() {
                break;
            }
        }
        said
    }

    /// `a` then `b`, whole lines, after the note of a streak that ended.
    fn append(&mut self, a: &[u8], b: &[u8], said: &mut Vec<String>) {
        if let Some(f) = &self.failing {
            let what = if jarvis_model::filesystem::is_full(&f.error) {
                "was full".to_string()
            } else {
                format!("could not be written ({})", f.error)
            };
            let note = format!(
                "jarvisctl run: {} output line(s) lost in {} s while {} {what}\n",
                f.lost,
                f.since.elapsed().as_secs(),
                self.path.display(),
            );
            if append_whole(&mut self.file, note.as_bytes(), &[]).is_err() {
                let lost = lines_in(a, b);
                self.lost(lost);
                return;
            }
            said.push(note.trim_start_matches("jarvisctl run: ").trim_end().to_string() + "; writing again");
            self.failing = None;
        }
        if let Err((e, lost)) = append_whole(&mut self.file, a, b) {
            let dir = self.path.parent().unwrap_or(&self.path);
            said.push(format!(
                "cannot write {}: {e}; {}: output lines are counted and dropped until it works again; free space there",
                self.path.display(),
                jarvis_model::filesystem::describe(dir),
            ));
            self.failing = Some(Failing {
                since: Instant::now(),
                lost: 0,
                error: e,
            });
            self.lost(lost);
        }
    }

    fn lost(&mut self, n: u64) {
        self.lines_lost = self.lines_lost.saturating_add(n);
        if let Some(f) = &mut self.failing {
            f.lost = f.lost.saturating_add(n);
        }
    }

    /// At exit: whatever partial line is left.
    pub fn flush_pending(&mut self) {
        let _ = self.file.write_all(&self.pending);
        self.pending.clear();
    }
}

/// The lines in `a` then `b`: their newlines, and a piece of a line too
/// long to hold back (see MAX_PENDING) counts as one.
fn lines_in(a: &[u8], b: &[u8]) -> u64 {
    let nl = a.iter().chain(b).filter(|&&c| c == b'\n').count() as u64;
    let ends_whole = b.last().or(a.last()).is_none_or(|&c| c == b'\n');
    nl + u64::from(!ends_whole)
}

/// `a` then `b` with as few writev() calls as the file takes: one,
/// normally. Whole lines or nothing: when a write fails part way, the cut
/// line is taken back out of the file (an append-only file of our own:
/// its end is where we wrote). The error, and the lines not written.
fn append_whole(file: &mut File, a: &[u8], b: &[u8]) -> std::result::Result<(), (std::io::Error, u64)> {
    let (mut ra, mut rb) = (a, b);
    let mut written = 0usize;
    while !ra.is_empty() || !rb.is_empty() {
        let res = match file.write_vectored(&[std::io::IoSlice::new(ra), std::io::IoSlice::new(rb)]) {
            Ok(0) => Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
        let n = match res {
            Ok(n) => n,
            Err(e) => {
                // The written part's last whole line.
                let at = |i: usize| if i < a.len() { a[i] } else { b[i - a.len()] };
                let whole = (0..written).rev().find(|&i| at(i) == b'\n').map_or(0, |i| i + 1);
                let torn = (written - whole) as u64;
                if torn > 0 {
                    if let Ok(m) = file.metadata() {
                        let _ = file.set_len(m.len().saturating_sub(torn));
                    }
                }
                let (la, lb) = if whole <= a.len() {
                    (&a[whole..], b)
                } else {
                    (&[][..], &b[whole - a.len()..])
                };
                return Err((e, lines_in(la, lb)));
            }
        };
        written += n;
        let from_a = n.min(ra.len());
        ra = &ra[from_a..];
        rb = &rb[n - from_a..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_lines_are_counted_whole() {
        assert_eq!(lines_in(b"", b""), 0);
        assert_eq!(lines_in(b"par", b"tial\nb\n"), 2);
        assert_eq!(lines_in(b"", b"a\nlong piece"), 2);
    }

    #[test]
    fn a_write_to_a_full_device_loses_its_lines_and_says_how_many() {
        let mut full = std::fs::OpenOptions::new()
            .append(true)
            .open("/dev/full")
            .unwrap();
        let (e, lost) = append_whole(&mut full, b"held ", b"one\ntwo\nthree\n").unwrap_err();
        assert!(jarvis_model::filesystem::is_full(&e), "{e}");
        assert_eq!(lost, 3);
    }
}
