//! `.env` files read with systemd's `EnvironmentFile=` rules (the state
//! machine of systemd's env-file.c), with a finding for every line where
//! systemd and a shell (`set -a; . .env`) would not agree. Values are kept
//! only to check them: no finding ever carries one.

use serde::Serialize;

/// One assignment, as systemd would put it in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub key: String,
    pub value: String,
    /// The line the assignment starts on (1-based).
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A UTF-8 byte-order mark before the first key.
    Bom,
    /// A line ends in CR LF.
    Crlf,
    /// `export KEY=...`
    Export,
    /// A key systemd does not accept (it drops the assignment).
    InvalidName,
    /// Spaces around `=`.
    SpaceAroundEquals,
    /// A line with no `=`.
    NoEquals,
    /// `VALUE # comment`: the comment is part of the value for systemd.
    TrailingComment,
    /// `$VAR` / `${VAR}` / `$(cmd)` / backticks: systemd keeps them literally.
    Expansion,
    /// A quote that is never closed: systemd reads to the end of the file.
    UnclosedQuote,
    /// An unquoted value with spaces or shell syntax in it.
    UnquotedSpecial,
    /// A backslash at the end of a line joins the next one.
    Continuation,
    /// The same key assigned again; the later one wins.
    Duplicate,
    /// Not valid UTF-8.
    NotUtf8,
    /// A control character in the value.
    ControlChar,
    /// A comment ending in a backslash: systemd before 254 also makes the
    /// next line a comment.
    CommentContinuation,
}

impl Kind {
    /// What is wrong, in words, without the value.
    pub fn problem(self) -> &'static str {
        match self {
            Kind::Bom => "starts with a UTF-8 byte-order mark: systemd reads the first key with it and drops it",
            Kind::Crlf => "ends in CR LF (Windows line ending): a shell keeps the CR in the value, systemd strips it",
            Kind::Export => "has an 'export' prefix: systemd reads 'export KEY' as the name and drops the line",
            Kind::InvalidName => "has a name systemd does not accept (letters, digits and _ only, not starting with a digit): the line is dropped",
            Kind::SpaceAroundEquals => "has spaces around '=': systemd accepts it, a shell runs the key as a command",
            Kind::NoEquals => "has no '=': systemd ignores the line, a shell runs it as a command",
            Kind::TrailingComment => "has a '# comment' after the value: systemd makes the comment part of the value",
            Kind::Expansion => "uses $ or backquotes: systemd does not expand them, the value keeps them literally",
            Kind::UnclosedQuote => "opens a quote that is never closed: systemd reads every following line into this value",
            Kind::UnquotedSpecial => "has spaces or shell syntax in an unquoted value: systemd keeps them, a shell does not",
            Kind::Continuation => "ends in a backslash: systemd joins the next line to the value, the program's own .env reader does not",
            Kind::Duplicate => "assigns a key already assigned above: the later value wins",
            Kind::NotUtf8 => "is not valid UTF-8: systemd refuses the whole file and the service does not start",
            Kind::ControlChar => "has a control character in the value",
            Kind::CommentContinuation => "is a comment ending in a backslash: systemd before 254 also ignores the next line, 254 and later do not",
        }
    }

    /// How to fix it.
    pub fn fix(self) -> &'static str {
        match self {
            Kind::Bom => "save the file as UTF-8 without BOM (sed -i '1s/^\\xEF\\xBB\\xBF//' .env)",
            Kind::Crlf => "convert to LF line endings (sed -i 's/\\r$//' .env)",
            Kind::Export => "remove 'export ' from the line",
            Kind::InvalidName => "rename the key to [A-Za-z_][A-Za-z0-9_]*",
            Kind::SpaceAroundEquals => "write KEY=VALUE without spaces around '='",
            Kind::NoEquals => "make it KEY=VALUE, or a comment starting with #",
            Kind::TrailingComment => "move the comment to a line of its own",
            Kind::Expansion => "write the value out in full; nothing is expanded",
            Kind::UnclosedQuote => "close the quote on the same line",
            Kind::UnquotedSpecial => "quote the value: KEY=\"a b\"",
            Kind::Continuation => "put the whole value on one line",
            Kind::Duplicate => "keep one assignment of the key",
            Kind::NotUtf8 => "save the file as UTF-8",
            Kind::ControlChar => "remove the control character",
            Kind::CommentContinuation => "remove the backslash at the end of the comment",
        }
    }

    /// Every kind fails the check: each is a line whose meaning depends on
    /// who reads it (systemd, a shell, the program's own reader), and a
    /// trading bot must not run on a guess.
    pub fn is_error(self) -> bool {
        true
    }
}

/// One problem: a line, the key when known, the kind. Never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub kind: Kind,
}

/// The result of reading a file: what systemd would set, and the findings.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Accepted assignments in file order; a later one for the same key wins.
    pub vars: Vec<Var>,
    /// systemd refuses the whole file (invalid UTF-8): the unit cannot start.
    pub refused: bool,
    pub findings: Vec<Finding>,
}

impl Parsed {
    /// The value systemd ends up with for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|v| v.key == key)
            .map(|v| v.value.as_str())
    }
}

/// The kernel's limit on one `KEY=VALUE` string (MAX_ARG_STRLEN, 32 pages).
const MAX_ARG_STRLEN: usize = 32 * 4096;

/// Why execve(2) would refuse this environment, if it would: one
/// `KEY=VALUE` over 128 KiB, or all of them (strings and pointers) over
/// ARG_MAX. systemd and `jarvisctl run` then fail every start with
/// "Argument list too long", so it is said before a start.
pub fn exec_refusal<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<String> {
    let limit = nix::unistd::sysconf(nix::unistd::SysconfVar::ARG_MAX)
        .ok()
        .flatten()
        .and_then(|v| usize::try_from(v).ok())
        .unwrap_or(2 << 20);
    let (mut n, mut total) = (0usize, 0usize);
    for (k, v) in vars {
        let len = k.len() + v.len() + 2;
        if len > MAX_ARG_STRLEN {
            let key = safe_key(k).unwrap_or_else(|| "a variable".into());
            return Some(format!(
                "{key} is {len} bytes long: the kernel starts no program with one variable over {MAX_ARG_STRLEN} bytes"
            ));
        }
        n += 1;
        total += len + std::mem::size_of::<usize>();
    }
    (total > limit).then(|| {
        format!(
            "its {n} variables take {total} bytes: the kernel starts no program whose environment is over {limit} bytes (ARG_MAX)"
        )
    })
}

/// systemd's WHITESPACE: space, tab, newline, carriage return.
fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// `env_name_is_valid`: letters, digits and `_`, not starting with a digit.
/// The part of a key that a finding may show: all of it when it looks like
/// a name (letters, digits, `_`, `-`, `.`; `API-KEY`, `2FA_SEED`), else its
/// leading name characters (at most 64) with "…", else nothing.
fn safe_key(key: &str) -> Option<String> {
    if valid_name(key)
        || (key.len() <= 64
            && !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
    {
        return Some(key.to_string());
    }
    let prefix: String = key
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    (!prefix.is_empty()).then(|| format!("{prefix}…"))
}

pub fn valid_name(key: &str) -> bool {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    SingleQuote,
    DoubleQuote,
    DoubleQuoteEscape,
    Comment,
    CommentEscape,
}

/// What the state machine saw while reading one assignment, for the findings.
#[derive(Default)]
struct Notes {
    quoted: bool,
    unquoted_special: bool,
    unquoted_space: bool,
    dollar: bool,
    continuation: bool,
    space_before_eq: bool,
    space_after_eq: bool,
    hash_after_space: bool,
}

/// Read `bytes` as the newest systemd reads `EnvironmentFile=`.
pub fn parse(bytes: &[u8]) -> Parsed {
    parse_for(bytes, u32::MAX)
}

/// Read `bytes` as systemd `version` reads `EnvironmentFile=`.
pub fn parse_for(bytes: &[u8], version: u32) -> Parsed {
    let mut out = Parsed::default();
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(e) => {
            // systemd refuses invalid UTF-8 per assignment; report the line of
            // the first bad byte and read the rest lossily.
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            out.findings.push(Finding {
                line,
                key: None,
                kind: Kind::NotUtf8,
            });
            out.refused = true;
            String::from_utf8_lossy(bytes)
        }
    };
    let text: &str = &text;
    if text.starts_with('\u{feff}') {
        // Kept in the first key, as systemd does: that drops the key.
        out.findings.push(Finding {
            line: 1,
            key: None,
            kind: Kind::Bom,
        });
    }
    for (i, l) in text.split('\n').enumerate() {
        if l.ends_with('\r') {
            out.findings.push(Finding {
                line: i + 1,
                key: None,
                kind: Kind::Crlf,
            });
        }
    }

    let mut state = State::PreKey;
    let mut key = String::new();
    let mut value = String::new();
    let mut last_key_ws: Option<usize> = None;
    let mut last_value_ws: Option<usize> = None;
    let mut line = 1usize;
    let mut start_line = 1usize;
    let mut notes = Notes::default();
    let mut pending_space = false;

    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut push = |out: &mut Parsed, key: &str, value: &str, start: usize, notes: &Notes| {
        let mut name = key;
        let bom = name.starts_with('\u{feff}');
        if bom {
            name = &name[3..];
        }
        let export = name.starts_with("export ") || name.starts_with("export\t");
        let kind_for_name = if export {
            Some(Kind::Export)
        } else if bom {
            None // reported once as Bom
        } else if !valid_name(name) {
            Some(Kind::InvalidName)
        } else {
            None
        };
        // What a finding may show of the name: a line that is not a valid
        // assignment can hold anything (`DATABASE_URL: postgres://u:PASS@..`
        // parses with all of that as the "name"), so only its leading run
        // of name characters, never the rest.
        let shown_key = safe_key(if export { name[7..].trim() } else { name });
        if let Some(k) = kind_for_name {
            out.findings.push(Finding {
                line: start,
                key: shown_key.clone(),
                kind: k,
            });
        }
        let mut f = |kind| {
            out.findings.push(Finding {
                line: start,
                key: shown_key.clone(),
                kind,
            })
        };
        if notes.space_before_eq || notes.space_after_eq {
            f(Kind::SpaceAroundEquals);
        }
        if notes.hash_after_space {
            f(Kind::TrailingComment);
        } else if notes.unquoted_space || notes.unquoted_special {
            f(Kind::UnquotedSpecial);
        }
        if notes.dollar {
            f(Kind::Expansion);
        }
        if notes.continuation {
            f(Kind::Continuation);
        }
        if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            f(Kind::ControlChar);
        }
        if kind_for_name.is_some() || bom {
            return;
        }
        // A set, not a scan of every earlier key: a 1,000,000-line file
        // is read in linear time.
        if !seen.insert(name.to_string()) {
            f(Kind::Duplicate);
        }
        out.vars.push(Var {
            key: name.to_string(),
            value: value.to_string(),
            line: start,
        });
    };

    let chars: Vec<char> = text.chars().collect();
    for &c in &chars {
        match state {
            State::PreKey => {
                if c == '#' || c == ';' {
                    state = State::Comment;
                } else if !is_ws(c) {
                    state = State::Key;
                    last_key_ws = None;
                    key.clear();
                    key.push(c);
                    start_line = line;
                    notes = Notes::default();
                }
            }
            State::Key => {
                if c == '\n' {
                    out.findings.push(Finding {
                        line: start_line,
                        key: None,
                        kind: Kind::NoEquals,
                    });
                    state = State::PreKey;
                    key.clear();
                } else if c == '=' {
                    if let Some(n) = last_key_ws {
                        key.truncate(n);
                        notes.space_before_eq = true;
                    }
                    state = State::PreValue;
                    last_value_ws = None;
                    pending_space = false;
                    value.clear();
                } else {
                    if !is_ws(c) {
                        last_key_ws = None;
                    } else if last_key_ws.is_none() {
                        last_key_ws = Some(key.len());
                    }
                    key.push(c);
                }
            }
            State::PreValue => {
                if c == '\n' {
                    state = State::PreKey;
                    push(&mut out, &key, &value, start_line, &notes);
                    continue_line(&mut line, c);
                    continue;
                }
                if !is_ws(c) && pending_space {
                    // Only a space followed by a value counts ("KEY= v").
                    notes.space_after_eq = true;
                }
                if !is_ws(c) {
                    pending_space = false;
                }
                if c == '\'' {
                    state = State::SingleQuote;
                    notes.quoted = true;
                } else if c == '"' {
                    state = State::DoubleQuote;
                    notes.quoted = true;
                } else if c == '\\' {
                    state = State::ValueEscape;
                } else if !is_ws(c) {
                    state = State::Value;
                    note_unquoted(&mut notes, c, false);
                    value.push(c);
                } else if c != '\r' {
                    if value.is_empty() && !notes.quoted {
                        pending_space = true;
                    } else {
                        // After a closing quote: "KEY='a' b".
                        notes.unquoted_space = true;
                    }
                }
            }
            State::Value => {
                if c == '\n' {
                    if let Some(n) = last_value_ws {
                        value.truncate(n);
                    }
                    state = State::PreKey;
                    push(&mut out, &key, &value, start_line, &notes);
                } else if c == '\\' {
                    state = State::ValueEscape;
                    last_value_ws = None;
                } else {
                    if !is_ws(c) {
                        let after_space = last_value_ws.is_some();
                        last_value_ws = None;
                        note_unquoted(&mut notes, c, after_space);
                    } else if last_value_ws.is_none() {
                        last_value_ws = Some(value.len());
                    }
                    value.push(c);
                }
            }
            State::ValueEscape => {
                state = State::Value;
                if c == '\n' {
                    notes.continuation = true;
                } else {
                    value.push(c);
                }
            }
            State::SingleQuote => {
                if c == '\'' {
                    state = State::PreValue;
                } else {
                    value.push(c);
                }
            }
            State::DoubleQuote => {
                if c == '"' {
                    state = State::PreValue;
                } else if c == '\\' {
                    state = State::DoubleQuoteEscape;
                } else {
                    if c == '$' || c == '`' {
                        notes.dollar = true;
                    }
                    value.push(c);
                }
            }
            State::DoubleQuoteEscape => {
                state = State::DoubleQuote;
                if matches!(c, '"' | '\\' | '`' | '$') {
                    value.push(c);
                } else if c == '\n' {
                    notes.continuation = true;
                } else {
                    value.push('\\');
                    value.push(c);
                }
            }
            State::Comment => {
                if c == '\\' {
                    state = State::CommentEscape;
                } else if c == '\n' {
                    state = State::PreKey;
                }
            }
            State::CommentEscape => {
                if c == '\n' {
                    out.findings.push(Finding {
                        line,
                        key: None,
                        kind: Kind::CommentContinuation,
                    });
                    // 254 ended comment continuation lines.
                    state = if version >= 254 {
                        State::PreKey
                    } else {
                        State::Comment
                    };
                } else {
                    state = State::Comment;
                }
            }
        }
        continue_line(&mut line, c);
    }
    match state {
        State::PreValue | State::Value | State::ValueEscape => {
            if state == State::Value {
                if let Some(n) = last_value_ws {
                    value.truncate(n);
                }
            }
            push(&mut out, &key, &value, start_line, &notes);
        }
        State::SingleQuote | State::DoubleQuote | State::DoubleQuoteEscape => {
            out.findings.push(Finding {
                line: start_line,
                key: Some(key.clone()),
                kind: Kind::UnclosedQuote,
            });
            push(&mut out, &key, &value, start_line, &notes);
        }
        State::Key => out.findings.push(Finding {
            line: start_line,
            key: None,
            kind: Kind::NoEquals,
        }),
        _ => {}
    }
    out.findings.sort_by_key(|f| f.line);
    out.findings.dedup();
    if out.refused {
        out.vars.clear();
    }
    out
}

fn continue_line(line: &mut usize, c: char) {
    if c == '\n' {
        *line += 1;
    }
}

/// Shell-significant characters in an unquoted value.
fn note_unquoted(notes: &mut Notes, c: char, after_space: bool) {
    match c {
        '$' | '`' => notes.dollar = true,
        '"' | '\'' => notes.unquoted_special = true,
        '#' if after_space => notes.hash_after_space = true,
        ';' | '&' | '|' | '<' | '>' | '(' | ')' | '*' | '?' | '[' | '~' => notes.unquoted_special = true,
        _ => {}
    }
    if after_space && c != '#' {
        notes.unquoted_space = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawns(key: &str, value: &str) -> bool {
        std::process::Command::new("/bin/true")
            .env_clear()
            .env(key, value)
            .status()
            .is_ok()
    }

    /// The limit is the kernel's, measured: one byte over and execve
    /// refuses, at the limit it starts.
    #[test]
    fn exec_refusal_matches_what_the_kernel_refuses() {
        let at = "v".repeat(MAX_ARG_STRLEN - "BIG".len() - 2);
        assert_eq!(exec_refusal([("BIG", at.as_str())]), None);
        assert!(spawns("BIG", &at), "the kernel refused a string at its limit");
        let over = format!("{at}v");
        let why = exec_refusal([("BIG", over.as_str())]).expect("one byte over");
        assert!(why.contains("BIG is 131073 bytes"), "{why}");
        assert!(!spawns("BIG", &over), "the kernel took a string over its limit");
        // Many small ones, over ARG_MAX together.
        let many: Vec<(String, String)> = (0..200_000).map(|i| (format!("K{i}"), "x".repeat(20))).collect();
        let why = exec_refusal(many.iter().map(|(k, v)| (k.as_str(), v.as_str()))).expect("over ARG_MAX");
        assert!(
            why.contains("200000 variables") && why.contains("ARG_MAX"),
            "{why}"
        );
    }
}
