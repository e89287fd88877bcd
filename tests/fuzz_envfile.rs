//! Property runs of the `.env` parser: on any input it never panics, and
//! what it returns is sane. A short run is part of `cargo test`; the long
//! one (a minute by default, `JARVIS_FUZZ_SECONDS`) runs in `cargo xtask
//! test`. The strategy lives here; the corpus of `tests/fixtures/envfiles`
//! seeds the mutations.

use std::path::Path;
use std::time::{Duration, Instant};

use jarvis_model::envfile::{self, Parsed};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Lines made of the characters that matter to systemd's state machine.
fn env_like() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        "[A-Za-z_][A-Za-z0-9_]{0,8}=[A-Za-z0-9 #;'\"\\\\$`{}()=\t\r\u{feff}é\u{1}]{0,24}",
        "[ \t]*[#;][^\n]{0,20}\\\\?",
        "(export )?[A-Za-z0-9_ -]{0,10} ?= ?\"[^\"]{0,10}\"?[^\n]{0,5}",
        "[^\n]{0,30}",
    ];
    prop::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n").into_bytes())
}

/// A corpus file with a few bytes changed, dropped or added.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/envfiles");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    seeds.sort();
    (
        prop::sample::select(seeds),
        prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..8),
    )
        .prop_map(|(mut seed, edits)| {
            for (at, byte, op) in edits {
                let i = if seed.is_empty() { 0 } else { at % (seed.len() + 1) };
                match op {
                    0 if i < seed.len() => seed[i] = byte,
                    1 if i < seed.len() => {
                        seed.remove(i);
                    }
                    _ => seed.insert(i, byte),
                }
            }
            seed
        })
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..400), env_like(), mutated()]
}

fn sane(bytes: &[u8], p: &Parsed) -> Result<(), TestCaseError> {
    let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
    for v in &p.vars {
        prop_assert!(
            envfile::valid_name(&v.key),
            "accepted an invalid name {:?}",
            v.key
        );
        prop_assert!(v.line >= 1 && v.line <= lines);
    }
    for f in &p.findings {
        prop_assert!(
            f.line >= 1 && f.line <= lines,
            "finding on line {} of {}",
            f.line,
            lines
        );
    }
    if p.refused {
        prop_assert!(p.vars.is_empty());
    }
    Ok(())
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    for version in [252, 257] {
        let p = envfile::parse_for(bytes, version);
        sane(bytes, &p)?;
        let again = envfile::parse_for(bytes, version);
        prop_assert_eq!(&p.vars, &again.vars);
    }
    Ok(())
}

proptest! {
    #[test]
    fn parser_is_total_and_sane(bytes in input()) {
        check(&bytes)?;
    }
}

#[test]
#[ignore = "a long property run (a minute): run by cargo xtask test"]
fn parser_never_panics_in_a_long_run() {
    let secs: u64 = std::env::var("JARVIS_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let inputs = std::sync::atomic::AtomicU64::new(0);
    let strategy = input();
    while Instant::now() < deadline {
        // A fresh runner each round: a new random seed, 2000 new inputs.
        let mut runner = TestRunner::new(Config {
            cases: 2000,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&strategy, |bytes| {
                inputs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                check(&bytes)
            })
            .unwrap_or_else(|e| panic!("parser property failed: {e}"));
    }
    let n = inputs.into_inner();
    println!("envfile parser: {n} inputs in {secs} s, no panic");
    assert!(n > 10_000, "too few inputs ({n}) for a meaningful run");
}

// ----- masking (issue 13, finding 6) -----

/// The test's own encoders, independent of the code under test.
fn percent(v: &str, plus: bool) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            b' ' if plus => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn json_inner(v: &str) -> String {
    let j = serde_json::to_string(v).unwrap();
    j[1..j.len() - 1].to_string()
}

fn word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `form` shows in `line`: anywhere when 4 characters or more,
/// else as a whole word.
fn visible(line: &str, form: &str) -> bool {
    if form.is_empty() {
        return false;
    }
    if form.chars().count() >= 4 {
        return line.contains(form);
    }
    line.match_indices(form).any(|(i, _)| {
        !line[..i].chars().next_back().is_some_and(word_char)
            && !line[i + form.len()..].chars().next().is_some_and(word_char)
    })
}

proptest! {
    /// Whatever the value and the text around it, and however the value is
    /// encoded in the line, the masked line shows none of its forms.
    #[test]
    fn masking_never_shows_a_value_in_any_encoding(
        value in "[^\u{0}]{1,40}",
        before in "[^\n]{0,20}",
        after in "[^\n]{0,20}",
        encoding in 0u8..5,
    ) {
        let line_of = |v: &str| -> String {
            match encoding {
                0 => v.to_string(),
                1 => percent(v, false),
                2 => percent(v, true),
                3 => json_inner(v),
                _ => v.lines().next().unwrap_or("").to_string(),
            }
        };
        let line = format!("{before}{}{after}", line_of(&value));
        let masked = jarvis_model::masking::Masker::new(std::slice::from_ref(&value)).mask(&line);
        let mut forms = vec![value.clone(), percent(&value, false), percent(&value, true), json_inner(&value)];
        if value.contains('\n') {
            forms.extend(value.lines().map(|l| l.trim().to_string()));
        }
        for f in forms {
            prop_assert!(!visible(&masked, &f), "{f:?} shows in {masked:?} (line {line:?})");
        }
    }
}
