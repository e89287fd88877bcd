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
