//! The health of the service on this host: one [`Status`] gathered from
//! the engine that runs the bot (systemd's properties, or `jarvisctl
//! run`'s state file), its output (error lines and components, every
//! `.env` value masked), its files and the host. `jarvisctl status` prints
//! it; the timer's run records it (`record`); `--trend` and `--host` read
//! it back from the samples and from other hosts.

use std::path::Path;

use crate::components::Thresholds;
use crate::systemd;
use jarvis_model::masking::Masker;
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

mod components;
mod crashloop;
mod errors;
mod fallback;
mod full;
pub mod hosts;
pub mod instances;
mod logs_dir;
mod model;
mod output;
mod python;
pub mod record;
mod render;
mod rss;
mod sight;
mod textfile;
pub mod trend;
mod under_systemd;

pub use crashloop::DEFAULT_WINDOW_S;
pub use model::*;
pub use render::print_human;

/// Below this much free space for the logs, a WARNING.
const DISK_LOW: u64 = 1 << 30;

/// The status with the default thresholds and crash window.
pub fn collect(paths: &Paths) -> Status {
    collect_all(paths, &Thresholds::default(), DEFAULT_WINDOW_S)
}

/// The status; a restarting bot is judged over the last `crash_window_s`.
pub fn collect_all(paths: &Paths, thresholds: &Thresholds, crash_window_s: f64) -> Status {
    let mut st = Status {
        schema: SCHEMA,
        state: "unknown".into(),
        package_version: systemd::package_version("jarvis-supervisor"),
        ..Status::default()
    };
    let unit = Unit::load(paths).ok();
    let sight = sight::Sight::me();
    if !systemd::running() && sight.denied(&fallback::state_file(paths)) {
        sight.note(&mut st, Hidden::EngineState, "jarvisctl run's state");
        raise(
            &mut st,
            Verdict::Unknown,
            "cannot read jarvisctl run's state".into(),
        );
        st.exit_code = st.verdict as i32;
        return st;
    }
    // Without systemd, the fallback engine's state says it all.
    let fallback = !systemd::running() && fallback::collect(paths, unit.as_ref(), &mut st, crash_window_s);
    if !fallback && !under_systemd::collect(&mut st, crash_window_s) {
        store(paths, &mut st);
        st.exit_code = st.verdict as i32;
        return st;
    }
    if !fallback && !sight.journal() {
        sight.note(&mut st, Hidden::Journal, "the journal");
        st.restarts_24h = None;
    }
    paused(paths, unit.as_ref(), &mut st);
    // Both engines give the age of the last ping (of READY before the first).
    if let (Some(age), Some(per)) = (st.watchdog.last_ping_age_s, st.watchdog.period_s) {
        if age > per / 2.0 {
            raise(
                &mut st,
                Verdict::Warning,
                format!("last watchdog ping {age:.0} s ago (WatchdogSec={per:.0}s)"),
            );
        }
    }
    if let (Some(cur), Some(max)) = (st.memory.current_bytes, st.memory.max_bytes) {
        let pct = cur as f64 * 100.0 / max as f64;
        st.memory.percent_of_max = Some((pct * 10.0).round() / 10.0);
        if pct > 80.0 {
            raise(
                &mut st,
                Verdict::Warning,
                format!("memory at {pct:.0}% of MemoryMax"),
            );
        }
    }
    full::check(paths, unit.as_ref(), fallback, &mut st);
    if let Some(u) = &unit {
        files(paths, u, &sight, &mut st);
        bot(paths, u, fallback, &sight, thresholds, crash_window_s, &mut st);
    }
    if let Some(c) = &st.crash_loop {
        let (v, why) = crashloop::verdict(c);
        raise(&mut st, v, why);
    }
    store(paths, &mut st);
    st.exit_code = st.verdict as i32;
    st
}

/// The package's own records (the health samples, the textfile's path):
/// named when their filesystem is full.
fn store(paths: &Paths, st: &mut Status) {
    if let Some(dir) = paths.host(Path::new(crate::samples::PATH)).parent() {
        record::store_space(dir, st);
    }
}

/// What the unit's files say: the logs, the disk, the deployed code, the
/// interpreter of the next start.
fn files(paths: &Paths, u: &Unit, sight: &sight::Sight, st: &mut Status) {
    st.logs = logs_dir::of_unit(paths, u);
    if let Some(dir) = st
        .logs
        .dir
        .clone()
        .filter(|d| sight.denied(&paths.host(Path::new(d))))
    {
        sight.note(st, Hidden::Logs, &format!("the logs in {dir}"));
        st.logs.size_bytes = None;
        st.logs.newest_rotated_age_s = None;
    }
    let code_root = u.working_directory().map(|w| w.path);
    if let Some(root) = code_root
        .as_ref()
        .filter(|r| sight.denied(&paths.host(&r.join(crate::interpreter::VENV_PYTHON))))
    {
        sight.note(st, Hidden::CodeRoot, &format!("the code root {}", root.display()));
    }
    if let Some(dir) = &st.logs.dir {
        st.disk_free_bytes = logs_dir::free_bytes(&paths.host(Path::new(dir)));
        if st.disk_free_bytes.is_some_and(|f| f < DISK_LOW) {
            raise_host(
                st,
                Verdict::Warning,
                "disk space low for the logs (under 1 GiB)".into(),
            );
        }
    }
    // A deploy cut off on this host: named as such (its half-done swap is
    // no tampering), with the command that settles it.
    let unsettled = crate::deploy::settle::scan(paths);
    for line in unsettled.describe() {
        let swapped = unsettled.cuts.iter().any(|c| c.swapped);
        raise(
            st,
            if swapped {
                Verdict::Critical
            } else {
                Verdict::Warning
            },
            line,
        );
    }
    let mid_swap = !unsettled.live && unsettled.cuts.iter().any(|c| c.swapped);
    if let Some(d) = code_root
        .filter(|_| st.sees(Hidden::CodeRoot) && !mid_swap)
        .and_then(|root| crate::drift::check(paths, &root))
    {
        st.code_deploy = Some(d.deploy.clone());
        st.code_changed = d.changed.iter().map(crate::drift::Changed::describe).collect();
        if !d.changed.is_empty() {
            raise(st, Verdict::Warning, crate::drift::summary(&d));
        }
    }
    st.python = python::of_unit(paths, u, st.main_pid);
    if !st.sees(Hidden::CodeRoot) {
        // Unknown, not broken: the venv could not be looked at.
        st.python.path = None;
        st.python.source = None;
        st.python.problem = None;
    }
    if let Some(why) = st.python.problem.clone() {
        raise(st, Verdict::Warning, format!("the next start fails: {why}"));
    }
}

/// What the bot's output says: its error lines, a restarting bot's last
/// words, its components. The output is read once for all of them.
fn bot(
    paths: &Paths,
    u: &Unit,
    fallback: bool,
    sight: &sight::Sight,
    thresholds: &Thresholds,
    crash_window_s: f64,
    st: &mut Status,
) {
    // Built once: the error lines and the components are masked with it.
    let secrets = crate::secrets::masker(paths, u);
    if secrets.is_none() && !sight.is_root() {
        sight.note(st, Hidden::EnvFiles, "the environment files (.env)");
    }
    // Where the error lines and component records come from.
    let output_seen = if fallback {
        st.sees(Hidden::Logs)
    } else {
        st.sees(Hidden::Journal)
    };
    let output = output::Output::new(paths, u, fallback);
    st.errors = match &secrets {
        _ if !output_seen => Vec::new(),
        None => {
            vec!["(error lines hidden: .env could not be read to mask its values; run as root)".into()]
        }
        Some(secrets) => errors::of_output(&output, secrets),
    };
    // A restarting bot: its own last line, and the preflight's cause
    // (the service user's file: masked as the bot's text is).
    if let Some(c) = st.crash_loop.as_mut() {
        c.preflight =
            crashloop::preflight(paths, u).map(|p| secrets.as_ref().map_or(p.clone(), |m| m.mask(&p)));
        c.last_error = match &secrets {
            None => Some("(hidden: .env could not be read to mask its values; run as root)".into()),
            Some(secrets) if fallback => fallback::last_words(u, secrets),
            Some(secrets) => under_systemd::last_words(secrets, crash_window_s),
        };
    }
    // The components, while the bot runs: its values masked, or no
    // text of its shown at all when .env could not be read.
    if st.main_pid.is_some() {
        let mut c = components::collect(
            paths,
            u,
            &output,
            secrets.as_ref().unwrap_or(&Masker::default()),
            thresholds,
        );
        if !output_seen && c.source == "none" {
            // Not a bot without records: records this user cannot read.
            c.source = "hidden".into();
        }
        let (crit, warn) = crate::components::verdicts(&c, thresholds, st.uptime_s);
        for why in crit {
            raise(st, Verdict::Critical, why);
        }
        for why in warn {
            raise(st, Verdict::Warning, why);
        }
        st.components = c;
        if secrets.is_none() {
            for x in &mut st.components.list {
                x.last_error = x.last_error.as_ref().map(|_| "(hidden: .env unreadable)".into());
            }
        }
    }
}

/// A bot stopped by the program's own pause switch is "paused", and OK:
/// the operator chose it, so no monitor pages for it and the heartbeat
/// stays green; `jarvis_supervisor_paused` and this state say it. The
/// engine's view of that stop (inactive, a skipped start, or the notify
/// protocol failure of the program's own exit 0) is replaced. A switch set
/// while the bot still runs is a WARNING: it takes effect at the next start.
fn paused(paths: &Paths, unit: Option<&Unit>, st: &mut Status) {
    let Some(p) = unit.and_then(|u| crate::pause::detect(paths, u)) else {
        return;
    };
    if st.main_pid.is_none() && st.state != "active" {
        st.state = "paused".into();
        st.verdict = Verdict::Ok;
        st.bot_verdict = Verdict::Ok;
        st.reasons.clear();
    } else {
        raise(
            st,
            Verdict::Warning,
            "the pause switch is set but the bot still runs: it pauses at its next start (stop it now: jarvisctl pause)".into(),
        );
    }
    st.pause = Some(p);
}

/// Now, in whole unix seconds: the samples' and the textfile's clock.
fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A finding about the bot (what runs it, what it says, its files).
fn raise(st: &mut Status, v: Verdict, why: String) {
    st.bot_verdict = st.bot_verdict.max(v);
    raise_host(st, v, why);
}

/// A finding about the host around the bot (free disk space, the
/// package's own records): in the verdict, not in the bot's.
fn raise_host(st: &mut Status, v: Verdict, why: String) {
    st.verdict = st.verdict.max(v);
    st.reasons.push(why);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's own findings (its disk, the package's records) count in
    /// the verdict and not in the bot's; the bot's own count in both, and
    /// the JSON carries both verdicts.
    #[test]
    fn a_low_disk_warns_about_the_host_not_the_bot() {
        let mut st = Status::default();
        raise_host(
            &mut st,
            Verdict::Warning,
            "disk space low for the logs (under 1 GiB)".into(),
        );
        assert_eq!((st.verdict, st.bot_verdict), (Verdict::Warning, Verdict::Ok));
        raise(&mut st, Verdict::Critical, "down (dead)".into());
        assert_eq!(
            (st.verdict, st.bot_verdict),
            (Verdict::Critical, Verdict::Critical)
        );
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(
            (json["verdict"].as_str(), json["bot_verdict"].as_str()),
            (Some("CRITICAL"), Some("CRITICAL"))
        );
    }
}
