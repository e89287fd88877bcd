//! `cargo xtask bench --only masking` (issue 24, acceptance 3): masking a
//! 5,000-value `.env` against 2 MiB of crash lines, in release mode, under
//! 1 s; building the masker grows linearly with the values, masking
//! linearly with the lines; and the old per-call masking as the peer
//! measured in the same run. The timing is examples/masking_bench.rs,
//! built here in release mode.

use crate::run::{self, Result};

const BUDGET_S: f64 = 1.0;
/// Doubling the input may double the time, not more (noise allowed for).
const LINEAR: f64 = 2.6;

pub fn bench(json: bool) -> Result<()> {
    let root = run::root();
    crate::dist::build_release_of(&["--example", "masking_bench"])?;
    let out = run::output(&mut std::process::Command::new(
        root.join("target/release/examples/masking_bench"),
    ))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("masking_bench printed no JSON ({e})"))?;
    let secs = |key: &str, what: &str| -> Vec<f64> {
        (0..3)
            .map(|i| doc[key][i][what].as_f64().unwrap_or(f64::NAN))
            .collect()
    };
    let build = secs("by_values", "build_seconds");
    let mask = secs("by_bytes", "mask_seconds");
    let total = secs("by_values", "seconds")[2];
    let old = doc["per_call"]["projected_2mib_seconds"]
        .as_f64()
        .unwrap_or(f64::NAN);
    let old_timed = doc["per_call"]["lines_timed"].as_u64().unwrap_or(0);
    let lines = doc["lines_2mib"].as_u64().unwrap_or(0);
    let text = format!(
        "masking every line of 2 MiB of crash lines ({lines} lines), release build, median of 3, this run:\n\
         \x20 5,000 values, 2 MiB, masker built and every line masked: {total:.3} s (budget {BUDGET_S:.1} s)\n\
         \x20 building the masker: 1,250 values {:.4} s, 2,500 {:.4} s, 5,000 {:.4} s; 2,500/1,250 = {:.2}x, 5,000/2,500 = {:.2}x (linear: 2x)\n\
         \x20 masking with 5,000 values: 0.5 MiB {:.4} s, 1 MiB {:.4} s, 2 MiB {:.4} s; 1/0.5 = {:.2}x, 2/1 = {:.2}x (linear: 2x)\n\
         \x20 old per-call masking (peer): {old:.1} s for 2 MiB (timed on {old_timed} lines, projected); old / new = {:.0}x",
        build[0],
        build[1],
        build[2],
        build[1] / build[0],
        build[2] / build[1],
        mask[0],
        mask[1],
        mask[2],
        mask[1] / mask[0],
        mask[2] / mask[1],
        old / total
    );
    if json {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
    let path = root.join("target/bench/masking.json");
    let _ = std::fs::create_dir_all(path.parent().unwrap());
    let _ = std::fs::write(&path, doc.to_string());
    if total.is_nan() || total >= BUDGET_S {
        return Err(format!(
            "masking 2 MiB with 5,000 values took {total:.3} s, over its {BUDGET_S:.1} s budget"
        ));
    }
    for (what, r) in [
        ("values 2,500 -> 5,000 (building)", build[2] / build[1]),
        ("lines 0.5 -> 1 MiB (masking)", mask[1] / mask[0]),
        ("lines 1 -> 2 MiB (masking)", mask[2] / mask[1]),
    ] {
        if r.is_nan() || r > LINEAR {
            return Err(format!(
                "masking time grew {r:.2}x when doubling the {what}: not linear"
            ));
        }
    }
    Ok(())
}
