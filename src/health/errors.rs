//! The error lines `status` shows: the program's own errors, judged by
//! their form, from the newest lines of its output, masked.

use super::output::Output;
use jarvis_model::masking::Masker;

/// A line the program logged as an error, judged by its form, never by a
/// word inside a message (`ready pid=43 write_errors=0` is not one): a
/// logging level of ERROR, CRITICAL or FATAL (`... - ERROR - ...` as the
/// program logs, or `ERROR:`/`ERROR ` at the start as Python's defaults
/// and plain prints do), a traceback, a Python exception line
/// (`ModuleNotFoundError: No module named 'aiohttp'`), Python's own fatal
/// error, or the preflight's `✗` line.
fn looks_bad(line: &str) -> bool {
    const LEVELS: [&str; 3] = ["ERROR", "CRITICAL", "FATAL"];
    let level_field = LEVELS.iter().any(|l| line.contains(&format!(" - {l} - ")));
    let level_first = LEVELS.iter().any(|l| {
        line.strip_prefix(l)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', ' ']))
            || line.starts_with(&format!("[{l}]"))
    });
    level_field
        || level_first
        || line.starts_with("Traceback")
        || line.starts_with("Fatal Python error")
        || line.starts_with("✗ ")
        || exception_line(line)
}

/// `RuntimeError: boom`, `aiohttp.client_exceptions.ClientConnectorError:
/// ...`, `KeyError`: a dotted name ending in Error or Exception, at the
/// start of the line, alone or before `: `.
fn exception_line(line: &str) -> bool {
    let name = line.split_once(": ").map_or(line, |(n, _)| n);
    let last = name.rsplit('.').next().unwrap_or(name);
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && (last.ends_with("Error") || last.ends_with("Exception"))
}

/// The last 5 error lines of `lines` (oldest first), masked.
fn last_errors<'a>(lines: impl Iterator<Item = &'a str>, secrets: &Masker) -> Vec<String> {
    let bad: Vec<&str> = lines.filter(|l| looks_bad(l)).collect();
    bad[bad.len().saturating_sub(5)..]
        .iter()
        .map(|l| secrets.mask(l))
        .collect()
}

/// The newest error lines of the bot's output in the last 24 h; a capture
/// file that could not be read is said, not skipped: the operator should
/// know why no line is shown.
pub(super) fn of_output(output: &Output, secrets: &Masker) -> Vec<String> {
    match output.for_errors() {
        Ok(lines) => last_errors(lines.iter().map(|l| l.text.as_str()), secrets),
        Err(e) => vec![format!("(error lines not shown: {e})")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_are_the_programs_levels_not_words_in_a_message() {
        // As the program and Python write them (docs/supervised-program.md).
        for bad in [
            "2026-12-01 05:28:18,129 - jarvis.supervisor - ERROR - [buy_bot] Component crashed (attempt 3/100): boom",
            "2026-12-01 05:28:18,129 - jarvis.supervisor - ERROR - [buy_bot] Max restarts reached, giving up",
            "2026-12-01 05:28:18,129 - jarvis.treasury - CRITICAL - wallet unreachable",
            "Traceback (most recent call last):",
            "RuntimeError: simulated failure of buy_bot",
            "ModuleNotFoundError: No module named 'aiohttp'",
            "aiohttp.client_exceptions.ClientConnectorError: Cannot connect to host",
            "KeyError",
            "Fatal Python error: Segmentation fault",
            "ERROR: request to https://api.telegram.org/bot****/getMe failed: timeout",
            "ERROR:root:plain logging.basicConfig format",
            "✗ env: TELEGRAM_BOT_TOKEN is missing — fix: add it to .env",
        ] {
            assert!(looks_bad(bad), "not an error line: {bad}");
        }
        for fine in [
            "standin: ready pid=43 write_errors=0",
            "2026-12-01 05:28:18,129 - jarvis.supervisor - INFO - errors so far: 0, failed orders: 0",
            "2026-12-01 05:28:18,129 - jarvis.supervisor - INFO - === COMPONENT HEALTH ===",
            "  buy_bot: failed (restarts: 100)",
            "  File \"bots/buy_bot.py\", line 1, in run",
            "2026-12-01 05:28:18,129 - jarvis.errors - WARNING - retrying after a timeout error",
            "ERRORS=0 in the last batch",
            "Exception handling is on",
            "",
        ] {
            assert!(!looks_bad(fine), "taken for an error line: {fine}");
        }
    }

    #[test]
    fn the_newest_error_lines_are_kept_in_order() {
        let lines = [
            "ERROR: one",
            "fine",
            "ERROR: two",
            "ERROR: three",
            "ERROR: four",
            "ERROR: five",
            "ERROR: six with SECRET",
        ];
        let got = last_errors(lines.into_iter(), &Masker::new(&["SECRET".to_string()]));
        assert_eq!(
            got,
            [
                "ERROR: two",
                "ERROR: three",
                "ERROR: four",
                "ERROR: five",
                "ERROR: six with ****"
            ]
        );
    }

    #[test]
    fn masking_hides_every_value_longest_first() {
        let secrets = vec!["123456789:abcdef".to_string(), "abcdef".to_string()];
        assert_eq!(
            Masker::new(&secrets).mask("url bot123456789:abcdef/x and abcdef"),
            "url bot****/x and ****"
        );
    }
}
