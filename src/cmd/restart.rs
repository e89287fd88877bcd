//! `jarvisctl restart`: stop and start the bot on whichever engine runs it,
//! and wait until a new main process is ready. Exit 1 when it is not.

use crate::control::{self, Target};
use jarvis_cli::StartArgs;
use jarvis_model::error::Result;
use jarvis_model::paths::Paths;

pub fn run(paths: &Paths, args: &StartArgs) -> Result<i32> {
    let t = Target::new(paths, &args.on)?;
    let out = control::restart(
        &t,
        control::start_bound(&t, args.timeout),
        control::stop_bound(&t, None),
    );
    Ok(out.report(args.json))
}
