//! A deploy to one host, as a transaction: refuse on conflicts before
//! anything is written; stage the code (and the environment) beside the
//! live one; swap; install, restart, verify; on any failure from the swap
//! on, undo. The journal (meta.json) records each phase first, so that a
//! deploy cut off at any point is finished by the next one
//! (`recovery::recover`).

use std::time::{Instant, SystemTime};

use super::environment;
use super::error::{DeployError, Result};
use super::host_paths::ddir;
use super::ids::deploy_id;
use super::journal::{Kind, Meta, Phase, Status, Venv};
use super::probe::Facts;
use super::recovery::{self, meta_of};
use super::reply::{Plan, Room};
use super::report::{HostResult, Outcome};
use super::session::{Apply, Before, CompileRequest, EnvStep, PlanRequest, Session, Target};
use super::settings::{Code, Health, Job, Ship};
use super::watch::Healthy;
use super::{probe, progress, store, syntax};

/// What one host's deploy needs: the typed settings, nothing more.
pub struct Deploy<'a> {
    pub job: &'a Job,
    pub code: &'a Code,
    pub ship: &'a Ship,
    pub health: Health,
    pub keep: usize,
}

/// Conflicts: files that no deploy shipped (or that changed since) stand
/// where the code ships files. One progress line each; the error.
fn refusal(s: &dyn Session, plan: &Plan) -> DeployError {
    let lines = plan.conflict_lines();
    for l in &lines {
        progress(s.name(), &format!("CONFLICT {l}"));
    }
    DeployError::Conflicts(lines)
}

/// The space the deploy needs, against what the plan found free: on
/// the code root's filesystem the files the swap writes, on the deploy
/// history's the store's new files, its manifest, the .env and the
/// package. Refuses before anything is written.
pub(super) fn room(job: &Job, plan: &Plan, manifest: u64) -> Result<()> {
    let Some(space) = &plan.space else {
        return Ok(());
    };
    if let Some(r) = space.code.as_ref().filter(|r| r.short(0)) {
        return Err(DeployError::NoRoom {
            what: "the code root",
            room: Box::new(r.clone()),
            extra: 0,
        });
    }
    let package = job
        .package
        .as_ref()
        .and_then(|p| std::fs::metadata(&p.path).ok())
        .map_or(0, |m| m.len());
    let env = job.env.as_ref().map_or(0, |e| e.len() as u64);
    let extra = manifest + package + env;
    let Some(store) = &space.store else {
        return Ok(());
    };
    // One filesystem for both (a VPS with one disk): it takes both.
    let (what, room) = match &space.code {
        Some(c) if c.mount == store.mount && c.fstype == store.fstype => (
            "the code root and the deploy history",
            Room {
                needed: store.needed + c.needed,
                needed_inodes: store.needed_inodes + c.needed_inodes,
                margin: store.margin.max(c.margin),
                ..store.clone()
            },
        ),
        _ => ("the deploy history", store.clone()),
    };
    if room.short(extra) {
        return Err(DeployError::NoRoom {
            what,
            room: Box::new(room),
            extra,
        });
    }
    Ok(())
}

impl Deploy<'_> {
    pub fn run(&self, s: &dyn Session, o: &mut Outcome) -> Result<()> {
        let job = self.job;
        let f = probe(s, &job.host)?;
        o.package_before.clone_from(&f.version);
        o.package_after.clone_from(&f.version);
        // The bot and the deploy's steps need a /tmp that takes a write: the
        // restart would fail on the new version and on the old one alike.
        if let Some(why) = &f.tmp_problem {
            o.result = HostResult::Refused;
            return Err(DeployError::TmpUnwritable(why.clone()));
        }
        let _lock = s.lock().inspect_err(|_| o.result = HostResult::Refused)?;
        progress(s.name(), "locked");
        let f = match recovery::recover(s, &f, recovery::Finish::Deploy(self.health))? {
            Some(true) => probe(s, &job.host)?,
            _ => f,
        };
        o.package_before.clone_from(&f.version);
        o.package_after.clone_from(&f.version);
        let previous_package = self.previous_package(s, &f, o)?;
        recovery::repair_current(s, &f.code_dir).inspect_err(|_| o.result = HostResult::Refused)?;
        let current = s.current()?;
        // Conflicts are found before anything is written on the host.
        let manifest = self.code.manifest.render(&f.owner);
        let plan = s.plan(&PlanRequest {
            code_dir: &f.code_dir,
            from: current.as_deref(),
            to: Target::Sent(manifest.as_bytes()),
            take_over: &self.ship.take_over,
            // A refused deploy leaves the host as it was: the digests are
            // kept by the plan after staging, and by the swap.
            keep: false,
        })?;
        if !plan.conflicts.is_empty() {
            o.result = HostResult::Refused;
            let why = refusal(s, &plan);
            o.plan = Some(plan);
            return Err(why);
        }
        room(job, &plan, manifest.len() as u64).inspect_err(|_| o.result = HostResult::Refused)?;
        let id = s.new_deploy_dir(&deploy_id(SystemTime::now()))?;
        o.id = Some(id.clone());
        let files = self.code.manifest.files().count();
        let mut meta = Meta {
            id: id.clone(),
            host: s.name().to_string(),
            code_dir: f.code_dir.clone(),
            unit: f.unit.clone(),
            owner: f.owner.clone(),
            kind: Some(Kind::Deploy),
            status: Some(Status::InProgress),
            phase: Some(Phase::Staging),
            before: current.clone(),
            package_before: f.version.clone(),
            package_after: f.version.clone(),
            env_sent: job.env.is_some(),
            files: Some(files as u64),
            taken_over: Some(self.ship.take_over.clone()),
            ..Meta::default()
        };
        s.write_meta(&id, &meta)?;

        // 1. Stage: the code into this deploy's store, checked against its
        //    manifest. Nothing live changes here.
        progress(
            s.name(),
            &format!("deploy {id}: sending {files} file(s) into {}/code", ddir(&id)),
        );
        let plan = self.staged(s, &f, &id, current.as_deref(), &mut meta, o)?;
        // What the swap replaces: the manifest in effect, or on a first deploy
        // the files already there with the shipped content (adopted).
        s.store_before(
            &id,
            match &current {
                Some(cur) => Before::Deploy(cur),
                None => Before::Adopted(
                    self.code
                        .manifest
                        .subset(&plan.adopted)
                        .render(&f.owner)
                        .into_bytes(),
                ),
            },
        )?;
        progress(
            s.name(),
            &format!(
                "{} new, {} replaced, {} removed, {} adopted; {} unshipped file(s) kept as they are",
                plan.put.len(),
                plan.replace.len(),
                plan.delete.len(),
                plan.adopted.len(),
                plan.unshipped_text()
            ),
        );

        // 1b. The syntax of the .py files this deploy writes, by the bot's
        //     interpreter on the host: a file the bot runs that does not
        //     compile refuses the host; nothing live changed.
        if let Err(why) = self.compile_check(s, &f, &plan, current.is_none(), &id, o) {
            // Code that does not compile is refused; a check that could not
            // run (no interpreter, a cut connection) failed.
            let (status, result) = match why {
                DeployError::DoesNotCompile { .. } => (Status::Refused, HostResult::Refused),
                _ => (Status::Failed, HostResult::Failed),
            };
            let _ = s.drop_code(&id);
            meta.set(status, Phase::Done);
            meta.reason = Some(why.to_string());
            let _ = s.write_meta(&id, &meta);
            o.result = result;
            return Err(DeployError::NothingChanged(Box::new(why)));
        }

        // 1c. The environment, when what made it changed: built now, beside
        //     the one in use, as the service user; a failure changes nothing.
        let venv_change = match self.build_environment(s, &f, &plan, current.as_deref(), &id, &mut meta) {
            Ok(v) => v,
            Err(why) => {
                let _ = s.drop_code(&id);
                meta.set(Status::Failed, Phase::Done);
                meta.reason = Some(why.to_string());
                let _ = s.write_meta(&id, &meta);
                return Err(DeployError::NothingChanged(Box::new(why)));
            }
        };

        // 2. The swap. meta.json's phase is the journal: from "swapping" on,
        //    the next deploy or --rollback undoes this deploy if it never
        //    finished, whatever was cut.
        meta.phase = Some(Phase::Swapping);
        s.write_meta(&id, &meta)?;
        progress(s.name(), "swapping the new code in");
        let result = self.swap(
            s,
            &f,
            current.as_deref(),
            &id,
            venv_change.as_deref(),
            &mut meta,
            o,
        );
        self.finish(s, &f, &id, &mut meta, result, previous_package.as_deref(), o)
    }

    /// Compiles the .py files the swap would write (see `syntax`) with the
    /// interpreter that runs the bot after this deploy; the files not run
    /// that do not compile become warnings, in the progress and in `o`.
    fn compile_check(
        &self,
        s: &dyn Session,
        f: &Facts,
        plan: &Plan,
        first: bool,
        id: &str,
        o: &mut Outcome,
    ) -> Result<()> {
        let files = syntax::changed(plan, first, &self.code.manifest);
        if files.is_empty() {
            return Ok(());
        }
        // The deploy's --python builds the venv the bot then runs from.
        let python = self
            .ship
            .python
            .as_deref()
            .filter(|_| self.code.ships("requirements.txt"));
        let (python, entry) = syntax::bot_python(f, python);
        let c = s.compile(&CompileRequest {
            id: id.to_string(),
            code_dir: f.code_dir.clone(),
            owner: f.owner.clone(),
            python,
            entry,
            files,
        })?;
        let warnings = syntax::verdict(s.name(), &c)?;
        progress(
            s.name(),
            &format!(
                "{} changed .py file(s) compiled with {}: {}",
                c.checked,
                syntax::interpreter(&c),
                match warnings.len() {
                    0 => "all compile".to_string(),
                    n => format!("{n} warning(s)"),
                }
            ),
        );
        for w in warnings {
            progress(s.name(), &format!("WARNING {w}"));
            o.warnings.push(w);
        }
        Ok(())
    }

    /// Without the package of the version now installed, a failed upgrade
    /// could not be rolled back: refuses before anything changes. The kept
    /// package to reinstall on a failure, when this deploy installs one.
    fn previous_package(&self, s: &dyn Session, f: &Facts, o: &mut Outcome) -> Result<Option<String>> {
        let install = self
            .job
            .package
            .as_ref()
            .filter(|p| f.version.as_deref() != Some(p.version.as_str()));
        Ok(match (install, &f.version) {
            (Some(p), Some(v)) => match s.kept_package(&p.name, v, &p.ext)? {
                Some(file) => Some(file),
                None => {
                    o.result = HostResult::Refused;
                    return Err(DeployError::NoPreviousPackage {
                        version: v.clone(),
                        name: p.name.clone(),
                        ext: p.ext.clone(),
                    });
                }
            },
            _ => None,
        })
    }

    /// Stages the code, then plans again against the stored manifest: the
    /// plan of the swap. A failure or a conflict that appeared meanwhile
    /// drops the store and ends the deploy; nothing live changed.
    fn staged(
        &self,
        s: &dyn Session,
        f: &Facts,
        id: &str,
        current: Option<&str>,
        meta: &mut Meta,
        o: &mut Outcome,
    ) -> Result<Plan> {
        let staged = self.stage(s, f, id, current).and_then(|_| {
            s.plan(&PlanRequest {
                code_dir: &f.code_dir,
                from: current,
                to: Target::Stored(id),
                take_over: &self.ship.take_over,
                keep: true,
            })
        });
        match staged {
            Ok(plan) if plan.conflicts.is_empty() => Ok(plan),
            Ok(plan) => {
                // A conflict that appeared while the code was sent.
                o.result = HostResult::Refused;
                let why = refusal(s, &plan);
                let _ = s.drop_code(id);
                meta.status = Some(Status::Refused);
                meta.reason = Some(why.to_string());
                let _ = s.write_meta(id, meta);
                o.plan = Some(plan);
                Err(why)
            }
            Err(why) => {
                let _ = s.drop_code(id);
                meta.status = Some(Status::Failed);
                meta.reason = Some(why.to_string());
                let _ = s.write_meta(id, meta);
                Err(DeployError::Untouched(Box::new(why)))
            }
        }
    }

    /// The end of a swap: deployed (and the history pruned), or undone.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        s: &dyn Session,
        f: &Facts,
        id: &str,
        meta: &mut Meta,
        result: Result<Healthy>,
        previous_package: Option<&str>,
        o: &mut Outcome,
    ) -> Result<()> {
        match result {
            Err(why @ DeployError::WorkerUntouched(_)) => {
                // The swap stopped before its first change (it did not fit,
                // or its staging failed and removed what it wrote): the bot
                // runs the old version, untouched; nothing to undo, and no
                // restart on a host short of space.
                progress(s.name(), &format!("FAILED: {why}"));
                let _ = s.drop_code(id);
                meta.set(Status::Failed, Phase::Done);
                meta.reason = Some(why.to_string());
                let _ = s.write_meta(id, meta);
                o.result = HostResult::Failed;
                Err(why)
            }
            Ok(healthy) => {
                progress(s.name(), &format!("healthy ({healthy})"));
                o.verified = Some(healthy.to_string());
                meta.set(Status::Deployed, Phase::Done);
                s.write_meta(id, meta)?;
                recovery::clean(s, &f.code_dir, id, false);
                o.result = HostResult::Deployed;
                if let Ok(gone) = recovery::prune(s, self.keep) {
                    if !gone.is_empty() {
                        progress(s.name(), &format!("pruned {} old deploy(s)", gone.len()));
                    }
                }
                Ok(())
            }
            Err(why) => {
                progress(s.name(), &format!("FAILED: {why}; rolling back"));
                let back = recovery::undo(s, f, id, meta, previous_package, self.health);
                if let Ok(v) = &back {
                    o.package_after.clone_from(v);
                }
                meta.set(
                    if back.is_ok() {
                        Status::RolledBack
                    } else {
                        Status::RollbackFailed
                    },
                    Phase::Done,
                );
                meta.reason = Some(why.to_string());
                let written = s.write_meta(id, meta);
                match back {
                    Ok(_) => {
                        if written.is_ok() {
                            recovery::clean(s, &f.code_dir, id, true);
                        }
                        o.result = HostResult::RolledBack;
                        Err(DeployError::RolledBack(Box::new(why)))
                    }
                    Err(e) => Err(DeployError::RollbackFailed {
                        why: Box::new(why),
                        undo: Box::new(e),
                    }),
                }
            }
        }
    }

    /// The swap, up to the health verdict, each phase journaled first;
    /// the pid that stayed healthy.
    #[allow(clippy::too_many_arguments)]
    fn swap(
        &self,
        s: &dyn Session,
        f: &Facts,
        current: Option<&str>,
        id: &str,
        venv_change: Option<&str>,
        meta: &mut Meta,
        o: &mut Outcome,
    ) -> Result<Healthy> {
        let job = self.job;
        let mut apply = Apply::forward(f, current, id);
        apply.take_over = self.ship.take_over.clone();
        if job.env.is_some() {
            apply.env = EnvStep::Send;
        }
        apply.pause_after = self.ship.pause_swap_after;
        let r = s.apply(&apply)?;
        if r.stale_removed > 0 {
            progress(
                s.name(),
                &format!(
                    "removed {} temporary file(s) that a swap cut off earlier had left",
                    r.stale_removed
                ),
            );
        }
        if !r.conflicts.is_empty() {
            return Err(DeployError::ChangedWhileRunning(r.conflict_lines()));
        }
        s.set_current(Some(id))?;
        if let Some(new) = venv_change {
            progress(s.name(), &format!("environment -> {new}"));
            s.venv_switch(Some(new))?;
        }
        meta.phase = Some(Phase::Package);
        s.write_meta(id, meta)?;
        let install = job
            .package
            .as_ref()
            .filter(|p| f.version.as_deref() != Some(p.version.as_str()));
        if let Some(p) = install {
            progress(s.name(), &format!("installing {} {}", p.name, p.version));
            meta.package_after = Some(p.version.clone());
            o.package_after = Some(p.version.clone());
            s.write_meta(id, meta)?;
            s.install(f.pm, &p.kept_path())?;
        }
        meta.phase = Some(Phase::Restarting);
        s.write_meta(id, meta)?;
        progress(s.name(), "restarting");
        s.restart(f)?;
        meta.phase = Some(Phase::Verifying);
        s.write_meta(id, meta)?;
        progress(
            s.name(),
            &format!(
                "waiting for the bot's own word that it is up (its /health or component record; else {} s of health)",
                self.health.settle.as_secs()
            ),
        );
        s.wait_healthy(self.health.ready, self.health.settle)
    }

    /// The deploy's store: its manifest and code (`store::fill`); the .env
    /// and the package next to it. Nothing live changes here.
    fn stage(&self, s: &dyn Session, f: &Facts, id: &str, current: Option<&str>) -> Result<()> {
        let job = self.job;
        let manifest = self.code.manifest.render(&f.owner);
        store::fill(s, id, manifest.as_bytes(), &self.code.dir, current)?;
        if let Some(env) = &job.env {
            s.store_env(id, env)?;
        }
        if let Some(p) = job.package.as_ref() {
            // Every shipped package is kept: it is what a later rollback installs.
            progress(s.name(), &format!("copying {} {}", p.name, p.version));
            s.send_package(p)?;
        }
        Ok(())
    }

    /// Builds the environment on the host when this deploy changes what made
    /// it (see `environment::reason`), and records in `meta` the one in use
    /// before and after; the new `venvs/ID` to switch to in the swap, or None.
    /// A deploy that builds nothing carries the record of the one before it,
    /// so that `--rollback --to` it knows its environment.
    fn build_environment(
        &self,
        s: &dyn Session,
        f: &Facts,
        plan: &Plan,
        current: Option<&str>,
        id: &str,
        meta: &mut Meta,
    ) -> Result<Option<String>> {
        let cur_meta = meta_of(s, current)?;
        let python = self.ship.python.as_deref();
        let wheelhouse = self.code.wheelhouse.as_ref();
        let ships = self.code.ships("requirements.txt");
        let Some(why) = environment::reason(plan, ships, cur_meta.as_ref(), wheelhouse, python) else {
            if let Some(was) = cur_meta.and_then(|m| m.venv) {
                meta.venv = Some(Venv {
                    before: was.after.clone(),
                    ..was
                });
            }
            return Ok(None);
        };
        let user = f.owner.split(':').next().unwrap_or("the service user");
        progress(
            s.name(),
            &format!("{why}: building the environment as {user} beside the one in use"),
        );
        let before = s.venv_in_use()?;
        if let Some(w) = wheelhouse {
            progress(s.name(), &format!("sending the wheelhouse to {}", w.remote()));
            s.ship_wheelhouse(w)?;
        }
        let t0 = Instant::now();
        let new = s.venv_build(
            &format!("{}/code/requirements.txt", ddir(id)),
            wheelhouse.map(|w| w.remote()).as_deref(),
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
        meta.venv = Some(environment::record(
            before.as_deref(),
            Some(&new),
            wheelhouse,
            python,
        ));
        Ok(Some(new))
    }
}
