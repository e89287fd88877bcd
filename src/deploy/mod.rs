//! Deploy: ships the bot's code (and optionally the package and a `.env`)
//! to hosts over ssh, restarts, verifies that the bot stays healthy, and
//! rolls back by itself when it does not.
//!
//! Per host, under a lock held for the whole session: probe (package
//! format, init, and from the host's own unit: user, code root, unit name),
//! finish a deploy left in progress, plan against the live code (conflicts
//! refuse the host before anything is written), the code pushed into a new
//! deploy's store and checked against its manifest, the swap
//! (python/deploy_host.py: only paths the manifest in effect lists, each
//! file renamed into place), the package if its version differs, a
//! restart, and the health wait. A failure after the swap began moves the
//! files back to the manifest before, reinstalls the previous package,
//! restarts and verifies.
//!
//! The layout: `settings` (what is asked, checked locally), `session` (the
//! actions on one host, as a trait; `remote` does them over ssh),
//! `transaction` and `recovery` (the steps, which decide), `journal` (each
//! deploy's meta.json), `reply` (what the host answers), `report` (what
//! the user sees).

#[cfg(test)]
mod aside_tests;
mod dry_run;
mod environment;
mod error;
#[cfg(test)]
mod fake;
pub mod fleet;
#[cfg(test)]
mod full_disk_tests;
mod host_paths;
#[cfg(test)]
mod host_tests;
pub mod hosts;
mod ids;
mod journal;
mod lock;
mod plan;
mod probe;
mod recovery;
#[cfg(test)]
mod recovery_tests;
mod remote;
mod reply;
mod report;
#[cfg(test)]
mod room_tests;
mod session;
pub mod settings;
pub mod settle;
mod shell;
mod store;
mod syntax;
#[cfg(test)]
mod syntax_tests;
#[cfg(test)]
mod tests;
mod transaction;
mod watch;

use std::time::Instant;

pub use error::DeployError;
pub use report::{print_summary, HostResult, Outcome};
pub use settings::{Health, Mode, Settings, Ship, SshSettings};

use crate::output::printable;
use dry_run::{DryPlan, EnvSummary};
use error::Result;
use hosts::Host;
use jarvis_model::paths::Paths;
use probe::Facts;
use session::{PlanRequest, Session, Target};
use settings::{Code, Job};

/// One progress line on stderr, defused: most of what it says (versions,
/// paths, reasons, the environment in use) comes from the host.
pub(crate) fn progress(host: &str, msg: &str) {
    eprintln!("{}: {}", printable(host), printable(msg));
}

/// Deploys (or lists, rolls back, plans) on every host; one outcome each.
/// Err only when the local checks fail: nothing was sent then.
pub fn run(paths: &Paths, settings: &Settings) -> std::result::Result<Vec<Outcome>, DeployError> {
    let (code, jobs) = settings::prepare(paths, settings)?;
    let one = |job: &Job| {
        // One ssh connection per host for the whole run, shared by every
        // command and rsync of it (issue 28): ended when this host is done.
        let master = crate::ssh::Master::start(&job.host.target, &settings.ssh.options, settings.ssh.connect);
        let mut ssh = settings.ssh.clone();
        if let Some(m) = &master {
            ssh.options.extend(m.options().iter().cloned());
        }
        let s = remote::SshSession {
            host: &job.host,
            ssh: &ssh,
            bwlimit: match &settings.mode {
                Mode::Deploy(ship) | Mode::DryRun(ship) => ship.bwlimit,
                _ => None,
            },
            local: false,
        };
        let o = one(&s, settings, code.as_ref(), job);
        drop(master);
        o
    };
    Ok(fleet::run(
        &jobs,
        settings.order,
        one,
        |o| o.result.ok(),
        |j, why| match why {
            fleet::NotRun::Skipped => Outcome::skipped(&j.host.target.name),
            fleet::NotRun::Panicked => Outcome {
                reason: Some("the deploy of this host panicked".into()),
                result: HostResult::Failed,
                ..Outcome::skipped(&j.host.target.name)
            },
        },
    ))
}

/// One host, whatever the mode; its outcome, with the reason of a failure.
fn one(s: &dyn Session, settings: &Settings, code: Option<&Code>, job: &Job) -> Outcome {
    let t0 = Instant::now();
    let mut o = Outcome::new(s.name());
    let r = match (&settings.mode, code) {
        (Mode::List, _) => list(s, settings.keep, settings.json, &mut o),
        (Mode::Rollback { to }, _) => recovery::by_hand(s, &job.host, to.as_deref(), settings.health, &mut o),
        (Mode::DryRun(ship), Some(code)) => dry_run(s, job, code, ship, settings.json, &mut o),
        (Mode::Deploy(ship), Some(code)) => {
            let step = transaction::Deploy {
                job,
                code,
                ship,
                health: settings.health,
                keep: settings.keep,
            };
            step.run(s, &mut o)
        }
        (Mode::DryRun(_) | Mode::Deploy(_), None) => Err(DeployError::NoCode),
    };
    if let Err(e) = r {
        let e = e.to_string();
        progress(s.name(), &e);
        o.reason = Some(e);
    }
    o.elapsed_s = t0.elapsed().as_secs_f64();
    o
}

/// What the host has, said in one line; refuses a host without the tools
/// a deploy needs, or whose code root is not the one the hosts file says.
fn probe(s: &dyn Session, host: &Host) -> Result<Facts> {
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
            return Err(DeployError::MissingTool(what));
        }
    }
    if let Some(want) = &host.code_dir {
        if want.trim_end_matches('/') != f.code_dir {
            return Err(DeployError::CodeDirMismatch {
                want: want.clone(),
                unit: f.unit.clone(),
                have: f.code_dir.clone(),
            });
        }
    }
    Ok(f)
}

/// `--dry-run`: the plan against the live code, printed; nothing changes.
fn dry_run(s: &dyn Session, job: &Job, code: &Code, ship: &Ship, json: bool, o: &mut Outcome) -> Result<()> {
    let f = probe(s, &job.host)?;
    o.package_before.clone_from(&f.version);
    o.package_after = job.package.as_ref().map(|p| p.version.clone());
    let current = s.current()?;
    let manifest = code.manifest.render(&f.owner);
    let plan = s.plan(&PlanRequest {
        code_dir: &f.code_dir,
        from: current.as_deref(),
        to: Target::Sent(manifest.as_bytes()),
        take_over: &ship.take_over,
        keep: false,
    })?;
    let env = job
        .env
        .as_ref()
        .map(|b| EnvSummary::of(&String::from_utf8_lossy(b)));
    let cur_meta = recovery::meta_of(s, current.as_deref())?;
    let rebuild = environment::reason(
        &plan,
        code.ships("requirements.txt"),
        cur_meta.as_ref(),
        code.wheelhouse.as_ref(),
        ship.python.as_deref(),
    );
    // What the deploy would refuse up front, besides conflicts.
    let mut refusals = Vec::new();
    if let Some(why) = &f.tmp_problem {
        refusals.push(DeployError::TmpUnwritable(why.clone()).to_string());
    }
    if let Err(why) = transaction::room(job, &plan, manifest.len() as u64) {
        refusals.push(why.to_string());
    }
    let dry = DryPlan {
        host: s.name(),
        code_dir: &f.code_dir,
        plan: &plan,
        installed: f.version.as_deref(),
        shipped: o.package_after.as_deref(),
        env: env.as_ref(),
        environment: rebuild.as_deref(),
        refusals: &refusals,
    };
    if !json {
        print!("{}", dry.render());
    }
    o.plan = Some(plan);
    o.result = HostResult::DryRun;
    Ok(())
}

/// `--list`: prunes to `keep`, then prints the history.
fn list(s: &dyn Session, keep: usize, json: bool, o: &mut Outcome) -> Result<()> {
    let gone = recovery::prune(s, keep)?;
    let rows = s.history()?;
    let current = s.current()?;
    if !json {
        print!(
            "{}",
            report::history(s.name(), &rows, current.as_deref(), gone.len())
        );
    }
    o.id = rows.last().map(|r| r.0.clone());
    o.result = HostResult::Listed;
    Ok(())
}
