//! Pieces every integration test crate uses: the built binary, the repo's
//! files, a command's whole output, and the service user's side of an
//! attack. Each crate uses part of it.
#![allow(dead_code)]

pub mod host;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_jarvisctl");

/// The jarvisctl that root's attack runs use: `$JARVIS_JARVISCTL` (the
/// release build that the packages ship, set by `cargo xtask test`), else
/// this build's. A million-line `.env` takes a debug build 20 to 35 s per
/// command, the release build a fraction of that.
pub fn bin_under_attack() -> (PathBuf, &'static str) {
    match std::env::var_os("JARVIS_JARVISCTL") {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "$JARVIS_JARVISCTL = {} does not exist", p.display());
            (p, "release build")
        }
        None => (PathBuf::from(BIN), "debug build"),
    }
}
/// `nobody`: the service user's stand-in in the root-only tests.
pub const NOBODY: u32 = 65534;

pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// stdout then stderr, as one text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Fails loudly, saying why, when the test does not run as root.
pub fn require_root(why: &str) {
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1);
    assert_eq!(uid, 0, "this test needs root: {why}");
}

/// `sh -c script` as `nobody`, to spawn or run: the attacker's side.
pub fn nobody_sh(script: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "sh",
        "-c",
    ])
    .arg(script);
    c
}

/// Runs `script` as `nobody`; its failure fails the test.
pub fn as_nobody(script: &str) {
    let out = nobody_sh(script).output().expect("setpriv (util-linux)");
    assert!(
        out.status.success(),
        "the attacker's step failed: {script}: {}",
        text(&out)
    );
}

/// Runs `cmd` under `/usr/bin/time`: its output, its peak resident memory
/// in MiB (the kernel's count, from wait4) and its wall time in seconds.
/// Killed with all it started, failing the test, after `limit`.
pub fn measured(cmd: &Command, limit: std::time::Duration) -> (Output, f64, f64) {
    use nix::sys::signal::{killpg, Signal};
    use std::process::Stdio;
    let rss = tempfile::NamedTempFile::new().unwrap();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(rss.path())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    std::os::unix::process::CommandExt::process_group(&mut timed, 0);
    let t0 = std::time::Instant::now();
    let child = timed
        .spawn()
        .expect("/usr/bin/time (apt-get install time) measures the peak memory");
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let watchdog = std::thread::spawn(move || {
        while t0.elapsed() < limit {
            std::thread::sleep(std::time::Duration::from_millis(50));
            if killpg(pgid, None).is_err() {
                return false;
            }
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        true
    });
    let out = child.wait_with_output().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    // Whatever it left behind in its group.
    let _ = killpg(pgid, Signal::SIGKILL);
    let all = text(&out);
    assert!(
        !watchdog.join().unwrap(),
        "{cmd:?} still ran after {limit:?}; killed. It said:\n{}",
        &all[all.len().saturating_sub(3000)..]
    );
    let kib: f64 = std::fs::read_to_string(rss.path())
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory from /usr/bin/time: {all}"));
    (out, kib / 1024.0, secs)
}

/// No ESC, BEL, CR or C1 CSI of a planted string reached the terminal
/// through `out`'s stdout or stderr.
pub fn assert_defused(what: &str, out: &Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        for c in ['\u{1b}', '\u{7}', '\r', '\u{9b}'] {
            assert!(
                !text.contains(c),
                "{what}: {c:?} reached the terminal on {stream}:\n{text:?}"
            );
        }
    }
}
