//! The program's own pause switch (docs/supervised-program.md): a file
//! `PAUSE_AUTOMATIONS` in the code root, or `JARVIS_PAUSE_AUTOMATIONS` set
//! to a true word in its environment or its `.env`. The program then prints
//! "Automations paused" and exits 0 before READY. This module finds the
//! switch, however it was set, says who set it and since when, and sets or
//! clears the file for `jarvisctl pause` / `resume`.
//!
//! Three readers: the unit's `ExecCondition=` (`jarvisctl condition`, run
//! as the service user inside the service, so a paused bot is skipped, not
//! failed), and, as root, `status`, `alert` and the start/stop verbs. Root
//! reaches the code root only through `untrusted` (the service user can
//! write it).

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use serde::{Deserialize, Serialize};

use jarvis_model::error::{Error, Result};
use jarvis_model::paths::Paths;
use jarvis_model::unit::{split_words, Unit};

/// The file the program looks for in its code root.
pub const FILE: &str = "PAUSE_AUTOMATIONS";
/// The variable it reads from its environment, then from `.env`.
pub const VAR: &str = "JARVIS_PAUSE_AUTOMATIONS";
/// Who paused it with `jarvisctl pause`, when, and why: package-owned,
/// written by root only.
pub const RECORD: &str = "/var/lib/jarvis-supervisor/pause.json";
/// The largest `.env` read here (the engine's and check's bound).
const ENV_MAX: u64 = 64 << 20;

/// The program's reading of the variable: 1, true, yes, y, on; any case,
/// spaces trimmed.
pub fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "y" | "on"
    )
}

/// Which of the program's two switches holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Switch {
    /// The file `PAUSE_AUTOMATIONS` in the code root.
    File,
    /// `JARVIS_PAUSE_AUTOMATIONS` set to a true word.
    Env,
}

/// A pause in effect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pause {
    pub switch: Switch,
    /// The pause file, or the file (or unit setting) that sets the variable.
    pub path: String,
    /// "jarvisctl pause" (with a record), "by hand" (a file nobody
    /// recorded), or "environment".
    pub made_by: String,
    /// Who: the record's user, else the file's owner.
    pub by: Option<String>,
    /// Since when (unix seconds): the record's time, else the file's mtime.
    pub since_unix: Option<i64>,
    pub reason: Option<String>,
}

impl Pause {
    /// One line for people.
    pub fn describe(&self) -> String {
        let mut s = match self.switch {
            Switch::File => format!("paused: {} exists", self.path),
            Switch::Env => format!("paused: {VAR} is true in {}", self.path),
        };
        s.push_str(&format!(" ({})", self.made_by));
        if let Some(by) = &self.by {
            s.push_str(&format!(", by {by}"));
        }
        if let Some(t) = self.since_unix {
            s.push_str(&format!(", since {}", iso(t)));
        }
        if let Some(r) = &self.reason {
            s.push_str(&format!(", reason: {}", crate::output::printable(r)));
        }
        s
    }
}

/// `jarvisctl pause`'s record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub by: String,
    pub since_unix: i64,
    pub reason: Option<String>,
    /// The pause file it made.
    pub file: String,
}

pub fn iso(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The program's own `.env` rule: `KEY=VALUE` split at the first `=`, key
/// and value stripped, `#` and blank lines skipped; the first one wins
/// (Python's `setdefault`).
fn dotenv_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
}

/// `jarvisctl condition`, inside the service as its user, in the code root
/// (WorkingDirectory=): the pause as the program will see it, from the
/// same places. None: not paused.
pub fn condition(code_root: &Path) -> Option<String> {
    let file = code_root.join(FILE);
    // As the program's os.path.exists: links followed, as that user.
    if file.exists() {
        return Some(format!("{} exists", file.display()));
    }
    if let Some(v) = std::env::var_os(VAR) {
        // The environment wins over .env, as in the program.
        return truthy(&v.to_string_lossy())
            .then(|| format!("{VAR}={} in the service's environment", v.to_string_lossy()));
    }
    let env = code_root.join(".env");
    let text = std::fs::read(&env).ok()?;
    let v = dotenv_value(&String::from_utf8_lossy(&text), VAR)?;
    truthy(&v).then(|| format!("{VAR}={v} in {}", env.display()))
}

/// The code root: the unit's WorkingDirectory=.
pub fn code_root(unit: &Unit) -> Option<PathBuf> {
    unit.working_directory().map(|w| w.path)
}

/// The pause in effect for the installed unit, as root sees it.
pub fn detect(paths: &Paths, unit: &Unit) -> Option<Pause> {
    let root = code_root(unit)?;
    if let Some(p) = file_pause(paths, &root) {
        return Some(p);
    }
    env_pause(paths, unit, &root)
}

fn user_name(uid: u32) -> String {
    crate::provision::user_name(uid).unwrap_or_else(|| format!("uid {uid}"))
}

fn file_pause(paths: &Paths, root: &Path) -> Option<Pause> {
    let host_root = paths.host(root);
    let dir = jarvis_model::untrusted::open_dir(&host_root).ok()?;
    // The name itself, never followed: its owner and time are what the
    // operator made (a dangling link does not pause the program, but is
    // rare enough to report as a pause all the same).
    let st = fstatat(&dir, FILE, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    let path = root.join(FILE).display().to_string();
    let record = read_record(paths).filter(|r| r.file == path);
    // A record older than the file: the file was made again by hand since.
    let record = record.filter(|r| st.st_mtime <= r.since_unix + 60);
    Some(match record {
        Some(r) => Pause {
            switch: Switch::File,
            path,
            made_by: "jarvisctl pause".into(),
            by: Some(r.by),
            since_unix: Some(r.since_unix),
            reason: r.reason,
        },
        None => Pause {
            switch: Switch::File,
            path,
            made_by: "by hand".into(),
            by: Some(user_name(st.st_uid)),
            since_unix: Some(st.st_mtime),
            reason: None,
        },
    })
}

/// The variable as the program would get it: the unit's Environment= and
/// EnvironmentFile= (the later wins), else the code root's `.env`.
fn env_pause(paths: &Paths, unit: &Unit, root: &Path) -> Option<Pause> {
    let mut found: Option<(String, String, Option<i64>)> = None;
    for v in unit.values("Service", "Environment") {
        for w in split_words(&v) {
            if let Some((k, val)) = w.split_once('=') {
                if k == VAR {
                    found = Some((val.to_string(), "the unit's Environment=".into(), None));
                }
            }
        }
    }
    for f in unit.environment_files() {
        let host = paths.host(&f.path);
        let Ok(bytes) = jarvis_model::untrusted::read(&host, None, ENV_MAX) else {
            continue;
        };
        let parsed = jarvis_model::envfile::parse(&bytes);
        if let Some(v) = parsed.vars.iter().rev().find(|v| v.key == VAR) {
            let mtime = std::fs::symlink_metadata(&host).ok().map(|m| m.mtime());
            found = Some((v.value.clone(), f.path.display().to_string(), mtime));
        }
    }
    if found.is_none() {
        let env = root.join(".env");
        let host = paths.host(&env);
        if let Ok(bytes) = jarvis_model::untrusted::read(&host, None, ENV_MAX) {
            if let Some(v) = dotenv_value(&String::from_utf8_lossy(&bytes), VAR) {
                let mtime = std::fs::symlink_metadata(&host).ok().map(|m| m.mtime());
                found = Some((v, env.display().to_string(), mtime));
            }
        }
    }
    let (value, path, mtime) = found?;
    truthy(&value).then(|| Pause {
        switch: Switch::Env,
        path,
        made_by: "environment".into(),
        by: None,
        since_unix: mtime,
        reason: None,
    })
}

pub fn read_record(paths: &Paths) -> Option<Record> {
    let text = std::fs::read(paths.host(Path::new(RECORD))).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Who runs this: the sudo caller, else the login user, else the user.
pub fn caller() -> String {
    if let Some(u) = std::env::var_os("SUDO_USER").filter(|u| !u.is_empty()) {
        return u.to_string_lossy().into_owned();
    }
    let login = std::fs::read_to_string("/proc/self/loginuid")
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .filter(|&uid| uid != u32::MAX);
    user_name(login.unwrap_or_else(|| nix::unistd::getuid().as_raw()))
}

/// What `set` did.
pub enum Made {
    Created,
    AlreadyThere,
}

/// Make the pause file in the code root, owned by the service user, and
/// record who and why. The code root is the service user's: walked
/// without links, the file made with O_EXCL|O_NOFOLLOW (never through a
/// link it planted), its owner set through the descriptor.
pub fn set(paths: &Paths, unit: &Unit, reason: Option<&str>) -> Result<Made> {
    let root = code_root(unit).ok_or_else(|| {
        Error::new("the unit has no WorkingDirectory=: no code root to pause")
            .with_note("check the unit with: jarvisctl configure --show")
    })?;
    let host_root = paths.host(&root);
    let dir = jarvis_model::untrusted::open_dir(&host_root)
        .map_err(|e| Error::io("open the code root", &host_root, e))?;
    let by = caller();
    let since = now_unix();
    let made = match openat(
        &dir,
        FILE,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    ) {
        Ok(fd) => {
            let note = format!(
                "paused by {by} at {} with jarvisctl pause{}\n",
                iso(since),
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            );
            let _ = nix::unistd::write(&fd, note.as_bytes());
            let user = unit.user();
            let group = unit.group().unwrap_or_else(|| user.clone());
            if let Some(a) = crate::provision::Account::lookup(&user, &group) {
                let _ = nix::unistd::fchown(fd.as_fd(), Some(a.uid.into()), Some(a.gid.into()));
            }
            Made::Created
        }
        Err(Errno::EEXIST) => Made::AlreadyThere,
        Err(e) => {
            return Err(Error::io(
                "create",
                &host_root.join(FILE),
                std::io::Error::from(e),
            ))
        }
    };
    if matches!(made, Made::Created) || read_record(paths).is_none() {
        write_record(
            paths,
            &Record {
                by,
                since_unix: since,
                reason: reason.map(String::from),
                file: root.join(FILE).display().to_string(),
            },
        )?;
    }
    Ok(made)
}

fn write_record(paths: &Paths, r: &Record) -> Result<()> {
    let path = paths.host(Path::new(RECORD));
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let mut text = serde_json::to_vec_pretty(r).unwrap_or_default();
    text.push(b'\n');
    // The default name (.tmp and 6 characters): what purge cleans up
    // after a write cut short.
    let mut tmp = tempfile::Builder::new()
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a file in", dir, e))?;
    std::io::Write::write_all(&mut tmp, &text).map_err(|e| Error::io("write", tmp.path(), e))?;
    let _ = std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644));
    tmp.persist(&path)
        .map_err(|e| Error::io("replace", &path, e.error))?;
    Ok(())
}

/// Remove the pause file (the name itself, never what a link points to)
/// and the record. Returns whether a file was removed.
pub fn clear(paths: &Paths, unit: &Unit) -> Result<bool> {
    let _ = std::fs::remove_file(paths.host(Path::new(RECORD)));
    let Some(root) = code_root(unit) else {
        return Ok(false);
    };
    let host_root = paths.host(&root);
    let dir = jarvis_model::untrusted::open_dir(&host_root)
        .map_err(|e| Error::io("open the code root", &host_root, e))?;
    let st = match fstatat(&dir, FILE, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => {
            return Err(Error::io(
                "look at",
                &host_root.join(FILE),
                std::io::Error::from(e),
            ))
        }
    };
    if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits() {
        return Err(Error::new(format!(
            "{} is a directory: it pauses the program, and jarvisctl does not delete directories",
            root.join(FILE).display()
        ))
        .with_note("remove it yourself, then: jarvisctl start"));
    }
    nix::unistd::unlinkat(&dir, FILE, nix::unistd::UnlinkatFlags::NoRemoveDir)
        .map_err(|e| Error::io("remove", &host_root.join(FILE), std::io::Error::from(e)))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_words_as_the_program_reads_them() {
        for v in ["1", "true", "TRUE", " yes ", "Y", "on", "On\n"] {
            assert!(truthy(v), "{v:?}");
        }
        for v in ["", "0", "false", "no", "off", "2", "yess", "enabled"] {
            assert!(!truthy(v), "{v:?}");
        }
    }

    #[test]
    fn dotenv_first_assignment_wins_split_at_first_equals() {
        let text =
            "# JARVIS_PAUSE_AUTOMATIONS=1\n JARVIS_PAUSE_AUTOMATIONS = on=x \nJARVIS_PAUSE_AUTOMATIONS=0\n";
        assert_eq!(dotenv_value(text, VAR).as_deref(), Some("on=x"));
        assert_eq!(dotenv_value("A=1\n", VAR), None);
    }

    #[test]
    fn condition_sees_the_file_and_the_dotenv() {
        let d = tempfile::tempdir().unwrap();
        assert!(condition(d.path()).is_none() || std::env::var_os(VAR).is_some());
        std::fs::write(d.path().join(".env"), "JARVIS_PAUSE_AUTOMATIONS= Yes\n").unwrap();
        if std::env::var_os(VAR).is_none() {
            let why = condition(d.path()).expect("paused by .env");
            assert!(why.contains(".env"), "{why}");
        }
        std::fs::write(d.path().join(FILE), "").unwrap();
        let why = condition(d.path()).expect("paused by the file");
        assert!(why.contains(FILE), "{why}");
    }
}
