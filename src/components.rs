//! The health of the bot's components (issue 15), as the program reports it
//! (docs/supervised-program.md, "Health of the components"): its `/health`
//! endpoint when that answers, else the newest `=== COMPONENT HEALTH ===`
//! record of its output, and the "Component crashed" and "Max restarts
//! reached" lines around it. Everything here is the service's text: parsed
//! with bounds, never trusted, and masked before it is shown.

use serde::{Deserialize, Serialize};

/// One line of the program's output, with the time it was written when
/// known (the journal's; else the line's own timestamp).
pub struct Line {
    pub unix: Option<f64>,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Component {
    pub name: String,
    /// stopped, starting, running, failed, restarting (as the program says).
    pub state: String,
    pub restarts: Option<u64>,
    /// "Component crashed" lines in the last hour.
    pub crashes_1h: u64,
    /// "Max restarts reached, giving up" was logged: it stays down.
    pub gave_up: bool,
    /// The last crash's message, masked.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Components {
    /// "health" (the endpoint), "journal" or "output" (the record in the
    /// program's output), or "none".
    pub source: String,
    /// How old what was read is, in seconds (0 for the endpoint).
    pub age_s: Option<f64>,
    /// The endpoint's overall status: healthy, degraded or error.
    pub health: Option<String>,
    pub running: u64,
    pub total: u64,
    pub list: Vec<Component>,
    /// What the verdicts were held to.
    pub thresholds: Thresholds,
    /// Why an answer on the health port was not trusted (another user's
    /// listener holds it), when it was not.
    pub health_ignored: Option<String>,
}

const HEADER: &str = "=== COMPONENT HEALTH ===";
/// More would be a program gone wrong, not a list to show.
const MAX_COMPONENTS: usize = 200;

/// The newest record in `lines` (oldest first): its time and components.
pub fn newest_record(lines: &[Line]) -> Option<(Option<f64>, Vec<Component>)> {
    let start = lines.iter().rposition(|l| l.text.contains(HEADER))?;
    let mut out = Vec::new();
    for l in &lines[start + 1..] {
        let Some(c) = record_line(&l.text) else { break };
        if out.len() < MAX_COMPONENTS {
            out.push(c);
        }
    }
    Some((lines[start].unix, out))
}

/// `  telegram_bot: running (uptime: 0:00:06.997630) (restarts: 1)`.
fn record_line(text: &str) -> Option<Component> {
    // The journal gives the line as written: two spaces, then the name.
    let body = text.strip_prefix("  ").or_else(|| text.strip_prefix('\t'))?;
    let (name, rest) = body.split_once(": ")?;
    if name.is_empty() || name.len() > 100 || name.contains(char::is_whitespace) {
        return None;
    }
    let state = rest.split_whitespace().next()?.to_string();
    if !state.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let restarts = rest
        .split("(restarts: ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.trim().parse().ok());
    Some(Component {
        name: name.to_string(),
        state,
        restarts,
        ..Component::default()
    })
}

/// Crash and give-up lines since `since` (unix time; lines without a time
/// count), folded into `list`; components named only there are added. Only
/// the message kept (each component's newest) is masked: a bot that
/// crashes in a loop writes thousands of these lines.
pub fn fold_crashes(list: &mut Vec<Component>, lines: &[Line], since: f64, mask: &dyn Fn(&str) -> String) {
    let mut newest: Vec<Option<&str>> = vec![None; list.len()];
    for l in lines {
        let Some((name, rest)) = bracketed(&l.text) else {
            continue;
        };
        let gave_up = rest.starts_with("Max restarts reached");
        let crashed = rest.starts_with("Component crashed");
        if !gave_up && !crashed {
            continue;
        }
        let idx = match list.iter().position(|c| c.name == name) {
            Some(i) => i,
            None if list.len() < MAX_COMPONENTS => {
                list.push(Component {
                    name: name.to_string(),
                    state: "unknown".into(),
                    ..Component::default()
                });
                newest.push(None);
                list.len() - 1
            }
            None => continue,
        };
        let c = &mut list[idx];
        if gave_up {
            c.gave_up = true;
        } else {
            if l.unix.is_none_or(|t| t >= since) {
                c.crashes_1h += 1;
            }
            let msg = rest.split_once("): ").map_or("", |(_, m)| m).trim();
            if !msg.is_empty() {
                newest[idx] = Some(msg);
            }
        }
    }
    for (c, msg) in list.iter_mut().zip(newest) {
        if let Some(msg) = msg {
            c.last_error = Some(mask(&msg.chars().take(300).collect::<String>()));
        }
    }
}

/// `... - ERROR - [NAME] rest`: (NAME, rest).
fn bracketed(text: &str) -> Option<(&str, &str)> {
    let open = text
        .find(" - [")
        .map(|i| i + 4)
        .or_else(|| text.strip_prefix('[').map(|_| 1))?;
    let (name, rest) = text[open..].split_once("] ")?;
    if name.is_empty() || name.len() > 100 || name.contains(char::is_whitespace) {
        return None;
    }
    Some((name, rest))
}

/// The endpoint's JSON: `{"status": ..., "components": {NAME: {"status":
/// ..., "message": ...}}}`.
pub fn from_health(body: &[u8], mask: &dyn Fn(&str) -> String) -> Option<Components> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let status = v["status"].as_str()?.chars().take(20).collect::<String>();
    let mut list = Vec::new();
    if let Some(map) = v["components"].as_object() {
        for (name, c) in map.iter().take(MAX_COMPONENTS) {
            let message = c["message"].as_str().filter(|m| !m.is_empty());
            list.push(Component {
                name: name.chars().take(100).collect(),
                state: c["status"]
                    .as_str()
                    .unwrap_or("unknown")
                    .chars()
                    .take(20)
                    .collect(),
                restarts: c["restarts"].as_u64(),
                last_error: message.map(|m| mask(&m.chars().take(300).collect::<String>())),
                ..Component::default()
            });
        }
    }
    Some(
        Components {
            source: "health".into(),
            age_s: Some(0.0),
            health: Some(status),
            ..Components::default()
        }
        .with(list),
    )
}

impl Components {
    pub fn with(mut self, list: Vec<Component>) -> Components {
        self.total = list.len() as u64;
        self.running = list.iter().filter(|c| c.state == "running").count() as u64;
        self.list = list;
        self
    }

    pub fn failed(&self) -> u64 {
        self.list
            .iter()
            .filter(|c| c.gave_up || c.state == "failed")
            .count() as u64
    }
}

/// The thresholds of the verdicts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Thresholds {
    /// WARNING at this many crashes of one component in the last hour.
    pub crashes_warn: u64,
    /// The program's record interval: CRITICAL when the newest record is
    /// older than three of them while the process is up.
    pub interval_s: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            crashes_warn: 3,
            interval_s: 60.0,
        }
    }
}

/// (critical, warning) reasons.
pub fn verdicts(c: &Components, t: &Thresholds, up_s: Option<f64>) -> (Vec<String>, Vec<String>) {
    let (mut crit, mut warn) = (Vec::new(), Vec::new());
    let gave_up: Vec<&str> = c
        .list
        .iter()
        .filter(|x| x.gave_up)
        .map(|x| x.name.as_str())
        .collect();
    if !gave_up.is_empty() {
        crit.push(format!(
            "component(s) gave up after their restarts: {}",
            gave_up.join(", ")
        ));
    }
    if let Some(why) = &c.health_ignored {
        warn.push(why.clone());
    }
    if c.health.as_deref() == Some("error") {
        crit.push("the bot's /health says error".into());
    }
    let stale = 3.0 * t.interval_s;
    match c.age_s {
        Some(age) if c.source != "health" && age > stale => crit.push(format!(
            "the newest component record is {age:.0} s old (over 3 intervals of {:.0} s): the bot's supervisor loop is stuck",
            t.interval_s
        )),
        None if c.source == "none" && up_s.is_some_and(|u| u > stale) => crit.push(format!(
            "no component record in {:.0} s of uptime (over 3 intervals of {:.0} s)",
            up_s.unwrap_or(0.0),
            t.interval_s
        )),
        _ => {}
    }
    let bad: Vec<String> = c
        .list
        .iter()
        .filter(|x| !x.gave_up && (x.state == "restarting" || x.state == "failed"))
        .map(|x| format!("{} {}", x.name, x.state))
        .collect();
    if !bad.is_empty() {
        warn.push(format!("component(s) not running: {}", bad.join(", ")));
    }
    let crashing: Vec<String> = c
        .list
        .iter()
        .filter(|x| x.crashes_1h >= t.crashes_warn)
        .map(|x| format!("{} ({} in the last hour)", x.name, x.crashes_1h))
        .collect();
    if !crashing.is_empty() {
        warn.push(format!(
            "component(s) crashing (warn at {}/h): {}",
            t.crashes_warn,
            crashing.join(", ")
        ));
    }
    (crit, warn)
}

/// The program's own timestamp at the start of a line,
/// `2026-12-01 05:28:18,129`, read in the host's local time.
pub fn line_time(text: &str) -> Option<f64> {
    let stamp = text.get(..23)?;
    let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S,%3f").ok()?;
    use chrono::TimeZone;
    let local = chrono::Local.from_local_datetime(&t).earliest()?;
    Some(local.timestamp_millis() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<Line> {
        text.lines()
            .map(|l| Line {
                unix: line_time(l),
                text: l.to_string(),
            })
            .collect()
    }

    const RECORD: &str = "\
2026-12-01 05:27:18,001 - jarvis.supervisor - INFO - === COMPONENT HEALTH ===
  buy_bot: running (uptime: 0:01:00.1) (restarts: 0)
2026-12-01 05:28:18,129 - jarvis.supervisor - INFO - === COMPONENT HEALTH ===
  buy_bot: stopped (restarts: 0)
  telegram_bot: running (uptime: 0:00:06.997630) (restarts: 1)
  public_trading_bot: restarting (restarts: 3)
2026-12-01 05:28:19,000 - jarvis.supervisor - INFO - something else
  not_a_component: running
";

    #[test]
    fn the_newest_record_word_for_word() {
        let (t, list) = newest_record(&lines(RECORD)).unwrap();
        assert!(t.is_some());
        let got: Vec<(&str, &str, Option<u64>)> = list
            .iter()
            .map(|c| (c.name.as_str(), c.state.as_str(), c.restarts))
            .collect();
        assert_eq!(
            got,
            [
                ("buy_bot", "stopped", Some(0)),
                ("telegram_bot", "running", Some(1)),
                ("public_trading_bot", "restarting", Some(3)),
            ]
        );
        assert!(newest_record(&lines("no record\n")).is_none());
    }

    #[test]
    fn only_each_components_newest_crash_message_is_masked() {
        let text: String = (0..1000)
            .map(|i| format!("[c{}] Component crashed (attempt {i}/100): boom {i}\n", i % 3))
            .collect();
        let masked = std::cell::Cell::new(0);
        let mut list = Vec::new();
        fold_crashes(&mut list, &lines(&text), 0.0, &|s| {
            masked.set(masked.get() + 1);
            s.to_string()
        });
        assert_eq!(masked.get(), 3, "one message masked per component, not per line");
        let got: Vec<_> = list
            .iter()
            .map(|c| (c.name.as_str(), c.crashes_1h, c.last_error.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("c0", 334, Some("boom 999")),
                ("c1", 333, Some("boom 997")),
                ("c2", 333, Some("boom 998"))
            ]
        );
    }

    #[test]
    fn crashes_in_the_last_hour_give_up_and_masked_errors() {
        let text = "\
2026-12-01 04:00:00,000 - jarvis.supervisor - ERROR - [buy_bot] Component crashed (attempt 1/100): old
2026-12-01 05:20:00,000 - jarvis.supervisor - ERROR - [buy_bot] Component crashed (attempt 2/100): key SECRET rejected
Traceback (most recent call last):
2026-12-01 05:21:00,000 - jarvis.supervisor - ERROR - [sentiment] Max restarts reached, giving up
";
        let l = lines(text);
        let since = line_time("2026-12-01 04:30:00,000").unwrap();
        let mut list = vec![Component {
            name: "buy_bot".into(),
            state: "restarting".into(),
            ..Component::default()
        }];
        fold_crashes(&mut list, &l, since, &|s| s.replace("SECRET", "****"));
        assert_eq!(list[0].crashes_1h, 1);
        assert_eq!(list[0].last_error.as_deref(), Some("key **** rejected"));
        assert_eq!(list[1].name, "sentiment");
        assert!(list[1].gave_up);
        let c = Components {
            source: "journal".into(),
            age_s: Some(10.0),
            ..Components::default()
        }
        .with(list);
        let t = Thresholds {
            crashes_warn: 1,
            interval_s: 60.0,
        };
        let (crit, warn) = verdicts(&c, &t, Some(100.0));
        assert!(crit[0].contains("sentiment"), "{crit:?}");
        assert!(warn.iter().any(|w| w.contains("buy_bot restarting")), "{warn:?}");
        assert!(
            warn.iter().any(|w| w.contains("buy_bot (1 in the last hour)")),
            "{warn:?}"
        );
        assert_eq!(c.failed(), 1);
    }

    #[test]
    fn a_stale_or_missing_record_is_critical_only_while_up_long_enough() {
        let t = Thresholds::default();
        let old = Components {
            source: "journal".into(),
            age_s: Some(181.0),
            ..Components::default()
        };
        assert!(verdicts(&old, &t, Some(1000.0)).0[0].contains("181 s old"));
        let none = Components {
            source: "none".into(),
            ..Components::default()
        };
        assert!(verdicts(&none, &t, Some(100.0)).0.is_empty());
        assert!(verdicts(&none, &t, Some(200.0)).0[0].contains("no component record"));
    }

    #[test]
    fn the_endpoints_json_is_read_bounded_and_masked() {
        let body = br#"{"status": "degraded", "timestamp": 1, "uptime": "0:01:00",
            "components": {"buy_bot": {"status": "running", "message": ""},
                           "telegram_bot": {"status": "failed", "message": "token SECRET bad"}}}"#;
        let c = from_health(body, &|s| s.replace("SECRET", "****")).unwrap();
        assert_eq!((c.running, c.total), (1, 2));
        assert_eq!(c.health.as_deref(), Some("degraded"));
        assert_eq!(c.list[1].last_error.as_deref(), Some("token **** bad"));
        assert!(from_health(b"ok\n", &|s| s.to_string()).is_none());
        let err = from_health(br#"{"status": "error", "components": {}}"#, &|s| s.to_string()).unwrap();
        assert!(verdicts(&err, &Thresholds::default(), None).0[0].contains("error"));
    }
}
