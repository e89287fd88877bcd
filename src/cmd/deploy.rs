//! `jarvisctl deploy`: ships the bot's code (and optionally the package and
//! a `.env`) to hosts over ssh, restarts, verifies that the bot stays
//! healthy, and rolls back by itself when it does not.
//!
//! Per host, under a lock held for the whole session: probe (package
//! format, init), a new deploy directory in the history, the code pushed
//! into a staging copy (a cut link leaves the live code untouched), the
//! staging swapped in with every replaced or deleted file kept in the
//! deploy's backup, the package installed if its version differs, a
//! restart, and the health wait. A failure after the swap restores the
//! backup and the previous package, restarts and verifies the old version.

mod hosts;
mod plan;
mod remote;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::DeployArgs;
use crate::envcheck::EnvCheck;
use crate::envrules;
use crate::error::{exit, Error, Result};
use crate::paths::Paths;
use crate::report::Level;
use crate::ssh::Target;
use hosts::Host;
use plan::{sh_quote, DEPLOYS, PACKAGES};
use remote::{Facts, Session};

/// A package given to ship, read locally.
#[derive(Debug, Clone)]
struct Package {
    path: PathBuf,
    name: String,
    version: String,
    /// "deb" or "rpm".
    ext: String,
}

impl Package {
    fn read(path: &Path) -> Result<Package> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_string();
        let query = |cmd: &mut Command| -> Result<String> {
            let out = cmd
                .output()
                .map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))?;
            if !out.status.success() {
                return Err(Error::new(format!(
                    "{} is not a readable package: {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let (name, version) = match ext.as_str() {
            "deb" => (
                query(Command::new("dpkg-deb").arg("-f").arg(path).arg("Package"))?,
                query(Command::new("dpkg-deb").arg("-f").arg(path).arg("Version"))?,
            ),
            "rpm" => (
                query(Command::new("rpm").args(["-qp", "--qf", "%{NAME}"]).arg(path))?,
                query(
                    Command::new("rpm")
                        .args(["-qp", "--qf", "%{VERSION}-%{RELEASE}"])
                        .arg(path),
                )?,
            ),
            _ => {
                return Err(
                    Error::new(format!("{}: not a .deb or .rpm", path.display())).with_code(exit::USAGE)
                )
            }
        };
        Ok(Package {
            path: path.to_path_buf(),
            name,
            version,
            ext,
        })
    }

    /// Where the host keeps it.
    fn kept_path(&self) -> String {
        format!("{PACKAGES}/{}_{}.{}", self.name, self.version, self.ext)
    }
}

/// Everything one host's deploy needs, checked locally first.
struct Job {
    host: Host,
    package: Option<Package>,
    env: Option<Vec<u8>>,
}

struct Ctx<'a> {
    args: &'a DeployArgs,
    code: Option<String>,
    options: &'a [String],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Result_ {
    Deployed,
    RolledBack,
    Failed,
    Refused,
    Skipped,
    DryRun,
    Restored,
    Listed,
}

impl Result_ {
    fn word(self) -> &'static str {
        match self {
            Result_::Deployed => "deployed",
            Result_::RolledBack => "ROLLED BACK",
            Result_::Failed => "FAILED",
            Result_::Refused => "REFUSED",
            Result_::Skipped => "skipped",
            Result_::DryRun => "dry-run",
            Result_::Restored => "restored",
            Result_::Listed => "listed",
        }
    }

    fn ok(self) -> bool {
        matches!(
            self,
            Result_::Deployed | Result_::DryRun | Result_::Restored | Result_::Listed
        )
    }
}

#[derive(Debug, Serialize)]
struct Outcome {
    host: String,
    result: Result_,
    id: Option<String>,
    package_before: Option<String>,
    package_after: Option<String>,
    elapsed_s: f64,
    /// Why it failed or was rolled back; what was done.
    reason: Option<String>,
}

fn progress(host: &str, msg: &str) {
    eprintln!("{host}: {msg}");
}

pub fn run(paths: &Paths, args: &DeployArgs) -> Result<i32> {
    let hosts = resolve_hosts(args)?;
    let code = if args.list || (args.rollback) {
        None
    } else {
        let dir = args.code.as_deref().ok_or_else(|| {
            Error::new("no code to ship")
                .with_code(exit::USAGE)
                .with_note("give the local code directory with --code DIR")
        })?;
        if !dir.join("bots").is_dir() && !dir.is_dir() {
            return Err(Error::new(format!("{} is not a directory", dir.display())).with_code(exit::USAGE));
        }
        check_python(dir)?;
        Some(dir.to_string_lossy().into_owned())
    };
    let mut jobs = Vec::new();
    for mut host in hosts {
        if args.package.is_some() {
            host.package.clone_from(&args.package);
        }
        if args.env.is_some() {
            host.env_file.clone_from(&args.env);
        }
        let package = match (&host.package, code.is_some()) {
            (Some(p), true) => Some(Package::read(p)?),
            _ => None,
        };
        let env = match (&host.env_file, code.is_some()) {
            (Some(p), true) => Some(lint_env(paths, p)?),
            _ => None,
        };
        jobs.push(Job { host, package, env });
    }
    let ctx = Ctx {
        args,
        code,
        options: &args.ssh_option,
    };
    let outcomes: Vec<Outcome> = if args.serial {
        let mut out = Vec::new();
        let mut failed = false;
        for job in &jobs {
            if failed {
                out.push(skipped(&job.host.target));
                continue;
            }
            let o = one(&ctx, job);
            failed = !o.result.ok();
            out.push(o);
        }
        out
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = jobs.iter().map(|j| s.spawn(|| one(&ctx, j))).collect();
            handles
                .into_iter()
                .zip(&jobs)
                .map(|(h, j)| {
                    h.join().unwrap_or_else(|_| Outcome {
                        reason: Some("the deploy of this host panicked".into()),
                        result: Result_::Failed,
                        ..skipped(&j.host.target)
                    })
                })
                .collect()
        })
    };
    print_summary(&outcomes, args.json);
    Ok(if outcomes.iter().all(|o| o.result.ok()) {
        exit::OK
    } else {
        exit::FAILURE
    })
}

fn resolve_hosts(args: &DeployArgs) -> Result<Vec<Host>> {
    let mut hosts = Vec::new();
    for h in &args.host {
        let t = Target::parse(h).map_err(|e| Error::new(e).with_code(exit::USAGE))?;
        hosts.push(Host::plain(t));
    }
    if let Some(file) = &args.hosts {
        hosts.extend(hosts::read(file)?);
    } else if hosts.is_empty() {
        hosts = hosts::read(Path::new(hosts::DEFAULT_PATH))?;
    }
    Ok(hosts)
}

/// `python3 -m py_compile` on every .py file that would be shipped; the
/// byte code goes to a temporary directory, never into the code.
fn check_python(dir: &Path) -> Result<()> {
    let mut files = Vec::new();
    collect_py(dir, &mut files);
    if files.is_empty() {
        return Ok(());
    }
    let cache =
        tempfile::tempdir().map_err(|e| Error::new(format!("cannot make a temporary directory: {e}")))?;
    let out = Command::new("python3")
        .args(["-m", "py_compile"])
        .args(&files)
        .env("PYTHONPYCACHEPREFIX", cache.path())
        .output()
        .map_err(|e| {
            Error::new(format!("cannot run python3 for the syntax check: {e}")).with_note("install python3")
        })?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        return Err(Error::new(format!(
            "the code in {} does not compile, nothing was sent:\n{}",
            dir.display(),
            text.trim_end()
        )));
    }
    Ok(())
}

fn collect_py(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if ![".git", "__pycache__", "logs", "data", ".lifeos", "state"].contains(&name.as_str()) {
                collect_py(&e.path(), files);
            }
        } else if ft.is_file() && name.ends_with(".py") {
            files.push(e.path());
        }
    }
}

/// `jarvisctl env lint` of the .env to send; returns its bytes. Findings
/// never hold a value.
fn lint_env(paths: &Paths, file: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(file).map_err(|e| Error::io("read the .env", file, e))?;
    let rules = envrules::load(&paths.host(Path::new(envrules::PATH)))?;
    let check = EnvCheck {
        account: None,
        rules: &rules,
        systemd: crate::systemd::version().unwrap_or(u32::MAX),
    };
    let (findings, _) = check.run(file, file);
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| f.level == Level::Fail)
        .map(|f| match f.line {
            Some(n) => format!("line {n}: {}", f.found),
            None => f.found.clone(),
        })
        .collect();
    if !bad.is_empty() {
        return Err(Error::new(format!(
            "{} does not pass env lint, nothing was sent: {}",
            file.display(),
            bad.join("; ")
        ))
        .with_note(format!("see jarvisctl env lint {}", file.display())));
    }
    Ok(bytes)
}

fn skipped(t: &Target) -> Outcome {
    Outcome {
        host: t.name.clone(),
        result: Result_::Skipped,
        id: None,
        package_before: None,
        package_after: None,
        elapsed_s: 0.0,
        reason: Some("not tried: an earlier host failed (--serial)".into()),
    }
}

fn one(ctx: &Ctx, job: &Job) -> Outcome {
    let t0 = Instant::now();
    let s = Session {
        host: &job.host,
        options: ctx.options,
        connect: Duration::from_secs(ctx.args.timeout),
    };
    let mut o = Outcome {
        host: s.name().to_string(),
        result: Result_::Failed,
        id: None,
        package_before: None,
        package_after: None,
        elapsed_s: 0.0,
        reason: None,
    };
    let r = if ctx.args.list {
        list(ctx, &s, &mut o)
    } else if ctx.args.rollback {
        by_hand(ctx, &s, &mut o)
    } else if ctx.args.dry_run {
        dry_run(ctx, job, &s, &mut o)
    } else {
        deploy(ctx, job, &s, &mut o)
    };
    if let Err(e) = r {
        progress(s.name(), &e);
        o.reason = Some(e);
    }
    o.elapsed_s = t0.elapsed().as_secs_f64();
    o
}

fn probe(s: &Session) -> std::result::Result<Facts, String> {
    progress(s.name(), "connecting");
    let f = s.probe()?;
    progress(
        s.name(),
        &format!(
            "{} host, {}, jarvis-supervisor {}",
            f.init,
            f.pm,
            f.version.as_deref().unwrap_or("not installed")
        ),
    );
    if !f.rsync {
        return Err(
            "rsync is not installed on the host: apt-get install rsync (or dnf install rsync)".into(),
        );
    }
    if !f.flock {
        return Err("flock is not installed on the host (util-linux)".into());
    }
    Ok(f)
}

fn shell(s: &Session) -> String {
    plan::rsync_shell(&s.ssh_args())
}

fn dry_run(ctx: &Ctx, job: &Job, s: &Session, o: &mut Outcome) -> std::result::Result<(), String> {
    let f = probe(s)?;
    o.package_before.clone_from(&f.version);
    o.package_after = job.package.as_ref().map(|p| p.version.clone());
    let code = ctx.code.as_deref().unwrap_or(".");
    let dest = plan::rsync_dest(&s.host.target.destination, &job.host.code_dir);
    let args = plan::dry_run_args(code, &dest, &shell(s), f.jarvis_user);
    let out = Command::new("rsync")
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run rsync: {e} (install rsync)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("No such file or directory") {
        return Err(format!(
            "rsync --dry-run failed: {}",
            remote::last_line(&String::from_utf8_lossy(&out.stderr))
        ));
    }
    let env = job
        .env
        .as_ref()
        .map(|b| plan::EnvSummary::of(&String::from_utf8_lossy(b)));
    let plan = plan::DryPlan {
        host: s.name(),
        code_dir: &job.host.code_dir,
        itemized: &text,
        installed: f.version.as_deref(),
        shipped: o.package_after.as_deref(),
        env: env.as_ref(),
    };
    print!("{}", plan.render());
    o.result = Result_::DryRun;
    Ok(())
}

/// rsync's first own complaint, else its last line.
fn rsync_error(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.starts_with("rsync:") || l.contains("Connection") || l.contains("ssh:"))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| remote::last_line(stderr))
}

/// What the swap changed, to undo it.
struct Applied<'a> {
    id: &'a str,
    facts: &'a Facts,
    /// The package file that restores the version before, when it changed.
    previous_package: Option<String>,
    package_changed: bool,
}

fn deploy(ctx: &Ctx, job: &Job, s: &Session, o: &mut Outcome) -> std::result::Result<(), String> {
    let f = probe(s)?;
    o.package_before.clone_from(&f.version);
    o.package_after.clone_from(&f.version);
    let _lock = s.lock().inspect_err(|_| o.result = Result_::Refused)?;
    progress(s.name(), "locked");
    let code_dir = job.host.code_dir.as_str();
    let staging = format!("{code_dir}.staging");
    let install = job
        .package
        .as_ref()
        .filter(|p| f.version.as_deref() != Some(p.version.as_str()));
    // Without the package of the version now installed, a failed upgrade
    // could not be rolled back: refuse before anything changes.
    let previous_package = match (install, &f.version) {
        (Some(p), Some(v)) => match s.kept_package(&p.name, v, &p.ext)? {
            Some(file) => Some(file),
            None => {
                o.result = Result_::Refused;
                return Err(format!(
                    "no package of the installed version {v} is kept on the host to roll back to; nothing was changed. \
                     Ship it once with --package (same version: it is kept, not installed), or copy it to {PACKAGES}/{}_{v}.{}",
                    p.name, p.ext
                ));
            }
        },
        _ => None,
    };
    let id = s.new_deploy_dir(&plan::deploy_id(SystemTime::now()))?;
    o.id = Some(id.clone());
    let dir = format!("{DEPLOYS}/{id}");
    let mut meta = json!({
        "id": id, "host": s.name(), "code_dir": code_dir, "kind": "deploy",
        "status": "in-progress", "package_before": f.version, "package_after": f.version,
        "env_sent": job.env.is_some(),
    });
    s.write_meta(&id, &meta)?;

    // 1. Stage: a hard-linked copy of the live code, then the push into it.
    progress(s.name(), &format!("deploy {id}: syncing the code into {staging}"));
    match stage(ctx, job, s, &f, &staging, &dir) {
        Ok(sum) => meta["code_sha256"] = sum.into(),
        Err(why) => {
            let _ = s.sh(&format!("rm -rf {}", sh_quote(&staging)), Duration::from_secs(60));
            meta["status"] = "failed".into();
            meta["reason"] = why.clone().into();
            let _ = s.write_meta(&id, &meta);
            return Err(why);
        }
    }
    let (c, st) = (sh_quote(code_dir), sh_quote(&staging));

    // 2. The swap: from here on, any failure restores the backup.
    progress(
        s.name(),
        "swapping the new code in (backup of every replaced file kept)",
    );
    let applied = Applied {
        id: &id,
        facts: &f,
        previous_package,
        package_changed: install.is_some(),
    };
    let mut swap = plan::swap_script(&staging, code_dir, &dir);
    if job.env.is_some() {
        swap.push_str(&format!(
            "; mkdir -p {dir}/code-backup; if [ -f {c}/.env ]; then cp -p {c}/.env {dir}/code-backup/.env; \
             else echo .env >> {dir}/added.list; fi; chown jarvis:jarvis {dir}/env.new; chmod 600 {dir}/env.new; \
             mv {dir}/env.new {c}/.env"
        ));
    }
    swap.push_str(&format!("; mv {st} {dir}/code"));
    let result = s
        .sh(&swap, Duration::from_secs(300))
        .map_err(|e| format!("swapping the code in failed: {e}"))
        .and_then(|_| match install {
            Some(p) => {
                progress(s.name(), &format!("installing {} {}", p.name, p.version));
                s.install(&f.pm, &p.kept_path())
            }
            None => Ok(()),
        })
        .and_then(|_| {
            progress(s.name(), "restarting");
            s.restart(&f.init)
        })
        .and_then(|_| {
            progress(
                s.name(),
                &format!("waiting for READY, then {} s of health", ctx.args.settle),
            );
            s.wait_healthy(
                Duration::from_secs(ctx.args.ready_timeout),
                Duration::from_secs(ctx.args.settle),
            )
        });
    if let Some(p) = install {
        o.package_after = Some(p.version.clone());
        meta["package_after"] = p.version.clone().into();
    }
    match result {
        Ok(pid) => {
            progress(
                s.name(),
                &format!("healthy (pid {pid}) for {} s", ctx.args.settle),
            );
            meta["status"] = "deployed".into();
            s.write_meta(&id, &meta)?;
            o.result = Result_::Deployed;
            if let Ok(gone) = s.prune(ctx.args.keep) {
                if !gone.is_empty() {
                    progress(s.name(), &format!("pruned {} old deploy(s)", gone.len()));
                }
            }
            Ok(())
        }
        Err(why) => {
            progress(s.name(), &format!("FAILED: {why}; rolling back"));
            let back = undo(ctx, s, code_dir, &applied);
            o.package_after = back.as_ref().ok().cloned().flatten().or(o.package_after.take());
            meta["status"] = if back.is_ok() {
                "rolled-back"
            } else {
                "rollback-failed"
            }
            .into();
            meta["reason"] = why.clone().into();
            let _ = s.write_meta(&id, &meta);
            match back {
                Ok(_) => {
                    o.result = Result_::RolledBack;
                    Err(format!(
                        "{why}; rolled back: the previous version runs and is healthy"
                    ))
                }
                Err(e) => Err(format!("{why}; ROLLBACK FAILED too: {e}")),
            }
        }
    }
}

/// The staging copy: live code hard-linked, the new code pushed in, the
/// .env and the package copied next to it. Returns the code's checksum.
/// Nothing live changes here.
fn stage(
    ctx: &Ctx,
    job: &Job,
    s: &Session,
    f: &Facts,
    staging: &str,
    dir: &str,
) -> std::result::Result<String, String> {
    let (c, st) = (sh_quote(&job.host.code_dir), sh_quote(staging));
    s.sh(
        &format!(
            "set -e; mkdir -p {c}; rm -rf {st}; mkdir -p {st}; rsync -a --link-dest={c} {} {c}/ {st}/",
            plan::exclude_args()
                .iter()
                .map(|e| sh_quote(e))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Duration::from_secs(300),
    )?;
    let code = ctx.code.as_deref().unwrap_or(".");
    let dest = plan::rsync_dest(&s.host.target.destination, staging);
    let push = plan::push_args(code, &dest, &shell(s), f.jarvis_user, ctx.args.bwlimit);
    let out = Command::new("rsync")
        .args(&push)
        .output()
        .map_err(|e| format!("cannot run rsync: {e} (install rsync)"))?;
    if !out.status.success() {
        return Err(format!(
            "code sync failed ({}): {}; the live code was not touched",
            out.status,
            rsync_error(&String::from_utf8_lossy(&out.stderr))
        ));
    }
    let sum = s.sh(
        &format!("cd {st} && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum | cut -c1-64"),
        Duration::from_secs(120),
    )?;
    if let Some(env) = &job.env {
        s.sh_input(
            &format!("umask 077; cat > {dir}/env.new"),
            Duration::from_secs(60),
            Some(env.clone()),
        )?;
    }
    if let Some(p) = job.package.as_ref() {
        // Every shipped package is kept: it is what a later rollback installs.
        progress(s.name(), &format!("copying {} {}", p.name, p.version));
        let dest = plan::rsync_dest(&s.host.target.destination, &p.kept_path());
        let out = Command::new("rsync")
            .args(["-t", "-e", &shell(s)])
            .arg(&p.path)
            .arg(&dest)
            .output()
            .map_err(|e| format!("cannot run rsync: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "copying the package failed: {}",
                remote::last_line(&String::from_utf8_lossy(&out.stderr))
            ));
        }
    }
    Ok(sum.trim().to_string())
}

/// Restores the code from the deploy's backup and the previous package,
/// restarts and verifies. Returns the package version now installed.
fn undo(ctx: &Ctx, s: &Session, code_dir: &str, a: &Applied) -> std::result::Result<Option<String>, String> {
    let dir = format!("{DEPLOYS}/{}", a.id);
    s.sh(&plan::restore_script(code_dir, &dir), Duration::from_secs(300))
        .map_err(|e| format!("restoring the code failed: {e}"))?;
    progress(s.name(), "code restored from the backup");
    let mut version = a.facts.version.clone();
    if a.package_changed {
        let file = a
            .previous_package
            .as_deref()
            .ok_or("the previous package is not kept on the host")?;
        progress(s.name(), &format!("reinstalling {file}"));
        s.install(&a.facts.pm, file)?;
        version.clone_from(&a.facts.version);
    }
    s.restart(&a.facts.init)?;
    let pid = s.wait_healthy(
        Duration::from_secs(ctx.args.ready_timeout),
        Duration::from_secs(ctx.args.settle.min(10)),
    )?;
    progress(s.name(), &format!("previous version healthy again (pid {pid})"));
    Ok(version)
}

/// Puts back version `want` from the packages kept on the host, unless it
/// is what is installed.
fn reinstall_kept(
    s: &Session,
    pm: &str,
    want: Option<&str>,
    installed: Option<&str>,
    o: &mut Outcome,
) -> std::result::Result<(), String> {
    let Some(v) = want.filter(|&w| Some(w) != installed) else {
        return Ok(());
    };
    let ext = if pm == "rpm" { "rpm" } else { "deb" };
    let file = s
        .kept_package("jarvis-supervisor", v, ext)?
        .ok_or_else(|| format!("no package of version {v} is kept on the host"))?;
    s.install(pm, &file)?;
    o.package_after = Some(v.to_string());
    Ok(())
}

/// `--rollback [--to ID]`, on purpose.
fn by_hand(ctx: &Ctx, s: &Session, o: &mut Outcome) -> std::result::Result<(), String> {
    let f = probe(s)?;
    o.package_before.clone_from(&f.version);
    o.package_after.clone_from(&f.version);
    let _lock = s.lock().inspect_err(|_| o.result = Result_::Refused)?;
    let history = s.history()?;
    let code_dir = &s.host.code_dir;
    let pm = f.pm.as_str();
    match &ctx.args.to {
        None => {
            // Undo the newest deploy still in effect.
            let (id, meta) = history
                .iter()
                .rev()
                .find(|(_, m)| m["status"] == "deployed")
                .ok_or("no deploy in the history to roll back")?;
            o.id = Some(id.clone());
            progress(s.name(), &format!("undoing deploy {id}"));
            let dir = format!("{DEPLOYS}/{id}");
            s.sh(&plan::restore_script(code_dir, &dir), Duration::from_secs(300))?;
            reinstall_kept(s, pm, meta["package_before"].as_str(), f.version.as_deref(), o)?;
            let mut m = meta.clone();
            m["status"] = "rolled-back".into();
            m["reason"] = "by hand: jarvisctl deploy --rollback".into();
            s.write_meta(id, &m)?;
        }
        Some(to) => {
            if !plan::valid_id(to) {
                return Err(format!("{to:?} is not a deploy id (see jarvisctl deploy --list)"));
            }
            let (_, meta) = history
                .iter()
                .find(|(id, _)| id == to)
                .ok_or_else(|| format!("deploy {to} is not in this host's history (see --list)"))?;
            let src = format!("{DEPLOYS}/{to}/code");
            let id = s.new_deploy_dir(&plan::deploy_id(SystemTime::now()))?;
            o.id = Some(id.clone());
            progress(s.name(), &format!("returning to deploy {to} as {id}"));
            let dir = format!("{DEPLOYS}/{id}");
            s.sh(
                &format!(
                    "set -e; test -d {src}; {}; cp -al {src} {dir}/code",
                    plan::swap_script(&src, code_dir, &dir)
                ),
                Duration::from_secs(300),
            )
            .map_err(|e| format!("restoring deploy {to}'s code failed: {e}"))?;
            reinstall_kept(s, pm, meta["package_after"].as_str(), f.version.as_deref(), o)?;
            s.write_meta(
                &id,
                &json!({"id": id, "host": s.name(), "code_dir": code_dir, "kind": "rollback", "to": to,
                        "status": "deployed", "package_before": f.version, "package_after": o.package_after,
                        "code_sha256": meta["code_sha256"]}),
            )?;
        }
    }
    s.restart(&f.init)?;
    let pid = s.wait_healthy(
        Duration::from_secs(ctx.args.ready_timeout),
        Duration::from_secs(ctx.args.settle),
    )?;
    progress(s.name(), &format!("healthy (pid {pid})"));
    o.result = Result_::Restored;
    Ok(())
}

fn list(ctx: &Ctx, s: &Session, o: &mut Outcome) -> std::result::Result<(), String> {
    let gone = s.prune(ctx.args.keep)?;
    let rows = s.history()?;
    let mut out = format!("{}: {} deploy(s) kept", s.name(), rows.len());
    if !gone.is_empty() {
        out.push_str(&format!(", {} pruned", gone.len()));
    }
    out.push('\n');
    for (id, m) in &rows {
        let s = |k: &str| m[k].as_str().unwrap_or("-").to_string();
        out.push_str(&format!(
            "  {id:<20} {:<16} {:<9} package {} -> {}  code {}{}\n",
            s("status"),
            s("kind"),
            s("package_before"),
            s("package_after"),
            &s("code_sha256")[..s("code_sha256").len().min(12)],
            m["reason"]
                .as_str()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default()
        ));
    }
    if !ctx.args.json {
        print!("{out}");
    }
    o.id = rows.last().map(|r| r.0.clone());
    o.result = Result_::Listed;
    Ok(())
}

fn print_summary(rows: &[Outcome], json: bool) {
    if json {
        let ok = rows.iter().all(|o| o.result.ok());
        let v: Value = json!({"schema": 1, "ok": ok, "hosts": rows});
        println!("{v}");
        return;
    }
    let mut table: Vec<[String; 6]> =
        vec![["HOST", "RESULT", "ID", "PACKAGE", "TIME", "NOTE"].map(String::from)];
    for o in rows {
        let pkg = match (&o.package_before, &o.package_after) {
            (a, b) if a == b => a.clone().unwrap_or_else(|| "-".into()),
            (a, b) => format!(
                "{} -> {}",
                a.as_deref().unwrap_or("-"),
                b.as_deref().unwrap_or("-")
            ),
        };
        table.push([
            o.host.clone(),
            o.result.word().into(),
            o.id.clone().unwrap_or_else(|| "-".into()),
            pkg,
            format!("{:.1}s", o.elapsed_s),
            o.reason.clone().unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| table.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &table {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c == 5 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        println!("{}", line.trim_end());
    }
}
