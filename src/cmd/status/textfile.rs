//! The health timer's node_exporter textfile (issue 15): the status as
//! `jarvis_supervisor_*` metrics, written whole or not at all (a temporary
//! file in the same directory, renamed over the old one: node_exporter
//! reads only `*.prom`, so it never sees a half-written file).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Status;
use crate::error::{Error, Result};

/// Debian's and Ubuntu's prometheus-node-exporter read this directory.
pub const DEFAULT_DIR: &str = "/var/lib/prometheus/node-exporter";
pub const FILE: &str = "jarvis_supervisor.prom";

/// Where to write: `$JARVIS_TEXTFILE_DIR` (a drop-in of the health unit
/// sets it), else the default directory when it exists; None: nowhere.
pub fn dir() -> Option<PathBuf> {
    match std::env::var_os("JARVIS_TEXTFILE_DIR").filter(|v| !v.is_empty()) {
        Some(d) => Some(PathBuf::from(d)),
        None => Some(PathBuf::from(DEFAULT_DIR)).filter(|d| d.is_dir()),
    }
}

pub fn write(dir: &Path, st: &Status) -> Result<PathBuf> {
    let path = dir.join(FILE);
    let mut tmp = tempfile::Builder::new()
        .prefix(".jarvis_supervisor.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            Error::io("create a file in", dir, e)
                .with_note("the textfile directory must exist; set it with JARVIS_TEXTFILE_DIR in a drop-in of jarvis-supervisor-health.service")
        })?;
    tmp.write_all(render(st).as_bytes())
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    // node_exporter runs as its own user: the metrics are not secret.
    let _ = std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644));
    tmp.persist(&path)
        .map_err(|e| Error::io("replace", &path, e.error))?;
    Ok(path)
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

pub fn render(st: &Status) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: Vec<(String, f64)>| {
        if samples.is_empty() {
            return;
        }
        out.push_str(&format!(
            "# HELP jarvis_supervisor_{name} {help}\n# TYPE jarvis_supervisor_{name} gauge\n"
        ));
        for (labels, v) in samples {
            out.push_str(&format!("jarvis_supervisor_{name}{labels} {v}\n"));
        }
    };
    let one = |v: Option<f64>| v.map(|v| vec![(String::new(), v)]).unwrap_or_default();
    gauge(
        "up",
        "1 when the bot's process is up (active), else 0.",
        one(Some(f64::from(u8::from(st.state == "active")))),
    );
    gauge(
        "paused",
        "1 when the program's own pause switch is set (PAUSE_AUTOMATIONS or JARVIS_PAUSE_AUTOMATIONS), else 0.",
        one(Some(f64::from(u8::from(st.pause.is_some())))),
    );
    gauge(
        "verdict",
        "The status verdict: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        one(Some(f64::from(st.exit_code))),
    );
    gauge(
        "uptime_seconds",
        "Seconds since the bot's process started.",
        one(st.uptime_s),
    );
    gauge(
        "restarts_24h",
        "Restarts of the bot's process in the last 24 h.",
        one(st.restarts_24h.map(|n| n as f64)),
    );
    gauge(
        "memory_bytes",
        "Memory of the bot's processes.",
        one(st.memory.current_bytes.map(|n| n as f64)),
    );
    gauge(
        "memory_max_bytes",
        "MemoryMax of the unit.",
        one(st.memory.max_bytes.map(|n| n as f64)),
    );
    gauge(
        "watchdog_age_seconds",
        "Age of the last watchdog ping.",
        one(st.watchdog.last_ping_age_s),
    );
    let c = &st.components;
    if !c.source.is_empty() {
        gauge(
            "components_running",
            "Components of the bot that are running.",
            one(Some(c.running as f64)),
        );
        gauge(
            "components_total",
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
                .filter_map(|x| f(x).map(|v| (format!("{{component=\"{}\"}}", label(&x.name)), v)))
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
            "component_restarts",
            "Restarts of the component, as the bot counts them.",
            per(&|x| x.restarts.map(|n| n as f64)),
        );
        gauge(
            "component_crashes_1h",
            "Crashes of the component in the last hour.",
            per(&|x| Some(x.crashes_1h as f64)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::{Component, Components};

    #[test]
    fn the_textfile_has_help_type_and_escaped_labels() {
        let mut st = Status {
            state: "active".into(),
            exit_code: 1,
            uptime_s: Some(12.0),
            ..Status::default()
        };
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
        let text = render(&st);
        assert!(text.contains("jarvis_supervisor_up 1\n"), "{text}");
        assert!(text.contains("jarvis_supervisor_verdict 1\n"), "{text}");
        assert!(
            text.contains("jarvis_supervisor_component_restarts{component=\"we\\\"ird\\\\name\\n\"} 4\n"),
            "{text}"
        );
        assert!(
            !text.contains("memory_bytes"),
            "unmeasured values are left out: {text}"
        );
        // Every sample follows its own HELP and TYPE lines.
        let mut typed = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_string());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(typed.contains(name), "{l}");
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), &st).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
