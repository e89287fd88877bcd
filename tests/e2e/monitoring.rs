//! `status` as the monitors run it, in one booted Debian 12 with the bot
//! running: as root; as an unprivileged monitoring user (`nagios`) without
//! and with the shipped sudoers example, through the real sudo; and with
//! another unprivileged user (`nobody`) answering on the health port while
//! the bot's own output says a component gave up.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::container::Container;
use super::roots::Suite;
use super::{apt_install, deploy_standin, pkg, CODE};

const ROOT: &str = "jarvisctl";
const EXAMPLE: &str = "/usr/share/doc/jarvis-supervisor/examples/sudoers.d-jarvis-status";

/// `CMD status --json`, CMD being jarvisctl as someone: (exit code, document).
fn json(c: &Container, cmd: &str) -> (i32, Value) {
    let r = c.sh(&format!("{cmd} status --json"));
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.all()));
    assert_eq!(v["exit_code"], r.status, "{v}");
    (r.status, v)
}

/// Human `CMD status`: (exit code, first line without its perfdata, all of
/// stdout).
fn human(c: &Container, cmd: &str) -> (i32, String, String) {
    let r = c.sh(&format!("{cmd} status"));
    let first = r.stdout.lines().next().unwrap_or("");
    let verdict = first.split(" | ").next().unwrap_or("").to_string();
    (r.status, verdict, r.stdout.clone())
}

fn wait<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(x) = f() {
            return x;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn hidden(v: &Value) -> Vec<String> {
    v["not_visible"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| n["what"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A stand-in for whoever takes the port: answers every path with a
/// healthy document naming the stand-in's four components.
const FAKE: &str = r#"import http.server, json, sys
body = json.dumps({"status": "healthy", "components": {n: {"status": "running", "message": ""}
    for n in ("buy_bot", "telegram_bot", "public_trading_bot", "sentiment_bot")}}).encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

pub fn scenario() {
    let c = Container::boot(Suite::Bookworm);
    deploy_standin(&c);
    c.ok(&format!("echo STANDIN_HEALTH_INTERVAL=2 >> {CODE}/.env"));
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "{}", out.all());

    // Root, with the bot's own /health: believed (its listener is jarvis's).
    let root = wait("an OK status read from /health", || {
        let (code, v) = json(&c, ROOT);
        (code == 0 && v["components"]["source"] == "health").then_some(v)
    });
    assert!(
        root["components"]["health_ignored"].is_null(),
        "{}",
        root["components"]
    );
    assert!(
        hidden(&root).is_empty(),
        "root sees everything: {}",
        root["not_visible"]
    );
    let (root_code, root_first, _) = human(&c, ROOT);
    assert_eq!((root_code, root_first.as_str()), (0, "OK"));

    // A monitoring user of its own, in no privileged group.
    c.ok("useradd -r -M -s /usr/sbin/nologin nagios");
    let uid = c.ok("id -u nagios").trim().to_string();
    let as_nagios = "runuser -u nagios -- jarvisctl";
    // Twice: with the code root searchable by others (as the stand-in is
    // deployed), then closed (a home of 0750, as adduser makes it): the
    // venv it cannot look at is unknown, not broken.
    let home_mode = c.ok("stat -c %a /home/jarvis").trim().to_string();
    for closed in [false, true] {
        if closed {
            c.ok("chmod 0750 /home/jarvis");
        }
        let (code, v) = json(&c, as_nagios);
        let seen = hidden(&v);
        let mut expected = vec!["journal", "env-files", "logs"];
        if closed {
            expected.push("code-root");
        }
        for what in expected {
            assert!(
                seen.contains(&what.to_string()),
                "{what} not named: {}",
                v["not_visible"]
            );
        }
        // What it cannot read is unknown, not a zero and not a finding.
        assert_eq!(code, 0, "a false verdict as nagios: {}", v["reasons"]);
        assert!(
            v["reasons"].as_array().is_some_and(Vec::is_empty),
            "{}",
            v["reasons"]
        );
        assert!(v["restarts_24h"].is_null(), "{v}");
        assert!(v["logs"]["size_bytes"].is_null(), "{}", v["logs"]);
        assert!(v["python"]["problem"].is_null(), "{}", v["python"]);
        assert_eq!(v["components"]["source"], "hidden", "{}", v["components"]);
        assert_eq!(v["state"], "active");
        assert!(
            v["main_pid"].as_u64().is_some(),
            "systemctl show is anyone's: {v}"
        );
        let (code, first, text) = human(&c, as_nagios);
        assert_eq!(code, 0, "{text}");
        assert!(first.starts_with("OK (partial view: "), "{text}");
        assert!(
            text.contains(&format!(
                "cannot see the journal as uid {uid} (nagios): run as root or use the sudoers example"
            )),
            "{text}"
        );
        assert!(!text.contains("cannot run"), "{text}");
        // Unknown, said so: never "none" or a count of zero.
        for unknown in [
            "components: not seen",
            "errors: not seen",
            "logs: /home/jarvis/Jarvis/logs: not seen",
        ] {
            assert!(text.contains(unknown), "{unknown}: {text}");
        }
        println!(
            "monitoring: as nagios, home {}:\n{text}",
            if closed { "0750" } else { "as deployed" }
        );
    }
    c.ok(&format!("chmod {home_mode} /home/jarvis"));

    // The shipped sudoers example, checked by the real visudo, then the same
    // verdict as root through sudo -n, and nothing beyond the two commands.
    c.ok(&format!(
        "install -m 0440 {EXAMPLE} /etc/sudoers.d/jarvis-status && visudo -cf /etc/sudoers.d/jarvis-status"
    ));
    let sudo = "runuser -u nagios -- sudo -n /usr/bin/jarvisctl";
    let (code, first, text) = human(&c, sudo);
    let (root_code, root_first, _) = human(&c, ROOT);
    assert_eq!((code, first.as_str()), (root_code, root_first.as_str()), "{text}");
    let (code, v) = json(&c, sudo);
    assert_eq!(
        (code, hidden(&v)),
        (root_code, Vec::new()),
        "{}",
        v["not_visible"]
    );
    let refused = c.sh("runuser -u nagios -- sudo -n /usr/bin/jarvisctl status --ping http://127.0.0.1:9/");
    assert_ne!(
        refused.status,
        0,
        "sudo let other arguments through: {}",
        refused.all()
    );
    let refused = c.sh("runuser -u nagios -- sudo -n /usr/bin/jarvisctl logs");
    assert_ne!(
        refused.status,
        0,
        "sudo let another command through: {}",
        refused.all()
    );

    // The attack: the bot serves no /health, one of its components gives
    // up, and nobody (uid 65534) answers healthy on the health port.
    let unit = "jarvis-supervisor.service";
    let before = c.prop(unit, "MainPID");
    c.ok(&format!(
        "echo 'sentiment_bot give-up' > {CODE}/data/standin-components && echo STANDIN_NO_HTTP=1 >> {CODE}/.env"
    ));
    let restart = c.sh("systemctl restart jarvis-supervisor 2>&1");
    if restart.status != 0 {
        // This host's cgroup v1: systemd now and then cannot place a
        // control process in the unit's cgroup (219/CGROUP), and
        // Restart=always starts it again. Any other failure is one.
        let j = c.ok("journalctl -u jarvis-supervisor -n 30 --no-pager");
        assert!(
            j.contains("status=219/CGROUP"),
            "restart failed:\n{}\n{j}",
            restart.all()
        );
    }
    wait("the bot running again after the restart", || {
        let pid = c.prop(unit, "MainPID");
        (c.prop(unit, "ActiveState") == "active" && pid != before && pid != "0").then_some(())
    });
    c.write("/var/tmp/fake-health.py", FAKE);
    c.ok("setpriv --reuid=nobody --regid=nogroup --clear-groups setsid python3 /var/tmp/fake-health.py 8080 </dev/null >/dev/null 2>&1 &");
    wait("the other user's listener", || {
        c.sh("python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:8080/health\")'")
            .status
            .eq(&0)
            .then_some(())
    });
    let nobody = c.ok("id -u nobody").trim().to_string();
    let v = wait("CRITICAL from the bot's own evidence", || {
        let (code, v) = json(&c, ROOT);
        (code == 2).then_some(v)
    });
    let reasons = v["reasons"].to_string();
    assert!(
        reasons.contains(&format!(
            "port 8080 is held by uid {nobody} (nobody), not jarvis: /health ignored"
        )),
        "the foreign listener is not named: {reasons}"
    );
    assert!(reasons.contains("sentiment_bot"), "{reasons}");
    let comps = &v["components"];
    assert_eq!(
        comps["source"], "journal",
        "the other user's answer was used: {comps}"
    );
    assert!(comps["health"].is_null(), "{comps}");
    let (code, first, text) = human(&c, ROOT);
    assert_eq!(code, 2, "{text}");
    assert!(
        first.starts_with("CRITICAL") && first.contains("held by uid"),
        "{text}"
    );
    println!("monitoring: root {root_first}; nagios sudo -n same; attack: {first}");
}
