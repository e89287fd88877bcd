//! Human output of `status`: the monitoring-plugin first line (verdict,
//! reasons, perfdata), then one line per finding; the bot's text defused.

use super::model::{Hidden, Logs, Python, Status, Verdict, WeeklyRestart};

pub(super) fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

pub(super) fn human_secs(s: f64) -> String {
    let s = s as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// One line for the components, then one per component that is not
/// running or has crashed; the bot's text defused.
fn print_components(c: &crate::components::Components) {
    use crate::output::printable;
    let t = &c.thresholds;
    let from = match c.source.as_str() {
        "" => return,
        "health" => format!(
            "from /health, status {}",
            printable(c.health.as_deref().unwrap_or("?"))
        ),
        "none" => "no component record yet".into(),
        "hidden" => {
            println!("components: not seen (the bot's output is not readable as this user)");
            return;
        }
        src => format!(
            "from the newest record in the {}, {} old",
            if src == "journal" {
                "journal"
            } else {
                "bot's output"
            },
            c.age_s.map_or("?".into(), human_secs)
        ),
    };
    println!(
        "components: {}/{} running ({from}; WARNING at {} crashes/h of one, CRITICAL on a give-up or no record for {:.0} s)",
        c.running,
        c.total,
        t.crashes_warn,
        3.0 * t.interval_s
    );
    for x in &c.list {
        if x.state == "running" && x.crashes_1h == 0 && !x.gave_up {
            continue;
        }
        let mut line = format!("  {}: {}", printable(&x.name), printable(&x.state));
        if let Some(r) = x.restarts {
            line.push_str(&format!(", restarts {r}"));
        }
        if x.crashes_1h > 0 {
            line.push_str(&format!(", {} crash(es) in the last hour", x.crashes_1h));
        }
        if x.gave_up {
            line.push_str(", gave up (Max restarts reached)");
        }
        if let Some(e) = &x.last_error {
            line.push_str(&format!("; last error: {}", printable(e)));
        }
        println!("{line}");
    }
}

/// When the opt-in weekly restart fires next, or why it never does.
fn weekly_restart_line(st: &Status) -> String {
    let w = &st.weekly_restart;
    match (st.supervisor.as_deref(), w.enabled, &w.next) {
        (Some("systemd"), true, Some(next)) => {
            format!("weekly restart: next {next} (jarvis-supervisor-restart.timer)")
        }
        (Some("systemd"), true, None) => {
            "weekly restart: on, but systemd names no next time (systemctl list-timers jarvis-supervisor-restart.timer)".into()
        }
        (Some("systemd"), false, _) => {
            "weekly restart: off (jarvisctl configure --weekly-restart \"Sun 04:00\" turns it on)".into()
        }
        _ => "weekly restart: none (its timer needs systemd; jarvisctl run has no schedule)".into(),
    }
}

/// Performance data, monitoring-plugin style: `label=value[UOM];warn;crit;min;max`,
/// only for what was measured.
fn perfdata(st: &Status) -> String {
    let mut out = Vec::new();
    if let Some(c) = st.memory.current_bytes {
        let max = st.memory.max_bytes.map(|m| m.to_string()).unwrap_or_default();
        out.push(format!("memory={c}B;;;0;{max}"));
    }
    if let Some(n) = st.restarts_24h {
        out.push(format!("restarts_24h={n};;;0"));
    }
    if let Some(a) = st.watchdog.last_ping_age_s {
        let period = st
            .watchdog
            .period_s
            .map(|p| format!("{p:.0}"))
            .unwrap_or_default();
        out.push(format!("watchdog_age={a:.1}s;;{period};0"));
    }
    if let Some(up) = st.uptime_s {
        out.push(format!("uptime={up:.0}s;;;0"));
    }
    let c = &st.components;
    if c.total > 0 {
        out.push(format!("components_running={};;;0;{}", c.running, c.total));
        out.push(format!("components_failed={};;1;0;{}", c.failed(), c.total));
    }
    out.join(" ")
}

pub(super) fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Ok => "OK",
        Verdict::Warning => "WARNING",
        Verdict::Critical => "CRITICAL",
        Verdict::Unknown => "UNKNOWN",
    }
}

/// What `print_human` shows of text that came from outside.
fn defused(st: &Status) -> Status {
    use crate::output::printable;
    let list = |v: &[String]| v.iter().map(|s| printable(s)).collect();
    let one = |v: &Option<String>| v.as_deref().map(printable);
    Status {
        reasons: list(&st.reasons),
        errors: list(&st.errors),
        code_changed: list(&st.code_changed),
        state: printable(&st.state),
        active_state: printable(&st.active_state),
        sub_state: printable(&st.sub_state),
        result: printable(&st.result),
        status_text: one(&st.status_text),
        supervisor: one(&st.supervisor),
        package_version: one(&st.package_version),
        code_deploy: one(&st.code_deploy),
        logs: Logs {
            dir: one(&st.logs.dir),
            ..st.logs.clone()
        },
        weekly_restart: WeeklyRestart {
            next: one(&st.weekly_restart.next),
            ..st.weekly_restart.clone()
        },
        python: Python {
            path: one(&st.python.path),
            source: one(&st.python.source),
            problem: one(&st.python.problem),
            running_as: one(&st.python.running_as),
            running_exe: one(&st.python.running_exe),
        },
        ..st.clone()
    }
}

pub(super) fn print_human(st: &Status) {
    let st = &defused(st);
    let verdict = verdict_word(st.verdict);
    let mut reasons = st.reasons.clone();
    if st.state == "paused" {
        reasons.insert(
            0,
            "paused on purpose, not trading (start it: jarvisctl resume)".into(),
        );
    }
    let why = if reasons.is_empty() {
        String::new()
    } else {
        format!(": {}", reasons.join("; "))
    };
    let perf = perfdata(st);
    // A partial view says so where a monitor shows it.
    let why = match st.not_visible.len() {
        0 => why,
        n => format!("{why} (partial view: {n} source(s) not readable as this user, see below)"),
    };
    if perf.is_empty() {
        println!("{verdict}{why}");
    } else {
        // The monitoring-plugin form: Nagios and Icinga graph what follows `|`.
        println!("{verdict}{why} | {perf}");
    }
    // A restart under way: systemd's Result= is the new start's "success";
    // the crash loop knows how the last run ended.
    let result = st
        .crash_loop
        .as_ref()
        .and_then(|c| c.last_result.as_deref())
        .map_or(st.result.clone(), crate::output::printable);
    let mut state = format!(
        "state: {} ({}/{}), last result {result}",
        st.state, st.active_state, st.sub_state
    );
    if let Some(pid) = st.main_pid {
        state.push_str(&format!(", main pid {pid}"));
    }
    if let Some(up) = st.uptime_s {
        state.push_str(&format!(", up {}", human_secs(up)));
    }
    println!("{state}");
    for n in &st.not_visible {
        println!("{}", crate::output::printable(&n.message));
    }
    if let Some(p) = &st.pause {
        println!("pause: {}", p.describe().trim_start_matches("paused: "));
    }
    if st.state == "not-installed" || st.state == "unknown" {
        return;
    }
    match st.restarts_24h {
        Some(day) => println!(
            "restarts: {} since the last manual start, {day} in the last 24 h",
            st.n_restarts.unwrap_or(0)
        ),
        None => println!(
            "restarts: {} since the last manual start",
            st.n_restarts.unwrap_or(0)
        ),
    }
    if let Some(s) = &st.supervisor {
        println!("supervisor: {s}");
    }
    println!("{}", weekly_restart_line(st));
    print_components(&st.components);
    match (st.watchdog.last_ping_age_s, st.watchdog.period_s) {
        (Some(a), Some(p)) => println!("watchdog: last ping {} ago (WatchdogSec={p:.0}s)", human_secs(a)),
        (None, Some(p)) => println!("watchdog: WatchdogSec={p:.0}s, no ping while not running"),
        _ => println!("watchdog: off"),
    }
    let mem = match (st.memory.current_bytes, st.memory.max_bytes) {
        (Some(c), Some(m)) => format!(
            "{} of {} ({:.1}%)",
            human_bytes(c),
            human_bytes(m),
            c as f64 * 100.0 / m as f64
        ),
        (Some(c), None) => human_bytes(c),
        _ => "not measured".into(),
    };
    println!("memory: {mem}; CPU {:.1} s in all", st.cpu_s.unwrap_or(0.0));
    if let Some(id) = &st.code_deploy {
        if st.code_changed.is_empty() {
            println!("code: as shipped by deploy {id}");
        } else {
            println!(
                "code: {} file(s) changed since deploy {id}:",
                st.code_changed.len()
            );
            for c in &st.code_changed {
                println!("  {c}");
            }
        }
    }
    let p = &st.python;
    match (&p.running_as, &p.running_exe, &p.path, &p.problem) {
        (Some(a), Some(e), _, _) if a != e => println!("python: running {a} ({e})"),
        (Some(a), _, _, _) => println!("python: running {a}"),
        (None, _, _, Some(why)) => println!("python: {why}"),
        (None, _, Some(path), None) => println!(
            "python: {path} ({}) at the next start",
            p.source.as_deref().unwrap_or("?")
        ),
        _ => {}
    }
    if let Some(t) = &st.status_text {
        println!("status: {t}");
    }
    if let Some(dir) = &st.logs.dir {
        let newest = st
            .logs
            .newest_rotated_age_s
            .map_or("none rotated yet".into(), |a| {
                format!("newest rotated {} old", human_secs(a as f64))
            });
        match st.logs.size_bytes {
            Some(size) => println!("logs: {dir}: {}; {newest}", human_bytes(size)),
            None => println!("logs: {dir}: not seen"),
        }
    }
    if let Some(f) = st.disk_free_bytes {
        println!("disk: {} free", human_bytes(f));
    }
    let output = if st.supervisor.as_deref() == Some("systemd") {
        Hidden::Journal
    } else {
        Hidden::Logs
    };
    if st.errors.is_empty() && st.sees(output) {
        println!("errors: none in the last 24 h");
    } else if st.errors.is_empty() {
        println!("errors: not seen");
    }
    for e in &st.errors {
        println!("error: {e}");
    }
    println!(
        "package: {}",
        st.package_version
            .as_deref()
            .unwrap_or("not installed by a package")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weekly_restart_line_names_the_next_time_or_why_none() {
        let mut st = Status {
            supervisor: Some("systemd".into()),
            ..Status::default()
        };
        assert!(
            weekly_restart_line(&st).starts_with("weekly restart: off ("),
            "{}",
            weekly_restart_line(&st)
        );
        st.weekly_restart = WeeklyRestart {
            enabled: true,
            next: Some("Sun 2026-12-13 04:07:12 UTC".into()),
        };
        assert_eq!(
            weekly_restart_line(&st),
            "weekly restart: next Sun 2026-12-13 04:07:12 UTC (jarvis-supervisor-restart.timer)"
        );
        st.supervisor = Some("jarvisctl run".into());
        assert!(weekly_restart_line(&st).starts_with("weekly restart: none ("));
    }

    #[test]
    fn perfdata_follows_the_plugin_format_and_names_only_what_was_measured() {
        let mut st = Status::default();
        assert_eq!(perfdata(&st), "");
        st.memory.current_bytes = Some(52_428_800);
        st.memory.max_bytes = Some(1_073_741_824);
        st.restarts_24h = Some(3);
        st.watchdog.last_ping_age_s = Some(4.25);
        st.watchdog.period_s = Some(60.0);
        st.uptime_s = Some(3600.4);
        let p = perfdata(&st);
        assert_eq!(
            p,
            "memory=52428800B;;;0;1073741824 restarts_24h=3;;;0 watchdog_age=4.2s;;60;0 uptime=3600s;;;0"
        );
        // Each item: label=value[UOM];warn;crit;min[;max], no spaces inside.
        for item in p.split(' ') {
            let (label, rest) = item.split_once('=').unwrap();
            assert!(
                label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{item}"
            );
            let fields: Vec<&str> = rest.split(';').collect();
            assert!((4..=5).contains(&fields.len()), "{item}");
            let value = fields[0].trim_end_matches(|c: char| c.is_ascii_alphabetic());
            assert!(value.parse::<f64>().is_ok(), "{item}");
        }
    }
}
