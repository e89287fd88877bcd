//! The peers and the child, installed from the package registries when
//! missing: runit, daemontools and s6 from Debian (binaries only: never
//! runit-init nor daemontools-run),
//! supervisord from PyPI and PM2 from npm, both pinned and private to
//! target/bench/tools so that no system daemon is started.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::deps;
use crate::run::{self, Result};

/// Pinned so that figures from two runs compare the same peers.
pub const SUPERVISOR: &str = "4.3.0";
pub const PM2: &str = "7.0.4";

const CHILD_C: &str = include_str!("child.c");

pub struct Tools {
    pub child: PathBuf,
    pub supervisord: PathBuf,
    pub pm2: PathBuf,
    pub runsv: PathBuf,
    pub svlogd: PathBuf,
    pub supervise: PathBuf,
    pub multilog: PathBuf,
    pub s6_supervise: PathBuf,
    pub s6_log: PathBuf,
    /// The binary under test, when it has the `run` subcommand.
    pub jarvisctl: Option<PathBuf>,
    pub versions: Versions,
}

#[derive(Default, Clone)]
pub struct Versions {
    pub supervisord: String,
    pub pm2: String,
    pub runit: String,
    pub daemontools: String,
    pub s6: String,
    pub jarvisctl: String,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !p.is_empty()).then(|| PathBuf::from(p))
}

fn need(name: &str) -> Result<PathBuf> {
    on_path(name).ok_or_else(|| format!("{name} is not on PATH after installing its package"))
}

fn deb_version(pkg: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Compile the child statically, so that its exec costs the same under
/// every peer and no dynamic loader time hides in the restart gap.
fn child(dir: &Path) -> Result<PathBuf> {
    let src = dir.join("benchchild.c");
    let bin = dir.join("benchchild");
    std::fs::write(&src, CHILD_C).map_err(|e| format!("cannot write {}: {e}", src.display()))?;
    run::output(
        Command::new("gcc")
            .args(["-O2", "-static", "-Wall", "-o"])
            .arg(&bin)
            .arg(&src),
    )?;
    Ok(bin)
}

/// supervisord in a private venv: the Debian package would start a
/// system-wide supervisord from its postinst.
fn supervisord(tools: &Path) -> Result<(PathBuf, String)> {
    let venv = tools.join("supervisor-venv");
    let bin = venv.join("bin/supervisord");
    let pip_show = || {
        Command::new(venv.join("bin/pip"))
            .args(["show", "supervisor"])
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("Version: ").map(str::to_string))
            })
    };
    if pip_show().as_deref() != Some(SUPERVISOR) {
        let python = on_path("python3").ok_or("python3 is needed for supervisord")?;
        if run::output(Command::new(&python).args(["-m", "venv"]).arg(&venv)).is_err() {
            deps::apt(&["python3-venv"])?;
            run::status(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(&venv))?;
        }
        run::status(
            Command::new(venv.join("bin/pip"))
                .stdout(Stdio::from(std::io::stderr()))
                .args(["install", "-q", "--disable-pip-version-check"])
                .arg(format!("supervisor=={SUPERVISOR}")),
        )?;
    }
    Ok((bin, pip_show().unwrap_or_default()))
}

/// PM2 under a private npm prefix.
fn pm2(tools: &Path) -> Result<(PathBuf, String)> {
    let prefix = tools.join("pm2");
    let bin = prefix.join("node_modules/.bin/pm2");
    let manifest = prefix.join("node_modules/pm2/package.json");
    let version = || {
        std::fs::read_to_string(&manifest)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(str::to_string))
    };
    if version().as_deref() != Some(PM2) {
        if on_path("npm").is_none() {
            deps::apt(&["npm"])?;
        }
        std::fs::create_dir_all(&prefix).map_err(|e| e.to_string())?;
        run::status(
            Command::new("npm")
                .stdout(Stdio::from(std::io::stderr()))
                .args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--prefix",
                ])
                .arg(&prefix)
                .arg(format!("pm2@{PM2}")),
        )?;
    }
    Ok((bin, version().unwrap_or_default()))
}

/// `jarvisctl run --help` succeeds only once the engine is in the build.
pub fn has_run(jarvisctl: &Path) -> bool {
    Command::new(jarvisctl)
        .args(["run", "--help"])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn install(bench: &Path, jarvisctl: &Path) -> Result<Tools> {
    let tools = bench.join("tools");
    std::fs::create_dir_all(&tools).map_err(|e| e.to_string())?;
    // --no-install-recommends (deps::apt) keeps runit-init out: runit is
    // only the binaries here, never PID 1. daemontools only suggests
    // daemontools-run (svscan started at boot), which is not installed.
    deps::apt(&["gcc", "libc6-dev", "runit", "daemontools", "s6"])?;
    for pkg in ["runit-init", "daemontools-run"] {
        if installed(pkg) {
            eprintln!("bench: note: {pkg} is installed on this host (not by the bench)");
        }
    }
    let (supervisord, supervisord_version) = supervisord(&tools)?;
    let (pm2, pm2_version) = pm2(&tools)?;
    let run_ok = has_run(jarvisctl);
    let jarvisctl_version = Command::new(jarvisctl)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Ok(Tools {
        child: child(&tools)?,
        supervisord,
        pm2,
        runsv: need("runsv")?,
        svlogd: need("svlogd")?,
        supervise: need("supervise")?,
        multilog: need("multilog")?,
        s6_supervise: need("s6-supervise")?,
        s6_log: need("s6-log")?,
        jarvisctl: run_ok.then(|| jarvisctl.to_path_buf()),
        versions: Versions {
            supervisord: supervisord_version,
            pm2: pm2_version,
            runit: deb_version("runit"),
            daemontools: deb_version("daemontools"),
            s6: deb_version("s6"),
            jarvisctl: jarvisctl_version,
        },
    })
}
