//! `cargo xtask bench`: speed figures as ratios against peers measured in
//! the same run, never as timed tests. First the cost the unit's preflight
//! (`jarvisctl check --preflight`, an `ExecStartPre=`) adds to every start,
//! against a bare process start and a Python interpreter start; then
//! `jarvisctl run` against supervisord, PM2, runit, daemontools and s6
//! (`supervisors`); and how `status` grows with a busy bot's output
//! (`busy`); and masking a large `.env`'s values in the bot's lines
//! (`masking`); and `jarvisctl deploy` against rsync + ssh and an Ansible
//! playbook on booted hosts (`deploy`, only when asked for by name: it
//! boots containers).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::run::{self, Result};

mod busy;
mod deploy;
mod masking;
mod peers;
mod procfs;
mod report;
mod stats;
mod status;
mod supervisors;
mod tools;
mod venv;

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

/// Every part, or `only` one; each runs even when one before it misses
/// its budget, and any failure fails the command.
pub fn bench(json: bool, only: Option<&str>) -> Result<()> {
    let root = run::root();
    let bin = crate::dist::build_release()?;
    let wanted = |part: &str| only.is_none_or(|o| o == part);
    let mut result = Ok(());
    let mut part = |name: &str, f: &mut dyn FnMut() -> Result<()>| {
        if wanted(name) {
            if let Err(e) = f() {
                eprintln!("bench: {e}");
                result = Err(format!("bench: the {name} part failed"));
            }
        }
    };
    part("preflight", &mut || preflight(&root, &bin, json));
    part("env", &mut || env_scale(&root, &bin, json));
    let jarvisctl = supervisors::jarvisctl_path(bin.clone());
    part("supervisors", &mut || supervisors::bench(&root, &jarvisctl, json));
    part("status", &mut || status::bench(json));
    part("venv", &mut || venv::bench(&root, json));
    part("busy", &mut || busy::bench(json));
    part("masking", &mut || masking::bench(json));
    // Booted hosts, a few minutes: only when asked for.
    if only == Some("deploy") {
        part("deploy", &mut || deploy::bench(&root, json));
    }
    result
}

/// Median wall time of 3 runs of `cmd`, whatever its exit code (a huge
/// `.env` fails its checks), but never a panic.
fn median3(mut make: impl FnMut() -> Command) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = make()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("cannot run a bench command: {e}"))?;
        if out.code() == Some(101) {
            return Err(format!("a bench command panicked: {:?}", make()));
        }
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

/// Issue 13, acceptance 4: every command that reads the `.env` takes time
/// linear in its size. Each is timed on 100,000 and 1,000,000 lines (every
/// 1000th broken), next to `wc -l` and `sort` on the same files: linear
/// time grows about 10x, as `sort` does; the old duplicate check grew 100x,
/// and more than 30x fails the bench.
fn env_scale(root: &Path, bin: &Path, json: bool) -> Result<()> {
    let (tree, _) = healthy_tree(root, bin)?;
    let t = tree.path();
    let env = t.join("home/jarvis/Jarvis/.env");
    let env_s = env.display().to_string();
    let make = |lines: usize| -> Result<()> {
        let mut body = String::from(
            "TELEGRAM_BOT_TOKEN=123456789:AAFakeTokenForTestsOnly_abcdefghijklmn\nTELEGRAM_ADMIN_IDS=123456789\n",
        );
        for i in 0..lines {
            if i % 1000 == 999 {
                body += &format!("broken line {i}\n");
            } else {
                body += &format!("KEY_{i}=value_{i}\n");
            }
        }
        write(&env, &body)
    };
    let cmds: [(&str, Vec<&str>); 5] = [
        ("jarvisctl env lint", vec!["env", "lint", &env_s]),
        ("jarvisctl check --preflight", vec!["check", "--preflight"]),
        ("jarvisctl status", vec!["status"]),
        ("wc -l (peer)", vec![]),
        ("sort (peer)", vec![]),
    ];
    let time = |name: &str, args: &[&str]| -> Result<f64> {
        median3(|| match name {
            "wc -l (peer)" => {
                let mut c = Command::new("wc");
                c.arg("-l").arg(&env);
                c
            }
            "sort (peer)" => {
                let mut c = Command::new("sort");
                c.arg(&env);
                c
            }
            _ => {
                let mut c = Command::new(bin);
                c.arg("--root").arg(t).args(args);
                c
            }
        })
    };
    make(100_000)?;
    let small: Vec<f64> = cmds.iter().map(|(n, a)| time(n, a)).collect::<Result<_>>()?;
    make(1_000_000)?;
    let big: Vec<f64> = cmds.iter().map(|(n, a)| time(n, a)).collect::<Result<_>>()?;
    let mut out =
        String::from("a huge .env (median of 3 runs; linear time grows about 10x from 100k to 1M lines; the bench fails over 30x):\n");
    let mut worst: f64 = 0.0;
    for (i, (name, _)) in cmds.iter().enumerate() {
        let growth = big[i] / small[i].max(1e-6);
        out += &format!(
            "  {name:30} 100k {:7.3} s   1M {:7.3} s   grows {growth:5.1}x   1M = {:.0}x wc -l\n",
            small[i],
            big[i],
            big[i] / big[3].max(1e-6)
        );
        if !name.ends_with("(peer)") {
            worst = worst.max(growth);
        }
    }
    if json {
        eprint!("{out}");
    } else {
        print!("{out}");
    }
    // Linear is 10x; allocation and cache misses on a 300 MB heap stretch
    // it. Quadratic (the old duplicate check) is 100x.
    if worst > 30.0 {
        return Err(format!(
            "a command grew {worst:.1}x from 100k to 1M .env lines: not linear"
        ));
    }
    Ok(())
}

/// A healthy installation under a temporary root, as the CLI tests make
/// it, run as the caller; and the interpreter its unit uses.
fn healthy_tree(root: &Path, bin: &Path) -> Result<(tempfile::TempDir, String)> {
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

    Ok((tree, python))
}

fn preflight(root: &Path, bin: &Path, json: bool) -> Result<()> {
    let (tree, python) = healthy_tree(root, bin)?;
    let t = tree.path();
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
