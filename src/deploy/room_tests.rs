//! The deploy's checks of what it cannot change, against a host in memory
//! (`fake`): a filesystem without room and a /tmp that takes no write
//! refuse the host before anything is written; a swap whose staging hit a
//! full disk fails with the bot untouched; a step runs without /tmp.

use std::path::PathBuf;

use super::fake::FakeHost;
use super::journal::{Phase, Status};
use super::reply::{Plan, Room, Space, MARGIN};
use super::report::HostResult;
use super::tests::{bench, deploy, job, with_deploy};

/// A plan whose code root has `code_free` bytes free for a swap that
/// writes 4 MiB, and whose deploy history has `store_free`.
fn plan_with_room(code_free: u64, store_free: u64) -> Plan {
    let room = |path: &str, mount: &str, free: u64| Room {
        path: path.into(),
        mount: mount.into(),
        fstype: Some("ext4".into()),
        free,
        needed: 4 << 20,
        margin: MARGIN,
        free_inodes: 1000,
        needed_inodes: 3,
    };
    Plan {
        space: Some(Space {
            code: Some(room("/home/jarvis/Jarvis", "/home", code_free)),
            store: Some(room("/var/lib/jarvis-supervisor/deploys", "/var", store_free)),
        }),
        ..Plan::default()
    }
}

/// A disk that cannot take the deploy refuses it before anything is
/// written, naming the filesystem, what it needs and has, and what to free.
#[test]
fn a_host_short_of_space_is_refused_before_anything_is_written() {
    let b = bench();
    for (plan, what, place) in [
        (
            plan_with_room(5 << 20, 1 << 30),
            "the code root (/home/jarvis/Jarvis)",
            "/home (ext4)",
        ),
        (
            plan_with_room(1 << 30, 5 << 20),
            "the deploy history",
            "/var (ext4)",
        ),
    ] {
        let host = FakeHost::new("1.0");
        host.plans.borrow_mut().push_back(plan);
        let (o, r) = deploy(&host, &b, &job(None));
        let e = r.unwrap_err().to_string();
        assert_eq!(o.result, HostResult::Refused, "{e}");
        assert!(e.starts_with(&format!("not enough space for {what}")), "{e}");
        assert!(
            e.contains(&format!("on {place}: the deploy writes 4.0 MiB")),
            "{e}"
        );
        assert!(e.contains("nothing on the host was changed"), "{e}");
        assert!(e.contains("du -xh --max-depth=2"), "{e}");
        assert!(!host.did_any("new ") && !host.did_any("apply") && host.journal.borrow().is_empty());
    }
    // One filesystem for both: each fits alone, both together do not.
    let host = FakeHost::new("1.0");
    let mut plan = plan_with_room(14 << 20, 14 << 20);
    if let Some(space) = plan.space.as_mut() {
        space.store.as_mut().unwrap().mount = "/home".into();
    }
    host.plans.borrow_mut().push_back(plan);
    let (o, r) = deploy(&host, &b, &job(None));
    let e = r.unwrap_err().to_string();
    assert_eq!(o.result, HostResult::Refused, "{e}");
    assert!(
        e.starts_with("not enough space for the code root and the deploy history"),
        "{e}"
    );
    assert!(e.contains("the deploy writes 8.0 MiB"), "{e}");
    // With room on both, the deploy goes on.
    let host = FakeHost::new("1.0");
    host.plans
        .borrow_mut()
        .push_back(plan_with_room(1 << 30, 1 << 30));
    let (o, r) = deploy(&host, &b, &job(None));
    assert!(r.is_ok() && o.result == HostResult::Deployed, "{r:?}");
}

/// The package counts against the deploy history's space: a store with
/// room for the code alone is refused for a package that does not fit.
#[test]
fn the_package_counts_against_the_deploy_historys_space() {
    let b = bench();
    let pkg = tempfile::NamedTempFile::new().unwrap();
    pkg.as_file().set_len(3 << 20).unwrap();
    let mut j = job(Some("2.0"));
    j.package.as_mut().unwrap().path = pkg.path().to_path_buf();
    let host = FakeHost::new("1.0");
    host.plans
        .borrow_mut()
        .push_back(plan_with_room(1 << 30, (4 << 20) + MARGIN + (1 << 20)));
    let (o, r) = deploy(&host, &b, &j);
    let e = r.unwrap_err().to_string();
    assert_eq!(o.result, HostResult::Refused, "{e}");
    assert!(e.contains("not enough space for the deploy history"), "{e}");
}

/// A /tmp that cannot take a write refuses the deploy up front, before the
/// lock, with the fix.
#[test]
fn a_full_tmp_refuses_the_deploy_before_anything_changes() {
    let host = FakeHost::new("1.0");
    host.facts.borrow_mut().tmp_problem = Some("No space left on device".into());
    let (o, r) = deploy(&host, &bench(), &job(None));
    let e = r.unwrap_err().to_string();
    assert_eq!(o.result, HostResult::Refused);
    assert!(
        e.starts_with("/tmp on the host cannot take a small write (No space left on device)"),
        "{e}"
    );
    assert!(e.contains("nothing on the host was changed"), "{e}");
    assert!(
        host.log.borrow().is_empty() && host.journal.borrow().is_empty(),
        "{:?}",
        host.log.borrow()
    );
}

/// The disk filled while the worker staged the new files: it removed them
/// and changed nothing live. The deploy fails there, with no undo and no
/// restart of the bot that still runs the old version; never ROLLBACK FAILED.
#[test]
fn a_swap_whose_staging_hit_a_full_disk_fails_without_touching_the_bot() {
    let host = FakeHost::new("1.0");
    with_deploy(&host, "20261201T000000Z", Status::Deployed, Phase::Done);
    *host.current.borrow_mut() = Some("20261201T000000Z".into());
    host.failures.borrow_mut().push("apply-no-space");
    let (o, r) = deploy(&host, &bench(), &job(None));
    let e = r.unwrap_err().to_string();
    assert_eq!(o.result, HostResult::Failed, "{e}");
    assert!(
        e.contains("nothing live changed") && !e.contains("ROLLBACK"),
        "{e}"
    );
    let log = host.log.borrow();
    assert_eq!(
        log.iter().filter(|l| l.starts_with("apply ")).count(),
        0,
        "{log:?}"
    );
    assert!(!host.did_any("restart") && !host.did_any("current"), "{log:?}");
    assert!(
        host.did_any("drop code "),
        "the store's space is given back: {log:?}"
    );
    let id = o.id.unwrap();
    assert_eq!(
        host.journal.borrow().last().unwrap(),
        &(id.clone(), "failed".into(), "done".into())
    );
    assert_eq!(host.current.borrow().as_deref(), Some("20261201T000000Z"));
}

/// A step's result does not depend on /tmp: with no file for its output,
/// it runs all the same, says so, and exits with the command's code; with
/// one, it prints the output and removes its own file only.
#[test]
fn a_step_runs_and_reports_its_exit_code_without_a_writable_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("step.lock");
    let script = super::remote::stepped("echo hello; exit 3")
        .replace(super::host_paths::STEP_LOCK, &lock.to_string_lossy());
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::write(tmp.join("theirs"), "kept").unwrap();
    for (tmpdir, shows) in [
        (
            PathBuf::from("/nonexistent/jarvis"),
            "(the step's output was not kept",
        ),
        (tmp.clone(), "hello"),
    ] {
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("TMPDIR", &tmpdir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{text}");
        assert!(text.contains(shows), "{text}");
    }
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["theirs"], "the step's log stayed, or something else went");
}
