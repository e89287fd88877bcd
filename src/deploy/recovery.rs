//! Putting a host back: the undo of one deploy, the recovery of one that
//! was cut off, `--rollback [--to ID]` by hand, and pruning the history.

use std::time::{Duration, Instant, SystemTime};

use super::environment;
use super::error::{DeployError, Result};
use super::host_paths::ddir;
use super::hosts::Host;
use super::ids::{self, deploy_id, valid_id};
use super::journal::{Kind, Meta, Phase, Status};
use super::probe::{Facts, PackageManager};
use super::report::{HostResult, Outcome};
use super::session::{Apply, EnvStep, PlanRequest, Session, Target};
use super::settings::Health;
use super::{plan, probe, progress};

/// The meta.json of deploy `id` (None for none, or one not in the history).
pub fn meta_of(s: &dyn Session, id: Option<&str>) -> Result<Option<Meta>> {
    Ok(match id {
        Some(c) => s.history()?.into_iter().find(|(i, _)| i == c).map(|(_, m)| m),
        None => None,
    })
}

/// Puts the host's files back to what deploy `id` replaced: its
/// `before.tsv` manifest's files (unshipped files stay as they are), the
/// .env and the environment it replaced, and `current`. No restart and no
/// package: the host's own settle runs this before the bot starts. Safe to
/// run on a swap that was cut half-way, or never began.
pub fn put_back(s: &dyn Session, code_dir: &str, owner: &str, id: &str, meta: &Meta) -> Result<()> {
    let dir = ddir(id);
    let before = meta.before.as_deref().filter(|b| valid_id(b));
    let mut srcs = Vec::new();
    if let Some(b) = before {
        srcs.push(format!("{}/code", ddir(b)));
    }
    srcs.push(format!("{dir}/code"));
    let back = Apply {
        code_dir: code_dir.to_string(),
        from: format!("{dir}/manifest.tsv"),
        to: format!("{dir}/before.tsv"),
        srcs,
        owner: owner.to_string(),
        id: id.to_string(),
        lenient: true,
        take_over: Vec::new(),
        env: if meta.env_sent {
            EnvStep::Restore
        } else {
            EnvStep::Keep
        },
        pause_after: None,
    };
    // A deploy cut before it wrote before.tsv never swapped anything.
    if s.has_before(id)? {
        let r = s
            .apply(&back)
            .map_err(|e| DeployError::step("restoring the code", e))?;
        let kept = r.conflicts.len() + r.kept_changed.len();
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
    s.set_current(before)
}

/// Deploy `id` is over, as `current` and its meta.json now say (verified,
/// or undone): the old files its swap kept aside for the undo go. Never
/// before: a power cut in between must leave the undo its old files. A
/// failure is said, not fatal: the next forward swap removes them.
pub fn clean(s: &dyn Session, code_dir: &str, id: &str, undone: bool) {
    if let Err(e) = s.clean(code_dir, id, undone) {
        progress(
            s.name(),
            &format!("the old files deploy {id} kept aside in {code_dir} stay until the next deploy: {e}"),
        );
    }
}

/// Puts the host back to what deploy `id` replaced ([`put_back`]), the
/// package before it too; then restarts and verifies. Returns the package
/// version now installed.
pub fn undo(
    s: &dyn Session,
    f: &Facts,
    id: &str,
    meta: &Meta,
    previous_package: Option<&str>,
    health: Health,
) -> Result<Option<String>> {
    put_back(s, &f.code_dir, &f.owner, id, meta)?;
    // The files are whole again. A start from here on (the package's
    // postinst, the restart below) runs `settle`, which waits while a live
    // deploy's journal says `swapping`: the restart step holds the step
    // lock that settle would wait for.
    if meta.in_progress() && matches!(meta.phase, None | Some(Phase::Swapping)) {
        let mut m = meta.clone();
        m.phase = Some(Phase::Restarting);
        s.write_meta(id, &m)?;
    }
    let mut version = s.probe()?.version;
    let want = meta.package_before.as_deref();
    if want.is_some() && version.as_deref() != want {
        let v = want.unwrap_or_default();
        let file = match previous_package {
            Some(p) => p.to_string(),
            None => s
                .kept_package("jarvis-supervisor", v, f.pm.package_ext())?
                .ok_or_else(|| DeployError::NoKeptPackage(v.to_string()))?,
        };
        progress(s.name(), &format!("reinstalling {file}"));
        s.install(f.pm, &file)?;
        version = Some(v.to_string());
    }
    s.restart(f)?;
    let healthy = s.wait_healthy(health.ready, health.settle.min(Duration::from_secs(10)))?;
    progress(s.name(), &format!("previous version healthy again ({healthy})"));
    Ok(version)
}

/// A deploy that never finished, as its journal on the host shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    pub id: String,
    /// Its journal, or for a damaged one what is known from the host: the
    /// deploy it replaced is the one still in effect.
    pub meta: Meta,
    /// Cut from its swap on (or its journal is damaged and its swap may
    /// have begun): its files are put back.
    pub swapped: bool,
}

impl Cut {
    /// Cut off after its swap was done: the bot may have been restarted on
    /// its code.
    pub fn restarted(&self) -> bool {
        self.meta.damaged.is_none()
            && matches!(
                self.meta.phase,
                Some(Phase::Package | Phase::Restarting | Phase::Verifying | Phase::Done)
            )
    }

    /// "swapping", or why the phase is not known.
    pub fn phase(&self) -> String {
        match (&self.meta.damaged, &self.meta.phase) {
            (Some(why), _) => format!("an unknown step ({why})"),
            (None, Some(p)) => p.as_str().to_string(),
            (None, None) => "running".to_string(),
        }
    }
}

/// The deploys that `history` (oldest first) shows as cut off, with
/// `current` the deploy in effect. One whose journal says so; and one whose
/// journal is damaged, that holds a `before.tsv` (its swap may have begun),
/// and is newer than the deploy in effect (a swap that finished made it the
/// one in effect).
pub fn interrupted(
    history: &[(String, Meta)],
    current: Option<&str>,
    has_before: impl Fn(&str) -> bool,
) -> Vec<Cut> {
    history
        .iter()
        .filter_map(|(id, m)| {
            if m.in_progress() {
                let swapped = !matches!(m.phase, None | Some(Phase::Staging));
                return Some(Cut {
                    id: id.clone(),
                    meta: m.clone(),
                    swapped,
                });
            }
            let newer = current.is_none_or(|c| ids::order(id) > ids::order(c));
            (m.damaged.is_some() && newer && Some(id.as_str()) != current && has_before(id)).then(|| Cut {
                id: id.clone(),
                meta: Meta {
                    id: id.clone(),
                    before: current.map(str::to_string),
                    status: Some(Status::InProgress),
                    ..m.clone()
                },
                swapped: true,
            })
        })
        .collect()
}

/// How a cut-off deploy is finished.
#[derive(Debug, Clone, Copy)]
pub enum Finish<'a> {
    /// By the next deploy: undone, restarted and verified.
    Deploy(Health),
    /// By the host before the bot starts (`jarvisctl settle`): files put
    /// back only; `by` says which.
    Host { by: &'a str },
}

/// Finishes what an earlier deploy left in progress (its client was
/// killed, its connection cut, the host rebooted): before the swap, its
/// store is dropped; from the swap on, the deploy is undone, since it was
/// never verified. Returns None when nothing was in progress, else whether
/// anything live was undone.
pub fn recover(s: &dyn Session, f: &Facts, how: Finish) -> Result<Option<bool>> {
    let history = s.history()?;
    let current = s.current()?;
    let cuts = interrupted(&history, current.as_deref(), |id| {
        s.has_before(id).unwrap_or(false)
    });
    let mut undone = None;
    for Cut {
        id,
        mut meta,
        swapped,
    } in cuts
    {
        let t0 = Instant::now();
        let phase = Cut {
            id: id.clone(),
            meta: meta.clone(),
            swapped,
        }
        .phase();
        let by = match how {
            Finish::Deploy(_) => "the next deploy",
            Finish::Host { by } => by,
        };
        if !swapped {
            progress(
                s.name(),
                &format!("deploy {id} was cut off before its swap: nothing live had changed"),
            );
            s.drop_code(&id)?;
            meta.status = Some(Status::Interrupted);
            meta.reason = Some(format!("cut off while {phase}"));
            undone = Some(undone.unwrap_or(false));
        } else {
            progress(
                s.name(),
                &format!("deploy {id} was cut off while {phase}: undoing it"),
            );
            if meta.code_dir.is_empty() {
                meta.code_dir.clone_from(&f.code_dir);
                meta.owner.clone_from(&f.owner);
            }
            match how {
                Finish::Deploy(health) => {
                    undo(s, f, &id, &meta, None, health)?;
                }
                Finish::Host { .. } => {
                    put_back(s, &meta.code_dir, &meta.owner, &id, &meta)?;
                    let installed = s.probe()?.version;
                    if meta.package_before.is_some() && meta.package_before != installed {
                        progress(
                            s.name(),
                            &format!(
                                "the package stays at {}: deploy {id} installed it; `jarvisctl deploy --rollback` from the workstation puts back {}",
                                installed.as_deref().unwrap_or("-"),
                                meta.package_before.as_deref().unwrap_or("-")
                            ),
                        );
                    }
                }
            }
            meta.status = Some(Status::InterruptedRolledBack);
            meta.reason = Some(format!("cut off while {phase}; undone by {by}"));
            undone = Some(true);
        }
        meta.damaged = None;
        meta.phase = Some(Phase::Done);
        meta.recovered_in_s = Some((t0.elapsed().as_secs_f64() * 10.0).round() / 10.0);
        s.write_meta(&id, &meta)?;
        if swapped {
            clean(s, &meta.code_dir, &id, true);
        }
    }
    Ok(undone)
}

/// A damaged `current` (garbage, or a deploy not in the history) is
/// rebuilt from the live system: the newest deploy whose manifest the live
/// code holds exactly. Returns what was wrong and what it names now; None
/// when it was sound (or absent: no deploy yet).
pub fn repair_current(s: &dyn Session, code_dir: &str) -> Result<Option<(String, String)>> {
    let Some(text) = s.current_raw()? else {
        return Ok(None);
    };
    let id = text.trim();
    let history = s.history()?;
    if valid_id(id) && history.iter().any(|(i, _)| i == id) {
        return Ok(None);
    }
    let why = if valid_id(id) {
        format!("it names deploy {id}, which is not in the history")
    } else {
        format!("it holds no deploy id: {} byte(s)", text.len())
    };
    // Newest first; a deploy whose journal says it never changed the live
    // code cannot be the one in effect.
    let candidates = history.iter().rev().filter(|(_, m)| {
        !matches!(
            m.status,
            Some(Status::Refused | Status::Interrupted | Status::InProgress)
        )
    });
    for (cand, _) in candidates.take(20) {
        let Ok(p) = s.plan(&PlanRequest {
            code_dir,
            from: Some(cand),
            to: Target::Stored(cand),
            take_over: &[],
            keep: false,
        }) else {
            continue;
        };
        if p.put.is_empty() && p.replace.is_empty() && p.conflicts.is_empty() && p.mkdir.is_empty() {
            s.set_current(Some(cand))?;
            progress(
                s.name(),
                &format!("deploys/current was damaged ({why}); rebuilt: the live code is deploy {cand}'s"),
            );
            return Ok(Some((why, cand.clone())));
        }
    }
    Err(DeployError::CurrentLost {
        why,
        deploys: history.len(),
    })
}

/// Puts back version `want` from the packages kept on the host, unless it
/// is what is installed.
fn reinstall_kept(
    s: &dyn Session,
    pm: PackageManager,
    want: Option<&str>,
    installed: Option<&str>,
    o: &mut Outcome,
) -> Result<()> {
    let Some(v) = want.filter(|&w| Some(w) != installed) else {
        return Ok(());
    };
    let file = s
        .kept_package("jarvis-supervisor", v, pm.package_ext())?
        .ok_or_else(|| DeployError::NoKeptPackage(v.to_string()))?;
    s.install(pm, &file)?;
    o.package_after = Some(v.to_string());
    Ok(())
}

/// `--rollback [--to ID]`, on purpose. A deploy left in progress is undone
/// first; that alone is the rollback when there was one.
pub fn by_hand(
    s: &dyn Session,
    host: &Host,
    to: Option<&str>,
    health: Health,
    o: &mut Outcome,
) -> Result<()> {
    let f = probe(s, host)?;
    o.package_before.clone_from(&f.version);
    o.package_after.clone_from(&f.version);
    let _lock = s.lock().inspect_err(|_| o.result = HostResult::Refused)?;
    if let Some(undone) = recover(s, &f, Finish::Deploy(health))? {
        if to.is_none() {
            // The unfinished deploy was the one to roll back: undone now
            // (and verified), or it never changed the live code.
            if !undone {
                let healthy = s.wait_healthy(health.ready, Duration::from_secs(1))?;
                o.verified = Some(healthy.to_string());
            }
            o.package_after = s.probe()?.version;
            o.result = HostResult::Restored;
            return Ok(());
        }
    }
    let f = s.probe()?;
    repair_current(s, &f.code_dir)?;
    let history = s.history()?;
    let current = s.current()?;
    match to {
        None => {
            let id = current.ok_or(DeployError::NothingToRollBack)?;
            let (_, meta) = history
                .iter()
                .find(|(i, _)| *i == id)
                .ok_or_else(|| DeployError::MissingFromHistory(id.clone()))?;
            o.id = Some(id.clone());
            if let Some(b) = &meta.before {
                if !history.iter().any(|(i, _)| i == b) {
                    return Err(DeployError::BeforePruned {
                        before: b.clone(),
                        id,
                    });
                }
            }
            progress(s.name(), &format!("undoing deploy {id}"));
            o.package_after = undo(s, &f, &id, meta, None, health)?;
            let mut m = meta.clone();
            m.status = Some(Status::RolledBack);
            m.reason = Some("by hand: jarvisctl deploy --rollback".into());
            s.write_meta(&id, &m)?;
            clean(s, &f.code_dir, &id, true);
            // The undo restarted the bot on the old code and waited for it:
            // one restart, one outage (issue 28).
            o.result = HostResult::Restored;
            return Ok(());
        }
        Some(to) => return_to(s, &f, &history, current.as_deref(), to, o)?,
    }
    s.restart(&f)?;
    let healthy = s.wait_healthy(health.ready, health.settle)?;
    progress(s.name(), &format!("healthy ({healthy})"));
    o.verified = Some(healthy.to_string());
    o.result = HostResult::Restored;
    Ok(())
}

/// `--rollback --to ID`: a new deploy of deploy `to`'s code, environment
/// and package, swapped in like any other (the caller restarts).
fn return_to(
    s: &dyn Session,
    f: &Facts,
    history: &[(String, Meta)],
    current: Option<&str>,
    to: &str,
    o: &mut Outcome,
) -> Result<()> {
    if !valid_id(to) {
        return Err(DeployError::NotAnId(to.to_string()));
    }
    let (_, target) = history
        .iter()
        .find(|(id, _)| id == to)
        .ok_or_else(|| DeployError::NotInHistory(to.to_string()))?;
    let id = s.new_deploy_dir(&deploy_id(SystemTime::now()))?;
    o.id = Some(id.clone());
    progress(s.name(), &format!("returning to deploy {to} as {id}"));
    s.copy_deploy(to, &id, current)
        .map_err(|e| DeployError::step(format!("preparing deploy {to}'s code"), e))?;
    // Its environment: kept, or rebuilt before anything changes.
    let requirements = format!("{}/code/requirements.txt", ddir(&id));
    let venv = environment::for_rollback(s, &f.code_dir, target, &requirements).inspect_err(|_| {
        let _ = s.drop_code(&id);
    })?;
    let mut m = Meta {
        id: id.clone(),
        host: s.name().to_string(),
        code_dir: f.code_dir.clone(),
        unit: f.unit.clone(),
        owner: f.owner.clone(),
        kind: Some(Kind::Rollback),
        to: Some(to.to_string()),
        status: Some(Status::InProgress),
        phase: Some(Phase::Swapping),
        before: current.map(str::to_string),
        package_before: f.version.clone(),
        package_after: target.package_after.clone(),
        env_sent: false,
        venv: venv.clone(),
        ..Meta::default()
    };
    s.write_meta(&id, &m)?;
    let r = s.apply(&Apply::forward(f, current, &id))?;
    if !r.conflicts.is_empty() {
        let why = DeployError::RollbackConflicts(r.conflict_lines());
        m.set(Status::Refused, Phase::Done);
        m.reason = Some(why.to_string());
        let _ = s.drop_code(&id);
        s.write_meta(&id, &m)?;
        o.result = HostResult::Refused;
        return Err(why);
    }
    s.set_current(Some(&id))?;
    if let Some(v) = &venv {
        let after = v.after.as_deref();
        s.venv_switch(after)?;
        progress(
            s.name(),
            &format!("environment -> {}", after.unwrap_or("the system's python3")),
        );
    }
    m.phase = Some(Phase::Package);
    s.write_meta(&id, &m)?;
    reinstall_kept(s, f.pm, target.package_after.as_deref(), f.version.as_deref(), o)?;
    m.set(Status::Deployed, Phase::Done);
    s.write_meta(&id, &m)?;
    clean(s, &f.code_dir, &id, false);
    Ok(())
}

/// Deletes all but the newest `keep` deploys. Never the one in effect
/// (its manifest says what the host's code is), nor one in progress.
/// The history holds only shipped code and the deploy's own records:
/// nothing the bot wrote is ever in it. A wheelhouse goes with the last
/// deploy that names it.
pub fn prune(s: &dyn Session, keep: usize) -> Result<Vec<String>> {
    let rows = s.history()?;
    let current = s.current()?;
    let ids: Vec<String> = rows
        .iter()
        .filter(|(id, m)| !m.in_progress() && Some(id) != current.as_ref())
        .map(|r| r.0.clone())
        .collect();
    // The one in effect counts as one of the kept.
    let keep = if current.is_some() {
        keep.saturating_sub(1)
    } else {
        keep
    };
    let mut gone = plan::prune(&ids, keep);
    if keep == 0 {
        gone = ids;
    }
    if !gone.is_empty() {
        let kept =
            environment::wheelhouses_named(rows.iter().filter(|(id, _)| !gone.contains(id)).map(|(_, m)| m));
        s.remove_deploys(&gone, &kept)?;
    }
    Ok(gone)
}
