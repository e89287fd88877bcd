//! Idempotent provisioning steps: the service user, its directories and the
//! mode of `.env`. Each step returns the changes it made, so that `setup`
//! can print one line per change and nothing when nothing changed.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Gid, Group, Uid, User};
use serde::Serialize;

use jarvis_model::error::{Error, Result};
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

/// Mode of every directory the service writes.
pub const DIR_MODE: u32 = 0o750;
/// Mode of `.env`: it holds the bot's secrets.
pub const ENV_MODE: u32 = 0o600;

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The file, directory or account that changed.
    pub target: String,
    /// What was done, in words.
    pub action: String,
}

impl Change {
    fn new(target: impl Into<String>, action: impl Into<String>) -> Self {
        Change {
            target: target.into(),
            action: action.into(),
        }
    }
}

/// An account on this host, resolved to numeric ids.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: String,
    pub group: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl Account {
    pub fn lookup(user: &str, group: &str) -> Option<Account> {
        let u = User::from_name(user).ok().flatten()?;
        let gid = Group::from_name(group).ok().flatten().map_or(u.gid, |g| g.gid);
        Some(Account {
            user: user.to_string(),
            group: group.to_string(),
            uid: u.uid.as_raw(),
            gid: gid.as_raw(),
            home: u.dir,
        })
    }
}

/// Whether a path the unit makes writable belongs to the service alone, so
/// that its owner and mode are the service's business: under the user's home
/// or under the directory holding the code root (/home/jarvis). Shared places
/// such as /tmp only have to exist.
pub fn is_managed(path: &Path, code_root: Option<&Path>, home: &Path) -> bool {
    path.starts_with(home)
        || code_root
            .and_then(Path::parent)
            .is_some_and(|p| p != Path::new("/") && path.starts_with(p))
}

/// Create the system user and group unless the user exists; an existing
/// user is reused unchanged, whatever its uid.
pub fn ensure_user(user: &str, group: &str, home: &Path) -> Result<(Account, Vec<Change>)> {
    if let Some(acct) = Account::lookup(user, group) {
        return Ok((acct, Vec::new()));
    }
    let group_exists = Group::from_name(group).ok().flatten().is_some();
    let home_s = home.to_string_lossy().into_owned();
    // Debian's adduser is the policy tool there; on other systems (and where
    // adduser is only a link to useradd) use useradd. Both lock the password.
    let debian_adduser = Path::new("/etc/debian_version").exists()
        && fs::symlink_metadata("/usr/sbin/adduser").is_ok_and(|m| m.file_type().is_file());
    let shell = no_login_shell();
    let mut cmd;
    if debian_adduser {
        cmd = Command::new("adduser");
        cmd.args(["--system", "--quiet", "--home", &home_s, "--shell", shell]);
        if group_exists {
            cmd.args(["--ingroup", group]);
        } else if group == user {
            cmd.arg("--group");
        } else {
            run_tool(Command::new("addgroup").args(["--system", "--quiet", group]))?;
            cmd.args(["--ingroup", group]);
        }
        cmd.arg(user);
    } else {
        if !group_exists && group != user {
            run_tool(Command::new("groupadd").args(["--system", group]))?;
        }
        cmd = Command::new("useradd");
        cmd.args([
            "--system",
            "--create-home",
            "--home-dir",
            &home_s,
            "--shell",
            shell,
        ]);
        if group_exists || group != user {
            cmd.args(["--gid", group]);
        } else {
            cmd.arg("--user-group");
        }
        cmd.arg(user);
    }
    run_tool(&mut cmd)?;
    let acct = Account::lookup(user, group).ok_or_else(|| {
        Error::new(format!("user {user} still does not exist after creating it"))
            .with_note("check /etc/passwd and the output above")
    })?;
    let change = Change::new(
        format!("user {user}"),
        format!(
            "created system user {user} (uid {}, group {group}) with home {home_s}",
            acct.uid
        ),
    );
    Ok((acct, vec![change]))
}

/// The service user never logs in: it holds trading keys, and nothing needs
/// its shell (deploy logs in as root, the engines switch users themselves,
/// logrotate's `su` takes no shell). The same choice as the sysusers.d file.
pub fn no_login_shell() -> &'static str {
    ["/usr/sbin/nologin", "/sbin/nologin"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/bin/false")
}

fn run_tool(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| {
        Error::new(format!("cannot run {shown}: {e}"))
            .with_note("install the adduser (Debian) or shadow-utils (RPM) package")
    })?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .with_note("fix the account database, then run: jarvisctl setup"));
    }
    Ok(())
}

/// Refuse to follow a symlink inside a directory the service user controls:
/// root must not be tricked into chown'ing a file elsewhere.
fn reject_symlinks(path: &Path, from: &Path) -> Result<()> {
    let mut cur = PathBuf::new();
    for comp in path.components() {
        cur.push(comp);
        if !cur.starts_with(from) || cur == from {
            continue;
        }
        if let Ok(m) = fs::symlink_metadata(&cur) {
            if m.file_type().is_symlink() {
                return Err(Error::new(format!("{} is a symbolic link", cur.display())).with_note(
                    "setup does not follow links in the service's own tree; replace it with the real file or directory",
                ));
            }
        }
    }
    Ok(())
}

/// Make `dir` exist. Directories this creates (parents included) belong to
/// the account, mode 0750. An existing directory's owner and mode are
/// corrected only when `manage` is set.
pub fn ensure_dir(dir: &Path, acct: &Account, manage: bool, guard: &Path) -> Result<Vec<Change>> {
    reject_symlinks(dir, guard)?;
    let mut changes = Vec::new();
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            if manage {
                // Changed through a descriptor opened without following
                // links: a link swapped in after the check above cannot
                // redirect the chmod or chown to a file of root's.
                let f = jarvis_model::untrusted::open_dir(dir).map_err(|e| Error::io("open", dir, e))?;
                let m = f.metadata().map_err(|e| Error::io("inspect", dir, e))?;
                changes.extend(fix_owner_mode(dir, &f, &m, acct, DIR_MODE)?);
            }
        }
        Ok(_) => {
            return Err(
                Error::new(format!("{} exists but is not a directory", dir.display()))
                    .with_note("move it away; the service needs a directory there"),
            )
        }
        Err(_) => {
            let mut missing = Vec::new();
            let mut cur = dir;
            while !cur.exists() {
                missing.push(cur.to_path_buf());
                match cur.parent() {
                    Some(p) => cur = p,
                    None => break,
                }
            }
            for d in missing.iter().rev() {
                // Made, chowned and chmodded through descriptors (the
                // umask may have narrowed the mode).
                jarvis_model::untrusted::ensure_dir(d, DIR_MODE, Some((acct.uid, acct.gid)))
                    .map_err(|e| Error::io("create directory", d, e))?;
                changes.push(Change::new(
                    d.display().to_string(),
                    format!(
                        "created directory {} ({}:{} {:04o})",
                        d.display(),
                        acct.user,
                        acct.group,
                        DIR_MODE
                    ),
                ));
            }
        }
    }
    Ok(changes)
}

/// Owner and mode made the account's and `mode`, through the open file or
/// directory `t`, never by path.
fn fix_owner_mode(
    path: &Path,
    t: &fs::File,
    m: &fs::Metadata,
    acct: &Account,
    mode: u32,
) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    if m.uid() != acct.uid || m.gid() != acct.gid {
        std::os::unix::fs::fchown(t, Some(acct.uid), Some(acct.gid))
            .map_err(|e| Error::io("change the owner of", path, e))?;
        changes.push(Change::new(
            path.display().to_string(),
            format!(
                "changed owner of {} from {}:{} to {}:{}",
                path.display(),
                name_of_uid(m.uid()),
                name_of_gid(m.gid()),
                acct.user,
                acct.group
            ),
        ));
    }
    let current = m.mode() & 0o7777;
    if current != mode {
        t.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("change the mode of", path, e))?;
        changes.push(Change::new(
            path.display().to_string(),
            format!(
                "changed mode of {} from {current:04o} to {mode:04o}",
                path.display()
            ),
        ));
    }
    Ok(changes)
}

/// If `.env` exists, make it the account's and 0600. Never creates,
/// rewrites or reads it.
pub fn secure_env_file(path: &Path, acct: &Account, guard: &Path) -> Result<Vec<Change>> {
    reject_symlinks(path, guard)?;
    let m = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("inspect", path, e)),
    };
    if !m.file_type().is_file() {
        return Err(Error::new(format!("{} is not a regular file", path.display()))
            .with_note("replace it with a plain KEY=VALUE file; links are not followed"));
    }
    // Opened without following links anywhere on the way, refused when it
    // has another link (a hard link to a file of root's), and changed
    // through the fd, so a link swapped in meanwhile cannot redirect the
    // chown. Nothing is read.
    let file = jarvis_model::untrusted::open_read(path, None).map_err(|e| {
        Error::io("open", path, e)
            .with_note("replace it with a plain KEY=VALUE file of its own; links are not followed")
    })?;
    let m = file.metadata().map_err(|e| Error::io("inspect", path, e))?;
    fix_owner_mode(path, &file, &m, acct, ENV_MODE)
}

/// The name of the account with `uid`, when this host has one.
pub fn user_name(uid: u32) -> Option<String> {
    User::from_uid(Uid::from_raw(uid)).ok().flatten().map(|u| u.name)
}

/// The name of the group with `gid`, when this host has one.
pub fn group_name(gid: u32) -> Option<String> {
    Group::from_gid(Gid::from_raw(gid)).ok().flatten().map(|g| g.name)
}

fn name_of_uid(uid: u32) -> String {
    user_name(uid).unwrap_or_else(|| uid.to_string())
}

fn name_of_gid(gid: u32) -> String {
    group_name(gid).unwrap_or_else(|| gid.to_string())
}

/// Everything the installed unit needs, made or corrected: the user, every
/// `ReadWritePaths=` entry, the working directory and the service's own
/// `EnvironmentFile=`s. `setup` runs it, and `configure --code-root` for the
/// new root.
pub fn for_unit(paths: &Paths) -> Result<Vec<Change>> {
    let unit = Unit::load(paths)?;
    let user = unit.user();
    let group = unit.group().unwrap_or_else(|| user.clone());
    let home = PathBuf::from("/home").join(&user);
    let mut changes = Vec::new();

    let acct = if paths.is_system() {
        let (acct, made) = ensure_user(&user, &group, &home)?;
        changes.extend(made);
        acct
    } else {
        // A rooted tree (tests, images): accounts are this host's.
        Account::lookup(&user, &group).ok_or_else(|| {
            Error::new(format!("user {user} does not exist on this host"))
                .with_note("a rooted setup does not create users; use an existing one in User=")
        })?
    };

    // In the service's own tree existing directories get their owner and
    // mode corrected; elsewhere (/tmp) only missing ones are made. Links are
    // not followed below the code root's parent, which the user controls.
    let code_root = unit.working_directory().map(|w| w.path);
    let guard = paths.host(code_root.as_deref().and_then(Path::parent).unwrap_or(&acct.home));

    if let Some(wd) = &code_root {
        let dir = paths.host(wd);
        changes.extend(ensure_dir(&dir, &acct, false, &guard)?);
    }
    for rw in unit.read_write_paths() {
        let dir = paths.host(&rw.path);
        let managed = is_managed(&rw.path, code_root.as_deref(), &acct.home);
        changes.extend(ensure_dir(&dir, &acct, managed, &guard)?);
    }
    // Only the service's own .env files; a server-wide one
    // (/etc/default/jarvis-supervisor) stays root's, as root wrote it.
    for env in unit
        .environment_files()
        .into_iter()
        .filter(|e| is_managed(&e.path, code_root.as_deref(), &acct.home))
    {
        let file = paths.host(&env.path);
        changes.extend(secure_env_file(&file, &acct, &guard)?);
    }
    Ok(changes)
}
