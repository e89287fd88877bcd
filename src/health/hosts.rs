//! `jarvisctl status --host ...`: the same check on many hosts over ssh, in
//! parallel, each with its own deadline, as one table (or one JSON
//! document). A host that cannot be reached or does not answer in time is a
//! row of its own with UNKNOWN; the exit code is the worst of all rows.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::instances::Line;
use super::render::{human_bytes, human_secs};
use super::{Status, Verdict};
use crate::ssh::{self, Target};
use jarvis_model::instance::Instance;

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
    /// The host's own `status --json`, when it answered (a named
    /// instance's row: none, its line instead).
    pub status: Option<Status>,
    /// The bot of this row, when the hosts file lists the host's instances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// A named instance's line from the host's report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<Line>,
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
        instance: None,
        line: None,
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
            instance: None,
            line: None,
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

/// Each host's row split into one per instance that `wanted` lists for it
/// (the hosts file's `instances`), from the instances' lines of its report;
/// a listed instance the host does not run is a CRITICAL row that says so.
/// A host without a list keeps its one row.
pub fn by_instance(rows: Vec<Row>, wanted: &[Option<Vec<Instance>>]) -> Vec<Row> {
    let mut out = Vec::new();
    for (row, wanted) in rows.into_iter().zip(wanted) {
        let Some(wanted) = wanted else {
            out.push(row);
            continue;
        };
        for instance in wanted {
            out.push(of_instance(&row, instance));
        }
    }
    out
}

fn of_instance(row: &Row, instance: &Instance) -> Row {
    let name = instance.to_string();
    let mut r = Row {
        host: row.host.clone(),
        verdict: row.verdict,
        exit_code: row.exit_code,
        error: row.error.clone(),
        elapsed_s: row.elapsed_s,
        status: None,
        instance: Some(name.clone()),
        line: None,
    };
    let Some(st) = &row.status else {
        // Unreachable: every instance of it is UNKNOWN, for the same reason.
        return r;
    };
    let line = st
        .instances
        .as_ref()
        .map(|lines| lines.iter().find(|l| l.name == name));
    let missing = |r: &mut Row, why: String| {
        r.verdict = Verdict::Critical;
        r.exit_code = Verdict::Critical as i32;
        r.error = Some(why);
    };
    match (instance, line) {
        // A host without named instances: its report is the default's.
        (Instance::Default, None) => {
            r.status = Some(st.clone());
        }
        (Instance::Default, Some(Some(l))) => {
            r.verdict = l.verdict;
            r.exit_code = l.verdict as i32;
            r.status = Some(st.clone());
        }
        (Instance::Default, Some(None)) => missing(
            &mut r,
            "the hosts file lists the default instance, and it has no code on this host: deploy it (jarvisctl deploy), or take \"default\" off the host's instances".into(),
        ),
        (Instance::Named(_), Some(Some(l))) => {
            r.verdict = l.verdict;
            r.exit_code = l.verdict as i32;
            r.line = Some(l.clone());
        }
        (Instance::Named(n), _) => missing(
            &mut r,
            format!(
                "the hosts file lists instance {n}, and this host does not run it: make it there (jarvisctl instance add {n} ...), or take it off the host's instances"
            ),
        ),
    }
    r
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
    // Rows per instance (the hosts file lists them): the host and its bot.
    let per_instance = rows.iter().any(|r| r.instance.is_some());
    for r in rows {
        let dash = || "-".to_string();
        let host = match (&r.instance, per_instance) {
            (Some(i), _) => format!("{} {i}", r.host),
            (None, true) => format!("{} (all)", r.host),
            (None, false) => r.host.clone(),
        };
        let row = match (&r.status, &r.line) {
            (_, Some(l)) => [
                host,
                super::render::verdict_word(r.verdict).into(),
                l.state.clone(),
                l.main_pid.map_or_else(dash, |p| p.to_string()),
                dash(),
                dash(),
                l.memory_bytes.map_or_else(dash, human_bytes),
                dash(),
                l.reasons.join("; "),
            ],
            (Some(st), None) => [
                host,
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
            (None, None) => [
                host,
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
            instance: None,
            line: None,
        }
    }

    fn line(name: &str, v: Verdict) -> Line {
        Line {
            name: name.into(),
            verdict: v,
            state: "active/running".into(),
            ..Line::default()
        }
    }

    fn named(n: &str) -> Instance {
        Instance::Named(n.parse().unwrap())
    }

    /// Issue 26: a host whose instances the hosts file lists gets one row
    /// per listed instance, with that instance's verdict from the host's
    /// report; one it does not run is a CRITICAL finding that says what to
    /// do; a host without a list keeps its one row.
    #[test]
    fn a_host_with_listed_instances_has_a_row_each_and_a_missing_one_is_a_finding() {
        let mut st = Status {
            verdict: Verdict::Critical,
            state: "active".into(),
            ..Status::default()
        };
        st.instances = Some(vec![
            line("default", Verdict::Ok),
            line("alpha", Verdict::Critical),
        ]);
        let mut gateway = row(Verdict::Critical);
        gateway.host = "gw".into();
        gateway.status = Some(st);
        let mut plain = row(Verdict::Ok);
        plain.host = "vps1".into();
        let rows = by_instance(
            vec![gateway, plain],
            &[Some(vec![Instance::Default, named("alpha"), named("beta")]), None],
        );
        let seen: Vec<_> = rows
            .iter()
            .map(|r| (r.host.as_str(), r.instance.as_deref(), r.verdict))
            .collect();
        assert_eq!(
            seen,
            [
                ("gw", Some("default"), Verdict::Ok),
                ("gw", Some("alpha"), Verdict::Critical),
                ("gw", Some("beta"), Verdict::Critical),
                ("vps1", None, Verdict::Ok),
            ]
        );
        let beta = rows[2].error.as_deref().unwrap();
        assert!(
            beta.contains("does not run it") && beta.contains("jarvisctl instance add beta"),
            "{beta}"
        );
        assert_eq!(worst(&rows), Verdict::Critical);
        // An unreachable host: each listed instance UNKNOWN, with the reason.
        let mut down = row(Verdict::Unknown);
        down.error = Some("ssh failed: refused".into());
        let rows = by_instance(vec![down], &[Some(vec![named("alpha")])]);
        assert_eq!(rows[0].verdict, Verdict::Unknown);
        assert_eq!(rows[0].error.as_deref(), Some("ssh failed: refused"));
        // A host without named instances: its report is the default's.
        let mut old = row(Verdict::Warning);
        old.status = Some(Status {
            verdict: Verdict::Warning,
            ..Status::default()
        });
        let rows = by_instance(vec![old], &[Some(vec![Instance::Default, named("alpha")])]);
        assert_eq!(rows[0].verdict, Verdict::Warning);
        assert!(rows[0].status.is_some());
        assert_eq!(rows[1].verdict, Verdict::Critical);
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
