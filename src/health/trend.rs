//! `status --trend`: memory and restarts over the last 24 h and 7 days,
//! each window from its own samples, drawn as a small text plot; a slope
//! and its extrapolation to MemoryMax only when the window holds enough
//! history (`samples::WINDOWS`), else a sentence that says what is missing.

use std::path::Path;

use serde::Serialize;

use super::render::{human_bytes, human_secs};
use crate::samples::{self, Series, Window};
use jarvis_model::error::Result;
use jarvis_model::paths::Paths;

/// Columns of the plot: one terminal line of 80 with its labels.
pub const COLUMNS: usize = 60;
/// Rows of the memory plot; each holds 8 steps (the block elements).
const ROWS: usize = 4;

#[derive(Debug, Serialize)]
struct WindowReport {
    #[serde(flatten)]
    window: Window,
    #[serde(flatten)]
    series: Series,
    /// Hours until MemoryMax at this window's slope, when it grows.
    reaches_max_in_hours: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Trend {
    samples: usize,
    slope_24h_mib_per_hour: Option<f64>,
    slope_7d_mib_per_hour: Option<f64>,
    current_bytes: Option<u64>,
    max_bytes: Option<u64>,
    /// Hours until MemoryMax at the 24 h slope, when it grows.
    reaches_max_in_hours: Option<f64>,
    /// True when that is within 7 days.
    flagged: bool,
    /// Each window: its samples, its minimum, its slope and its plot data.
    windows: Vec<WindowReport>,
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn reaches(slope: Option<f64>, current: Option<u64>, max: Option<u64>) -> Option<f64> {
    match (slope, current, max) {
        (Some(slope), Some(cur), Some(max)) if slope > 0.0 => Some(round1(
            max.saturating_sub(cur) as f64 / (1u64 << 20) as f64 / slope,
        )),
        _ => None,
    }
}

/// Exit 0 when memory is stable, 1 when it would reach MemoryMax within 7
/// days, 3 when the last 24 h hold too few samples to tell.
pub fn run(paths: &Paths, history: &Path, json: bool) -> Result<i32> {
    let all = samples::read(history);
    let now = super::now_s();
    let st = super::collect(paths);
    let current = st
        .memory
        .current_bytes
        .or_else(|| all.iter().rev().find_map(|s| s.rss));
    let max = st.memory.max_bytes;
    let windows: Vec<WindowReport> = samples::WINDOWS
        .iter()
        .map(|w| {
            let series = samples::series(&all, now, w, COLUMNS);
            let reaches_max_in_hours = reaches(series.slope_mib_per_hour, current, max);
            WindowReport {
                window: *w,
                series,
                reaches_max_in_hours,
            }
        })
        .collect();
    let slope = |i: usize| windows[i].series.slope_mib_per_hour.map(round1);
    let reaches_24h = windows[0].reaches_max_in_hours;
    let flagged = reaches_24h.is_some_and(|h| h <= 7.0 * 24.0);
    let code = if !windows[0].series.enough {
        3
    } else if flagged {
        1
    } else {
        0
    };
    let t = Trend {
        samples: all.len(),
        slope_24h_mib_per_hour: slope(0),
        slope_7d_mib_per_hour: slope(1),
        current_bytes: current,
        max_bytes: max,
        reaches_max_in_hours: reaches_24h,
        flagged,
        windows,
    };
    if json {
        println!("{}", serde_json::to_string(&t).unwrap_or_default());
        return Ok(code);
    }
    println!(
        "memory and restarts from {} samples in {} (the health timer adds one every 5 min)",
        t.samples,
        history.display()
    );
    for w in &t.windows {
        println!();
        for line in window_lines(w, max) {
            println!("{line}");
        }
    }
    if flagged {
        println!();
        println!(
            "WARNING: at the last 24 h's rate memory reaches MemoryMax in {:.1} hours",
            reaches_24h.unwrap_or(0.0)
        );
    }
    Ok(code)
}

fn window_lines(w: &WindowReport, max: Option<u64>) -> Vec<String> {
    let s = &w.series;
    let title = match w.window.name {
        "24h" => "last 24 h",
        "7d" => "last 7 days",
        other => other,
    };
    let mut out = vec![format!(
        "{title} (one column per {}, oldest left):",
        human_secs(s.column_s as f64)
    )];
    // The scale: 0 to MemoryMax when known (memory against its limit);
    // else the lowest to the highest sample, so that a change shows.
    let peak = s.memory_bytes.iter().flatten().copied().max();
    let low = s.memory_bytes.iter().flatten().copied().min();
    let (bottom, top) = match max {
        Some(m) => (0, m),
        None => (low.unwrap_or(0), peak.unwrap_or(0)),
    };
    let values: Vec<Option<f64>> = s
        .memory_bytes
        .iter()
        .map(|m| {
            m.map(|m| match top.checked_sub(bottom) {
                Some(range) if range > 0 => m.saturating_sub(bottom) as f64 / range as f64,
                _ => 0.5,
            })
        })
        .collect();
    let label_top = match max {
        Some(m) => format!("{} max", human_bytes(m)),
        None => human_bytes(top),
    };
    let label_bottom = if max.is_some() || low.is_none() {
        "0".to_string()
    } else {
        human_bytes(bottom)
    };
    let rows = plot(&values, ROWS);
    for (i, row) in rows.iter().enumerate() {
        let label = match i {
            0 => label_top.clone(),
            _ if i == rows.len() - 1 => label_bottom.clone(),
            _ => String::new(),
        };
        let name = if i == 0 { "memory" } else { "" };
        out.push(format!("  {name:<8} {label:>13} |{row}|"));
    }
    out.push(format!(
        "  {:<8} {:>13} |{}|",
        "restarts",
        "",
        restart_row(&s.restarts)
    ));
    let peak_text = peak.map_or("none sampled".into(), human_bytes);
    let restarts: u64 = s.restarts.iter().sum();
    out.push(format!("  peak memory {peak_text}; {restarts} restart(s)"));
    out.push(format!("  {}", verdict_line(w)));
    out
}

/// The slope and its extrapolation, or why there is none.
fn verdict_line(w: &WindowReport) -> String {
    let s = &w.series;
    if !s.enough {
        return format!(
            "too few samples to extrapolate ({} samples over {}; need at least {} over {})",
            s.samples,
            human_secs(s.span_s as f64),
            w.window.min_samples,
            human_secs(w.window.min_span_s as f64)
        );
    }
    let slope = s.slope_mib_per_hour.unwrap_or(0.0);
    let base = format!(
        "{slope:+.1} MiB/hour from {} samples over {}",
        s.samples,
        human_secs(s.span_s as f64)
    );
    match w.reaches_max_in_hours {
        Some(h) if h < 48.0 => format!("{base}; reaches MemoryMax in {h:.1} hours at this rate"),
        Some(h) => format!("{base}; reaches MemoryMax in {:.1} days at this rate", h / 24.0),
        None if slope > 0.0 => format!("{base}; no MemoryMax to reach"),
        None => format!("{base}; memory is not growing"),
    }
}

/// Values from 0 to 1 (None: no sample) as `rows` lines of block
/// elements, top line first; each cell holds 8 steps.
fn plot(values: &[Option<f64>], rows: usize) -> Vec<String> {
    const STEPS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    (0..rows)
        .map(|r| {
            let floor = (rows - 1 - r) * 8;
            values
                .iter()
                .map(|v| match v {
                    None => {
                        if r == rows - 1 {
                            '·'
                        } else {
                            ' '
                        }
                    }
                    Some(v) => {
                        // At least the lowest step for any sample at all.
                        let level = ((v.clamp(0.0, 1.0) * (rows * 8) as f64).round() as usize).max(1);
                        STEPS[level.saturating_sub(floor).min(8)]
                    }
                })
                .collect()
        })
        .collect()
}

/// One character per column: blank for none, the count up to 9, `+` above.
fn restart_row(counts: &[u64]) -> String {
    counts
        .iter()
        .map(|&n| match n {
            0 => ' ',
            1..=9 => char::from(b'0' + n as u8),
            _ => '+',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{Sample, WINDOWS};

    #[test]
    fn the_plot_fills_from_the_bottom_and_marks_gaps() {
        let rows = plot(&[Some(0.0), Some(0.5), Some(1.0), None, Some(0.25)], 4);
        assert_eq!(rows, ["  █  ", "  █  ", " ██  ", "▁██·█"]);
        assert_eq!(restart_row(&[0, 1, 9, 10]), " 19+");
    }

    fn report(samples: &[Sample], now: u64, w: usize, max: Option<u64>) -> WindowReport {
        let series = samples::series(samples, now, &WINDOWS[w], COLUMNS);
        let reaches_max_in_hours = reaches(series.slope_mib_per_hour, Some(0), max);
        WindowReport {
            window: WINDOWS[w],
            series,
            reaches_max_in_hours,
        }
    }

    #[test]
    fn too_few_samples_are_named_with_the_minimum() {
        let now = 1_000_000;
        let s: Vec<Sample> = (0..18)
            .map(|i| Sample {
                t: now - 85 + i * 5,
                rss: Some((100 + i) << 20),
                restarts: Some(0),
                state: "active".into(),
            })
            .collect();
        let lines = window_lines(&report(&s, now, 0, Some(1 << 30)), Some(1 << 30));
        let text = lines.join("\n");
        assert!(
            text.contains(
                "too few samples to extrapolate (18 samples over 85 s; need at least 12 over 60 min)"
            ),
            "{text}"
        );
        assert!(!text.contains("MiB/hour"), "{text}");
        let week = window_lines(&report(&s, now, 1, Some(1 << 30)), Some(1 << 30)).join("\n");
        assert!(week.contains("need at least 12 over 24 h 0 min"), "{week}");
        // The plot: 4 rows and the restarts, each 60 columns between bars.
        let plotted: Vec<&String> = lines.iter().filter(|l| l.ends_with('|')).collect();
        assert_eq!(plotted.len(), 5, "{text}");
        for l in plotted {
            let inner = l.split('|').nth(1).unwrap();
            assert_eq!(inner.chars().count(), COLUMNS, "{l}");
        }
    }

    #[test]
    fn a_day_of_growth_is_extrapolated_to_memory_max() {
        let now = 10 * 86_400;
        // 12 MiB an hour for a day, one sample every 5 min.
        let s: Vec<Sample> = (0..=288)
            .map(|i| Sample {
                t: now - 86_400 + i * 300,
                rss: Some((100 + i) << 20),
                restarts: Some(0),
                state: "active".into(),
            })
            .collect();
        // From 0 bytes to 1 GiB at 12 MiB/h: 85.3 h.
        let text = window_lines(&report(&s, now, 0, Some(1 << 30)), Some(1 << 30)).join("\n");
        assert!(
            text.contains("+12.0 MiB/hour from 289 samples over 24 h 0 min; reaches MemoryMax in 3.6 days"),
            "{text}"
        );
        let top = text.lines().find(|l| l.contains("memory")).unwrap();
        assert!(top.contains("1.0 GiB max"), "{text}");
    }
}
