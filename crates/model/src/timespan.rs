//! The one parser of systemd time spans (systemd.time(7)), for unit
//! settings ("300s", "1min 30s", "1min30s", "150") and for the values
//! `systemctl show` prints ("1min 30s", "100ms", "infinity"); and of the
//! points in time that journalctl's `--since` takes ("5 min ago", "-1h",
//! "yesterday", "2026-12-07 10:00"), so both engines read them alike.

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
        // "5 min" as well as "5min", as systemd reads them.
        let tail = tail.trim_start();
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
            // systemd's own lengths of a month and a year.
            "M" | "month" | "months" => 2_629_800.0,
            "y" | "year" | "years" => 31_557_600.0,
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

/// A point in time as journalctl's `--since` takes it (systemd.time(7)),
/// in unix seconds: "now", "today", "yesterday", "tomorrow"; a span before
/// or after `now` ("-5m", "5 min ago", "1 hour ago", "+30s"); "@UNIX"; or a
/// local date and time ("2026-12-07 10:00[:SS]", "2026-12-07", "10:00").
/// `Err` says what is wrong, without the value (the caller names it).
pub fn point(v: &str, now: f64) -> Result<f64, &'static str> {
    use chrono::{Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
    let v = v.trim();
    let local = |t: NaiveDateTime| {
        Local
            .from_local_datetime(&t)
            .earliest()
            .map(|l| l.timestamp_millis() as f64 / 1000.0)
            .ok_or("not a time that exists here (a daylight-saving gap)")
    };
    let today = || {
        Local
            .timestamp_millis_opt((now * 1000.0) as i64)
            .single()
            .map(|t| t.date_naive())
            .ok_or("not a time")
    };
    let midnight = |days: i64| -> Result<f64, &'static str> {
        let d = today()? + chrono::Duration::days(days);
        local(d.and_time(NaiveTime::MIN))
    };
    match v {
        "" => return Err("empty"),
        "now" => return Ok(now),
        "today" => return midnight(0),
        "yesterday" => return midnight(-1),
        "tomorrow" => return midnight(1),
        _ => {}
    }
    if let Some(unix) = v.strip_prefix('@') {
        return unix.trim().parse::<f64>().map_err(|_| "not a unix time after @");
    }
    let span = |s: &str| match parse(s) {
        Ok(Some(secs)) => Ok(secs),
        Ok(None) => Err("not a finite time span"),
        Err(e) => Err(e),
    };
    if let Some(rel) = v.strip_prefix('-') {
        return Ok(now - span(rel)?);
    }
    if let Some(rel) = v.strip_prefix('+') {
        return Ok(now + span(rel)?);
    }
    if let Some(rel) = v.strip_suffix("ago").filter(|r| r.ends_with(char::is_whitespace)) {
        return Ok(now - span(rel)?);
    }
    if let Some(rel) = v
        .strip_suffix("left")
        .filter(|r| r.ends_with(char::is_whitespace))
    {
        return Ok(now + span(rel)?);
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, fmt) {
            return local(t);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return local(d.and_time(NaiveTime::MIN));
    }
    for fmt in ["%H:%M:%S", "%H:%M"] {
        if let Ok(t) = NaiveTime::parse_from_str(v, fmt) {
            return local(today()?.and_time(t));
        }
    }
    Err("not a time")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_in_time_as_journalctl_takes_them() {
        let now = 1_800_000_000.0;
        assert_eq!(point("now", now), Ok(now));
        assert_eq!(point("5 min ago", now), Ok(now - 300.0));
        assert_eq!(point("5min ago", now), Ok(now - 300.0));
        assert_eq!(point("-5m", now), Ok(now - 300.0));
        assert_eq!(point("-5min", now), Ok(now - 300.0));
        assert_eq!(point("1 hour ago", now), Ok(now - 3600.0));
        assert_eq!(point("-1h 30min", now), Ok(now - 5400.0));
        assert_eq!(point("2 days ago", now), Ok(now - 172_800.0));
        assert_eq!(point("+30s", now), Ok(now + 30.0));
        assert_eq!(point("@1700000000", now), Ok(1_700_000_000.0));
        // Local midnights and local clock times.
        let today = point("today", now).unwrap();
        assert!(today <= now && now - today < 86_400.0 + 3_600.0, "{today}");
        let yesterday = point("yesterday", now).unwrap();
        assert!((today - yesterday - 86_400.0).abs() <= 3_600.0, "{yesterday}");
        assert!(point("tomorrow", now).unwrap() > now);
        use chrono::TimeZone;
        let want = chrono::Local
            .with_ymd_and_hms(2026, 12, 7, 10, 0, 0)
            .earliest()
            .unwrap()
            .timestamp() as f64;
        assert_eq!(point("2026-12-07 10:00", now), Ok(want));
        assert_eq!(point("2026-12-07 10:00:00", now), Ok(want));
        assert_eq!(point("2026-12-07T10:00:00", now), Ok(want));
        assert_eq!(point("2026-12-07", now), Ok(want - 36_000.0));
        assert!(point("10:00", now).is_ok());
        // Refused, not guessed.
        for bad in [
            "",
            "soon",
            "5 parsecs ago",
            "ago",
            "-",
            "2026-13-01",
            "@x",
            "-infinity",
        ] {
            assert!(point(bad, now).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn unit_settings_and_systemctl_show_values_read_alike() {
        assert_eq!(secs("20s"), Some(20.0));
        assert_eq!(secs("5min"), Some(300.0));
        assert_eq!(secs("1min 30s"), Some(90.0));
        assert_eq!(secs("1min30s"), Some(90.0));
        assert_eq!(secs("5 min"), Some(300.0));
        assert_eq!(secs("1 hour 2 min"), Some(3720.0));
        assert_eq!(secs("100ms"), Some(0.1));
        assert_eq!(secs("150"), Some(150.0));
        assert_eq!(secs("0"), Some(0.0));
        assert_eq!(parse("infinity"), Ok(None));
        assert!(parse("3 parsecs").is_err());
        assert_eq!(parse("3parsecs"), Err("unknown time unit"));
        assert_eq!(parse(""), Err("not a time span"));
    }
}
