//! `status` on a host with several instances (issue 26): one line per
//! instance with its verdict, like `pm2 status`, and the worst verdict as
//! the exit code. The default instance's line comes from its full check;
//! a named instance's from its engine (systemd, or its own `jarvisctl run`).

use serde::{Deserialize, Serialize};

use super::{render, Status, Verdict};
use crate::control::{self, Target};
use crate::output::{printable, table};
use jarvis_cli::TargetArgs;
use jarvis_model::instance::{Instance, InstanceName};
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

/// One instance's line.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Line {
    pub name: String,
    pub unit: String,
    pub verdict: Verdict,
    pub state: String,
    pub main_pid: Option<u32>,
    pub n_restarts: Option<u64>,
    pub user: Option<String>,
    /// Why the verdict is not OK, one sentence each.
    pub reasons: Vec<String>,
    /// What runs it: "systemd" or "jarvisctl run".
    pub supervisor: Option<String>,
    /// The program's own pause switch is set for it (its code root's pause
    /// file, or the variable in its environment).
    pub paused: bool,
    /// The memory of its processes (the cgroup's count under systemd, the
    /// process group's RSS under `jarvisctl run`), when running.
    pub memory_bytes: Option<u64>,
}

/// The default instance, from its full check.
pub fn of_default(st: &Status) -> Line {
    Line {
        name: Instance::Default.to_string(),
        unit: Instance::Default.unit(),
        verdict: st.verdict,
        state: st.state.clone(),
        main_pid: st.main_pid,
        n_restarts: st.n_restarts,
        user: None,
        reasons: st.reasons.clone(),
        supervisor: st.supervisor.clone(),
        memory_bytes: st.memory.current_bytes,
        paused: st.pause.is_some(),
    }
}

/// A named instance, from its engine.
pub fn of_named(paths: &Paths, name: &InstanceName) -> Line {
    let instance = Instance::Named(name.clone());
    let unit = instance.unit();
    let loaded = Unit::load_named(paths, &unit).ok();
    let user = loaded.as_ref().map(|u| u.user());
    let pause = loaded.as_ref().and_then(|u| crate::pause::detect(paths, u));
    let on = TargetArgs {
        unit: None,
        instance: Some(name.to_string()),
    };
    let Ok(t) = Target::new(paths, &on) else {
        return Line {
            name: name.to_string(),
            unit,
            verdict: Verdict::Unknown,
            state: "unknown".into(),
            main_pid: None,
            n_restarts: None,
            user,
            reasons: vec!["its engine cannot be read".into()],
            ..Line::default()
        };
    };
    let s = control::seen(&t);
    let memory_bytes = s.main_pid.and_then(|pid| memory(&t, &unit, pid));
    let supervisor = Some(match t.engine {
        control::Engine::Systemd => "systemd".to_string(),
        control::Engine::JarvisctlRun => "jarvisctl run".to_string(),
    });
    let why = match t.engine {
        control::Engine::Systemd => format!("journalctl -u {unit} -n 30"),
        control::Engine::JarvisctlRun => format!("tail -n 30 {}/engine.log", instance.engine_dir().display()),
    };
    // As the default's: stopped by its own pause switch is "paused" and
    // OK (the operator chose it); set while it still runs, a WARNING.
    let mut state = s.state.clone();
    let (verdict, reasons) = if let (Some(p), true) = (&pause, s.running) {
        (
            Verdict::Warning,
            vec![format!(
                "the pause switch is set but the bot still runs: it pauses at its next start ({}; stop it now: jarvisctl pause --instance {name})",
                p.describe()
            )],
        )
    } else if s.running {
        (Verdict::Ok, Vec::new())
    } else if let Some(p) = &pause {
        state = "paused".into();
        (
            Verdict::Ok,
            vec![format!(
                "paused on purpose, not trading ({}; start it: jarvisctl resume --instance {name})",
                p.describe()
            )],
        )
    } else if s.auto_restart || s.busy {
        (
            Verdict::Warning,
            vec![format!(
                "{} ({} restarts so far); see why: {why}",
                s.state, s.n_restarts
            )],
        )
    } else {
        let result = if s.result.is_empty() || s.result == "success" {
            String::new()
        } else {
            format!(", result {}", s.result)
        };
        (
            Verdict::Critical,
            vec![format!(
                "not running ({}{result}); see why: {why}; start it: jarvisctl start --instance {name}",
                s.state
            )],
        )
    };
    Line {
        name: name.to_string(),
        unit,
        verdict,
        state,
        main_pid: s.main_pid,
        n_restarts: Some(s.n_restarts),
        user,
        reasons,
        supervisor,
        memory_bytes,
        paused: pause.is_some(),
    }
}

/// The memory of a running instance's processes, as the default's is
/// measured: the cgroup's own count under systemd (else its processes'
/// RSS), the program's process group under `jarvisctl run`.
fn memory(t: &Target, unit: &str, main_pid: u32) -> Option<u64> {
    match t.engine {
        control::Engine::Systemd => {
            let p = crate::systemd::show(unit, &["MemoryCurrent", "ControlGroup"])?;
            p.get("MemoryCurrent")
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|&m| m < u64::MAX)
                .or_else(|| p.get("ControlGroup").and_then(|cg| super::rss::rss_of_cgroup(cg)))
        }
        control::Engine::JarvisctlRun => super::fallback::rss_of_group(i32::try_from(main_pid).ok()?),
    }
}

/// The worst verdict of the lines.
pub fn worst(lines: &[Line]) -> Verdict {
    Verdict::worst(lines.iter().map(|l| l.verdict))
}

/// Every instance's line on a host with named instances: the default's
/// (from `default`, its full check) when its code root is there, then each
/// named one's.
pub fn lines(paths: &Paths, default: &Status, named: &[InstanceName]) -> Vec<Line> {
    let deployed = Unit::load(paths)
        .ok()
        .and_then(|u| u.working_directory())
        .is_some_and(|w| paths.host(&w.path).is_dir());
    let mut out = Vec::new();
    if deployed {
        out.push(of_default(default));
    }
    out.extend(named.iter().map(|n| of_named(paths, n)));
    out
}

/// Prints the lines as a table, one per instance; the exit code (the worst).
pub fn print(lines: &[Line]) -> i32 {
    let mut rows = vec![["NAME", "VERDICT", "STATE", "PID", "RESTARTS", "WHY"].map(String::from)];
    for l in lines {
        rows.push([
            l.name.clone(),
            render::verdict_word(l.verdict).to_string(),
            l.state.clone(),
            l.main_pid.map_or("-".into(), |p| p.to_string()),
            l.n_restarts.map_or("-".into(), |n| n.to_string()),
            printable(&l.reasons.join("; ")),
        ]);
    }
    print!("{}", table(&rows));
    worst(lines) as i32
}
