//! `jarvisctl condition`: the unit's `ExecCondition=`, run as the service
//! user in the code root before every start. Exit 1 when the program's
//! pause switch is set, so the start is skipped: not a failure, no
//! restart, no alert. Exit 0 otherwise, and on anything it cannot read
//! (the program then decides for itself).

use crate::error::Result;

pub fn run() -> Result<i32> {
    let here = std::env::current_dir().unwrap_or_default();
    match crate::pause::condition(&here) {
        Some(why) => {
            println!("paused: {why}; not started (resume with: jarvisctl resume)");
            Ok(1)
        }
        None => Ok(0),
    }
}
