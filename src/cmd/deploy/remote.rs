//! One host's side of a deploy, over ssh: what the host has, the lock, the
//! deploy directory and its meta, package installs, restarts and the
//! health wait.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::hosts::Host;
use super::plan::{sh_quote, CURRENT, DEPLOYS, LOCK, PACKAGES, STEP_LOCK, WHEELHOUSES};
use crate::python::{DEPLOY_HOST, DEPLOY_HOST_LOADER};
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

/// What the host has: its package format, init, installed version, tools,
/// and, from its installed unit and drop-ins, who runs the bot and where
/// its code lives.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    pub pm: String,
    pub init: String,
    pub version: Option<String>,
    pub rsync: bool,
    pub flock: bool,
    pub python: bool,
    /// The unit that runs the code, e.g. `jarvis-supervisor.service`.
    pub unit: String,
    /// The service user and group (`User=`, `Group=`), as `user:group`.
    pub owner: String,
    /// The code root (`WorkingDirectory=`).
    pub code_dir: String,
}

/// Marks the start of a unit file in the probe's output.
const FILE_MARK: &str = "@@jarvis-deploy-file ";

const PROBE: &str = r#"if command -v dpkg-query >/dev/null 2>&1; then pm=dpkg; v=$(dpkg-query -W -f='${Status} ${Version}' jarvis-supervisor 2>/dev/null | awk '$3=="installed"{print $4}'); l=$(dpkg-query -L jarvis-supervisor 2>/dev/null);
elif command -v rpm >/dev/null 2>&1; then pm=rpm; v=$(rpm -q --qf '%{VERSION}-%{RELEASE}' jarvis-supervisor 2>/dev/null) || v=; l=$(rpm -ql jarvis-supervisor 2>/dev/null);
else pm=none; v=; l=; fi
echo "pm=$pm"
echo "version=$v"
if [ -d /run/systemd/system ]; then echo init=systemd; else echo init=sysvinit; fi
command -v rsync >/dev/null 2>&1 && echo rsync=yes
command -v flock >/dev/null 2>&1 && echo flock=yes
command -v python3 >/dev/null 2>&1 && echo python=yes
for n in $( (echo jarvis-supervisor.service; printf '%s
' "$l" | sed -n 's|.*/systemd/system/\([^/]*\.service\)$||p') | sort -u); do
  for d in /lib/systemd/system /usr/lib/systemd/system /run/systemd/system /etc/systemd/system; do
    for f in "$d/$n" "$d/$n.d"/*.conf; do
      [ -f "$f" ] || continue
      echo "@@jarvis-deploy-file $f"; cat "$f"; echo
    done
  done
done
exit 0"#;

/// Parses the probe's output: the facts, then the unit chosen from the
/// files it printed.
pub fn parse_probe(out: &str) -> Result<Facts, String> {
    let mut f = Facts::default();
    let mut files: Vec<(String, String)> = Vec::new();
    for line in out.lines() {
        if let Some(path) = line.strip_prefix(FILE_MARK) {
            files.push((path.to_string(), String::new()));
            continue;
        }
        if let Some((_, body)) = files.last_mut() {
            body.push_str(line);
            body.push('\n');
            continue;
        }
        match line.split_once('=') {
            Some(("pm", v)) => f.pm = v.into(),
            Some(("init", v)) => f.init = v.into(),
            Some(("version", v)) if !v.is_empty() => f.version = Some(v.into()),
            Some(("rsync", _)) => f.rsync = true,
            Some(("flock", _)) => f.flock = true,
            Some(("python", _)) => f.python = true,
            _ => {}
        }
    }
    let (unit, owner, code) = host_unit(&files)?;
    f.unit = unit;
    f.owner = owner;
    f.code_dir = code;
    Ok(f)
}

/// The unit among `files` that runs the code (it has a
/// `WorkingDirectory=`), read with the same parser and precedence as
/// `check` and `run`: (name, "user:group", code root).
fn host_unit(files: &[(String, String)]) -> Result<(String, String, String), String> {
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let mut names: Vec<String> = Vec::new();
    for (path, body) in files {
        let rel = path.trim_start_matches('/');
        if rel.contains("..") {
            continue;
        }
        let dest = tmp.path().join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&dest, body).map_err(|e| e.to_string())?;
        let name = rel.rsplit('/').next().unwrap_or("");
        if name.ends_with(".service") && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    let paths = jarvis_model::paths::Paths::rooted(tmp.path());
    let mut found = Vec::new();
    for name in &names {
        let unit = jarvis_model::unit::Unit::load_named(&paths, name).map_err(|e| e.to_string())?;
        if let Some(wd) = unit.working_directory() {
            let owner = format!("{}:{}", unit.user(), unit.group().unwrap_or_default());
            found.push((
                name.clone(),
                owner,
                wd.path.to_string_lossy().trim_end_matches('/').to_string(),
            ));
        }
    }
    match found.len() {
        0 => Err(format!(
            "no installed unit with a WorkingDirectory= (looked at {}): install the package first \
             (apt install ./jarvis-supervisor_*.deb), then deploy",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )),
        1 => Ok(found.remove(0)),
        _ => found
            .iter()
            .position(|(n, _, _)| n == jarvis_model::paths::UNIT)
            .map(|i| found.remove(i))
            .ok_or_else(|| {
                format!(
                    "several units run code ({}): deploy does not know which one to use",
                    found.iter().map(|f| f.0.as_str()).collect::<Vec<_>>().join(", ")
                )
            }),
    }
}

/// flock's exit code when the step lock stayed taken.
const BUSY: i32 = 75;

fn busy(waited: Duration) -> String {
    format!(
        "another deploy step still holds {STEP_LOCK} on the host after {} s (one cut off earlier may \
         still be finishing there); try again when it ends",
        waited.as_secs()
    )
}

/// `cmd` as a step that changes the host: under the step lock, SIGHUP
/// ignored, its output in a file rather than the connection (a write to a
/// cut connection would kill it half-way), printed at the end. The lock's
/// descriptor is not passed on: a daemon that `cmd` starts must not hold it.
fn stepped(cmd: &str) -> String {
    format!(
        "trap '' HUP PIPE; log=$(mktemp); flock -o -E {BUSY} -w 600 {STEP_LOCK} sh -c {} > \"$log\" 2>&1 </dev/null; \
         rc=$?; cat \"$log\"; rm -f \"$log\"; [ $rc != {BUSY} ] || echo {}; exit $rc",
        sh_quote(cmd),
        sh_quote(&busy(Duration::from_secs(600)))
    )
}

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
        if let Some(why) = out.too_big {
            return Err(why);
        }
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
        parse_probe(&self.sh(PROBE, SHORT)?)
    }

    /// Runs the host worker (`deploy_host.py ARGS`, with `data` after it on stdin)
    /// as root, under the host's step lock: a step cut off from its client
    /// goes on to its end, and the next step waits for it. SIGHUP is
    /// ignored for the same reason. Returns the worker's JSON and exit code
    /// (0 done, 1 verify found differences, 2 error, 3 conflicts).
    pub fn worker(&self, args: &[String], data: &[u8], timeout: Duration) -> Result<(Value, i32), String> {
        let script = format!(
            "trap '' HUP PIPE; exec flock -o -E {BUSY} -w {} {STEP_LOCK} python3 -c {} {} {}",
            timeout.as_secs(),
            sh_quote(DEPLOY_HOST_LOADER),
            DEPLOY_HOST.len(),
            args.iter().map(|a| sh_quote(a)).collect::<Vec<_>>().join(" ")
        );
        let remote = format!("LC_ALL=C sh -c {}", sh_quote(&script));
        let mut input = DEPLOY_HOST.as_bytes().to_vec();
        input.extend_from_slice(data);
        let out = ssh::run_input(
            &self.host.target,
            self.options,
            timeout + SHORT,
            &remote,
            Some(input),
        )
        .map_err(|e| format!("cannot run ssh: {e} (install openssh-client)"))?;
        if let Some(why) = out.too_big {
            return Err(why);
        }
        if out.timed_out {
            return Err(format!("no answer within {} s", timeout.as_secs()));
        }
        let code = match out.status {
            Some(255) => return Err(format!("ssh failed: {}", last_line(&out.stderr))),
            Some(BUSY) => return Err(busy(timeout)),
            Some(c) => c,
            None => return Err("ssh was killed".into()),
        };
        let v: Value = serde_json::from_str(out.stdout.lines().last().unwrap_or("")).map_err(|_| {
            format!(
                "the host's deploy step gave no report (exit {code}): {}",
                last_line(&format!("{}\n{}", out.stdout, out.stderr))
            )
        })?;
        if code == 2 {
            return Err(v["error"]
                .as_str()
                .unwrap_or("the host's deploy step failed")
                .to_string());
        }
        Ok((v, code))
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
            // One short line is expected: a host's flood is cut off.
            let _ = BufReader::new(stdout.take(4096)).read_line(&mut line);
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
        if let Some(e) = child.stderr.take() {
            let _ = e.take(ssh::ANSWER_MAX).read_to_string(&mut err);
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

    /// Deletes all but the newest `keep` deploys. Never the one in effect
    /// (its manifest says what the host's code is), nor one in progress.
    /// The history holds only shipped code and the deploy's own records:
    /// nothing the bot wrote is ever in it.
    pub fn prune(&self, keep: usize) -> Result<Vec<String>, String> {
        let rows = self.history()?;
        let current = self.current()?;
        let ids: Vec<String> = rows
            .iter()
            .filter(|(id, m)| m["status"] != "in-progress" && Some(id) != current.as_ref())
            .map(|r| r.0.clone())
            .collect();
        // The one in effect counts as one of the kept.
        let keep = if current.is_some() {
            keep.saturating_sub(1)
        } else {
            keep
        };
        let mut gone = super::plan::prune(&ids, keep);
        if keep == 0 {
            gone = ids;
        }
        if !gone.is_empty() {
            let list: Vec<String> = gone.iter().map(|id| format!("{DEPLOYS}/{id}")).collect();
            self.sh(&format!("rm -rf -- {}", list.join(" ")), SHORT)?;
            // A wheelhouse goes with the last deploy that names it.
            let metas: Vec<Value> = rows
                .into_iter()
                .filter(|(id, _)| !gone.contains(id))
                .map(|(_, m)| m)
                .collect();
            let kept = super::environment::wheelhouses_named(&metas).join(" ");
            self.sh(
                &format!(
                    "cd {WHEELHOUSES} 2>/dev/null || exit 0; for d in *; do [ -d \"$d\" ] || continue; \
                     case \" {kept} \" in *\" $d \"*) ;; *) rm -rf -- \"$d\" ;; esac; done"
                ),
                SHORT,
            )?;
        }
        Ok(gone)
    }

    /// The id of the deploy whose manifest the live code matches.
    pub fn current(&self) -> Result<Option<String>, String> {
        let out = self.sh(&format!("cat {CURRENT} 2>/dev/null || true"), SHORT)?;
        Ok(Some(out.trim().to_string()).filter(|id| super::plan::valid_id(id)))
    }

    /// Records `id` as the deploy in effect (none: the code has no manifest).
    pub fn set_current(&self, id: Option<&str>) -> Result<(), String> {
        let script = match id {
            Some(id) => format!("echo {id} > {CURRENT}.tmp && mv -f {CURRENT}.tmp {CURRENT}"),
            None => format!("rm -f {CURRENT}"),
        };
        self.sh(&script, SHORT).map(|_| ())
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

    /// Installs a package file, under the step lock and with its output
    /// in a file: a cut connection does not stop dpkg half-way (a write to
    /// the closed pipe would), and the next step waits for it. An earlier
    /// install cut off by a reboot is finished first.
    pub fn install(&self, pm: &str, file: &str) -> Result<(), String> {
        let f = sh_quote(file);
        let cmd = match pm {
            "rpm" => format!("rpm -U --oldpackage --replacepkgs {f}"),
            _ => format!(
                "dpkg --configure -a >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold {f}"
            ),
        };
        self.sh(&stepped(&cmd), LONG)
            .map(|_| ())
            .map_err(|e| format!("install of {file} failed: {e}"))
    }

    pub fn restart(&self, f: &Facts) -> Result<(), String> {
        // Under systemd, stop then start rather than restart: the unit's
        // crash-loop backoff keeps its count across restarts but not across
        // a stop, and a deploy is not a crash.
        let unit = sh_quote(&f.unit);
        let cmd = if f.init == "systemd" {
            format!("systemctl stop {unit} && systemctl start {unit}")
        } else {
            format!(
                "/etc/init.d/{} restart",
                sh_quote(f.unit.trim_end_matches(".service"))
            )
        };
        self.sh(&stepped(&cmd), LONG).map(|_| ()).map_err(|e| {
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
        if let Some(why) = out.too_big {
            return Err(why);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "[Service]\nUser=jarvis\nGroup=jarvis\nWorkingDirectory=/home/jarvis/Jarvis\nExecStart=/usr/bin/python3 bots/supervisor.py\n";

    fn probe_output(files: &[(&str, &str)]) -> String {
        let mut out =
            String::from("pm=dpkg\nversion=0.1.0-1\ninit=systemd\nrsync=yes\nflock=yes\npython=yes\n");
        for (path, body) in files {
            out.push_str(&format!("{FILE_MARK}{path}\n{body}\n"));
        }
        out
    }

    #[test]
    fn the_code_root_user_and_unit_come_from_the_hosts_unit_and_drop_ins() {
        let out = probe_output(&[
            (
                "/usr/lib/systemd/system/jarvis-supervisor-health.service",
                "[Service]\nExecStart=/usr/bin/jarvisctl status\n",
            ),
            ("/usr/lib/systemd/system/jarvis-supervisor.service", MAIN),
            (
                "/etc/systemd/system/jarvis-supervisor.service.d/10-root.conf",
                "[Service]\nWorkingDirectory=/srv/bot/\nUser=trader\n",
            ),
        ]);
        let f = parse_probe(&out).unwrap();
        assert_eq!(
            (f.pm.as_str(), f.init.as_str(), f.version.as_deref()),
            ("dpkg", "systemd", Some("0.1.0-1"))
        );
        assert!(f.rsync && f.flock && f.python);
        assert_eq!(f.unit, "jarvis-supervisor.service");
        assert_eq!(f.code_dir, "/srv/bot");
        assert_eq!(f.owner, "trader:jarvis");
    }

    #[test]
    fn a_host_without_the_unit_is_told_to_install_the_package() {
        let e = parse_probe(&probe_output(&[])).unwrap_err();
        assert!(e.contains("install the package first"), "{e}");
        // A unit file in /etc overrides the packaged one, as in systemd.
        let f = parse_probe(&probe_output(&[
            ("/usr/lib/systemd/system/jarvis-supervisor.service", MAIN),
            (
                "/etc/systemd/system/jarvis-supervisor.service",
                "[Service]\nUser=bot\nWorkingDirectory=/opt/code\n",
            ),
        ]))
        .unwrap();
        assert_eq!((f.code_dir.as_str(), f.owner.as_str()), ("/opt/code", "bot:"));
    }
}
