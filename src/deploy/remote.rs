//! One host's side of a deploy, over ssh: the `Session` whose actions are
//! shell commands and rsync, the host worker, the deploy lock and the
//! health wait.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::environment::Wheelhouse;
use super::error::{DeployError, Result};
use super::host_paths::{ddir, CURRENT, DEPLOYS, PACKAGES, STEP_LOCK, WHEELHOUSES};
use super::hosts::Host;
use super::journal::Meta;
use super::probe::{parse_probe, Facts, Init, PackageManager, PROBE};
use super::reply::{Cleaned, Compiled, Plan, Prepared, Status, Verify, WorkerError};
use super::session::{clean_args, Apply, Before, Compare, CompileRequest, LockGuard, PlanRequest, Session};
use super::settings::{Package, SshSettings};
use super::shell::{rsync_shell, sh_quote};
use super::{ids, plan, watch};
use crate::python::{DEPLOY_HOST, DEPLOY_HOST_LOADER};
use crate::ssh;

/// How long one short remote command may take.
const SHORT: Duration = Duration::from_secs(60);
/// A command of the deploy's own steps (its store, the worker's plan).
const STEP: Duration = Duration::from_secs(120);
/// The worker's swap.
const SWAP: Duration = Duration::from_secs(900);
/// The compile check: a first deploy compiles every .py file of the tree.
const COMPILE: Duration = Duration::from_secs(660);
/// A package install or a restart.
const LONG: Duration = Duration::from_secs(300);

/// An ssh connection to one host, with the user's options; or, with
/// `local`, this host itself: `jarvisctl settle` runs the same commands and
/// worker with sh, so that an undo on the host is the deploy's own undo.
pub struct SshSession<'a> {
    pub host: &'a Host,
    pub ssh: &'a SshSettings,
    /// rsync's stores' bandwidth limit (tests).
    pub bwlimit: Option<u32>,
    pub local: bool,
}

/// flock's exit code when the step lock stayed taken.
const BUSY: i32 = 75;

/// `cmd` as a step that changes the host: under the step lock, SIGHUP
/// ignored, its output in a file rather than the connection (a write to a
/// cut connection would kill it half-way), printed at the end. The lock's
/// descriptor is not passed on: a daemon that `cmd` starts must not hold it.
/// When /tmp cannot take the file (full, read-only), the step runs all the
/// same, its output dropped and said so: its exit code is its result.
pub(super) fn stepped(cmd: &str) -> String {
    format!(
        "trap '' HUP PIPE; log=$(mktemp 2>/dev/null) || log=; \
         if [ -n \"$log\" ] && ! head -c 65536 /dev/zero > \"$log\" 2>/dev/null; then rm -f \"$log\"; log=; fi; \
         if [ -n \"$log\" ]; then : > \"$log\"; out=$log; else out=/dev/null; fi; \
         flock -o -E {BUSY} -w 600 {STEP_LOCK} sh -c {} > \"$out\" 2>&1 </dev/null; rc=$?; \
         if [ -n \"$log\" ]; then cat \"$log\"; rm -f \"$log\"; else echo {}; fi; \
         [ $rc != {BUSY} ] || echo {}; exit $rc",
        sh_quote(cmd),
        sh_quote("(the step's output was not kept: /tmp on the host cannot take a file)"),
        sh_quote(&DeployError::StepBusy(Duration::from_secs(600)).to_string())
    )
}

pub(super) fn cannot_run_ssh(e: std::io::Error) -> DeployError {
    DeployError::CannotRun {
        tool: "ssh",
        why: e.to_string(),
        fix: " (install openssh-client)",
    }
}

fn cannot_run_rsync(e: std::io::Error) -> DeployError {
    DeployError::CannotRun {
        tool: "rsync",
        why: e.to_string(),
        fix: " (install rsync)",
    }
}

pub fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_string()
}

/// rsync's first own complaint, else its last line.
fn rsync_error(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.starts_with("rsync:") || l.contains("Connection") || l.contains("ssh:"))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| last_line(stderr))
}

impl SshSession<'_> {
    /// `remote` run on the host: by ssh, or by sh when the host is this one.
    pub(super) fn command(&self, remote: &str, connect: Duration) -> Command {
        if self.local {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", remote]);
            return cmd;
        }
        ssh::command(&self.host.target, &self.ssh.options, connect, remote)
    }

    /// [`command`](Self::command), run with `input` and `timeout`.
    fn run_input(
        &self,
        timeout: Duration,
        remote: &str,
        input: Option<Vec<u8>>,
    ) -> std::io::Result<ssh::Outcome> {
        let cmd = self.command(remote, timeout.min(Duration::from_secs(30)));
        ssh::output(cmd, self.name(), Some(timeout), input)
    }

    pub fn ssh_args(&self) -> Vec<String> {
        let mut a = ssh::args(&self.host.target, &self.ssh.options, self.ssh.connect);
        a.extend(ssh::KEEPALIVE.map(String::from));
        a
    }

    /// rsync's `-e`.
    pub fn shell(&self) -> String {
        rsync_shell(&self.ssh_args())
    }

    /// Runs rsync with `args`; its output, or why it could not run.
    pub fn rsync(&self, args: &mut Command) -> Result<ssh::Outcome> {
        let out = ssh::output(
            std::mem::replace(args, Command::new("rsync")),
            self.name(),
            None,
            None,
        )
        .map_err(cannot_run_rsync)?;
        match out.too_big {
            Some(why) => Err(DeployError::TooBig(why)),
            None => Ok(out),
        }
    }

    /// Runs `script` with sh on the host, `input` on its stdin.
    pub fn sh_input(&self, script: &str, timeout: Duration, input: Option<Vec<u8>>) -> Result<String> {
        let remote = format!("LC_ALL=C sh -c {}", sh_quote(script));
        let out = self.run_input(timeout, &remote, input).map_err(cannot_run_ssh)?;
        if let Some(why) = out.too_big {
            return Err(DeployError::TooBig(why));
        }
        if out.timed_out {
            return Err(DeployError::NoAnswer(timeout));
        }
        match out.status {
            Some(0) => Ok(out.stdout),
            Some(255) => Err(DeployError::SshFailed(last_line(&out.stderr))),
            Some(code) => Err(DeployError::Exited {
                code,
                last: last_line(&format!("{}\n{}", out.stdout, out.stderr)),
            }),
            None => Err(DeployError::SshKilled),
        }
    }

    pub fn sh(&self, script: &str, timeout: Duration) -> Result<String> {
        self.sh_input(script, timeout, None)
    }

    /// Runs the host worker (`deploy_host.py ARGS`, with `data` after it on stdin)
    /// as root, under the host's step lock: a step cut off from its client
    /// goes on to its end, and the next step waits for it. SIGHUP is
    /// ignored for the same reason. Returns the worker's JSON report and
    /// exit code (0 done, 1 verify found differences, 3 conflicts); its
    /// error (2) is an Err. `-S`: the worker needs only the standard
    /// library, and `site` was a third of each start (a deploy makes 5 or 6).
    fn worker<T: serde::de::DeserializeOwned>(
        &self,
        args: &[String],
        data: &[u8],
        timeout: Duration,
    ) -> Result<(T, i32)> {
        let script = format!(
            "trap '' HUP PIPE; exec flock -o -E {BUSY} -w {} {STEP_LOCK} python3 -S -c {} {} {}",
            timeout.as_secs(),
            sh_quote(DEPLOY_HOST_LOADER),
            DEPLOY_HOST.len(),
            args.iter().map(|a| sh_quote(a)).collect::<Vec<_>>().join(" ")
        );
        let remote = format!("LC_ALL=C sh -c {}", sh_quote(&script));
        let mut input = DEPLOY_HOST.as_bytes().to_vec();
        input.extend_from_slice(data);
        let out = self
            .run_input(timeout + SHORT, &remote, Some(input))
            .map_err(cannot_run_ssh)?;
        if let Some(why) = out.too_big {
            return Err(DeployError::TooBig(why));
        }
        if out.timed_out {
            return Err(DeployError::NoAnswer(timeout));
        }
        let code = match out.status {
            Some(255) => return Err(DeployError::SshFailed(last_line(&out.stderr))),
            Some(BUSY) => return Err(DeployError::StepBusy(timeout)),
            Some(c) => c,
            None => return Err(DeployError::SshKilled),
        };
        let report = out.stdout.lines().last().unwrap_or("");
        let no_report = || DeployError::NoReport {
            code,
            last: last_line(&format!("{}\n{}", out.stdout, out.stderr)),
        };
        if code == 2 {
            let e: WorkerError = serde_json::from_str(report).map_err(|_| no_report())?;
            let why = e.error.unwrap_or_else(|| "the host's deploy step failed".into());
            return Err(if e.untouched {
                DeployError::WorkerUntouched(why)
            } else {
                DeployError::Worker(why)
            });
        }
        let v: T = serde_json::from_str(report).map_err(|_| no_report())?;
        Ok((v, code))
    }

    /// The host's `jarvisctl status --json`.
    fn status(&self) -> Result<Status> {
        let out = self
            .run_input(SHORT, "LC_ALL=C jarvisctl status --json", None)
            .map_err(|e| DeployError::CannotRun {
                tool: "ssh",
                why: e.to_string(),
                fix: "",
            })?;
        if let Some(why) = out.too_big {
            return Err(DeployError::TooBig(why));
        }
        serde_json::from_str(out.stdout.trim()).map_err(|_| match out.status {
            Some(255) => DeployError::SshFailed(last_line(&out.stderr)),
            Some(127) => DeployError::NoJarvisctl,
            _ => DeployError::NoStatus(last_line(&out.stderr)),
        })
    }
}

impl Session for SshSession<'_> {
    fn name(&self) -> &str {
        &self.host.target.name
    }

    fn probe(&self) -> Result<Facts> {
        parse_probe(&self.sh(PROBE, SHORT)?)
    }

    fn lock(&self) -> Result<LockGuard> {
        Ok(Box::new(self.take_lock()?))
    }

    fn current(&self) -> Result<Option<String>> {
        let out = self.sh(&format!("cat {CURRENT} 2>/dev/null || true"), SHORT)?;
        Ok(Some(out.trim().to_string()).filter(|id| ids::valid_id(id)))
    }

    fn current_raw(&self) -> Result<Option<String>> {
        let out = self.sh(
            &format!("test -e {CURRENT} || exit 0; echo file; head -c 256 {CURRENT}"),
            SHORT,
        )?;
        Ok(out.strip_prefix("file\n").map(str::to_string))
    }

    fn set_current(&self, id: Option<&str>) -> Result<()> {
        let script = match id {
            Some(id) => format!("echo {id} > {CURRENT}.tmp && mv -f {CURRENT}.tmp {CURRENT}"),
            None => format!("rm -f {CURRENT}"),
        };
        self.sh(&script, SHORT).map(|_| ())
    }

    fn history(&self) -> Result<Vec<(String, Meta)>> {
        let script = format!(
            "cd {DEPLOYS} 2>/dev/null || exit 0; for d in */; do id=${{d%/}}; \
             printf '%s\\t' \"$id\"; tr -d '\\n' < \"$id/meta.json\" 2>/dev/null || printf '{{}}'; echo; done"
        );
        let out = self.sh(&script, SHORT)?;
        let mut rows: Vec<(String, Meta)> = out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(id, _)| ids::valid_id(id))
            .map(|(id, m)| (id.to_string(), Meta::parse(m)))
            .collect();
        rows.sort_by_key(|(id, _)| ids::order(id));
        Ok(rows)
    }

    fn write_meta(&self, id: &str, meta: &Meta) -> Result<()> {
        let d = ddir(id);
        self.sh_input(
            &format!("cat > {d}/meta.json.tmp && mv {d}/meta.json.tmp {d}/meta.json"),
            SHORT,
            Some(meta.to_bytes()),
        )
        .map(|_| ())
    }

    fn new_deploy_dir(&self, base: &str) -> Result<String> {
        let script = format!(
            "mkdir -p -m 700 {DEPLOYS} {PACKAGES}; id={base}; i=0; \
             while ! mkdir -m 700 {DEPLOYS}/$id 2>/dev/null; do i=$((i+1)); id={base}-$i; \
             [ $i -lt 100 ] || exit 1; done; echo $id"
        );
        Ok(self.sh(&script, SHORT)?.trim().to_string())
    }

    fn remove_deploys(&self, gone: &[String], wheelhouses: &[String]) -> Result<()> {
        let list: Vec<String> = gone.iter().map(|id| ddir(id)).collect();
        self.sh(&format!("rm -rf -- {}", list.join(" ")), SHORT)?;
        let kept = wheelhouses.join(" ");
        self.sh(
            &format!(
                "cd {WHEELHOUSES} 2>/dev/null || exit 0; for d in *; do [ -d \"$d\" ] || continue; \
                 case \" {kept} \" in *\" $d \"*) ;; *) rm -rf -- \"$d\" ;; esac; done"
            ),
            SHORT,
        )
        .map(|_| ())
    }

    fn prepare_store(&self, id: &str, manifest: &[u8], link: Option<&str>) -> Result<Vec<String>> {
        let mut args = vec!["prepare".to_string(), ddir(id)];
        args.extend(link.map(ddir));
        let (p, _): (Prepared, i32) = self.worker(&args, manifest, STEP)?;
        Ok(p.send)
    }

    fn push_code(
        &self,
        id: &str,
        local: &Path,
        files_from: &Path,
        link: Option<&str>,
        compare: Compare,
    ) -> Result<()> {
        let dest = plan::rsync_dest(&self.host.target.destination, &format!("{}/code", ddir(id)));
        let link = link.map(|c| format!("{}/code", ddir(c)));
        let push = plan::push_args(
            &local.to_string_lossy(),
            &dest,
            &self.shell(),
            &files_from.to_string_lossy(),
            link.as_deref(),
            compare,
            self.bwlimit,
        );
        let out = self.rsync(Command::new("rsync").args(&push))?;
        if out.status != Some(0) {
            return Err(DeployError::SyncFailed {
                code: out.status,
                why: rsync_error(&out.stderr),
            });
        }
        Ok(())
    }

    fn verify(&self, id: &str, linked: Option<&str>) -> Result<Verify> {
        let dir = ddir(id);
        let mut args = vec![
            "verify".into(),
            format!("{dir}/code"),
            format!("{dir}/manifest.tsv"),
        ];
        if let Some(l) = linked {
            args.extend([format!("{}/code", ddir(l)), format!("{}/manifest.tsv", ddir(l))]);
        }
        Ok(self.worker(&args, b"", STEP)?.0)
    }

    fn store_env(&self, id: &str, env: &[u8]) -> Result<()> {
        let dir = ddir(id);
        self.sh_input(
            &format!("umask 077; cat > {dir}/private/env.new"),
            STEP,
            Some(env.to_vec()),
        )
        .map(|_| ())
    }

    fn send_package(&self, p: &Package) -> Result<()> {
        let dest = plan::rsync_dest(&self.host.target.destination, &p.kept_path());
        let out = self.rsync(
            Command::new("rsync")
                .args(["-t", "-e", &self.shell()])
                .arg(&p.path)
                .arg(&dest),
        )?;
        if out.status != Some(0) {
            return Err(DeployError::CopyPackageFailed(last_line(&out.stderr)));
        }
        Ok(())
    }

    fn store_before(&self, id: &str, before: Before) -> Result<()> {
        let dir = ddir(id);
        match before {
            Before::Deploy(cur) => self.sh(&format!("cp {}/manifest.tsv {dir}/before.tsv", ddir(cur)), STEP),
            Before::Adopted(text) => self.sh_input(&format!("cat > {dir}/before.tsv"), STEP, Some(text)),
        }
        .map(|_| ())
    }

    fn has_before(&self, id: &str) -> Result<bool> {
        let dir = ddir(id);
        let out = self.sh(&format!("test -f {dir}/before.tsv && echo yes || true"), STEP)?;
        Ok(out.trim() == "yes")
    }

    fn drop_code(&self, id: &str) -> Result<()> {
        self.sh(&format!("rm -rf {}/code", ddir(id)), STEP).map(|_| ())
    }

    fn copy_deploy(&self, to: &str, id: &str, before: Option<&str>) -> Result<()> {
        let (src, dir) = (ddir(to), ddir(id));
        let before_manifest = super::host_paths::manifest_of(before);
        self.sh(
            &format!(
                "set -e; test -f {src}/manifest.tsv || {{ echo 'deploy {to} has no manifest (made by an older jarvisctl): it cannot be restored exactly' >&2; exit 1; }}; \
                 cp {src}/manifest.tsv {dir}/manifest.tsv; cp -al {src}/code {dir}/code; \
                 if [ {before_manifest} = - ]; then : > {dir}/before.tsv; else cp {before_manifest} {dir}/before.tsv; fi"
            ),
            STEP,
        )
        .map(|_| ())
    }

    fn plan(&self, req: &PlanRequest) -> Result<Plan> {
        let (args, data) = req.args();
        Ok(self.worker(&args, data, STEP)?.0)
    }

    fn compile(&self, req: &CompileRequest) -> Result<Compiled> {
        let (args, data) = req.args();
        Ok(self.worker(&args, &data, COMPILE)?.0)
    }

    fn apply(&self, req: &Apply) -> Result<Plan> {
        Ok(self.worker(&req.args(), b"", SWAP)?.0)
    }

    fn clean(&self, code_dir: &str, id: &str, undone: bool) -> Result<u64> {
        let (c, _): (Cleaned, i32) = self.worker(&clean_args(code_dir, id, undone), b"", STEP)?;
        Ok(c.removed)
    }

    fn kept_package(&self, name: &str, version: &str, ext: &str) -> Result<Option<String>> {
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
    fn install(&self, pm: PackageManager, file: &str) -> Result<()> {
        let f = sh_quote(file);
        let cmd = match pm {
            PackageManager::Rpm => format!("rpm -U --oldpackage --replacepkgs {f}"),
            PackageManager::Dpkg | PackageManager::None => format!(
                "dpkg --configure -a >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold {f}"
            ),
        };
        self.sh(&stepped(&cmd), LONG)
            .map(|_| ())
            .map_err(|e| DeployError::Install {
                file: file.to_string(),
                why: Box::new(e),
            })
    }

    fn restart(&self, f: &Facts) -> Result<()> {
        // Under systemd, stop then start rather than restart: the unit's
        // crash-loop backoff keeps its count across restarts but not across
        // a stop, and a deploy is not a crash.
        let unit = sh_quote(&f.unit);
        // Without systemd, what the init script does for the default
        // instance alone: its `restart` stops and starts every instance on
        // the host, those of other trees too.
        let cmd = if f.init == Init::Systemd {
            format!("systemctl stop {unit} && systemctl start {unit}")
        } else {
            "jarvisctl stop >/dev/null && jarvisctl run --daemon >/dev/null".to_string()
        };
        // Then every named instance that runs from the same code root (a
        // gateway's bots share one tree) and runs now (status OK or
        // WARNING; one stopped on purpose stays stopped): each restarted on
        // the new code, and waited for. A jarvisctl without instances
        // lists none.
        let cmd = format!(
            "{cmd} && for n in $(jarvisctl instance list --code-root {root} --names 2>/dev/null); do \
             jarvisctl status --instance \"$n\" >/dev/null 2>&1; [ $? -le 1 ] || continue; \
             jarvisctl restart --instance \"$n\" >&2 || {{ echo \"instance $n did not restart on this code\" >&2; exit 1; }}; done",
            root = sh_quote(&f.code_dir)
        );
        self.sh(&stepped(&cmd), LONG).map(|_| ()).map_err(|e| {
            // systemctl only says "see systemctl status": say what status says.
            DeployError::RestartFailed(match self.status() {
                Ok(st) => format!("{}{}", st.describe(), st.last_error()),
                Err(_) => e.to_string(),
            })
        })
    }

    fn wait_healthy(&self, ready: Duration, settle: Duration) -> Result<watch::Healthy> {
        // One command on the host streams a status record every quarter
        // second, one JSON line each, over the connection already open. It
        // ends when the client stops reading: its next write meets a closed
        // pipe.
        let script =
            "while :; do LC_ALL=C jarvisctl status --json 2>/dev/null | tr -d '\\n'; echo; sleep 0.25; done";
        let cmd = self.command(&format!("sh -c {}", sh_quote(script)), SHORT);
        watch::follow(cmd, ready, settle)
    }

    fn venv_in_use(&self) -> Result<Option<String>> {
        self.venv_adopt()
    }

    fn ship_wheelhouse(&self, w: &Wheelhouse) -> Result<()> {
        self.venv_ship(w)
    }

    fn venv_build(
        &self,
        requirements: &str,
        wheelhouse: Option<&str>,
        python: Option<&str>,
    ) -> Result<String> {
        self.venv_build_on_host(requirements, wheelhouse, python)
    }

    fn venv_switch(&self, target: Option<&str>) -> Result<()> {
        self.venv_switch_on_host(target)
    }

    fn venv_exists(&self, code_dir: &str, venv: &str) -> bool {
        // root only tests that it is there; it never runs it.
        self.sh(
            &format!("test -x {}", sh_quote(&format!("{code_dir}/{venv}/bin/python"))),
            STEP,
        )
        .is_ok()
    }

    fn wheelhouse_kept(&self, dir: &str) -> bool {
        self.sh(&format!("test -d {}", sh_quote(dir)), STEP).is_ok()
    }
}
