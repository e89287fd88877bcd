//! Text from outside (a file's name or lines in the service user's
//! directories, the bot's `STATUS=`, another host's answer) made safe for a
//! terminal: every control character but the tab is shown escaped, so an
//! escape sequence cannot retitle the window, clear the screen, move the
//! cursor or start a fake line, and a bidi override cannot reorder what the
//! operator reads. The one place both binaries defuse text; JSON output
//! needs none (serde escapes controls).

/// `text` with C0 and C1 controls, DEL, CR, LF and the invisible
/// direction and line-separator marks written as `\x1b` or `\u{202e}`;
/// the tab stays.
pub fn printable(text: &str) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            // Arabic letter mark, LRM/RLM, line and paragraph separators,
            // the embeddings and overrides, the isolates.
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn controls_and_direction_marks_are_shown_escaped() {
        assert_eq!(
            printable("ok\x1b]0;pwned\x07 \x1b[2J\u{9b}31m\tend\r\nOK\x7f"),
            "ok\\x1b]0;pwned\\x07 \\x1b[2J\\u{9b}31m\tend\\x0d\\x0aOK\\x7f"
        );
        assert_eq!(
            printable("invoice\u{202e}fdp.exe \u{2066}x\u{2069}"),
            "invoice\\u{202e}fdp.exe \\u{2066}x\\u{2069}"
        );
        // Ordinary text, accents and symbols included, is left as it is.
        let plain = "buy_bot: crashed (attempt 3/100) — Zürich ✓ \\x1b";
        assert_eq!(printable(plain), plain);
        assert!(printable("\0\x01\x1f").chars().all(|c| !c.is_control()));
    }
}
