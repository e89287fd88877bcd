//! Issue 5, acceptance 1: `jarvisctl status --json` checked field by field
//! against a booted container in each state, with the exit code of each.

use std::time::Duration;

use serde_json::Value;

use super::container::Container;
use super::roots::Suite;
use super::{active, apt_install, deploy_standin, main_pid, output_when, pkg, CODE, UNIT};

const DROPIN: &str = "/etc/systemd/system/jarvis-supervisor.service.d/50-test.conf";
const TOKEN: &str = "123456789:AAFakeTokenForTestsOnly_abcdefghijklmn";

fn status(c: &Container) -> (i32, Value) {
    let r = c.sh("jarvisctl status --json");
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.all()));
    assert_eq!(
        v["exit_code"], r.status,
        "exit_code field and exit status differ: {v}"
    );
    assert_eq!(v["schema"], 2);
    (r.status, v)
}

pub fn states() {
    let c = Container::boot(Suite::Bookworm);

    // Not installed: the helper alone, taken from the package.
    let deb = pkg("JARVIS_DEB");
    let x = c.root.join("var/tmp/x");
    let st = std::process::Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    c.ok("cp /var/tmp/x/usr/bin/jarvisctl /usr/local/bin/jarvisctl");
    let (code, v) = status(&c);
    assert_eq!((code, v["state"].as_str()), (2, Some("not-installed")), "{v}");
    assert_eq!(v["verdict"], "CRITICAL");
    c.ok("rm /usr/local/bin/jarvisctl");

    // Running.
    deploy_standin(&c);
    c.write(
        DROPIN,
        "[Service]\nWatchdogSec=20s\nEnvironment=STANDIN_WATCHDOG_INTERVAL=2\n",
    );
    let out = apt_install(&c, &deb, "");
    assert_eq!(out.status, 0, "{}", out.all());
    c.wait_for("active", Duration::from_secs(60), active);
    c.ok(&format!("echo errtoken > {CODE}/data/standin-mode"));
    c.wait_for("the error line", Duration::from_secs(10), |c| {
        c.ok("journalctl -u jarvis-supervisor -o cat --no-pager")
            .contains("api.telegram.org")
    });
    c.ok(&format!("rm {CODE}/data/standin-mode"));
    std::thread::sleep(Duration::from_secs(3));
    let (code, v) = status(&c);
    assert_eq!(code, 0, "running must be OK: {v}");
    assert_eq!(v["verdict"], "OK");
    assert_eq!(v["state"], "active");
    assert_eq!(v["sub_state"], "running");
    assert_eq!(v["main_pid"].as_u64().map(|p| p.to_string()), Some(main_pid(&c)));
    assert!(v["uptime_s"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["watchdog"]["period_s"], 20.0);
    assert!(
        v["watchdog"]["last_ping_age_s"].as_f64().unwrap() < 5.0,
        "pings every 2 s: {v}"
    );
    assert_eq!(v["memory"]["max_bytes"], 4u64 << 30);
    assert_eq!(v["package_version"], "0.1.0-1");
    assert_eq!(v["logs"]["dir"], "/home/jarvis/Jarvis/logs");
    assert!(v["logs"]["size_bytes"].as_u64().unwrap() > 0);
    assert!(v["disk_free_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["n_restarts"], 0);
    let errors = v["errors"].to_string();
    assert!(
        errors.contains("api.telegram.org/bot****/getMe"),
        "the error line is missing or unmasked: {errors}"
    );
    let human = c.sh("jarvisctl status").all();
    assert!(
        !human.contains(TOKEN) && !v.to_string().contains(TOKEN),
        "the token was printed:\n{human}"
    );
    assert!(human.starts_with("OK"), "{human}");
    // The monitoring-plugin form: perfdata after `|` on the first line.
    let first = human.lines().next().unwrap_or("");
    let perf = first.split_once(" | ").map(|(_, p)| p).unwrap_or("");
    for label in ["memory=", "restarts_24h=", "watchdog_age=", "uptime="] {
        assert!(
            perf.split(' ').any(|i| i.starts_with(label)),
            "no {label} in the perfdata of: {first}"
        );
    }
    println!(
        "running: {}",
        human.lines().take(4).collect::<Vec<_>>().join(" | ")
    );

    // Hung: the pings stop; WARNING once the last one is older than half the period.
    let hung = main_pid(&c);
    c.ok(&format!("echo hang > {CODE}/data/standin-mode"));
    let mut seen = Value::Null;
    c.wait_for("a stale watchdog", Duration::from_secs(20), |c| {
        let (code, v) = status(c);
        seen = v;
        code == 1 && seen["state"] == "active"
    });
    c.ok(&format!("rm {CODE}/data/standin-mode"));
    let age = seen["watchdog"]["last_ping_age_s"].as_f64().unwrap();
    assert!(age > 10.0 && age < 20.0, "{seen}");
    assert!(
        seen["reasons"].to_string().contains("last watchdog ping"),
        "{seen}"
    );
    println!("hung: WARNING, last ping {age:.1} s ago of 20 s");
    // The hung process is still active until the watchdog (20 s after its
    // last ping) kills it: wait for the new one, not for "active".
    c.wait_for("the restart after the watchdog", Duration::from_secs(60), |c| {
        let pid = main_pid(c);
        pid != hung && pid != "0" && active(c)
    });

    // Restarting after kill -9, of the pid read once and checked: a MainPID
    // of 0 (between two runs) would make it `kill -9 0`, the caller's group.
    let pid = main_pid(&c);
    assert!(
        pid.parse::<u32>().is_ok_and(|p| p > 1),
        "no main pid to kill: {pid:?}"
    );
    let restarts_before: u64 = c.prop(UNIT, "NRestarts").parse().unwrap();
    c.ok(&format!("kill -9 {pid}"));
    let mut seen = Value::Null;
    c.wait_for("restarting", Duration::from_secs(10), |c| {
        let (code, v) = status(c);
        seen = v;
        code == 1 && seen["state"] == "restarting"
    });
    assert_eq!(seen["verdict"], "WARNING");
    assert_eq!(seen["crash_loop"]["last_result"], "signal 9 (KILL)", "{seen}");
    let why = seen["reasons"].to_string();
    assert!(why.contains("last result signal 9 (KILL)"), "{seen}");
    assert!(
        !why.to_lowercase().contains("oom"),
        "a kill -9 called OOM: {seen}"
    );
    println!("restarting: WARNING: {}", seen["reasons"]);
    c.wait_for("active again", Duration::from_secs(30), active);
    // check names the kill -9 as a signal, never as OOM, and does not
    // send the operator to raise MemoryMax for it.
    let text = c.sh("jarvisctl check").all();
    let line = text
        .lines()
        .find(|l| l.contains("history: the bot was killed by signal 9 (KILL)"))
        .unwrap_or_else(|| panic!("no kill -9 in check's history:\n{text}"));
    assert!(!line.contains("MemoryMax"), "{line}");
    assert!(!text.contains("killed by the OOM killer"), "{text}");
    println!("check after kill -9: {line}");
    // The counters move when the restart job runs.
    let (code, v) = status(&c);
    assert_eq!(code, 0, "{v}");
    assert!(
        v["n_restarts"].as_u64().unwrap() > restarts_before,
        "{restarts_before} restarts before the kill: {v}"
    );
    assert!(v["restarts_24h"].as_u64().unwrap() >= 1, "{v}");

    // Failed after the crash-loop limit.
    c.write(
        DROPIN,
        "[Unit]\nStartLimitBurst=3\n[Service]\nEnvironment=STANDIN_MODE=exit1\n",
    );
    c.ok(&format!(
        "systemctl daemon-reload; systemctl reset-failed {UNIT}; systemctl restart {UNIT} || true"
    ));
    c.wait_for("failed", Duration::from_secs(60), |c| {
        c.prop(UNIT, "ActiveState") == "failed"
    });
    let (code, v) = status(&c);
    assert_eq!(code, 2, "{v}");
    assert_eq!(v["state"], "failed");
    assert_eq!(v["verdict"], "CRITICAL");
    assert!(
        v["reasons"].to_string().contains("failed (result: exit-code)"),
        "{v}"
    );
    println!("failed after the limit: CRITICAL: {}", v["reasons"]);
}

/// Issue 5, acceptance 3: the health timer records samples, and `--trend`
/// reports a known leak rate within 20% and flags it.
pub fn trend() {
    let c = Container::boot(Suite::Bookworm);
    deploy_standin(&c);
    // 1 MiB a second from READY on: 3600 MiB an hour.
    c.ok(&format!(
        "printf 'STANDIN_MODE=leak\\nSTANDIN_LEAK_MB_PER_S=1\\n' >> {CODE}/.env"
    ));
    // The shipped timer fires every 5 minutes; here every 3 seconds.
    c.write(
        "/etc/systemd/system/jarvis-supervisor-health.timer.d/50-test.conf",
        "[Timer]\nOnBootSec=\nOnUnitActiveSec=\nOnActiveSec=1s\nOnUnitActiveSec=3s\nAccuracySec=100ms\n",
    );
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "{}", out.all());
    c.wait_for("active", Duration::from_secs(60), active);
    assert_eq!(
        c.ok("systemctl is-enabled jarvis-supervisor-health.timer").trim(),
        "enabled"
    );
    assert_eq!(
        c.ok("systemctl is-active jarvis-supervisor-health.timer").trim(),
        "active"
    );
    // Only samples of the leaking process, for at least 30 s: the timer's
    // runs are waited for, not counted on in a fixed time (a loaded machine
    // runs them late).
    c.ok("rm -f /var/lib/jarvis-supervisor/samples.jsonl");
    let t_wait = std::time::Instant::now();
    let with_rss = |samples: &str| -> Vec<(f64, f64)> {
        samples
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| Some((v["t"].as_f64()?, v["rss"].as_f64()?)))
            .collect()
    };
    let samples = output_when(
        &c,
        "cat /var/lib/jarvis-supervisor/samples.jsonl",
        Duration::from_secs(120),
        |s| {
            let pts = with_rss(s);
            pts.len() >= 8 && pts[pts.len() - 1].0 - pts[0].0 >= 30.0
        },
    );
    let waited = t_wait.elapsed().as_secs_f64();
    let n = samples
        .lines()
        .filter(|l| l.contains("\"rss\":") && !l.contains("\"rss\":null"))
        .count();
    assert!(
        n >= 8,
        "the timer recorded {n} samples with memory in {waited:.0} s:\n{samples}"
    );
    // The sampler measured the leak: the memory grew at about its rate.
    let pts = with_rss(&samples);
    let ((t0, m0), (t1, m1)) = (pts[0], pts[pts.len() - 1]);
    let measured = (m1 - m0) / (1u64 << 20) as f64 / ((t1 - t0) / 3600.0);
    assert!(
        (2880.0..=4320.0).contains(&measured),
        "the samples show {measured:.0} MiB/hour, not within 20% of 3600"
    );
    // Under a minute of history is not a trend: no slope, no extrapolation, and the
    // minimum said; each window is drawn from its own samples.
    let r = c.sh("jarvisctl status --trend --json");
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()));
    println!(
        "trend: {n} samples over {:.0} s, {measured:.0} MiB/hour sampled for a 3600 MiB/hour leak; {v}",
        t1 - t0
    );
    assert_eq!(v["slope_24h_mib_per_hour"], Value::Null, "{v}");
    assert_eq!(v["slope_7d_mib_per_hour"], Value::Null, "{v}");
    assert_eq!(v["flagged"], false, "{v}");
    let day = &v["windows"][0];
    assert_eq!(
        (day["name"].as_str(), day["enough"].as_bool()),
        (Some("24h"), Some(false)),
        "{v}"
    );
    assert!(day["samples"].as_u64().unwrap() >= 8, "{v}");
    assert!(
        day["memory_bytes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_u64().is_some()),
        "{v}"
    );
    assert_eq!(r.status, 3, "too few samples to tell is UNKNOWN");
    let human = c.sh("jarvisctl status --trend").stdout;
    println!("{human}");
    assert!(
        human.contains("last 24 h (") && human.contains("last 7 days (") && human.contains("  memory "),
        "{human}"
    );
    assert!(
        human.contains("too few samples to extrapolate (") && human.contains("need at least 12 over 60 min)"),
        "{human}"
    );
    assert!(!human.contains("MiB/hour"), "{human}");
}

/// Issue 5, acceptance 6: the weekly restart timer, set to a near-future
/// time, restarts the running service exactly once, never starts a stopped
/// one, and does nothing once turned off.
pub fn weekly_restart() {
    let c = Container::boot(Suite::Bookworm);
    deploy_standin(&c);
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "{}", out.all());
    c.wait_for("active", Duration::from_secs(60), active);
    let (_, v) = status(&c);
    assert_eq!(
        v["weekly_restart"]["enabled"], false,
        "the weekly restart must be off by default: {v}"
    );
    let human = c.sh("jarvisctl status").stdout;
    assert!(human.contains("\nweekly restart: off ("), "{human}");
    // No stagger in the test; the shipped timer has RandomizedDelaySec=30min.
    c.write(
        "/etc/systemd/system/jarvis-supervisor-restart.timer.d/60-test.conf",
        "[Timer]\nRandomizedDelaySec=0\nAccuracySec=1s\n",
    );
    let soon = |c: &Container, secs: u32| {
        c.ok(&format!("date -d '+{secs} sec' '+%Y-%m-%d %H:%M:%S'"))
            .trim()
            .to_string()
    };
    let fired = |c: &Container| {
        c.ok("journalctl -u jarvis-supervisor-restart -o cat --no-pager | grep -c 'Finished' || true")
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
    };

    // Running: restarted exactly once.
    let pid = main_pid(&c);
    let at = soon(&c, 15);
    let out = c.ok(&format!("jarvisctl configure --weekly-restart '{at}'"));
    assert!(out.contains("weekly restart on"), "{out}");
    let (_, v) = status(&c);
    assert_eq!(v["weekly_restart"]["enabled"], true, "{v}");
    assert!(
        v["weekly_restart"]["next"]
            .as_str()
            .is_some_and(|n| !n.is_empty()),
        "status does not say when: {v}"
    );
    let human = c.sh("jarvisctl status").stdout;
    let next = v["weekly_restart"]["next"].as_str().unwrap_or_default();
    assert!(
        human.contains(&format!(
            "\nweekly restart: next {next} (jarvis-supervisor-restart.timer)\n"
        )),
        "{human}"
    );
    c.wait_for("the scheduled restart", Duration::from_secs(60), |c| {
        main_pid(c) != pid && active(c)
    });
    let after = main_pid(&c);
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(main_pid(&c), after, "restarted more than once");
    assert_eq!(fired(&c), 1);

    // Stopped: the timer fires, the bot stays stopped.
    c.ok(&format!("systemctl stop {UNIT}"));
    let at = soon(&c, 10);
    c.ok(&format!("jarvisctl configure --weekly-restart '{at}'"));
    c.wait_for("the timer to fire", Duration::from_secs(40), |c| fired(c) == 2);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.prop(UNIT, "ActiveState"),
        "inactive",
        "the timer started a stopped bot"
    );

    // Off: nothing restarts.
    c.ok(&format!("systemctl start {UNIT}"));
    c.wait_for("active", Duration::from_secs(60), active);
    let pid = main_pid(&c);
    let at = soon(&c, 10);
    c.ok(&format!("jarvisctl configure --weekly-restart '{at}'"));
    let out = c.ok("jarvisctl configure --weekly-restart off");
    assert!(out.contains("weekly restart off"), "{out}");
    std::thread::sleep(Duration::from_secs(20));
    assert_eq!(main_pid(&c), pid, "restarted although turned off");
    assert_eq!(fired(&c), 2);
    assert_eq!(
        c.sh("systemctl is-enabled jarvis-supervisor-restart.timer")
            .stdout
            .trim(),
        "disabled"
    );
    let bad = c.sh("jarvisctl configure --weekly-restart 'Someday 25:00'");
    assert_eq!(bad.status, 1);
    assert!(
        bad.stderr.contains("is not a systemd calendar spec"),
        "{}",
        bad.all()
    );
    println!("weekly restart: restarted once when due, left a stopped bot alone, nothing after off");
}

/// Issue 5, acceptance 4 in a booted host: the health timer's service pings
/// the URL in heartbeat.conf (its sandbox lets it), with the verdict in the
/// path, and a server that is down leaves the service and the sample intact.
pub fn heartbeat() {
    let c = Container::boot(Suite::Bookworm);
    deploy_standin(&c);
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "{}", out.all());
    c.wait_for("active", Duration::from_secs(60), active);
    // The timer would ping on its own schedule; here each run is started by hand.
    c.ok("systemctl stop jarvis-supervisor-health.timer");
    c.write(
        "/var/tmp/hc.py",
        "import http.server\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       with open('/var/tmp/pings', 'a') as f:\n\
         \x20           f.write(self.path + '\\n')\n\
         \x20       self.send_response(200)\n\
         \x20       self.end_headers()\n\
         \x20       self.wfile.write(b'OK')\n\
         \x20   def log_message(self, *a):\n\
         \x20       pass\n\
         http.server.HTTPServer(('127.0.0.1', 18099), H).serve_forever()\n",
    );
    c.ok("systemd-run --unit=test-hc --collect python3 /var/tmp/hc.py");
    c.wait_for("the test's HTTP server", Duration::from_secs(10), |c| {
        c.sh("bash -c 'exec 3<>/dev/tcp/127.0.0.1/18099'").status == 0
    });
    c.write(
        "/etc/jarvis-supervisor/heartbeat.conf",
        "url = http://127.0.0.1:18099/check-uuid\n",
    );
    let run_timer = |c: &Container| {
        c.ok("systemctl start jarvis-supervisor-health.service");
        assert_eq!(c.prop("jarvis-supervisor-health.service", "Result"), "success");
        c.sh("cat /var/tmp/pings").stdout
    };
    let (code, v) = status(&c);
    assert_eq!(code, 0, "{v}");
    assert_eq!(run_timer(&c), "/check-uuid\n", "OK pings the bare URL");

    c.ok("systemctl stop jarvis-supervisor");
    let (code, _) = status(&c);
    assert_eq!(code, 2);
    assert_eq!(
        run_timer(&c),
        "/check-uuid\n/check-uuid/2\n",
        "CRITICAL pings URL/2"
    );

    // The server is gone: the run still succeeds and records its sample.
    c.ok("systemctl stop test-hc");
    let before = c.ok("wc -l < /var/lib/jarvis-supervisor/samples.jsonl");
    let t0 = std::time::Instant::now();
    run_timer(&c);
    let took = t0.elapsed();
    let after = c.ok("wc -l < /var/lib/jarvis-supervisor/samples.jsonl");
    assert_eq!(
        after.trim().parse::<u32>().unwrap(),
        before.trim().parse::<u32>().unwrap() + 1
    );
    // The run's output reaches the journal through journald, which may read
    // it after `systemctl start` returns.
    let failed = "heartbeat: ping to http://127.0.0.1:18099/…/2 failed";
    let journal = output_when(
        &c,
        "journalctl -u jarvis-supervisor-health.service -o cat --no-pager",
        Duration::from_secs(30),
        |j| j.contains(failed),
    );
    assert!(journal.contains(failed), "{journal}");
    assert!(
        !journal.contains("check-uuid"),
        "the URL's secret path leaked:\n{journal}"
    );
    assert!(took < Duration::from_secs(10), "a refused ping took {took:?}");
    println!("heartbeat: OK and CRITICAL pinged; with the server down the timer run took {took:?}");
}

/// A bot that cannot start, on each engine (one boot each): first with no
/// code and no `.env`, where `status` names the preflight's cause; then
/// with code that fails at start, where it is a crash loop with the bot's
/// own last line (a `.env` value in it masked), its restarts, and CRITICAL
/// once down more than half of the window (`--crash-window`).
pub fn crash_loop(suite: Suite) {
    let c = Container::boot(suite);
    let systemd = suite != Suite::Sysvinit;
    let name = suite.name();
    let json = |c: &Container, args: &str| -> (i32, Value, String) {
        let r = c.sh(&format!("jarvisctl status --json {args}"));
        let v: Value =
            serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.all()));
        assert_eq!(v["exit_code"], r.status, "{v}");
        let human = c.sh(&format!("jarvisctl status {args}")).stdout;
        (r.status, v, human)
    };
    let crash_reason = |v: &Value| -> Option<String> {
        v["reasons"]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .find(|r| {
                r.contains("crash loop") || r.contains("preflight fails") || r.starts_with("restarting")
            })
            .map(String::from)
    };
    // Installed with neither code nor .env: the postinst does not start it.
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "{}", out.all());
    let start = if systemd {
        format!("systemctl start --no-block {UNIT}")
    } else {
        "service jarvis-supervisor start".to_string()
    };
    let restart = if systemd {
        format!("systemctl restart --no-block {UNIT}")
    } else {
        "service jarvis-supervisor restart".to_string()
    };
    c.sh(&start);
    let mut seen = (0, Value::Null, String::new());
    c.wait_for("the preflight's cause in status", Duration::from_secs(30), |c| {
        seen = json(c, "");
        seen.1["crash_loop"]["preflight"].is_string()
    });
    let why = crash_reason(&seen.1).unwrap_or_else(|| panic!("{}", seen.1));
    assert!(why.starts_with("not starting: its preflight fails: "), "{why}");
    assert!(!why.contains("success"), "{why}");
    println!(
        "{name}: no code, no .env: {}",
        seen.2.lines().next().unwrap_or("")
    );

    // Code that fails at start; "configured" is a .env value, so masked.
    // (The install made an empty bots/: the copy goes into a fresh one.)
    c.ok(&format!("rm -rf {CODE}/bots"));
    deploy_standin(&c);
    c.ok(&format!(
        "printf 'STANDIN_MODE=exit1\\nSTANDIN_NOTE=configured\\n' >> {CODE}/.env; chown -R jarvis:jarvis {CODE}; jarvisctl setup"
    ));
    // A restart: the backoff of the failed preflights starts over.
    c.ok(&restart);
    let t0 = std::time::Instant::now();
    loop {
        seen = json(&c, "");
        if seen.1["crash_loop"]["restarts_in_window"].as_u64() >= Some(2)
            && seen.1["crash_loop"]["preflight"].is_null()
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "{name}: no crash loop in 40 s; status said:\n{}\n{}",
            seen.2,
            c.sh("tail -n 20 /home/jarvis/Jarvis/logs/supervisor.stdout /run/jarvis-supervisor-run/engine.log; journalctl -n 30 --no-pager").all()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (code, v, human) = seen.clone();
    assert_eq!(code, 1, "{v}");
    let why = crash_reason(&v).unwrap_or_else(|| panic!("{v}"));
    assert!(why.starts_with("crash loop: "), "{why}");
    assert!(why.contains("last result exit-code, status 1"), "{why}");
    assert!(
        why.contains("its last line: standin: **** to fail at start"),
        "{why}"
    );
    assert!(
        why.contains("(CRITICAL once down more than 5 min of the last 10 min)"),
        "{why}"
    );
    assert_eq!(
        v["crash_loop"]["last_error"], "standin: **** to fail at start",
        "{v}"
    );
    assert_eq!(v["crash_loop"]["critical_after_down_s"], 300.0, "{v}");
    // The true last result, never systemd's "success" of the start under way.
    assert_eq!(v["result"], "exit-code", "{v}");
    assert!(
        !human.contains("configured"),
        "an .env value was printed:\n{human}"
    );
    assert!(!human.contains("last result success"), "{human}");
    // Down more than half of a 20 s window: CRITICAL.
    c.wait_for("CRITICAL", Duration::from_secs(40), |c| {
        seen = json(c, "--crash-window 20");
        seen.0 == 2
    });
    let (_, v, human) = seen;
    let why = crash_reason(&v).unwrap_or_else(|| panic!("{v}"));
    assert!(
        why.contains("(CRITICAL: down more than 10 s of the last 20 s)"),
        "{why}"
    );
    assert_eq!(v["verdict"], "CRITICAL");
    assert_eq!(v["crash_loop"]["critical_after_down_s"], 10.0, "{v}");
    let first = human.lines().next().unwrap_or("");
    assert!(
        first.starts_with("CRITICAL: ") && first.contains("standin: **** to fail at start"),
        "{human}"
    );
    println!("{name}: crash loop: {first}");
    if systemd {
        // PID 1's own lines that status read, as they are on this systemd.
        println!(
            "{name}: PID 1 said:\n{}",
            c.ok(&format!(
                "journalctl _PID=1 UNIT={UNIT} -o cat --no-pager | tail -n 6"
            ))
        );
    }
}
