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

/// Text from outside (the bot's log lines, its `STATUS=`, a file's name,
/// another host's report) as it may reach a terminal: controls escaped.
pub use jarvis_model::defuse::printable;

/// A table for a terminal: columns padded to their widest cell, the last
/// one (a free-text note) left as it is; every cell defused. One line each.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let rows: Vec<[String; N]> = rows.iter().map(|r| r.clone().map(|c| printable(&c))).collect();
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_table_pads_all_but_the_note_and_defuses_cells() {
        let t = super::table(&[
            ["HOST".to_string(), "RESULT".into(), "NOTE".into()],
            ["a".into(), "OK".into(), "fine \u{1b}[2J".into()],
        ]);
        assert_eq!(t.lines().next(), Some("HOST  RESULT  NOTE"));
        assert!(t.lines().nth(1).unwrap().starts_with("a     OK      fine "));
        assert!(!t.contains('\u{1b}'));
    }
}
