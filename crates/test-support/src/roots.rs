//! Cached Debian roots for the booted-container tests, made once with
//! debootstrap and copied for each test. The mirror comes from this
//! machine's apt configuration; `JARVIS_E2E_MIRROR` overrides it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What every systemd root holds, so that `apt install ./the.deb` needs no
/// network: systemd to boot, the package's dependencies, rpm for the .rpm
/// test, sshd and rsync for the tests that reach hosts over ssh (status
/// --host, deploy), python3-apt for Ansible's apt modules, and man-db for
/// `man jarvisctl`, python3-venv (the package recommends it: `venv build`),
/// sudo for the monitoring user's `sudo -n jarvisctl status`.
const INCLUDE: &str = "systemd,systemd-sysv,dbus,adduser,python3,python3-venv,logrotate,procps,rpm,openssh-server,rsync,python3-apt,man-db,sudo";
/// The host without systemd: sysvinit and cron, as the design says.
const INCLUDE_SYSV: &str =
    "sysvinit-core,cron,adduser,python3,python3-venv,logrotate,procps,openssh-server,rsync";
/// Made in the sysvinit root after debootstrap: no gettys (a container has
/// no ttys; they would respawn in a loop), and a mark that the boot is done
/// (rc.local runs last in runlevel 2).
const SYSV_BOOTED: &str = "/run/jarvis-e2e-booted";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// Debian 12, systemd 252.
    Bookworm,
    /// Debian 13, systemd 257.
    Trixie,
    /// Debian 12 booted with sysvinit: the host without systemd.
    Sysvinit,
}

impl Suite {
    /// Every suite a test boots.
    pub const ALL: [Suite; 3] = [Suite::Bookworm, Suite::Trixie, Suite::Sysvinit];

    pub fn name(self) -> &'static str {
        match self {
            Suite::Bookworm => "bookworm",
            Suite::Trixie => "trixie",
            Suite::Sysvinit => "bookworm-sysvinit",
        }
    }

    /// The Debian release debootstrap fetches.
    fn release(self) -> &'static str {
        match self {
            Suite::Bookworm | Suite::Sysvinit => "bookworm",
            Suite::Trixie => "trixie",
        }
    }

    fn include(self) -> &'static str {
        match self {
            Suite::Sysvinit => INCLUDE_SYSV,
            _ => INCLUDE,
        }
    }

    pub fn has_systemd(self) -> bool {
        self != Suite::Sysvinit
    }

    /// A file that exists in the booted container once its boot is done
    /// (sysvinit only; systemd says so itself).
    pub fn booted_mark(self) -> &'static str {
        SYSV_BOOTED
    }
}

pub fn cache_dir() -> PathBuf {
    std::env::var_os("JARVIS_E2E_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/jarvis-supervisor-e2e"))
}

/// The cached root for `suite`, made now if missing. Safe to call from
/// several tests at once: the first one builds it under a lock.
pub fn cached_root(suite: Suite) -> PathBuf {
    prepare(suite).unwrap_or_else(|e| panic!("{e}"))
}

/// The cached root for `suite`, made now if missing, or why it cannot be.
/// `cargo xtask test` calls it for every suite before the container layers
/// start: a debootstrap beside booted containers starves them of disk and
/// CPU, and a test's waits then run out on a fresh machine only.
pub fn prepare(suite: Suite) -> Result<PathBuf, String> {
    let dir = cache_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let root = dir.join(format!("{}.root", suite.name()));
    let stamp = dir.join(format!("{}.stamp", suite.name()));
    let lock_path = dir.join(format!("{}.lock", suite.name()));
    let lock =
        fs::File::create(&lock_path).map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    let wanted = format!(
        "{}{}",
        suite.include(),
        if suite.has_systemd() { "" } else { SYSV_BOOTED }
    );
    if root.is_dir() && fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(root);
    }
    let tmp = dir.join(format!("{}.tmp", suite.name()));
    let _ = fs::remove_dir_all(&tmp);
    let _ = fs::remove_dir_all(&root);
    let mirror = mirror();
    eprintln!(
        "e2e: debootstrap {} from {mirror} into {} (once; cached)",
        suite.name(),
        root.display()
    );
    let out = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={}", suite.include()),
            suite.release(),
        ])
        .arg(&tmp)
        .arg(&mirror)
        .output()
        .map_err(|e| format!("cannot run debootstrap ({e}); install it: apt-get install debootstrap"))?;
    if !out.status.success() {
        let log = fs::read_to_string(tmp.join("debootstrap/debootstrap.log")).unwrap_or_default();
        return Err(format!(
            "debootstrap {} from {mirror} failed: {}\n{}\n{}\nset JARVIS_E2E_MIRROR to a reachable Debian mirror",
            suite.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
        ));
    }
    if !suite.has_systemd() {
        let inittab = tmp.join("etc/inittab");
        let text =
            fs::read_to_string(&inittab).map_err(|e| format!("cannot read {}: {e}", inittab.display()))?;
        let kept: Vec<&str> = text.lines().filter(|l| !l.contains("getty")).collect();
        write(&inittab, &(kept.join("\n") + "\n"))?;
        let rc_local = tmp.join("etc/rc.local");
        write(&rc_local, &format!("#!/bin/sh\ntouch {SYSV_BOOTED}\n"))?;
        fs::set_permissions(&rc_local, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("cannot chmod {}: {e}", rc_local.display()))?;
    }
    fs::rename(&tmp, &root)
        .map_err(|e| format!("cannot move {} to {}: {e}", tmp.display(), root.display()))?;
    write(&stamp, &wanted)?;
    Ok(root)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The Debian mirror from /etc/apt (deb822 .sources first, then
/// sources.list), skipping security archives.
pub fn mirror() -> String {
    if let Some(m) = std::env::var_os("JARVIS_E2E_MIRROR") {
        return m.to_string_lossy().into_owned();
    }
    let mut files: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files.push(PathBuf::from("/etc/apt/sources.list"));
    for f in &files {
        if let Some(m) = mirror_in(f) {
            return m;
        }
    }
    panic!("no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list; set JARVIS_E2E_MIRROR");
}

fn mirror_in(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let name = path.to_string_lossy();
    if name.ends_with(".sources") {
        for stanza in text.split("\n\n") {
            let field = |k: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            };
            let enabled = field("Enabled:").is_none_or(|v| v != "no");
            let uri = field("URIs:")?;
            let suites = field("Suites:").unwrap_or_default();
            if enabled
                && field("Types:").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"))
                && !suites.contains("security")
                && uri.contains("debian")
            {
                return uri.split_whitespace().next().map(str::to_string);
            }
        }
        None
    } else if name.ends_with(".list") {
        text.lines().find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 3 && w[0] == "deb" && !w[2].contains("security") && w[1].contains("debian"))
                .then(|| w[1].to_string())
        })
    } else {
        None
    }
}
