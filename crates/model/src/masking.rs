//! Masking `.env` values in lines that `status` shows (journal lines, the
//! bot's output). A value can appear as it is, URL-encoded (a token in an
//! API URL), JSON-escaped (a config dumped by the bot), one line of a
//! multi-line value (a PEM key), or so short that it is only a value as a
//! whole word. Every such occurrence becomes `****`; a line in which a form
//! would still show after that is hidden whole.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use aho_corasick::automaton::{Automaton as _, StateID};
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{Anchored, MatchKind};

/// A value's forms as they may appear in a log line.
fn forms(value: &str) -> Vec<String> {
    let mut out = vec![
        value.to_string(),
        url_encoded(value, false),
        url_encoded(value, true),
    ];
    let json = serde_json::to_string(value).unwrap_or_default();
    out.push(json[1..json.len().saturating_sub(1)].to_string());
    out.push(ascii_json(value));
    // Each line of a multi-line value stands alone in a log.
    if value.contains('\n') {
        out.extend(
            value
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    out.retain(|f| !f.is_empty());
    out.sort_by_key(|f| std::cmp::Reverse(f.len()));
    out.dedup();
    out
}

/// RFC 3986 percent-encoding (`form`: spaces as `+`, as in a form body).
fn url_encoded(value: &str, form: bool) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b' ' if form => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// JSON with every non-ASCII character as `\uXXXX` (Python's json.dumps).
fn ascii_json(value: &str) -> String {
    let json = serde_json::to_string(value).unwrap_or_default();
    let inner = &json[1..json.len().saturating_sub(1)];
    let mut out = String::new();
    for c in inner.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// Shorter than this, a value counts only as a whole word: "1" is not
/// masked inside "12".
const SHORT: usize = 4;

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every form of every value in one Aho-Corasick automaton, built once
/// per run, on the first line masked (a run with no line to show builds
/// nothing): masking a line then costs time linear in its length, whatever
/// the number of values (issue 24: 5,000 values and 2 MiB of lines).
#[derive(Default)]
pub struct Masker {
    values: Vec<String>,
    built: OnceLock<Automaton>,
}

#[derive(Default)]
struct Automaton {
    /// None: no value to mask.
    nfa: Option<NFA>,
    /// The automaton could not be built: no line can be shown.
    failed: bool,
    /// Not built: more than MAX_VALUES values.
    too_many: bool,
    /// Per pattern: a short form, counted only as a whole word.
    short: Vec<bool>,
    /// What ends in each matching state, found on first use: the
    /// automaton keeps every pattern that ends there (a value "x", "xx",
    /// "xxx"... makes that list long), the scan needs only this.
    ends: Mutex<HashMap<StateID, Ends>>,
}

/// The matches that end at one place: the longest long form (its byte
/// length, 0 for none) and the byte lengths of the short forms (at most
/// three: one per length in characters).
#[derive(Clone, Default)]
struct Ends {
    long: usize,
    short: Vec<usize>,
}

const HIDDEN: &str = "(a line hidden: it holds a value of .env)";

/// More values than this and no line is shown: the automaton's build
/// grows with the square of the values when they share prefixes and
/// suffixes (value_1, value_10, ...: 100,000 such took 4 s, 1,000,000
/// would take minutes), and `status` must end within its bound whatever
/// the service user writes into `.env`. A real `.env` holds tens.
pub const MAX_VALUES: usize = 20_000;

const TOO_MANY: &str = "(a line hidden: .env holds more values than can be masked; see jarvisctl env lint)";

impl Masker {
    pub fn new(values: &[String]) -> Masker {
        let mut values: Vec<String> = values.iter().filter(|v| !v.is_empty()).cloned().collect();
        values.sort_unstable();
        values.dedup();
        Masker {
            values,
            built: OnceLock::new(),
        }
    }

    fn automaton(&self) -> &Automaton {
        self.built.get_or_init(|| {
            if self.values.len() > MAX_VALUES {
                return Automaton {
                    failed: true,
                    too_many: true,
                    ..Automaton::default()
                };
            }
            let mut patterns: Vec<String> = self.values.iter().flat_map(|v| forms(v)).collect();
            patterns.sort_unstable();
            patterns.dedup();
            if patterns.is_empty() {
                return Automaton::default();
            }
            let short = patterns.iter().map(|f| f.chars().count() < SHORT).collect();
            // Standard semantics: every pattern that ends at a place is
            // reported there, so overlapping values are all seen. (A DFA would
            // take 1 KiB per state: a contiguous NFA stays near the patterns' size.)
            let nfa = NFA::builder().match_kind(MatchKind::Standard).build(&patterns);
            Automaton {
                failed: nfa.is_err(),
                too_many: false,
                nfa: nfa.ok(),
                short,
                ends: Mutex::new(HashMap::new()),
            }
        })
    }
}

impl Automaton {
    fn ends(&self, nfa: &NFA, sid: StateID) -> Ends {
        let mut memo = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        memo.entry(sid)
            .or_insert_with(|| {
                let mut e = Ends::default();
                for i in 0..nfa.match_len(sid) {
                    let pid = nfa.match_pattern(sid, i);
                    let len = nfa.pattern_len(pid);
                    if self.short[pid.as_usize()] {
                        e.short.push(len);
                    } else {
                        e.long = e.long.max(len);
                    }
                }
                e
            })
            .clone()
    }

    /// Byte ranges of `line` that hold a form, merged where they overlap,
    /// in order; a short form only as a whole word.
    fn ranges(&self, line: &str) -> Vec<(usize, usize)> {
        let mut out: Vec<(usize, usize)> = Vec::new();
        let Some(nfa) = &self.nfa else { return out };
        let Ok(mut sid) = nfa.start_state(Anchored::No) else {
            return out;
        };
        for (i, &b) in line.as_bytes().iter().enumerate() {
            sid = nfa.next_state(Anchored::No, sid, b);
            if !nfa.is_match(sid) {
                continue;
            }
            let end = i + 1;
            let ends = self.ends(nfa, sid);
            let whole_word = |len: usize| {
                let before = line[..end - len].chars().next_back();
                let after = line[end..].chars().next();
                !before.is_some_and(is_word) && !after.is_some_and(is_word)
            };
            // The longest form ending here covers every shorter one.
            let len = ends
                .short
                .iter()
                .copied()
                .filter(|&l| whole_word(l))
                .chain([ends.long])
                .max()
                .unwrap_or(0);
            if len == 0 {
                continue;
            }
            let mut start = end - len;
            // Ends come in order; this range may swallow earlier ones.
            while let Some(&(s, e)) = out.last() {
                if e < start {
                    break;
                }
                start = start.min(s);
                out.pop();
            }
            out.push((start, end));
        }
        out
    }
}

impl Masker {
    /// `line` with every form of every value replaced by `****`.
    pub fn mask(&self, line: &str) -> String {
        let a = self.automaton();
        if a.too_many {
            return TOO_MANY.to_string();
        }
        if a.failed {
            return HIDDEN.to_string();
        }
        let ranges = a.ranges(line);
        if ranges.is_empty() {
            return line.to_string();
        }
        let mut out = String::with_capacity(line.len());
        let mut at = 0;
        for (s, e) in ranges {
            out.push_str(&line[at..s]);
            if !out.ends_with("****") {
                out.push_str("****");
            }
            at = e;
        }
        out.push_str(&line[at..]);
        // A value made of '*', or one that reappears across a mask: the line
        // goes, not the value.
        if !a.ranges(&out).is_empty() {
            return HIDDEN.to_string();
        }
        out
    }
}

/// The masking before issue 24, kept as the reference the tests compare
/// [`Masker`] with and the peer `cargo xtask bench --only masking` times:
/// each call rebuilds every value's forms and searches the line once per
/// form, so a run costs values x lines.
#[doc(hidden)]
pub fn mask_per_call(line: &str, values: &[String]) -> String {
    let all: Vec<Vec<String>> = values
        .iter()
        .filter(|v| !v.is_empty())
        .map(|v| forms(v))
        .collect();
    let found = |line: &str| -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for f in all.iter().flatten() {
            let whole_word = f.chars().count() < SHORT;
            let mut from = 0;
            while let Some(i) = line[from..].find(f.as_str()) {
                let (s, e) = (from + i, from + i + f.len());
                let before = line[..s].chars().next_back();
                let after = line[e..].chars().next();
                if !whole_word || (!before.is_some_and(is_word) && !after.is_some_and(is_word)) {
                    out.push((s, e));
                }
                from = s + line[s..].chars().next().map_or(1, char::len_utf8);
            }
        }
        out
    };
    let mut ranges = found(line);
    if ranges.is_empty() {
        return line.to_string();
    }
    ranges.sort_unstable();
    let mut out = String::new();
    let mut at = 0;
    for (s, e) in ranges {
        if e <= at {
            continue;
        }
        if s > at {
            out.push_str(&line[at..s]);
        }
        if !out.ends_with("****") {
            out.push_str("****");
        }
        at = e;
    }
    out.push_str(&line[at..]);
    if !found(&out).is_empty() {
        return "(a line hidden: it holds a value of .env)".to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(line: &str, values: &[&str]) -> String {
        Masker::new(&values.iter().map(|v| v.to_string()).collect::<Vec<_>>()).mask(line)
    }

    #[test]
    fn more_values_than_can_be_masked_hide_every_line_at_once() {
        let many: Vec<String> = (0..=MAX_VALUES).map(|i| format!("value_{i}")).collect();
        let t = std::time::Instant::now();
        let shown = Masker::new(&many).mask("nothing secret here");
        assert!(shown.contains("more values than can be masked"), "{shown}");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            t.elapsed()
        );
        // The same value many times is one value.
        let same = vec!["value_1".to_string(); MAX_VALUES + 1];
        assert_eq!(Masker::new(&same).mask("a value_1 b"), "a **** b");
    }

    #[test]
    fn every_form_of_a_value_is_masked() {
        let token = "123456789:AAF/ke+y=x y";
        assert_eq!(m("url bot123456789:AAF/ke+y=x y/x", &[token]), "url bot****/x");
        assert_eq!(
            m("GET /bot123456789%3AAAF%2Fke%2By%3Dx%20y/send", &[token]),
            "GET /bot****/send"
        );
        assert_eq!(
            m("body token=123456789%3AAAF%2Fke%2By%3Dx+y", &[token]),
            "body token=****"
        );
        assert_eq!(m(r#"{"t": "p\"q\\r"}"#, &["p\"q\\r"]), r#"{"t": "****"}"#);
        assert_eq!(
            m(r#"{"n": "caf\u00e9-secret"}"#, &["café-secret"]),
            r#"{"n": "****"}"#
        );
        let pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkq\nc2VjcmV0\n-----END KEY-----";
        assert_eq!(m("bad key line c2VjcmV0 here", &[pem]), "bad key line **** here");
    }

    #[test]
    fn short_values_only_as_whole_words() {
        assert_eq!(m("pin 42 failed at 142", &["42"]), "pin **** failed at 142");
        assert_eq!(m("id=7,", &["7"]), "id=****,");
    }

    #[test]
    fn a_value_that_survives_masking_hides_the_line() {
        assert_eq!(m("x ** y", &["**"]), "(a line hidden: it holds a value of .env)");
    }
    #[test]
    fn overlapping_values_prefixes_and_words_inside_words() {
        // Two values that overlap in the line: both go, as one mask.
        assert_eq!(m("x abcdef y", &["abcd", "cdef"]), "x **** y");
        // A value that is a prefix of another: the longer one is masked whole.
        assert_eq!(
            m("t=secret123456 u=secret1", &["secret1", "secret123456"]),
            "t=**** u=****"
        );
        // Long values inside words, as before; short ones only as words.
        assert_eq!(m("prefixSECRETVALUEsuffix", &["SECRETVALUE"]), "prefix****suffix");
        assert_eq!(m("a7b 7", &["7"]), "a7b ****");
    }

    #[test]
    fn a_chain_of_values_that_end_alike_costs_one_pass() {
        // "x", "xx", ... every one ends wherever the next does: the old
        // code searched the line once per value, this scans it once.
        let values: Vec<String> = (1..=2000).map(|n| "x".repeat(n)).collect();
        let masker = Masker::new(&values);
        let line = format!("a {} b", "x".repeat(100_000));
        assert_eq!(masker.mask(&line), "a **** b");
    }

    /// The same output as the per-call masking it replaces, on lines and
    /// values made of a few letters, so that values overlap, nest, repeat,
    /// sit inside words and next to each other.
    #[test]
    fn masks_as_the_per_call_masking_did() {
        use proptest::prelude::*;
        let value = "[ab_1*é%]{1,6}";
        let line = "[ab_1*é% ]{0,40}";
        proptest!(ProptestConfig::with_cases(3000), |(values in proptest::collection::vec(value, 0..6), line in line)| {
            let values: Vec<String> = values;
            prop_assert_eq!(Masker::new(&values).mask(&line), mask_per_call(&line, &values));
        });
    }
}
