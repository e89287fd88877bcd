//! Putting a host back: the undo of one deploy, the recovery of one that
//! was cut off, `--rollback [--to ID]` by hand, and pruning the history.

use std::time::{Duration, Instant, SystemTime};

use super::environment;
use super::error::{DeployError, Result};
use super::host_paths::ddir;
use super::hosts::Host;
use super::ids::{deploy_id, valid_id};
use super::journal::{Kind, Meta, Phase, Status};
use super::probe::{Facts, PackageManager};
use super::report::{HostResult, Outcome};
use super::session::{Apply, EnvStep, Session};
use super::settings::Health;
use super::{plan, probe, progress};

/// The meta.json of deploy `id` (None for none, or one not in the history).
pub fn meta_of(s: &dyn Session, id: Option<&str>) -> Result<Option<Meta>> {
    Ok(match id {
        Some(c) => s.history()?.into_iter().find(|(i, _)| i == c).map(|(_, m)| m),
        None => None,
    })
}

/// Puts the host back to what deploy `id` replaced: its `before.tsv`
/// manifest's files (unshipped files stay as they are), the .env it
/// replaced, the package before it; then restarts and verifies. Safe to
/// run on a swap that was cut half-way, or never began. Returns the
/// package version now installed.
pub fn undo(
    s: &dyn Session,
    f: &Facts,
    id: &str,
    meta: &Meta,
    previous_package: Option<&str>,
    health: Health,
) -> Result<Option<String>> {
    let dir = ddir(id);
    let before = meta.before.as_deref().filter(|b| valid_id(b));
    let mut srcs = Vec::new();
    if let Some(b) = before {
        srcs.push(format!("{}/code", ddir(b)));
    }
    srcs.push(format!("{dir}/code"));
    let back = Apply {
        code_dir: f.code_dir.clone(),
        from: format!("{dir}/manifest.tsv"),
        to: format!("{dir}/before.tsv"),
        srcs,
        owner: f.owner.clone(),
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
    s.set_current(before)?;
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
    let pid = s.wait_healthy(health.ready, health.settle.min(Duration::from_secs(10)))?;
    progress(s.name(), &format!("previous version healthy again (pid {pid})"));
    Ok(version)
}

/// Finishes what an earlier deploy left in progress (its client was
/// killed, its connection cut, the host rebooted): before the swap, its
/// store is dropped; from the swap on, the deploy is undone, since it was
/// never verified. Returns None when nothing was in progress, else whether
/// anything live was undone.
pub fn recover(s: &dyn Session, f: &Facts, health: Health) -> Result<Option<bool>> {
    let mut undone = None;
    for (id, mut meta) in s.history()? {
        if !meta.in_progress() {
            continue;
        }
        let t0 = Instant::now();
        let phase = meta.phase.as_ref().map_or("", Phase::as_str).to_string();
        if phase.is_empty() || meta.phase == Some(Phase::Staging) {
            progress(
                s.name(),
                &format!("deploy {id} was cut off before its swap: nothing live had changed"),
            );
            s.drop_code(&id)?;
            meta.status = Some(Status::Interrupted);
            meta.reason = Some(format!(
                "cut off while {}",
                if phase.is_empty() { "running" } else { "staging" }
            ));
            undone = Some(undone.unwrap_or(false));
        } else {
            progress(
                s.name(),
                &format!("deploy {id} was cut off while {phase}: undoing it"),
            );
            undo(s, f, &id, &meta, None, health)?;
            meta.status = Some(Status::InterruptedRolledBack);
            meta.reason = Some(format!("cut off while {phase}; undone by the next deploy"));
            undone = Some(true);
        }
        meta.phase = Some(Phase::Done);
        meta.recovered_in_s = Some((t0.elapsed().as_secs_f64() * 10.0).round() / 10.0);
        s.write_meta(&id, &meta)?;
    }
    Ok(undone)
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
    if let Some(undone) = recover(s, &f, health)? {
        if to.is_none() {
            // The unfinished deploy was the one to roll back: undone now
            // (and verified), or it never changed the live code.
            if !undone {
                s.wait_healthy(health.ready, Duration::from_secs(1))?;
            }
            o.package_after = s.probe()?.version;
            o.result = HostResult::Restored;
            return Ok(());
        }
    }
    let f = s.probe()?;
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
        }
        Some(to) => return_to(s, &f, &history, current.as_deref(), to, o)?,
    }
    s.restart(&f)?;
    let pid = s.wait_healthy(health.ready, health.settle)?;
    progress(s.name(), &format!("healthy (pid {pid})"));
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
    s.write_meta(&id, &m)
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
