//! `jarvisctl deploy`: ships the bot's code (and optionally the package and
//! a `.env`) to hosts over ssh, restarts, verifies that the bot stays
//! healthy, and rolls back by itself when it does not.
//!
//! Per host, under a lock held for the whole session: probe (package
//! format, init, and from the host's own unit: user, code root, unit name),
//! finish a deploy left in progress, plan against the live code (conflicts
//! refuse the host before anything is written), the code pushed into a new
//! deploy's store and checked against its manifest, the swap (deploy_host.py: only
//! paths the manifest in effect lists, each file renamed into place), the
//! package if its version differs, a restart, and the health wait. A
//! failure after the swap began moves the files back to the manifest
//! before, reinstalls the previous package, restarts and verifies.

mod environment;
#[cfg(test)]
mod host_tests;
mod hosts;
mod plan;
mod remote;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::{json, Value};

use crate::envcheck::EnvCheck;
use crate::envrules;
use crate::output::printable;
use crate::report::Level;
use crate::ssh::{self, Target};
use hosts::Host;
use jarvis_cli::DeployArgs;
use jarvis_model::error::{exit, Error, Result};
use jarvis_model::manifest::Manifest;
use jarvis_model::paths::Paths;
use plan::{DEPLOYS, PACKAGES};
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
    /// What the code ships, and the same list for rsync's --files-from.
    manifest: Option<Manifest>,
    files_from: Option<tempfile::NamedTempFile>,
    options: &'a [String],
    wheelhouse: Option<environment::Wheelhouse>,
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
    /// The host's plan (dry runs and refusals): paths to add, replace and
    /// remove, unshipped files kept, conflicts.
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<Value>,
}

/// One progress line on stderr, defused: most of what it says (versions,
/// paths, reasons, the environment in use) comes from the host.
fn progress(host: &str, msg: &str) {
    eprintln!("{}: {}", printable(host), printable(msg));
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
        Some(dir.to_string_lossy().into_owned())
    };
    let manifest = match &code {
        Some(dir) => {
            let m = Manifest::build(Path::new(dir))?;
            check_python(Path::new(dir), &m)?;
            Some(m)
        }
        None => None,
    };
    let files_from = match &manifest {
        Some(m) => {
            use std::io::Write;
            let mut f = tempfile::NamedTempFile::new()
                .map_err(|e| Error::new(format!("cannot make a temporary file: {e}")))?;
            f.write_all(m.file_list().as_bytes())
                .map_err(|e| Error::new(format!("cannot write a temporary file: {e}")))?;
            Some(f)
        }
        None => None,
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
    let wheelhouse = match (&args.wheelhouse, code.is_some()) {
        (Some(d), true) => Some(environment::Wheelhouse::read(d)?),
        _ => None,
    };
    let ctx = Ctx {
        args,
        code,
        manifest,
        files_from,
        options: &args.ssh_option,
        wheelhouse,
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
fn check_python(dir: &Path, manifest: &Manifest) -> Result<()> {
    let files: Vec<PathBuf> = manifest
        .files()
        .filter(|e| e.path.ends_with(".py"))
        .map(|e| dir.join(&e.path))
        .collect();
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

/// `jarvisctl env lint` of the .env to send; returns its bytes. Findings
/// never hold a value.
fn lint_env(paths: &Paths, file: &Path) -> Result<Vec<u8>> {
    let bytes = crate::envcheck::read(file).map_err(|e| Error::io("read the .env", file, e))?;
    let rules = envrules::load(&paths.host(Path::new(envrules::PATH)))?;
    let check = EnvCheck {
        account: None,
        rules: &rules,
        systemd: crate::systemd::version().unwrap_or(u32::MAX),
        inherited: None,
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
        plan: None,
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
        plan: None,
    };
    let r = if ctx.args.list {
        list(ctx, &s, &mut o)
    } else if ctx.args.rollback {
        by_hand(ctx, &s, job, &mut o)
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

fn probe(s: &Session, host: &Host) -> std::result::Result<Facts, String> {
    progress(s.name(), "connecting");
    let f = s.probe()?;
    progress(
        s.name(),
        &format!(
            "{} host, {}, jarvis-supervisor {}; {} runs {} as {}",
            f.init,
            f.pm,
            f.version.as_deref().unwrap_or("not installed"),
            f.unit,
            f.code_dir,
            f.owner.trim_end_matches(':')
        ),
    );
    for (have, what) in [
        (
            f.rsync,
            "rsync is not installed on the host: apt-get install rsync (or dnf install rsync)",
        ),
        (f.flock, "flock is not installed on the host (util-linux)"),
        (
            f.python,
            "python3 is not installed on the host: apt-get install python3",
        ),
    ] {
        if !have {
            return Err(what.into());
        }
    }
    if let Some(want) = &host.code_dir {
        if want.trim_end_matches('/') != f.code_dir {
            return Err(format!(
                "the hosts file says code_dir = {want:?}, but {} on the host runs the code from {}: \
                 remove code_dir from the hosts file (deploy reads it from the host), or fix the unit's drop-in",
                f.unit, f.code_dir
            ));
        }
    }
    Ok(f)
}

fn shell(s: &Session) -> String {
    plan::rsync_shell(&s.ssh_args())
}

fn ddir(id: &str) -> String {
    format!("{DEPLOYS}/{id}")
}

/// The manifest in effect on the host, as a worker argument ("-": none).
fn manifest_of(id: Option<&str>) -> String {
    id.map_or_else(|| "-".to_string(), |id| format!("{}/manifest.tsv", ddir(id)))
}

/// The worker's arguments that move the live code from manifest `from` to
/// deploy `id`'s, from `id`'s copy of its files.
fn apply_args(f: &Facts, from: &str, id: &str) -> Vec<String> {
    let dir = ddir(id);
    vec![
        "apply".to_string(),
        f.code_dir.clone(),
        from.to_string(),
        format!("{dir}/manifest.tsv"),
        "--src".into(),
        format!("{dir}/code"),
        "--owner".into(),
        f.owner.clone(),
        "--id".into(),
        id.to_string(),
    ]
}

fn take_over_args(ctx: &Ctx) -> Vec<String> {
    ctx.args
        .take_over
        .iter()
        .flat_map(|p| ["--take-over".to_string(), p.trim_start_matches("./").to_string()])
        .collect()
}

fn dry_run(ctx: &Ctx, job: &Job, s: &Session, o: &mut Outcome) -> std::result::Result<(), String> {
    let f = probe(s, &job.host)?;
    o.package_before.clone_from(&f.version);
    o.package_after = job.package.as_ref().map(|p| p.version.clone());
    let manifest = ctx.manifest.as_ref().ok_or("no code to ship")?;
    let current = s.current()?;
    let mut args = vec![
        "plan".to_string(),
        f.code_dir.clone(),
        manifest_of(current.as_deref()),
        "@data".into(),
    ];
    args.extend(take_over_args(ctx));
    let (plan, _) = s.worker(&args, manifest.render(&f.owner).as_bytes(), SHORT)?;
    let env = job
        .env
        .as_ref()
        .map(|b| plan::EnvSummary::of(&String::from_utf8_lossy(b)));
    let cur_meta = meta_of(s, current.as_deref())?;
    let rebuild = environment::reason(
        &plan,
        manifest.files().any(|e| e.path == "requirements.txt"),
        &cur_meta,
        ctx.wheelhouse.as_ref(),
        ctx.args.python.as_deref(),
    );
    let dry = plan::DryPlan {
        host: s.name(),
        code_dir: &f.code_dir,
        plan: &plan,
        installed: f.version.as_deref(),
        shipped: o.package_after.as_deref(),
        env: env.as_ref(),
        environment: rebuild.as_deref(),
    };
    if !ctx.args.json {
        print!("{}", dry.render());
    }
    o.plan = Some(plan);
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

const SHORT: Duration = Duration::from_secs(120);
const SWAP: Duration = Duration::from_secs(900);

fn deploy(ctx: &Ctx, job: &Job, s: &Session, o: &mut Outcome) -> std::result::Result<(), String> {
    let f = probe(s, &job.host)?;
    o.package_before.clone_from(&f.version);
    o.package_after.clone_from(&f.version);
    let _lock = s.lock().inspect_err(|_| o.result = Result_::Refused)?;
    progress(s.name(), "locked");
    let f = match recover(ctx, s, &f)? {
        Some(true) => probe(s, &job.host)?,
        _ => f,
    };
    o.package_before.clone_from(&f.version);
    o.package_after.clone_from(&f.version);
    let manifest = ctx.manifest.as_ref().ok_or("no code to ship")?;
    let code_dir = f.code_dir.as_str();
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
    let current = s.current()?;
    // Conflicts are found before anything is written on the host.
    let mut args = vec![
        "plan".to_string(),
        code_dir.to_string(),
        manifest_of(current.as_deref()),
        "@data".into(),
    ];
    args.extend(take_over_args(ctx));
    let (plan, code) = s.worker(&args, manifest.render(&f.owner).as_bytes(), SHORT)?;
    if code != 0 {
        o.result = Result_::Refused;
        let why = refusal(s, &plan);
        o.plan = Some(plan);
        return Err(why);
    }
    let id = s.new_deploy_dir(&plan::deploy_id(SystemTime::now()))?;
    o.id = Some(id.clone());
    let dir = ddir(&id);
    let mut meta = json!({
        "id": id, "host": s.name(), "code_dir": code_dir, "unit": f.unit, "owner": f.owner,
        "kind": "deploy", "status": "in-progress", "phase": "staging", "before": current,
        "package_before": f.version, "package_after": f.version, "env_sent": job.env.is_some(),
        "files": manifest.files().count(), "taken_over": ctx.args.take_over,
    });
    s.write_meta(&id, &meta)?;

    // 1. Stage: the code into this deploy's store, checked against its
    //    manifest. Nothing live changes here.
    progress(
        s.name(),
        &format!(
            "deploy {id}: sending {} file(s) into {dir}/code",
            manifest.files().count()
        ),
    );
    let staged = stage(ctx, job, s, &f, &dir, current.as_deref()).and_then(|_| {
        let mut args = vec![
            "plan".to_string(),
            code_dir.to_string(),
            manifest_of(current.as_deref()),
            format!("{dir}/manifest.tsv"),
        ];
        args.extend(take_over_args(ctx));
        s.worker(&args, b"", SHORT)
    });
    let plan = match staged {
        Ok((plan, 0)) => plan,
        Ok((plan, _)) => {
            // A conflict that appeared while the code was sent.
            o.result = Result_::Refused;
            let why = refusal(s, &plan);
            let _ = s.sh(&format!("rm -rf {dir}/code"), SHORT);
            meta["status"] = "refused".into();
            meta["reason"] = why.clone().into();
            let _ = s.write_meta(&id, &meta);
            o.plan = Some(plan);
            return Err(why);
        }
        Err(why) => {
            let _ = s.sh(&format!("rm -rf {dir}/code"), SHORT);
            meta["status"] = "failed".into();
            meta["reason"] = why.clone().into();
            let _ = s.write_meta(&id, &meta);
            return Err(format!("{why}; the live code was not touched"));
        }
    };
    // What the swap replaces: the manifest in effect, or on a first deploy
    // the files already there with the shipped content (adopted).
    let before = match &current {
        Some(cur) => s.sh(&format!("cp {}/manifest.tsv {dir}/before.tsv", ddir(cur)), SHORT),
        None => {
            let adopted: Vec<String> = plan::plan_list(&plan, "adopted")
                .iter()
                .map(|p| p.to_string())
                .collect();
            s.sh_input(
                &format!("cat > {dir}/before.tsv"),
                SHORT,
                Some(manifest.subset(&adopted).render(&f.owner).into_bytes()),
            )
        }
    };
    before?;
    progress(
        s.name(),
        &format!(
            "{} new, {} replaced, {} removed, {} adopted; {} unshipped file(s) kept as they are",
            plan::plan_list(&plan, "put").len(),
            plan::plan_list(&plan, "replace").len(),
            plan::plan_list(&plan, "delete").len(),
            plan::plan_list(&plan, "adopted").len(),
            plan::unshipped(&plan)
        ),
    );

    // 1b. The environment, when what made it changed: built now, beside
    //     the one in use, as the service user; a failure changes nothing.
    let venv_change = build_environment(ctx, s, &f, &plan, current.as_deref(), &dir, &mut meta);
    let venv_change = match venv_change {
        Ok(v) => v,
        Err(why) => {
            let _ = s.sh(&format!("rm -rf {dir}/code"), SHORT);
            meta["status"] = "failed".into();
            meta["phase"] = "done".into();
            meta["reason"] = why.clone().into();
            let _ = s.write_meta(&id, &meta);
            return Err(format!("{why}; nothing on the host was changed"));
        }
    };

    // 2. The swap. meta.json's phase is the journal: from "swapping" on,
    //    the next deploy or --rollback undoes this deploy if it never
    //    finished, whatever was cut.
    meta["phase"] = "swapping".into();
    s.write_meta(&id, &meta)?;
    progress(s.name(), "swapping the new code in");
    let mut args = apply_args(&f, &manifest_of(current.as_deref()), &id);
    args.extend(take_over_args(ctx));
    if job.env.is_some() {
        args.extend([
            "--env-new".into(),
            format!("{dir}/private/env.new"),
            "--env-backup".into(),
            format!("{dir}/private/env.before"),
        ]);
    }
    if let Some(n) = ctx.args.pause_swap_after {
        args.extend(["--pause-after".into(), n.to_string()]);
    }
    let result = s
        .worker(&args, b"", SWAP)
        .and_then(|(r, code)| match code {
            0 => Ok(()),
            _ => Err(format!(
                "files changed on the host while the deploy ran: {}",
                plan::conflict_lines(&r).join("; ")
            )),
        })
        .and_then(|_| s.set_current(Some(&id)))
        .and_then(|_| match &venv_change {
            Some(new) => {
                progress(s.name(), &format!("environment -> {new}"));
                environment::switch(s, Some(new))
            }
            None => Ok(()),
        })
        .and_then(|_| {
            meta["phase"] = "package".into();
            s.write_meta(&id, &meta)?;
            match install {
                Some(p) => {
                    progress(s.name(), &format!("installing {} {}", p.name, p.version));
                    meta["package_after"] = p.version.clone().into();
                    o.package_after = Some(p.version.clone());
                    s.write_meta(&id, &meta)?;
                    s.install(&f.pm, &p.kept_path())
                }
                None => Ok(()),
            }
        })
        .and_then(|_| {
            meta["phase"] = "restarting".into();
            s.write_meta(&id, &meta)?;
            progress(s.name(), "restarting");
            s.restart(&f)
        })
        .and_then(|_| {
            meta["phase"] = "verifying".into();
            s.write_meta(&id, &meta)?;
            progress(
                s.name(),
                &format!("waiting for READY, then {} s of health", ctx.args.settle),
            );
            s.wait_healthy(
                Duration::from_secs(ctx.args.ready_timeout),
                Duration::from_secs(ctx.args.settle),
            )
        });
    match result {
        Ok(pid) => {
            progress(
                s.name(),
                &format!("healthy (pid {pid}) for {} s", ctx.args.settle),
            );
            meta["status"] = "deployed".into();
            meta["phase"] = "done".into();
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
            let back = undo(ctx, s, &f, &id, &meta, previous_package.as_deref());
            if let Ok(v) = &back {
                o.package_after.clone_from(v);
            }
            meta["status"] = if back.is_ok() {
                "rolled-back"
            } else {
                "rollback-failed"
            }
            .into();
            meta["phase"] = "done".into();
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

/// Builds the environment on the host when this deploy changes what made
/// it (see `environment::reason`), and records in `meta` the one in use
/// before and after; the new `venvs/ID` to switch to in the swap, or None.
/// A deploy that builds nothing carries the record of the one before it,
/// so that `--rollback --to` it knows its environment.
fn build_environment(
    ctx: &Ctx,
    s: &Session,
    f: &Facts,
    plan: &Value,
    current: Option<&str>,
    dir: &str,
    meta: &mut Value,
) -> std::result::Result<Option<String>, String> {
    let manifest = ctx.manifest.as_ref().ok_or("no code to ship")?;
    let ships = manifest.files().any(|e| e.path == "requirements.txt");
    let cur_meta = meta_of(s, current)?;
    let python = ctx.args.python.as_deref();
    let Some(why) = environment::reason(plan, ships, &cur_meta, ctx.wheelhouse.as_ref(), python) else {
        if cur_meta["venv"].is_object() {
            let was = &cur_meta["venv"];
            meta["venv"] = json!({"before": was["after"], "after": was["after"],
                "wheelhouse": was["wheelhouse"], "python": was["python"]});
        }
        return Ok(None);
    };
    let user = f.owner.split(':').next().unwrap_or("the service user");
    progress(
        s.name(),
        &format!("{why}: building the environment as {user} beside the one in use"),
    );
    let before = environment::in_use(s)?;
    if let Some(w) = &ctx.wheelhouse {
        progress(s.name(), &format!("sending the wheelhouse to {}", w.remote()));
        environment::ship(s, &shell(s), w)?;
    }
    let t0 = Instant::now();
    let new = environment::build(
        s,
        &format!("{dir}/code/requirements.txt"),
        ctx.wheelhouse.as_ref().map(|w| w.remote()).as_deref(),
        python,
    )?;
    progress(
        s.name(),
        &format!(
            "built {new} in {:.1} s (in use until the swap: {})",
            t0.elapsed().as_secs_f64(),
            before.as_deref().unwrap_or("the system's python3")
        ),
    );
    meta["venv"] = environment::record(before.as_deref(), Some(&new), ctx.wheelhouse.as_ref(), python);
    Ok(Some(new))
}

/// The meta.json of deploy `id` (Null for none, or one not in the history).
fn meta_of(s: &Session, id: Option<&str>) -> std::result::Result<Value, String> {
    Ok(match id {
        Some(c) => s
            .history()?
            .into_iter()
            .find(|(i, _)| i == c)
            .map(|(_, m)| m)
            .unwrap_or(Value::Null),
        None => Value::Null,
    })
}

/// Conflicts: files that no deploy shipped (or that changed since) stand
/// where the code ships files. One progress line each; the reason.
fn refusal(s: &Session, plan: &Value) -> String {
    let lines = plan::conflict_lines(plan);
    for l in &lines {
        progress(s.name(), &format!("CONFLICT {l}"));
    }
    format!(
        "{} conflict(s), nothing on the host was changed: {}",
        lines.len(),
        lines.join("; ")
    )
}

/// The deploy's store: its manifest, the code pushed into `code/` (only
/// changes cross the wire: the rest is hard-linked from the store in
/// effect), checked file by file against the manifest; the .env and the
/// package next to it. Nothing live changes here.
fn stage(
    ctx: &Ctx,
    job: &Job,
    s: &Session,
    f: &Facts,
    dir: &str,
    current: Option<&str>,
) -> std::result::Result<(), String> {
    let manifest = ctx.manifest.as_ref().ok_or("no code to ship")?;
    s.sh_input(
        &format!("mkdir -p -m 700 {dir}/code {dir}/private && cat > {dir}/manifest.tsv"),
        SHORT,
        Some(manifest.render(&f.owner).into_bytes()),
    )?;
    let code = ctx.code.as_deref().unwrap_or(".");
    let list = ctx.files_from.as_ref().ok_or("no file list")?;
    let dest = plan::rsync_dest(&s.host.target.destination, &format!("{dir}/code"));
    let link = current.map(|c| format!("{}/code", ddir(c)));
    let push = plan::push_args(
        code,
        &dest,
        &shell(s),
        &list.path().to_string_lossy(),
        link.as_deref(),
        ctx.args.bwlimit,
    );
    let mut rsync = Command::new("rsync");
    rsync.args(&push);
    let out = ssh::output(rsync, s.name(), None, None)
        .map_err(|e| format!("cannot run rsync: {e} (install rsync)"))?;
    if let Some(why) = out.too_big {
        return Err(why);
    }
    if out.status != Some(0) {
        return Err(format!(
            "code sync failed (exit {}): {}",
            out.status.map_or("-".into(), |c| c.to_string()),
            rsync_error(&out.stderr)
        ));
    }
    let (v, code) = s.worker(
        &[
            "verify".into(),
            format!("{dir}/code"),
            format!("{dir}/manifest.tsv"),
        ],
        b"",
        SHORT,
    )?;
    if code != 0 {
        return Err(format!(
            "{} file(s) on the host differ from what was sent (did the code change during the deploy?): {}",
            v["n_bad"],
            plan::plan_list(&v, "bad").join(", ")
        ));
    }
    if let Some(env) = &job.env {
        s.sh_input(
            &format!("umask 077; cat > {dir}/private/env.new"),
            SHORT,
            Some(env.clone()),
        )?;
    }
    if let Some(p) = job.package.as_ref() {
        // Every shipped package is kept: it is what a later rollback installs.
        progress(s.name(), &format!("copying {} {}", p.name, p.version));
        let dest = plan::rsync_dest(&s.host.target.destination, &p.kept_path());
        let mut rsync = Command::new("rsync");
        rsync.args(["-t", "-e", &shell(s)]).arg(&p.path).arg(&dest);
        let out = ssh::output(rsync, s.name(), None, None).map_err(|e| format!("cannot run rsync: {e}"))?;
        if let Some(why) = out.too_big {
            return Err(why);
        }
        if out.status != Some(0) {
            return Err(format!(
                "copying the package failed: {}",
                remote::last_line(&out.stderr)
            ));
        }
    }
    Ok(())
}

/// Puts the host back to what deploy `id` replaced: its `before.tsv`
/// manifest's files (unshipped files stay as they are), the .env it
/// replaced, the package before it; then restarts and verifies. Safe to
/// run on a swap that was cut half-way, or never began. Returns the
/// package version now installed.
fn undo(
    ctx: &Ctx,
    s: &Session,
    f: &Facts,
    id: &str,
    meta: &Value,
    previous_package: Option<&str>,
) -> std::result::Result<Option<String>, String> {
    let dir = ddir(id);
    let before = meta["before"].as_str().filter(|b| plan::valid_id(b));
    let mut args = vec![
        "apply".to_string(),
        f.code_dir.clone(),
        format!("{dir}/manifest.tsv"),
        format!("{dir}/before.tsv"),
        "--lenient".into(),
        "--owner".into(),
        f.owner.clone(),
        "--id".into(),
        id.to_string(),
    ];
    if let Some(b) = before {
        args.extend(["--src".into(), format!("{}/code", ddir(b))]);
    }
    args.extend(["--src".into(), format!("{dir}/code")]);
    if meta["env_sent"] == true {
        args.extend(["--env-restore".into(), format!("{dir}/private/env.before")]);
    }
    // A deploy cut before it wrote before.tsv never swapped anything.
    let has_before = s.sh(&format!("test -f {dir}/before.tsv && echo yes || true"), SHORT)?;
    if has_before.trim() == "yes" {
        let (r, _) = s
            .worker(&args, b"", SWAP)
            .map_err(|e| format!("restoring the code failed: {e}"))?;
        let kept =
            r["conflicts"].as_array().map_or(0, Vec::len) + r["kept_changed"].as_array().map_or(0, Vec::len);
        progress(
            s.name(),
            &format!(
                "code restored to {}{}",
                before.unwrap_or("the files from before the first deploy"),
                if kept > 0 {
                    format!(" ({kept} file(s) written on the host since were left as they are)")
                } else {
                    String::new()
                }
            ),
        );
    }
    if let Some(env) = environment::restore(s, meta)? {
        progress(s.name(), &format!("environment restored to {env}"));
    }
    s.set_current(before)?;
    let mut version = s.probe()?.version;
    let want = meta["package_before"].as_str();
    if want.is_some() && version.as_deref() != want {
        let v = want.unwrap_or_default();
        let ext = if f.pm == "rpm" { "rpm" } else { "deb" };
        let file = match previous_package {
            Some(p) => p.to_string(),
            None => s
                .kept_package("jarvis-supervisor", v, ext)?
                .ok_or_else(|| format!("no package of version {v} is kept on the host"))?,
        };
        progress(s.name(), &format!("reinstalling {file}"));
        s.install(&f.pm, &file)?;
        version = Some(v.to_string());
    }
    s.restart(f)?;
    let pid = s.wait_healthy(
        Duration::from_secs(ctx.args.ready_timeout),
        Duration::from_secs(ctx.args.settle.min(10)),
    )?;
    progress(s.name(), &format!("previous version healthy again (pid {pid})"));
    Ok(version)
}

/// Finishes what an earlier deploy left in progress (its client was
/// killed, its connection cut, the host rebooted): before the swap, its
/// store is dropped; from the swap on, the deploy is undone, since it was
/// never verified. Returns None when nothing was in progress, else whether
/// anything live was undone.
fn recover(ctx: &Ctx, s: &Session, f: &Facts) -> std::result::Result<Option<bool>, String> {
    let mut undone = None;
    for (id, mut meta) in s.history()? {
        if meta["status"] != "in-progress" {
            continue;
        }
        let t0 = Instant::now();
        let phase = meta["phase"].as_str().unwrap_or("").to_string();
        if phase.is_empty() || phase == "staging" {
            progress(
                s.name(),
                &format!("deploy {id} was cut off before its swap: nothing live had changed"),
            );
            s.sh(&format!("rm -rf {}/code", ddir(&id)), SHORT)?;
            meta["status"] = "interrupted".into();
            meta["reason"] = format!(
                "cut off while {}",
                if phase.is_empty() { "running" } else { "staging" }
            )
            .into();
            undone = Some(undone.unwrap_or(false));
        } else {
            progress(
                s.name(),
                &format!("deploy {id} was cut off while {phase}: undoing it"),
            );
            undo(ctx, s, f, &id, &meta, None)?;
            meta["status"] = "interrupted-rolled-back".into();
            meta["reason"] = format!("cut off while {phase}; undone by the next deploy").into();
            undone = Some(true);
        }
        meta["phase"] = "done".into();
        meta["recovered_in_s"] = ((t0.elapsed().as_secs_f64() * 10.0).round() / 10.0).into();
        s.write_meta(&id, &meta)?;
    }
    Ok(undone)
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

/// `--rollback [--to ID]`, on purpose. A deploy left in progress is undone
/// first; that alone is the rollback when there was one.
fn by_hand(ctx: &Ctx, s: &Session, job: &Job, o: &mut Outcome) -> std::result::Result<(), String> {
    let f = probe(s, &job.host)?;
    o.package_before.clone_from(&f.version);
    o.package_after.clone_from(&f.version);
    let _lock = s.lock().inspect_err(|_| o.result = Result_::Refused)?;
    if let Some(undone) = recover(ctx, s, &f)? {
        if ctx.args.to.is_none() {
            // The unfinished deploy was the one to roll back: undone now
            // (and verified), or it never changed the live code.
            if !undone {
                s.wait_healthy(
                    Duration::from_secs(ctx.args.ready_timeout),
                    Duration::from_secs(1),
                )?;
            }
            o.package_after = s.probe()?.version;
            o.result = Result_::Restored;
            return Ok(());
        }
    }
    let f = s.probe()?;
    let history = s.history()?;
    let current = s.current()?;
    match &ctx.args.to {
        None => {
            let id = current.ok_or("no deploy is in effect on this host: nothing to roll back")?;
            let (_, meta) = history
                .iter()
                .find(|(i, _)| *i == id)
                .ok_or_else(|| format!("the deploy in effect, {id}, is missing from the history"))?;
            o.id = Some(id.clone());
            if let Some(b) = meta["before"].as_str() {
                if !history.iter().any(|(i, _)| i == b) {
                    return Err(format!(
                        "deploy {b}, which {id} replaced, was pruned (--keep): roll back with --to one of --list"
                    ));
                }
            }
            progress(s.name(), &format!("undoing deploy {id}"));
            let v = undo(ctx, s, &f, &id, meta, None)?;
            o.package_after = v;
            let mut m = meta.clone();
            m["status"] = "rolled-back".into();
            m["reason"] = "by hand: jarvisctl deploy --rollback".into();
            s.write_meta(&id, &m)?;
        }
        Some(to) => {
            if !plan::valid_id(to) {
                return Err(format!("{to:?} is not a deploy id (see jarvisctl deploy --list)"));
            }
            let (_, meta) = history
                .iter()
                .find(|(id, _)| id == to)
                .ok_or_else(|| format!("deploy {to} is not in this host's history (see --list)"))?;
            let src = ddir(to);
            let id = s.new_deploy_dir(&plan::deploy_id(SystemTime::now()))?;
            o.id = Some(id.clone());
            progress(s.name(), &format!("returning to deploy {to} as {id}"));
            let dir = ddir(&id);
            let before_manifest = manifest_of(current.as_deref());
            s.sh(
                &format!(
                    "set -e; test -f {src}/manifest.tsv || {{ echo 'deploy {to} has no manifest (made by an older jarvisctl): it cannot be restored exactly' >&2; exit 1; }}; \
                     cp {src}/manifest.tsv {dir}/manifest.tsv; cp -al {src}/code {dir}/code; \
                     if [ {before_manifest} = - ]; then : > {dir}/before.tsv; else cp {before_manifest} {dir}/before.tsv; fi"
                ),
                SHORT,
            )
            .map_err(|e| format!("preparing deploy {to}'s code failed: {e}"))?;
            // Its environment: kept, or rebuilt before anything changes.
            let venv =
                environment::for_rollback(s, &f.code_dir, meta, &format!("{dir}/code/requirements.txt"))
                    .inspect_err(|_| {
                        let _ = s.sh(&format!("rm -rf {dir}/code"), SHORT);
                    })?;
            let mut m = json!({"id": id, "host": s.name(), "code_dir": f.code_dir, "unit": f.unit, "owner": f.owner,
                    "kind": "rollback", "to": to, "status": "in-progress", "phase": "swapping", "before": current,
                    "package_before": f.version, "package_after": meta["package_after"], "env_sent": false});
            if let Some(v) = &venv {
                m["venv"] = v.clone();
            }
            s.write_meta(&id, &m)?;
            let (r, code) = s.worker(&apply_args(&f, &before_manifest, &id), b"", SWAP)?;
            if code != 0 {
                let why = format!("nothing was changed: {}", plan::conflict_lines(&r).join("; "));
                m["status"] = "refused".into();
                m["phase"] = "done".into();
                m["reason"] = why.clone().into();
                let _ = s.sh(&format!("rm -rf {dir}/code"), SHORT);
                s.write_meta(&id, &m)?;
                o.result = Result_::Refused;
                return Err(why);
            }
            s.set_current(Some(&id))?;
            if let Some(v) = &venv {
                let after = v["after"].as_str();
                environment::switch(s, after)?;
                progress(
                    s.name(),
                    &format!("environment -> {}", after.unwrap_or("the system's python3")),
                );
            }
            m["phase"] = "package".into();
            s.write_meta(&id, &m)?;
            reinstall_kept(s, &f.pm, meta["package_after"].as_str(), f.version.as_deref(), o)?;
            m["status"] = "deployed".into();
            m["phase"] = "done".into();
            s.write_meta(&id, &m)?;
        }
    }
    s.restart(&f)?;
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
    let current = s.current()?;
    let mut out = format!("{}: {} deploy(s) kept", printable(s.name()), rows.len());
    if !gone.is_empty() {
        out.push_str(&format!(", {} pruned", gone.len()));
    }
    out.push('\n');
    for (id, m) in &rows {
        // The host's records: shown defused.
        let s = |k: &str| printable(m[k].as_str().unwrap_or("-"));
        let mark = if current.as_deref() == Some(id.as_str()) {
            "*"
        } else {
            " "
        };
        out.push_str(&format!(
            " {mark}{id:<20} {:<24} {:<9} package {} -> {}  {} file(s){}\n",
            s("status"),
            s("kind"),
            s("package_before"),
            s("package_after"),
            m["files"]
                .as_u64()
                .map_or_else(|| "-".to_string(), |n| n.to_string()),
            m["reason"]
                .as_str()
                .map(|r| format!("  ({})", printable(r)))
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
    print!("{}", crate::output::table(&table));
}
