//! Questions to the running systemd: its version and a unit's properties,
//! read with `systemctl show -p`, never scraped from `systemctl status`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// systemd is this host's init and is running.
pub fn running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The version `systemctl --version` reports, e.g. 252.
pub fn version() -> Option<u32> {
    let out = Command::new("systemctl").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// `systemctl show -p A,B unit` as a map.
pub fn show(unit: &str, props: &[&str]) -> Option<BTreeMap<String, String>> {
    let out = Command::new("systemctl")
        .args(["show", unit, "-p", &props.join(",")])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect(),
    )
}

/// systemd's own journal lines about `unit` in the last 24 h (PID 1's
/// messages only: never the bot's output, which may hold secrets).
pub fn own_lines_24h(unit: &str) -> Option<String> {
    let out = Command::new("journalctl")
        .args([
            "_PID=1",
            &format!("UNIT={unit}"),
            "--since",
            "-24h",
            "-o",
            "cat",
            "--no-pager",
            "-q",
        ])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The unit's runtime directory, when run by systemd with
/// `RuntimeDirectory=` (the first, if it lists several).
pub fn runtime_directory() -> Option<std::path::PathBuf> {
    let dirs = std::env::var_os("RUNTIME_DIRECTORY")?;
    let first = dirs
        .to_string_lossy()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    (!first.is_empty()).then(|| first.into())
}

/// What a version means for this unit, in one line.
pub fn meaning(version: u32) -> String {
    let mut s =
        format!("systemd {version}: crash-loop backoff by jarvisctl backoff (the same on every version)");
    if version < 254 {
        s.push_str(
            "; RestartSteps= is not available; a .env comment ending in '\\' also hides the next line",
        );
    }
    s
}
