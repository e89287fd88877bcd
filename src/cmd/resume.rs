//! `jarvisctl resume`: undo `jarvisctl pause` (or a pause file made by
//! hand): remove `PAUSE_AUTOMATIONS` from the code root and the record,
//! then start the bot and wait until it is ready. A pause set by
//! `JARVIS_PAUSE_AUTOMATIONS` is the operator's own setting: named, never
//! edited.

use crate::control::{self, Target};
use crate::pause;
use jarvis_cli::StartArgs;
use jarvis_model::error::{Error, Result};
use jarvis_model::paths::Paths;

pub fn run(paths: &Paths, args: &StartArgs) -> Result<i32> {
    let t = Target::new(paths, &args.on)?;
    let unit = t.unit()?;
    let removed = pause::clear(paths, &unit)?;
    if let Some(p) = pause::detect(paths, &unit) {
        return Err(Error::new(format!("still {}", p.describe())).with_note(format!(
            "remove {}=... from {} (or set it to 0), then: jarvisctl start",
            pause::VAR,
            p.path
        )));
    }
    if removed && !args.json {
        let file = pause::code_root(&unit).unwrap_or_default().join(pause::FILE);
        println!("resume: removed {}", file.display());
    }
    let mut out = control::start(&t, control::start_bound(&t, args.timeout));
    out.action = "resume";
    Ok(out.report(args.json))
}
