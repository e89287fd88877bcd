//! Start, stop, restart, and the program's own pause, on both engines in
//! one boot each (Debian 12 with systemd 252, and sysvinit with the
//! fallback engine), then a reboot that must keep a paused bot paused.
//!
//! The bot counts its own starts (`STANDIN_START_LOG`): a pause read as a
//! failure would show as starts, and as a run of heartbeat.conf's
//! on_failure command, which writes a marker.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::container::Container;
use super::roots::Suite;
use super::{apt_install, deploy_standin, on_suites, pkg, CODE, UNIT};

const STARTS: &str = "/home/jarvis/Jarvis/data/starts.log";
const ALERTED: &str = "/srv/alert.txt";
const PROM: &str = "/var/tmp/prom";
const DROPIN: &str = "/etc/systemd/system/jarvis-supervisor.service.d/50-test.conf";

fn starts(c: &Container) -> usize {
    c.sh(&format!("cat {STARTS}")).stdout.lines().count()
}

/// Live processes running the bot's code.
fn bots(c: &Container) -> usize {
    c.ok("ps -eo args= | grep -c '[b]ots/supervisor.py' || true")
        .trim()
        .parse()
        .unwrap_or(0)
}

/// `jarvisctl ARGS --json`: exit code and outcome.
fn verb(c: &Container, name: &str, args: &str) -> (i32, Value) {
    let r = c.sh(&format!("jarvisctl {args} --json"));
    let v: Value = r
        .stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{name}: jarvisctl {args}: no JSON:\n{}", r.all()));
    (r.status, v)
}

fn status(c: &Container) -> (i32, Value) {
    let r = c.sh("jarvisctl status --json");
    let v = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
    (r.status, v)
}

fn metrics(c: &Container) -> String {
    c.ok(&format!(
        "mkdir -p {PROM} && JARVIS_TEXTFILE_DIR={PROM} jarvisctl status --record; cat {PROM}/jarvis_supervisor.prom"
    ))
}

/// The engine has settled after a start that the pause skipped: systemd's
/// unit is inactive after its condition, the fallback engine has exited.
fn settled_paused(c: &Container, suite: Suite) -> bool {
    if suite.has_systemd() {
        c.prop(UNIT, "ActiveState") == "inactive" && c.prop(UNIT, "Result") == "exec-condition"
    } else {
        c.sh("cat /run/jarvis-supervisor-run/state.json")
            .stdout
            .contains("\"exec-condition\"")
            && c.sh("test -e /run/jarvis-supervisor-run/run.pid").status != 0
    }
}

/// A paused bot stays down: watched for 2 s (longer than RestartSec=1s,
/// so an automatic restart would show), no start, no process, no alert.
fn stays_paused(c: &Container, name: &str, suite: Suite, starts_before: usize) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        assert!(
            starts(c) <= starts_before,
            "{name}: the paused bot was started again"
        );
        assert_eq!(bots(c), 0, "{name}: a bot process runs while paused");
        if suite.has_systemd() {
            let state = c.prop(UNIT, "ActiveState");
            assert!(
                state == "inactive",
                "{name}: paused unit is {state}, result {}",
                c.prop(UNIT, "Result")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_ne!(
        c.sh(&format!("test -e {ALERTED}")).status,
        0,
        "{name}: an alert ran"
    );
}

/// What the engine said lately, for a failure message.
fn diagnosis(c: &Container, suite: Suite) -> String {
    if suite.has_systemd() {
        c.sh(&format!(
            "journalctl -u {UNIT} -o short-precise --no-pager -r -n 25; systemctl show {UNIT} -p ActiveState,SubState,Result,InvocationID,InactiveExitTimestampMonotonic; ls -la {CODE}"
        ))
        .all()
    } else {
        c.sh("tail -n 25 /run/jarvis-supervisor-run/engine.log").all()
    }
}

fn scenario(suite: Suite) {
    let name = suite.name();
    let t_all = Instant::now();
    let mut c = Container::boot(suite);
    deploy_standin(&c);
    c.ok(&format!("echo STANDIN_START_LOG=data/starts.log >> {CODE}/.env"));
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "{name}: {}", out.all());
    // A conffile of the package: written once it is installed.
    c.ok("mkdir -p /etc/jarvis-supervisor");
    c.write(
        "/etc/jarvis-supervisor/heartbeat.conf",
        &format!("on_failure = echo \"$JARVIS_ALERT_REASON\" >> {ALERTED}\n"),
    );
    c.wait_for(
        &format!("{name}: the bot after install"),
        Duration::from_secs(60),
        |c| status(c).1["state"] == "active",
    );

    // Acceptance 6: the verbs on this engine.
    let first = status(&c).1["main_pid"].as_u64().unwrap();
    let human = c.sh("jarvisctl restart");
    assert_eq!(human.status, 0, "{name}: {}", human.all());
    println!("figures: {name}: jarvisctl restart:\n{}", human.all());
    let second = status(&c).1["main_pid"].as_u64().unwrap();
    assert!(
        human.stdout.contains(&format!("main pid {second}")),
        "{name}: {}",
        human.all()
    );
    assert_ne!(second, first, "{name}: restart must give a new main pid");
    let (code, out) = verb(&c, name, "stop");
    assert_eq!(
        (code, out["reached"].as_str()),
        (0, Some("stopped")),
        "{name}: {out}"
    );
    assert_eq!(bots(&c), 0, "{name}: stop left a bot running");
    let (code, out) = verb(&c, name, "stop");
    assert_eq!(code, 0, "{name}: a second stop: {out}");
    let (code, out) = verb(&c, name, "start");
    assert_eq!(
        (code, out["reached"].as_str()),
        (0, Some("running")),
        "{name}: {out}"
    );
    assert_eq!(bots(&c), 1);
    println!(
        "figures: {name}: restart {second} after {first}, start {} ({:.1} s)",
        out["main_pid"], out["seconds"]
    );

    // Acceptance 9: the file made by hand while the bot runs, then a restart.
    let n = starts(&c);
    c.ok(&format!("touch {CODE}/PAUSE_AUTOMATIONS"));
    let t0 = Instant::now();
    let (code, out) = verb(&c, name, "restart");
    assert_eq!(
        code, 1,
        "{name}: a restart that ends paused is not success: {out}"
    );
    assert_eq!(out["reached"], "paused", "{name}: {out}");
    c.wait_for(&format!("{name}: settled paused"), Duration::from_secs(60), |c| {
        settled_paused(c, suite)
    });
    stays_paused(&c, name, suite, n + 1);
    let extra = starts(&c) - n;
    let (code, st) = status(&c);
    assert_eq!((code, st["state"].as_str()), (0, Some("paused")), "{name}: {st}");
    assert_eq!(st["pause"]["made_by"], "by hand", "{name}: {st}");
    assert_eq!(st["pause"]["by"], "root", "{name}: {st}");
    println!(
        "figures: {name}: jarvisctl status, paused by hand:\n{}",
        c.sh("jarvisctl status").all()
    );
    let prom = metrics(&c);
    assert!(
        prom.contains("\njarvis_supervisor_paused{bot=\"default\"} 1\n"),
        "{name}: {prom}"
    );
    println!(
        "figures: {name}: paused by hand, {extra} start(s) in {:.1} s, status {}",
        t0.elapsed().as_secs_f64(),
        st["state"]
    );
    c.ok(&format!("rm {CODE}/PAUSE_AUTOMATIONS"));
    let (code, out) = verb(&c, name, "start");
    assert_eq!(
        (code, out["reached"].as_str()),
        (0, Some("running")),
        "{name}: {out}\n{}",
        diagnosis(&c, suite)
    );

    // The same with jarvisctl pause and resume.
    let (code, out) = verb(&c, name, "pause --reason exchange-maintenance");
    assert_eq!(
        (code, out["reached"].as_str()),
        (0, Some("stopped")),
        "{name}: {out}"
    );
    assert_eq!(bots(&c), 0);
    let owner = c.ok(&format!("stat -c %U {CODE}/PAUSE_AUTOMATIONS"));
    assert_eq!(
        owner.trim(),
        "jarvis",
        "{name}: the pause file is the service user's"
    );
    let n = starts(&c);
    let (code, st) = status(&c);
    assert_eq!((code, st["state"].as_str()), (0, Some("paused")), "{name}: {st}");
    assert_eq!(st["pause"]["reason"], "exchange-maintenance", "{name}: {st}");
    let again = c.sh("jarvisctl start");
    assert_eq!(again.status, 1, "{name}: {}", again.all());
    println!("figures: {name}: jarvisctl start while paused:\n{}", again.all());
    assert!(metrics(&c).contains("\njarvis_supervisor_paused{bot=\"default\"} 1\n"));

    // A reboot keeps it paused.
    c.poweroff();
    c.start();
    c.wait_for(
        &format!("{name}: the skipped start at boot"),
        Duration::from_secs(90),
        |c| settled_paused(c, suite),
    );
    stays_paused(&c, name, suite, n);
    let (code, st) = status(&c);
    assert_eq!(
        (code, st["state"].as_str()),
        (0, Some("paused")),
        "{name}: after reboot: {st}"
    );

    let (code, out) = verb(&c, name, "resume");
    assert_eq!(
        (code, out["reached"].as_str()),
        (0, Some("running")),
        "{name}: {out}"
    );
    assert_eq!(bots(&c), 1);
    let (code, st) = status(&c);
    assert!(st["pause"].is_null(), "{name}: {st}");
    assert_eq!(st["state"], "active", "{name}: {code} {st}");
    assert!(metrics(&c).contains("\njarvis_supervisor_paused{bot=\"default\"} 0\n"));

    // The program pauses itself although the condition let it start (a
    // condition that says yes once): its exit 0 before READY (systemd:
    // Result=protocol) is restarted once, and that start's condition skips
    // it. One start, then paused, no alert.
    let (code, _) = verb(&c, name, "stop");
    assert_eq!(code, 0);
    c.write(
        DROPIN,
        &format!(
            "[Service]\nExecCondition=\nExecCondition=/bin/sh -c 'test -e {CODE}/data/once || {{ touch {CODE}/data/once; exit 0; }}; exec /usr/bin/jarvisctl condition'\n"
        ),
    );
    if suite.has_systemd() {
        c.ok("systemctl daemon-reload");
    }
    c.ok(&format!("touch {CODE}/PAUSE_AUTOMATIONS"));
    let n = starts(&c);
    let (code, out) = verb(&c, name, "start");
    assert_eq!(
        (code, out["reached"].as_str()),
        (1, Some("paused")),
        "{name}: {out}"
    );
    c.wait_for(
        &format!("{name}: paused after its own exit"),
        Duration::from_secs(60),
        |c| settled_paused(c, suite),
    );
    stays_paused(&c, name, suite, n + 1);
    assert_eq!(
        starts(&c),
        n + 1,
        "{name}: started once, paused itself, not restarted into the program"
    );
    let said = if suite.has_systemd() {
        c.ok(&format!("journalctl -b -u {UNIT} -o cat --no-pager | tail -n 30"))
    } else {
        c.ok("tail -n 30 /run/jarvis-supervisor-run/engine.log")
    };
    assert!(
        said.contains("protocol"),
        "{name}: no protocol failure recorded:\n{said}"
    );
    println!("figures: {name}: the program's own pause, what the engine said:\n{said}");
    c.ok(&format!(
        "rm -f {DROPIN} {CODE}/data/once {CODE}/PAUSE_AUTOMATIONS"
    ));
    if suite.has_systemd() {
        c.ok("systemctl daemon-reload");
    }
    let (code, out) = verb(&c, name, "start");
    assert_eq!(
        (code, out["reached"].as_str()),
        (0, Some("running")),
        "{name}: {out}"
    );
    assert_ne!(
        c.sh(&format!("test -e {ALERTED}")).status,
        0,
        "{name}: an alert ran"
    );
    println!(
        "figures: {name}: whole scenario with a reboot in {:.0} s",
        t_all.elapsed().as_secs_f64()
    );
}

pub fn both_engines() {
    on_suites(&[Suite::Bookworm, Suite::Sysvinit], scenario);
}
