//! `jarvisctl settle`: finishes, on this host, a deploy that was cut off
//! (see `deploy::settle`). Run as root by the unit before every start, by
//! the postinst and by `status --record`. Exit 0 when the code is whole
//! (settled now, nothing to settle, or a live deploy's swap has ended), 1
//! when it could not be settled: the start must not go on then.

use jarvis_cli::SettleArgs;
use jarvis_model::error::{exit, Error, Result};
use jarvis_model::paths::Paths;

use crate::deploy::settle::{self, Settled};

pub fn run(paths: &Paths, args: &SettleArgs) -> Result<i32> {
    let done = settle::settle(paths, args.by.phrase(), false).map_err(|e| {
        Error::new(format!("settle: {e}"))
            .with_code(exit::FAILURE)
            .with_note("the bot is not started on code that may be half of one deploy and half of another; fix the cause above, then run: jarvisctl settle")
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&done).unwrap_or_default());
        return Ok(0);
    }
    match &done {
        Settled::Nothing => {}
        Settled::LiveDeploy { id, phase, waited_s } => println!(
            "settle: deploy {} is under way ({phase}): it settles itself{}",
            id.as_deref().unwrap_or("-"),
            if *waited_s > 0.0 {
                format!("; waited {waited_s} s for its swap to end")
            } else {
                String::new()
            }
        ),
        Settled::StepRunning { id, phase } => println!(
            "settle: a step of deploy {} ({phase}) still runs, cut off from its client: settled at the next start",
            id.as_deref().unwrap_or("-")
        ),
        Settled::LeftForStart { id, phase } => println!(
            "settle: deploy {id} was cut off while {phase}: left for the bot's next start (jarvisctl restart)"
        ),
        Settled::Done { done, seconds } => {
            for l in done {
                println!("settle: {}", jarvis_model::defuse::printable(l));
            }
            println!("settle: done in {seconds} s");
        }
    }
    Ok(0)
}
