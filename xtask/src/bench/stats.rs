//! Pure helpers of the supervisor benchmark: the child's stamp file, the
//! numbered lines left in the logs, medians. Kept apart so they are tested.

/// What the child appended to its stamp file: "S <ns>" at exec, "E <ns>"
/// just before exiting, "D <n>" when it finished writing n lines.
#[derive(Debug, Default, PartialEq)]
pub struct Stamps {
    pub starts: Vec<u64>,
    pub exits: Vec<u64>,
    pub done: Option<u64>,
}

pub fn parse_stamps(text: &str) -> Stamps {
    let mut s = Stamps::default();
    for l in text.lines() {
        let mut w = l.split_whitespace();
        let (Some(tag), Some(Ok(v))) = (w.next(), w.next().map(str::parse::<u64>)) else {
            continue;
        };
        match tag {
            "S" => s.starts.push(v),
            "E" => s.exits.push(v),
            "D" => s.done = Some(v),
            _ => {}
        }
    }
    s
}

/// Restart gaps in nanoseconds: each start after the first, less the exit
/// just before it. Starts and exits alternate; a start with no exit before it
/// (a torn stamp file) ends the series.
pub fn restart_gaps(s: &Stamps) -> Vec<u64> {
    let mut gaps = Vec::new();
    for (i, start) in s.starts.iter().enumerate().skip(1) {
        match s.exits.get(i - 1) {
            Some(exit) if exit <= start => gaps.push(start - exit),
            _ => break,
        }
    }
    gaps
}

/// Median of a set (the lower middle one for an even count).
pub fn median(v: &[u64]) -> Option<u64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// Numbered lines found in the logs, against the count the child wrote.
#[derive(Debug, Default, PartialEq, serde::Serialize)]
pub struct LineCount {
    pub written: u64,
    pub missing: u64,
    pub duplicated: u64,
    /// Lines that are not one whole line of the child's (torn or merged).
    pub garbled: u64,
}

/// Count the child's lines ("000000000042 xxx…", 100 bytes with the
/// newline) in the concatenated text of every log file.
pub fn count_lines<'a>(written: u64, texts: impl IntoIterator<Item = &'a [u8]>) -> LineCount {
    let mut seen = vec![0u32; written as usize];
    let mut c = LineCount {
        written,
        ..LineCount::default()
    };
    for text in texts {
        for l in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let n = (l.len() == 99 && l[12] == b' ')
                .then(|| std::str::from_utf8(&l[..12]).ok()?.parse::<u64>().ok())
                .flatten();
            match n {
                Some(n) if n < written => seen[n as usize] += 1,
                _ => c.garbled += 1,
            }
        }
    }
    for k in seen {
        match k {
            0 => c.missing += 1,
            k => c.duplicated += u64::from(k - 1),
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_and_gaps() {
        let s = parse_stamps("S 100\nE 150\nS 190\nE 200\nS 260\ngarbage\nD 7\n");
        assert_eq!(s.starts, [100, 190, 260]);
        assert_eq!(s.exits, [150, 200]);
        assert_eq!(s.done, Some(7));
        assert_eq!(restart_gaps(&s), [40, 60]);
    }

    #[test]
    fn a_torn_series_stops_the_gaps() {
        let s = parse_stamps("S 100\nS 190\nE 200\n");
        assert_eq!(restart_gaps(&s), Vec::<u64>::new());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5));
        assert_eq!(median(&[9, 1, 5]), Some(5));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
    }

    fn line(n: u64) -> String {
        format!("{n:012} {}\n", "x".repeat(86))
    }

    #[test]
    fn lines_missing_duplicated_and_garbled() {
        let a = format!("{}{}", line(0), line(1));
        // A torn line 4 runs into the next text: one garbled line.
        let b = format!("{}{}{}torn\n", line(1), line(3), &line(4)[..50]);
        let c = count_lines(5, [a.as_bytes(), b.as_bytes()]);
        assert_eq!(line(0).len(), 100);
        assert_eq!(
            c,
            LineCount {
                written: 5,
                missing: 2,
                duplicated: 1,
                garbled: 1
            }
        );
    }
}
