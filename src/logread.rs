//! The bot's output read back for `jarvisctl logs`: the journal under
//! systemd, `jarvisctl run`'s capture otherwise, and the program's own
//! `logs/*.log`, merged in time order, then followed.
//!
//! The history is the newest lines, read from the end of each source
//! through `recent` (the journal newest first, each file backwards), so it
//! costs the same for a quiet bot and a busy one.
//!
//! Runs as root in the service user's directory: every file is opened
//! through `untrusted` (no link followed, no FIFO).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde::Serialize;

use crate::components::line_time;
use crate::recent::Window;
use jarvis_engine::logsink::output_file;
use jarvis_model::error::{exit, Error, Result};
use jarvis_model::instance::Instance;
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

/// How much of the journal the history reads back at most.
const TAIL: u64 = 8 * 1024 * 1024;
/// What the history reads of the files in `logs/`, all of them together:
/// the newest files first (by their last change), each from its end, each
/// given its share of what is left. Whatever the service user plants there
/// (many files, sparse ones, files of empty lines), `logs` reads no more.
const FILES_BUDGET: Budget = Budget {
    files: 32,
    bytes: 8 * 1024 * 1024,
    lines: 100_000,
};
/// The directory entries looked at, at most, to find the newest files.
const DIR_SCAN: usize = 10_000;
/// What `-f` reads of all the files together at each poll.
const FOLLOW_BYTES: u64 = 4 * 1024 * 1024;
/// A line longer than this is shown cut, saying how much was left out; a
/// line still being written is let out at this length when following.
pub const LINE_SHOWN: usize = 64 * 1024;
/// How many of the newest lines `--component` looks through for its own.
const COMPONENT_SCAN: usize = 50_000;
pub const POLL: Duration = Duration::from_millis(200);

/// The most the history reads of the logs directory's files.
#[derive(Debug, Clone, Copy)]
struct Budget {
    files: usize,
    bytes: u64,
    lines: usize,
}

/// What the budget left unread, said on stderr and, with `--json`, as a
/// last line `{"budget": ...}`.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Spent {
    files_read: usize,
    /// Files in `logs/` not read at all: beyond the newest `files`, or no
    /// budget left for them.
    files_skipped: usize,
    /// Files read only in part because their share of the budget ran out.
    files_cut: usize,
    /// The directory held more entries than were looked at.
    entries_unseen: bool,
    bytes_read: u64,
    lines_read: usize,
}

impl Spent {
    pub fn anything_left(&self) -> bool {
        self.files_skipped > 0 || self.files_cut > 0 || self.entries_unseen
    }

    pub fn describe(&self) -> String {
        let b = FILES_BUDGET;
        format!(
            "logs: {} file(s) of the logs directory not read, {} read only in part{}: each run reads at most the newest {} files, {} MiB and {} lines of them in all (see /usr/share/doc/jarvis-supervisor/docs/logs.md)",
            self.files_skipped,
            self.files_cut,
            if self.entries_unseen {
                format!(", and only the first {DIR_SCAN} entries of the directory were looked at")
            } else {
                String::new()
            },
            b.files,
            b.bytes >> 20,
            b.lines
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Unix time: the journal's, else the line's own stamp, else the one
    /// of the line before it (a traceback belongs to its error line), else
    /// of the line after it, else the file's last change.
    pub t: Option<f64>,
    pub source: String,
    pub text: String,
}

/// The sources of one reading: the journal when systemd runs the bot,
/// else the engine's capture, and the files of the logs directory.
pub struct Sources {
    /// The unit whose journal is read, when systemd runs the bot.
    journal: Option<String>,
    files: Files,
}

impl Sources {
    /// The default instance's: its journal or capture, and every `*.log`
    /// of its logs directory. A named instance's: its journal or its own
    /// capture (`logs/jarvis-supervisor@NAME.stdout` of its code root)
    /// only, since the `*.log` files of a tree that instances share are
    /// no one instance's.
    pub fn of(paths: &Paths, unit: &Unit, instance: &Instance) -> Sources {
        let journal = (crate::systemd::running() && paths.is_system()).then(|| instance.unit());
        let capture = journal.is_none().then(|| output_file(instance));
        let files = match instance {
            Instance::Default => {
                Files::new(unit.logs_dir().map(|d| paths.host(&d)).as_deref(), capture, true)
            }
            Instance::Named(_) => {
                let dir = unit.working_directory().map(|w| paths.host(&w.path).join("logs"));
                Files::new(dir.as_deref(), capture, false)
            }
        };
        Sources { journal, files }
    }

    /// The newest `lines` lines from `since` on (of one component, when
    /// named), oldest first, and what the files' budget left unread.
    pub fn history(
        &mut self,
        since: Option<f64>,
        lines: usize,
        component: Option<&str>,
    ) -> (Vec<Entry>, Spent) {
        // The newest lines of each source: as many as are shown, or, to pick
        // one component's lines, a bounded number to look through.
        let window = Window {
            since,
            entries: if component.is_some() {
                COMPONENT_SCAN
            } else {
                lines
            },
            bytes: TAIL,
        };
        let mut all: Vec<Entry> = Vec::new();
        if let Some(unit) = &self.journal {
            all.extend(journal_history(unit, &window));
        }
        let (history, spent) = self.files.history(&window);
        all.extend(history);
        let mut all: Vec<Entry> = all
            .into_iter()
            .filter(|e| since.is_none_or(|s| e.t.is_none_or(|t| t >= s)))
            .collect();
        if let Some(c) = component {
            all = of_component(all, c);
        }
        // Stable: lines of one file keep their order where times tie; a line
        // with no time at all is among the newest, never hidden at the start.
        all.sort_by(|a, b| {
            let t = |e: &Entry| e.t.unwrap_or(f64::INFINITY);
            t(a).total_cmp(&t(b))
        });
        let skip = all.len().saturating_sub(lines);
        all.drain(..skip);
        (all, spent)
    }

    /// Follows on from the history: the journal's new entries as they come,
    /// the files' at each [`Follow::poll`].
    pub fn follow<'a>(self, component: Option<&'a str>) -> Follow<'a> {
        let (tx, rx) = mpsc::channel::<Entry>();
        if let Some(unit) = self.journal {
            std::thread::spawn(move || journal_follow(&unit, &tx));
        }
        Follow {
            files: self.files,
            rx,
            filter: component.map(Component::new),
        }
    }
}

/// The sources being followed.
pub struct Follow<'a> {
    files: Files,
    rx: mpsc::Receiver<Entry>,
    filter: Option<Component<'a>>,
}

impl Follow<'_> {
    /// The lines that came since the last poll (wait [`POLL`] between two).
    pub fn poll(&mut self) -> Vec<Entry> {
        let mut batch: Vec<Entry> = self.rx.try_iter().collect();
        batch.extend(self.files.poll());
        batch.retain(|e| self.filter.as_mut().is_none_or(|f| f.keeps(e)));
        batch
    }
}

/// `--since` as journalctl takes it ("5 min ago", "-1h", "yesterday",
/// "2026-12-07 10:00"), the same on both engines: as unix time.
pub fn parse_since(v: &str, now: f64) -> Result<f64> {
    jarvis_model::timespan::point(v, now).map_err(|why| {
        Error::new(format!("--since {v:?} is not a time ({why})"))
            .with_code(exit::USAGE)
            .with_note(
                "give a time as journalctl takes it: --since \"5 min ago\", --since -1h, --since yesterday, --since \"2026-12-07 10:00\" (local time)",
            )
    })
}

/// A line that carries no time of its own and continues the one before
/// (a traceback), as opposed to a line of a component record.
fn continues(e: &Entry) -> bool {
    let record = e
        .text
        .strip_prefix("  ")
        .and_then(|b| b.split_once(": "))
        .is_some_and(|(n, _)| !n.is_empty() && !n.contains(char::is_whitespace));
    !record && line_time(&e.text).is_none()
}

fn matches_component(text: &str, name: &str) -> bool {
    text.contains(&format!("[{name}]")) || text.trim_start().starts_with(&format!("{name}:"))
}

/// `--component NAME`: its lines, and after each of them the lines that
/// continue it (a traceback), per source.
struct Component<'a> {
    name: &'a str,
    /// Whether the last line of each source was kept.
    last: BTreeMap<String, bool>,
}

impl<'a> Component<'a> {
    fn new(name: &'a str) -> Self {
        Component {
            name,
            last: BTreeMap::new(),
        }
    }

    fn keeps(&mut self, e: &Entry) -> bool {
        let m = matches_component(&e.text, self.name);
        let last = self.last.entry(e.source.clone()).or_default();
        *last = m || (continues(e) && *last);
        *last
    }
}

fn of_component(all: Vec<Entry>, name: &str) -> Vec<Entry> {
    let mut f = Component::new(name);
    all.into_iter().filter(|e| f.keeps(e)).collect()
}

fn from_journal(e: crate::systemd::JournalEntry) -> Entry {
    Entry {
        t: e.unix,
        source: "journal".into(),
        text: e.text,
    }
}

fn journal_entry(line: &str) -> Option<Entry> {
    crate::systemd::journal_entry(line).map(from_journal)
}

fn journal_history(unit: &str, window: &crate::recent::Window) -> Vec<Entry> {
    crate::recent::journal(unit, window)
        .into_iter()
        .map(from_journal)
        .collect()
}

fn journal_follow(unit: &str, tx: &mpsc::Sender<Entry>) {
    let Ok(mut child) = crate::systemd::journal_command(unit, &["-f", "-n", "0"])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
    else {
        return;
    };
    let Some(out) = child.stdout.take() else { return };
    for line in BufReader::new(out).lines().map_while(std::result::Result::ok) {
        if let Some(e) = journal_entry(&line) {
            if tx.send(e).is_err() {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The program's own files in the logs directory (and, without systemd,
/// the engine's capture of its output), read back and then followed.
struct Files {
    /// path -> (inode, offset read, a partial last line).
    open: BTreeMap<PathBuf, (u64, u64, String)>,
    dir: Option<PathBuf>,
    /// The engine's capture of the output (without systemd), by its name.
    capture: Option<String>,
    /// The program's own `*.log` files too.
    own_logs: bool,
    /// The last time seen per file, for lines without one.
    last_t: BTreeMap<PathBuf, Option<f64>>,
    budget: Budget,
}

/// The files [`Files::paths`] picked, newest first, and what it left out.
struct Listing {
    paths: Vec<PathBuf>,
    skipped: usize,
    entries_unseen: bool,
}

impl Files {
    fn new(dir: Option<&Path>, capture: Option<String>, own_logs: bool) -> Files {
        Files {
            open: BTreeMap::new(),
            dir: dir.map(Path::to_path_buf),
            capture,
            own_logs,
            last_t: BTreeMap::new(),
            budget: FILES_BUDGET,
        }
    }

    /// The newest `budget.files` logs by their last change (the link's
    /// own, never followed; the file is opened through `untrusted` later),
    /// among the first [`DIR_SCAN`] entries of the directory.
    fn paths(&self) -> Listing {
        let mut out = Listing {
            paths: Vec::new(),
            skipped: 0,
            entries_unseen: false,
        };
        let Some(dir) = &self.dir else { return out };
        let Ok(rd) = std::fs::read_dir(dir) else {
            return out;
        };
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for (n, e) in rd.flatten().enumerate() {
            if n == DIR_SCAN {
                out.entries_unseen = true;
                break;
            }
            let p = e.path();
            let wanted = (self.own_logs && p.extension().is_some_and(|x| x == "log"))
                || self
                    .capture
                    .as_deref()
                    .is_some_and(|c| p.file_name().is_some_and(|n| n == c));
            if !wanted {
                continue;
            }
            let changed = std::fs::symlink_metadata(&p)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            found.push((changed, p));
        }
        // Newest first; the name decides a tie, so the order is stable.
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        out.skipped = found.len().saturating_sub(self.budget.files);
        out.paths = found
            .into_iter()
            .take(self.budget.files)
            .map(|(_, p)| p)
            .collect();
        out
    }

    /// The newest lines of each file in `window`, read from its end, within
    /// the budget: each file, newest first, gets its share of the bytes and
    /// lines left, and what it does not use goes on to the next. The files
    /// are then followed from there.
    fn history(&mut self, window: &crate::recent::Window) -> (Vec<Entry>, Spent) {
        let listing = self.paths();
        let mut spent = Spent {
            files_skipped: listing.skipped,
            entries_unseen: listing.entries_unseen,
            ..Spent::default()
        };
        // By file name, as before the budget: lines of the same time keep
        // one order whatever the files' ages.
        let mut by_name: BTreeMap<PathBuf, Vec<Entry>> = BTreeMap::new();
        let n = listing.paths.len();
        for (i, p) in listing.paths.into_iter().enumerate() {
            let left = n - i;
            let bytes = (self.budget.bytes - spent.bytes_read) / left as u64;
            let lines = (self.budget.lines - spent.lines_read) / left;
            if bytes == 0 || lines == 0 {
                spent.files_skipped += 1;
                continue;
            }
            let share = crate::recent::Window {
                entries: window.entries.min(lines),
                bytes: window.bytes.min(bytes),
                ..*window
            };
            let Ok(tail) = crate::recent::file(&p, &share) else {
                continue;
            };
            spent.files_read += 1;
            spent.bytes_read += tail.read;
            spent.lines_read += tail.lines.len();
            let meta = std::fs::symlink_metadata(&p).ok();
            // Stopped by its share, not by having the lines asked for.
            let wanted_more = tail.lines.len() < share.entries;
            let cut_by_bytes =
                wanted_more && tail.read >= share.bytes && meta.as_ref().is_some_and(|m| m.len() > tail.read);
            let cut_by_lines = share.entries < window.entries && !wanted_more;
            if cut_by_bytes || cut_by_lines {
                spent.files_cut += 1;
            }
            self.open.insert(p.clone(), (tail.ino, tail.end, String::new()));
            let changed = meta
                .and_then(|m| m.modified().ok())
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64());
            let times = line_times(&tail.lines, changed);
            self.last_t.insert(p.clone(), times.last().copied().flatten());
            let source = source_name(&p);
            let entries = tail.lines.into_iter().zip(times).map(|(text, t)| Entry {
                t,
                source: source.clone(),
                text,
            });
            by_name.insert(p, entries.collect());
        }
        (by_name.into_values().flatten().collect(), spent)
    }

    /// New lines of the newest files, [`FOLLOW_BYTES`] in all at most,
    /// shared among them as in the history.
    fn poll(&mut self) -> Vec<Entry> {
        let paths = self.paths().paths;
        let mut out = Vec::new();
        let mut left = FOLLOW_BYTES;
        let n = paths.len();
        for (i, p) in paths.iter().enumerate() {
            let (lines, read) = self.read(p, left / (n - i) as u64);
            left -= read;
            out.extend(lines);
        }
        out
    }

    /// New complete lines of `p` since the last read, `most` bytes of it at
    /// most, and how many bytes were read; a file replaced (rotated) or
    /// cut short is read again from its start. A line still being written
    /// is let out once it is [`LINE_SHOWN`] long.
    fn read(&mut self, p: &Path, most: u64) -> (Vec<Entry>, u64) {
        let Ok(mut f) = jarvis_model::untrusted::open_read(p, None) else {
            return (Vec::new(), 0);
        };
        let Ok(meta) = f.metadata() else {
            return (Vec::new(), 0);
        };
        let (ino, len) = (meta.ino(), meta.len());
        let entry = self
            .open
            .entry(p.to_path_buf())
            .or_insert((ino, 0, String::new()));
        if entry.0 != ino || len < entry.1 {
            *entry = (ino, 0, String::new());
        }
        let start = entry.1;
        if f.seek(SeekFrom::Start(start)).is_err() {
            return (Vec::new(), 0);
        }
        let mut buf = Vec::new();
        if f.take(most).read_to_end(&mut buf).is_err() {
            return (Vec::new(), 0);
        }
        let read = buf.len() as u64;
        entry.1 = start + read;
        let mut text = std::mem::take(&mut entry.2);
        text.push_str(&String::from_utf8_lossy(&buf));
        let mut complete = text.rfind('\n').map_or(0, |i| i + 1);
        if text.len() - complete > LINE_SHOWN {
            text.push('\n');
            complete = text.len();
        }
        entry.2 = text[complete..].to_string();
        let source = source_name(p);
        let last = self.last_t.entry(p.to_path_buf()).or_default();
        let lines = text[..complete]
            .lines()
            .map(|l| {
                let t = line_time(l).or(*last);
                *last = t;
                Entry {
                    t,
                    source: source.clone(),
                    text: l.to_string(),
                }
            })
            .collect();
        (lines, read)
    }
}

fn source_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Each line's time: its own stamp, else the one of the line before it (a
/// traceback belongs to its error line), else of the line after it, else
/// `changed` (the file's last change): a line without a stamp stays with
/// its neighbours, never first.
fn line_times(lines: &[String], changed: Option<f64>) -> Vec<Option<f64>> {
    let mut times: Vec<Option<f64>> = lines.iter().map(|l| line_time(l)).collect();
    let mut last = None;
    for t in times.iter_mut() {
        *t = t.or(last);
        last = *t;
    }
    let mut next = changed;
    for t in times.iter_mut().rev() {
        *t = t.or(next);
        next = *t;
    }
    times
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_journalctls_times_and_names_a_bad_one() {
        let now = 1_800_000_000.0;
        assert_eq!(parse_since("-1h", now).unwrap(), now - 3600.0);
        assert_eq!(parse_since("5 min ago", now).unwrap(), now - 300.0);
        assert!(parse_since("-30min", now).is_ok() && parse_since("-2d", now).is_ok());
        assert!(parse_since("yesterday", now).is_ok());
        assert!(parse_since("2026-12-01 05:28", now).is_ok());
        let e = parse_since("5 parsecs ago", now).unwrap_err();
        assert_eq!(e.exit_code(), exit::USAGE);
        let e = e.to_string();
        assert!(
            e.contains("\"5 parsecs ago\" is not a time") && e.contains("5 min ago"),
            "{e}"
        );
    }

    #[test]
    fn lines_without_a_stamp_stay_beside_their_neighbours() {
        let lines: Vec<String> = [
            "standin: start pid=43",
            "2026-12-01 05:28:18,129 - x - ERROR - [buy_bot] Component crashed (attempt 1/100): boom",
            "Traceback (most recent call last):",
            "2026-12-01 05:28:19,000 - x - INFO - next",
        ]
        .map(String::from)
        .to_vec();
        let t0 = line_time(&lines[1]);
        let t1 = line_time(&lines[3]);
        assert_eq!(line_times(&lines, Some(9e9)), [t0, t0, t0, t1]);
        // No stamp anywhere: the file's last change, so they come last.
        let plain: Vec<String> = vec!["flood=1".into(), "flood=2".into()];
        assert_eq!(line_times(&plain, Some(9e9)), [Some(9e9), Some(9e9)]);
    }

    #[test]
    fn the_newest_lines_of_a_big_file_are_shown_in_file_order() {
        let d = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..30_000 {
            text += &format!("2026-12-01 05:00:00,000 - x - INFO - line {i}\n");
        }
        text += "a line without a stamp\n";
        std::fs::write(d.path().join("supervisor.log"), &text).unwrap();
        let mut f = Files::new(Some(d.path()), None, true);
        let w = crate::recent::Window {
            since: None,
            entries: 3,
            bytes: TAIL,
        };
        let got: Vec<String> = f.history(&w).0.into_iter().map(|e| e.text).collect();
        assert_eq!(
            got,
            [
                "2026-12-01 05:00:00,000 - x - INFO - line 29998",
                "2026-12-01 05:00:00,000 - x - INFO - line 29999",
                "a line without a stamp"
            ]
        );
    }

    #[test]
    fn many_and_sparse_files_are_read_within_one_budget_that_says_what_it_left() {
        let d = tempfile::tempdir().unwrap();
        let lines: String = (0..2000)
            .map(|i| format!("line {i} of a busy log file\n"))
            .collect();
        let t0 = std::time::SystemTime::now() - Duration::from_secs(3600);
        for i in 0..40 {
            let p = d.path().join(format!("f{i:02}.log"));
            std::fs::write(&p, &lines).unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(t0 + Duration::from_secs(i)).unwrap();
        }
        // A sparse file of 1 GiB, the newest: no newline in it at all.
        let sparse = std::fs::File::create(d.path().join("sparse.log")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        let mut f = Files::new(Some(d.path()), None, true);
        f.budget = Budget {
            files: 32,
            bytes: 256 * 1024,
            lines: 1000,
        };
        let w = crate::recent::Window {
            since: None,
            entries: COMPONENT_SCAN,
            bytes: TAIL,
        };
        let (got, spent) = f.history(&w);
        assert!(spent.bytes_read <= 256 * 1024, "{spent:?}");
        assert!(spent.lines_read <= 1000 && got.len() <= 1000, "{spent:?}");
        assert_eq!(spent.files_read + spent.files_skipped, 41, "{spent:?}");
        assert_eq!(spent.files_skipped, 9, "{spent:?}");
        assert!(spent.files_cut >= 31, "{spent:?}");
        // The newest files are the ones read; the sparse one cost its share.
        let sources: std::collections::BTreeSet<&str> = got.iter().map(|e| e.source.as_str()).collect();
        assert!(
            sources.contains("f39.log") && !sources.contains("f00.log"),
            "{sources:?}"
        );
        assert!(spent
            .describe()
            .contains("9 file(s) of the logs directory not read"));
        // Asked for 3 lines of the 2 newest: the sparse one is cut at half
        // the bytes (it has no line at all), the other gives its 3 lines.
        let mut f = Files::new(Some(d.path()), None, true);
        f.budget.files = 2;
        let w = crate::recent::Window { entries: 3, ..w };
        let (got, spent) = f.history(&w);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.iter().all(|e| e.source == "f39.log"), "{got:?}");
        assert_eq!((spent.files_cut, spent.files_skipped), (1, 39), "{spent:?}");
        assert!(spent.bytes_read <= FILES_BUDGET.bytes, "{spent:?}");
    }

    #[test]
    fn a_component_keeps_its_lines_and_their_tracebacks() {
        let e = |s: &str, t: &str| Entry {
            t: None,
            source: s.into(),
            text: t.into(),
        };
        let all = vec![
            e(
                "supervisor.log",
                "2026-12-01 05:28:18,129 - x - ERROR - [buy_bot] Component crashed (attempt 1/100): boom",
            ),
            e("supervisor.log", "Traceback (most recent call last):"),
            e("supervisor.log", "2026-12-01 05:28:19,000 - x - INFO - other"),
            e("supervisor.log", "  buy_bot: restarting (restarts: 1)"),
            e("supervisor.log", "  telegram_bot: running"),
        ];
        let got: Vec<String> = of_component(all, "buy_bot").into_iter().map(|e| e.text).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[1].starts_with("Traceback"));
        assert!(got[2].contains("buy_bot: restarting"));
    }

    #[test]
    fn files_are_followed_across_a_rotation_without_loss() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("supervisor.log");
        std::fs::write(&log, "one\n").unwrap();
        let mut f = Files::new(Some(d.path()), None, true);
        let w = crate::recent::Window {
            since: None,
            entries: 50,
            bytes: TAIL,
        };
        assert_eq!(f.history(&w).0.len(), 1);
        std::fs::write(&log, "one\ntwo\npart").unwrap();
        let got: Vec<String> = f.poll().into_iter().map(|e| e.text).collect();
        assert_eq!(got, ["two"]);
        // Rotated: a new file under the same name.
        std::fs::rename(&log, d.path().join("supervisor.log.1")).unwrap();
        std::fs::write(&log, "three\n").unwrap();
        let got: Vec<String> = f.poll().into_iter().map(|e| e.text).collect();
        assert_eq!(got, ["three"]);
    }
}
