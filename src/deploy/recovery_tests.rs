//! A deploy cut off on the host and settled there (issue 27): the journal
//! read as the host shows it, a damaged journal or `current` included.

use super::fake::FakeHost;
use super::journal::{Kind, Meta, Phase, Status};
use super::recovery::{self, Finish};
use super::reply::{Conflict, Plan};
use super::settle::Pending;
use super::DeployError;

fn with(host: &FakeHost, id: &str, status: Status, phase: Phase) {
    let meta = Meta {
        id: id.into(),
        kind: Some(Kind::Deploy),
        status: Some(status),
        phase: Some(phase),
        package_before: Some("0.9".into()),
        package_after: Some("1.0".into()),
        code_dir: "/srv/bot".into(),
        owner: "trader:trader".into(),
        ..Meta::default()
    };
    host.history.borrow_mut().insert(id.into(), meta);
}

fn wrote_before(host: &FakeHost, id: &str) {
    host.log.borrow_mut().push(format!("before {id} from adopted"));
}

const A: &str = "20261201T000000Z";
const B: &str = "20261202T000000Z";

#[test]
fn the_host_puts_a_cut_swap_back_with_no_restart_and_no_package() {
    let host = FakeHost::new("1.0");
    with(&host, A, Status::Deployed, Phase::Done);
    *host.current.borrow_mut() = Some(A.into());
    with(&host, B, Status::InProgress, Phase::Swapping);
    host.history.borrow_mut().get_mut(B).unwrap().before = Some(A.into());
    wrote_before(&host, B);
    let f = host.facts.borrow().clone();
    let by = "the host before the bot's start (jarvisctl settle)";
    assert_eq!(
        recovery::recover(&host, &f, Finish::Host { by }).unwrap(),
        Some(true)
    );
    assert!(host.did_any(&format!(
        "apply {B} /var/lib/jarvis-supervisor/deploys/{B}/manifest.tsv -> /var/lib/jarvis-supervisor/deploys/{B}/before.tsv lenient"
    )));
    // Not a single restart or package step: the bot is about to start.
    assert!(
        !host.did_any("restart") && !host.did_any("install"),
        "{:?}",
        host.log.borrow()
    );
    assert_eq!(host.current.borrow().as_deref(), Some(A));
    let m = host.meta(B);
    assert_eq!(
        (m.status, m.phase),
        (Some(Status::InterruptedRolledBack), Some(Phase::Done))
    );
    assert_eq!(
        m.reason.as_deref(),
        Some(format!("cut off while swapping; undone by {by}").as_str())
    );
    assert!(
        host.did_any(&format!(
            "clean {B} undone after interrupted-rolled-back/done, current {A}"
        )),
        "{:?}",
        host.log.borrow()
    );
    // The journal says it is settled: the next start has nothing to do.
    assert_eq!(recovery::recover(&host, &f, Finish::Host { by }).unwrap(), None);
}

#[test]
fn a_damaged_journal_newer_than_the_deploy_in_effect_is_a_cut_swap() {
    let host = FakeHost::new("1.0");
    with(&host, A, Status::Deployed, Phase::Done);
    *host.current.borrow_mut() = Some(A.into());
    let damaged = Meta::parse(r#"{"before": "20261201T000000Z", "code_dir": "/sr"#);
    assert!(damaged.damaged.is_some());
    host.history.borrow_mut().insert(B.into(), damaged.clone());
    wrote_before(&host, B);
    // Older than the deploy in effect, or without a before.tsv: not cut.
    let older = "20261130T000000Z";
    host.history.borrow_mut().insert(older.into(), damaged);
    let f = host.facts.borrow().clone();
    assert_eq!(
        recovery::recover(&host, &f, Finish::Host { by: "t" }).unwrap(),
        Some(true)
    );
    // The deploy it replaced is the one that was in effect; the code root
    // and owner are the host's.
    assert!(host.did_any(&format!(
        "apply {B} /var/lib/jarvis-supervisor/deploys/{B}/manifest.tsv"
    )));
    assert!(!host.did_any(&format!("apply {older}")));
    assert_eq!(host.current.borrow().as_deref(), Some(A));
    let m = host.meta(B);
    assert_eq!(m.status, Some(Status::InterruptedRolledBack));
    assert!(m
        .reason
        .unwrap()
        .starts_with("cut off while an unknown step (meta.json is not a deploy journal (it ends early"));
    assert_eq!((m.code_dir.as_str(), m.id.as_str()), ("/home/jarvis/Jarvis", B));
}

fn matching() -> Plan {
    Plan {
        same: vec!["bots/supervisor.py".into()],
        ..Plan::default()
    }
}

fn differing() -> Plan {
    Plan {
        conflicts: vec![Conflict {
            path: "bots/supervisor.py".into(),
            why: "shipped by the deploy in effect, but changed on the host since".into(),
        }],
        ..Plan::default()
    }
}

#[test]
fn a_damaged_current_is_rebuilt_from_the_deploy_the_live_code_holds() {
    let host = FakeHost::new("1.0");
    with(&host, A, Status::Deployed, Phase::Done);
    with(&host, B, Status::RolledBack, Phase::Done);
    *host.current_text.borrow_mut() = Some("\u{0}\u{0}garbage\n".into());
    // The newest (B, rolled back) does not match the live code; A does.
    host.plans.borrow_mut().extend([differing(), matching()]);
    let (why, now) = recovery::repair_current(&host, "/home/jarvis/Jarvis")
        .unwrap()
        .unwrap();
    assert_eq!(why, "it holds no deploy id: 10 byte(s)");
    assert_eq!(now, A);
    assert_eq!(host.current.borrow().as_deref(), Some(A));
    assert!(host.did_any(&format!("plan to {B}")) && host.did_any(&format!("plan to {A}")));
    // Sound now: nothing more to do.
    assert_eq!(
        recovery::repair_current(&host, "/home/jarvis/Jarvis").unwrap(),
        None
    );
}

#[test]
fn a_damaged_current_that_matches_no_deploy_names_the_real_cause() {
    let host = FakeHost::new("1.0");
    with(&host, A, Status::Deployed, Phase::Done);
    *host.current_text.borrow_mut() = Some("20990101T000000Z\n".into());
    host.plans.borrow_mut().push_back(differing());
    let e = recovery::repair_current(&host, "/home/jarvis/Jarvis").unwrap_err();
    assert!(matches!(e, DeployError::CurrentLost { deploys: 1, .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with("/var/lib/jarvis-supervisor/deploys/current is damaged (it names deploy 20990101T000000Z, which is not in the history)")
            && text.contains("--take-over")
            && text.contains("--rollback --to ID"),
        "{text}"
    );
    assert_eq!(host.current.borrow().as_deref(), None);
}

#[test]
fn status_names_a_cut_deploy_as_such_with_the_command_that_settles_it() {
    let cut = |phase: Phase, swapped: bool| recovery::Cut {
        id: B.into(),
        meta: Meta {
            status: Some(Status::InProgress),
            phase: Some(phase),
            ..Meta::default()
        },
        swapped,
    };
    let p = Pending {
        cuts: vec![cut(Phase::Swapping, true)],
        current_damaged: None,
        live: false,
    };
    assert_eq!(
        p.describe(),
        [format!(
            "deploy {B} was interrupted while swapping: the code may be part old, part new; \
             run `jarvisctl settle` (a start of the bot settles it first) to undo it"
        )]
    );
    let after = Pending {
        cuts: vec![cut(Phase::Verifying, true)],
        ..Pending::default()
    };
    assert!(after.cuts[0].restarted());
    assert!(after.describe()[0]
        .contains("after its swap: the bot may run its unverified code; run `jarvisctl restart`"));
    // A live deploy's own journal is no finding.
    let live = Pending {
        live: true,
        ..Pending {
            cuts: vec![cut(Phase::Swapping, true)],
            ..Pending::default()
        }
    };
    assert!(live.describe().is_empty());
}
