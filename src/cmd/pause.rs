//! `jarvisctl pause`: stop trading safely with the program's own switch.
//! Makes `PAUSE_AUTOMATIONS` in the code root (owned by the service user),
//! records who paused it, when and why, then stops the bot and waits. A
//! paused bot is not started again by either engine, at boot either, and
//! raises no alert, until `jarvisctl resume`.

use crate::control::{self, Target};
use crate::pause::{self, Made};
use jarvis_cli::PauseArgs;
use jarvis_model::error::Result;
use jarvis_model::paths::Paths;

pub fn run(paths: &Paths, args: &PauseArgs) -> Result<i32> {
    let t = Target::new(paths, &args.on)?;
    let unit = t.unit()?;
    let made = pause::set(paths, &unit, args.reason.as_deref())?;
    if !args.json {
        let root = pause::code_root(&unit).unwrap_or_default().join(pause::FILE);
        match made {
            Made::Created => println!("pause: made {}", root.display()),
            Made::AlreadyThere => println!("pause: {} was already there; kept", root.display()),
        }
    }
    let mut out = control::stop(&t, control::stop_bound(&t, args.timeout));
    out.action = "pause";
    out.pause = pause::detect(paths, &unit);
    Ok(out.report(args.json))
}
