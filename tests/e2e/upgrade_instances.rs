//! Issue 26, acceptance 3: a host runs today's package (the one before
//! instances, built from git history: `$JARVIS_DEB_BEFORE_INSTANCES`) with
//! one bot, and is upgraded to this one with apt, on both engines. The bot
//! keeps its pid or restarts once (never twice, never two at a time),
//! `status` says what it said before, and the host has the new group
//! without an operator's step: on systemd the target is enabled and the
//! default unit active; without systemd the init script reports one engine.
//!
//! The bot counts its own starts (`STANDIN_START_LOG`), and a thread
//! watches its processes through the upgrade.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::container::Container;
use super::roots::Suite;
use super::{apt_install, deploy_standin, engine_main_pid, on_suites, pkg, CODE, UNIT};

const STARTS: &str = "/home/jarvis/Jarvis/data/starts.log";
/// Where `jarvisctl run` keeps the default bot's state.
const RUN_DIR: &str = "/run/jarvis-supervisor-run";
/// After the bot is healthy again, watched this long: longer than
/// RestartSec=1s plus the stand-in's 1 s to readiness, so a second
/// restart would show as a start and as a new pid.
const WATCH: Duration = Duration::from_secs(4);

/// The bot's starts, as it counted them.
fn starts(c: &Container) -> usize {
    c.sh(&format!("cat {STARTS}")).stdout.lines().count()
}

/// Pids of the live processes that run the bot's code, but for the bot's
/// own children: a child it forks has its command line until its exec (the
/// stand-in's `pkill` child at start, caught there by `ps` under load), and
/// is no second bot.
fn bot_pids(c: &Container) -> Vec<String> {
    let out = c
        .sh("ps -eo pid=,ppid=,args= | grep '[b]ots/supervisor.py'")
        .stdout;
    let procs: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect();
    procs
        .iter()
        .filter(|(_, ppid)| !procs.iter().any(|(pid, _)| pid == ppid))
        .map(|(pid, _)| pid.clone())
        .collect()
}

/// The bot's main pid as its engine records it; empty unless it runs.
fn main_pid(c: &Container, suite: Suite) -> String {
    if suite.has_systemd() {
        let pid = c.prop(UNIT, "MainPID");
        if pid == "0" || c.prop(UNIT, "SubState") != "running" {
            String::new()
        } else {
            pid
        }
    } else {
        engine_main_pid(c, RUN_DIR)
    }
}

fn status(c: &Container) -> (i32, Value) {
    let r = c.sh("jarvisctl status --json");
    (r.status, serde_json::from_str(&r.stdout).unwrap_or(Value::Null))
}

fn healthy(v: &Value) -> bool {
    v["verdict"] == "OK" && v["state"] == "active"
}

/// Wait until the bot runs and `status` says OK; panics with what the
/// engine said after 90 s.
fn wait_healthy(c: &Container, suite: Suite, what: &str) -> Duration {
    let mut last = Value::Null;
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.wait_for(what, Duration::from_secs(90), |c| {
            last = status(c).1;
            healthy(&last) && !main_pid(c, suite).is_empty()
        })
    }));
    waited.unwrap_or_else(|_| {
        let why = if suite.has_systemd() {
            c.sh(&format!("systemctl --no-pager status {UNIT} 2>&1 | tail -n 30"))
                .stdout
        } else {
            c.sh(&format!("tail -n 30 {RUN_DIR}/engine.log 2>&1")).stdout
        };
        panic!(
            "{}: {what}: not healthy in 90 s; status {last}\n{why}",
            suite.name()
        )
    })
}

fn version_of(deb: &std::path::Path) -> String {
    let out = std::process::Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg("Version")
        .output()
        .expect("dpkg-deb");
    assert!(out.status.success(), "dpkg-deb -f {}", deb.display());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn scenario(suite: Suite) {
    let name = suite.name();
    let old = pkg("JARVIS_DEB_BEFORE_INSTANCES");
    let new = pkg("JARVIS_DEB");
    let (old_version, new_version) = (version_of(&old), version_of(&new));
    let c = Container::boot(suite);
    assert_eq!(
        c.sh("test -d /run/systemd/system").status == 0,
        suite.has_systemd(),
        "{name}: systemd runs, or does not, as the suite says"
    );
    deploy_standin(&c);
    c.ok(&format!("echo STANDIN_START_LOG=data/starts.log >> {CODE}/.env"));

    // Today's package: it starts the bot, and knows nothing of instances.
    let out = apt_install(&c, &old, "");
    assert_eq!(out.status, 0, "{name}: installing {old_version}:\n{}", out.all());
    for f in [
        "/usr/lib/systemd/system/jarvis-supervisor@.service",
        "/usr/lib/systemd/system/jarvis-supervisor.target",
    ] {
        assert_ne!(
            c.sh(&format!("test -e {f}")).status,
            0,
            "{name}: {f} is in the package before instances: not the old package"
        );
    }
    wait_healthy(&c, suite, "the bot under the package before instances");
    let pid0 = main_pid(&c, suite);
    let starts0 = starts(&c);
    let (code0, st0) = status(&c);
    assert_eq!(starts0, 1, "{name}: the install started the bot {starts0} times");
    assert_eq!(bot_pids(&c), vec![pid0.clone()], "{name}: one bot, the engine's");

    // The upgrade, watched: every bot process seen, and when.
    let done = AtomicBool::new(false);
    let seen: Mutex<Vec<(Duration, Vec<String>)>> = Mutex::new(Vec::new());
    // What the processes were, when two were seen at once.
    let two: Mutex<Option<String>> = Mutex::new(None);
    let t0 = Instant::now();
    let (out, took, back) = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let pids = bot_pids(&c);
                if pids.len() > 1 && two.lock().unwrap().is_none() {
                    let ps = c.sh("ps -eo pid,ppid,pgid,etimes,stat,args").stdout;
                    *two.lock().unwrap() = Some(ps);
                }
                seen.lock().unwrap().push((t0.elapsed(), pids));
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let out = apt_install(&c, &new, "");
            let took = t0.elapsed();
            assert_eq!(
                out.status,
                0,
                "{name}: the upgrade to {new_version}:\n{}",
                out.all()
            );
            wait_healthy(&c, suite, "the bot after the upgrade");
            let back = t0.elapsed();
            // Not a wait for an event: a window in which a second restart
            // would show (the sampler goes on meanwhile).
            std::thread::sleep(WATCH);
            (out, took, back)
        }));
        done.store(true, Ordering::SeqCst);
        run.unwrap_or_else(|e| std::panic::resume_unwind(e))
    });
    let seen = seen.into_inner().unwrap();
    let text = out.all();
    for bad in ["restart failed", "did not start", "not started", "✗"] {
        assert!(!text.contains(bad), "{name}: the upgrade said {bad:?}:\n{text}");
    }
    assert_eq!(
        c.ok("dpkg-query -W -f='${Version}' jarvis-supervisor"),
        new_version,
        "{name}: not upgraded"
    );

    // Never two bots; kept, or restarted exactly once.
    let most = seen.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
    assert!(
        most <= 1,
        "{name}: two bots at once during the upgrade: {:?}\n{}\nthe engine's log:\n{}",
        seen.iter().find(|(_, p)| p.len() > 1),
        two.lock().unwrap().clone().unwrap_or_default(),
        c.sh(&format!("tail -n 40 {RUN_DIR}/engine.log 2>&1")).stdout
    );
    let pid1 = main_pid(&c, suite);
    let starts1 = starts(&c);
    let restarts = starts1 - starts0;
    match restarts {
        0 => assert_eq!(pid1, pid0, "{name}: a new pid without a start of the bot"),
        1 => assert_ne!(pid1, pid0, "{name}: a start of the bot, yet the old pid"),
        n => panic!("{name}: the upgrade started the bot {n} times (pid {pid0} -> {pid1})"),
    }
    assert_eq!(bot_pids(&c), vec![pid1.clone()], "{name}: one bot, the engine's");
    // The downtime: from the first sample without the old bot to the first
    // with the new one.
    let gone = seen.iter().find(|(_, p)| !p.contains(&pid0)).map(|(t, _)| *t);
    let downtime = gone.map(|g| {
        seen.iter()
            .find(|(t, p)| *t >= g && p.contains(&pid1))
            .map_or(Duration::ZERO, |(t, _)| *t - g)
    });

    // status: what it said before.
    let (code1, st1) = status(&c);
    assert_eq!(
        (code1, &st1["verdict"], &st1["bot_verdict"], &st1["state"]),
        (code0, &st0["verdict"], &st0["bot_verdict"], &st0["state"]),
        "{name}: status before the upgrade: {st0}\nafter: {st1}"
    );

    // The new group, with no operator's step.
    let listed = c.ok("jarvisctl instance list --json");
    let listed: Value = serde_json::from_str(&listed).unwrap_or_else(|e| panic!("{name}: {e}: {listed}"));
    let names: Vec<&str> = listed["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: instance list: {listed}"))
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["default"], "{name}: instance list: {listed}");
    let group = if suite.has_systemd() {
        let q = |cmd: &str| c.sh(cmd).stdout.trim().to_string();
        let got = (
            q("systemctl is-enabled jarvis-supervisor.target"),
            q(&format!("systemctl is-enabled {UNIT}")),
            q(&format!("systemctl is-active {UNIT}")),
        );
        assert_eq!(
            got,
            ("enabled".into(), "enabled".into(), "active".into()),
            "{name}: jarvis-supervisor.target enabled, the default unit enabled and active"
        );
        // The group reaches the default unit: it is one of the target's.
        let wants = q("systemctl show -p Wants --value jarvis-supervisor.target");
        assert!(
            wants.split_whitespace().any(|u| u == UNIT),
            "{name}: the target does not want {UNIT}: {wants:?}"
        );
        format!("target {}, {UNIT} {} and {}", got.0, got.1, got.2)
    } else {
        let svc = c.sh("service jarvis-supervisor status 2>&1");
        assert_eq!(svc.status, 0, "{name}: the init script's status: {}", svc.all());
        // The engine calls itself jarvisctl (it is jarvis-engine, exec'd
        // by `jarvisctl run`); nothing else of the package runs here now.
        let engines: Vec<String> = c
            .ok("ps -eo pid=,comm= | awk '$2 == \"jarvisctl\" || $2 == \"jarvis-engine\" {print $1}'")
            .lines()
            .map(str::to_string)
            .collect();
        let state: Value =
            serde_json::from_str(&c.ok(&format!("cat {RUN_DIR}/state.json"))).unwrap_or_default();
        assert_eq!(
            engines,
            [state["engine_pid"].to_string()],
            "{name}: one engine, the one the state names ({state}); processes:\n{}",
            c.sh("ps -eo pid,ppid,comm,args").stdout
        );
        let parent = c.ok(&format!("ps -o ppid= -p {pid1}"));
        assert_eq!(
            parent.trim(),
            engines[0],
            "{name}: the bot is not the engine's child"
        );
        format!(
            "init script: {}; one engine, pid {}",
            svc.stdout.trim(),
            engines[0]
        )
    };

    println!(
        "figures: {name}: {old_version} -> {new_version}: bot pid {pid0} -> {pid1} ({}), starts {starts0} -> {starts1}; \
         the upgrade took {:.1} s; downtime {}; healthy again {:.1} s after it began; status {} ({}) before and after; {group}; \
         {} samples, at most {most} bot at a time",
        if restarts == 0 { "kept" } else { "restarted once" },
        took.as_secs_f64(),
        downtime.map_or("none".to_string(), |d| format!("{:.2} s without a bot", d.as_secs_f64())),
        back.as_secs_f64(),
        st1["verdict"],
        code1,
        seen.len()
    );
}

pub fn both_engines() {
    on_suites(&[Suite::Bookworm, Suite::Sysvinit], scenario);
}
