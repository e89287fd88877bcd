//! Runs a command on another host over ssh, with a deadline. ssh runs in
//! batch mode (never a password or host-key prompt that would hang a
//! monitor) and otherwise follows the user's own ssh config and known-hosts
//! policy; `-o` options given on the command line are passed through.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::runner;
use jarvis_model::error::{Error, Result};

/// `user@host`, `host`, `user@host:2222` or `user@[::1]:2222`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As the user wrote it, for reports.
    pub name: String,
    /// What ssh is given as the destination.
    pub destination: String,
    pub port: Option<u16>,
}

impl Target {
    pub fn parse(text: &str) -> std::result::Result<Target, String> {
        let t = text.trim();
        if t.is_empty() || t.starts_with('-') || t.chars().any(char::is_whitespace) {
            return Err(format!("{t:?} is not a host: write user@host or user@host:port"));
        }
        let (user, host) = match t.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, t),
        };
        let (host, port) = if let Some(rest) = host.strip_prefix('[') {
            // [v6]:port
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{t:?}: missing ']' after the IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("{t:?}: expected ':port' after ']'")),
            };
            (h, port)
        } else if host.matches(':').count() == 1 {
            let (h, p) = host.split_once(':').unwrap();
            (h, Some(p))
        } else {
            (host, None)
        };
        if host.is_empty() {
            return Err(format!("{t:?} has no host name"));
        }
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{t:?}: {p:?} is not a port number"))
            })
            .transpose()?;
        // ssh would refuse these later; say so now, with the reason (a
        // hosts file is not a place for shell syntax: `a;id`).
        let ok_host = |c: char| c.is_ascii_alphanumeric() || ".-_:%".contains(c);
        if let Some(c) = host.chars().find(|&c| !ok_host(c)) {
            return Err(format!("{t:?}: {c:?} cannot be part of a host name or address"));
        }
        if let Some(c) = user.and_then(|u| {
            u.chars()
                .find(|&c| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
        }) {
            return Err(format!("{t:?}: {c:?} cannot be part of a user name"));
        }
        let destination = match user {
            Some(u) => format!("{u}@{host}"),
            None => host.to_string(),
        };
        Ok(Target {
            name: t.to_string(),
            destination,
            port,
        })
    }
}

/// Reads a hosts file: one target per line; blank lines and `#` comments
/// are skipped.
pub fn read_hosts_file(path: &Path) -> Result<Vec<Target>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read the hosts file", path, e))?;
    let mut hosts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let t = Target::parse(line).map_err(|e| {
            Error::config(path, i + 1, e).with_note("write one user@host or user@host:port per line")
        })?;
        hosts.push(t);
    }
    Ok(hosts)
}

/// The most of a host's answer kept, per stream: far above any real one (a
/// status report is a few KiB, the deploy plan of a big code tree a few
/// MiB). A host that sends more is cut off there, and ssh killed.
pub const ANSWER_MAX: u64 = 16 << 20;

#[derive(Debug)]
pub struct Outcome {
    /// The remote command's exit code; ssh itself exits 255 on its own errors.
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    /// Why the answer was cut off: the host sent more than [`ANSWER_MAX`]
    /// on a stream, and ssh was killed. The error to show.
    pub too_big: Option<String>,
}

/// A cut link noticed in seconds, not at TCP's leisure: for connections
/// that last (a deploy's rsyncs and its shared master).
pub const KEEPALIVE: [&str; 4] = ["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"];

/// The ssh arguments before the remote command: batch mode, the connect
/// timeout, the port and the user's `-o` options.
pub fn args(target: &Target, options: &[String], connect: Duration) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        format!("ConnectTimeout={}", connect.as_secs().max(1)),
    ];
    if let Some(p) = target.port {
        a.extend(["-p".into(), p.to_string()]);
    }
    for o in options {
        a.extend(["-o".into(), o.clone()]);
    }
    a
}

/// `ssh` with [`args`], the destination and `remote`, not yet started.
pub fn command(target: &Target, options: &[String], connect: Duration, remote: &str) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(args(target, options, connect))
        .arg("--")
        .arg(&target.destination)
        .arg(remote);
    cmd
}

/// Runs `remote` on `target` and gives up after `timeout`, killing ssh.
pub fn run(target: &Target, options: &[String], timeout: Duration, remote: &str) -> std::io::Result<Outcome> {
    run_input(target, options, timeout, remote, None)
}

/// [`run`] with `input` written to the remote command's stdin.
pub fn run_input(
    target: &Target,
    options: &[String],
    timeout: Duration,
    remote: &str,
    input: Option<Vec<u8>>,
) -> std::io::Result<Outcome> {
    let cmd = command(target, options, timeout.min(Duration::from_secs(30)), remote);
    output(cmd, &target.name, Some(timeout), input)
}

/// Runs `cmd` (ssh, or rsync over ssh) whose output comes from host `name`:
/// at most [`ANSWER_MAX`] of each stream is kept, and a host that sends more,
/// or gives no answer within `timeout`, has its command killed with all it
/// started; the call never waits on the host past that. Without a timeout
/// (a transfer) it runs as long as it takes: the command stays in the
/// operator's process group, so that Ctrl-C stops it.
pub fn output(
    cmd: Command,
    name: &str,
    timeout: Option<Duration>,
    input: Option<Vec<u8>>,
) -> std::io::Result<Outcome> {
    let opts = runner::Options::operator(ANSWER_MAX as usize).deadline(timeout);
    let ran = runner::run_with(cmd, input.as_deref().unwrap_or_default(), opts)?;
    let too_big = ran.cut.then(|| {
        format!(
            "{name} sent more than {} MiB of output, far more than any real answer; the command was killed: look at what answers there (its jarvisctl, its shell's startup files)",
            ANSWER_MAX >> 20
        )
    });
    Ok(Outcome {
        status: ran.status.and_then(|s| s.code()),
        stdout: String::from_utf8_lossy(&ran.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&ran.stderr).into_owned(),
        timed_out: ran.timed_out(),
        too_big,
    })
}

/// One ssh connection to a host for a whole run (a deploy's dozens of
/// commands and rsyncs): a master this process starts and owns, with
/// stdio closed, that the other ssh calls share through its socket
/// (`ControlMaster=no`: a call made when the master is gone connects on
/// its own, as before). Ended with `-O exit`, then by its pid, when
/// dropped. None of this when the user's options set ControlMaster or
/// ControlPath themselves: theirs win.
pub struct Master {
    child: std::process::Child,
    dir: tempfile::TempDir,
    target: Target,
    options: Vec<String>,
}

impl Master {
    /// The user's own ssh multiplexing, if their options set it.
    fn theirs(options: &[String]) -> bool {
        options.iter().any(|o| {
            let k = o.split(['=', ' ']).next().unwrap_or("").to_ascii_lowercase();
            k == "controlmaster" || k == "controlpath"
        })
    }

    /// Starts the master and waits until its socket is there (or it has
    /// exited: then None, and each call connects on its own and reports
    /// ssh's own error), at most `connect`.
    pub fn start(target: &Target, options: &[String], connect: Duration) -> Option<Master> {
        if Self::theirs(options) {
            return None;
        }
        // Short: a socket path may be 108 bytes, and %C alone is 40.
        let dir = tempfile::Builder::new()
            .prefix("jarvisctl-ssh-")
            .tempdir_in("/tmp")
            .ok()?;
        let socket = dir.path().join("master");
        // Never outlives this run: started through `jarvisctl exec-helper`,
        // which sets the parent-death signal, it ends with the thread that
        // started it, even when jarvisctl is killed.
        let me = std::env::current_exe().ok()?;
        let mut cmd = Command::new(me);
        cmd.args([
            "exec-helper",
            "--ppid",
            &std::process::id().to_string(),
            "--",
            "ssh",
        ])
        .args(args(target, options, connect))
        .args(KEEPALIVE)
        .args(["-M", "-N", "-o", "ControlPersist=no", "-S"])
        .arg(&socket)
        .arg("--")
        .arg(&target.destination)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().ok()?;
        let deadline = std::time::Instant::now() + connect;
        loop {
            if socket.exists() {
                let options = vec![
                    "ControlMaster=no".to_string(),
                    format!("ControlPath={}", socket.display()),
                ];
                return Some(Master {
                    child,
                    dir,
                    target: target.clone(),
                    options,
                });
            }
            if !matches!(child.try_wait(), Ok(None)) || std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The `-o` options that send a call through the master.
    pub fn options(&self) -> &[String] {
        &self.options
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let socket = self.dir.path().join("master");
        let _ = Command::new("ssh")
            .arg("-S")
            .arg(&socket)
            .args(["-O", "exit", "--"])
            .arg(&self.target.destination)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The user's own multiplexing wins: no master of ours then.
    #[test]
    fn a_users_control_master_or_path_is_theirs() {
        assert!(Master::theirs(&["ControlMaster=auto".into()]));
        assert!(Master::theirs(&["controlpath /tmp/%C".into()]));
        assert!(!Master::theirs(&[
            "UserKnownHostsFile=/x".into(),
            "Port=22".into()
        ]));
    }

    #[test]
    fn targets() {
        let t = Target::parse("root@10.0.0.2:2222").unwrap();
        assert_eq!((t.destination.as_str(), t.port), ("root@10.0.0.2", Some(2222)));
        let t = Target::parse("vps1").unwrap();
        assert_eq!((t.destination.as_str(), t.port), ("vps1", None));
        let t = Target::parse("me@[::1]:22").unwrap();
        assert_eq!((t.destination.as_str(), t.port), ("me@::1", Some(22)));
        let t = Target::parse("me@::1").unwrap();
        assert_eq!((t.destination.as_str(), t.port), ("me@::1", None));
        assert!(Target::parse("root@host:0").is_err());
        assert!(Target::parse("root@host:ssh").is_err());
        assert!(Target::parse("-oProxyCommand=x").is_err());
        assert!(Target::parse("root@").is_err());
        assert!(Target::parse("a b").is_err());
        // Issue 13, finding 18: shell syntax is refused with the reason.
        for bad in ["a;id", "root@a;id", "r$(id)@a", "a|b", "a`id`", "root@a&b"] {
            let e = Target::parse(bad).unwrap_err();
            assert!(e.contains("cannot be part of"), "{bad}: {e}");
        }
        assert!(Target::parse("me@[fe80::1%eth0]:22").is_ok());
    }

    /// Issue 13, finding 10: a ProxyCommand that never exits held ssh's
    /// pipes, and the call returned 20 s after its 2 s timeout.
    #[test]
    fn the_timeout_holds_whatever_ssh_started() {
        let t = Target::parse("root@jarvis-test.invalid").unwrap();
        let t0 = Instant::now();
        let out = run(
            &t,
            &["ProxyCommand=sh -c 'sleep 30 & sleep 30'".to_string()],
            Duration::from_millis(500),
            "true",
        )
        .unwrap();
        let took = t0.elapsed();
        // ssh may give up first (its ConnectTimeout covers the banner) or
        // be killed at the deadline; either way the call ends at once.
        assert!(out.timed_out || out.status == Some(255), "{out:?}");
        assert!(took < Duration::from_secs(3), "returned after {took:?}");
    }

    /// A host that answers with more than any real answer (here 1 GiB,
    /// then silence) is cut off at the bound, at once, with all it started.
    #[test]
    fn an_answer_over_the_bound_is_cut_off_and_its_command_killed() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "yes | head -c 1073741824; exec sleep 30"]);
        let t0 = Instant::now();
        let out = output(cmd, "root@evil", Some(Duration::from_secs(60)), None).unwrap();
        let took = t0.elapsed();
        let why = out.too_big.unwrap_or_default();
        assert!(
            why.starts_with("root@evil sent more than 16 MiB of output"),
            "{why}"
        );
        assert!(out.stdout.len() as u64 <= ANSWER_MAX && !out.timed_out);
        assert!(took < Duration::from_secs(10), "returned after {took:?}");
        // Under the bound, the answer is whole.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf 'a%.0s' $(seq 1 1000); echo err >&2"]);
        let out = output(cmd, "h", None, None).unwrap();
        assert_eq!(
            (out.stdout.len(), out.stderr.as_str(), out.status),
            (1000, "err\n", Some(0))
        );
        assert!(out.too_big.is_none());
    }

    #[test]
    fn hosts_file_names_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hosts");
        std::fs::write(&f, "# fleet\nroot@a:2201\n\nroot@b # second\nroot@c:x\n").unwrap();
        let e = read_hosts_file(&f).unwrap_err().to_string();
        assert!(e.contains("hosts:5:") && e.contains("not a port"), "{e}");
        std::fs::write(&f, "# fleet\nroot@a:2201\n\nroot@b # second\n").unwrap();
        let h = read_hosts_file(&f).unwrap();
        assert_eq!(
            h.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["root@a:2201", "root@b"]
        );
    }
}
