//! A booted Debian container: `systemd-nspawn -b --register=no --keep-unit`
//! on a private copy of a cached root, entered with `nsenter` through its
//! init's pid (the child of the nspawn process). Dropped: powered off, or its
//! init killed by pid, and the copy removed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::cgroup;
use crate::roots::{self, Suite};

static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Container {
    pub suite: Suite,
    /// The private copy of the root.
    pub root: PathBuf,
    dir: PathBuf,
    nspawn: Option<Child>,
    init: u32,
    log: PathBuf,
    /// Boot into this network namespace (made by the test) instead of a
    /// private one, so that several containers and the test share a loopback.
    netns: Option<PathBuf>,
    /// Left running on purpose (`cargo xtask try`): Drop does nothing.
    detached: bool,
    /// The cgroup nspawn runs in, this container's alone.
    cgroup: cgroup::Own,
}

/// The outcome of a command run inside.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Container {
    /// A fresh copy of the cached root, not booted yet.
    pub fn new(suite: Suite) -> Container {
        let cached = roots::cached_root(suite);
        let dir = PathBuf::from(format!(
            "/var/tmp/jarvis-e2e-{}-{}-{}",
            suite.name(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("container dir");
        let root = dir.join("root");
        // An overlay on the cached root: the container writes its own upper
        // layer, and nothing is copied (a copy of the root per container
        // took about a tenth of the e2e layer's time, most of it the
        // kernel's). Where overlayfs cannot be mounted, a copy.
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        for d in [&root, &upper, &work] {
            fs::create_dir_all(d).expect("container dirs");
        }
        let mounted = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                cached.display(),
                upper.display(),
                work.display()
            ))
            .arg(&root)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("e2e: cannot mount an overlay on {}: copying it", cached.display());
            let _ = fs::remove_dir(&root);
            let st = Command::new("cp")
                .args(["-a", "--reflink=auto"])
                .arg(&cached)
                .arg(&root)
                .status()
                .expect("cp");
            assert!(st.success(), "copying {} failed", cached.display());
        }
        let log = dir.join("console.log");
        let cgroup = cgroup::Own::create(&dir.file_name().expect("name").to_string_lossy());
        Container {
            suite,
            root,
            dir,
            nspawn: None,
            init: 0,
            log,
            netns: None,
            detached: false,
            cgroup,
        }
    }

    /// The CPU time the container (every process in it) has used so far,
    /// where the kernel accounts it per cgroup.
    pub fn cpu_time(&self) -> Option<Duration> {
        self.cgroup.cpu_time()
    }

    /// Boot (later) in the network namespace at `path` (`/run/netns/NAME`).
    pub fn in_netns(&mut self, path: &Path) {
        self.netns = Some(path.to_path_buf());
    }

    /// Boot it and wait until systemd reports the system up.
    pub fn boot(suite: Suite) -> Container {
        let mut c = Container::new(suite);
        c.start();
        c
    }

    pub fn start(&mut self) {
        assert!(self.nspawn.is_none(), "already booted");
        if !self.suite.has_systemd() {
            // In case /run is not a fresh tmpfs: a mark from the last boot.
            let _ = fs::remove_file(self.root.join(self.suite.booted_mark().trim_start_matches('/')));
        }
        let console = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("console log");
        let network = match &self.netns {
            Some(ns) => format!("--network-namespace-path={}", ns.display()),
            None => "--private-network".to_string(),
        };
        // nspawn is started in this container's own cgroup (see `cgroup`).
        let child = Command::new("sh")
            .args([
                "-c",
                r#"for f in $JARVIS_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; exec "$@""#,
                "sh",
                "systemd-nspawn",
            ])
            .env("JARVIS_CGROUP_PROCS", self.cgroup.procs_files())
            .arg("-D")
            .arg(&self.root)
            .args(["-b", "--register=no", "--keep-unit", &network, "--console=pipe"])
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("log"))
            .stderr(console)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run systemd-nspawn ({e}); install it: apt-get install systemd-container")
            });
        let pid = child.id();
        self.nspawn = Some(child);
        // The container's init is the child of the nspawn process.
        let deadline = Instant::now() + Duration::from_secs(30);
        self.init = loop {
            if let Some(p) = child_of(pid) {
                break p;
            }
            if let Some(Ok(Some(st))) = self.nspawn.as_mut().map(|c| c.try_wait()) {
                if st.code() == Some(127) {
                    panic!("cannot run systemd-nspawn; install it: apt-get install systemd-container")
                }
                panic!("systemd-nspawn exited at once ({st}):\n{}", self.console());
            }
            assert!(
                Instant::now() < deadline,
                "no init process under nspawn {pid}:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        if !self.suite.has_systemd() {
            let mark = self.suite.booted_mark();
            while self.sh(&format!("test -e {mark}")).status != 0 {
                assert!(
                    Instant::now() < deadline,
                    "{} did not finish booting in 90 s:\n{}",
                    self.suite.name(),
                    self.console()
                );
                std::thread::sleep(Duration::from_millis(250));
            }
            return;
        }
        loop {
            let r = self.sh("systemctl is-system-running 2>/dev/null || true");
            let state = r.stdout.trim().to_string();
            if state == "running" || state == "degraded" {
                if state == "degraded" {
                    let failed = self.sh("systemctl --failed --no-legend --plain").stdout;
                    eprintln!(
                        "e2e: {} booted degraded; failed units:\n{failed}",
                        self.suite.name()
                    );
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not boot in 90 s (state {state:?}):\n{}",
                self.suite.name(),
                self.console()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn console(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Run a shell script inside the booted container.
    pub fn sh(&self, script: &str) -> Run {
        assert!(self.init != 0, "container not booted");
        let out = Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a", "--", "/usr/bin/env", "-i"])
            .args([
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
                "HOME=/root",
            ])
            .args([
                "DEBIAN_FRONTEND=noninteractive",
                "SYSTEMD_PAGER=",
                "SYSTEMD_COLORS=0",
            ])
            .args(["/bin/sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("nsenter");
        Run::from(out)
    }

    /// Run a script that must succeed; returns its stdout.
    pub fn ok(&self, script: &str) -> String {
        let r = self.sh(script);
        assert_eq!(
            r.status,
            0,
            "in {} `{script}` failed ({}):\n{}",
            self.suite.name(),
            r.status,
            r.all()
        );
        r.stdout
    }

    /// Copy a host file or directory into the container at `dest` (not under
    /// /tmp, which is a tmpfs inside).
    pub fn put(&self, src: &Path, dest: &str) {
        let target = self.root.join(dest.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).expect("parent");
        }
        let st = Command::new("cp")
            .arg("-a")
            .arg(src)
            .arg(&target)
            .status()
            .expect("cp");
        assert!(st.success(), "copying {} into {dest} failed", src.display());
    }

    pub fn write(&self, dest: &str, content: &str) {
        let target = self.root.join(dest.trim_start_matches('/'));
        fs::create_dir_all(target.parent().expect("parent")).expect("parent");
        fs::write(&target, content).expect("write into the container");
    }

    /// A unit property, read directly (`systemctl show -p`).
    pub fn prop(&self, unit: &str, name: &str) -> String {
        self.ok(&format!("systemctl show -p {name} --value {unit}"))
            .trim()
            .to_string()
    }

    /// Wait until `check` holds, or panic with `what` after `timeout`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Container) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if check(self) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Make `MemoryMax=` enforceable inside the container. On a host whose
    /// memory controller is on a cgroup v1 hierarchy that the host's own
    /// process manager uses (this sandbox), nspawn hands the container that
    /// hierarchy read-only, so systemd inside silently cannot apply limits. A
    /// fresh writable mount of the (namespaced) hierarchy and a re-exec of
    /// systemd fix that. On a pure cgroup v2 host this only checks.
    pub fn enable_memory_controller(&self) {
        let fs = self.ok("stat -fc %T /sys/fs/cgroup").trim().to_string();
        if fs == "cgroup2fs" {
            let ctl = self.ok("cat /sys/fs/cgroup/cgroup.controllers");
            assert!(
                ctl.split_whitespace().any(|c| c == "memory"),
                "no memory controller in the container: {ctl}"
            );
            return;
        }
        let ro = self.ok("grep ' /sys/fs/cgroup/memory ' /proc/self/mounts || true");
        assert!(!ro.is_empty(), "no memory cgroup hierarchy in the container");
        if ro.contains(" ro,") || ro.contains(" ro ") {
            eprintln!(
                "e2e: {}: the memory cgroup is read-only in the container (host uses cgroup v1 memory); mounting it writable and re-executing systemd",
                self.suite.name()
            );
            self.ok("mkdir -p /run/memcg && mount -t cgroup -o memory memory /run/memcg && mount --bind /run/memcg /sys/fs/cgroup/memory");
            self.ok("systemctl daemon-reexec");
            self.wait_for("systemd after re-exec", Duration::from_secs(30), |c| {
                let s = c.sh("systemctl is-system-running").stdout;
                s.trim() == "running" || s.trim() == "degraded"
            });
        }
    }

    /// The memory limit in force for `unit` (cgroup v1 or v2), if any.
    pub fn memory_limit_of(&self, unit: &str) -> Option<u64> {
        let cg = self.prop(unit, "ControlGroup");
        let r = self.sh(&format!(
            "cat /sys/fs/cgroup/memory{cg}/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup{cg}/memory.max"
        ));
        r.stdout.trim().parse().ok()
    }

    /// The host's pid of a process known inside the container as `pid`.
    pub fn host_pid(&self, pid: &str) -> u32 {
        let ns = fs::read_link(format!("/proc/{}/ns/pid", self.init)).expect("pid namespace of init");
        for entry in fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(hp) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if fs::read_link(format!("/proc/{hp}/ns/pid")).ok().as_ref() != Some(&ns) {
                continue;
            }
            let status = fs::read_to_string(format!("/proc/{hp}/status")).unwrap_or_default();
            let last = status
                .lines()
                .find(|l| l.starts_with("NSpid:"))
                .and_then(|l| l.split_whitespace().last());
            if last == Some(pid) {
                return hp;
            }
        }
        panic!("no host process for container pid {pid}");
    }

    /// The power is cut: the container's init is killed by its pid, with
    /// no shutdown (every process in it dies at once), and nspawn's exit
    /// waited for. `start` then boots the same root again.
    pub fn power_cut(&mut self) {
        let Some(mut child) = self.nspawn.take() else {
            return;
        };
        kill(self.init);
        let _ = child.wait();
        self.init = 0;
    }

    /// Power off and wait for nspawn to exit (then `start` boots it again:
    /// a reboot of the same root).
    pub fn poweroff(&mut self) {
        let Some(mut child) = self.nspawn.take() else {
            return;
        };
        let _ = if self.suite.has_systemd() {
            self.sh("systemctl poweroff --no-block")
        } else {
            // sysvinit: runlevel 0 runs the stop scripts, then halts.
            self.sh("poweroff")
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                kill(self.init);
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.init = 0;
    }
}

impl Container {
    /// Deploy the stand-in bot (`tests/fixtures/standin` of `repo`) as the
    /// code, with a valid-looking dummy `.env` written the way an operator
    /// would (root-owned, 0644: `jarvisctl setup` fixes it), and a piece of
    /// trading state that must survive everything.
    pub fn deploy_standin(&self, repo: &Path) {
        let fixture = repo.join("tests/fixtures/standin");
        let code = "/home/jarvis/Jarvis";
        self.ok(&format!("mkdir -p {code}"));
        self.put(&fixture.join("bots"), &format!("{code}/bots"));
        self.put(&fixture.join("core"), &format!("{code}/core"));
        self.ok(&format!(
            "find {code} -name __pycache__ -prune -exec rm -rf {{}} +"
        ));
        self.write(
            &format!("{code}/.env"),
            "TELEGRAM_BOT_TOKEN=123456789:AAFakeTokenForTestsOnly_abcdefghijklmn\nTELEGRAM_ADMIN_IDS=123456789\nSTANDIN_READY_DELAY=1\n",
        );
        self.ok(&format!(
            "chmod 0644 {code}/.env; mkdir -p {code}/data; echo '{{\"position\": 42}}' > {code}/data/trading-state.json"
        ));
    }

    /// journald's limit for one service as this container applies it: lines per
    /// interval (s). The burst grows with the free space of the journal
    /// (journald-rate-limit.c, burst_modulate: `burst * (log2(free) - 16) / 4`
    /// above 1 MiB), and journald states that free space itself.
    pub fn journald_rate_limit(&self) -> (f64, f64) {
        let conf = self.ok("systemd-analyze cat-config systemd/journald.conf");
        let setting = |key: &str| {
            conf.lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
                .map(str::trim)
                .map(str::to_string)
        };
        let burst: f64 = setting("RateLimitBurst").map_or(10_000.0, |v| v.parse().expect("RateLimitBurst"));
        let interval = setting("RateLimitIntervalSec").map_or(30.0, |v| {
            v.trim_end_matches('s')
                .parse()
                .expect("RateLimitIntervalSec in seconds")
        });
        // "Runtime Journal (/run/log/journal/...) is 8.0M, max 78.4M, 70.4M free."
        let said = self.ok("journalctl -b -u systemd-journald -o cat | grep ' free\\.' | tail -n 1");
        let free = said
            .trim()
            .strip_suffix(" free.")
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|v| {
                let (n, unit) = v.split_at(v.len() - 1);
                let mult = match unit {
                    "B" => 1.0,
                    "K" => 1024.0,
                    "M" => 1024.0 * 1024.0,
                    "G" => 1024.0 * 1024.0 * 1024.0,
                    "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
                    _ => return None,
                };
                n.parse::<f64>().ok().map(|n| n * mult)
            })
            .unwrap_or_else(|| panic!("journald did not say its free space: {said:?}"));
        let k = free.log2().floor();
        let burst = if k <= 20.0 {
            burst
        } else {
            (burst * (k - 16.0) / 4.0).floor()
        };
        (burst, interval)
    }

    /// Leave the container running after this value is gone (used by
    /// `cargo xtask try`, not by the tests); returns the
    /// init pid (to enter or stop it) and the directory holding its root.
    pub fn detach(mut self) -> (u32, PathBuf) {
        if let Some(child) = self.nspawn.take() {
            std::mem::forget(child);
        }
        self.detached = true;
        (self.init, self.dir.clone())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        if let Some(mut child) = self.nspawn.take() {
            if std::thread::panicking() {
                eprintln!(
                    "--- console of the {} container ---\n{}",
                    self.suite.name(),
                    self.console()
                );
            }
            // Kill only the init we started, by pid; nspawn then exits.
            kill(self.init);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.cgroup.remove();
        if std::env::var_os("JARVIS_E2E_KEEP").is_some() {
            eprintln!("e2e: kept {}", self.dir.display());
        } else {
            // The overlay first (a lazy unmount if something still holds
            // it), so that removing the directory never reaches the
            // cached root below.
            let umounted = Command::new("umount")
                .arg(&self.root)
                .status()
                .is_ok_and(|s| s.success())
                || Command::new("umount")
                    .arg("-l")
                    .arg(&self.root)
                    .status()
                    .is_ok_and(|s| s.success());
            if !umounted && is_mount_point(&self.root) {
                eprintln!("e2e: {} is still mounted: left in place", self.root.display());
                return;
            }
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn kill(pid: u32) {
    if pid != 0 {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
}

/// The container's init: the child of nspawn `pid` that lives in a new pid
/// namespace. nspawn briefly has a second child (its "outer child", in our
/// pid namespace) that must not be mistaken for it.
fn child_of(pid: u32) -> Option<u32> {
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let ours = fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find(|c: &u32| {
            fs::read_link(format!("/proc/{c}/ns/pid"))
                .ok()
                .is_some_and(|ns| ns != ours)
        })
}

/// Whether `p` is a mount point (in this process's mount table).
fn is_mount_point(p: &Path) -> bool {
    let want = p.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .map(|t| t.lines().any(|l| l.split(' ').nth(4) == Some(want.as_str())))
        .unwrap_or(false)
}
