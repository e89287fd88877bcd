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
