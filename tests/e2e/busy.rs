//! A busy bot, on both engines at once (a systemd Debian 12 and a sysvinit
//! Debian 12): the stand-in writes an hour's worth of INFO lines in seconds,
//! below journald's rate limit as the container applies it, until the
//! journal (systemd) or the capture (`jarvisctl run`) holds at least 25,000
//! lines of the last hour, then 10 a second as a busy bot does; then one
//! component gives up. `status` and `logs` must read
//! the newest of those lines: journalctl's `--since X -n N` alone would give
//! the first N after X, and the give-up would be hidden behind them.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::container::Container;
use super::roots::Suite;
use super::{apt_install, deploy_standin, on_suites, pkg, CODE};

const LINES: u64 = 25_000;
/// The fastest the stand-in writes its burst: the engine's capture has no
/// limit.
const MAX_RATE: u64 = 1_000;
/// Lines a second after the burst: 36,000 an hour, a busy bot.
const STEADY: u64 = 10;

/// Lines of output the bot wrote in the last hour: journal entries of the
/// unit, or lines of the capture.
fn written(c: &Container, suite: Suite) -> u64 {
    let cmd = if suite.has_systemd() {
        "journalctl -u jarvis-supervisor --since -1h -o cat -q | wc -l".to_string()
    } else {
        format!("wc -l < {CODE}/logs/supervisor.stdout")
    };
    c.ok(&cmd).trim().parse().unwrap_or(0)
}

/// The newest `busy=N` the bot wrote, from its own log file.
fn newest_busy(c: &Container) -> u64 {
    let last = c.ok(&format!(
        "grep -a ' busy=' {CODE}/logs/supervisor.log | tail -n 1"
    ));
    busy_of(&last).unwrap_or_else(|| panic!("no busy line written yet: {last:?}"))
}

fn busy_of(line: &str) -> Option<u64> {
    line.split(" busy=").nth(1)?.split(' ').next()?.parse().ok()
}

fn wait<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn scenario(suite: Suite) {
    let name = suite.name();
    let t0 = Instant::now();
    let c = Container::boot(suite);
    deploy_standin(&c);
    let rate = if suite.has_systemd() {
        let (burst, interval) = c.journald_rate_limit();
        // Seven tenths of the limit: below it in every interval.
        let rate = ((0.7 * burst / interval) as u64).min(MAX_RATE);
        println!("{name}: journald allows {burst} lines per {interval} s here; writing {rate}/s");
        assert!(
            rate * 100 >= LINES,
            "{name}: journald's limit here ({burst} per {interval} s) is too low to write {LINES} lines in 100 s"
        );
        rate
    } else {
        MAX_RATE
    };
    // /health off: the components come from the output, the point here.
    c.ok(&format!(
        "printf 'STANDIN_HEALTH_INTERVAL=5\\nSTANDIN_BUSY_BURST_LINES={LINES}\\nSTANDIN_BUSY_BURST_PER_S={rate}\\nSTANDIN_BUSY_LINES_PER_S={STEADY}\\nSTANDIN_NO_HTTP=1\\n' >> {CODE}/.env"
    ));
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "{name}: {}", out.all());

    let t_fill = Instant::now();
    let n = wait(
        &format!("{name}: {LINES} lines written"),
        // Twice the writing time: how fast a starved machine runs the
        // stand-in is not what this test is about.
        Duration::from_secs(2 * LINES / rate + 60),
        || Some(written(&c, suite)).filter(|n| *n >= LINES),
    );
    println!(
        "{name}: {n} lines in the last hour after {:.0} s of writing",
        t_fill.elapsed().as_secs_f64()
    );

    // One component gives up, behind all those lines.
    c.ok(&format!(
        "echo 'sentiment_bot give-up' > {CODE}/data/standin-components"
    ));
    // The stand-in writes the 100 crashes and the give-up at once: one
    // status run may read its error lines just before them and its records
    // just after. The next run has both.
    let gave_up = "[sentiment_bot] Max restarts reached, giving up";
    let newest_error = |v: &Value| {
        v["errors"]
            .as_array()
            .and_then(|e| e.last())
            .and_then(Value::as_str)
            .is_some_and(|e| e.contains(gave_up))
    };
    let t_status = Instant::now();
    let v = loop {
        let r = c.sh("jarvisctl status --json");
        let v: Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{name}: status --json is not JSON ({e}): {}", r.all()));
        if r.status == 2 && newest_error(&v) {
            break v;
        }
        assert!(
            t_status.elapsed() < Duration::from_secs(30),
            "{name}: no CRITICAL status with the give-up as its newest error line in 30 s (exit {}):\n{v}",
            r.status
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let human = c.sh("jarvisctl status").stdout;
    let first = human.lines().next().unwrap_or("");
    assert!(
        first.starts_with("CRITICAL") && first.contains("sentiment_bot"),
        "{name}: {first}"
    );
    let source = if suite.has_systemd() { "journal" } else { "output" };
    let comps = &v["components"];
    assert_eq!(comps["source"], source, "{name}: {comps}");
    // The newest record was found, not one from the start of the window.
    assert!(
        comps["age_s"].as_f64().is_some_and(|a| a < 15.0),
        "{name}: the record read is old: {comps}"
    );
    // The newest error line is shown, and no INFO line for a word in it.
    let errors: Vec<&str> = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no errors list: {v}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        errors.iter().all(|e| !e.contains("write_errors")),
        "{name}: an INFO line was taken for an error: {errors:?}"
    );
    assert!(
        human.contains("Max restarts reached, giving up"),
        "{name}: the human status does not show the newest error line:\n{human}"
    );

    // logs -n 3: the newest lines, as written (the bot writes on meanwhile,
    // and a component record of several lines may be the newest).
    let count = |c: &Container| -> usize {
        c.ok(&format!("wc -l < {CODE}/logs/supervisor.log"))
            .trim()
            .parse()
            .unwrap()
    };
    let n0 = count(&c);
    let r = c.sh("jarvisctl logs -n 3");
    let json = c.sh("jarvisctl logs -n 3 --json");
    let n1 = count(&c);
    assert_eq!(r.status, 0, "{name}: {}", r.all());
    assert_eq!(json.status, 0, "{name}: {}", json.all());
    assert_eq!(r.stdout.lines().count(), 3, "{name}: {}", r.stdout);
    // Each line is in two sources (the output and supervisor.log), so the
    // newest three are among the last three written before the first call
    // and those written during the two calls.
    let newest = c.ok(&format!(
        "sed -n '{},{}p' {CODE}/logs/supervisor.log",
        n0.saturating_sub(2).max(1),
        n1
    ));
    let texts: Vec<String> = json
        .stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {l}"));
            v["text"].as_str().unwrap_or_default().trim().to_string()
        })
        .collect();
    assert_eq!(texts.len(), 3, "{name}: {}", json.stdout);
    assert!(
        texts
            .iter()
            .all(|t| !t.is_empty() && newest.lines().any(|w| masked_form_of(t, w))),
        "{name}: logs -n 3 did not show the newest lines (the last written, lines {n0}-{n1} of supervisor.log):\n{newest}\nshown:\n{}\n{}",
        r.stdout,
        json.stdout
    );

    // logs --since "5 min ago": works, and shows the newest of the window,
    // not its oldest.
    let now: f64 = c.ok("date +%s.%N").trim().parse().unwrap();
    let before = newest_busy(&c);
    let human = c.sh("jarvisctl logs --since '5 min ago'");
    assert_eq!(human.status, 0, "{name}: {}", human.all());
    assert!(human.stdout.lines().count() >= 10, "{name}: {}", human.all());
    let json = c.ok("jarvisctl logs --since '5 min ago' --json");
    let lines: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 50, "{name}: the default -n 50");
    for l in &lines {
        let t = l["t"].as_f64().unwrap_or_else(|| panic!("{name}: no time: {l}"));
        assert!(t >= now - 300.0 - 2.0, "{name}: a line older than 5 min: {l}");
    }
    let nums: Vec<u64> = lines
        .iter()
        .filter_map(|l| l["text"].as_str().and_then(busy_of))
        .collect();
    // At 10 lines a second, the newest 50 are a few seconds old; the
    // oldest of the window are the burst's first.
    assert!(
        !nums.is_empty() && nums.iter().all(|n| *n + 20 * STEADY >= before),
        "{name}: logs --since showed old lines (newest written busy={before}): {nums:?}"
    );

    if suite.has_systemd() {
        // Below journald's limit: nothing suppressed, every line kept.
        let suppressed = c.sh("journalctl -b -o cat | grep 'Suppressed' | grep jarvis-supervisor");
        assert!(
            suppressed.stdout.trim().is_empty(),
            "{name}: journald dropped lines: {}",
            suppressed.stdout
        );
    }
    println!(
        "figures: {name}: {n} lines, then a give-up: status CRITICAL from the newest record ({:.1} s old), newest error shown, logs -n 3 and --since '5 min ago' newest; {:.0} s in all",
        comps["age_s"].as_f64().unwrap_or(-1.0),
        t0.elapsed().as_secs_f64()
    );
}

/// Whether `shown` is `written` as `logs` shows it: each `.env` value
/// masked as `****`. A short value counts as a whole word, so this
/// test's own `STANDIN_BUSY_LINES_PER_S=10` masks the seconds of a
/// timestamp at :10 (`07:52:****,104`).
fn masked_form_of(shown: &str, written: &str) -> bool {
    let mut rest = written;
    for (i, part) in shown.split("****").enumerate() {
        match rest.find(part) {
            // The first part anywhere; each next one after what was masked.
            Some(at) if i == 0 || at > 0 || part.is_empty() => rest = &rest[at + part.len()..],
            _ => return false,
        }
    }
    true
}

#[test]
fn a_masked_line_is_recognised_and_another_is_not() {
    let w = "2026-12-07 07:52:10,104 - jarvis.buy_bot - INFO - [buy_bot] busy=25012";
    assert!(masked_form_of(w, w));
    assert!(masked_form_of(
        "2026-12-07 07:52:****,104 - jarvis.buy_bot - INFO - [buy_bot] busy=25012",
        w
    ));
    assert!(!masked_form_of(
        "2026-12-07 07:52:****,104 - jarvis.buy_bot - INFO - [buy_bot] busy=25013",
        w
    ));
    assert!(!masked_form_of("2026-12-07 07:52:10,105", w));
}

pub fn both_engines() {
    on_suites(&[Suite::Bookworm, Suite::Sysvinit], scenario);
}
