//! Where `status` reads the components' health from: the bot's `/health`
//! when it answers on a loopback address from a listener of the service
//! user's, else the newest record of its output (the journal under
//! systemd, the captured output under `jarvisctl run`). Crash and give-up
//! lines, and a fresh record that says worse than `/health`, come from that
//! output in both cases.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::output::Output;
use crate::components::{self, Components, Thresholds};
use jarvis_model::masking::Masker;
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

/// Read as root from a port the service user serves: small and quick.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
const HEALTH_MAX: u64 = 256 * 1024;

/// The components from `/health` or the output's newest record, with the
/// crashes of the last hour folded in.
pub fn collect(
    paths: &Paths,
    unit: &Unit,
    output: &Output,
    secrets: &Masker,
    thresholds: &Thresholds,
) -> Components {
    let mask = |s: &str| crate::output::printable(&secrets.mask(s));
    let now = jarvis_model::state::now_unix();
    let (lines, source) = (output.for_components(), output.source());
    let record = components::newest_record(&lines).map(|(t, list)| {
        Components {
            source: source.into(),
            age_s: t.map(|t| ((now - t).max(0.0) * 10.0).round() / 10.0),
            ..Components::default()
        }
        .with(list)
    });
    let (health, ignored) = match health_addr(paths, unit) {
        Some(addr) => trusted_health(addr, unit),
        None => (None, None),
    };
    let health = health.and_then(|body| components::from_health(&body, &mask));
    let mut out = match (health, record) {
        // The bot's own answer, unless its output says worse: a fresh
        // record names what /health may not (a component it lost track of).
        (Some(h), record) => {
            let fresh = record.filter(|r| r.age_s.is_some_and(|a| a <= 3.0 * thresholds.interval_s));
            worse_of(h, fresh.as_ref())
        }
        (None, Some(r)) => r,
        (None, None) => Components {
            source: "none".into(),
            ..Components::default()
        },
    };
    let mut list = std::mem::take(&mut out.list);
    components::fold_crashes(&mut list, &lines, now - 3600.0, &mask);
    let mut out = out.with(list);
    out.health_ignored = ignored;
    out.thresholds = *thresholds;
    out
}

/// How bad a component's state is: what the verdicts act on ranks highest.
fn rank(state: &str) -> u8 {
    match state {
        "running" => 0,
        "restarting" => 2,
        "failed" => 3,
        _ => 1,
    }
}

/// `health` with each component the record shows restarting or failed
/// (what a verdict acts on) taken so from the record, and added when only the
/// record names it. A record's "starting" is older news than /health's
/// "running", not worse evidence.
fn worse_of(mut health: Components, record: Option<&Components>) -> Components {
    let Some(record) = record else { return health };
    let mut list = std::mem::take(&mut health.list);
    for r in record.list.iter().filter(|r| rank(&r.state) >= 2) {
        match list.iter_mut().find(|c| c.name == r.name) {
            Some(c) if rank(&r.state) > rank(&c.state) => {
                c.state = r.state.clone();
                c.restarts = c.restarts.max(r.restarts);
            }
            Some(_) => {}
            None => list.push(r.clone()),
        }
    }
    health.with(list)
}

/// Where the bot serves `/health`, from the service's environment files
/// (HEALTH_HOST, HEALTH_PORT; 127.0.0.1:8080 by default, as the program).
/// Only a loopback host: root does not send requests where the service
/// user's file points. None when a file cannot be read (the port is then
/// unknown, and 8080 may be someone else's).
fn health_addr(paths: &Paths, unit: &Unit) -> Option<SocketAddr> {
    let (mut host, mut port) = ("127.0.0.1".to_string(), "8080".to_string());
    for env in unit.environment_files() {
        let bytes =
            match jarvis_model::untrusted::read(&paths.host(&env.path), None, crate::envcheck::ENV_MAX) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) => return None,
            };
        for v in jarvis_model::envfile::parse(&bytes).vars {
            match v.key.as_str() {
                "HEALTH_HOST" => host = v.value,
                "HEALTH_PORT" => port = v.value,
                _ => {}
            }
        }
    }
    let ip: IpAddr = match host.as_str() {
        "0.0.0.0" | "localhost" | "" => Ipv4Addr::LOCALHOST.into(),
        "::" | "::1" => Ipv6Addr::LOCALHOST.into(),
        h => h.parse::<Ipv4Addr>().ok().filter(Ipv4Addr::is_loopback)?.into(),
    };
    let port: u16 = port.trim().parse().ok().filter(|p| *p > 0)?;
    Some(SocketAddr::new(ip, port))
}

/// The service user's uid (`User=`, a name or a number).
fn service_uid(unit: &Unit) -> Option<(u32, String)> {
    let user = unit.user();
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => nix::unistd::User::from_name(&user).ok().flatten()?.uid.as_raw(),
    };
    Some((uid, user))
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| "no such user".into(), |u| u.name)
}

/// Whether every listener that could answer `addr` is the service user's:
/// Ok(true) yes, Ok(false) nothing listens, Err(finding) someone else does.
fn owned_by_service(addr: SocketAddr, uid: u32, user: &str) -> Result<bool, String> {
    let found = crate::listener::listeners(addr);
    match found.iter().find(|s| s.uid != uid) {
        Some(s) => Err(format!(
            "port {} is held by uid {} ({}), not {user}: /health ignored; stop that listener or set HEALTH_PORT in .env to a free port",
            addr.port(),
            s.uid,
            user_name(s.uid)
        )),
        None => Ok(!found.is_empty()),
    }
}

/// `/health`, only from a listener of the service user's, asked before and
/// after the request (another user's listener could take the port while the
/// bot is down): (the body, or why it was ignored).
fn trusted_health(addr: SocketAddr, unit: &Unit) -> (Option<Vec<u8>>, Option<String>) {
    let Some((uid, user)) = service_uid(unit) else {
        return (
            None,
            Some(format!(
                "the service user {} does not exist: /health on port {} ignored",
                unit.user(),
                addr.port()
            )),
        );
    };
    match owned_by_service(addr, uid, &user) {
        Ok(true) => {}
        Ok(false) => return (None, None),
        Err(why) => return (None, Some(why)),
    }
    let body = fetch(&format!("http://{addr}/health"));
    match owned_by_service(addr, uid, &user) {
        Ok(true) => (body, None),
        Ok(false) => (None, None),
        Err(why) => (None, Some(why)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::Component;

    fn comps(source: &str, list: &[(&str, &str)]) -> Components {
        Components {
            source: source.into(),
            ..Components::default()
        }
        .with(
            list.iter()
                .map(|(n, s)| Component {
                    name: n.to_string(),
                    state: s.to_string(),
                    ..Component::default()
                })
                .collect(),
        )
    }

    #[test]
    fn a_fresh_record_that_says_worse_wins_over_health() {
        let h = comps("health", &[("buy_bot", "running"), ("telegram_bot", "running")]);
        let r = comps(
            "journal",
            &[
                ("buy_bot", "failed"),
                ("telegram_bot", "running"),
                ("sentiment", "restarting"),
            ],
        );
        let out = worse_of(h.clone(), Some(&r));
        let got: Vec<(&str, &str)> = out
            .list
            .iter()
            .map(|c| (c.name.as_str(), c.state.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("buy_bot", "failed"),
                ("telegram_bot", "running"),
                ("sentiment", "restarting")
            ]
        );
        assert_eq!((out.running, out.total, out.source.as_str()), (1, 3, "health"));
        // Older, milder news from the record changes nothing.
        let out = worse_of(
            comps("health", &[("buy_bot", "running")]),
            Some(&comps(
                "journal",
                &[("buy_bot", "starting"), ("other", "running")],
            )),
        );
        assert_eq!(out, comps("health", &[("buy_bot", "running")]));
        // Better news from the record never hides what /health says.
        let out = worse_of(
            comps("health", &[("buy_bot", "failed")]),
            Some(&comps("journal", &[("buy_bot", "running")])),
        );
        assert_eq!(out.list[0].state, "failed");
        assert_eq!(worse_of(h.clone(), None), h);
    }

    #[test]
    fn another_uids_listener_is_named_and_the_service_users_is_accepted() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(owned_by_service(addr, me, "me"), Ok(true));
        let why = owned_by_service(addr, me + 1, "jarvis").unwrap_err();
        assert!(
            why.starts_with(&format!("port {} is held by uid {me} (", addr.port()))
                && why.contains("not jarvis: /health ignored"),
            "{why}"
        );
        drop(l);
        // Nobody listens now: nothing to ask. (Tests run in parallel, and
        // another one may be handed the freed port: then it is its socket.)
        let after = owned_by_service(addr, me, "me");
        let taken = !crate::listener::listeners(addr).is_empty();
        assert!(
            after == Ok(false) || taken,
            "{after:?} with no listener on {addr}"
        );
    }
}
