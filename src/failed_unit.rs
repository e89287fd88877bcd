//! Why the bot's unit is `failed`, from systemd's own record (PID 1's
//! journal lines about the unit, which the service user cannot write):
//! with `Restart=always`, systemd leaves the unit failed when its start limit
//! refused a restart, or when a stop or restart job (an operator's
//! `systemctl stop`, the prerm of `apt remove`, a deploy's restart) ended a
//! run or a start step unclean. Only the first is a give-up; `Result=` does
//! not tell them apart (systemd 252 keeps the last run's result at the start
//! limit), so `check` and `alert` read these lines (issue 27).

use crate::systemd;
use jarvis_model::paths::UNIT;

/// What ended the unit in `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedBy {
    /// PID 1 wrote "Start request repeated too quickly.": systemd gave up.
    StartLimit,
    /// A stop or restart job ("Stopping ..."), after the last start limit.
    Stop,
    /// Neither is on record (the journal was rotated or is not kept).
    Unknown,
}

/// systemd's line when the start limit refuses a start.
const START_LIMIT: &str = "Start request repeated too quickly.";

/// The cause from PID 1's lines about the unit, oldest first (`-o cat`):
/// the newest of a start-limit line and a stop job's "Stopping " line. An
/// automatic restart writes "Stopped" without "Stopping", so a crash loop
/// never reads as a stop.
pub fn from_lines(text: &str) -> FailedBy {
    for line in text.lines().rev() {
        if line.contains(START_LIMIT) {
            return FailedBy::StartLimit;
        }
        if line.starts_with("Stopping ") {
            return FailedBy::Stop;
        }
    }
    FailedBy::Unknown
}

/// The cause on this host, from the journal of the last 24 h.
pub fn of_host() -> FailedBy {
    systemd::own_lines_24h(UNIT).map_or(FailedBy::Unknown, |t| from_lines(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const START_LIMIT_HIT: &str = include_str!("../tests/fixtures/systemd/pid1-start-limit.txt");
    const STOP_DURING_BACKOFF: &str = include_str!("../tests/fixtures/systemd/pid1-stop-during-backoff.txt");
    const KILL9: &str = include_str!("../tests/fixtures/systemd/pid1-kill9.txt");

    #[test]
    fn the_start_limit_line_is_a_give_up() {
        assert_eq!(from_lines(START_LIMIT_HIT), FailedBy::StartLimit);
    }

    #[test]
    fn a_stop_job_during_a_crash_loop_is_a_stop_not_a_give_up() {
        assert_eq!(from_lines(STOP_DURING_BACKOFF), FailedBy::Stop);
        // An operator's stop after an older give-up (reset-failed, started
        // again, stopped): the newest wins.
        let both = format!("{START_LIMIT_HIT}{STOP_DURING_BACKOFF}");
        assert_eq!(from_lines(&both), FailedBy::Stop);
        // And a give-up after an older stop.
        let both = format!("{STOP_DURING_BACKOFF}{START_LIMIT_HIT}");
        assert_eq!(from_lines(&both), FailedBy::StartLimit);
    }

    #[test]
    fn automatic_restarts_alone_are_neither() {
        // "Stopped ..." of each automatic restart is not a stop job.
        assert_eq!(from_lines(KILL9), FailedBy::Unknown);
        assert_eq!(from_lines(""), FailedBy::Unknown);
    }
}
