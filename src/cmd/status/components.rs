//! Where `status` reads the components' health from: the bot's `/health`
//! when it answers on a loopback address, else the newest record of its
//! output (the journal under systemd, the captured output under `jarvisctl
//! run`). Crash and give-up lines come from that output in both cases.

use std::path::Path;
use std::time::Duration;

use crate::components::{self, Components, Line, Thresholds};
use crate::engine::logsink::OUTPUT_FILE;
use crate::paths::Paths;
use crate::unit::Unit;

/// Read as root from a port the service user serves: small and quick.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
const HEALTH_MAX: u64 = 256 * 1024;
/// What is read back for records and crash lines: the newest lines of the
/// last hour, at most this many, whatever the bot's log volume. A record
/// comes every minute, so it is found at up to 80 lines a second.
const WINDOW_S: f64 = 3600.0;
const WINDOW_ENTRIES: usize = 5_000;
const WINDOW_BYTES: u64 = 2 * 1024 * 1024;

pub fn collect(
    paths: &Paths,
    unit: &Unit,
    fallback: bool,
    secrets: &[String],
    thresholds: &Thresholds,
) -> Components {
    let mask = |s: &str| crate::output::printable(&super::mask(s, secrets));
    let now = crate::engine::state::now_unix();
    let window = crate::recent::Window {
        since: Some(now - WINDOW_S),
        entries: WINDOW_ENTRIES,
        bytes: WINDOW_BYTES,
    };
    let (lines, source) = if fallback {
        (output_lines(paths, unit, &window), "output")
    } else {
        (journal_lines(&window), "journal")
    };
    let mut out = match health_url(paths, unit).and_then(|u| fetch(&u)) {
        Some(body) => components::from_health(&body, &mask),
        None => None,
    }
    .unwrap_or_else(|| match components::newest_record(&lines) {
        Some((t, list)) => Components {
            source: source.into(),
            age_s: t.map(|t| ((now - t).max(0.0) * 10.0).round() / 10.0),
            ..Components::default()
        }
        .with(list),
        None => Components {
            source: "none".into(),
            ..Components::default()
        },
    });
    let mut list = std::mem::take(&mut out.list);
    components::fold_crashes(&mut list, &lines, now - 3600.0, &mask);
    let mut out = out.with(list);
    out.thresholds = *thresholds;
    out
}

/// `http://HOST:PORT/health` from the service's environment files
/// (HEALTH_HOST, HEALTH_PORT; 127.0.0.1:8080 by default, as the program).
/// Only a loopback host: root does not send requests where the service
/// user's file points.
fn health_url(paths: &Paths, unit: &Unit) -> Option<String> {
    let (mut host, mut port) = ("127.0.0.1".to_string(), "8080".to_string());
    for env in unit.environment_files() {
        let Ok(bytes) = crate::untrusted::read(&paths.host(&env.path), None, crate::envcheck::ENV_MAX) else {
            continue;
        };
        for v in crate::envfile::parse(&bytes).vars {
            match v.key.as_str() {
                "HEALTH_HOST" => host = v.value,
                "HEALTH_PORT" => port = v.value,
                _ => {}
            }
        }
    }
    let host = match host.as_str() {
        "0.0.0.0" | "localhost" | "" => "127.0.0.1".to_string(),
        "::" | "::1" => "[::1]".to_string(),
        h if h.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback()) => h.to_string(),
        _ => return None,
    };
    let port: u16 = port.trim().parse().ok().filter(|p| *p > 0)?;
    Some(format!("http://{host}:{port}/health"))
}

fn fetch(url: &str) -> Option<Vec<u8>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(HEALTH_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut r = agent.get(url).call().ok()?;
    // 200 healthy or degraded, 503 error: both carry the JSON.
    if !matches!(r.status().as_u16(), 200 | 503) {
        return None;
    }
    r.body_mut().with_config().limit(HEALTH_MAX).read_to_vec().ok()
}

/// The newest entries of the unit's journal in `window`, oldest first,
/// with their times.
fn journal_lines(window: &crate::recent::Window) -> Vec<Line> {
    crate::recent::journal(super::UNIT, window)
        .into_iter()
        .map(|e| Line {
            unix: e.unix,
            text: e.text,
        })
        .collect()
}

/// The newest lines of `jarvisctl run`'s capture of the bot's output in
/// `window`; each line's time is the program's own timestamp, where it
/// has one.
fn output_lines(paths: &Paths, unit: &Unit, window: &crate::recent::Window) -> Vec<Line> {
    let Some(dir) = super::logs(paths, unit).dir else {
        return Vec::new();
    };
    let file = paths.host(Path::new(&dir)).join(OUTPUT_FILE);
    let Ok(tail) = crate::recent::file(&file, window) else {
        return Vec::new();
    };
    tail.lines
        .into_iter()
        .map(|l| Line {
            unix: components::line_time(&l),
            text: l,
        })
        .collect()
}
