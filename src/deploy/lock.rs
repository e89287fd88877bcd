//! The host's deploy lock: held for a whole deploy session, so that two
//! deploys to one host never interleave; freed when its holder exits,
//! however it exits.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::error::{DeployError, Result};
use super::host_paths::LOCK;
use super::remote::{cannot_run_ssh, last_line, SshSession};
use crate::ssh;

impl SshSession<'_> {
    /// Takes the host's deploy lock, held until the value is dropped: one
    /// ssh session runs `flock -n` around a `cat` that ends when our end of
    /// its stdin closes (at drop, or when this process dies).
    pub fn take_lock(&self) -> Result<Lock> {
        let script = format!("flock -n {LOCK} sh -c 'echo locked; exec cat >/dev/null'");
        let mut cmd = self.command(&script, self.ssh.connect);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(cannot_run_ssh)?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            // One short line is expected: a host's flood is cut off.
            let _ = BufReader::new(stdout.take(4096)).read_line(&mut line);
            let _ = tx.send(line);
        });
        let got = rx.recv_timeout(self.ssh.connect + Duration::from_secs(10));
        if matches!(&got, Ok(l) if l.trim() == "locked") {
            return Ok(Lock { child });
        }
        // At EOF ssh is on its way out with flock's exit code; on a timeout
        // it is stuck and killed.
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st.code(),
                Ok(None) if got.is_ok() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    break child.wait().ok().and_then(|s| s.code());
                }
            }
        };
        let mut err = String::new();
        if let Some(e) = child.stderr.take() {
            let _ = e.take(ssh::ANSWER_MAX).read_to_string(&mut err);
        }
        Err(match status {
            Some(1) => DeployError::Locked,
            Some(255) => DeployError::SshFailed(last_line(&err)),
            _ => DeployError::LockFailed(last_line(&err)),
        })
    }
}

/// The held deploy lock of one host.
pub struct Lock {
    child: Child,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // EOF on the remote cat ends flock's command and frees the lock.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
