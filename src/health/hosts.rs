//! `jarvisctl status --host ...`: the same check on many hosts over ssh, in
//! parallel, each with its own deadline, as one table (or one JSON
//! document). A host that cannot be reached or does not answer in time is a
//! row of its own with UNKNOWN; the exit code is the worst of all rows.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::render::{human_bytes, human_secs};
use super::{Status, Verdict};
use crate::ssh::{self, Target};

/// What runs on each host. `LC_ALL=C` keeps systemd's words stable.
const REMOTE: &str = "LC_ALL=C jarvisctl status --json";

#[derive(Debug, Serialize)]
pub struct Row {
    pub host: String,
    pub verdict: Verdict,
    pub exit_code: i32,
    /// Why the host is UNKNOWN when its check did not answer.
    pub error: Option<String>,
    pub elapsed_s: f64,
    /// The host's own `status --json`, when it answered.
    pub status: Option<Status>,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    schema: u32,
    verdict: Verdict,
    exit_code: i32,
    hosts: &'a [Row],
}

/// The worst verdict of all hosts.
pub fn worst(rows: &[Row]) -> Verdict {
    Verdict::worst(rows.iter().map(|r| r.verdict))
}

fn unknown(host: &Target, error: String, t0: Instant) -> Row {
    Row {
        host: host.name.clone(),
        verdict: Verdict::Unknown,
        exit_code: Verdict::Unknown as i32,
        error: Some(error),
        elapsed_s: t0.elapsed().as_secs_f64(),
        status: None,
    }
}

fn check(host: &Target, options: &[String], timeout: Duration) -> Row {
    let t0 = Instant::now();
    let out = match ssh::run(host, options, timeout, REMOTE) {
        Ok(o) => o,
        Err(e) => return unknown(host, format!("cannot run ssh: {e} (install openssh-client)"), t0),
    };
    if let Some(why) = out.too_big {
        return unknown(host, why, t0);
    }
    if out.timed_out {
        return unknown(
            host,
            format!("timed out: no answer within {} s", timeout.as_secs_f64()),
            t0,
        );
    }
    match serde_json::from_str::<Status>(out.stdout.trim()) {
        Ok(st) => Row {
            host: host.name.clone(),
            verdict: st.verdict,
            exit_code: st.verdict as i32,
            error: None,
            elapsed_s: t0.elapsed().as_secs_f64(),
            status: Some(st),
        },
        Err(_) => {
            // ssh's own last words say why (refused, auth, host key, no jarvisctl).
            let why = out
                .stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output")
                .trim()
                .to_string();
            let what = match out.status {
                Some(255) => format!("ssh failed: {why}"),
                Some(127) => "jarvisctl is not installed there".to_string(),
                Some(c) => format!("status exited {c} without a report: {why}"),
                None => format!("ssh was killed: {why}"),
            };
            unknown(host, what, t0)
        }
    }
}

/// Checks every host at once; rows come back in the order given.
pub fn check_all(hosts: &[Target], options: &[String], timeout: Duration) -> Vec<Row> {
    std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|h| s.spawn(move || check(h, options, timeout)))
            .collect();
        handles
            .into_iter()
            .zip(hosts)
            .map(|(j, h)| {
                j.join()
                    .unwrap_or_else(|_| unknown(h, "the check panicked".into(), Instant::now()))
            })
            .collect()
    })
}

pub fn print(rows: &[Row], json: bool) -> i32 {
    let verdict = worst(rows);
    if json {
        let report = Report {
            schema: super::SCHEMA,
            verdict,
            exit_code: verdict as i32,
            hosts: rows,
        };
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
        return verdict as i32;
    }
    let header = [
        "HOST",
        "VERDICT",
        "STATE",
        "PID",
        "UP",
        "RESTARTS 24H",
        "MEMORY",
        "COMPONENTS",
        "NOTE",
    ];
    let mut table: Vec<[String; 9]> = vec![header.map(String::from)];
    for r in rows {
        let dash = || "-".to_string();
        let row = match &r.status {
            Some(st) => [
                r.host.clone(),
                super::render::verdict_word(r.verdict).into(),
                st.state.clone(),
                st.main_pid.map_or_else(dash, |p| p.to_string()),
                st.uptime_s.map_or_else(dash, human_secs),
                st.restarts_24h.map_or_else(dash, |n| n.to_string()),
                st.memory.current_bytes.map_or_else(dash, human_bytes),
                match st.components.total {
                    0 => dash(),
                    n => format!("{}/{n} running", st.components.running),
                },
                st.reasons.join("; "),
            ],
            None => [
                r.host.clone(),
                super::render::verdict_word(r.verdict).into(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                r.error.clone().unwrap_or_default(),
            ],
        };
        // Another host's report: the table defuses its text.
        table.push(row);
    }
    print!("{}", crate::output::table(&table));
    verdict as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: Verdict) -> Row {
        Row {
            host: "h".into(),
            verdict: v,
            exit_code: v as i32,
            error: None,
            elapsed_s: 0.0,
            status: None,
        }
    }

    #[test]
    fn the_worst_host_decides() {
        use Verdict::*;
        assert_eq!(worst(&[row(Ok), row(Ok)]), Ok);
        assert_eq!(worst(&[row(Ok), row(Warning)]), Warning);
        assert_eq!(worst(&[row(Warning), row(Unknown), row(Ok)]), Unknown);
        assert_eq!(worst(&[row(Unknown), row(Critical)]), Critical);
        assert_eq!(worst(&[]), Unknown);
    }

    #[test]
    fn an_unreachable_host_is_a_row_not_a_crash() {
        // Port 1 on loopback refuses at once: ssh exits 255.
        let t = Target::parse("nobody@127.0.0.1:1").unwrap();
        let rows = check_all(&[t], &[], Duration::from_secs(5));
        assert_eq!(rows[0].verdict, Verdict::Unknown);
        assert!(
            rows[0].error.as_deref().unwrap().starts_with("ssh failed"),
            "{rows:?}"
        );
    }
}
