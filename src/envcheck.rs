//! The `.env` checks shared by `check`, its preflight and `env lint`: the
//! file's owner, mode and readability, the lines systemd and a shell read
//! differently, and the required variables. Values are never printed.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::envrules::Rule;
use crate::provision::Account;
use crate::report::Finding;
use jarvis_model::envfile::{self, Parsed};

pub struct EnvCheck<'a> {
    /// The service account; its owner/mode/readability checks are skipped
    /// without one (`env lint` of a file before a deploy).
    pub account: Option<&'a Account>,
    pub rules: &'a [Rule],
    /// The systemd version whose reading to follow.
    pub systemd: u32,
    /// What the files read before this one set (`/etc/default/
    /// jarvis-supervisor`): a required variable set there is set.
    pub inherited: Option<&'a Parsed>,
}

impl EnvCheck<'_> {
    /// `shown` is the path in messages, `host` the one to open.
    pub fn run(&self, shown: &Path, host: &Path) -> (Vec<Finding>, Option<Parsed>) {
        let mut out = Vec::new();
        let name = shown.display();
        // A link is named as such, before anything follows it: as root it
        // could lead to a root-only file (`sudo jarvisctl env lint .env` in
        // the service user's directory, issue 24); as the service user it
        // would look "missing" where the target cannot be reached.
        let as_root = nix::unistd::geteuid().is_root();
        if (self.account.is_some() || as_root)
            && std::fs::symlink_metadata(host).is_ok_and(|m| m.file_type().is_symlink())
        {
            out.push(Finding::fail(
                "env",
                format!("{name} is a symbolic link: refused, its target is not read"),
                format!(
                    "replace the link with the file itself, owned by the service user, mode 0600: {name}"
                ),
            ));
            return (out, None);
        }
        let meta = match std::fs::metadata(host) {
            Ok(m) => m,
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                out.push(Finding::fail(
                    "env",
                    format!("cannot inspect {name}: {e}"),
                    "run as root or as the service user",
                ));
                return (out, None);
            }
            Err(_) => {
                let user = self.account.map_or("jarvis", |a| a.user.as_str());
                out.push(Finding::fail(
                    "env",
                    format!("{name} is missing: the bot cannot start without its variables"),
                    format!(
                        "sudo -u {user} install -m 600 /dev/null {name}, then set {} in it",
                        self.rule_names()
                    ),
                ));
                return (out, None);
            }
        };
        if let Some(acct) = self.account {
            let mode = meta.mode() & 0o7777;
            if meta.uid() != acct.uid {
                out.push(Finding::fail(
                    "env",
                    format!("{name} is owned by uid {}, not {}", meta.uid(), acct.user),
                    "sudo jarvisctl setup",
                ));
            }
            if mode != 0o600 {
                out.push(Finding::fail(
                    "env",
                    format!("{name} has mode {mode:04o}, not 0600: it holds the bot's secrets"),
                    "sudo jarvisctl setup",
                ));
            }
            if !readable_by(&meta, acct) {
                out.push(Finding::fail(
                    "env",
                    format!(
                        "{name} is not readable by {}: the bot crashes with PermissionError",
                        acct.user
                    ),
                    "sudo jarvisctl setup",
                ));
            }
        }
        // The .env sits in a directory the service user writes, and root
        // reads it (`check`, `sudo jarvisctl env lint .env`): no link
        // followed, anywhere on the path; no FIFO; bounded. Anyone else
        // reads with their own rights (an operator's linked .env before a
        // deploy), still never waiting on a FIFO.
        let bytes = match read(host) {
            Ok(b) => b,
            Err(e) => {
                // A refusal is fixed in the file, anything else by who reads.
                let fix = if e.to_string().contains("; refused") {
                    format!("replace {name} with a regular file (not a link, FIFO, device or hard link), mode 0600")
                } else {
                    "run as root or as the service user".to_string()
                };
                out.push(Finding::fail("env", format!("cannot read {name}: {e}"), fix));
                return (out, None);
            }
        };
        let parsed = envfile::parse_for(&bytes, self.systemd);
        let mut clean = true;
        for f in &parsed.findings {
            let key = f.key.as_deref().map(|k| format!(" ({k})")).unwrap_or_default();
            let found = format!("{name} line {}{key} {}", f.line, f.kind.problem());
            let finding = if f.kind.is_error() {
                clean = false;
                Finding::fail("env", found, f.kind.fix())
            } else {
                Finding::warn("env", found, f.kind.fix())
            };
            out.push(finding.at(f.line, f.key.clone()));
        }
        // What systemd would pass: the last value of each name.
        let mut last = std::collections::HashMap::new();
        for v in &parsed.vars {
            last.insert(v.key.as_str(), v.value.as_str());
        }
        if let Some(why) = envfile::exec_refusal(last) {
            clean = false;
            out.push(Finding::fail(
                "env",
                format!("{name}: {why}; every start fails with \"Argument list too long\""),
                "keep large data in a file under data/ and put its path in the .env",
            ));
        }
        // As the masker counts them: every value read, each once.
        let distinct: std::collections::HashSet<&str> = parsed
            .vars
            .iter()
            .map(|v| v.value.as_str())
            .filter(|v| !v.is_empty())
            .collect();
        if distinct.len() > jarvis_model::masking::MAX_VALUES {
            out.push(Finding::warn(
                "env",
                format!(
                    "{name} holds {} values, more than the {} that can be masked: status and logs hide every line of the bot rather than risk showing one",
                    distinct.len(),
                    jarvis_model::masking::MAX_VALUES
                ),
                "keep large data in a file under data/ and put its path in the .env",
            ));
        }
        out.extend(python_overrides(&parsed, shown));
        if clean && parsed.findings.is_empty() {
            out.push(Finding::pass(
                "env",
                format!("{name} reads the same under systemd and a shell"),
            ));
        }
        for rule in self.rules {
            let line = parsed
                .vars
                .iter()
                .rev()
                .find(|v| v.key == rule.name)
                .map(|v| v.line);
            match parsed
                .get(&rule.name)
                .or_else(|| self.inherited.and_then(|p| p.get(&rule.name)))
            {
                None => out.push(Finding::fail(
                    "required",
                    format!("{} is not set in {name}", rule.name),
                    format!("add {}=... to {name} ({})", rule.name, rule.form),
                )),
                Some(v) if !rule.matches(v) => out.push(
                    Finding::fail(
                        "required",
                        format!(
                            "{} (line {}) is malformed: expected {}",
                            rule.name,
                            line.unwrap_or(0),
                            rule.form
                        ),
                        format!("correct the value of {} in {name}", rule.name),
                    )
                    .at(line.unwrap_or(0), Some(rule.name.clone())),
                ),
                Some(_) => out.push(Finding::pass(
                    "required",
                    format!("{} is set and well-formed", rule.name),
                )),
            }
        }
        (out, Some(parsed))
    }

    fn rule_names(&self) -> String {
        self.rules
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(" and ")
    }
}

/// Variables that change which code Python runs. The unit sets them
/// (`Environment=`), and a `.env` comes after it (`EnvironmentFile=`
/// overrides): a value there can import code from outside the code root,
/// where the drift check does not look, or turn byte code writing back on.
const PYTHON_CODE_VARS: [&str; 5] = [
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "PYTHONPYCACHEPREFIX",
    "PYTHONDONTWRITEBYTECODE",
];

/// A warning for each such variable the `.env` sets, unless PYTHONPATH
/// names only the code root (the `.env`'s directory) or paths in it.
fn python_overrides(parsed: &Parsed, shown: &Path) -> Vec<Finding> {
    let root = shown.parent().filter(|p| p.is_absolute());
    let mut out = Vec::new();
    for name in PYTHON_CODE_VARS {
        let Some(var) = parsed.vars.iter().rev().find(|v| v.key == name) else {
            continue;
        };
        let inside = |p: &str| root.is_some_and(|r| Path::new(p).starts_with(r));
        if name == "PYTHONPATH" && var.value.split(':').all(inside) {
            continue;
        }
        out.push(
            Finding::warn(
                "env",
                format!(
                    "{} line {} sets {name}, which replaces the unit's setting: Python may then run code the drift check does not see",
                    shown.display(),
                    var.line
                ),
                format!(
                    "remove {name} from {}; set it in a drop-in (systemctl edit jarvis-supervisor) if it is needed",
                    shown.display()
                ),
            )
            .at(var.line, Some(name.to_string())),
        );
    }
    out
}

/// Whether `acct` may read a file with metadata `m` (owner, group, other).
pub fn readable_by(m: &std::fs::Metadata, acct: &Account) -> bool {
    if acct.uid == 0 {
        return true;
    }
    let mode = m.mode();
    if m.uid() == acct.uid {
        return mode & 0o400 != 0;
    }
    let in_group = m.gid() == acct.gid
        || std::ffi::CString::new(acct.user.as_str())
            .ok()
            .and_then(|u| nix::unistd::getgrouplist(&u, nix::unistd::Gid::from_raw(acct.gid)).ok())
            .is_some_and(|gs| gs.iter().any(|g| g.as_raw() == m.gid()));
    if in_group {
        return mode & 0o040 != 0;
    }
    mode & 0o004 != 0
}

/// The largest `.env` read (a link to /dev/zero must not read gigabytes).
pub const ENV_MAX: u64 = 64 << 20;

/// Reads a `.env`: as root through `untrusted`, else with the caller's own
/// rights; never a FIFO, never more than `ENV_MAX`.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    if nix::unistd::geteuid().is_root() {
        read_as_root(path)
    } else {
        read_own(path)
    }
}

/// Reads `path` (relative to the working directory) through `untrusted`:
/// the path made absolute without following anything, then opened one
/// component at a time.
fn read_as_root(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut abs = std::env::current_dir()?;
    for c in path.components() {
        match c {
            std::path::Component::RootDir => abs = std::path::PathBuf::from("/"),
            std::path::Component::ParentDir => {
                abs.pop();
            }
            std::path::Component::Normal(n) => abs.push(n),
            _ => {}
        }
    }
    jarvis_model::untrusted::read(&abs, None, ENV_MAX)
}

/// Reads a regular file of at most `ENV_MAX` bytes, opened without waiting
/// (a FIFO is refused, never read).
fn read_own(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a FIFO, device or directory); refused",
        ));
    }
    let mut out = Vec::new();
    f.take(ENV_MAX + 1).read_to_end(&mut out)?;
    if out.len() as u64 > ENV_MAX {
        return Err(std::io::Error::other(format!(
            "larger than {ENV_MAX} bytes; refused"
        )));
    }
    Ok(out)
}
