//! The health timer's node_exporter textfile (issue 15): the status as
//! `jarvis_supervisor_*` metrics, written whole or not at all (a temporary
//! file in the same directory, renamed over the old one: node_exporter
//! reads only `*.prom`, so it never sees a half-written file).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::instances::Line;
use super::Status;
use jarvis_model::error::{Error, Result};

/// Debian's and Ubuntu's prometheus-node-exporter read this directory.
pub const DEFAULT_DIR: &str = "/var/lib/prometheus/node-exporter";
pub const FILE: &str = "jarvis_supervisor.prom";
/// Where the last record wrote the file: the package's removal scripts
/// delete it there too (they cannot see a JARVIS_TEXTFILE_DIR set in a
/// drop-in or a cron line), so no stale "up 1" outlives the package.
pub const WHERE: &str = "/var/lib/jarvis-supervisor/textfile.path";

/// Where to write: `$JARVIS_TEXTFILE_DIR` (a drop-in of the health unit
/// sets it), else the default directory when it exists; None: nowhere.
pub fn dir() -> Option<PathBuf> {
    match std::env::var_os("JARVIS_TEXTFILE_DIR").filter(|v| !v.is_empty()) {
        Some(d) => Some(PathBuf::from(d)),
        None => Some(PathBuf::from(DEFAULT_DIR)).filter(|d| d.is_dir()),
    }
}

/// Writes the file for `st` and the `named` instances' lines; `sample_stored`: whether this record's sample
/// went into the history. When the directory has no room for a new file
/// (its filesystem full), the old file is rewritten in place, so that it
/// never keeps saying a past state; if even that fails, it is left as it
/// was, and its old last_record_timestamp_seconds fires the stale rule.
pub fn write(dir: &Path, st: &Status, named: &[Line], sample_stored: bool) -> Result<PathBuf> {
    let text = render_with(st, named, super::now_s(), Some(sample_stored));
    // In place only for a full filesystem: any other failure (a file
    // swapped in by another user) is reported, never written through.
    let full = || super::logs_dir::free_bytes(dir).is_some_and(|f| f < super::record::STORE_LOW);
    atomic(dir, &text).or_else(|e| match full().then(|| in_place(&dir.join(FILE), &text)) {
        Some(Ok(p)) => {
            Error::new(format!("{e}"))
                .with_note("the metrics were written over the old file in place instead")
                .print();
            Ok(p)
        }
        _ => Err(e),
    })
}

/// The old file, rewritten through its own blocks: no new file, no new
/// inode. Only a regular file of ours with one link; a scrape at that
/// moment may read a half file (it fails, the next one reads the whole).
fn in_place(path: &Path, text: &str) -> Result<PathBuf> {
    use jarvis_model::filesystem::{rewrite_in_place, Tail};
    rewrite_in_place(path, text.as_bytes(), Tail::Cut).map_err(|e| Error::io("rewrite", path, e))?;
    Ok(path.to_path_buf())
}

fn atomic(dir: &Path, text: &str) -> Result<PathBuf> {
    let path = dir.join(FILE);
    let mut tmp = tempfile::Builder::new()
        .prefix(".jarvis_supervisor.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            Error::io("create a file in", dir, e)
                .with_note("the textfile directory must exist; set it with JARVIS_TEXTFILE_DIR in a drop-in of jarvis-supervisor-health.service")
        })?;
    tmp.write_all(text.as_bytes())
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    // node_exporter runs as its own user: the metrics are not secret. The
    // mode goes through the descriptor (fchmod), never the path: in a
    // directory another user can write, the name may be theirs by now, a
    // link to a root file (issue 24, finding 10). tempfile made the file
    // with O_CREAT|O_EXCL, which never follows a link.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(|e| Error::io("set the mode of", tmp.path(), e))?;
    let file = tmp
        .persist(&path)
        .map_err(|e| Error::io("replace", &path, e.error))?;
    // The name renamed is whatever sits there: say so when it was not ours.
    let ours = file.metadata().map(|m| (m.dev(), m.ino())).ok();
    let there = std::fs::symlink_metadata(&path).map(|m| (m.dev(), m.ino())).ok();
    if ours.is_none() || ours != there {
        return Err(Error::new(format!(
            "{}: another user replaced the file while it was written",
            path.display()
        ))
        .with_note(format!(
            "make {} writable only by root (and node_exporter's group): chmod o-w {}",
            dir.display(),
            dir.display()
        )));
    }
    Ok(path)
}

/// Notes `written` in `record` (one line), atomically, unless it says so already.
pub fn remember(record: &Path, written: &Path) -> Result<()> {
    let line = format!("{}\n", written.display());
    if std::fs::read_to_string(record).is_ok_and(|old| old == line) {
        return Ok(());
    }
    let dir = record.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("create a file in", dir, e))?;
    tmp.write_all(line.as_bytes())
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    tmp.persist(record)
        .map_err(|e| Error::io("replace", record, e.error))?;
    Ok(())
}

/// A label value, escaped as the text format requires.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The metric families, Prometheus' conventions: counters end in `_total`,
/// times are unix `_timestamp_seconds`/`_start_time_seconds` (a scrape
/// computes the age, so a stale file shows as one), `_info` carries the
/// version as a label. Every series has a `bot` label: `default` for the
/// default instance, its name for a named one. `now` is when the file is
/// written.
#[cfg(test)]
pub fn render_at(st: &Status, now: u64) -> String {
    render_with(st, &[], now, None)
}

/// The `bot` label of the default instance's series.
pub const DEFAULT_BOT: &str = "default";

/// As `render_at`, with each named instance's series (`named`: their
/// lines, from their engines: up, verdict, restarts and memory) and
/// whether the record's sample was stored.
pub fn render_with(st: &Status, named: &[Line], now: u64, sample_stored: Option<bool>) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        if samples.is_empty() {
            return;
        }
        out.push_str(&format!(
            "# HELP jarvis_supervisor_{name} {help}\n# TYPE jarvis_supervisor_{name} {kind}\n"
        ));
        for (labels, v) in samples {
            out.push_str(&format!("jarvis_supervisor_{name}{labels} {v}\n"));
        }
    };
    let bot = |b: &str| format!("bot=\"{}\"", label(b));
    let default = bot(DEFAULT_BOT);
    let one = |v: Option<f64>| v.map(|v| vec![(format!("{{{default}}}"), v)]).unwrap_or_default();
    // The default's value, then each named instance's that is known.
    let each = |v: Option<f64>, of: &dyn Fn(&Line) -> Option<f64>| {
        let mut samples = one(v);
        samples.extend(
            named
                .iter()
                .filter_map(|l| of(l).map(|v| (format!("{{{}}}", bot(&l.name)), v))),
        );
        samples
    };
    let info = |b: &str, supervisor: Option<&str>| {
        (
            format!(
                "{{{},version=\"{}\",supervisor=\"{}\"}}",
                bot(b),
                label(st.package_version.as_deref().unwrap_or(env!("CARGO_PKG_VERSION"))),
                label(supervisor.unwrap_or("unknown"))
            ),
            1.0,
        )
    };
    let mut infos = vec![info(DEFAULT_BOT, st.supervisor.as_deref())];
    infos.extend(named.iter().map(|l| info(&l.name, l.supervisor.as_deref())));
    let mut gauge = |name: &str, help: &str, samples| family(name, "gauge", help, samples);
    gauge(
        "info",
        "Always 1: the package's version and what supervises the bot, as labels.",
        infos,
    );
    gauge(
        "last_record_timestamp_seconds",
        "When this file was written (unix time): an old value means the health timer stopped.",
        each(Some(now as f64), &|_| Some(now as f64)),
    );
    gauge(
        "sample_stored",
        "1 when this record's health sample was stored in the history, 0 when it could not be (its filesystem full or unwritable: status names it).",
        one(sample_stored.map(|s| f64::from(u8::from(s)))),
    );
    gauge(
        "up",
        "1 when the bot's process is up (active), else 0.",
        each(Some(f64::from(u8::from(st.state == "active"))), &|l| {
            Some(f64::from(u8::from(
                l.main_pid.is_some() && l.verdict == super::Verdict::Ok,
            )))
        }),
    );
    gauge(
        "paused",
        "1 when the program's own pause switch is set (PAUSE_AUTOMATIONS or JARVIS_PAUSE_AUTOMATIONS), else 0.",
        each(Some(f64::from(u8::from(st.pause.is_some()))), &|l| {
            Some(f64::from(u8::from(l.paused)))
        }),
    );
    gauge(
        "verdict",
        "The status verdict: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        each(Some(f64::from(st.exit_code)), &|l| {
            Some(f64::from(l.verdict as i32))
        }),
    );
    gauge(
        "start_time_seconds",
        "When the bot's running process started (unix time).",
        one(st.uptime_s.map(|up| (now as f64 - up).round())),
    );
    family(
        "restarts_total",
        "counter",
        "Automatic restarts of the bot's process since the service was last started by hand (resets then).",
        each(st.n_restarts.map(|n| n as f64), &|l| {
            l.n_restarts.map(|n| n as f64)
        }),
    );
    let mut gauge = |name: &str, help: &str, samples| family(name, "gauge", help, samples);
    gauge(
        "memory_bytes",
        "Memory of the bot's processes.",
        each(st.memory.current_bytes.map(|n| n as f64), &|l| {
            l.memory_bytes.map(|n| n as f64)
        }),
    );
    gauge(
        "memory_max_bytes",
        "MemoryMax of the unit.",
        one(st.memory.max_bytes.map(|n| n as f64)),
    );
    gauge(
        "watchdog_age_seconds",
        "Age of the last watchdog ping when the file was written.",
        one(st.watchdog.last_ping_age_s),
    );
    gauge(
        "watchdog_period_seconds",
        "WatchdogSec of the unit.",
        one(st.watchdog.period_s),
    );
    let c = &st.components;
    if !c.source.is_empty() {
        gauge(
            "components_running",
            "Components of the bot that are running.",
            one(Some(c.running as f64)),
        );
        gauge(
            "components_reported",
            "Components the bot reported.",
            one(Some(c.total as f64)),
        );
        gauge(
            "components_record_age_seconds",
            "Age of the component report read (0 from /health).",
            one(c.age_s),
        );
        let per = |f: &dyn Fn(&crate::components::Component) -> Option<f64>| {
            c.list
                .iter()
                .filter_map(|x| f(x).map(|v| (format!("{{{default},component=\"{}\"}}", label(&x.name)), v)))
                .collect::<Vec<_>>()
        };
        gauge(
            "component_up",
            "1 when the component is running, else 0.",
            per(&|x| Some(f64::from(u8::from(x.state == "running")))),
        );
        gauge(
            "component_gave_up",
            "1 when the component gave up after its restarts.",
            per(&|x| Some(f64::from(u8::from(x.gave_up)))),
        );
        gauge(
            "component_crashes_1h",
            "Crashes of the component in the last hour.",
            per(&|x| Some(x.crashes_1h as f64)),
        );
        family(
            "component_restarts_total",
            "counter",
            "Restarts of the component, as the bot counts them.",
            per(&|x| x.restarts.map(|n| n as f64)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::{Component, Components};

    /// A status with every measured value set, so that every family the
    /// writer knows is in its output.
    fn full() -> Status {
        let mut st = Status {
            state: "active".into(),
            exit_code: 1,
            uptime_s: Some(12.0),
            n_restarts: Some(7),
            package_version: Some("1.2.3-1".into()),
            supervisor: Some("systemd".into()),
            ..Status::default()
        };
        st.memory.current_bytes = Some(100 << 20);
        st.memory.max_bytes = Some(1 << 30);
        st.watchdog.last_ping_age_s = Some(4.0);
        st.watchdog.period_s = Some(60.0);
        st.components = Components {
            source: "journal".into(),
            age_s: Some(3.0),
            ..Components::default()
        }
        .with(vec![Component {
            name: "we\"ird\\name\n".into(),
            state: "restarting".into(),
            restarts: Some(4),
            crashes_1h: 2,
            ..Component::default()
        }]);
        st
    }

    /// `(name, TYPE)` of every family in a rendered file.
    fn families(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|rest| {
                let (n, t) = rest.split_once(' ').unwrap();
                (n.to_string(), t.to_string())
            })
            .collect()
    }

    #[test]
    fn the_textfile_has_help_type_and_escaped_labels() {
        let st = full();
        let text = render_at(&st, 1_000_000);
        assert!(
            text.contains("jarvis_supervisor_up{bot=\"default\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("jarvis_supervisor_verdict{bot=\"default\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "jarvis_supervisor_component_restarts_total{bot=\"default\",component=\"we\\\"ird\\\\name\\n\"} 4\n"
            ),
            "{text}"
        );
        // Every sample follows its own HELP and TYPE lines.
        let mut typed = std::collections::HashSet::new();
        let mut helped = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(helped.contains(&name), "TYPE before HELP: {l}");
                typed.insert(name);
            } else if let Some(rest) = l.strip_prefix("# HELP ") {
                helped.insert(rest.split(' ').next().unwrap().to_string());
            } else {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(typed.contains(name), "{l}");
            }
        }
        let bare = Status {
            state: "active".into(),
            ..Status::default()
        };
        assert!(
            !render_at(&bare, 1_000_000).contains("memory_bytes"),
            "unmeasured values are left out"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), &st, &[], true).unwrap();
        let written = std::fs::read_to_string(&p).unwrap();
        assert!(
            written.contains("jarvis_supervisor_up{bot=\"default\"} 1\n"),
            "{written}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        // Where it went, for the package's removal scripts: one line.
        let record = dir.path().join("state/textfile.path");
        remember(&record, &p).unwrap();
        remember(&record, &p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&record).unwrap(),
            format!("{}\n", p.display())
        );
    }

    /// Issue 27, item 8: the file says whether the record's sample was
    /// stored; and with no room for a new file, the old one is rewritten
    /// through its own blocks, never left saying a past "up 1".
    #[test]
    fn the_file_says_a_lost_sample_and_replaces_a_stale_one_in_place() {
        let st = full();
        let lost = render_with(&st, &[], 1_000_000, Some(false));
        assert!(
            lost.contains("\njarvis_supervisor_sample_stored{bot=\"default\"} 0\n"),
            "{lost}"
        );
        assert!(render_with(&st, &[], 1_000_000, Some(true))
            .contains("\njarvis_supervisor_sample_stored{bot=\"default\"} 1\n"));
        assert!(!render_at(&st, 1_000_000).contains("sample_stored"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE);
        let stale = format!("jarvis_supervisor_up 1\n{}", "# pad\n".repeat(700));
        std::fs::write(&p, &stale).unwrap();
        let mut down = full();
        down.state = "inactive".into();
        let text = render_with(&down, &[], 1_000_100, Some(false));
        assert!(text.len() < stale.len());
        in_place(&p, &text).unwrap();
        let now = std::fs::read_to_string(&p).unwrap();
        assert_eq!(now, text);
        assert!(
            now.contains("\njarvis_supervisor_up{bot=\"default\"} 0\n"),
            "{now}"
        );
        // Longer than the blocks the old file has: refused, file untouched.
        std::fs::write(&p, "x").unwrap();
        let big = "#\n".repeat(10_000);
        assert!(in_place(&p, &big).is_err());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "x");
        // Never through a link.
        let link = dir.path().join("link.prom");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(in_place(&link, "y").is_err());
    }

    #[test]
    fn counters_end_in_total_and_times_are_unix_timestamps() {
        let text = render_at(&full(), 1_000_000);
        for (name, kind) in families(&text) {
            assert_eq!(
                name.ends_with("_total"),
                kind == "counter",
                "{name} is a {kind}: only counters end in _total"
            );
        }
        assert!(
            text.contains(
                "# TYPE jarvis_supervisor_restarts_total counter\njarvis_supervisor_restarts_total{bot=\"default\"} 7\n"
            ),
            "{text}"
        );
        assert!(
            !text.contains("restarts_24h") && !text.contains("uptime"),
            "{text}"
        );
        // Up 12 s when written at 1,000,000: started at 999,988.
        assert!(
            text.contains("jarvis_supervisor_start_time_seconds{bot=\"default\"} 999988\n"),
            "{text}"
        );
        assert!(
            text.contains("jarvis_supervisor_last_record_timestamp_seconds{bot=\"default\"} 1000000\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "jarvis_supervisor_info{bot=\"default\",version=\"1.2.3-1\",supervisor=\"systemd\"} 1\n"
            ),
            "{text}"
        );
    }

    /// Issue 26: every series names its bot; a named instance's series sit
    /// under the same families as the default's, with its name as `bot`,
    /// and a value its engine does not give is left out, never made up.
    #[test]
    fn every_series_has_a_bot_label_and_named_instances_have_their_own() {
        let alpha = Line {
            name: "alpha".into(),
            verdict: crate::health::Verdict::Ok,
            main_pid: Some(4242),
            n_restarts: Some(2),
            supervisor: Some("jarvisctl run".into()),
            memory_bytes: Some(50 << 20),
            ..Line::default()
        };
        let beta = Line {
            name: "beta".into(),
            verdict: crate::health::Verdict::Critical,
            n_restarts: Some(0),
            supervisor: Some("systemd".into()),
            state: "paused".into(),
            paused: true,
            ..Line::default()
        };
        let text = render_with(&full(), &[alpha, beta], 1_000_000, Some(true));
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.contains("{bot=\""), "a series without its bot: {l}");
        }
        for want in [
            "jarvis_supervisor_up{bot=\"default\"} 1\n",
            "jarvis_supervisor_up{bot=\"alpha\"} 1\n",
            "jarvis_supervisor_up{bot=\"beta\"} 0\n",
            "jarvis_supervisor_verdict{bot=\"beta\"} 2\n",
            "jarvis_supervisor_paused{bot=\"alpha\"} 0\n",
            "jarvis_supervisor_paused{bot=\"beta\"} 1\n",
            "jarvis_supervisor_restarts_total{bot=\"alpha\"} 2\n",
            "jarvis_supervisor_memory_bytes{bot=\"alpha\"} 52428800\n",
            "jarvis_supervisor_last_record_timestamp_seconds{bot=\"beta\"} 1000000\n",
            "jarvis_supervisor_info{bot=\"alpha\",version=\"1.2.3-1\",supervisor=\"jarvisctl run\"} 1\n",
        ] {
            assert!(text.contains(want), "no {want:?} in:\n{text}");
        }
        assert!(!text.contains("memory_bytes{bot=\"beta\"}"), "{text}");
        // One HELP and TYPE per family, whatever the number of bots.
        let types: Vec<_> = families(&text).into_iter().map(|(n, _)| n).collect();
        let unique: std::collections::HashSet<_> = types.iter().collect();
        assert_eq!(types.len(), unique.len(), "{text}");
    }

    /// The metric names a PromQL expression uses: identifiers that start
    /// with the package's prefix.
    fn names_in(expr: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = expr;
        while let Some(i) = rest.find("jarvis_supervisor_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            out.push(tail[..end].to_string());
            rest = &tail[end..];
        }
        out
    }

    /// Every metric that the shipped dashboard and alert rules query is one
    /// that this writer emits (read from its own output, not a list).
    #[test]
    fn the_dashboard_and_the_rules_name_only_metrics_the_textfile_has() {
        let text = render_at(&full(), 1_000_000);
        let written: std::collections::HashSet<String> =
            families(&text).into_iter().map(|(n, _)| n).collect();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring");
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("grafana-dashboard.json")).unwrap())
                .unwrap();
        let mut exprs = Vec::new();
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, x) in m {
                        match (k.as_str(), x) {
                            ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                            _ => walk(x, out),
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                _ => {}
            }
        }
        walk(&dash, &mut exprs);
        let panels = exprs.len();
        assert!(panels >= 6, "the dashboard has {panels} queries");
        let rules = std::fs::read_to_string(root.join("jarvis-supervisor.rules.yml")).unwrap();
        let in_rules: Vec<String> = rules
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("expr:"))
            .map(String::from)
            .collect();
        assert!(in_rules.len() >= 6, "{} alert expressions", in_rules.len());
        exprs.extend(in_rules);
        let mut used = std::collections::BTreeSet::new();
        for e in &exprs {
            for n in names_in(e) {
                assert!(
                    written.contains(&n),
                    "{n} (in `{e}`) is not a metric the textfile has: {written:?}"
                );
                used.insert(n);
            }
        }
        for must in [
            "jarvis_supervisor_up",
            "jarvis_supervisor_verdict",
            "jarvis_supervisor_memory_bytes",
            "jarvis_supervisor_memory_max_bytes",
            "jarvis_supervisor_restarts_total",
            "jarvis_supervisor_watchdog_age_seconds",
            "jarvis_supervisor_component_up",
            "jarvis_supervisor_last_record_timestamp_seconds",
        ] {
            assert!(used.contains(must), "nothing shown or alerted on {must}");
        }
    }
}
