//! Set-up on a fresh machine: the pinned packaging tools from crates.io and
//! the Debian packages the tests use.

use std::process::Command;

use crate::run::{self, Result};

/// Pinned so that every build of a release makes the same packages.
pub const CARGO_DEB: (&str, &str) = ("cargo-deb", "3.8.0");
pub const CARGO_GENERATE_RPM: (&str, &str) = ("cargo-generate-rpm", "0.21.1");

/// Debian packages the test layers need: containers, package linters,
/// `systemd-analyze`, logrotate, the test network namespace and ssh client,
/// and the venv that holds ansible and actionlint.
pub const TEST_PACKAGES: &[&str] = &[
    "debootstrap",
    "systemd-container",
    "lintian",
    "rpm",
    "rpmlint",
    "logrotate",
    "dpkg-dev",
    "systemd",
    "iproute2",
    "openssh-client",
    "python3-venv",
    // debootstrap checks Debian's Release files with it (not preinstalled
    // on Ubuntu runners).
    "debian-archive-keyring",
    // jarvisctl deploy's transfers, from this machine to the test hosts.
    "rsync",
    // promtool checks the shipped alert rules; the e2e monitoring test runs
    // node_exporter and Prometheus from these .debs inside a container.
    "prometheus",
    "prometheus-node-exporter",
    // /usr/bin/time: the attack tests measure the peak memory of root's
    // commands and of the operator's against a hostile host.
    "time",
];

/// `cargo xtask deps`: every Debian package (as root), cargo tool and
/// linter (under target/) the CI steps use, so that a step never installs
/// half of what it needs.
pub fn all() -> Result<()> {
    let mut pkgs: Vec<&str> = TEST_PACKAGES.to_vec();
    pkgs.extend(crate::repo::PACKAGES);
    apt(&pkgs)?;
    cargo_tool(CARGO_DEB)?;
    cargo_tool(CARGO_GENERATE_RPM)?;
    let tools = crate::tools::ensure()?;
    println!(
        "linters: {} and {}",
        tools.actionlint.display(),
        tools.py_bin.display()
    );
    Ok(())
}

/// Install a cargo subcommand at its pinned version unless it is there.
pub fn cargo_tool((name, version): (&str, &str)) -> Result<()> {
    let sub = name.trim_start_matches("cargo-");
    let have = Command::new("cargo").args([sub, "--version"]).output();
    if let Ok(out) = have {
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.contains(version) {
            return Ok(());
        }
    }
    run::status(run::cargo().args(["install", "--locked", name, "--version", version]))
}

pub fn is_root() -> bool {
    nix_uid() == 0
}

fn nix_uid() -> u32 {
    // /proc/self/status has "Uid: real effective ...": avoid a libc dependency.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).and_then(|u| u.parse().ok()))
        })
        .unwrap_or(u32::MAX)
}

/// `apt-get install` whatever of `pkgs` is missing (root only).
pub fn apt(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "missing Debian packages: {}; run as root, or: sudo apt-get install {}",
            missing.join(" "),
            missing.join(" ")
        ));
    }
    run::status(Command::new("apt-get").args(["update", "-q"]))?;
    run::status(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )
}
