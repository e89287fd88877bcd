//! The newest lines of the bot's output, whatever its volume: the one
//! reader behind `status` and `logs`. The unit's journal is read newest
//! first (`journalctl -r`: with `--since X -n N` alone, journalctl seeks to
//! X and gives the *first* N entries after it), a file is read backwards
//! from its end; both stop at a count of entries and a count of bytes, and
//! give the lines back oldest first.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::systemd::{journal_command, journal_entry, JournalEntry};

/// Which of the newest lines to read, and how much work that may take.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Only lines from then on (unix time); a file's lines are judged by
    /// the program's own timestamp.
    pub since: Option<f64>,
    /// At most this many of the newest lines.
    pub entries: usize,
    /// At most this many bytes read (journalctl's output, or the file).
    pub bytes: u64,
}

/// journalctl's arguments for `w`, after `-u UNIT -o json`.
pub fn journal_args(w: &Window) -> Vec<String> {
    let mut args = vec!["--reverse".to_string(), "-n".to_string(), w.entries.to_string()];
    if let Some(s) = w.since {
        args.extend(["--since".to_string(), format!("@{}", s.floor() as i64)]);
    }
    args
}

/// The newest entries of the unit's journal in `w`, oldest first; empty
/// when journalctl cannot be run.
pub fn journal(unit: &str, w: &Window) -> Vec<JournalEntry> {
    let args = journal_args(w);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // One byte over the bound tells that journalctl had more to say.
    let limits = crate::runner::Limits {
        keep: usize::try_from(w.bytes + 1).unwrap_or(usize::MAX),
        ..crate::runner::Limits::TOOL
    };
    let Ok(ran) = crate::runner::run(journal_command(unit, &args), b"", limits) else {
        return Vec::new();
    };
    let mut out = ran.stdout;
    if out.len() as u64 > w.bytes {
        // Enough: the newest come first, the rest is older.
        out.truncate(w.bytes as usize);
        out.truncate(out.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1));
    }
    newest_first_to_oldest(&String::from_utf8_lossy(&out))
}

/// journalctl's reverse JSON output, put back oldest first.
fn newest_first_to_oldest(text: &str) -> Vec<JournalEntry> {
    let mut entries: Vec<JournalEntry> = text.lines().filter_map(journal_entry).collect();
    entries.reverse();
    entries
}

/// The newest complete lines of a file, oldest first.
#[derive(Debug, Default)]
pub struct Tail {
    pub lines: Vec<String>,
    /// The offset just after the last complete line: where to follow on.
    pub end: u64,
    /// The file's inode, to see a rotation when following.
    pub ino: u64,
    /// How many bytes were read from the end, complete lines or not.
    pub read: u64,
}

/// How much of a file one step back reads.
const STEP: u64 = 64 * 1024;

/// The newest complete lines of `path` in `w`, read backwards from its end,
/// opened through `untrusted` (the service user's directory: no link
/// followed, no FIFO). A line still being written (no newline yet) is left
/// for the next read. Lines without a timestamp of their own stay with the
/// line they follow: the `since` cut falls before a stamped line.
pub fn file(path: &Path, w: &Window) -> std::io::Result<Tail> {
    use std::os::unix::fs::MetadataExt;
    let mut f = jarvis_model::untrusted::open_read(path, None)?;
    let meta = f.metadata()?;
    let len = meta.len();
    // The bytes from `start` to the end, grown backwards a step at a time
    // until they hold what `w` asks for.
    let mut buf: Vec<u8> = Vec::new();
    let mut start = len;
    let mut newlines = 0usize;
    loop {
        let step = STEP.min(start).min(w.bytes.saturating_sub(len - start));
        if step == 0 {
            break;
        }
        start -= step;
        f.seek(SeekFrom::Start(start))?;
        let mut chunk = Vec::with_capacity(step as usize + buf.len());
        (&mut f).take(step).read_to_end(&mut chunk)?;
        if chunk.len() as u64 != step {
            // Cut short while read: what was read before is what there is.
            start += step;
            break;
        }
        // The new piece, with the line it completes of what was read before.
        let joined = step as usize + buf.iter().position(|b| *b == b'\n').map_or(buf.len(), |i| i + 1);
        chunk.extend_from_slice(&buf);
        buf = chunk;
        newlines += buf[..step as usize].iter().filter(|b| **b == b'\n').count();
        // The first line may have begun before what was read.
        let whole = if start == 0 {
            newlines
        } else {
            newlines.saturating_sub(1)
        };
        if whole > w.entries || older_than(&buf[..joined], start == 0, w.since) {
            break;
        }
    }
    // Only complete lines: drop a partial last one, and a first one that
    // began before what was read.
    let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let first = if start == 0 {
        0
    } else {
        buf[..complete]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(complete, |i| i + 1)
    };
    let text = String::from_utf8_lossy(&buf[first..complete]);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if let Some(since) = w.since {
        let cut = lines
            .iter()
            .rposition(|l| crate::components::line_time(l).is_some_and(|t| t < since))
            .map_or(0, |i| {
                // The old line's continuation (a traceback) goes with it.
                lines[i + 1..]
                    .iter()
                    .position(|l| crate::components::line_time(l).is_some())
                    .map_or(lines.len(), |j| i + 1 + j)
            });
        lines.drain(..cut);
    }
    let skip = lines.len().saturating_sub(w.entries);
    lines.drain(..skip);
    Ok(Tail {
        lines,
        end: start + complete as u64,
        ino: meta.ino(),
        read: len - start,
    })
}

/// Whether `piece` (the start of what was read; its first line may be cut
/// unless `at_start`) holds a stamped line older than `since`.
fn older_than(piece: &[u8], at_start: bool, since: Option<f64>) -> bool {
    let Some(since) = since else { return false };
    String::from_utf8_lossy(piece)
        .lines()
        .skip(usize::from(!at_start))
        .filter_map(crate::components::line_time)
        .any(|t| t < since)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(since: Option<f64>, entries: usize, bytes: u64) -> Window {
        Window {
            since,
            entries,
            bytes,
        }
    }

    #[test]
    fn the_journal_is_asked_newest_first_and_given_back_oldest_first() {
        let w = window(Some(1_800_000_000.7), 2000, 1 << 20);
        assert_eq!(
            journal_args(&w),
            ["--reverse", "-n", "2000", "--since", "@1800000000"]
        );
        assert_eq!(journal_args(&window(None, 3, 1)), ["--reverse", "-n", "3"]);
        // What journalctl -r prints: the newest entry first.
        let out = "\
{\"__REALTIME_TIMESTAMP\":\"3000000\",\"MESSAGE\":\"third\"}
{\"__REALTIME_TIMESTAMP\":\"2000000\",\"MESSAGE\":\"second\"}
{\"__REALTIME_TIMESTAMP\":\"1000000\",\"MESSAGE\":[102,105,114,115,116]}
";
        let got: Vec<(Option<f64>, String)> = newest_first_to_oldest(out)
            .into_iter()
            .map(|e| (e.unix, e.text))
            .collect();
        assert_eq!(
            got,
            [
                (Some(1.0), "first".to_string()),
                (Some(2.0), "second".to_string()),
                (Some(3.0), "third".to_string()),
            ]
        );
    }

    fn lines_of(n: usize) -> String {
        (1..=n).map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn a_file_is_read_from_its_end_within_its_bounds() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("supervisor.stdout");
        // 200,000 lines (about 2.3 MB), and a line still being written.
        std::fs::write(&p, lines_of(200_000) + "partial").unwrap();
        let t = file(&p, &window(None, 3, 8 << 20)).unwrap();
        assert_eq!(t.lines, ["line 199998", "line 199999", "line 200000"]);
        assert_eq!(
            t.end,
            std::fs::metadata(&p).unwrap().len() - "partial".len() as u64
        );
        // The byte bound holds whatever the count asked for: 1 KiB back is
        // fewer than 100 whole lines, none of them cut.
        let t = file(&p, &window(None, usize::MAX, 1024)).unwrap();
        assert!(t.lines.len() < 100 && !t.lines.is_empty(), "{}", t.lines.len());
        assert_eq!(t.lines.last().unwrap(), "line 200000");
        assert!(
            t.lines.iter().all(|l| l.starts_with("line ") && l.len() >= 11),
            "{:?}",
            t.lines
        );
        // A small file is read whole, its first line included.
        std::fs::write(&p, lines_of(3)).unwrap();
        let t = file(&p, &window(None, 10, 8 << 20)).unwrap();
        assert_eq!(t.lines, ["line 1", "line 2", "line 3"]);
    }

    #[test]
    fn since_cuts_a_file_at_the_programs_own_timestamps() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("supervisor.stdout");
        let mut text = String::new();
        // An old error with its traceback, 70,000 old lines before it, then
        // new lines, one without a stamp.
        for i in 0..70_000 {
            text += &format!("2026-12-01 04:00:00,000 - x - INFO - old {i}\n");
        }
        text +=
            "2026-12-01 04:59:00,000 - x - ERROR - [buy_bot] old crash\nTraceback (most recent call last):\n";
        text += "2026-12-01 05:00:01,000 - x - INFO - new 1\nunstamped\n2026-12-01 05:00:02,000 - x - INFO - new 2\n";
        std::fs::write(&p, &text).unwrap();
        let since = crate::components::line_time("2026-12-01 05:00:00,000").unwrap();
        let t = file(&p, &window(Some(since), 1000, 8 << 20)).unwrap();
        assert_eq!(
            t.lines,
            [
                "2026-12-01 05:00:01,000 - x - INFO - new 1",
                "unstamped",
                "2026-12-01 05:00:02,000 - x - INFO - new 2"
            ]
        );
    }
}
