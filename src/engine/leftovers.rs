//! Processes of a previous `jarvisctl run` that was killed with `-9`.
//!
//! The program itself dies with its engine (parent-death signal), but its
//! own children do not. Every start writes `run.group`: the process group
//! and the start's `INVOCATION_ID` (which systemd also sets). The next
//! `jarvisctl run` ends the live members of that group that carry that
//! INVOCATION_ID before it starts anything, so a stale pid number reused by
//! an unrelated process is never signalled.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::say;

pub const GROUP_FILE: &str = "run.group";

/// A fresh 128-bit id, as hex, like systemd's INVOCATION_ID.
pub fn invocation_id() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn record(dir: &Path, pgid: Pid, id: &str) {
    let _ = fs::write(dir.join(GROUP_FILE), format!("{pgid} {id}\n"));
}

pub fn forget(dir: &Path) {
    let _ = fs::remove_file(dir.join(GROUP_FILE));
}

/// Live (not zombie) members of `pgid` whose environment has `marker`.
fn members(pgid: i32, marker: &[u8]) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let base = PathBuf::from("/proc").join(pid.to_string());
        let Ok(stat) = fs::read_to_string(base.join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // state, ppid, pgrp
        if f.len() < 3 || f[0] == "Z" || f[0] == "X" || f[2] != pgid.to_string() {
            continue;
        }
        let Ok(env) = fs::read(base.join("environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|v| v == marker) {
            out.push(pid);
        }
    }
    out
}

/// End what is left of the previous run: SIGTERM, then SIGKILL after `grace`.
pub fn end_previous(dir: &Path, grace: Duration) {
    let Ok(text) = fs::read_to_string(dir.join(GROUP_FILE)) else {
        return;
    };
    let mut words = text.split_whitespace();
    let (Some(Ok(pgid)), Some(id)) = (words.next().map(str::parse::<i32>), words.next()) else {
        forget(dir);
        return;
    };
    let marker = format!("INVOCATION_ID={id}").into_bytes();
    let left = members(pgid, &marker);
    if left.is_empty() {
        forget(dir);
        return;
    }
    say!(
        "{} process(es) of the previous run are still alive (group {pgid}, pids {:?}; was jarvisctl run killed?): SIGTERM, then SIGKILL after {}s",
        left.len(),
        left,
        grace.as_secs_f64()
    );
    for &pid in &left {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
    }
    // A one-time wait at start, before anything is supervised.
    let t0 = Instant::now();
    while !members(pgid, &marker).is_empty() && t0.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(50));
    }
    let still = members(pgid, &marker);
    if !still.is_empty() {
        say!("pids {still:?} of the previous run did not exit in time; sending SIGKILL");
        for &pid in &still {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    forget(dir);
}
