//! The host's part: free space for the logs, the unit's syntax as systemd
//! reads it, and logrotate for the logs directory.

use std::path::Path;
use std::process::Command;

use crate::report::Finding;
use jarvis_model::instance::Instance;
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

/// Below this much free space on the logs' file system, `check` fails.
const MIN_FREE_BYTES: u64 = 1 << 30;

pub(super) fn check_disk(paths: &Paths, unit: &Unit, code_root: &Path) -> Finding {
    let logs = unit
        .read_write_paths()
        .into_iter()
        .map(|p| p.path)
        .find(|p| p.ends_with("logs"))
        .unwrap_or_else(|| code_root.to_path_buf());
    let mut probe = paths.host(&logs);
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    match nix::sys::statvfs::statvfs(&probe) {
        Ok(st) => {
            let free = st.blocks_available() * st.fragment_size();
            let gib = free as f64 / (1u64 << 30) as f64;
            if free >= MIN_FREE_BYTES {
                Finding::pass("disk", format!("{gib:.1} GiB free for {}", logs.display()))
            } else {
                Finding::fail(
                    "disk",
                    format!(
                        "only {gib:.2} GiB free for {}: logs and databases will fail to write",
                        logs.display()
                    ),
                    "free space (journalctl --vacuum-size=200M; old logs in the logs directory)",
                )
            }
        }
        Err(e) => Finding::warn(
            "disk",
            format!("cannot measure free space for {}: {e}", logs.display()),
            "check df -h",
        ),
    }
}

pub(super) fn check_verify(instance: &Instance) -> Finding {
    let unit = instance.unit();
    match crate::systemd::analyze(&["verify", &unit]) {
        Some((ok, text)) => {
            if ok && text.trim().is_empty() {
                Finding::pass("unit", format!("systemd-analyze verify {unit}: clean"))
            } else {
                Finding::fail(
                    "unit",
                    format!(
                        "systemd-analyze verify {unit}: {}",
                        text.trim().replace('\n', "; ")
                    ),
                    format!("fix the drop-ins in {}/", instance.dropin_dir().display()),
                )
            }
        }
        None => Finding::warn(
            "unit",
            format!(
                "the unit was not verified: systemd-analyze is not installed, or did not answer within {} s",
                crate::systemd::ANALYZE_LIMITS.deadline.as_secs()
            ),
            "apt install systemd",
        ),
    }
}

pub(super) fn check_logrotate(paths: &Paths) -> Finding {
    let snippet = paths.host(Path::new("/etc/logrotate.d/jarvis"));
    if !snippet.exists() {
        return Finding::fail(
            "logrotate",
            "/etc/logrotate.d/jarvis is missing: the logs will grow without bound",
            "sudo apt install --reinstall jarvis-supervisor",
        );
    }
    if !nix::unistd::geteuid().is_root() {
        return Finding::warn(
            "logrotate",
            "not checked: logrotate -d needs root",
            "sudo jarvisctl check",
        );
    }
    let mut logrotate = Command::new("logrotate");
    logrotate.arg("-d").arg(&snippet);
    match crate::runner::tool(logrotate) {
        Some(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stderr),
                String::from_utf8_lossy(&o.stdout)
            );
            // logrotate's own complaints start with "error:" (a log may be
            // called jarvis_errors.log).
            let error = text.lines().find(|l| l.trim_start().starts_with("error:"));
            match error {
                None if o.success() => Finding::pass("logrotate", "/etc/logrotate.d/jarvis parses"),
                _ => Finding::fail(
                    "logrotate",
                    format!(
                        "logrotate -d /etc/logrotate.d/jarvis: {}",
                        error
                            .unwrap_or(if o.timed_out() {
                                "did not finish in time"
                            } else {
                                "failed"
                            })
                            .trim()
                    ),
                    "fix the snippet, or reinstall it",
                ),
            }
        }
        None => Finding::fail(
            "logrotate",
            "logrotate is not installed",
            "sudo apt install logrotate",
        ),
    }
}
