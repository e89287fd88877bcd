//! Every question to the running systemd goes through here: its version,
//! a unit's properties (`systemctl show -p`, never scraped from
//! `systemctl status`), a unit's journal, `systemctl` actions and
//! `systemd-analyze`; and the installed package's version.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::runner::tool;

/// systemd is this host's init and is running.
pub fn running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The version `systemctl --version` reports, e.g. 252.
pub fn version() -> Option<u32> {
    let mut cmd = Command::new("systemctl");
    cmd.arg("--version");
    let out = tool(cmd)?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// `systemctl show -p A,B unit` as a map.
pub fn show(unit: &str, props: &[&str]) -> Option<BTreeMap<String, String>> {
    let mut cmd = Command::new("systemctl");
    cmd.args(["show", unit, "-p", &props.join(",")]);
    let out = tool(cmd)?;
    if !out.success() {
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
    let mut cmd = Command::new("journalctl");
    cmd.args([
        "_PID=1",
        &format!("UNIT={unit}"),
        "--since",
        "-24h",
        "-o",
        "cat",
        "--no-pager",
        "-q",
    ]);
    let out = tool(cmd)?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// systemd's own journal entries about `unit` since `since` (a journalctl
/// time, e.g. "-600s"), oldest first: the whole window, PID 1's only.
pub fn own_entries_since(unit: &str, since: &str) -> Option<Vec<JournalEntry>> {
    let mut cmd = Command::new("journalctl");
    cmd.args([
        "_PID=1",
        &format!("UNIT={unit}"),
        "--since",
        since,
        "-o",
        "json",
        "--output-fields=MESSAGE",
        "--no-pager",
        "-q",
    ]);
    let out = tool(cmd)?;
    out.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(journal_entry)
            .collect()
    })
}

/// One entry of a unit's journal: when (unix time), and its message.
pub struct JournalEntry {
    pub unix: Option<f64>,
    pub text: String,
}

/// `journalctl -u UNIT -o json` with `extra` arguments: `-f`, or the
/// newest-first reading of `recent::journal`, the one reader of history.
pub fn journal_command(unit: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new("journalctl");
    cmd.args([
        "-u",
        unit,
        "-o",
        "json",
        "--output-fields=MESSAGE",
        "--no-pager",
        "-q",
    ])
    .args(extra);
    cmd
}

/// One line of `journalctl -o json`.
pub fn journal_entry(line: &str) -> Option<JournalEntry> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let text = match &v["MESSAGE"] {
        serde_json::Value::String(s) => s.clone(),
        // journald stores non-UTF-8 text as a byte array.
        serde_json::Value::Array(a) => {
            let b: Vec<u8> = a.iter().filter_map(|x| x.as_u64().map(|n| n as u8)).collect();
            String::from_utf8_lossy(&b).into_owned()
        }
        _ => return None,
    };
    let unix = v["__REALTIME_TIMESTAMP"]
        .as_str()
        .and_then(|t| t.parse::<f64>().ok())
        .map(|us| us / 1e6);
    Some(JournalEntry { unix, text })
}

/// `systemctl ARGS`: Ok, or systemctl's own complaint.
pub fn systemctl(args: &[&str]) -> std::result::Result<(), String> {
    let mut cmd = Command::new("systemctl");
    cmd.args(args);
    // Every caller asks for jobs that do not wait for the bot (--no-block,
    // timers, daemon-reload); a stuck bus ends here.
    let limits = crate::runner::Limits {
        deadline: std::time::Duration::from_secs(120),
        ..crate::runner::Limits::TOOL
    };
    let out = crate::runner::run(cmd, b"", limits)
        .map_err(|e| format!("cannot run systemctl {}: {e}", args.join(" ")))?;
    if out.success() {
        return Ok(());
    }
    if out.timed_out() {
        return Err(format!(
            "systemctl {} did not end within {} s and was killed",
            args.join(" "),
            limits.deadline.as_secs()
        ));
    }
    Err(format!(
        "systemctl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// How long `systemd-analyze` may take: `verify` loads every unit, which
/// takes seconds on a loaded host.
pub const ANALYZE_LIMITS: crate::runner::Limits = crate::runner::Limits {
    deadline: std::time::Duration::from_secs(15),
    ..crate::runner::Limits::TOOL
};

/// `systemd-analyze ARGS`: (success, stdout and stderr), or None when it
/// cannot be run or does not end within `ANALYZE_LIMITS`.
pub fn analyze(args: &[&str]) -> Option<(bool, String)> {
    let mut cmd = Command::new("systemd-analyze");
    cmd.args(args);
    let out = crate::runner::run(cmd, b"", ANALYZE_LIMITS)
        .ok()
        .filter(|o| !o.timed_out())?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Some((out.success(), text))
}

/// The installed version of `package`, from dpkg or else rpm.
pub fn package_version(package: &str) -> Option<String> {
    let mut dpkg = Command::new("dpkg-query");
    dpkg.args(["-W", "-f=${Version}", package]);
    if let Some(o) = tool(dpkg) {
        if o.success() && !o.stdout.is_empty() {
            return Some(String::from_utf8_lossy(&o.stdout).into_owned());
        }
    }
    let mut rpm = Command::new("rpm");
    rpm.args(["-q", "--qf", "%{VERSION}-%{RELEASE}", package]);
    if let Some(o) = tool(rpm) {
        if o.success() {
            return Some(String::from_utf8_lossy(&o.stdout).into_owned());
        }
    }
    None
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
