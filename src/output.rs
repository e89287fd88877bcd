//! Human output: one line per finding, colored only on a terminal and
//! never when `NO_COLOR` is set.

use std::io::IsTerminal;

pub struct Style {
    color: bool,
}

impl Style {
    pub fn stdout() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: !no_color && std::io::stdout().is_terminal(),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn pass(&self) -> String {
        self.paint("32", "✓")
    }

    pub fn fail(&self) -> String {
        self.paint("31", "✗")
    }

    pub fn warn(&self) -> String {
        self.paint("33", "!")
    }
}

/// Text from outside (the bot's log lines, its `STATUS=`, another host's
/// report) as it may reach a terminal: every control character but the tab
/// becomes U+FFFD, so an escape sequence cannot retitle the window, clear
/// the screen or move the cursor.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_sequences_are_defused() {
        assert_eq!(
            super::printable("ok\x1b]0;pwned\x07 \x1b[2J\u{9b}31m\tend"),
            "ok\u{fffd}]0;pwned\u{fffd} \u{fffd}[2J\u{fffd}31m\tend"
        );
    }
}
