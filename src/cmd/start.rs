//! `jarvisctl start`: start the bot on whichever engine runs it, and wait
//! until it is ready. Exit 1, with the reason, when it failed, crashed at
//! start, is paused, or was not ready within TimeoutStartSec= + 10 s.

use crate::control::{self, Target};
use jarvis_cli::StartArgs;
use jarvis_model::error::Result;
use jarvis_model::paths::Paths;

pub fn run(paths: &Paths, args: &StartArgs) -> Result<i32> {
    let t = Target::new(paths, &args.on)?;
    let out = control::start(&t, control::start_bound(&t, args.timeout));
    Ok(out.report(args.json))
}
