//! One host's side of a deploy, over ssh: what the host has, the lock, the
//! deploy directory and its meta, package installs, restarts and the
//! health wait.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::hosts::Host;
use super::plan::{sh_quote, DEPLOYS, LOCK, PACKAGES};
use crate::ssh;

/// How long one short remote command may take.
const SHORT: Duration = Duration::from_secs(60);
/// A package install or a restart.
const LONG: Duration = Duration::from_secs(300);

/// An ssh connection to one host, with the user's options.
pub struct Session<'a> {
    pub host: &'a Host,
    pub options: &'a [String],
    pub connect: Duration,
}

/// What the host has: its package format, init, installed version, tools.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    pub pm: String,
    pub init: String,
    pub version: Option<String>,
    pub jarvis_user: bool,
    pub rsync: bool,
    pub flock: bool,
}

const PROBE: &str = r#"if command -v dpkg-query >/dev/null 2>&1; then echo pm=dpkg; v=$(dpkg-query -W -f='${Status} ${Version}' jarvis-supervisor 2>/dev/null | awk '$3=="installed"{print $4}');
elif command -v rpm >/dev/null 2>&1; then echo pm=rpm; v=$(rpm -q --qf '%{VERSION}-%{RELEASE}' jarvis-supervisor 2>/dev/null) || v=;
else echo pm=none; v=; fi
echo "version=$v"
if [ -d /run/systemd/system ]; then echo init=systemd; else echo init=sysvinit; fi
id jarvis >/dev/null 2>&1 && echo user=yes
command -v rsync >/dev/null 2>&1 && echo rsync=yes
command -v flock >/dev/null 2>&1 && echo flock=yes
exit 0"#;

impl Session<'_> {
    pub fn name(&self) -> &str {
        &self.host.target.name
    }

    pub fn ssh_args(&self) -> Vec<String> {
        let mut a = ssh::args(&self.host.target, self.options, self.connect);
        // A cut link is noticed in seconds, not at TCP's leisure.
        a.extend(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"].map(String::from));
        a
    }

    /// Runs `script` with sh on the host; Err carries the reason.
    pub fn sh_input(
        &self,
        script: &str,
        timeout: Duration,
        input: Option<Vec<u8>>,
    ) -> Result<String, String> {
        let remote = format!("LC_ALL=C sh -c {}", sh_quote(script));
        let out = ssh::run_input(&self.host.target, self.options, timeout, &remote, input)
            .map_err(|e| format!("cannot run ssh: {e} (install openssh-client)"))?;
        if out.timed_out {
            return Err(format!("no answer within {} s", timeout.as_secs()));
        }
        match out.status {
            Some(0) => Ok(out.stdout),
            Some(255) => Err(format!("ssh failed: {}", last_line(&out.stderr))),
            Some(c) => Err(format!(
                "exited {c}: {}",
                last_line(&format!("{}\n{}", out.stdout, out.stderr))
            )),
            None => Err("ssh was killed".into()),
        }
    }

    pub fn sh(&self, script: &str, timeout: Duration) -> Result<String, String> {
        self.sh_input(script, timeout, None)
    }

    pub fn probe(&self) -> Result<Facts, String> {
        let out = self.sh(PROBE, SHORT)?;
        let mut f = Facts::default();
        for line in out.lines() {
            match line.split_once('=') {
                Some(("pm", v)) => f.pm = v.into(),
                Some(("init", v)) => f.init = v.into(),
                Some(("version", v)) if !v.is_empty() => f.version = Some(v.into()),
                Some(("user", _)) => f.jarvis_user = true,
                Some(("rsync", _)) => f.rsync = true,
                Some(("flock", _)) => f.flock = true,
                _ => {}
            }
        }
        Ok(f)
    }

    /// Takes the host's deploy lock, held until the value is dropped: one
    /// ssh session runs `flock -n` around a `cat` that ends when our end of
    /// its stdin closes (at drop, or when this process dies).
    pub fn lock(&self) -> Result<Lock, String> {
        let script = format!("flock -n {LOCK} sh -c 'echo locked; exec cat >/dev/null'");
        let mut cmd = ssh::command(&self.host.target, self.options, self.connect, &script);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("cannot run ssh: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let got = rx.recv_timeout(self.connect + Duration::from_secs(10));
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
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        Err(match status {
            Some(1) => format!(
                "another deploy is running on this host (it holds {LOCK}); nothing was changed: try again when it ends"
            ),
            Some(255) => format!("ssh failed: {}", last_line(&err)),
            _ => format!("cannot take the deploy lock {LOCK}: {}", last_line(&err)),
        })
    }

    /// Makes a new deploy directory, `base` or `base-N` when taken; returns
    /// the id.
    pub fn new_deploy_dir(&self, base: &str) -> Result<String, String> {
        let script = format!(
            "mkdir -p -m 700 {DEPLOYS} {PACKAGES}; id={base}; i=0; \
             while ! mkdir -m 700 {DEPLOYS}/$id 2>/dev/null; do i=$((i+1)); id={base}-$i; \
             [ $i -lt 100 ] || exit 1; done; echo $id"
        );
        Ok(self.sh(&script, SHORT)?.trim().to_string())
    }

    pub fn write_meta(&self, id: &str, meta: &Value) -> Result<(), String> {
        let d = format!("{DEPLOYS}/{id}");
        let body = serde_json::to_vec_pretty(meta).unwrap_or_default();
        self.sh_input(
            &format!("cat > {d}/meta.json.tmp && mv {d}/meta.json.tmp {d}/meta.json"),
            SHORT,
            Some(body),
        )
        .map(|_| ())
    }

    /// Every deploy kept on the host, oldest first: (id, meta).
    pub fn history(&self) -> Result<Vec<(String, Value)>, String> {
        let script = format!(
            "cd {DEPLOYS} 2>/dev/null || exit 0; for d in */; do id=${{d%/}}; \
             printf '%s\\t' \"$id\"; tr -d '\\n' < \"$id/meta.json\" 2>/dev/null || printf '{{}}'; echo; done"
        );
        let out = self.sh(&script, SHORT)?;
        let mut rows: Vec<(String, Value)> = out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(id, _)| super::plan::valid_id(id))
            .map(|(id, m)| (id.to_string(), serde_json::from_str(m).unwrap_or(Value::Null)))
            .collect();
        rows.sort_by_key(|(id, _)| super::plan::order(id));
        Ok(rows)
    }

    /// Deletes all but the newest `keep` deploys (never one in progress).
    pub fn prune(&self, keep: usize) -> Result<Vec<String>, String> {
        let rows = self.history()?;
        let ids: Vec<String> = rows
            .iter()
            .filter(|(_, m)| m["status"] != "in-progress")
            .map(|r| r.0.clone())
            .collect();
        let gone = super::plan::prune(&ids, keep);
        if !gone.is_empty() {
            let list: Vec<String> = gone.iter().map(|id| format!("{DEPLOYS}/{id}")).collect();
            self.sh(&format!("rm -rf -- {}", list.join(" ")), SHORT)?;
        }
        Ok(gone)
    }

    /// A kept package file for `version`, if the host has one.
    pub fn kept_package(&self, name: &str, version: &str, ext: &str) -> Result<Option<String>, String> {
        let apt = version.replace(':', "%3a");
        let script = format!(
            "for f in {PACKAGES}/{n}_{v}.{ext} /var/cache/apt/archives/{n}_{a}_*.{ext}; do \
             if [ -f \"$f\" ]; then echo \"$f\"; break; fi; done",
            n = sh_quote(name),
            v = sh_quote(version),
            a = sh_quote(&apt),
        );
        let out = self.sh(&script, SHORT)?;
        Ok(out.lines().next().map(str::to_string).filter(|s| !s.is_empty()))
    }

    pub fn install(&self, pm: &str, file: &str) -> Result<(), String> {
        let f = sh_quote(file);
        let script = match pm {
            "rpm" => format!("rpm -U --oldpackage --replacepkgs {f} 2>&1"),
            _ => format!("DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold {f} 2>&1"),
        };
        self.sh(&script, LONG)
            .map(|_| ())
            .map_err(|e| format!("install of {file} failed: {e}"))
    }

    pub fn restart(&self, init: &str) -> Result<(), String> {
        // Under systemd, stop then start rather than restart: the unit's
        // crash-loop backoff keeps its count across restarts but not across
        // a stop, and a deploy is not a crash.
        let script = if init == "systemd" {
            "systemctl stop jarvis-supervisor.service 2>&1 && systemctl start jarvis-supervisor.service 2>&1"
        } else {
            "/etc/init.d/jarvis-supervisor restart 2>&1"
        };
        self.sh(script, LONG).map(|_| ()).map_err(|e| {
            // systemctl only says "see systemctl status": say what status says.
            match self.status() {
                Ok(st) => format!("restart failed: {}{}", describe(&st), last_error(&st)),
                Err(_) => format!("restart failed: {e}"),
            }
        })
    }

    fn status(&self) -> Result<Value, String> {
        let out = ssh::run(
            &self.host.target,
            self.options,
            SHORT,
            "LC_ALL=C jarvisctl status --json",
        )
        .map_err(|e| format!("cannot run ssh: {e}"))?;
        serde_json::from_str(out.stdout.trim()).map_err(|_| match out.status {
            Some(255) => format!("ssh failed: {}", last_line(&out.stderr)),
            Some(127) => "jarvisctl is not installed there".into(),
            _ => format!("no status report: {}", last_line(&out.stderr)),
        })
    }

    /// Waits for verdict OK and state active within `ready`, then requires
    /// both, with the same main pid, for `settle`. Returns the pid.
    pub fn wait_healthy(&self, ready: Duration, settle: Duration) -> Result<u64, String> {
        let t0 = Instant::now();
        let mut up: Option<(u64, Instant)> = None;
        let mut last;
        loop {
            match self.status() {
                Ok(st) => {
                    let ok = st["verdict"] == "OK" && st["state"] == "active";
                    let pid = st["main_pid"].as_u64().unwrap_or(0);
                    last = describe(&st);
                    // Restarting or failed after our own (re)start: the bot
                    // crashed; waiting longer would only repeat it.
                    if up.is_none() && (st["state"] == "restarting" || st["state"] == "failed") {
                        return Err(format!(
                            "the bot crashed after the restart: {last}{}",
                            last_error(&st)
                        ));
                    }
                    match (up, ok) {
                        (None, true) => up = Some((pid, Instant::now())),
                        (Some((p, _)), true) if p == pid => {}
                        (Some((p, since)), _) => {
                            return Err(format!(
                                "the bot became ready (pid {p}) but did not stay up for {} s: after {:.0} s {last}",
                                settle.as_secs(),
                                since.elapsed().as_secs_f64()
                            ));
                        }
                        (None, false) => {}
                    }
                }
                Err(e) => last = e,
            }
            if let Some((pid, since)) = up {
                if since.elapsed() >= settle {
                    return Ok(pid);
                }
            } else if t0.elapsed() >= ready {
                return Err(format!("not ready within {} s: {last}", ready.as_secs()));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn describe(st: &Value) -> String {
    let reasons: Vec<&str> = st["reasons"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut s = format!(
        "state {}, verdict {}",
        st["state"].as_str().unwrap_or("?"),
        st["verdict"].as_str().unwrap_or("?")
    );
    if !reasons.is_empty() {
        s.push_str(&format!(" ({})", reasons.join("; ")));
    }
    s
}

/// The last error line that `status` found (values of .env masked by
/// status itself), as "; last error: ...".
fn last_error(st: &Value) -> String {
    st["errors"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(Value::as_str)
        .map(|l| format!("; last error: {}", l.trim()))
        .unwrap_or_default()
}

pub fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_string()
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
