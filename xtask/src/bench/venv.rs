//! Issue 14: building the bot's environment with pip and with uv, on the
//! same requirements, as a ratio from one run. Both go through the builder
//! that `jarvisctl venv build` ships (python/venv_build.py), from one
//! wheelhouse downloaded once from the package registry, offline after that
//! as on a host with `--wheelhouse`. Each build starts from empty caches
//! (what a host's first build costs); uv is also timed with its cache warm
//! (every later build on that host).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::deps;
use crate::run::{self, Result};

/// Pinned so that two runs compare the same installers.
const UV: &str = "0.13.9";

/// The kind of list the real program has: network clients with compiled
/// wheels (aiohttp, yarl, multidict), a bot framework, small pure-Python
/// packages, and one desktop-only line whose marker excludes Linux.
const REQUIREMENTS: &str = "\
requests==2.32.3
python-dotenv==1.0.1
aiohttp==3.10.10
httpx==0.27.2
python-telegram-bot==21.6
PyYAML==6.0.2
python-dateutil==2.9.0.post0
pytz==2024.2
tenacity==9.0.0
pywin32==306 ; sys_platform == \"win32\"
";

const ROUNDS: usize = 3;

/// uv in a private venv under target/bench/tools.
fn uv(tools: &Path, base: &Path) -> Result<PathBuf> {
    let venv = tools.join("uv-venv");
    let bin = venv.join("bin/uv");
    let version = || {
        Command::new(&bin)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    };
    if !version().is_some_and(|v| v.contains(UV)) {
        run::status(Command::new(base).args(["-m", "venv"]).arg(&venv))?;
        run::status(
            Command::new(venv.join("bin/pip"))
                .stdout(Stdio::from(std::io::stderr()))
                .args(["install", "-q", "--disable-pip-version-check"])
                .arg(format!("uv=={UV}")),
        )?;
    }
    Ok(bin)
}

/// The wheels for `base`'s version and platform, downloaded once.
fn wheelhouse(tools: &Path, base: &Path, requirements: &Path) -> Result<PathBuf> {
    let dir = tools.join("venv-wheelhouse");
    let stamp = dir.join(".complete");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(REQUIREMENTS) {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // pip of the machine's pip config (its index), into a scratch venv:
        // Debian's python3 has no pip of its own.
        let scratch = tools.join("pip-venv");
        if !scratch.join("bin/pip").exists() {
            run::status(Command::new(base).args(["-m", "venv"]).arg(&scratch))?;
        }
        run::status(
            Command::new(scratch.join("bin/pip"))
                .stdout(Stdio::from(std::io::stderr()))
                .args([
                    "download",
                    "-q",
                    "--disable-pip-version-check",
                    "--only-binary=:all:",
                    "-d",
                ])
                .arg(&dir)
                .arg("-r")
                .arg(requirements),
        )?;
        std::fs::write(&stamp, REQUIREMENTS).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

/// One build through the shipped builder in a fresh code root; wall
/// seconds, and the builder's report.
#[allow(clippy::too_many_arguments)]
fn build(
    builder: &Path,
    reader: &str,
    base: &Path,
    requirements: &Path,
    wheels: &Path,
    installer: &str,
    uv_dir: &Path,
    cache: &Path,
) -> Result<(f64, serde_json::Value)> {
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(base);
    cmd.arg("-I")
        .arg(builder)
        .arg("build")
        .arg(root.path())
        .arg(requirements)
        .arg(wheels)
        .arg(installer)
        .arg(base)
        .arg(reader)
        .env("PATH", format!("{}:/usr/bin:/bin", uv_dir.display()))
        .env("UV_CACHE_DIR", cache.join("uv"))
        .env("PIP_CACHE_DIR", cache.join("pip"));
    let t = Instant::now();
    let out = cmd.output().map_err(|e| format!("cannot run the builder: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    if !out.status.success() || report["ok"] != true {
        return Err(format!(
            "the {installer} build failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((secs, report))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn bench(root: &Path, json: bool) -> Result<()> {
    let tools = root.join("target/bench/tools");
    std::fs::create_dir_all(&tools).map_err(|e| e.to_string())?;
    // The interpreter a Debian host builds with, and ensurepip for pip.
    let base = PathBuf::from("/usr/bin/python3");
    if run::output(Command::new(&base).args(["-c", "import ensurepip"])).is_err() {
        deps::apt(&["python3-venv"])?;
    }
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let requirements = scratch.path().join("requirements.txt");
    std::fs::write(&requirements, REQUIREMENTS).map_err(|e| e.to_string())?;
    let uv_bin = uv(&tools, &base)?;
    let uv_dir = uv_bin.parent().unwrap().to_path_buf();
    let wheels = wheelhouse(&tools, &base, &requirements)?;
    let builder = root.join("python/venv_build.py");
    let reader = std::fs::read_to_string(root.join("python/requirements.py")).map_err(|e| e.to_string())?;
    let mut pip_t = Vec::new();
    let mut uv_t = Vec::new();
    let mut warm_t = Vec::new();
    for _ in 0..ROUNDS {
        for installer in ["pip", "uv"] {
            let cache = tempfile::tempdir().map_err(|e| e.to_string())?;
            let (secs, report) = build(
                &builder,
                &reader,
                &base,
                &requirements,
                &wheels,
                installer,
                &uv_dir,
                cache.path(),
            )?;
            let skipped = report["skipped"].as_array().map_or(0, Vec::len);
            if skipped != 1 {
                return Err(format!("{installer} did not skip the win32 line: {report}"));
            }
            if installer == "pip" {
                pip_t.push(secs);
            } else {
                uv_t.push(secs);
                // Warm: the same cache again, as every later build on a host.
                let (w, _) = build(
                    &builder,
                    &reader,
                    &base,
                    &requirements,
                    &wheels,
                    installer,
                    &uv_dir,
                    cache.path(),
                )?;
                warm_t.push(w);
            }
        }
    }
    let count = Command::new("sh")
        .arg("-c")
        .arg(format!("ls {}/*.whl | wc -l", wheels.display()))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let installed = count.parse::<usize>().unwrap_or(0);
    let (pip, uvc, uvw) = (
        median(pip_t.clone()),
        median(uv_t.clone()),
        median(warm_t.clone()),
    );
    let out = format!(
        "environment build, {} requirement lines ({installed} wheels from one offline wheelhouse), median of {ROUNDS}, \
         through jarvisctl's builder with {}:\n\
         \x20 {:<24} {pip:6.2} s   1.00x\n\
         \x20 {:<24} {uvc:6.2} s   {:.2}x pip ({:.1}x faster)\n\
         \x20 {:<24} {uvw:6.2} s   {:.2}x pip\n\
         \x20 (all runs: pip {pip_t:.2?}, uv {uv_t:.2?}, uv warm {warm_t:.2?})\n\
         \x20 `venv build --installer auto` takes uv where it is on PATH, else pip.\n",
        REQUIREMENTS.lines().count(),
        base.display(),
        "pip (empty cache)",
        format!("uv {UV} (empty cache)"),
        uvc / pip,
        pip / uvc,
        format!("uv {UV} (warm cache)"),
        uvw / pip,
    );
    if json {
        eprint!("{out}");
        println!(
            "{}",
            serde_json::json!({"part": "venv", "pip_s": pip, "uv_s": uvc, "uv_warm_s": uvw, "uv_version": UV,
                "wheels": installed, "pip_runs": pip_t, "uv_runs": uv_t, "uv_warm_runs": warm_t})
        );
    } else {
        print!("{out}");
    }
    Ok(())
}
