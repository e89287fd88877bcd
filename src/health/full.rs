//! The filesystems the running service writes, named when one is full
//! (issue 27, acceptance 4): `/run` (the restart backoff's state; the
//! fallback engine's state and log), and the bot's `logs/`. The package's
//! records under /var/lib are judged in `record`. The bot runs on through
//! each; what it loses meanwhile is said here, with what to free.

use std::path::{Path, PathBuf};

use super::record::STORE_LOW;
use super::{raise_host, Status, Verdict};
use crate::control::state_dir;
use jarvis_model::filesystem;
use jarvis_model::paths::Paths;
use jarvis_model::state::{now_unix, Read, StateFile};
use jarvis_model::unit::Unit;

/// Which of the service's filesystems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The runtime directory (and `jarvisctl run`'s state directory).
    Runtime,
    /// The bot's logs directory.
    Logs,
}

/// The output lines `jarvisctl run` dropped while the logs could not be
/// written: how many, and for how many seconds now.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Lost {
    lines: u64,
    for_s: f64,
}

/// A WARNING for each of the service's filesystems that is full: the host's
/// (the bot runs on), so not in the bot's verdict that a deploy judges.
pub(super) fn check(paths: &Paths, unit: Option<&Unit>, fallback: bool, st: &mut Status) {
    let Some(u) = unit else { return };
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut runtime: Vec<PathBuf> = u
        .last("Service", "RuntimeDirectory")
        .and_then(|d| d.split_whitespace().next().map(str::to_string))
        .map(|d| paths.host(Path::new("/run")).join(d))
        .into_iter()
        .collect();
    if fallback {
        runtime.insert(0, state_dir(paths));
    }
    let lost = if fallback { lost_lines(paths) } else { None };
    let logs = u.logs_dir().map(|d| paths.host(&d));
    let dirs = runtime
        .into_iter()
        .map(|d| (Kind::Runtime, d))
        .chain(logs.map(|d| (Kind::Logs, d)));
    for (kind, dir) in dirs {
        let probe = existing(&dir);
        let Some((free, _)) = filesystem::space(&probe) else {
            continue;
        };
        let mount = filesystem::mount_of(&probe).map_or_else(|| probe.clone(), |(mp, _)| mp);
        // One finding per filesystem: /run holds both runtime directories.
        if seen.contains(&mount) {
            continue;
        }
        seen.push(mount.clone());
        let lost = if kind == Kind::Logs { lost } else { None };
        if let Some(why) = finding(kind, &dir, &filesystem::describe(&probe), &mount, free, lost) {
            raise_host(st, Verdict::Warning, why);
        }
    }
}

/// `dir`, or the nearest directory above it that exists (systemd removes
/// the runtime directory while the unit is stopped).
fn existing(dir: &Path) -> PathBuf {
    let mut probe = dir.to_path_buf();
    while !probe.exists() && probe.pop() {}
    probe
}

/// From `jarvisctl run`'s state: the lines lost while its logs still fail.
fn lost_lines(paths: &Paths) -> Option<Lost> {
    let Read::Ok(s) = StateFile::check(&state_dir(paths)) else {
        return None;
    };
    let since = s.output_lost_since_unix?;
    Some(Lost {
        lines: s.output_lines_lost,
        for_s: (now_unix() - since).max(0.0),
    })
}

/// The finding for the filesystem of `dir` (`described` as
/// `filesystem::describe` puts it, mounted at `mount`) with `free` bytes
/// left, if that is full.
fn finding(
    kind: Kind,
    dir: &Path,
    described: &str,
    mount: &Path,
    free: u64,
    lost: Option<Lost>,
) -> Option<String> {
    if free >= STORE_LOW {
        return None;
    }
    let what = match kind {
        Kind::Runtime => format!(
            "the service's runtime state in {} cannot be replaced: the bot still starts, and a restart waits the longest backoff delay when its record is lost",
            dir.display()
        ),
        Kind::Logs => {
            let mut s = format!("the bot's log files in {} cannot grow", dir.display());
            if let Some(l) = lost {
                s += &format!(
                    ", and jarvisctl run counted and dropped {} output line(s) of it in the last {:.0} s",
                    l.lines, l.for_s
                );
            }
            s
        }
    };
    Some(format!(
        "{described}: {what}; free space there (what is big: du -xh --max-depth=2 {} | sort -h | tail)",
        mount.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_run_or_logs_filesystem_is_named_with_what_to_free() {
        let run = finding(
            Kind::Runtime,
            Path::new("/run/jarvis-supervisor"),
            "the filesystem /run (tmpfs) has 0 B of 8.0 MiB free",
            Path::new("/run"),
            0,
            None,
        )
        .expect("0 B free is full");
        assert!(
            run.starts_with("the filesystem /run (tmpfs) has 0 B of 8.0 MiB free: the service's runtime state in /run/jarvis-supervisor"),
            "{run}"
        );
        assert!(run.contains("du -xh --max-depth=2 /run "), "{run}");

        let logs = finding(
            Kind::Logs,
            Path::new("/home/jarvis/Jarvis/logs"),
            "the filesystem /home/jarvis/Jarvis/logs (tmpfs) has 4.0 KiB of 2.0 MiB free",
            Path::new("/home/jarvis/Jarvis/logs"),
            4096,
            Some(Lost {
                lines: 522,
                for_s: 12.4,
            }),
        )
        .expect("4 KiB free is full");
        assert!(
            logs.contains("the bot's log files in /home/jarvis/Jarvis/logs cannot grow")
                && logs.contains("dropped 522 output line(s) of it in the last 12 s"),
            "{logs}"
        );
        assert!(
            logs.contains("du -xh --max-depth=2 /home/jarvis/Jarvis/logs "),
            "{logs}"
        );
    }

    #[test]
    fn a_filesystem_with_room_is_not_named() {
        for kind in [Kind::Runtime, Kind::Logs] {
            assert_eq!(
                finding(kind, Path::new("/x"), "fs", Path::new("/"), STORE_LOW, None),
                None
            );
        }
    }

    #[test]
    fn a_missing_directory_is_judged_by_the_one_above() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(existing(&d.path().join("gone/deeper")), d.path());
    }
}
