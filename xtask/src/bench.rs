//! `cargo xtask bench`: speed figures as ratios against peers measured in
//! the same run, never as timed tests. First the cost the unit's preflight
//! (`jarvisctl check --preflight`, an `ExecStartPre=`) adds to every start,
//! against a bare process start and a Python interpreter start; then
//! `jarvisctl run` against supervisord, PM2, runit and s6 (`supervisors`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::run::{self, Result};

mod peers;
mod procfs;
mod report;
mod stats;
mod status;
mod supervisors;
mod tools;

const RUNS: usize = 40;

/// Median wall time of `RUNS` runs of `cmd` (after one warm-up).
fn median(mut make: impl FnMut() -> Command) -> Result<Duration> {
    let mut times = Vec::with_capacity(RUNS);
    for i in 0..=RUNS {
        let t = Instant::now();
        let out = make()
            .output()
            .map_err(|e| format!("cannot run a bench command: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "a bench command failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if i > 0 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    Ok(times[RUNS / 2])
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Both benchmarks; the supervisors run even when the preflight misses its
/// budget, and either failure fails the command.
pub fn bench(json: bool) -> Result<()> {
    let root = run::root();
    let bin = crate::dist::build_release()?;
    let preflight = preflight(&root, &bin, json);
    if let Err(e) = &preflight {
        eprintln!("bench: {e}");
    }
    let jarvisctl = supervisors::jarvisctl_path(bin);
    // Every part runs; any failing fails the command.
    let supervisors = supervisors::bench(&root, &jarvisctl, json);
    if let Err(e) = &supervisors {
        eprintln!("bench: {e}");
    }
    let status = status::bench(json);
    preflight.and(supervisors).and(status)
}

fn preflight(root: &Path, bin: &Path, json: bool) -> Result<()> {
    // A healthy installation under a temporary root, as the CLI tests make it.
    let tree = tempfile::tempdir().map_err(|e| e.to_string())?;
    let t = tree.path();
    let id = |flag: &str| -> String {
        Command::new("id")
            .arg(flag)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let unit =
        std::fs::read_to_string(root.join("systemd/jarvis-supervisor.service")).map_err(|e| e.to_string())?;
    write(&t.join("usr/lib/systemd/system/jarvis-supervisor.service"), &unit)?;
    write(
        &t.join("etc/systemd/system/jarvis-supervisor.service.d/10-bench.conf"),
        &format!("[Service]\nUser={}\nGroup={}\n", id("-un"), id("-gn")),
    )?;
    std::fs::create_dir_all(t.join("tmp")).map_err(|e| e.to_string())?;
    run::output(Command::new(bin).arg("--root").arg(t).arg("setup"))?;
    write(&t.join("home/jarvis/Jarvis/bots/supervisor.py"), "")?;
    let env = t.join("home/jarvis/Jarvis/.env");
    write(
        &env,
        "TELEGRAM_BOT_TOKEN=123456789:AAFakeTokenForTestsOnly_abcdefghijklmn\nTELEGRAM_ADMIN_IDS=123456789\n",
    )?;
    run::output(Command::new("chmod").arg("600").arg(&env))?;
    // The system's interpreter, as the unit uses it (not a version manager's shim).
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".to_string()
    } else {
        String::from_utf8_lossy(&run::output(Command::new("sh").args(["-c", "command -v python3"]))?.stdout)
            .trim()
            .to_string()
    };
    std::fs::create_dir_all(t.join("usr/bin")).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(&python, t.join("usr/bin/python3")).map_err(|e| e.to_string())?;

    let preflight = median(|| {
        let mut c = Command::new(bin);
        c.arg("--root").arg(t).args(["check", "--preflight"]);
        c
    })?;
    let spawn = median(|| Command::new("true"))?;
    let version = median(|| {
        let mut c = Command::new(bin);
        c.arg("--version");
        c
    })?;
    let py = median(|| {
        let mut c = Command::new(&python);
        c.args(["-c", "pass"]);
        c
    })?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut out = format!("preflight cost per start (median of {RUNS} runs, this machine, this run):\n");
    out += &format!(
        "  jarvisctl check --preflight   {:7.2} ms   budget 50 ms\n",
        ms(preflight)
    );
    out += &format!(
        "  true (process start)          {:7.2} ms   preflight = {:.1}x\n",
        ms(spawn),
        ms(preflight) / ms(spawn)
    );
    out += &format!(
        "  jarvisctl --version           {:7.2} ms   preflight = {:.1}x\n",
        ms(version),
        ms(preflight) / ms(version)
    );
    out += &format!(
        "  python3 -c pass               {:7.2} ms   preflight = {:.2}x\n",
        ms(py),
        ms(preflight) / ms(py)
    );
    // With --json, stdout is the supervisors' JSON alone.
    if json {
        eprint!("{out}");
    } else {
        print!("{out}");
    }
    if ms(preflight) >= 50.0 {
        return Err(format!(
            "the preflight takes {:.1} ms, over its 50 ms budget",
            ms(preflight)
        ));
    }
    Ok(())
}
