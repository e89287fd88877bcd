//! Hosts reached over ssh, as the deploy and `status --host` tests and the
//! deploy benchmark (`cargo xtask bench --only deploy`) use them: booted
//! containers that share a network namespace made here, each with sshd on
//! its own loopback port and root's login by a key made here; the client
//! (jarvisctl, rsync, Ansible) runs on this machine inside the namespace.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::container::{Container, Run};
use crate::roots::Suite;

/// The bot's code root on every host.
pub const CODE: &str = "/home/jarvis/Jarvis";

/// A network namespace of the caller's own, with only loopback, removed on drop.
pub struct Netns {
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

    /// `program` run inside the namespace.
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

/// A key pair made here, and the client options that use it.
pub struct Key {
    dir: tempfile::TempDir,
}

impl Default for Key {
    fn default() -> Key {
        Key::new()
    }
}

impl Key {
    pub fn new() -> Key {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "jarvis-e2e", "-f"])
            .arg(dir.path().join("key"))
            .status()
            .unwrap_or_else(|e| panic!("cannot run ssh-keygen ({e}); install openssh-client"));
        assert!(st.success());
        Key { dir }
    }

    pub fn public(&self) -> String {
        fs::read_to_string(self.dir.path().join("key.pub")).expect("public key")
    }

    /// The private key's file.
    pub fn file(&self) -> PathBuf {
        self.dir.path().join("key")
    }

    /// The same policy a careful operator would set: this key only, and
    /// host keys remembered in a file of the fleet's own.
    pub fn options(&self) -> Vec<String> {
        let d = self.dir.path().display();
        vec![
            format!("IdentityFile={d}/key"),
            "IdentitiesOnly=yes".into(),
            format!("UserKnownHostsFile={d}/known_hosts"),
            "StrictHostKeyChecking=accept-new".into(),
        ]
    }
}

/// A booted host (systemd or sysvinit) with sshd listening on `port` of the
/// shared loopback, and root's login by `key` only.
pub fn sshd_host(suite: Suite, ns: &Netns, key: &Key, port: u16) -> Container {
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

/// Install the package file `deb` with apt (copied under /var/tmp/pkgs).
pub fn apt_install(c: &Container, deb: &Path, flags: &str) -> Run {
    let name = deb.file_name().unwrap().to_string_lossy();
    let dest = format!("/var/tmp/pkgs/{name}");
    c.put(deb, &dest);
    c.sh(&format!("apt-get install -y -q {flags} {dest} 2>&1"))
}

/// [`sshd_host`] with the stand-in of the repository `repo` deployed and
/// the package `deb` installed; returns once the package is installed (the
/// caller waits for the bot).
pub fn ssh_host(suite: Suite, ns: &Netns, key: &Key, port: u16, repo: &Path, deb: &Path) -> Container {
    let c = sshd_host(suite, ns, key, port);
    c.deploy_standin(repo);
    // The hosts share one loopback: each bot serves its health port apart.
    c.ok(&format!("echo HEALTH_PORT={} >> {CODE}/.env", port + 6000));
    let out = apt_install(&c, deb, "");
    assert_eq!(out.status, 0, "{}", out.all());
    c
}

/// jarvisctl as shipped in the .deb `deb`, unpacked into `dir`.
pub fn client(dir: &Path, deb: &Path) -> PathBuf {
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    dir.join("usr/bin/jarvisctl")
}

/// `root@127.0.0.1:PORT`, the name the clients reach a host by.
pub fn host_name(port: u16) -> String {
    format!("root@127.0.0.1:{port}")
}

/// `jarvisctl status --json` on the host, or Null.
pub fn status(c: &Container) -> Value {
    let r = c.sh("jarvisctl status --json");
    serde_json::from_str(&r.stdout).unwrap_or(Value::Null)
}

pub fn healthy(c: &Container) -> bool {
    let st = status(c);
    st["verdict"] == "OK" && st["state"] == "active"
}

/// Hosts booted at once, with the deploy client.
pub struct Fleet {
    pub ns: Netns,
    pub key: Key,
    /// The jarvisctl that deploys.
    pub bin: PathBuf,
    pub tmp: tempfile::TempDir,
    pub hosts: Vec<Container>,
    /// Each host's sshd port, in the order of `hosts`.
    pub ports: Vec<u16>,
}

/// Hosts booted at once in a network namespace of their own (`tag`), each
/// with sshd on its port, the package `deb` and a healthy stand-in bot
/// (from `repo`), with data and a log file of the bot's planted. The
/// client is `client`, else the jarvisctl of `deb`.
pub fn fleet(
    tag: &str,
    want: &[(Suite, u16)],
    repo: &Path,
    deb: &Path,
    client_bin: Option<PathBuf>,
) -> Fleet {
    let ns = Netns::new(tag);
    let key = Key::new();
    let hosts = std::thread::scope(|s| {
        let handles: Vec<_> = want
            .iter()
            .map(|&(suite, port)| {
                let (ns, key) = (&ns, &key);
                s.spawn(move || ssh_host(suite, ns, key, port, repo, deb))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("host"))
            .collect::<Vec<_>>()
    });
    for c in &hosts {
        c.wait_for("a healthy bot", Duration::from_secs(90), healthy);
        c.ok(&format!(
            "head -c 65536 /dev/urandom > {CODE}/data/planted.bin; mkdir -p {CODE}/logs; echo 'an old log line' > {CODE}/logs/planted.log; chown -R jarvis:jarvis {CODE}/data {CODE}/logs"
        ));
    }
    let tmp = tempfile::tempdir().unwrap();
    let bin = client_bin.unwrap_or_else(|| client(tmp.path(), deb));
    Fleet {
        ns,
        key,
        bin,
        tmp,
        hosts,
        ports: want.iter().map(|&(_, p)| p).collect(),
    }
}

impl Fleet {
    pub fn a(&self) -> &Container {
        &self.hosts[0]
    }
    pub fn b(&self) -> &Container {
        &self.hosts[1]
    }

    /// `jarvisctl deploy` with the fleet's key and `args`, in the namespace.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.ns.command(self.bin.to_str().unwrap());
        cmd.arg("deploy");
        for o in self.key.options() {
            cmd.args(["--ssh-option", &o]);
        }
        cmd.args(args);
        cmd
    }

    /// Runs `jarvisctl deploy ARGS`; (exit code, stdout, stderr, time).
    pub fn deploy(&self, what: &str, args: &[&str]) -> (i32, String, String, Duration) {
        let t0 = Instant::now();
        let out = self.command(args).output().expect("run jarvisctl deploy");
        let took = t0.elapsed();
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        println!(
            "== {what}: jarvisctl deploy {args:?} -> {:?} in {took:.1?}\n{e}{o}",
            out.status.code()
        );
        (out.status.code().unwrap_or(-1), o, e, took)
    }

    /// `--host NAME` for every host of the fleet.
    pub fn every_host(&self) -> Vec<String> {
        self.ports
            .iter()
            .flat_map(|&p| ["--host".to_string(), host_name(p)])
            .collect()
    }
}
