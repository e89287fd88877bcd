//! `jarvisctl condition`: the unit's `ExecCondition=`, run as the service
//! user in the code root before every start. Exit 1 when the program's
//! pause switch is set, so the start is skipped: not a failure, no
//! restart, no alert. Exit 0 otherwise, and on anything it cannot read
//! (the program then decides for itself).

use jarvis_model::error::Result;

pub fn run() -> Result<i32> {
    let here = std::env::current_dir().unwrap_or_default();
    // A panic would exit 101, which systemd takes as "skip the start":
    // whatever goes wrong here, the start goes on (the program decides).
    let paused = std::panic::catch_unwind(|| crate::pause::condition(&here)).unwrap_or(None);
    match paused {
        Some(why) => {
            // Never println!: a write error would panic, and any exit but
            // 0 skips the start, so only a pause may end here non-zero.
            use std::io::Write;
            let _ = writeln!(
                std::io::stdout(),
                "paused: {why}; not started (resume with: jarvisctl resume)"
            );
            Ok(1)
        }
        None => Ok(0),
    }
}
