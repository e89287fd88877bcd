//! `jarvisctl check`: every known reason the service would not start, each
//! on one line with what was found and the command that fixes it. The
//! postinst starts the service only when it passes; the unit runs
//! `--preflight` (the fast, certain part) as `ExecStartPre=`. The findings
//! come from `diagnose`.

use std::path::Path;

use crate::diagnose;
use crate::envrules;
use crate::report::{self, Show};
use jarvis_cli::CheckArgs;
use jarvis_model::error::Result;
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

pub fn run(paths: &Paths, args: &CheckArgs) -> Result<i32> {
    let unit = Unit::load(paths)?;
    let rules = envrules::load(&paths.host(Path::new(envrules::PATH)))?;
    let findings = diagnose::checks(paths, &unit, &rules, args.preflight);
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
