//! `jarvisctl status`: the health of the service on this host, for people
//! (one line per finding) and monitors (`--json`, and the monitoring-plugin
//! exit codes 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). The arguments are
//! checked here; the health itself is gathered by `health`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::components::Thresholds;
use crate::deploy::hosts::Host;
use crate::health::{self, Verdict};
use crate::heartbeat;
use crate::samples;
use crate::ssh::Target;
use jarvis_cli::StatusArgs;
use jarvis_model::error::{Error, Result};
use jarvis_model::instance::{Instance, InstanceName};
use jarvis_model::paths::Paths;

/// A monitoring plugin answers UNKNOWN (3) when it cannot say: a bad
/// argument, or a state it could not read.
pub fn run(paths: &Paths, args: &StatusArgs) -> Result<i32> {
    checked(paths, args).map_err(|e| e.with_code(Verdict::Unknown as i32))
}

fn checked(paths: &Paths, args: &StatusArgs) -> Result<i32> {
    let history = args
        .samples
        .clone()
        .unwrap_or_else(|| paths.host(Path::new(samples::PATH)));
    if args.trend {
        return health::trend::run(paths, &history, args.json);
    }
    let ping = ping_target(paths, args)?;
    let heartbeat = |code: i32| {
        if let Some(m) = &ping {
            heartbeat::ping(m, code);
        }
    };
    if args.record {
        // The timer's run: it succeeds whatever the check found; each
        // instance's ping carries its verdict, and goes before any file is
        // written. A named instance pings the URL of its own file.
        let named = Instance::installed(paths, false);
        let each = |instance: &Instance, code: i32| match instance {
            Instance::Default => heartbeat(code),
            Instance::Named(_) => {
                if let Some(m) = named_target(paths, instance) {
                    heartbeat::ping_of(instance, &m, code);
                }
            }
        };
        health::record::record(paths, &history, &named, each)?;
        // Then a deploy cut off on this host is settled (root's timer).
        if nix::unistd::geteuid().is_root() {
            let by = jarvis_cli::SettleBy::Status.phrase();
            match crate::deploy::settle::settle(paths, by, true) {
                Ok(crate::deploy::settle::Settled::Done { done, .. }) => {
                    for l in done {
                        eprintln!("settle: {}", jarvis_model::defuse::printable(&l));
                    }
                }
                Ok(_) => {}
                Err(e) => eprintln!("settle: {e}"),
            }
        }
        return Ok(0);
    }
    if !args.host.is_empty() || args.hosts.is_some() {
        let (targets, timeout) = hosts(args)?;
        let (targets, wanted): (Vec<Target>, Vec<Option<Vec<Instance>>>) =
            targets.into_iter().map(|h| (h.target, h.instances)).unzip();
        let rows = health::hosts::check_all(&targets, &args.ssh_option, timeout);
        let rows = health::hosts::by_instance(rows, &wanted);
        let code = health::hosts::print(&rows, args.json);
        heartbeat(code);
        return Ok(code);
    }
    if !(args.crash_window >= 10.0 && args.crash_window <= 86400.0) {
        return Err(Error::new(format!(
            "--crash-window {}: give a number of seconds, 10 to 86400",
            args.crash_window
        )));
    }
    if !(args.record_interval >= 1.0 && args.record_interval <= 86400.0) {
        return Err(Error::new(format!(
            "--record-interval {}: give the bot's record interval in seconds, 1 to 86400",
            args.record_interval
        )));
    }
    let thresholds = Thresholds {
        crashes_warn: args.warn_crashes,
        interval_s: args.record_interval,
    };
    // A named instance: its own line. On a host with named instances and
    // none asked for: one line each (JSON: the default's document, as
    // today, with the lines added and the worst verdict).
    let named = Instance::installed(paths, false);
    match args.instance.as_deref() {
        Some("default") => {}
        Some(name) => {
            let name: InstanceName = name.parse()?;
            let line = health::instances::of_named(paths, &name);
            let code = line.verdict as i32;
            if args.json {
                println!("{}", serde_json::to_string(&line).unwrap_or_default());
            } else {
                health::instances::print(std::slice::from_ref(&line));
            }
            heartbeat(code);
            return Ok(code);
        }
        None if !named.is_empty() => {
            let mut st = health::collect_all(paths, &thresholds, args.crash_window);
            let lines = health::instances::lines(paths, &st, &named);
            let worst = health::instances::worst(&lines);
            let code = if args.json {
                st.verdict = worst;
                st.exit_code = worst as i32;
                st.instances = Some(lines);
                println!("{}", serde_json::to_string(&st).unwrap_or_default());
                st.exit_code
            } else {
                health::instances::print(&lines)
            };
            heartbeat(code);
            return Ok(code);
        }
        None => {}
    }
    let st = health::collect_all(paths, &thresholds, args.crash_window);
    if args.json {
        println!("{}", serde_json::to_string(&st).unwrap_or_default());
    } else {
        health::print_human(&st);
    }
    heartbeat(st.exit_code);
    Ok(st.exit_code)
}

/// `--hosts FILE` (the deploy's hosts.toml, whose `instances` are checked
/// one by one, or a plain list) and `--host TARGET...`, and the deadline of
/// each.
fn hosts(args: &StatusArgs) -> Result<(Vec<Host>, Duration)> {
    let mut targets = Vec::new();
    if let Some(f) = &args.hosts {
        targets.extend(crate::deploy::hosts::read_any(f)?);
    }
    for h in &args.host {
        targets.push(Host::plain(Target::parse(h).map_err(|e| {
            Error::new(format!("--host {e}")).with_note("example: --host root@vps1.example.org:22")
        })?));
    }
    if targets.is_empty() {
        return Err(Error::new("the hosts file lists no host"));
    }
    if !(args.timeout > 0.0 && args.timeout < 3600.0) {
        return Err(Error::new(format!(
            "--timeout {}: give a number of seconds above 0 and under 3600",
            args.timeout
        )));
    }
    Ok((targets, Duration::from_secs_f64(args.timeout)))
}

/// `--ping URL`; else, for the timer's run (`--record`), the URL in
/// heartbeat.conf, so that pings stop when the timer stops, whoever else
/// runs status. A broken conffile is reported and skips the ping; it never
/// hides the check itself.
fn ping_target(paths: &Paths, args: &StatusArgs) -> Result<Option<heartbeat::Monitor>> {
    if args.ping.is_some() {
        return heartbeat::target(args.ping.as_deref(), PathBuf::new());
    }
    if !args.record {
        return Ok(None);
    }
    match heartbeat::configured(&paths.host(Path::new(heartbeat::CONF))) {
        Ok(url) => Ok(url),
        Err(e) => {
            eprintln!("heartbeat: {e}; no ping sent");
            Ok(None)
        }
    }
}

/// A named instance's monitor, from its own heartbeat file: none when it
/// has none; a broken or untrusted file is reported and sends no ping.
fn named_target(paths: &Paths, instance: &Instance) -> Option<heartbeat::Monitor> {
    match heartbeat::read_conf_of(paths, instance) {
        Ok((conf, problems)) if problems.is_empty() => conf.monitor(),
        Ok((_, mut problems)) => {
            eprintln!(
                "heartbeat: {}; no ping sent for instance {instance}",
                problems.remove(0)
            );
            None
        }
        Err(e) => {
            eprintln!("heartbeat: {e}; no ping sent for instance {instance}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_help_names_the_schema_that_is_printed() {
        use clap::CommandFactory;
        let cli = jarvis_cli::Cli::command();
        let status = cli.find_subcommand("status").expect("a status subcommand");
        let json = status
            .get_arguments()
            .find(|a| a.get_id() == "json")
            .expect("status --json");
        let help = json.get_help().map(ToString::to_string).unwrap_or_default();
        assert!(
            help.contains(&format!("(schema {},", crate::health::SCHEMA)),
            "{help}"
        );
    }
}
