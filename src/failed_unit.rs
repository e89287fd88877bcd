//! Why the bot's unit is `failed`, from systemd's own record (PID 1's
//! journal entries about the unit, which the service user cannot write):
//! with `Restart=always`, systemd leaves the unit failed when its start limit
//! refused a restart, or when a stop or restart job (an operator's
//! `systemctl stop`, the prerm of `apt remove`, a deploy's restart) ended a
//! run or a start step unclean. Only the first is a give-up; `Result=` does
//! not tell them apart (systemd 252 keeps the last run's result at the start
//! limit), so `check` and `alert` read these lines (issue 27).

use jarvis_model::paths::UNIT;

/// What ended the unit in `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedBy {
    /// PID 1 wrote "Start request repeated too quickly.": systemd gave up.
    StartLimit,
    /// A stop job ended it (`JOB_TYPE=stop`), after the last start limit.
    Stop,
    /// Neither is on record (the journal was rotated or is not kept).
    Unknown,
}

/// systemd's line when the start limit refuses a start.
const START_LIMIT: &str = "Start request repeated too quickly.";

/// The cause from PID 1's entries about the unit, oldest first, as
/// `journalctl -o json` gives them (one JSON object a line): the newest of
/// a start-limit line and the end of a stop job (`JOB_TYPE=stop`, on the
/// "Stopped ..." line). An automatic restart's "Stopped" is a restart job's,
/// so a crash loop never reads as a stop; a stop of a unit in its start
/// steps writes no "Stopping ..." line (systemd 252), so that line is not
/// the evidence.
pub fn from_json_lines(text: &str) -> FailedBy {
    for line in text.lines().rev() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["MESSAGE"].as_str().is_some_and(|m| m.contains(START_LIMIT)) {
            return FailedBy::StartLimit;
        }
        if v["JOB_TYPE"].as_str() == Some("stop") {
            return FailedBy::Stop;
        }
    }
    FailedBy::Unknown
}

/// The cause on this host, from PID 1's journal entries of the last 24 h.
pub fn of_host() -> FailedBy {
    of_unit(UNIT)
}

/// [`of_host`] for `unit` (a named instance's).
pub fn of_unit(unit: &str) -> FailedBy {
    let mut cmd = std::process::Command::new("journalctl");
    cmd.args([
        "_PID=1",
        &format!("UNIT={unit}"),
        "--since",
        "-24h",
        "-o",
        "json",
        "--output-fields=MESSAGE,JOB_TYPE",
        "--no-pager",
        "-q",
    ]);
    crate::runner::tool(cmd)
        .filter(|o| o.success())
        .map_or(FailedBy::Unknown, |o| {
            from_json_lines(&String::from_utf8_lossy(&o.stdout))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const START_LIMIT_HIT: &str = include_str!("../tests/fixtures/systemd/pid1-start-limit.jsonl");
    const STOP_DURING_BACKOFF: &str =
        include_str!("../tests/fixtures/systemd/pid1-stop-during-backoff.jsonl");

    #[test]
    fn the_start_limit_line_is_a_give_up() {
        assert_eq!(from_json_lines(START_LIMIT_HIT), FailedBy::StartLimit);
    }

    #[test]
    fn a_stop_job_during_a_crash_loop_is_a_stop_not_a_give_up() {
        assert_eq!(from_json_lines(STOP_DURING_BACKOFF), FailedBy::Stop);
        // An operator's stop after an older give-up (reset-failed, started
        // again, stopped): the newest wins.
        let both = format!("{START_LIMIT_HIT}{STOP_DURING_BACKOFF}");
        assert_eq!(from_json_lines(&both), FailedBy::Stop);
        // And a give-up after an older stop.
        let both = format!("{STOP_DURING_BACKOFF}{START_LIMIT_HIT}");
        assert_eq!(from_json_lines(&both), FailedBy::StartLimit);
    }

    #[test]
    fn automatic_restarts_alone_are_neither() {
        // The crash loop before the stop: "Stopped ..." of each automatic
        // restart is a restart job's, not a stop.
        let before_the_stop: String = STOP_DURING_BACKOFF
            .lines()
            .take_while(|l| !l.contains("status=15/TERM"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            before_the_stop.contains("\"JOB_TYPE\":\"restart\""),
            "{before_the_stop}"
        );
        assert_eq!(from_json_lines(&before_the_stop), FailedBy::Unknown);
        assert_eq!(from_json_lines(""), FailedBy::Unknown);
        assert_eq!(from_json_lines("not json\n"), FailedBy::Unknown);
    }
}
