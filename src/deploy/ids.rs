//! Deploy ids: the UTC time of the deploy, `YYYYmmddTHHMMSSZ[-N]`,
//! sortable as text, checked before one becomes a path on a host.

use std::time::{SystemTime, UNIX_EPOCH};

/// A deploy id: the UTC time, `YYYYmmddTHHMMSSZ`, sortable as text.
pub fn deploy_id(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Whether `id` looks like one of ours (it becomes a path on the host).
pub fn valid_id(id: &str) -> bool {
    let (ts, suffix) = id.split_once('-').unwrap_or((id, "0"));
    ts.len() == 16
        && ts.as_bytes()[8] == b'T'
        && ts.ends_with('Z')
        && ts[..8]
            .bytes()
            .chain(ts[9..15].bytes())
            .all(|b| b.is_ascii_digit())
        && !suffix.is_empty()
        && suffix.bytes().all(|b| b.is_ascii_digit())
}

/// Sort key: the time, then the same-second counter as a number.
pub fn order(id: &str) -> (String, u64) {
    match id.split_once('-') {
        Some((t, n)) => (t.to_string(), n.parse().unwrap_or(0)),
        None => (id.to_string(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids_are_utc_timestamps_and_sort() {
        assert_eq!(deploy_id(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_999_999);
        assert_eq!(deploy_id(t), "20261130T005319Z");
        assert_eq!(
            deploy_id(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
        assert!(valid_id("20261202T184639Z") && valid_id("20261202T184639Z-12"));
        for bad in [
            "",
            "../../etc",
            "20261202T184639",
            "20261202X184639Z",
            "20261202T184639Z-",
            "2026120T184639Z",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
