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

/// Text from outside as the plugin prints it: defused, and without `|`,
/// which starts performance data on the first line and on any line of the
/// long output after it (the plugin guidelines): a component named `a|b`
/// or a log line with a `|` would be read as broken perfdata. It is shown
/// as `¦`.
fn plugin_text(s: &str) -> String {
    crate::output::printable(s).replace('|', "¦")
}

/// A performance-data label as the plugin guidelines write it: in single
/// quotes when it holds a space or a quote (a quote doubled inside); `=`,
/// which no quoting allows, and `|`, which ends the perfdata, replaced by
/// `_`, as are controls.
fn perf_label(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c == '=' || c == '|' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if clean.is_empty() || clean.contains([' ', '\'']) {
        format!("'{}'", clean.replace('\'', "''"))
    } else {
        clean
    }
}

/// One line for the components, then one per component that is not
/// running or has crashed; the bot's text defused.
fn print_components(c: &crate::components::Components) {
    let t = &c.thresholds;
    let from = match c.source.as_str() {
        "" => return,
        "health" => format!(
            "from /health, status {}",
            plugin_text(c.health.as_deref().unwrap_or("?"))
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
        println!("{}", component_line(x));
    }
}

/// One component that is not running or has crashed.
fn component_line(x: &crate::components::Component) -> String {
    let mut line = format!("  {}: {}", plugin_text(&x.name), plugin_text(&x.state));
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
        line.push_str(&format!("; last error: {}", plugin_text(e)));
    }
    line
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
    let mut item = |label: &str, data: String| out.push(format!("{}={data}", perf_label(label)));
    if let Some(c) = st.memory.current_bytes {
        let max = st.memory.max_bytes.map(|m| m.to_string()).unwrap_or_default();
        item("memory", format!("{c}B;;;0;{max}"));
    }
    if let Some(n) = st.restarts_24h {
        item("restarts_24h", format!("{n};;;0"));
    }
    if let Some(a) = st.watchdog.last_ping_age_s {
        let period = st
            .watchdog
            .period_s
            .map(|p| format!("{p:.0}"))
            .unwrap_or_default();
        item("watchdog_age", format!("{a:.1}s;;{period};0"));
    }
    if let Some(up) = st.uptime_s {
        item("uptime", format!("{up:.0}s;;;0"));
    }
    let c = &st.components;
    if c.total > 0 {
        item("components_running", format!("{};;;0;{}", c.running, c.total));
        item("components_failed", format!("{};;1;0;{}", c.failed(), c.total));
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
    let list = |v: &[String]| v.iter().map(|s| plugin_text(s)).collect();
    let one = |v: &Option<String>| v.as_deref().map(plugin_text);
    Status {
        reasons: list(&st.reasons),
        errors: list(&st.errors),
        code_changed: list(&st.code_changed),
        state: plugin_text(&st.state),
        active_state: plugin_text(&st.active_state),
        sub_state: plugin_text(&st.sub_state),
        result: plugin_text(&st.result),
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

pub fn print_human(st: &Status) {
    let st = &defused(st);
    println!("{}", plugin_line(st));
    print_details(st);
}

/// The monitoring plugin's first line: verdict, reasons and, after `|`,
/// the performance data that Nagios and Icinga graph. `st` is defused.
fn plugin_line(st: &Status) -> String {
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
        format!("{verdict}{why}")
    } else {
        format!("{verdict}{why} | {perf}")
    }
}

/// The lines after the first, one per finding. `st` is defused.
fn print_details(st: &Status) {
    // A restart under way: systemd's Result= is the new start's "success";
    // the crash loop knows how the last run ended.
    let result = st
        .crash_loop
        .as_ref()
        .and_then(|c| c.last_result.as_deref())
        .map_or(st.result.clone(), plugin_text);
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
        println!("{}", plugin_text(&n.message));
    }
    if let Some(p) = &st.pause {
        println!(
            "pause: {}",
            plugin_text(p.describe().trim_start_matches("paused: "))
        );
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
    fn hostile_component_names_never_break_the_plugin_output() {
        use crate::components::{verdicts, Component, Components, Thresholds};
        let names = ["a|b", "x=y", "it's", "two words", "esc\x1b]0;t\x07|", "|"];
        let list: Vec<Component> = names
            .iter()
            .map(|n| Component {
                name: n.to_string(),
                state: "restarting".into(),
                crashes_1h: 5,
                last_error: Some(format!("ValueError: {n} | 2 > 1")),
                ..Component::default()
            })
            .collect();
        let mut st = Status {
            verdict: Verdict::Warning,
            components: Components {
                source: "output".into(),
                running: 0,
                total: list.len() as u64,
                list,
                ..Components::default()
            },
            errors: vec!["2026-12-07 03:00:00,000 | ERROR | [a|b] crashed".into()],
            ..Status::default()
        };
        st.memory.current_bytes = Some(1024);
        let (crit, warn) = verdicts(&st.components, &Thresholds::default(), Some(10.0));
        st.reasons = crit.into_iter().chain(warn).collect();
        assert!(st.reasons.iter().any(|r| r.contains("a|b")), "{:?}", st.reasons);
        let shown = defused(&st);
        let line = plugin_line(&shown);
        // One `|`: ours, before the perfdata, which is ours alone.
        assert_eq!(line.matches('|').count(), 1, "{line}");
        let (text, perf) = line.split_once(" | ").unwrap();
        assert_eq!(perf, perfdata(&shown), "{line}");
        assert!(text.contains("a¦b") && text.contains("it's"), "{text}");
        assert!(!line.contains('\x1b'), "{line}");
        // The lines after the first hold none either: Nagios would read
        // what follows one as perfdata too.
        for c in &shown.components.list {
            let l = component_line(c);
            assert!(!l.contains('|') && !l.contains('\x1b'), "{l}");
        }
        assert!(
            shown.errors.iter().all(|e| !e.contains('|')),
            "{:?}",
            shown.errors
        );
    }

    #[test]
    fn perfdata_labels_are_quoted_or_cleaned_by_the_plugin_rules() {
        for (name, label) in [
            ("memory", "memory"),
            ("buy bot", "'buy bot'"),
            ("it's", "'it''s'"),
            ("a=b", "a_b"),
            ("a|b", "a_b"),
            ("x\x1b[2J", "x_[2J"),
            ("it's a=b|c", "'it''s a_b_c'"),
            ("", "''"),
        ] {
            assert_eq!(perf_label(name), label, "{name:?}");
        }
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
