//! `jarvisctl logs [-f] [-n N] [--since TIME] [--component NAME]`: the
//! bot's output (the journal under systemd, `jarvisctl run`'s capture
//! otherwise) and the program's own `logs/*.log`, in time order, one
//! command on both engines, with every `.env` value masked as in `status`.
//!
//! The history is the newest lines, read from the end of each source
//! through `recent` (the journal newest first, each file backwards), so it
//! costs the same for a quiet bot and a busy one.
//!
//! Runs as root in the service user's directory: every file is opened
//! through `untrusted` (no link followed, no FIFO), and no line is shown
//! unless `.env` could be read to mask it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde::Serialize;

use crate::cli::LogsArgs;
use crate::components::line_time;
use crate::engine::logsink::OUTPUT_FILE;
use crate::error::{exit, Error, Result};
use crate::paths::{Paths, UNIT};
use crate::secrets;
use crate::unit::Unit;
use jarvis_supervisor::masking::Masker;

/// How much of each source the history reads back at most.
const TAIL: u64 = 8 * 1024 * 1024;
/// How many of the newest lines `--component` looks through for its own.
const COMPONENT_SCAN: usize = 50_000;
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Serialize)]
struct Entry {
    /// Unix time: the journal's, else the line's own stamp, else the one
    /// of the line before it (a traceback belongs to its error line), else
    /// of the line after it, else the file's last change.
    t: Option<f64>,
    source: String,
    text: String,
}

pub fn run(paths: &Paths, args: &LogsArgs) -> Result<i32> {
    let unit = Unit::load(paths)?;
    let secrets = secrets::masker(paths, &unit).ok_or_else(|| {
        Error::new("cannot read .env to mask its values, so no line is shown")
            .with_note("run it as root: sudo jarvisctl logs")
    })?;
    let since = args
        .since
        .as_deref()
        .map(|v| parse_since(v, crate::engine::state::now_unix()))
        .transpose()?;
    let dir = super::status::logs_dir(&unit).map(|d| paths.host(&d));
    let journal = crate::systemd::running() && paths.is_system();
    let show = |e: &Entry| print(e, &secrets, args.json);

    let mut files = Files::new(dir.as_deref(), !journal);
    // The newest lines of each source: as many as are shown, or, to pick
    // one component's lines, a bounded number to look through.
    let window = crate::recent::Window {
        since,
        entries: if args.component.is_some() {
            COMPONENT_SCAN
        } else {
            args.lines
        },
        bytes: TAIL,
    };
    let mut all: Vec<Entry> = Vec::new();
    if journal {
        all.extend(journal_history(&window));
    }
    all.extend(files.history(&window));
    let mut all: Vec<Entry> = all
        .into_iter()
        .filter(|e| since.is_none_or(|s| e.t.is_none_or(|t| t >= s)))
        .collect();
    if let Some(c) = &args.component {
        all = of_component(all, c);
    }
    // Stable: lines of one file keep their order where times tie; a line
    // with no time at all is among the newest, never hidden at the start.
    all.sort_by(|a, b| {
        let t = |e: &Entry| e.t.unwrap_or(f64::INFINITY);
        t(a).total_cmp(&t(b))
    });
    let skip = all.len().saturating_sub(args.lines);
    for e in &all[skip..] {
        show(e);
    }
    if !args.follow {
        return Ok(exit::OK);
    }
    let (tx, rx) = mpsc::channel::<Entry>();
    if journal {
        let tx = tx.clone();
        std::thread::spawn(move || journal_follow(&tx));
    }
    let mut filter = args.component.as_deref().map(Component::new);
    loop {
        let mut batch: Vec<Entry> = rx.try_iter().collect();
        batch.extend(files.poll());
        for e in batch {
            if filter.as_mut().is_none_or(|f| f.keeps(&e)) {
                show(&e);
            }
        }
        std::thread::sleep(POLL);
    }
}

fn print(e: &Entry, secrets: &Masker, json: bool) {
    let text = crate::output::printable(&secrets.mask(&e.text));
    if json {
        let e = Entry { text, ..e.clone() };
        println!("{}", serde_json::to_string(&e).unwrap_or_default());
        return;
    }
    let when =
        e.t.and_then(|t| chrono::DateTime::from_timestamp_millis((t * 1000.0) as i64))
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_else(|| "-".repeat(19));
    println!("{when} {}: {text}", e.source);
}

/// `--since` as journalctl takes it ("5 min ago", "-1h", "yesterday",
/// "2026-12-07 10:00"), the same on both engines: as unix time.
fn parse_since(v: &str, now: f64) -> Result<f64> {
    crate::timespan::point(v, now).map_err(|why| {
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

fn journal_history(window: &crate::recent::Window) -> Vec<Entry> {
    crate::recent::journal(UNIT, window)
        .into_iter()
        .map(from_journal)
        .collect()
}

fn journal_follow(tx: &mpsc::Sender<Entry>) {
    let Ok(mut child) = crate::systemd::journal_command(UNIT, &["-f", "-n", "0"])
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
    capture: bool,
    /// The last time seen per file, for lines without one.
    last_t: BTreeMap<PathBuf, Option<f64>>,
}

impl Files {
    fn new(dir: Option<&Path>, capture: bool) -> Files {
        Files {
            open: BTreeMap::new(),
            dir: dir.map(Path::to_path_buf),
            capture,
            last_t: BTreeMap::new(),
        }
    }

    fn paths(&self) -> Vec<PathBuf> {
        let Some(dir) = &self.dir else { return Vec::new() };
        let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.extension().is_some_and(|x| x == "log")
                            || (self.capture && p.file_name().is_some_and(|n| n == OUTPUT_FILE))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// The newest lines of each file in `window`, read from its end; the
    /// files are then followed from there.
    fn history(&mut self, window: &crate::recent::Window) -> Vec<Entry> {
        let mut out = Vec::new();
        for p in self.paths() {
            let Ok(tail) = crate::recent::file(&p, window) else {
                continue;
            };
            self.open.insert(p.clone(), (tail.ino, tail.end, String::new()));
            let changed = std::fs::symlink_metadata(&p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64());
            let times = line_times(&tail.lines, changed);
            self.last_t.insert(p.clone(), times.last().copied().flatten());
            let source = source_name(&p);
            out.extend(tail.lines.into_iter().zip(times).map(|(text, t)| Entry {
                t,
                source: source.clone(),
                text,
            }));
        }
        out
    }

    fn poll(&mut self) -> Vec<Entry> {
        let mut out = Vec::new();
        for p in self.paths() {
            out.extend(self.read(&p));
        }
        out
    }

    /// New complete lines of `p` since the last read; a file replaced
    /// (rotated) or cut short is read again from its start.
    fn read(&mut self, p: &Path) -> Vec<Entry> {
        let Ok(mut f) = crate::untrusted::open_read(p, None) else {
            return Vec::new();
        };
        let Ok(meta) = f.metadata() else { return Vec::new() };
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
            return Vec::new();
        }
        let mut buf = Vec::new();
        if f.take(TAIL).read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        entry.1 = start + buf.len() as u64;
        let mut text = std::mem::take(&mut entry.2);
        text.push_str(&String::from_utf8_lossy(&buf));
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        entry.2 = text[complete..].to_string();
        let source = source_name(p);
        let last = self.last_t.entry(p.to_path_buf()).or_default();
        text[..complete]
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
            .collect()
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
        let mut f = Files::new(Some(d.path()), false);
        let w = crate::recent::Window {
            since: None,
            entries: 3,
            bytes: TAIL,
        };
        let got: Vec<String> = f.history(&w).into_iter().map(|e| e.text).collect();
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
        let mut f = Files::new(Some(d.path()), false);
        let w = crate::recent::Window {
            since: None,
            entries: 50,
            bytes: TAIL,
        };
        assert_eq!(f.history(&w).len(), 1);
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
