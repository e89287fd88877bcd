//! Runs a command on another host over ssh, with a deadline. ssh runs in
//! batch mode (never a password or host-key prompt that would hang a
//! monitor) and otherwise follows the user's own ssh config and known-hosts
//! policy; `-o` options given on the command line are passed through.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// started; the call never waits on the host past that.
pub fn output(
    mut cmd: Command,
    name: &str,
    timeout: Option<Duration>,
    input: Option<Vec<u8>>,
) -> std::io::Result<Outcome> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    // With a deadline, its own process group: a timeout kills ssh and
    // whatever it started (a ProxyCommand), not ssh alone. Without one
    // (a transfer), it stays in ours, so that the operator's Ctrl-C stops it.
    if timeout.is_some() {
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    }
    let mut child = cmd.spawn()?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        });
    }
    let too_big = Arc::new(AtomicBool::new(false));
    let drain = |r: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        let too_big = too_big.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = r {
                // One byte over the bound tells a host that sent too much.
                let _ = r.take(ANSWER_MAX + 1).read_to_end(&mut buf);
            }
            if buf.len() as u64 > ANSWER_MAX {
                buf.truncate(ANSWER_MAX as usize);
                too_big.store(true, Ordering::SeqCst);
            }
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
        rx
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (status, timed_out) = loop {
        if let Some(st) = child.try_wait()? {
            break (st.code(), false);
        }
        let late = deadline.is_some_and(|d| Instant::now() >= d);
        if late || too_big.load(Ordering::SeqCst) {
            // ssh and whatever it started (a ProxyCommand), before ssh is
            // reaped, while the group id is surely still theirs.
            if timeout.is_some() {
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            break (None, late);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A process that ssh left behind may still hold the pipes open: wait
    // for the output only until the deadline (a second past it at most),
    // never for that process.
    let grace = deadline
        .map_or(Duration::ZERO, |d| d.saturating_duration_since(Instant::now()))
        .max(Duration::from_secs(1));
    let t_end = Instant::now() + grace;
    let take = |rx: std::sync::mpsc::Receiver<String>| {
        rx.recv_timeout(t_end.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    };
    let (stdout, stderr) = (take(out), take(err));
    let too_big = too_big.load(Ordering::SeqCst).then(|| {
        format!(
            "{name} sent more than {} MiB of output, far more than any real answer; the command was killed: look at what answers there (its jarvisctl, its shell's startup files)",
            ANSWER_MAX >> 20
        )
    });
    Ok(Outcome {
        status,
        stdout,
        stderr,
        timed_out,
        too_big,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Duration::from_secs(2),
            "true",
        )
        .unwrap();
        let took = t0.elapsed();
        // ssh may give up first (its ConnectTimeout covers the banner) or
        // be killed at the deadline; either way the call ends at once.
        assert!(out.timed_out || out.status == Some(255), "{out:?}");
        assert!(took < Duration::from_secs(5), "returned after {took:?}");
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
