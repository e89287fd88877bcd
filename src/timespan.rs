//! The one parser of systemd time spans (systemd.time(7)), for unit
//! settings ("300s", "1min 30s", "1min30s", "150") and for the values
//! `systemctl show` prints ("1min 30s", "100ms", "infinity").

/// Seconds; `Ok(None)` for "infinity"; `Err` says what is wrong.
pub fn parse(v: &str) -> Result<Option<f64>, &'static str> {
    let v = v.trim();
    if v == "infinity" {
        return Ok(None);
    }
    if v.is_empty() {
        return Err("not a time span");
    }
    let mut total = 0.0f64;
    let mut rest = v;
    while !rest.trim_start().is_empty() {
        rest = rest.trim_start();
        let n_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (n, tail) = rest.split_at(n_end);
        let u_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(u_end);
        let n: f64 = n.parse().map_err(|_| "not a time span")?;
        total += n * match unit {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "us" | "usec" => 1e-6,
            "ms" | "msec" => 1e-3,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            "w" | "week" | "weeks" => 604800.0,
            _ => return Err("unknown time unit"),
        };
        rest = tail;
    }
    Ok(Some(total))
}

/// A value `systemctl show` printed, in seconds; None for "infinity" or
/// anything unreadable.
pub fn secs(v: &str) -> Option<f64> {
    parse(v).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_settings_and_systemctl_show_values_read_alike() {
        assert_eq!(secs("20s"), Some(20.0));
        assert_eq!(secs("5min"), Some(300.0));
        assert_eq!(secs("1min 30s"), Some(90.0));
        assert_eq!(secs("1min30s"), Some(90.0));
        assert_eq!(secs("100ms"), Some(0.1));
        assert_eq!(secs("150"), Some(150.0));
        assert_eq!(secs("0"), Some(0.0));
        assert_eq!(parse("infinity"), Ok(None));
        assert!(parse("3 parsecs").is_err());
        assert_eq!(parse("3parsecs"), Err("unknown time unit"));
        assert_eq!(parse(""), Err("not a time span"));
    }
}
