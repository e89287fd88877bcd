//! The memory history: one sample per run of `jarvisctl status --record`
//! (the shipped `jarvis-supervisor-health.timer`, every 5 minutes), kept as
//! JSON lines in a file capped at `MAX_BYTES`, and the trend read from it.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    f.write_all(line.as_bytes())
        .map_err(|e| Error::io("append to", path, e))
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

#[cfg(test)]
mod tests {
    use super::*;

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
