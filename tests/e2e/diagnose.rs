//! Issue 4 in a booted container: the preflight's words in `systemctl
//! status`, a deleted writable directory named and repaired, and each row of
//! the plan's "Common Issues" table reproduced and diagnosed by `check`.

use std::time::Duration;

use super::container::Container;
use super::roots::Suite;
use super::{active, apt_install, deploy_standin, output_when, pkg, CODE, UNIT};

const DROPIN: &str = "/etc/systemd/system/jarvis-supervisor.service.d/50-test.conf";

fn check(c: &Container) -> (i32, String) {
    let r = c.sh("NO_COLOR=1 jarvisctl check 2>&1");
    (r.status, r.stdout)
}

fn installed(with_env: bool) -> Container {
    let c = Container::boot(Suite::Bookworm);
    deploy_standin(&c);
    if !with_env {
        c.ok(&format!("rm {CODE}/.env"));
    }
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "{}", out.all());
    c
}

pub fn missing_env() {
    let c = installed(false);
    assert_eq!(c.prop(UNIT, "ActiveState"), "inactive");
    let start = c.sh(&format!("systemctl start {UNIT} 2>&1"));
    assert_ne!(start.status, 0, "it started without .env");
    // The preflight fails at once, then the next start's backoff repeats its
    // words while it waits: that is what a person running status sees.
    let mut status = String::new();
    let seen = c.wait_for(
        "the preflight's words in systemctl status",
        Duration::from_secs(60),
        |c| {
            status = c
                .sh(&format!("systemctl status --no-pager -n 20 {UNIT} 2>&1"))
                .stdout;
            status.contains("✗ env: /home/jarvis/Jarvis/.env is missing")
        },
    );
    println!(
        "systemctl status showed the preflight's words {:.1} s after the start",
        seen.as_secs_f64()
    );
    let (code, text) = check(&c);
    assert_eq!(code, 1);
    assert!(text.contains(".env is missing"), "{text}");
    println!(
        "missing .env, systemctl status shows: {}",
        status.lines().find(|l| l.contains("✗ env")).unwrap().trim()
    );
}

pub fn deleted_dir() {
    let c = installed(true);
    c.wait_for("active", Duration::from_secs(60), active);
    c.ok(&format!("systemctl stop {UNIT}; rm -rf /home/jarvis/.lifeos"));
    // systemd cannot set up the sandbox, already for the ExecCondition= (the
    // pause switch) that comes first: it takes that as a skipped start,
    // not a failure, so `systemctl start` says nothing. The bot must not
    // run, and status must say why.
    let _ = c.sh(&format!("systemctl start {UNIT} 2>&1"));
    assert!(!active(&c), "it started without a ReadWritePaths directory");
    // The failed child's line reaches the journal after `systemctl start`
    // returns, at journald's pace.
    let journal = output_when(
        &c,
        "journalctl -u jarvis-supervisor -o cat --no-pager",
        Duration::from_secs(30),
        |j| j.contains("Failed at step NAMESPACE"),
    );
    assert!(
        journal.contains("Failed at step NAMESPACE"),
        "not the NAMESPACE failure:\n{journal}"
    );
    let st = c.sh("jarvisctl status");
    assert_eq!(st.status, 2, "{}", st.all());
    assert!(
        st.stdout
            .contains("status 226/NAMESPACE: a ReadWritePaths= directory is missing"),
        "status does not name the skipped start:\n{}",
        st.all()
    );
    let (code, text) = check(&c);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("✗ path: /home/jarvis/.lifeos (ReadWritePaths=) is missing: the bot cannot start (226/NAMESPACE) — fix: sudo jarvisctl setup"),
        "{text}"
    );
    let setup = c.ok("jarvisctl setup");
    assert!(
        setup.contains("created directory /home/jarvis/.lifeos (jarvis:jarvis 0750)"),
        "{setup}"
    );
    c.ok(&format!("systemctl reset-failed {UNIT}; systemctl start {UNIT}"));
    c.wait_for("active after the repair", Duration::from_secs(60), active);
    let (code, text) = check(&c);
    assert_eq!(code, 0, "check still fails after the repair:\n{text}");
}

pub fn common_issues() {
    let c = installed(true);
    c.wait_for("active", Duration::from_secs(60), active);
    let reset = |c: &Container| {
        c.ok(&format!("rm -f {DROPIN} {CODE}/data/standin-mode; systemctl daemon-reload; systemctl stop {UNIT}; systemctl reset-failed {UNIT}"));
    };

    // Exit 1: a Python error in the code.
    c.ok(&format!(
        "cp {CODE}/bots/supervisor.py /var/tmp/good.py; echo 'def broken(:' >> {CODE}/bots/supervisor.py"
    ));
    let _ = c.sh(&format!("systemctl restart {UNIT}"));
    c.wait_for("the exit-1 failure", Duration::from_secs(30), |c| {
        c.ok("journalctl -u jarvis-supervisor -o cat --no-pager")
            .contains("status=1/FAILURE")
    });
    let (_, text) = check(&c);
    assert!(
        text.contains("the bot exited with status 1"),
        "exit 1 not diagnosed:\n{text}"
    );
    c.ok(&format!("cp /var/tmp/good.py {CODE}/bots/supervisor.py"));
    reset(&c);

    // 217/USER: the service user is missing.
    c.write(DROPIN, "[Service]\nUser=ghost\n");
    c.ok("systemctl daemon-reload");
    let _ = c.sh(&format!("systemctl start {UNIT}"));
    let (code, text) = check(&c);
    assert_eq!(code, 1);
    assert!(
        text.contains("✗ user: user ghost does not exist: the start fails with 217/USER"),
        "{text}"
    );
    reset(&c);

    // Constant watchdog restarts.
    c.write(
        DROPIN,
        "[Service]\nWatchdogSec=10s\nEnvironment=STANDIN_WATCHDOG_INTERVAL=2\n",
    );
    c.ok(&format!("systemctl daemon-reload; systemctl start {UNIT}"));
    c.wait_for("active", Duration::from_secs(60), active);
    c.ok(&format!("echo hang > {CODE}/data/standin-mode"));
    c.wait_for("the watchdog", Duration::from_secs(40), |c| {
        c.ok("journalctl -u jarvis-supervisor -o cat --no-pager")
            .contains("Watchdog timeout")
    });
    c.ok(&format!("rm -f {CODE}/data/standin-mode"));
    let (_, text) = check(&c);
    assert!(
        text.contains("history: the watchdog killed a hung bot: 1 time(s) in the last 24 h"),
        "{text}"
    );
    reset(&c);

    // OOM: the memory cap.
    c.enable_memory_controller();
    c.write(
        DROPIN,
        "[Service]\nMemoryMax=128M\nMemorySwapMax=0\nEnvironment=STANDIN_LEAK_MB_PER_S=100\n",
    );
    c.ok(&format!("systemctl daemon-reload; systemctl start {UNIT}"));
    c.wait_for("active", Duration::from_secs(60), active);
    assert_eq!(
        c.memory_limit_of(UNIT),
        Some(128 << 20),
        "MemoryMax is not in force"
    );
    c.ok(&format!("echo leak > {CODE}/data/standin-mode"));
    c.wait_for("the OOM kill", Duration::from_secs(60), |c| {
        c.ok("journalctl -u jarvis-supervisor -o cat --no-pager")
            .contains("status=9/KILL")
    });
    c.ok(&format!("rm -f {CODE}/data/standin-mode"));
    let (_, text) = check(&c);
    // systemd records OOM kills only on cgroup v2; on a v1 host the kernel's
    // log is the record, and a container's journal may not have it. Either
    // way a real OOM kill is never called "not by the OOM killer".
    assert!(
        text.contains("history: the bot was killed by the OOM killer")
            || text.contains("history: the bot was killed by signal 9 (KILL), and no OOM kill is on record"),
        "{text}"
    );
    assert!(
        !text.contains("not by the OOM killer"),
        "a real OOM kill denied:\n{text}"
    );
    if let Some(line) = text.lines().find(|l| l.contains("history: the bot was killed")) {
        println!("check after a real OOM kill at MemoryMax=128M: {line}");
    }
    println!("common issues diagnosed: exit 1, 217/USER, watchdog, OOM (and .env, 226 in their own tests)");
}
