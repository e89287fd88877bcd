//! The timing side of `cargo xtask bench --only masking` (issue 24,
//! acceptance 3), built in release mode: a `.env` of N values and M bytes
//! of `[cN] Component crashed` lines, each naming one of the values; every
//! line masked, as the old `status` did. Prints one JSON document of
//! seconds: the Masker at 1,250/2,500/5,000 values over 2 MiB and at
//! 0.5/1/2 MiB with 5,000 values (building the automaton included), and
//! the old per-call masking, the peer, timed on the first lines of the
//! same input and projected to all of them (it costs the same per line
//! for a given .env; the whole 2 MiB would take it minutes).

use std::time::Instant;

use jarvis_model::masking::{mask_per_call, Masker};

const MIB: usize = 1 << 20;
const RUNS: usize = 3;

fn values(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("secret-{i:05}-abcdefghijklmnop"))
        .collect()
}

fn crash_lines(values: &[String], bytes: usize) -> Vec<String> {
    let mut out = Vec::new();
    let (mut size, mut n) = (0, 0);
    while size < bytes {
        let l = format!(
            "2026-12-07 03:00:00,000 - jarvis.supervisor - ERROR - [c{}] Component crashed (attempt {}/100): request refused for token {}",
            n % 20,
            n % 100,
            values[n % values.len()]
        );
        size += l.len() + 1;
        out.push(l);
        n += 1;
    }
    out
}

/// Seconds of building the masker, of masking every line, and of both: the
/// medians of `RUNS` runs, after checking that no value shows.
fn time_masker(values: &[String], lines: &[String]) -> serde_json::Value {
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let m = Masker::new(values);
        // The automaton is built on the first line masked.
        m.mask("");
        let built = t.elapsed().as_secs_f64();
        let masked: Vec<String> = lines.iter().map(|l| m.mask(l)).collect();
        runs.push((t.elapsed().as_secs_f64(), built));
        assert!(masked.iter().all(|l| l.ends_with("token ****")), "a value shows");
    }
    let median = |f: &dyn Fn(&(f64, f64)) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[RUNS / 2]
    };
    serde_json::json!({
        "values": values.len(),
        "seconds": median(&|r| r.0),
        "build_seconds": median(&|r| r.1),
        "mask_seconds": median(&|r| r.0 - r.1),
    })
}

fn main() {
    let all = values(5_000);
    let full = crash_lines(&all, 2 * MIB);
    let mut by_values = Vec::new();
    for n in [1_250, 2_500, 5_000] {
        let v = &all[..n];
        by_values.push(time_masker(v, &crash_lines(v, 2 * MIB)));
    }
    let mut by_bytes = Vec::new();
    for (mib, bytes) in [(0.5, MIB / 2), (1.0, MIB), (2.0, 2 * MIB)] {
        let mut t = time_masker(&all, &crash_lines(&all, bytes));
        t["mib"] = mib.into();
        by_bytes.push(t);
    }
    // The peer: the old masking, each line on its own, on the first lines.
    let sample = 200.min(full.len());
    let t = Instant::now();
    for l in &full[..sample] {
        let masked = mask_per_call(l, &all);
        assert!(masked.ends_with("token ****"), "the old masking shows a value");
    }
    let per_line = t.elapsed().as_secs_f64() / sample as f64;
    let doc = serde_json::json!({
        "lines_2mib": full.len(),
        "by_values": by_values,
        "by_bytes": by_bytes,
        "per_call": {"values": 5000, "lines_timed": sample, "seconds_per_line": per_line, "projected_2mib_seconds": per_line * full.len() as f64},
    });
    println!("{doc}");
}
