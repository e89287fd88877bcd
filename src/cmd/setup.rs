//! `jarvisctl setup`: idempotent provisioning, run by the package's
//! postinst and by hand. Everything it creates comes from the installed
//! unit: the user, every `ReadWritePaths=` entry, the working directory and
//! the `EnvironmentFile=`.

use std::path::{Path, PathBuf};

use crate::cli::SetupArgs;
use crate::error::{exit, Error, Result};
use crate::paths::Paths;
use crate::provision::{self, Account, Change};
use crate::unit::Unit;

pub fn run(paths: &Paths, args: &SetupArgs) -> Result<i32> {
    let changes = provision(paths)?;
    if args.json {
        let doc = serde_json::json!({ "changes": changes });
        println!("{doc}");
    } else {
        for c in &changes {
            println!("{}", c.action);
        }
    }
    Ok(exit::OK)
}

pub fn provision(paths: &Paths) -> Result<Vec<Change>> {
    let unit = Unit::load(paths)?;
    let user = unit.user();
    let group = unit.group().unwrap_or_else(|| user.clone());
    let home = PathBuf::from("/home").join(&user);
    let mut changes = Vec::new();

    let acct = if paths.is_system() {
        let (acct, made) = provision::ensure_user(&user, &group, &home)?;
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
        changes.extend(provision::ensure_dir(&dir, &acct, false, &guard)?);
    }
    for rw in unit.read_write_paths() {
        let dir = paths.host(&rw.path);
        let managed = provision::is_managed(&rw.path, code_root.as_deref(), &acct.home);
        changes.extend(provision::ensure_dir(&dir, &acct, managed, &guard)?);
    }
    // Only the service's own .env files; a server-wide one
    // (/etc/default/jarvis-supervisor) stays root's, as root wrote it.
    for env in unit
        .environment_files()
        .into_iter()
        .filter(|e| provision::is_managed(&e.path, code_root.as_deref(), &acct.home))
    {
        let file = paths.host(&env.path);
        changes.extend(provision::secure_env_file(&file, &acct, &guard)?);
    }
    Ok(changes)
}
