//! `jarvisctl check`: every known reason the service would not start, each
//! on one line with what was found and the command that fixes it. The
//! postinst starts the service only when it passes; the unit runs
//! `--preflight` (the fast, certain part) as `ExecStartPre=`. The findings
//! come from `diagnose`. `--instance NAME` checks one instance; without it,
//! a host with named instances has each checked after the default, each
//! line labelled with its instance, and the exit code is the worst.

use std::path::Path;

use crate::diagnose;
use crate::envrules;
use crate::report::{self, Finding, Show};
use jarvis_cli::CheckArgs;
use jarvis_model::error::Result;
use jarvis_model::instance::Instance;
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

pub fn run(paths: &Paths, args: &CheckArgs) -> Result<i32> {
    let rules = envrules::load(&paths.host(Path::new(envrules::PATH)))?;
    let findings = match &args.instance {
        Some(name) => {
            let instance = Instance::from_arg(Some(name))?.made(paths)?;
            let unit = Unit::load_named(paths, &instance.unit())?;
            let found = diagnose::checks(paths, &instance, &unit, &rules, args.preflight);
            match instance {
                Instance::Default => found,
                Instance::Named(_) => found.into_iter().map(|f| f.of(&instance)).collect(),
            }
        }
        None => {
            let unit = Unit::load(paths)?;
            let found = diagnose::checks(paths, &Instance::Default, &unit, &rules, args.preflight);
            // The preflight is the default unit's own ExecStartPre=.
            let named = if args.preflight {
                Vec::new()
            } else {
                Instance::installed(paths, false)
            };
            if named.is_empty() {
                found
            } else {
                let mut all: Vec<Finding> = found.into_iter().map(|f| f.of(&Instance::Default)).collect();
                for n in named {
                    all.extend(of_named(paths, &Instance::Named(n), &rules));
                }
                all
            }
        }
    };
    if args.preflight {
        diagnose::remember_for_backoff(&findings);
    }
    let show = if args.json {
        Show::Json
    } else if args.quiet {
        Show::Quiet
    } else if args.preflight {
        Show::Problems
    } else {
        Show::All
    };
    Ok(report::emit(&findings, show))
}

/// A named instance's findings; a unit that cannot be read is one.
fn of_named(paths: &Paths, instance: &Instance, rules: &[envrules::Rule]) -> Vec<Finding> {
    let found = match Unit::load_named(paths, &instance.unit()) {
        Ok(unit) => diagnose::checks(paths, instance, &unit, rules, false),
        Err(e) => vec![Finding::fail(
            "unit",
            format!("{} cannot be read: {e}", instance.unit()),
            format!("sudo jarvisctl check --instance {instance} says the same; fix the file it names"),
        )],
    };
    found.into_iter().map(|f| f.of(instance)).collect()
}
