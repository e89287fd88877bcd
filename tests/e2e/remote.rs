//! Issue 5, acceptance 2: `jarvisctl status --host` over ssh. Two booted
//! containers share a network namespace made by this test, each with sshd
//! on its own loopback port and a key set up here; the client runs in the
//! same namespace. A third "host" accepts connections and never answers,
//! a fourth refuses them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::container::Container;
use super::roots::Suite;
use super::{active, main_pid, pkg};
pub(crate) use jarvis_test_support::remote::{self, sshd_host, Key, Netns};

/// A child process of the test, killed by its pid on drop.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A booted host with sshd on `port` of the shared loopback, root's login
/// by `key` only, the package installed and the stand-in running.
fn host(ns: &Netns, key: &Key, port: u16) -> Container {
    let c = ssh_host(Suite::Bookworm, ns, key, port);
    c.wait_for("active", Duration::from_secs(60), active);
    c
}

/// [`remote::ssh_host`] with this repository's stand-in and `$JARVIS_DEB`.
pub(crate) fn ssh_host(suite: Suite, ns: &Netns, key: &Key, port: u16) -> Container {
    remote::ssh_host(
        suite,
        ns,
        key,
        port,
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &pkg("JARVIS_DEB"),
    )
}

/// jarvisctl as shipped in the .deb, unpacked on this machine.
pub(crate) fn client(dir: &Path) -> PathBuf {
    remote::client(dir, &pkg("JARVIS_DEB"))
}

fn status(ns: &Netns, bin: &Path, key: &Key, args: &[&str]) -> (i32, String, Duration) {
    let mut cmd = ns.command(bin.to_str().unwrap());
    cmd.arg("status");
    for o in key.options() {
        cmd.args(["--ssh-option", &o]);
    }
    cmd.args(args);
    let t0 = Instant::now();
    let out = cmd.output().expect("run jarvisctl");
    let took = t0.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "jarvisctl status {args:?} -> {:?} in {took:?}\n{text}",
        out.status.code()
    );
    (out.status.code().unwrap_or(-1), text, took)
}

pub fn hosts() {
    let ns = Netns::new("ssh");
    let key = Key::new();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| host(&ns, &key, 2201));
        let b = s.spawn(|| host(&ns, &key, 2202));
        (a.join().expect("host a"), b.join().expect("host b"))
    });
    let tmp = tempfile::tempdir().unwrap();
    let bin = client(tmp.path());
    let (pid_a, pid_b) = (main_pid(&a), main_pid(&b));

    // Both hosts up: one row each, OK, exit 0; the hosts file form.
    let hosts_file = tmp.path().join("fleet");
    fs::write(
        &hosts_file,
        "# the fleet\nroot@127.0.0.1:2201\nroot@127.0.0.1:2202  # second VPS\n",
    )
    .unwrap();
    let (code, text, _) = status(&ns, &bin, &key, &["--hosts", hosts_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "a header and one row per host:\n{text}");
    assert!(
        lines[0].starts_with("HOST") && lines[0].contains("VERDICT") && lines[0].contains("COMPONENTS"),
        "{text}"
    );
    for (line, (host, pid)) in lines[1..]
        .iter()
        .zip([("root@127.0.0.1:2201", &pid_a), ("root@127.0.0.1:2202", &pid_b)])
    {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[..4], &[host, "OK", "active", pid.as_str()], "{line}");
        assert!(line.contains("4/4 running"), "no components column: {line}");
    }

    // B down, a host that never answers and one that refuses: a row each,
    // the silent one UNKNOWN within the timeout, exit the worst (CRITICAL).
    b.ok("systemctl stop jarvis-supervisor");
    let mut silent = Owned(
        ns.command("python3")
            .args([
                "-c",
                "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',2203))\ns.listen(8)\nprint('ok',flush=True)\ntime.sleep(600)",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("silent listener"),
    );
    // Listening once it says so (a fixed sleep lost the race under load:
    // the port refused, and the row read "Connection refused").
    let mut said = String::new();
    if let Some(out) = silent.0.stdout.take() {
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut said);
    }
    assert_eq!(said.trim(), "ok", "the silent listener did not start");
    let timeout = 5.0;
    let (code, text, took) = status(
        &ns,
        &bin,
        &key,
        &[
            "--json",
            "--timeout",
            "5",
            "--host",
            "root@127.0.0.1:2201",
            "--host",
            "root@127.0.0.1:2202",
            "--host",
            "root@127.0.0.1:2203",
            "--host",
            "root@127.0.0.1:2204",
        ],
    );
    drop(silent);
    assert_eq!(code, 2, "worst of OK, CRITICAL, UNKNOWN, UNKNOWN:\n{text}");
    let v: Value = serde_json::from_str(text.lines().next().unwrap()).expect("JSON");
    assert_eq!(v["verdict"], "CRITICAL");
    assert_eq!(v["exit_code"], 2);
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 4);
    assert_eq!(hosts[0]["host"], "root@127.0.0.1:2201");
    assert_eq!(hosts[0]["verdict"], "OK");
    assert_eq!(
        hosts[0]["status"]["main_pid"].as_u64().unwrap().to_string(),
        pid_a
    );
    assert_eq!(hosts[0]["status"]["schema"], 2);
    assert_eq!(hosts[1]["verdict"], "CRITICAL");
    assert_eq!(hosts[1]["status"]["state"], "inactive");
    assert_eq!(hosts[2]["verdict"], "UNKNOWN");
    assert!(hosts[2]["status"].is_null());
    // ssh's own ConnectTimeout (which covers the banner) or our deadline.
    assert!(
        hosts[2]["error"].as_str().unwrap().contains("timed out"),
        "{}",
        hosts[2]
    );
    let silent_s = hosts[2]["elapsed_s"].as_f64().unwrap();
    assert!(
        (timeout..timeout + 1.0).contains(&silent_s),
        "gave up after {silent_s} s"
    );
    assert_eq!(hosts[3]["verdict"], "UNKNOWN");
    assert!(
        hosts[3]["error"].as_str().unwrap().contains("Connection refused"),
        "{}",
        hosts[3]
    );
    // In parallel: the whole run is bounded by the one timeout, not the sum.
    assert!(took < Duration::from_secs_f64(timeout + 2.0), "took {took:?}");
    println!("figures: silent host given up after {silent_s:.2} s; 4 hosts in {took:?}");
}
