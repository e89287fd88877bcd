//! Issue 5, acceptance 2: `jarvisctl status --host` over ssh. Two booted
//! containers share a network namespace made by this test, each with sshd
//! on its own loopback port and a key set up here; the client runs in the
//! same namespace. A third "host" accepts connections and never answers,
//! a fourth refuses them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::container::Container;
use super::roots::Suite;
use super::{active, apt_install, deploy_standin, main_pid, pkg};

/// A network namespace of the test's own, with only loopback, removed on drop.
pub(crate) struct Netns {
    pub name: String,
    pub path: PathBuf,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("jarvis-e2e-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let ok = |args: &[&str]| {
            let st = Command::new("ip")
                .args(args)
                .status()
                .unwrap_or_else(|e| panic!("cannot run ip ({e}); install it: apt-get install iproute2"));
            assert!(st.success(), "ip {args:?} failed");
        };
        ok(&["netns", "add", &name]);
        ok(&["-n", &name, "link", "set", "lo", "up"]);
        let path = PathBuf::from(format!("/run/netns/{name}"));
        Netns { name, path }
    }

    /// `cmd` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A child process of the test, killed by its pid on drop.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A key pair made for this test, and the client options that use it.
pub(crate) struct Key {
    dir: tempfile::TempDir,
}

impl Key {
    pub(crate) fn new() -> Key {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "jarvis-e2e", "-f"])
            .arg(dir.path().join("key"))
            .status()
            .unwrap_or_else(|e| panic!("cannot run ssh-keygen ({e}); install openssh-client"));
        assert!(st.success());
        Key { dir }
    }

    pub(crate) fn public(&self) -> String {
        fs::read_to_string(self.dir.path().join("key.pub")).expect("public key")
    }

    /// The same policy a careful operator would set: this key only, and
    /// host keys remembered in a file of the fleet's own.
    pub(crate) fn options(&self) -> Vec<String> {
        let d = self.dir.path().display();
        vec![
            format!("IdentityFile={d}/key"),
            "IdentitiesOnly=yes".into(),
            format!("UserKnownHostsFile={d}/known_hosts"),
            "StrictHostKeyChecking=accept-new".into(),
        ]
    }
}

/// A booted host with sshd on `port` of the shared loopback, root's login
/// by `key` only, the package installed and the stand-in running.
fn host(ns: &Netns, key: &Key, port: u16) -> Container {
    let c = ssh_host(Suite::Bookworm, ns, key, port);
    c.wait_for("active", Duration::from_secs(60), active);
    c
}

/// A booted host (systemd or sysvinit) with sshd listening on `port` of the
/// shared loopback, and root's login by `key` only.
pub(crate) fn sshd_host(suite: Suite, ns: &Netns, key: &Key, port: u16) -> Container {
    let mut c = Container::new(suite);
    c.in_netns(&ns.path);
    let root = &c.root;
    fs::create_dir_all(root.join("etc/ssh/sshd_config.d")).unwrap();
    fs::write(
        root.join("etc/ssh/sshd_config.d/jarvis-e2e.conf"),
        format!("Port {port}\nListenAddress 127.0.0.1\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"),
    )
    .unwrap();
    let ssh_dir = root.join("root/.ssh");
    fs::create_dir_all(&ssh_dir).unwrap();
    fs::write(ssh_dir.join("authorized_keys"), key.public()).unwrap();
    let st = Command::new("chmod")
        .args(["-R", "go-rwx"])
        .arg(&ssh_dir)
        .status()
        .unwrap();
    assert!(st.success());
    c.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while c
        .sh(&format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}'"))
        .status
        != 0
    {
        assert!(
            Instant::now() < deadline,
            "sshd is not listening on 127.0.0.1:{port} after 30 s:\n{}",
            c.sh("service ssh status 2>&1; systemctl status ssh --no-pager -l 2>&1; journalctl -u ssh --no-pager -n 30 2>&1; ip addr 2>&1").all()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    c
}

/// [`sshd_host`] with the stand-in deployed and the package installed;
/// returns once the package is installed (the caller waits for the bot).
pub(crate) fn ssh_host(suite: Suite, ns: &Netns, key: &Key, port: u16) -> Container {
    let c = sshd_host(suite, ns, key, port);
    deploy_standin(&c);
    // The hosts share one loopback: each bot serves its health port apart.
    c.ok(&format!(
        "echo HEALTH_PORT={} >> /home/jarvis/Jarvis/.env",
        port + 6000
    ));
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "{}", out.all());
    c
}

/// jarvisctl as shipped in the .deb, unpacked on this machine.
pub(crate) fn client(dir: &Path) -> PathBuf {
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(pkg("JARVIS_DEB"))
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    dir.join("usr/bin/jarvisctl")
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
