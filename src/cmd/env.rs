//! `jarvisctl env lint FILE`: the `.env` checks of `check` on any file,
//! before a deploy. It never prints a value.

use std::path::Path;

use crate::envcheck::EnvCheck;
use crate::envrules;
use crate::report::{self, Show};
use crate::systemd;
use jarvis_cli::EnvLintArgs;
use jarvis_model::error::Result;
use jarvis_model::paths::Paths;

pub fn lint(paths: &Paths, args: &EnvLintArgs) -> Result<i32> {
    let rules_path = args
        .rules
        .clone()
        .unwrap_or_else(|| paths.host(Path::new(envrules::PATH)));
    let rules = envrules::load(&rules_path)?;
    let version = args.systemd.or_else(systemd::version).unwrap_or(u32::MAX);
    let check = EnvCheck {
        account: None,
        rules: &rules,
        systemd: version,
        inherited: None,
    };
    let (findings, _) = check.run(&args.file, &args.file);
    Ok(report::emit(
        &findings,
        if args.json { Show::Json } else { Show::All },
    ))
}
