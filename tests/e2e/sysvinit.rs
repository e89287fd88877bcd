//! Issue 6 in a booted sysvinit Debian 12 (no systemd at all): the package
//! registers its init script, which runs the bot under `jarvisctl run`, and
//! the bot gets the unit's contract: restart with backoff and a give-up
//! limit, the watchdog, the start timeout, one copy only, rotation without
//! loss, and a notify flood that blocks nothing.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::container::Container;
use super::roots::Suite;
use super::{apt_install, deploy_standin, pkg, user_state, CODE};

const STATE: &str = "/run/jarvis-supervisor-run/state.json";
const ENGINE_LOG: &str = "/run/jarvis-supervisor-run/engine.log";
const DROPIN: &str = "/etc/systemd/system/jarvis-supervisor.service.d/50-test.conf";

fn state(c: &Container) -> Value {
    let r = c.sh(&format!("cat {STATE}"));
    serde_json::from_str(&r.stdout).unwrap_or(Value::Null)
}

/// Wait until the engine's state satisfies `pred`; panics with the engine's
/// log after `secs`.
fn wait_state(c: &Container, secs: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let st = state(c);
        if pred(&st) {
            return st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "no {what} within {secs} s; state {st}\nengine log:\n{}",
            c.sh(&format!("tail -n 40 {ENGINE_LOG}")).stdout
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn running(st: &Value) -> bool {
    st["state"] == "running"
}

/// Live processes running the bot's code, as (pid, ppid, user).
fn bots(c: &Container) -> Vec<(u32, u32, String)> {
    c.ok("ps -eo pid=,ppid=,user=,args= | grep '[b]ots/supervisor.py' || true")
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((
                w.first()?.parse().ok()?,
                w.get(1)?.parse().ok()?,
                w.get(2)?.to_string(),
            ))
        })
        .collect()
}

fn status(c: &Container) -> (i32, Value) {
    let r = c.sh("jarvisctl status --json");
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.all()));
    assert_eq!(v["exit_code"], r.status, "{v}");
    (r.status, v)
}

/// A sysvinit host with the package installed and the stand-in running
/// (started by the postinst through the init script).
fn host(dropin: &str, env: &str) -> Container {
    let c = Container::boot(Suite::Sysvinit);
    assert_ne!(
        c.sh("test -d /run/systemd/system").status,
        0,
        "systemd runs in the sysvinit root"
    );
    deploy_standin(&c);
    if !env.is_empty() {
        c.ok(&format!("printf '{env}' >> {CODE}/.env"));
    }
    if !dropin.is_empty() {
        c.write(DROPIN, dropin);
    }
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "apt install failed:\n{}", out.all());
    wait_state(&c, 60, "running bot", running);
    c
}

/// Acceptance 1 and 7: registered, started, back after a reboot; every unit
/// setting honoured or named at start; status reads the engine.
pub fn install_and_reboot() {
    let mut c = host("", "");
    let links = c.ok("ls /etc/rc2.d /etc/rc0.d /etc/rc6.d");
    assert!(
        links
            .lines()
            .any(|l| l.starts_with('S') && l.ends_with("jarvis-supervisor"))
            && links
                .lines()
                .filter(|l| l.starts_with('K') && l.ends_with("jarvis-supervisor"))
                .count()
                == 2,
        "the init script is not registered for runlevels 2 (start) and 0, 6 (stop):\n{links}"
    );
    // No systemd-sysusers here: jarvisctl setup made the account, with the
    // same no-login shell as the sysusers.d entry.
    let passwd = c.ok("getent passwd jarvis");
    assert!(
        passwd.trim().ends_with(":/home/jarvis:/usr/sbin/nologin"),
        "jarvis must have no login shell: {passwd}"
    );
    let st = state(&c);
    let engine = st["engine_pid"].as_u64().unwrap() as u32;
    let found = bots(&c);
    assert_eq!(found.len(), 1, "one bot: {found:?}");
    let (pid, ppid, user) = &found[0];
    assert_eq!(
        (*pid as u64, *ppid, user.as_str()),
        (st["main_pid"].as_u64().unwrap(), engine, "jarvis")
    );
    assert_eq!(c.ok(&format!("cat /proc/{engine}/comm")).trim(), "jarvisctl");
    let log = c.ok(&format!("cat {ENGINE_LOG}"));
    println!("engine log at start:\n{log}");
    let skipped = log
        .lines()
        .find_map(|l| l.strip_prefix("jarvisctl run: not honoured without systemd: "))
        .unwrap_or_else(|| panic!("no 'not honoured' line:\n{log}"));
    for key in ["ProtectSystem", "CPUQuota", "SystemCallFilter", "ReadWritePaths"] {
        assert!(
            skipped.contains(key),
            "{key} is neither honoured nor reported: {skipped}"
        );
    }
    assert!(
        log.contains("MemoryMax=4294967296"),
        "no line on how MemoryMax is applied:\n{log}"
    );

    let (code, v) = status(&c);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["supervisor"], "jarvisctl run");
    assert_eq!(v["main_pid"], st["main_pid"]);
    let svc = c.sh("service jarvis-supervisor status");
    assert_eq!(svc.status, 0, "{}", svc.all());

    // Reboot: the init script starts it again, the user's data untouched.
    let before = user_state(&c);
    let t_reboot = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    c.poweroff();
    c.start();
    let st = wait_state(&c, 60, "the bot after the reboot", |s| {
        running(s) && s["started_unix"].as_f64().unwrap_or(0.0) > t_reboot
    });
    assert_eq!(bots(&c).len(), 1);
    assert_eq!(bots(&c)[0].0 as u64, st["main_pid"].as_u64().unwrap());
    assert_eq!(user_state(&c), before, "the reboot changed user data");

    // Stop: graceful, nothing left.
    c.ok("service jarvis-supervisor stop");
    let st = state(&c);
    assert_eq!(st["state"], "stopped", "{st}");
    assert!(bots(&c).is_empty(), "{:?}", bots(&c));
    assert!(
        c.ok(&format!("cat {CODE}/logs/supervisor.stdout"))
            .contains("standin: clean shutdown"),
        "not a graceful stop"
    );
    println!("sysvinit: registered, started, back after a reboot, stopped gracefully");
}

/// Acceptance 2 and 3: crash, hang, backoff and give-up, start timeout.
pub fn crash_hang_and_limits() {
    let c = host(
        "[Unit]\nStartLimitBurst=7\n[Service]\nWatchdogSec=6s\n",
        "STANDIN_WATCHDOG_INTERVAL=1\\nSTANDIN_MODE_AFTER=1\\n",
    );
    let st = state(&c);

    // Crash: kill -9 of the bot brings it back with a new pid.
    let t0 = Instant::now();
    c.ok(&format!("kill -9 {}", st["main_pid"]));
    let st2 = wait_state(&c, 30, "a restart after kill -9", |s| {
        running(s) && s["main_pid"] != st["main_pid"] && s["n_restarts"] == 1
    });
    let back = t0.elapsed();
    assert_eq!(st2["result"], "signal");
    assert_eq!(bots(&c).len(), 1);

    // Hang: the watchdog aborts it (traceback in the output) and restarts it.
    c.ok(&format!("echo hang > {CODE}/data/standin-mode"));
    let t1 = Instant::now();
    let st3 = wait_state(&c, 30, "the watchdog restart", |s| s["n_restarts"] == 2);
    let fired = t1.elapsed();
    assert_eq!(st3["result"], "watchdog", "{st3}");
    c.ok(&format!("rm {CODE}/data/standin-mode"));
    wait_state(&c, 60, "running again after the hang", running);
    let out = c.ok(&format!("cat {CODE}/logs/supervisor.stdout"));
    assert!(
        out.contains("Fatal Python error: Aborted"),
        "no traceback:\n{out}"
    );
    assert!(c.ok(&format!("cat {ENGINE_LOG}")).contains("watchdog timeout"));

    // A crash loop: longer and longer waits, then it gives up.
    c.ok(&format!("echo crash > {CODE}/data/standin-mode"));
    let mut starts = Vec::new();
    let mut last = state(&c)["n_restarts"].as_u64().unwrap();
    let t2 = Instant::now();
    let give_up = loop {
        let s = state(&c);
        let n = s["n_restarts"].as_u64().unwrap_or(last);
        if n != last {
            starts.push(t2.elapsed().as_secs_f64());
            last = n;
        }
        if s["state"] == "failed" {
            break s;
        }
        assert!(
            t2.elapsed() < Duration::from_secs(120),
            "no give-up in 120 s: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(give_up["result"], "start-limit-hit", "{give_up}");
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    println!("crash loop: restarts at {starts:.1?} s, gaps {gaps:.1?} s");
    assert!(
        gaps.len() >= 2 && gaps.last().unwrap() > &(gaps[0] + 1.5),
        "no backoff: gaps {gaps:?}"
    );
    let log = c.ok(&format!("cat {ENGINE_LOG}"));
    assert!(log.contains("start limit hit"), "{log}");
    assert!(
        bots(&c).is_empty(),
        "a bot runs after the give-up: {:?}",
        bots(&c)
    );
    let (code, v) = status(&c);
    assert_eq!((code, v["state"].as_str()), (2, Some("failed")), "{v}");

    // Start timeout: a bot that never sends READY is stopped after TimeoutStartSec.
    // (.env wins over Environment=, as under systemd: the delay goes there.)
    c.ok(&format!(
        "rm {CODE}/data/standin-mode; sed -i 's/^STANDIN_READY_DELAY=.*/STANDIN_READY_DELAY=600/' {CODE}/.env"
    ));
    c.write(DROPIN, "[Service]\nTimeoutStartSec=4s\nRestart=no\n");
    let t3 = Instant::now();
    c.ok("service jarvis-supervisor start");
    // Once start returns, the state is this start's, not the give-up's.
    let now = state(&c);
    assert!(
        now["started_unix"] != give_up["started_unix"] && now["state"] == "starting",
        "after service start, the state is still the last run's: {now}"
    );
    let st = wait_state(&c, 30, "the start timeout", |s| s["state"] == "failed");
    let timed_out = t3.elapsed();
    assert_eq!(
        st["result"],
        "timeout",
        "{st}\n{}",
        c.sh(&format!(
            "tail -n 30 {ENGINE_LOG}; tail -n 20 {CODE}/logs/supervisor.stdout"
        ))
        .stdout
    );
    assert!(c
        .ok(&format!("cat {ENGINE_LOG}"))
        .contains("start timed out: no READY=1 within TimeoutStartSec=4s"));
    assert!(bots(&c).is_empty());
    assert!(timed_out >= Duration::from_secs(4), "{timed_out:?}");

    // A start the preflight refuses says why, in the program's output file.
    c.ok(&format!("echo STANDIN_READY_DELAY=1 >> {CODE}/.env"));
    c.ok("service jarvis-supervisor start");
    wait_state(&c, 30, "the refused start", |s| {
        s["state"] == "failed" && s["started_unix"] != st["started_unix"]
    });
    let out = c.ok(&format!("tail -n 5 {CODE}/logs/supervisor.stdout"));
    assert!(
        out.contains("✗ env: /home/jarvis/Jarvis/.env line")
            && out.contains("assigns a key already assigned above"),
        "the preflight's reason is not in the output:\n{out}"
    );
    println!(
        "sysvinit: back {back:?} after kill -9; watchdog (6 s) fired after {fired:?}; start timeout (4 s) failed the start after {timed_out:?}"
    );
}

/// Acceptance 4: never two bots.
pub fn never_two() {
    let c = host("", "");
    let st = state(&c);
    let engine = st["engine_pid"].clone();
    let second = c.sh("jarvisctl run");
    assert_eq!(second.status, 1, "{}", second.all());
    assert!(
        second
            .stderr
            .contains(&format!("already supervising the program (pid {engine}")),
        "{}",
        second.all()
    );
    let second = c.sh("jarvisctl run --daemon");
    assert_eq!(second.status, 1, "{}", second.all());
    // By hand, as the plan's nohup line did: the bot's own lock refuses it.
    let by_hand = c.sh(&format!(
        "cd {CODE} && su -s /bin/sh jarvis -c 'PYTHONPATH={CODE} timeout 20 python3 bots/supervisor.py' 2>&1"
    ));
    assert_eq!(by_hand.status, 1, "{}", by_hand.all());
    assert!(by_hand.stdout.contains("Another instance"), "{}", by_hand.all());
    assert_eq!(bots(&c).len(), 1);

    // kill -9 of the engine takes the bot with it: nothing orphaned.
    c.ok(&format!("kill -9 {engine}"));
    let t0 = Instant::now();
    while !bots(&c).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "orphaned bot: {:?}",
            bots(&c)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone = t0.elapsed();
    let (code, v) = status(&c);
    assert_eq!(code, 2, "{v}");
    assert!(v["reasons"][0].as_str().unwrap().contains("killed"), "{v}");
    // Started again: exactly one.
    c.ok("service jarvis-supervisor start");
    wait_state(&c, 60, "running again", |s| {
        running(s) && s["engine_pid"] != engine
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(bots(&c).len(), 1, "{:?}", bots(&c));
    println!("sysvinit: second run refused; bot gone {gone:?} after kill -9 of the engine; one bot after the restart");
}

/// Acceptance 5 and 6: rotation by the shipped fallback stanza while the
/// bot writes numbered lines; a notify flood.
pub fn rotation_and_flood() {
    let c = host(
        "",
        "STANDIN_MODE=flood\\nSTANDIN_MODE_AFTER=0\\nSTANDIN_FLOOD_LINES_PER_S=2000\\n",
    );
    let pid = state(&c)["main_pid"].clone();
    std::thread::sleep(Duration::from_secs(1));
    // Six forced rotations with the shipped stanza (it keeps 7).
    for _ in 0..6 {
        let r = c.sh("logrotate -f /etc/logrotate.d/jarvis-fallback 2>&1");
        assert_eq!(r.status, 0, "{}", r.all());
        assert!(!r.stdout.lines().any(|l| l.starts_with("error:")), "{}", r.stdout);
        std::thread::sleep(Duration::from_millis(700));
    }
    std::thread::sleep(Duration::from_secs(1));
    c.ok("service jarvis-supervisor stop");
    let st = state(&c);
    assert_eq!(st["n_restarts"], 0, "rotation restarted the bot: {st}");
    let text = c.ok(&format!(
        "cd {CODE}/logs && for f in $(ls -r supervisor.stdout.*); do case $f in *.gz) zcat $f;; *) cat $f;; esac; done; cat supervisor.stdout"
    ));
    let files = c.ok(&format!("ls {CODE}/logs"));
    let pid = pid.as_u64().unwrap().to_string();
    let mut seen = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("flood=")) {
        let mut w = line.split_whitespace();
        let n: u64 = w.next().unwrap()["flood=".len()..].parse().expect("whole line");
        assert_eq!(
            w.next(),
            Some(format!("pid={pid}").as_str()),
            "a line from another pid: {line}"
        );
        seen.push(n);
    }
    let n = seen.len() as u64;
    assert!(n > 5000, "only {n} lines");
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len() as u64, n, "duplicated lines");
    assert_eq!((sorted[0], *sorted.last().unwrap()), (1, n), "missing lines");
    println!("rotation: 6 forced rotations, {n} numbered lines, none lost or duplicated; files:\n{files}");

    // The flood: 10,000 notify messages in a second from the program.
    c.write(
        "/var/tmp/notify_flood.py",
        include_str!("../fixtures/notify_flood.py"),
    );
    c.write(
        DROPIN,
        "[Service]\nExecStart=\nExecStart=/usr/bin/python3 /var/tmp/notify_flood.py\n",
    );
    c.ok("service jarvis-supervisor start");
    let st = wait_state(&c, 30, "the flood to end", |s| {
        running(s) && s["status_text"] == "flood done"
    });
    let out = c.ok(&format!("cat {CODE}/logs/supervisor.stdout"));
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("flood sent="))
        .expect("flood line")
        .to_string();
    let field = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    assert!(field("total_s=") < 2.0, "the program was held up: {line}");
    assert!(field("worst_send_ms=") < 200.0, "one send blocked: {line}");
    assert!(st["last_watchdog_unix"].as_f64().is_some());
    let t0 = Instant::now();
    c.ok("service jarvis-supervisor stop");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "stop after the flood took {:?}",
        t0.elapsed()
    );
    println!("notify flood in the sysvinit host: {line}");
}
