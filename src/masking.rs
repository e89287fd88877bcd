//! Masking `.env` values in lines that `status` shows (journal lines, the
//! bot's output). A value can appear as it is, URL-encoded (a token in an
//! API URL), JSON-escaped (a config dumped by the bot), one line of a
//! multi-line value (a PEM key), or so short that it is only a value as a
//! whole word. Every such occurrence becomes `****`; a line in which a form
//! would still show after that is hidden whole.

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

/// Byte ranges of `form` in `line`; a short form only as a whole word.
fn find(line: &str, form: &str, whole_word: bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = line[from..].find(form) {
        let (s, e) = (from + i, from + i + form.len());
        let before = line[..s].chars().next_back();
        let after = line[e..].chars().next();
        if !whole_word || (!before.is_some_and(is_word) && !after.is_some_and(is_word)) {
            out.push((s, e));
        }
        from = s + line[s..].chars().next().map_or(1, char::len_utf8);
    }
    out
}

fn shows(line: &str, values: &[Vec<String>]) -> bool {
    values
        .iter()
        .flatten()
        .any(|f| !find(line, f, f.chars().count() < SHORT).is_empty())
}

/// `line` with every form of every value replaced by `****`.
pub fn mask(line: &str, values: &[String]) -> String {
    let all: Vec<Vec<String>> = values
        .iter()
        .filter(|v| !v.is_empty())
        .map(|v| forms(v))
        .collect();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for f in all.iter().flatten() {
        ranges.extend(find(line, f, f.chars().count() < SHORT));
    }
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
    // A value made of '*', or one that reappears across a mask: the line
    // goes, not the value.
    if shows(&out, &all) {
        return "(a line hidden: it holds a value of .env)".to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(line: &str, values: &[&str]) -> String {
        mask(line, &values.iter().map(|v| v.to_string()).collect::<Vec<_>>())
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
}
