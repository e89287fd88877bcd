//! The bot's recent output, read once per status and shared: the unit's
//! journal under systemd, `jarvisctl run`'s capture of it otherwise. The
//! error lines look through the newest of the last 24 h, the components
//! through those of the last hour; one read whose bounds hold both serves
//! them, so a busy bot's journal is not read twice.

use std::cell::OnceCell;
use std::path::Path;

use crate::components::{line_time, Line};
use crate::recent::Window;
use jarvis_engine::logsink::OUTPUT_FILE;
use jarvis_model::paths::{Paths, UNIT};
use jarvis_model::unit::Unit;

/// The error lines: the newest lines of the last 24 h, at most this many.
const ERRORS_S: f64 = 86_400.0;
const ERRORS_ENTRIES: usize = 2_000;
/// The components: the newest lines of the last hour, at most this many.
/// A record comes every minute, so it is found at up to 80 lines a second.
const COMPONENTS_S: f64 = 3600.0;
const COMPONENTS_ENTRIES: usize = 5_000;
/// What the one read takes at most, whatever the bot's log volume.
const BYTES: u64 = 2 * 1024 * 1024;

/// The output of one status, read when first asked for.
pub(super) struct Output<'a> {
    paths: &'a Paths,
    unit: &'a Unit,
    fallback: bool,
    /// Oldest first; Err says why the capture file could not be read.
    read: OnceCell<(f64, Result<Vec<Line>, String>)>,
}

impl<'a> Output<'a> {
    pub fn new(paths: &'a Paths, unit: &'a Unit, fallback: bool) -> Self {
        Output {
            paths,
            unit,
            fallback,
            read: OnceCell::new(),
        }
    }

    /// "journal" or "output": where the lines come from.
    pub fn source(&self) -> &'static str {
        if self.fallback {
            "output"
        } else {
            "journal"
        }
    }

    fn lines(&self) -> &(f64, Result<Vec<Line>, String>) {
        self.read.get_or_init(|| {
            let now = jarvis_model::state::now_unix();
            let window = Window {
                since: Some(now - ERRORS_S),
                entries: ERRORS_ENTRIES.max(COMPONENTS_ENTRIES),
                bytes: BYTES,
            };
            let lines = if self.fallback {
                capture(self.paths, self.unit, &window)
            } else {
                Ok(journal(&window))
            };
            (now, lines)
        })
    }

    /// The newest lines for the error lines; Err: the capture file could
    /// not be read (a link or a FIFO there is the service user's doing).
    pub fn for_errors(&self) -> Result<&[Line], &str> {
        match &self.lines().1 {
            Ok(lines) => Ok(&lines[lines.len().saturating_sub(ERRORS_ENTRIES)..]),
            Err(e) => Err(e),
        }
    }

    /// The newest lines of the last hour, for the components' records.
    pub fn for_components(&self) -> Vec<Line> {
        let (now, Ok(lines)) = self.lines() else {
            return Vec::new();
        };
        let since = now - COMPONENTS_S;
        let mut out: Vec<Line> = if self.fallback {
            lines[stamped_from(lines, since)..].iter().map(copy).collect()
        } else {
            // journalctl --since: each entry by its own time.
            lines
                .iter()
                .filter(|l| l.unix.is_none_or(|t| t >= since.floor()))
                .map(copy)
                .collect()
        };
        out.drain(..out.len().saturating_sub(COMPONENTS_ENTRIES));
        out
    }
}

fn copy(l: &Line) -> Line {
    Line {
        unix: l.unix,
        text: l.text.clone(),
    }
}

/// Where the lines from `since` on start, judged as `recent::file` judges
/// them: after the newest stamped line older than `since`, and after the
/// lines without a stamp that continue it (a traceback goes with its line).
fn stamped_from(lines: &[Line], since: f64) -> usize {
    lines
        .iter()
        .rposition(|l| l.unix.is_some_and(|t| t < since))
        .map_or(0, |i| {
            lines[i + 1..]
                .iter()
                .position(|l| l.unix.is_some())
                .map_or(lines.len(), |j| i + 1 + j)
        })
}

/// The newest entries of the unit's journal in `window`, oldest first.
fn journal(window: &Window) -> Vec<Line> {
    crate::recent::journal(UNIT, window)
        .into_iter()
        .map(|e| Line {
            unix: e.unix,
            text: e.text,
        })
        .collect()
}

/// The newest lines of `jarvisctl run`'s capture of the bot's output in
/// `window`, from a file opened as root in the service user's directory
/// (no link followed: it could be a root-only file's; no FIFO). Each
/// line's time is the program's own timestamp, where it has one. No file
/// yet: no lines.
fn capture(paths: &Paths, unit: &Unit, window: &Window) -> Result<Vec<Line>, String> {
    let Some(dir) = super::logs_dir::of_unit(paths, unit).dir else {
        return Ok(Vec::new());
    };
    let file = paths.host(Path::new(&dir)).join(OUTPUT_FILE);
    match crate::recent::file(&file, window) {
        Ok(tail) => Ok(tail
            .lines
            .into_iter()
            .map(|l| Line {
                unix: line_time(&l),
                text: l,
            })
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(unix: Option<f64>, text: &str) -> Line {
        Line {
            unix,
            text: text.into(),
        }
    }

    #[test]
    fn the_last_hour_starts_after_an_older_line_and_its_traceback() {
        let lines = [
            line(Some(100.0), "old error"),
            line(None, "Traceback (most recent call last):"),
            line(None, "RuntimeError: old"),
            line(Some(200.0), "new"),
            line(None, "  its continuation"),
        ];
        assert_eq!(stamped_from(&lines, 150.0), 3);
        assert_eq!(stamped_from(&lines, 50.0), 0);
        assert_eq!(stamped_from(&lines, 300.0), lines.len());
    }
}
