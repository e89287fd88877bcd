//! `jarvisctl stop`: stop the bot on whichever engine runs it (systemd, or
//! `jarvisctl run`), and wait until nothing of it runs. Exit 1 when it is
//! still running after the stop timeout.

use crate::control::{self, Target};
use jarvis_cli::StopArgs;
use jarvis_model::error::Result;
use jarvis_model::paths::Paths;

pub fn run(paths: &Paths, args: &StopArgs) -> Result<i32> {
    let t = Target::new(paths, &args.on)?;
    let out = control::stop(&t, control::stop_bound(&t, args.timeout));
    Ok(out.report(args.json))
}
