//! The variables `.env` must define, and the form of each value:
//! `/etc/jarvis-supervisor/env-rules.conf` (a conffile), with the program's
//! own two requirements as the default.

use std::path::Path;

use regex::Regex;

use jarvis_model::error::{Error, Result};

pub const PATH: &str = "/etc/jarvis-supervisor/env-rules.conf";

/// The rules shipped in the conffile, used when it is absent.
const DEFAULT: &str = include_str!("../packaging/etc/env-rules.conf");

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub pattern: Regex,
    pub form: String,
}

impl Rule {
    pub fn matches(&self, value: &str) -> bool {
        self.pattern.is_match(value)
    }
}

/// Read the rules file at `path`, or the defaults when it does not exist.
pub fn load(path: &Path) -> Result<Vec<Rule>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => parse(Path::new(PATH), DEFAULT),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

pub fn parse(path: &Path, text: &str) -> Result<Vec<Rule>> {
    let mut rules = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(pattern)) = (words.next(), words.next()) else {
            return Err(Error::config(path, i + 1, "expected NAME REGEX DESCRIPTION")
                .with_note("e.g. TELEGRAM_ADMIN_IDS  ^[0-9]{6,15}(,[0-9]{6,15})*$  comma-separated ids"));
        };
        if !jarvis_model::envfile::valid_name(name) {
            return Err(
                Error::config(path, i + 1, format!("{name:?} is not a variable name"))
                    .with_note("use letters, digits and _, not starting with a digit"),
            );
        }
        let pattern = Regex::new(pattern).map_err(|e| {
            Error::config(
                path,
                i + 1,
                format!("the pattern for {name} is not a regular expression: {e}"),
            )
            .with_note("see https://docs.rs/regex for the syntax")
        })?;
        let form = words.collect::<Vec<_>>().join(" ");
        rules.push(Rule {
            name: name.to_string(),
            pattern,
            form,
        });
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_program_contract() {
        let rules = parse(Path::new(PATH), DEFAULT).unwrap();
        let token = rules.iter().find(|r| r.name == "TELEGRAM_BOT_TOKEN").unwrap();
        assert!(token.matches("123456789:AAFakeTokenForTestsOnly_abcdefghijklmn"));
        assert!(!token.matches("1234567:AAFakeTokenForTestsOnly_abcdefghijklmn"));
        assert!(!token.matches("123456789:short"));
        let ids = rules.iter().find(|r| r.name == "TELEGRAM_ADMIN_IDS").unwrap();
        assert!(ids.matches("123456,123456789012345"));
        assert!(!ids.matches("12345"));
        assert!(!ids.matches("123456, 1234567"));
    }

    #[test]
    fn a_bad_rule_names_file_and_line() {
        let err = parse(Path::new("/etc/x.conf"), "# c\nGOOD ^a$ a\nBAD ([ x\n").unwrap_err();
        assert!(err.to_string().contains("/etc/x.conf:3"), "{err}");
    }
}
