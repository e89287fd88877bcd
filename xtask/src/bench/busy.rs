//! `cargo xtask bench --only busy`: what one `jarvisctl status` costs as
//! the bot's output grows, on both engines at once (a booted Debian 12 with
//! systemd, and a sysvinit one with `jarvisctl run`). The stand-in writes
//! busy INFO lines (below journald's rate limit), with /health off so that
//! `status` reads its component records from the output; `status` is timed
//! inside each container at 2,000 and at 25,000 lines of the last hour. It
//! reads only the newest lines, so the time should grow less than 2x.

use crate::deps;
use crate::dist;
use crate::run::{self, Result};
use jarvis_test_support::container::Container;
use jarvis_test_support::roots::Suite;

const SMALL: u64 = 2_000;
const BIG: u64 = 25_000;
const RUNS: usize = 15;
const TARGET: f64 = 2.0;
const CODE: &str = "/home/jarvis/Jarvis";

/// Median wall time of `jarvisctl status --json`, in ms.
const TIMER: &str = r#"
import statistics, subprocess, sys, time
times = []
for i in range(int(sys.argv[1]) + 1):
    t = time.perf_counter()
    subprocess.run(["jarvisctl", "status", "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if i:
        times.append((time.perf_counter() - t) * 1000)
print(statistics.median(times))
"#;

struct Figures {
    suite: Suite,
    small: (u64, f64),
    big: (u64, f64),
}

fn written(c: &Container, suite: Suite) -> u64 {
    let cmd = if suite.has_systemd() {
        "journalctl -u jarvis-supervisor --since -1h -o cat -q | wc -l".to_string()
    } else {
        format!("wc -l < {CODE}/logs/supervisor.stdout")
    };
    c.sh(&cmd).stdout.trim().parse().unwrap_or(0)
}

fn wait_lines(c: &Container, suite: Suite, n: u64, secs: u64) -> Result<u64> {
    let t0 = std::time::Instant::now();
    loop {
        let got = written(c, suite);
        if got >= n {
            return Ok(got);
        }
        if t0.elapsed().as_secs() > secs {
            return Err(format!(
                "{}: only {got} of {n} lines after {secs} s",
                suite.name()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn time_status(c: &Container) -> Result<f64> {
    let out = c.sh(&format!("python3 /var/tmp/timer.py {RUNS}"));
    out.stdout
        .trim()
        .parse()
        .map_err(|_| format!("the timing script failed:\n{}", out.all()))
}

/// The stand-in's settings: a burst of `lines` at `rate`, then 10 a second.
fn busy_env(lines: u64, rate: u64) -> String {
    format!(
        "STANDIN_HEALTH_INTERVAL=10\nSTANDIN_NO_HTTP=1\nSTANDIN_BUSY_BURST_LINES={lines}\nSTANDIN_BUSY_BURST_PER_S={rate}\nSTANDIN_BUSY_LINES_PER_S=10\n"
    )
}

fn one(suite: Suite, deb: &std::path::Path) -> Result<Figures> {
    let c = Container::boot(suite);
    c.deploy_standin(&run::root());
    // Below journald's limit as this container applies it; as fast as the
    // stand-in goes comfortably under the engine.
    let rate = if suite.has_systemd() {
        let (burst, interval) = c.journald_rate_limit();
        ((0.7 * burst / interval) as u64).min(1_000)
    } else {
        1_000
    };
    let env = format!("{CODE}/.env");
    let base = c.ok(&format!("cat {env}"));
    c.write(&env, &(base.clone() + &busy_env(SMALL, rate)));
    c.put(deb, "/var/tmp/jarvis-supervisor.deb");
    let out = c.sh("apt-get install -y -q /var/tmp/jarvis-supervisor.deb 2>&1");
    if out.status != 0 {
        return Err(format!("{}: apt install failed:\n{}", suite.name(), out.all()));
    }
    c.write("/var/tmp/timer.py", TIMER);
    // The burst done, 10 lines a second on: timed on a steady volume.
    let n_small = wait_lines(&c, suite, SMALL, 60)?;
    let t_small = time_status(&c)?;
    // The rest of the hour's lines: the stand-in restarted with a second
    // burst, so the last hour holds both.
    c.write(&env, &(base + &busy_env(BIG - n_small, rate)));
    let restart = if suite.has_systemd() {
        "systemctl restart jarvis-supervisor"
    } else {
        "service jarvis-supervisor restart"
    };
    let out = c.sh(restart);
    if out.status != 0 {
        return Err(format!("{}: {restart} failed:\n{}", suite.name(), out.all()));
    }
    let n_big = wait_lines(&c, suite, BIG, BIG / rate + 60)?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let t_big = time_status(&c)?;
    Ok(Figures {
        suite,
        small: (n_small, t_small),
        big: (n_big, t_big),
    })
}

pub fn bench(json: bool) -> Result<()> {
    if !deps::is_root() {
        return Err("the busy-bot benchmark boots containers: run it as root".into());
    }
    deps::apt(&["debootstrap", "systemd-container"])?;
    let built = dist::dist()?;
    eprintln!("busy: booting a systemd and a sysvinit Debian 12, the stand-in writing busy lines ...");
    let results: Vec<Result<Figures>> = std::thread::scope(|s| {
        let runs: Vec<_> = [Suite::Bookworm, Suite::Sysvinit]
            .into_iter()
            .map(|suite| {
                let deb = &built.deb;
                s.spawn(move || one(suite, deb))
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap_or_else(|_| Err("a container panicked".into())))
            .collect()
    });
    let mut text = format!(
        "status with a busy bot (median of {RUNS} runs of jarvisctl status --json inside each container, this run; target: grows under {TARGET}x from {SMALL} to {BIG} lines):\n"
    );
    let mut worst: f64 = 0.0;
    let mut figures = Vec::new();
    for r in results {
        let f = r?;
        let growth = f.big.1 / f.small.1;
        worst = worst.max(growth);
        text.push_str(&format!(
            "  {:<18} {:>6} lines {:7.1} ms   {:>6} lines {:7.1} ms   grows {growth:.2}x\n",
            f.suite.name(),
            f.small.0,
            f.small.1,
            f.big.0,
            f.big.1
        ));
        figures.push(serde_json::json!({
            "suite": f.suite.name(),
            "small": {"lines": f.small.0, "median_ms": f.small.1},
            "big": {"lines": f.big.0, "median_ms": f.big.1},
            "growth": growth,
        }));
    }
    if json {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    let out = run::root().join("target/bench/busy.json");
    let _ = std::fs::create_dir_all(out.parent().unwrap());
    let _ = std::fs::write(
        &out,
        serde_json::json!({"runs": RUNS, "target_growth": TARGET, "figures": figures}).to_string(),
    );
    if worst >= TARGET {
        return Err(format!(
            "jarvisctl status grew {worst:.2}x from {SMALL} to {BIG} lines of output, over the {TARGET}x target"
        ));
    }
    Ok(())
}
