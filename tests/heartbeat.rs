//! Issue 5, acceptance 4 (layer 1): the heartbeat ping against HTTP servers
//! started here on loopback: the path carries the verdict, a server that is
//! down never changes the check's result. (The tries against a silent or
//! failing server, with their time bound, are unit tests of
//! src/heartbeat.rs, with tries short enough for a test; the OK path from
//! the health timer is proven in a booted container: e2e
//! `heartbeat_timer_pings_ok_and_failure`.)

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "5a0c7d3e-check-uuid";

/// A one-thread HTTP server on 127.0.0.1 that answers 200; records each
/// request's path.
struct Server {
    port: u16,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = paths.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut s) = conn else { continue };
                let mut line = String::new();
                let _ = BufReader::new(&s).read_line(&mut line);
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(path);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
                );
            }
        });
        Server { port, paths }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/{SECRET}", self.port)
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

/// A loopback port with nothing listening.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn status(root: &Path, args: &[&str]) -> (Output, Duration) {
    let t0 = Instant::now();
    let out = Command::new(BIN)
        .arg("--root")
        .arg(root)
        .arg("status")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (out, t0.elapsed())
}

/// The path a check that exited `code` must ping.
fn expected(code: i32) -> String {
    if code == 0 {
        format!("/{SECRET}")
    } else {
        format!("/{SECRET}/{code}")
    }
}

#[test]
fn ping_path_carries_the_exit_code_and_the_secret_is_never_printed() {
    let root = tempfile::tempdir().unwrap();
    let srv = Server::start();
    let (out, _) = status(root.path(), &["--json", "--ping", &srv.url()]);
    let code = out.status.code().unwrap();
    // Without a unit in this root and without systemd the check cannot be OK.
    assert_ne!(code, 0, "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(v["exit_code"], code, "the ping does not change the result");
    assert_eq!(srv.paths(), [expected(code)]);
    assert!(!text(&out).contains(SECRET), "{}", text(&out));
}

#[test]
fn a_server_that_is_down_changes_nothing_and_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let (plain, _) = status(root.path(), &["--json"]);
    let url = format!("http://127.0.0.1:{}/{SECRET}", closed_port());
    let (out, took) = status(root.path(), &["--json", "--ping", &url]);
    assert_eq!(out.status.code(), plain.status.code());
    let json = |o: &Output| serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("status JSON");
    assert_eq!(json(&out)["verdict"], json(&plain)["verdict"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("heartbeat: ping to http://127.0.0.1:")
            && err.contains("failed")
            && err.contains("unchanged"),
        "{err}"
    );
    assert!(!err.contains(SECRET), "{err}");
    // Three attempts, a second apart, each refused at once.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    println!("server down: {took:?}");
}

#[test]
fn the_timer_run_pings_the_url_in_the_conffile() {
    let root = tempfile::tempdir().unwrap();
    let srv = Server::start();
    let conf = root.path().join("etc/jarvis-supervisor");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("heartbeat.conf"),
        format!("# set by the test\nurl = {}\n", srv.url()),
    )
    .unwrap();
    let samples = root.path().join("samples.jsonl");
    let (out, _) = status(root.path(), &["--record", "--samples", samples.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the timer's run succeeds: {}",
        text(&out)
    );
    let (check, _) = status(root.path(), &["--json"]);
    assert_eq!(srv.paths(), [expected(check.status.code().unwrap())]);
    assert!(samples.is_file());

    // Only the timer's run pings from the conffile: a person running
    // status does not keep a dead timer's check alive.
    assert_eq!(srv.paths().len(), 1);

    // A broken conffile is named, the sample is still recorded, nothing is sent.
    std::fs::write(conf.join("heartbeat.conf"), "url https://hc-ping.com/x\n").unwrap();
    let (out, _) = status(root.path(), &["--record", "--samples", samples.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&samples).unwrap().lines().count(), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("heartbeat.conf:1:") && err.contains("no ping sent"),
        "{err}"
    );
    assert_eq!(srv.paths().len(), 1);
}

/// Uptime Kuma's push monitor takes its verdict in the query string; a
/// path suffix (`/2`) would answer 404. The URL as its page shows it.
#[test]
fn an_uptime_kuma_push_url_gets_status_and_msg_in_its_query() {
    let root = tempfile::tempdir().unwrap();
    let srv = Server::start();
    let url = format!(
        "http://127.0.0.1:{}/api/push/{SECRET}?status=up&msg=OK&ping=",
        srv.port
    );
    let (out, _) = status(root.path(), &["--json", "--ping", &url]);
    let code = out.status.code().unwrap();
    assert_ne!(code, 0, "{}", text(&out));
    let word = ["OK", "WARNING", "CRITICAL", "UNKNOWN"][code as usize];
    assert_eq!(
        srv.paths(),
        [format!("/api/push/{SECRET}?status=down&msg={word}&ping=")]
    );
    assert!(!text(&out).contains(SECRET), "{}", text(&out));

    // The conffile can name the kind for a URL the rule would not know.
    let other = Server::start();
    let conf = root.path().join("etc/jarvis-supervisor");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("heartbeat.conf"),
        format!(
            "url = http://127.0.0.1:{}/push/{SECRET}\nkind = uptime-kuma\n",
            other.port
        ),
    )
    .unwrap();
    let samples = root.path().join("samples.jsonl");
    let (out, _) = status(root.path(), &["--record", "--samples", samples.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let paths = other.paths();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(
        paths[0].starts_with(&format!("/push/{SECRET}?status=")) && paths[0].ends_with("&ping="),
        "{paths:?}"
    );
}

/// Issue 27, item 10: a bad line in heartbeat.conf (a typo, a pasted URL
/// with its secret, a byte that is not text) must not cost the give-up page:
/// `alert` pings /fail and runs on_failure from the good lines, names each
/// bad line by file:line without quoting it, and only then exits non-zero.
#[test]
fn alert_runs_every_hook_despite_bad_lines_in_the_conffile() {
    let root = tempfile::tempdir().unwrap();
    let srv = Server::start();
    let conf_dir = root.path().join("etc/jarvis-supervisor");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let marker = root.path().join("paged");
    let mut conf = Vec::new();
    conf.extend_from_slice(b"# the operator's file\n");
    conf.extend_from_slice(format!("url = {}\n", srv.url()).as_bytes());
    // 3: a pasted URL without a key (its secret must not be echoed).
    conf.extend_from_slice(b"https://hc-ping.com/PASTED-SECRET-uuid\n");
    // 4: a line that is not UTF-8.
    conf.extend_from_slice(b"kind = \xff\xfe\n");
    // 5: a typo in a key.
    conf.extend_from_slice(b"on_falure = echo typo\n");
    conf.extend_from_slice(
        format!(
            "on_failure = echo \"$JARVIS_ALERT_REASON\" > {}\n",
            marker.display()
        )
        .as_bytes(),
    );
    std::fs::write(conf_dir.join("heartbeat.conf"), conf).unwrap();
    let out = Command::new(BIN)
        .arg("--root")
        .arg(root.path())
        .args(["alert", "--reason", "engine gave up"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let all = text(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    // Every hook ran.
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "engine gave up\n",
        "on_failure did not run: {all}"
    );
    assert_eq!(srv.paths(), [format!("/{SECRET}/fail")], "{all}");
    // Each bad line is named by file:line, with what to write.
    for n in [3, 4, 5] {
        assert!(
            err.contains(&format!("heartbeat.conf:{n}:")),
            "line {n} not named: {err}"
        );
    }
    assert!(err.contains("unknown key \"on_falure\""), "{err}");
    assert!(err.contains("note: "), "{err}");
    // Never the secrets, never the unparsable line.
    assert!(!all.contains(SECRET) && !all.contains("PASTED-SECRET"), "{all}");
    // Non-zero, after trying everything: the file is wrong (2).
    assert_eq!(out.status.code(), Some(2), "{all}");
}

/// Makes named instance `name` in the tree at `root`, as `instance add`
/// records it (its drop-in), with its heartbeat file holding `conf`.
fn named_instance(root: &Path, name: &str, conf: Option<&str>) {
    let dropin = root.join(format!("etc/systemd/system/jarvis-supervisor@{name}.service.d"));
    std::fs::create_dir_all(&dropin).unwrap();
    std::fs::write(dropin.join("50-jarvisctl-instance.conf"), "[Service]\n").unwrap();
    if let Some(conf) = conf {
        let dir = root.join("etc/jarvis-supervisor");
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join(format!("heartbeat@{name}.conf"));
        std::fs::write(&f, conf).unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    }
}

/// Issue 26: each instance has its own heartbeat. The timer's run pings the
/// default's URL with the default's verdict and each named instance's URL
/// (heartbeat@NAME.conf) with that instance's verdict; an instance without
/// a file sends nothing, and the textfile has every instance's series.
#[test]
fn the_timer_run_pings_each_instances_own_url_with_its_own_verdict() {
    let root = tempfile::tempdir().unwrap();
    let default = Server::start();
    let alpha = Server::start();
    let conf = root.path().join("etc/jarvis-supervisor");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("heartbeat.conf"), format!("url = {}\n", default.url())).unwrap();
    named_instance(
        root.path(),
        "alpha",
        Some(&format!("url = http://127.0.0.1:{}/alpha-{SECRET}\n", alpha.port)),
    );
    named_instance(root.path(), "beta", None);
    let samples = root.path().join("samples.jsonl");
    let prom = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("--root")
        .arg(root.path())
        .args(["status", "--record", "--samples", samples.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .env("JARVIS_TEXTFILE_DIR", prom.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(SECRET), "{}", text(&out));
    // The default: its own verdict, on its own URL only.
    let (check, _) = status(root.path(), &["--instance", "default", "--json"]);
    assert_eq!(default.paths(), [expected(check.status.code().unwrap())]);
    // Alpha: never started here, so CRITICAL (2), as `status --instance
    // alpha` says; on its own URL.
    let (one, _) = status(root.path(), &["--instance", "alpha", "--json"]);
    let line: serde_json::Value = serde_json::from_slice(&one.stdout).expect("line JSON");
    let code = one.status.code().unwrap();
    assert_eq!(line["verdict"], "CRITICAL", "{line}");
    assert_eq!(alpha.paths(), [format!("/alpha-{SECRET}/{code}")]);
    // Every bot's series, each under its own name.
    let metrics = std::fs::read_to_string(prom.path().join("jarvis_supervisor.prom")).unwrap();
    for bot in ["default", "alpha", "beta"] {
        assert!(
            metrics.contains(&format!("jarvis_supervisor_verdict{{bot=\"{bot}\"}} ")),
            "{bot}: {metrics}"
        );
    }
    assert!(
        metrics.contains("jarvis_supervisor_up{bot=\"alpha\"} 0\n"),
        "{metrics}"
    );
}

/// Root runs a named instance's on_failure: its heartbeat file is honoured
/// only when only its owner (root) can write it; else nothing is sent, and
/// the message says how to fix it.
#[test]
fn a_named_instances_heartbeat_file_that_others_can_write_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let alpha = Server::start();
    named_instance(
        root.path(),
        "alpha",
        Some(&format!("url = http://127.0.0.1:{}/alpha-{SECRET}\n", alpha.port)),
    );
    let f = root.path().join("etc/jarvis-supervisor/heartbeat@alpha.conf");
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let samples = root.path().join("samples.jsonl");
    let (out, _) = status(root.path(), &["--record", "--samples", samples.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("heartbeat@alpha.conf: writable by others than its owner")
            && err.contains("chmod 0640")
            && err.contains("no ping sent for instance alpha"),
        "{err}"
    );
    assert!(alpha.paths().is_empty(), "{:?}", alpha.paths());
    // The alert refuses it the same way: its on_failure never runs.
    let marker = root.path().join("paged");
    std::fs::write(&f, format!("on_failure = touch {}\n", marker.display())).unwrap();
    let out = Command::new(BIN)
        .arg("--root")
        .arg(root.path())
        .args(["alert", "--instance", "alpha", "--reason", "gave up"])
        .output()
        .unwrap();
    assert!(!marker.exists(), "{}", text(&out));
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("heartbeat@alpha.conf"), "{}", text(&out));
}

/// Issue 26: a named instance's alert (jarvis-supervisor-alert@NAME.service,
/// or its engine giving up) pings that instance's own `/fail` and runs its
/// own on_failure, with its unit's name; the default's URL is left alone.
#[test]
fn alert_for_an_instance_uses_that_instances_heartbeat_file() {
    let root = tempfile::tempdir().unwrap();
    let default = Server::start();
    let alpha = Server::start();
    let conf = root.path().join("etc/jarvis-supervisor");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("heartbeat.conf"), format!("url = {}\n", default.url())).unwrap();
    let marker = root.path().join("paged");
    named_instance(
        root.path(),
        "alpha",
        Some(&format!(
            "url = http://127.0.0.1:{}/alpha-{SECRET}\non_failure = echo \"$JARVIS_ALERT_UNIT: $JARVIS_ALERT_REASON\" > {}\n",
            alpha.port,
            marker.display()
        )),
    );
    let out = Command::new(BIN)
        .arg("--root")
        .arg(root.path())
        .args(["alert", "--instance", "alpha", "--reason", "start limit hit"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(alpha.paths(), [format!("/alpha-{SECRET}/fail")]);
    assert!(default.paths().is_empty(), "{:?}", default.paths());
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "jarvis-supervisor@alpha.service: start limit hit\n"
    );
    assert!(!text(&out).contains(SECRET), "{}", text(&out));
    // A bad name is refused before anything is sent.
    let out = Command::new(BIN)
        .arg("--root")
        .arg(root.path())
        .args(["alert", "--instance", "../x", "--reason", "r"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(alpha.paths().len(), 1);
}
