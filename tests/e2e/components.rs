//! Issue 15, acceptance 1 and the components part of 2 and 3: `status`
//! judges the bot's components, not only its process, on both engines at
//! once (a systemd Debian 12 and a sysvinit Debian 12). The stand-in runs
//! four components and reports them as the real program does (a record
//! every STANDIN_HEALTH_INTERVAL s, crash and give-up lines, /health);
//! `data/standin-components` sets each one's fate.

use std::time::Duration;

use serde_json::Value;

use super::container::Container;
use super::roots::Suite;
use super::{apt_install, deploy_standin, on_suites, pkg, polled, CODE};

/// (exit code, JSON, first human line).
fn status(c: &Container, extra: &str) -> (i32, Value, String) {
    let r = c.sh(&format!("jarvisctl status --json {extra}"));
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.all()));
    assert_eq!(v["exit_code"], r.status, "{v}");
    let human = c.sh(&format!("jarvisctl status {extra}"));
    let first = human.stdout.lines().next().unwrap_or("").to_string();
    (r.status, v, first)
}

fn perf<'a>(first: &'a str, label: &str) -> &'a str {
    first
        .split_once(" | ")
        .and_then(|(_, p)| p.split(' ').find(|i| i.starts_with(&format!("{label}="))))
        .unwrap_or_else(|| panic!("no {label} in the perfdata of: {first}"))
}

fn component<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["components"]["list"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no component {name} in {}", v["components"]))
}

fn wait_code(c: &Container, want: i32, extra: &str, what: &str) -> (Value, String) {
    let t0 = std::time::Instant::now();
    loop {
        let (code, v, first) = status(c, extra);
        if code == want {
            return (v, first);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{what}: status stayed {code}, not {want}: {first}\n{v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The textfile read by prometheus_client's parser (from the tools venv):
/// {family: {component label or "": value}}; a parse error fails the test.
fn parse_metrics(text: &str) -> Value {
    let bin = std::env::var_os("JARVIS_PY_BIN")
        .map(std::path::PathBuf::from)
        .expect("$JARVIS_PY_BIN is not set: run through `cargo xtask test`, which installs prometheus-client under target/py");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("metrics.prom");
    std::fs::write(&f, text).unwrap();
    let out = std::process::Command::new(bin.join("python"))
        .arg("-c")
        .arg(
            "import json, sys\n\
             from prometheus_client.parser import text_string_to_metric_families as parse\n\
             out = {}\n\
             for fam in parse(open(sys.argv[1]).read()):\n\
             \x20   for s in fam.samples:\n\
             \x20       out.setdefault(s.name, {})[s.labels.get('component', '')] = s.value\n\
             print(json.dumps(out))",
        )
        .arg(&f)
        .output()
        .expect("the tools venv's python");
    assert!(
        out.status.success(),
        "prometheus_client rejected the textfile: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn restart(c: &Container, suite: Suite) {
    if suite.has_systemd() {
        c.ok("systemctl restart jarvis-supervisor");
    } else {
        c.ok("service jarvis-supervisor restart");
    }
}

fn scenario(suite: Suite) {
    let name = suite.name();
    let c = Container::boot(suite);
    deploy_standin(&c);
    c.ok(&format!("echo STANDIN_HEALTH_INTERVAL=2 >> {CODE}/.env"));
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "{name}: {}", out.all());

    // Healthy: all four running, read from /health.
    let (v, first) = wait_code(&c, 0, "", "healthy");
    let comps = &v["components"];
    assert_eq!(comps["source"], "health", "{name}: {comps}");
    assert_eq!(
        (comps["running"].as_u64(), comps["total"].as_u64()),
        (Some(4), Some(4)),
        "{name}: {comps}"
    );
    assert_eq!(
        perf(&first, "components_running"),
        "components_running=4;;;0;4",
        "{name}"
    );
    assert_eq!(
        perf(&first, "components_failed"),
        "components_failed=0;;1;0;4",
        "{name}"
    );
    // The program's own /metrics, beside our textfile (docs/monitoring.md, Prometheus).
    let own = c.ok("python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://127.0.0.1:8080/metrics\").read().decode())'");
    assert!(
        own.contains("jarvis_component_status{component=\"buy_bot\"} 2"),
        "{name}: {own}"
    );

    // One component crashing in a loop: WARNING, in every form.
    c.ok(&format!(
        "echo 'buy_bot crash-loop' > {CODE}/data/standin-components"
    ));
    let (v, first) = wait_code(&c, 1, "", "a crash loop");
    assert!(
        first.starts_with("WARNING") && first.contains("buy_bot"),
        "{name}: {first}"
    );
    assert_eq!(
        perf(&first, "components_running"),
        "components_running=3;;;0;4",
        "{name}"
    );
    let b = component(&v, "buy_bot");
    assert_eq!(b["state"], "restarting", "{name}: {b}");
    assert_eq!(v["verdict"], "WARNING");
    // The crash count and the last error come from the crash lines.
    let (_, v, _) = {
        let t0 = std::time::Instant::now();
        loop {
            let r = status(&c, "");
            if component(&r.1, "buy_bot")["crashes_1h"].as_u64().unwrap_or(0) >= 3
                || t0.elapsed() > Duration::from_secs(30)
            {
                break r;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let b = component(&v, "buy_bot");
    assert!(b["crashes_1h"].as_u64().unwrap_or(0) >= 3, "{name}: {b}");
    assert_eq!(b["last_error"], "simulated failure of buy_bot", "{name}: {b}");
    assert!(
        v["reasons"].to_string().contains("crashing (warn at 3/h)"),
        "{name}: {}",
        v["reasons"]
    );
    let human = c.sh("jarvisctl status").stdout;
    assert!(
        human.contains("components: 3/4 running (from /health") && human.contains("  buy_bot: restarting"),
        "{name}: {human}"
    );

    // Prometheus: the health timer's run writes the textfile atomically;
    // the reference parser (prometheus_client) accepts it.
    c.ok("mkdir -p /var/lib/prom-test");
    c.ok("JARVIS_TEXTFILE_DIR=/var/lib/prom-test jarvisctl status --record");
    let metrics = parse_metrics(&c.ok("cat /var/lib/prom-test/jarvis_supervisor.prom"));
    assert_eq!(
        metrics["jarvis_supervisor_components_running"][""], 3.0,
        "{name}: {metrics}"
    );
    assert_eq!(
        metrics["jarvis_supervisor_component_up"]["buy_bot"], 0.0,
        "{name}: {metrics}"
    );
    assert_eq!(
        metrics["jarvis_supervisor_component_up"]["telegram_bot"], 1.0,
        "{name}: {metrics}"
    );
    assert_eq!(metrics["jarvis_supervisor_verdict"][""], 1.0, "{name}: {metrics}");
    // Prometheus' conventions: the version as an info metric, restarts as a
    // counter, the start as a unix time, the record's own time.
    assert_eq!(metrics["jarvis_supervisor_info"][""], 1.0, "{name}: {metrics}");
    assert!(
        metrics["jarvis_supervisor_restarts_total"][""].is_f64(),
        "{name}: {metrics}"
    );
    let now = c.ok("date +%s").trim().parse::<f64>().unwrap();
    let started = metrics["jarvis_supervisor_start_time_seconds"][""]
        .as_f64()
        .unwrap_or_else(|| panic!("{name}: no start time: {metrics}"));
    let written = metrics["jarvis_supervisor_last_record_timestamp_seconds"][""]
        .as_f64()
        .unwrap_or_else(|| panic!("{name}: no record time: {metrics}"));
    assert!(
        started <= now && now - started < 600.0 && (now - written).abs() < 60.0,
        "{name}: started {started}, written {written}, now {now}"
    );
    for gone in [
        "jarvis_supervisor_restarts_24h",
        "jarvis_supervisor_uptime_seconds",
    ] {
        assert!(metrics.get(gone).is_none(), "{name}: {gone} is back: {metrics}");
    }
    if suite.has_systemd() {
        // The shipped health unit, sandboxed, writes to node_exporter's
        // default directory when it exists.
        c.ok(
            "mkdir -p /var/lib/prometheus/node-exporter && systemctl start jarvis-supervisor-health.service",
        );
        let shipped = parse_metrics(&c.ok("cat /var/lib/prometheus/node-exporter/jarvis_supervisor.prom"));
        assert_eq!(shipped["jarvis_supervisor_up"][""], 1.0, "{name}: {shipped}");
    }

    // One gives up, and /health is off: CRITICAL, read from the record in
    // the journal (systemd) or the captured output (jarvisctl run).
    c.ok(&format!(
        "echo 'sentiment_bot give-up' >> {CODE}/data/standin-components; echo STANDIN_NO_HTTP=1 >> {CODE}/.env"
    ));
    restart(&c, suite);
    let (v, first) = wait_code(&c, 2, "", "a component that gave up");
    let source = if suite.has_systemd() { "journal" } else { "output" };
    assert_eq!(v["components"]["source"], source, "{name}: {}", v["components"]);
    assert!(
        first.starts_with("CRITICAL") && first.contains("gave up after their restarts: sentiment_bot"),
        "{name}: {first}"
    );
    assert_eq!(
        perf(&first, "components_failed"),
        "components_failed=1;;1;0;4",
        "{name}"
    );
    assert_eq!(component(&v, "sentiment_bot")["gave_up"], true, "{name}");
    assert!(
        v["components"]["age_s"].as_f64().is_some_and(|a| a < 30.0),
        "{name}: {}",
        v["components"]
    );

    // A stale record: the bot's loop hangs, no record comes; past three
    // intervals (given with --record-interval) it is CRITICAL for that.
    c.ok(&format!(
        "rm {CODE}/data/standin-components; echo hang > {CODE}/data/standin-mode"
    ));
    // Three intervals of 2 s without a record: waited for (30 s at most),
    // since the hang itself comes within a second or so, later under load.
    let stale = |(code, v, _): &(i32, Value, String)| {
        *code == 2
            && v["reasons"]
                .to_string()
                .contains("the newest component record is")
    };
    let (code, v, first) = polled(
        Duration::from_secs(30),
        || status(&c, "--record-interval 2"),
        stale,
    );
    assert_eq!(code, 2, "{name}: {first}\n{v}");
    assert!(
        v["reasons"]
            .to_string()
            .contains("the newest component record is"),
        "{name}: {}",
        v["reasons"]
    );
    // Thresholds are shown, and a bad one is UNKNOWN.
    assert!(
        c.sh("jarvisctl status --record-interval 2")
            .stdout
            .contains("no record for 6 s"),
        "{name}"
    );
    let bad = c.sh("jarvisctl status -w 0");
    assert_eq!(bad.status, 3, "{name}: {}", bad.all());
    c.ok(&format!("rm -f {CODE}/data/standin-mode"));
    println!("{name}: healthy 4/4 (health), crash loop WARNING, give-up CRITICAL ({source}), stale record CRITICAL: {first}");
}

pub fn both_engines() {
    on_suites(&[Suite::Bookworm, Suite::Sysvinit], scenario);
}
