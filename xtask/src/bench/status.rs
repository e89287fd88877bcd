//! `cargo xtask bench`, last part: what one `jarvisctl status` costs, in a
//! booted Debian 12 container running the stand-in under systemd (this
//! machine has no systemd of its own), against what a person would run
//! instead: `systemctl status`, the raw `systemctl show`, and a bare process
//! start. Timed inside the container, so nsenter's cost is not counted.

use crate::deps;
use crate::dist;
use crate::run::{self, Result};
use jarvis_test_support::container::Container;
use jarvis_test_support::roots::Suite;

const BUDGET_MS: f64 = 200.0;
const RUNS: usize = 30;

/// Median wall time of each command, in ms, printed as JSON lines.
const TIMER: &str = r#"
import json, statistics, subprocess, sys, time
runs = int(sys.argv[1])
cmds = json.loads(sys.argv[2])
for name, argv in cmds:
    times = []
    for i in range(runs + 1):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i:
            times.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"name": name, "median_ms": statistics.median(times), "max_ms": max(times)}))
"#;

/// With `json`, stdout is left to the supervisors' JSON: the figures go to
/// stderr and `target/bench/status.json`.
pub fn bench(json: bool) -> Result<()> {
    if !deps::is_root() {
        return Err("the status benchmark boots a container: run it as root".into());
    }
    deps::apt(&["debootstrap", "systemd-container"])?;
    let built = dist::dist()?;
    eprintln!("status: booting a Debian 12 container with the stand-in running ...");
    let c = Container::boot(Suite::Bookworm);
    c.deploy_standin(&run::root());
    c.put(&built.deb, "/var/tmp/jarvis-supervisor.deb");
    let out = c.sh("apt-get install -y -q /var/tmp/jarvis-supervisor.deb 2>&1");
    if out.status != 0 {
        return Err(format!("apt install failed:\n{}", out.all()));
    }
    let up = c.sh(
        "for i in $(seq 100); do systemctl is-active -q jarvis-supervisor && exit 0; sleep 0.2; done; exit 1",
    );
    if up.status != 0 {
        return Err("the stand-in did not become active in 20 s".into());
    }
    // A real verdict to compute: the bot is up and has pinged.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let check = c.sh("jarvisctl status");
    if check.status != 0 {
        return Err(format!("status is not OK before the benchmark:\n{}", check.all()));
    }
    c.write("/var/tmp/timer.py", TIMER);
    let cmds = serde_json::json!([
        ["jarvisctl status", ["jarvisctl", "status"]],
        ["jarvisctl status --json", ["jarvisctl", "status", "--json"]],
        [
            "systemctl status",
            ["systemctl", "status", "--no-pager", "jarvis-supervisor"]
        ],
        ["systemctl show", ["systemctl", "show", "jarvis-supervisor"]],
        ["true", ["true"]],
    ]);
    let out = c.sh(&format!(
        "python3 /var/tmp/timer.py {RUNS} '{}'",
        cmds.to_string().replace('\'', "")
    ));
    if out.status != 0 {
        return Err(format!("the timing script failed:\n{}", out.all()));
    }
    let rows: Vec<(String, f64, f64)> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["name"].as_str().unwrap_or("").to_string(),
                v["median_ms"].as_f64().unwrap_or(f64::NAN),
                v["max_ms"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    let get = |n: &str| rows.iter().find(|r| r.0 == n).map(|r| r.1).unwrap_or(f64::NAN);
    let (ours, peer) = (get("jarvisctl status --json"), get("systemctl status"));
    let mut text = format!("status on one host (median of {RUNS} runs inside the container, this run):\n");
    for (name, median, max) in &rows {
        text.push_str(&format!(
            "  {name:<26} {median:8.2} ms  (max {max:7.2})  jarvisctl status --json = {:.2}x\n",
            ours / median
        ));
    }
    text.push_str(&format!(
        "  budget {BUDGET_MS:.0} ms; jarvisctl status --json / systemctl status = {:.2}x",
        ours / peer
    ));
    if json {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
    let figures: Vec<_> = rows
        .iter()
        .map(|(n, m, x)| serde_json::json!({"command": n, "median_ms": m, "max_ms": x}))
        .collect();
    let out = run::root().join("target/bench/status.json");
    let _ = std::fs::create_dir_all(out.parent().unwrap());
    let doc = serde_json::json!({"runs": RUNS, "budget_ms": BUDGET_MS, "figures": figures});
    let _ = std::fs::write(&out, doc.to_string());
    if ours.is_nan() || ours >= BUDGET_MS {
        return Err(format!(
            "jarvisctl status takes {ours:.1} ms, over its {BUDGET_MS:.0} ms budget"
        ));
    }
    Ok(())
}
