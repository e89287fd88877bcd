//! The syntax check on a host in memory (`fake`): the host's interpreter
//! judges the files the deploy writes; a broken file the bot runs refuses
//! the host before anything live changes, one that nothing runs is a
//! warning; the workstation's Python is never asked.

use super::fake::FakeHost;
use super::journal::{Phase, Status};
use super::reply::{Broken, Compiled, Plan};
use super::report::HostResult;
use super::settings::{prepare, Mode, Settings, SshSettings};
use super::tests::{bench, deploy, job, with_deploy, HEALTH};

fn broken(path: &str, line: u64, run: bool, why: &str) -> Broken {
    Broken {
        path: path.into(),
        line: Some(line),
        error: "SyntaxError: invalid syntax".into(),
        run,
        why: why.into(),
    }
}

fn host_with(broken: Vec<Broken>) -> FakeHost {
    let host = FakeHost::new("1.0");
    *host.compiled.borrow_mut() = Compiled {
        python: "/home/jarvis/Jarvis/venv/bin/python".into(),
        version: Some("3.13.5".into()),
        checked: 1,
        broken,
        note: None,
    };
    host
}

#[test]
fn a_broken_module_the_bot_imports_refuses_the_host_before_the_swap() {
    let host = host_with(vec![broken(
        "core/engine.py",
        3,
        true,
        "bots/supervisor.py imports `engine`",
    )]);
    let b = bench();
    let (o, r) = deploy(&host, &b, &job(Some("2.0")));
    let e = r.unwrap_err().to_string();
    assert_eq!(o.result, HostResult::Refused);
    for part in [
        "core/engine.py line 3: SyntaxError: invalid syntax",
        "/home/jarvis/Jarvis/venv/bin/python (Python 3.13.5) on root@fake",
        "bots/supervisor.py imports `engine`",
        "fix it and deploy again",
        "nothing on the host was changed",
    ] {
        assert!(e.contains(part), "{part}: {e}");
    }
    // The store is dropped, the journal says refused, and nothing live moved.
    let id = o.id.unwrap();
    assert!(host.did_any(&format!("drop code {id}")));
    for live in ["apply", "switch venv", "install", "restart", "current "] {
        assert!(!host.did_any(live), "{live}: {:?}", host.log.borrow());
    }
    let m = host.meta(&id);
    assert_eq!((m.status, m.phase), (Some(Status::Refused), Some(Phase::Done)));
    assert!(m.reason.unwrap().contains("core/engine.py"));
}

#[test]
fn a_broken_script_nothing_imports_is_a_warning_and_the_deploy_goes_on() {
    let why = "nothing in the tree imports it and it is not the unit's entry point";
    let host = host_with(vec![broken("examples/broken_demo.py", 2, false, why)]);
    let b = bench();
    let (o, r) = deploy(&host, &b, &job(None));
    r.unwrap();
    assert_eq!(o.result, HostResult::Deployed);
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    let w = &o.warnings[0];
    assert!(
        w.starts_with("examples/broken_demo.py line 2 does not compile with /home/jarvis/Jarvis/venv/bin/python (Python 3.13.5)")
            && w.ends_with(why),
        "{w}"
    );
    // The JSON summary's host record carries it.
    let v = serde_json::to_value(&o).unwrap();
    assert_eq!(v["warnings"][0], serde_json::json!(w));
    assert!(host.did_any("apply") && host.did_any("restart"));
}

#[test]
fn a_check_that_cannot_run_fails_the_host_and_changes_nothing() {
    let host = host_with(Vec::new());
    host.failures.borrow_mut().push("compile");
    let b = bench();
    let (o, r) = deploy(&host, &b, &job(None));
    let e = r.unwrap_err().to_string();
    assert_eq!(o.result, HostResult::Failed);
    assert!(e.ends_with("nothing on the host was changed"), "{e}");
    let id = o.id.unwrap();
    assert!(host.did_any(&format!("drop code {id}")) && !host.did_any("apply"));
    assert_eq!(host.meta(&id).status, Some(Status::Failed));
}

#[test]
fn only_the_files_the_deploy_writes_go_to_the_hosts_interpreter_as_the_service_user() {
    let host = host_with(Vec::new());
    with_deploy(&host, "20261201T000000Z", Status::Deployed, Phase::Done);
    *host.current.borrow_mut() = Some("20261201T000000Z".into());
    let staged = Plan {
        put: vec!["core/new.py".into(), "README.md".into()],
        replace: vec!["bots/supervisor.py".into()],
        same: vec!["core/old.py".into()],
        ..Plan::default()
    };
    host.plans.borrow_mut().extend([Plan::default(), staged]);
    let b = bench();
    let (o, r) = deploy(&host, &b, &job(None));
    r.unwrap();
    assert!(o.warnings.is_empty());
    let id = o.id.unwrap();
    assert!(
        host.did_any(&format!(
            "compile {id} with the launcher's as jarvis:jarvis: bots/supervisor.py core/new.py"
        )),
        "{:?}",
        host.log.borrow()
    );
    // A deploy that writes no .py file asks nothing.
    let host = host_with(Vec::new());
    with_deploy(&host, "20261201T000000Z", Status::Deployed, Phase::Done);
    *host.current.borrow_mut() = Some("20261201T000000Z".into());
    let (_, r) = deploy(&host, &b, &job(None));
    r.unwrap();
    assert!(!host.did_any("compile"));
}

/// A module only Python 3.12 and later accept (PEP 701's nested quotes):
/// the workstation's Python (3.11 here) never judges it, the host's does.
#[test]
fn a_file_only_a_newer_python_accepts_is_judged_by_the_hosts_interpreter() {
    let mut b = bench();
    std::fs::create_dir_all(b.code.dir.join("core")).unwrap();
    std::fs::write(
        b.code.dir.join("core/pep701.py"),
        "d = {'k': 1}\nprint(f\"{d[\"k\"]}\")\n",
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let paths = jarvis_model::paths::Paths::rooted(root.path());
    let settings = Settings {
        hosts: Vec::new(),
        mode: Mode::Deploy(b.ship.clone()),
        ssh: SshSettings {
            options: Vec::new(),
            connect: std::time::Duration::from_secs(1),
        },
        health: HEALTH,
        keep: 10,
        order: super::fleet::Order {
            parallel: 8,
            rolling: false,
        },
        json: false,
    };
    let (code, _) = prepare(&paths, &settings).expect("the workstation does not judge the syntax");
    b.code = code.unwrap();
    assert!(b.code.ships("core/pep701.py"));
    // The host's 3.13 compiles it: the deploy goes on, and it was asked.
    let host = host_with(Vec::new());
    let (o, r) = deploy(&host, &b, &job(None));
    r.unwrap();
    assert_eq!(o.result, HostResult::Deployed);
    assert!(host.did_any("compile") && host.log.borrow().iter().any(|l| l.contains("core/pep701.py")));
}
