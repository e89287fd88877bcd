//! The memory history: one sample per run of `jarvisctl status --record`
//! (the shipped `jarvis-supervisor-health.timer`, every 5 minutes), kept as
//! JSON lines in a file capped at `MAX_BYTES`, and the trend read from it.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use jarvis_model::error::{Error, Result};

pub const PATH: &str = "/var/lib/jarvis-supervisor/samples.jsonl";
/// Past this size the oldest half is dropped. A sample is about 64 bytes:
/// about 32,000 samples, or 110 days at one every 5 minutes.
pub const MAX_BYTES: u64 = 2 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Seconds since the epoch.
    pub t: u64,
    /// Resident memory of the service's processes, bytes.
    pub rss: Option<u64>,
    pub restarts: Option<u64>,
    pub state: String,
}

pub fn append(path: &Path, s: &Sample) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    }
    let line =
        serde_json::to_string(s).map_err(|e| Error::new(format!("cannot encode a sample: {e}")))? + "\n";
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size + line.len() as u64 > MAX_BYTES {
        // Keep the newest samples that fill half the cap, written
        // atomically (tempfile, then rename). Read as bytes: one damaged
        // line (invalid UTF-8, a torn write) costs that line, not the file.
        let bytes = std::fs::read(path).unwrap_or_default();
        let good: Vec<&[u8]> = sample_lines(&bytes).collect();
        let mut size = 0u64;
        let from = good
            .iter()
            .rposition(|l| {
                size += l.len() as u64 + 1;
                size > MAX_BYTES / 2
            })
            .map_or(0, |i| i + 1);
        let keep: Vec<String> = good[from..]
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("create a file in", dir, e))?;
        for l in keep {
            writeln!(tmp, "{l}").map_err(|e| Error::io("write", tmp.path(), e))?;
        }
        tmp.write_all(line.as_bytes())
            .map_err(|e| Error::io("write", tmp.path(), e))?;
        tmp.persist(path)
            .map_err(|e| Error::io("replace", path, e.error))?;
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let len = f.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    // A line left torn (by a crash, or a version before this one) ends
    // where the next one would begin: end it first, or both are lost.
    let mut last = [b'\n'];
    if len > 0 {
        use std::os::unix::fs::FileExt;
        f.read_exact_at(&mut last, len - 1)
            .map_err(|e| Error::io("read", path, e))?;
    }
    let line = if last[0] == b'\n' {
        line
    } else {
        format!("\n{line}")
    };
    append_whole(&mut f, len, line.as_bytes()).map_err(|e| Error::io("append to", path, e))
}

/// A file that can be cut back to a length.
trait Truncate: Write {
    fn truncate(&mut self, len: u64) -> std::io::Result<()>;
}

impl Truncate for std::fs::File {
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
}

/// Appends `line` whole to `f` (of `len` bytes), or leaves it at `len`: a
/// write that a full disk cuts part way (a short write, then ENOSPC) is
/// taken back, which needs no space (issue 27: the history of a full
/// /var/lib ended in a torn `{"t"`).
fn append_whole(f: &mut impl Truncate, len: u64, line: &[u8]) -> std::io::Result<()> {
    f.write_all(line).inspect_err(|_| {
        let _ = f.truncate(len);
    })
}

/// The lines of `bytes` that are samples; damaged ones are skipped.
fn sample_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| serde_json::from_slice::<Sample>(l).is_ok())
}

pub fn read(path: &Path) -> Vec<Sample> {
    let bytes = std::fs::read(path).unwrap_or_default();
    sample_lines(&bytes)
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// Least-squares slope of RSS over time in MiB per hour, over the samples
/// of the last `window` seconds before `now` (at least 3 samples).
pub fn slope_mib_per_hour(samples: &[Sample], now: u64, window: u64) -> Option<f64> {
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.t + window >= now)
        .filter_map(|s| {
            s.rss
                .map(|r| (s.t as f64 / 3600.0, r as f64 / (1u64 << 20) as f64))
        })
        .collect();
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some(sxy / sxx)
}

/// A window of the trend, and the least history it needs before its slope
/// is extrapolated: a slope fitted over a few minutes says nothing about a
/// day (one over 85 s once read "reaches MemoryMax in 98.7 days").
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window {
    pub name: &'static str,
    pub seconds: u64,
    /// At least this many samples with memory...
    pub min_samples: usize,
    /// ...spread over at least this many seconds.
    pub min_span_s: u64,
}

/// The 24 h window needs 12 samples over an hour (an hour of the health
/// timer); the 7-day window, 12 over a day, so that it never repeats the
/// 24 h figure from the same few samples.
pub const WINDOWS: [Window; 2] = [
    Window {
        name: "24h",
        seconds: 86_400,
        min_samples: 12,
        min_span_s: 3_600,
    },
    Window {
        name: "7d",
        seconds: 7 * 86_400,
        min_samples: 12,
        min_span_s: 86_400,
    },
];

/// One window's samples, in `columns` equal slices of time for a plot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Samples with memory in the window, and the time between the first
    /// and the last of them.
    pub samples: usize,
    pub span_s: u64,
    /// Whether they meet the window's minimum: only then is the slope given.
    pub enough: bool,
    pub slope_mib_per_hour: Option<f64>,
    pub column_s: u64,
    /// The highest memory sampled in each column, oldest first.
    pub memory_bytes: Vec<Option<u64>>,
    /// Restarts of the bot counted in each column (a counter that fell
    /// back was reset by a start by hand: its new value is counted).
    pub restarts: Vec<u64>,
}

/// The series of `window` ending at `now`, from `samples` (any order).
pub fn series(samples: &[Sample], now: u64, window: &Window, columns: usize) -> Series {
    let columns = columns.max(1);
    let from = now.saturating_sub(window.seconds);
    let column_s = window.seconds.div_ceil(columns as u64).max(1);
    let mut sorted: Vec<&Sample> = samples.iter().filter(|s| s.t <= now).collect();
    sorted.sort_by_key(|s| s.t);
    let mut memory_bytes = vec![None; columns];
    let mut restarts = vec![0u64; columns];
    let mut prev: Option<u64> = None;
    let mut times = Vec::new();
    for s in sorted {
        let in_window = s.t >= from;
        let col = (((s.t.saturating_sub(from)) / column_s) as usize).min(columns - 1);
        if let Some(r) = s.restarts {
            if in_window {
                if let Some(p) = prev {
                    restarts[col] += if r >= p { r - p } else { r };
                }
            }
            prev = Some(r);
        }
        if in_window {
            if let Some(rss) = s.rss {
                memory_bytes[col] = Some(memory_bytes[col].map_or(rss, |m: u64| m.max(rss)));
                times.push(s.t);
            }
        }
    }
    let span_s = match (times.first(), times.last()) {
        (Some(a), Some(b)) => b - a,
        _ => 0,
    };
    let enough = times.len() >= window.min_samples && span_s >= window.min_span_s;
    Series {
        samples: times.len(),
        span_s,
        enough,
        slope_mib_per_hour: if enough {
            slope_mib_per_hour(samples, now, window.seconds)
        } else {
            None
        },
        column_s,
        memory_bytes,
        restarts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: u64, mib: u64, restarts: u64) -> Sample {
        Sample {
            t,
            rss: Some(mib << 20),
            restarts: Some(restarts),
            state: "active".into(),
        }
    }

    /// 85 s of samples, as in the report: no slope for either window.
    /// A file on a disk with `room` bytes left.
    struct Disk {
        bytes: Vec<u8>,
        room: usize,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ENOSPC));
            }
            let n = buf.len().min(self.room);
            self.bytes.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Truncate for Disk {
        fn truncate(&mut self, len: u64) -> std::io::Result<()> {
            self.bytes.truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn a_sample_cut_by_a_full_disk_is_taken_back_whole() {
        let old = b"{\"t\":1,\"rss\":null,\"restarts\":null,\"state\":\"active\"}\n".to_vec();
        let line = b"{\"t\":2,\"rss\":null,\"restarts\":null,\"state\":\"active\"}\n";
        let mut disk = Disk {
            bytes: old.clone(),
            room: 4,
        };
        let e = append_whole(&mut disk, old.len() as u64, line).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(nix::libc::ENOSPC));
        assert_eq!(disk.bytes, old, "a torn sample was left");
        disk.room = 1000;
        append_whole(&mut disk, old.len() as u64, line).unwrap();
        assert_eq!(disk.bytes, [old.as_slice(), line].concat());
    }

    #[test]
    fn a_torn_last_line_is_ended_before_the_next_sample() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("samples.jsonl");
        std::fs::write(
            &p,
            "{\"t\":1,\"rss\":null,\"restarts\":null,\"state\":\"active\"}\n{\"t\"",
        )
        .unwrap();
        let s = Sample {
            t: 2,
            rss: None,
            restarts: None,
            state: "active".into(),
        };
        append(&p, &s).unwrap();
        assert_eq!(read(&p).iter().map(|s| s.t).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_few_minutes_of_samples_extrapolate_nothing() {
        let now = 1_000_000;
        let s: Vec<Sample> = (0..18).map(|i| sample(now - 85 + i * 5, 100 + i, 0)).collect();
        for w in &WINDOWS {
            let x = series(&s, now, w, 60);
            assert_eq!((x.samples, x.span_s, x.enough), (18, 85, false), "{}", w.name);
            assert_eq!(x.slope_mib_per_hour, None, "{}", w.name);
        }
    }

    /// Each window from its own samples: a leak of the last 2 days only
    /// shows flat over 24 h after a week of steady memory, and not the
    /// same figure in both windows.
    #[test]
    fn each_window_has_its_own_samples_and_slope() {
        let now: u64 = 10 * 86_400;
        // One sample every 5 min for 7 days: flat at 200 MiB for 6 days,
        // then 1 MiB more every 5 min (12 MiB an hour) for the last day.
        let start = now - 7 * 86_400;
        let s: Vec<Sample> = (0..=(7 * 288))
            .map(|i| {
                let t = start + i * 300;
                let grow = (t.saturating_sub(now - 86_400)) / 300;
                sample(t, 200 + grow, i / 500)
            })
            .collect();
        let day = series(&s, now, &WINDOWS[0], 60);
        let week = series(&s, now, &WINDOWS[1], 60);
        assert!(day.enough && week.enough);
        assert_eq!(day.samples, 289);
        assert_eq!(week.samples, 7 * 288 + 1);
        let d = day.slope_mib_per_hour.unwrap();
        let w = week.slope_mib_per_hour.unwrap();
        assert!((d - 12.0).abs() < 0.01, "{d}");
        assert!(
            w > 0.0 && w < d / 2.0,
            "the week's slope {w} is not the day's {d}"
        );
        // The plot's columns: 24 min each over a day; the last holds the peak.
        assert_eq!(day.column_s, 1440);
        assert_eq!(day.memory_bytes.len(), 60);
        assert_eq!(day.memory_bytes[59], Some((200 + 288) << 20));
        assert_eq!(day.memory_bytes[0], Some((200 + 4) << 20));
        // The counter went up by 1 every 500 samples: 4 times in the week.
        assert_eq!(week.restarts.iter().sum::<u64>(), 4);
    }

    #[test]
    fn a_reset_restart_counter_counts_its_new_value() {
        let now = 100_000;
        let s = vec![
            sample(now - 4000, 1, 5),
            sample(now - 3000, 1, 7),
            sample(now - 2000, 1, 0),
            sample(now - 1000, 1, 2),
        ];
        let x = series(&s, now, &WINDOWS[0], 60);
        assert_eq!(x.restarts.iter().sum::<u64>(), 4);
        // Outside the window: not counted, but the base for the first inside.
        let x = series(
            &s,
            now,
            &Window {
                seconds: 2500,
                ..WINDOWS[0]
            },
            10,
        );
        assert_eq!(x.restarts.iter().sum::<u64>(), 2);
    }

    #[test]
    fn slope_of_a_steady_leak() {
        let s: Vec<Sample> = (0..10)
            .map(|i| Sample {
                t: 1000 + i * 60,
                rss: Some((100 + i * 10) << 20),
                restarts: Some(0),
                state: "active".into(),
            })
            .collect();
        // 10 MiB a minute is 600 MiB an hour.
        let m = slope_mib_per_hour(&s, 1000 + 9 * 60, 86400).unwrap();
        assert!((m - 600.0).abs() < 1e-6, "{m}");
        assert_eq!(slope_mib_per_hour(&s[..2], 2000, 86400), None);
    }

    #[test]
    fn the_file_stays_under_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        let s = Sample {
            t: 1,
            rss: Some(1),
            restarts: Some(0),
            state: "active".into(),
        };
        for _ in 0..(MAX_BYTES / 40 + 100) {
            append(&p, &s).unwrap();
        }
        assert!(std::fs::metadata(&p).unwrap().len() <= MAX_BYTES);
        assert!(read(&p).len() > 1000);
    }

    /// Issue 13, finding 15: one invalid UTF-8 byte cost every sample
    /// ("0 samples"), and the trim then kept 1 line of 40,001.
    #[test]
    fn a_damaged_line_costs_that_line_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        let line = |t: u64| format!("{{\"t\":{t},\"rss\":1,\"restarts\":0,\"state\":\"active\"}}\n");
        let mut bytes: Vec<u8> = (0..40_000).flat_map(|t| line(t).into_bytes()).collect();
        bytes.extend_from_slice(b"{\"t\":1,\"state\":\"\xff\"}\n");
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(read(&p).len(), 40_000);
        // Past the cap: the newest samples that fill half of it are kept.
        let pad: Vec<u8> = (0..MAX_BYTES / 60)
            .flat_map(|t| line(100_000 + t).into_bytes())
            .collect();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(&pad)
            .unwrap();
        let s = Sample {
            t: 999_999,
            rss: Some(1),
            restarts: Some(0),
            state: "active".into(),
        };
        append(&p, &s).unwrap();
        let kept = read(&p);
        assert!(kept.len() > 10_000, "kept {} samples", kept.len());
        assert_eq!(kept.last().unwrap().t, 999_999);
        assert!(std::fs::metadata(&p).unwrap().len() <= MAX_BYTES);
    }
}
