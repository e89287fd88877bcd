//! The deploy's decisions, driven against a host in memory (`fake`): what
//! it refuses, what it undoes, what it recovers, which rollback it makes,
//! and that a dry run changes nothing.

use std::path::PathBuf;
use std::time::Duration;

use super::fake::FakeHost;
use super::hosts::Host;
use super::journal::{Kind, Meta, Phase, Status};
use super::recovery;
use super::reply::{Conflict, Plan, Verify};
use super::report::{HostResult, Outcome};
use super::settings::{Code, Health, Job, Package, Ship};
use super::transaction::Deploy;
use super::DeployError;
use jarvis_model::manifest::Manifest;

pub(super) const HEALTH: Health = Health {
    ready: Duration::ZERO,
    settle: Duration::ZERO,
};

pub(super) struct Bench {
    _dir: tempfile::TempDir,
    pub(super) code: Code,
    pub(super) ship: Ship,
}

pub(super) fn bench() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bots")).unwrap();
    std::fs::write(dir.path().join("bots/supervisor.py"), "print('v2')\n").unwrap();
    let manifest = Manifest::build(dir.path()).unwrap();
    let code = Code {
        dir: dir.path().to_path_buf(),
        manifest,
        wheelhouse: None,
    };
    let ship = Ship {
        code: dir.path().to_path_buf(),
        wheelhouse: None,
        python: None,
        take_over: Vec::new(),
        bwlimit: None,
        pause_swap_after: None,
    };
    Bench {
        _dir: dir,
        code,
        ship,
    }
}

pub(super) fn job(package: Option<&str>) -> Job {
    Job {
        host: Host::plain(crate::ssh::Target::parse("root@fake").unwrap()),
        package: package.map(|v| Package {
            path: PathBuf::from(format!("/tmp/jarvis-supervisor_{v}.deb")),
            name: "jarvis-supervisor".into(),
            version: v.into(),
            ext: "deb".into(),
        }),
        env: None,
    }
}

pub(super) fn deploy(host: &FakeHost, b: &Bench, job: &Job) -> (Outcome, Result<(), DeployError>) {
    let mut o = Outcome::new("root@fake");
    let d = Deploy {
        job,
        code: &b.code,
        ship: &b.ship,
        health: HEALTH,
        keep: 10,
    };
    let r = d.run(host, &mut o);
    (o, r)
}

fn conflict(path: &str) -> Plan {
    Plan {
        conflicts: vec![Conflict {
            path: path.into(),
            why: "a file that no deploy shipped is there".into(),
        }],
        ..Plan::default()
    }
}

/// A host where deploy OLD is in effect, with `meta`'s status and phase.
pub(super) fn with_deploy(host: &FakeHost, id: &str, status: Status, phase: Phase) {
    let meta = Meta {
        id: id.into(),
        kind: Some(Kind::Deploy),
        status: Some(status),
        phase: Some(phase),
        package_before: Some("1.0".into()),
        package_after: Some("1.0".into()),
        ..Meta::default()
    };
    host.history.borrow_mut().insert(id.into(), meta);
}

#[test]
fn conflicts_refuse_the_host_before_anything_is_written() {
    let host = FakeHost::new("1.0");
    host.plans.borrow_mut().push_back(conflict("data/state.json"));
    let b = bench();
    let (o, r) = deploy(&host, &b, &job(None));
    let e = r.unwrap_err().to_string();
    assert_eq!(o.result, HostResult::Refused);
    assert!(
        e.contains("1 conflict(s), nothing on the host was changed: data/state.json")
            && e.contains("--take-over data/state.json"),
        "{e}"
    );
    assert_eq!(o.plan.unwrap().conflicts.len(), 1);
    assert!(!host.did_any("new ") && !host.did_any("apply") && host.journal.borrow().is_empty());
}

#[test]
fn a_conflict_that_appears_while_staging_refuses_and_drops_the_store() {
    let host = FakeHost::new("1.0");
    host.plans
        .borrow_mut()
        .extend([Plan::default(), conflict("bots/new.py")]);
    let b = bench();
    let (o, r) = deploy(&host, &b, &job(None));
    assert!(matches!(r, Err(DeployError::Conflicts(_))), "{r:?}");
    assert_eq!(o.result, HostResult::Refused);
    let id = o.id.unwrap();
    assert!(host.did_any(&format!("drop code {id}")) && !host.did_any("apply"));
    assert_eq!(host.meta(&id).status, Some(Status::Refused));
}

#[test]
fn a_store_that_differs_fails_without_touching_the_live_code() {
    let host = FakeHost::new("1.0");
    let bad = Verify {
        bad: vec!["bots/supervisor.py".into()],
        n_bad: 1,
    };
    // It differs after the quick check and after the push by content.
    host.verify.borrow_mut().extend([bad.clone(), bad]);
    let b = bench();
    let (o, r) = deploy(&host, &b, &job(None));
    let e = r.unwrap_err().to_string();
    assert_eq!(o.result, HostResult::Failed);
    assert!(
        e.starts_with("1 file(s) on the host differ") && e.ends_with("; the live code was not touched"),
        "{e}"
    );
    assert!(!host.did_any("apply") && !host.did_any("restart"));
    assert_eq!(host.meta(&o.id.unwrap()).status, Some(Status::Failed));
}

#[test]
fn a_file_the_quick_check_took_for_unchanged_is_pushed_again_by_content() {
    let host = FakeHost::new("1.0");
    host.verify.borrow_mut().push_back(Verify {
        bad: vec!["bots/supervisor.py".into()],
        n_bad: 1,
    });
    let b = bench();
    let (o, r) = deploy(&host, &b, &job(None));
    r.unwrap();
    assert_eq!(o.result, HostResult::Deployed);
    let pushes: Vec<String> = host
        .log
        .borrow()
        .iter()
        .filter(|l| l.starts_with("push "))
        .cloned()
        .collect();
    let id = o.id.unwrap();
    assert_eq!(
        pushes,
        [
            format!("push {id} linked to - by SizeAndTime"),
            format!("push {id} linked to - by Content")
        ]
    );
}

#[test]
fn a_store_the_host_links_whole_pushes_nothing() {
    let host = FakeHost::new("1.0");
    host.send.borrow_mut().clear();
    let b = bench();
    let (o, r) = deploy(&host, &b, &job(None));
    r.unwrap();
    assert_eq!(o.result, HostResult::Deployed);
    assert!(
        host.did_any("prepare ") && !host.did_any("push "),
        "{:?}",
        host.log.borrow()
    );
}

#[test]
fn a_deploy_journals_each_phase_before_it_acts_and_ends_deployed() {
    let host = FakeHost::new("1.0");
    let b = bench();
    let (o, r) = deploy(&host, &b, &job(Some("2.0")));
    r.unwrap();
    assert_eq!(o.result, HostResult::Deployed);
    assert_eq!(
        (o.package_before.as_deref(), o.package_after.as_deref()),
        (Some("1.0"), Some("2.0"))
    );
    let id = o.id.unwrap();
    let phases: Vec<String> = host
        .journal
        .borrow()
        .iter()
        .map(|(_, s, p)| format!("{s}/{p}"))
        .collect();
    assert_eq!(
        phases,
        [
            "in-progress/staging",
            "in-progress/swapping",
            "in-progress/package",
            "in-progress/package",
            "in-progress/restarting",
            "in-progress/verifying",
            "deployed/done"
        ]
    );
    assert_eq!(host.current.borrow().as_deref(), Some(id.as_str()));
    assert_eq!(host.meta(&id).package_after.as_deref(), Some("2.0"));
    assert!(host.did_any("install /var/lib/jarvis-supervisor/packages/jarvis-supervisor_2.0.deb"));
    // The old files the swap kept aside go once the deploy is over, never
    // before: the journal and `current` say so first.
    let cleans: Vec<String> = host
        .log
        .borrow()
        .iter()
        .filter(|l| l.starts_with("clean "))
        .cloned()
        .collect();
    assert_eq!(cleans, [format!("clean {id} after deployed/done, current {id}")]);
}

#[test]
fn a_failed_verification_undoes_the_swap_and_the_package() {
    let host = FakeHost::new("1.0");
    with_deploy(&host, "20261201T000000Z", Status::Deployed, Phase::Done);
    *host.current.borrow_mut() = Some("20261201T000000Z".into());
    host.failures.borrow_mut().push("wait_healthy");
    let b = bench();
    let (o, r) = deploy(&host, &b, &job(Some("2.0")));
    let e = r.unwrap_err().to_string();
    assert_eq!(o.result, HostResult::RolledBack);
    assert!(
        e.ends_with("; rolled back: the previous version runs and is healthy"),
        "{e}"
    );
    let id = o.id.unwrap();
    assert!(host.did_any(&format!(
        "apply {id} /var/lib/jarvis-supervisor/deploys/{id}/manifest.tsv -> /var/lib/jarvis-supervisor/deploys/{id}/before.tsv lenient"
    )));
    assert!(host.did_any("install /var/lib/jarvis-supervisor/packages/jarvis-supervisor_1.0.deb"));
    assert_eq!(host.current.borrow().as_deref(), Some("20261201T000000Z"));
    assert_eq!(o.package_after.as_deref(), Some("1.0"));
    let m = host.meta(&id);
    assert_eq!((m.status, m.phase), (Some(Status::RolledBack), Some(Phase::Done)));
    assert!(
        host.did_any(&format!(
            "clean {id} undone after rolled-back/done, current 20261201T000000Z"
        )),
        "{:?}",
        host.log.borrow()
    );
}

#[test]
fn an_upgrade_without_the_installed_package_kept_is_refused() {
    let host = FakeHost::new("1.0");
    host.kept.borrow_mut().clear();
    let b = bench();
    let (o, r) = deploy(&host, &b, &job(Some("2.0")));
    assert!(matches!(r, Err(DeployError::NoPreviousPackage { .. })), "{r:?}");
    assert_eq!(o.result, HostResult::Refused);
    assert!(!host.did_any("new ") && !host.did_any("plan"));
}

#[test]
fn a_failed_undo_says_so() {
    let host = FakeHost::new("1.0");
    host.failures.borrow_mut().extend(["restart", "restart"]);
    let b = bench();
    let (o, r) = deploy(&host, &b, &job(None));
    let e = r.unwrap_err().to_string();
    assert_eq!(o.result, HostResult::Failed);
    assert!(e.contains("; ROLLBACK FAILED too: "), "{e}");
    assert_eq!(host.meta(&o.id.unwrap()).status, Some(Status::RollbackFailed));
    // Not over: what the swap kept aside stays for the undo that settles it.
    assert!(!host.did_any("clean "), "{:?}", host.log.borrow());
}

#[test]
fn a_swap_cut_off_is_undone_by_the_next_deploy_and_a_staging_one_dropped() {
    let host = FakeHost::new("1.0");
    with_deploy(&host, "20261201T000000Z", Status::InProgress, Phase::Staging);
    with_deploy(&host, "20261202T000000Z", Status::InProgress, Phase::Swapping);
    // The cut swap had written its before.tsv.
    host.log
        .borrow_mut()
        .push("before 20261202T000000Z from adopted".into());
    let f = host.facts.borrow().clone();
    let undone = recovery::recover(&host, &f, recovery::Finish::Deploy(HEALTH)).unwrap();
    assert_eq!(undone, Some(true));
    let staged = host.meta("20261201T000000Z");
    assert_eq!(staged.status, Some(Status::Interrupted));
    assert_eq!(staged.reason.as_deref(), Some("cut off while staging"));
    assert!(host.did_any("drop code 20261201T000000Z"));
    assert!(!host.did_any("apply 20261201T000000Z"));
    let cut = host.meta("20261202T000000Z");
    assert_eq!(
        (cut.status, cut.phase),
        (Some(Status::InterruptedRolledBack), Some(Phase::Done))
    );
    assert_eq!(
        cut.reason.as_deref(),
        Some("cut off while swapping; undone by the next deploy")
    );
    assert!(cut.recovered_in_s.is_some());
    assert!(host.did_any("apply 20261202T000000Z") && host.did_any("restart"));
    // Nothing left in progress: the next recovery has nothing to do.
    assert_eq!(
        recovery::recover(&host, &f, recovery::Finish::Deploy(HEALTH)).unwrap(),
        None
    );
}

#[test]
fn a_rollback_by_hand_undoes_the_deploy_in_effect() {
    let host = FakeHost::new("1.0");
    with_deploy(&host, "20261201T000000Z", Status::Deployed, Phase::Done);
    with_deploy(&host, "20261202T000000Z", Status::Deployed, Phase::Done);
    host.history
        .borrow_mut()
        .get_mut("20261202T000000Z")
        .unwrap()
        .before = Some("20261201T000000Z".into());
    *host.current.borrow_mut() = Some("20261202T000000Z".into());
    host.log
        .borrow_mut()
        .push("before 20261202T000000Z from 20261201T000000Z".into());
    let mut o = Outcome::new("root@fake");
    recovery::by_hand(&host, &job(None).host, None, HEALTH, &mut o).unwrap();
    assert_eq!(o.result, HostResult::Restored);
    assert_eq!(host.current.borrow().as_deref(), Some("20261201T000000Z"));
    let m = host.meta("20261202T000000Z");
    assert_eq!(m.status, Some(Status::RolledBack));
    assert_eq!(m.reason.as_deref(), Some("by hand: jarvisctl deploy --rollback"));
    // One restart, one outage: the undo's, verified.
    let log = host.log.borrow().clone();
    assert_eq!(
        log.iter().filter(|l| l.as_str() == "restart").count(),
        1,
        "{log:?}"
    );
    assert!(
        log.iter().position(|l| l == "restart") < log.iter().position(|l| l == "healthy"),
        "{log:?}"
    );
    assert!(
        host.did_any("clean 20261202T000000Z undone after rolled-back/done, current 20261201T000000Z"),
        "{:?}",
        host.log.borrow()
    );
}

#[test]
fn a_rollback_refuses_what_it_cannot_restore() {
    let host = FakeHost::new("1.0");
    let hand = |to: Option<&str>| {
        let mut o = Outcome::new("root@fake");
        recovery::by_hand(&host, &job(None).host, to, HEALTH, &mut o)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        hand(None),
        "no deploy is in effect on this host: nothing to roll back"
    );
    with_deploy(&host, "20261202T000000Z", Status::Deployed, Phase::Done);
    host.history
        .borrow_mut()
        .get_mut("20261202T000000Z")
        .unwrap()
        .before = Some("20261201T000000Z".into());
    *host.current.borrow_mut() = Some("20261202T000000Z".into());
    assert!(hand(None).contains("was pruned (--keep)"));
    assert!(hand(Some("../../etc")).contains("is not a deploy id"));
    assert!(hand(Some("20261130T000000Z")).contains("is not in this host's history"));
    assert!(!host.did_any("apply") && !host.did_any("restart"));
}

#[test]
fn a_rollback_to_an_older_deploy_is_a_new_deploy_of_its_code_and_package() {
    let host = FakeHost::new("2.0");
    with_deploy(&host, "20261201T000000Z", Status::Deployed, Phase::Done);
    with_deploy(&host, "20261202T000000Z", Status::Deployed, Phase::Done);
    host.kept.borrow_mut().push("1.0".into());
    *host.current.borrow_mut() = Some("20261202T000000Z".into());
    let mut o = Outcome::new("root@fake");
    recovery::by_hand(&host, &job(None).host, Some("20261201T000000Z"), HEALTH, &mut o).unwrap();
    assert_eq!(o.result, HostResult::Restored);
    let id = o.id.unwrap();
    assert!(host.did_any(&format!("copy 20261201T000000Z into {id}")));
    assert_eq!(host.current.borrow().as_deref(), Some(id.as_str()));
    let m = host.meta(&id);
    assert_eq!(
        (m.kind, m.status, m.to.as_deref()),
        (
            Some(Kind::Rollback),
            Some(Status::Deployed),
            Some("20261201T000000Z")
        )
    );
    assert_eq!(o.package_after.as_deref(), Some("1.0"));
    assert!(
        host.did_any(&format!("clean {id} after deployed/done, current {id}")),
        "{:?}",
        host.log.borrow()
    );
}

#[test]
fn a_rollback_with_a_deploy_cut_off_is_that_deploys_undo() {
    let host = FakeHost::new("1.0");
    with_deploy(&host, "20261202T000000Z", Status::InProgress, Phase::Restarting);
    host.log
        .borrow_mut()
        .push("before 20261202T000000Z from adopted".into());
    let mut o = Outcome::new("root@fake");
    recovery::by_hand(&host, &job(None).host, None, HEALTH, &mut o).unwrap();
    assert_eq!(o.result, HostResult::Restored);
    assert_eq!(
        host.meta("20261202T000000Z").status,
        Some(Status::InterruptedRolledBack)
    );
    let applies = host
        .log
        .borrow()
        .iter()
        .filter(|l| l.starts_with("apply"))
        .count();
    assert_eq!(applies, 1, "undone once: {:?}", host.log.borrow());
}

#[test]
fn a_dry_run_plans_and_changes_nothing() {
    let host = FakeHost::new("1.0");
    host.plans.borrow_mut().push_back(Plan {
        put: vec!["bots/supervisor.py".into()],
        unshipped: 3,
        ..Plan::default()
    });
    let b = bench();
    let mut o = Outcome::new("root@fake");
    super::dry_run(&host, &job(Some("2.0")), &b.code, &b.ship, true, &mut o).unwrap();
    assert_eq!(o.result, HostResult::DryRun);
    assert_eq!(o.plan.unwrap().put, ["bots/supervisor.py"]);
    assert_eq!(o.package_after.as_deref(), Some("2.0"));
    assert_eq!(*host.log.borrow(), ["plan to sent"]);
    assert!(host.journal.borrow().is_empty());
}

#[test]
fn pruning_keeps_the_deploy_in_effect_and_any_in_progress() {
    let host = FakeHost::new("1.0");
    for (id, status) in [
        ("20261201T000000Z", Status::Deployed),
        ("20261202T000000Z", Status::InProgress),
        ("20261203T000000Z", Status::RolledBack),
        ("20261204T000000Z", Status::Deployed),
    ] {
        with_deploy(&host, id, status, Phase::Done);
    }
    *host.current.borrow_mut() = Some("20261201T000000Z".into());
    let gone = recovery::prune(&host, 2).unwrap();
    assert_eq!(gone, ["20261203T000000Z"]);
    let left: Vec<String> = host.history.borrow().keys().cloned().collect();
    assert_eq!(left, ["20261201T000000Z", "20261202T000000Z", "20261204T000000Z"]);
}
