//! `jarvisctl deploy`: turns the arguments into the deploy's settings,
//! runs the deploy (src/deploy/), prints its summary and maps it to an
//! exit code.

use std::path::Path;
use std::time::Duration;

use crate::deploy::hosts::{self, Host};
use crate::deploy::{self, DeployError, Health, Mode, Settings, Ship, SshSettings};
use crate::ssh::Target;
use jarvis_cli::DeployArgs;
use jarvis_model::error::{exit, Error, Result};
use jarvis_model::paths::Paths;

pub fn run(paths: &Paths, args: &DeployArgs) -> Result<i32> {
    let settings = settings(args)?;
    let outcomes = deploy::run(paths, &settings)?;
    deploy::print_summary(&outcomes, settings.json);
    Ok(if outcomes.iter().all(|o| o.result.ok()) {
        exit::OK
    } else {
        exit::FAILURE
    })
}

/// The one place that reads the arguments: the hosts (with the package
/// and .env given for all of them), what to do, and how.
fn settings(args: &DeployArgs) -> Result<Settings> {
    let mut hosts = Vec::new();
    for h in &args.host {
        let t = Target::parse(h).map_err(|e| Error::new(e).with_code(exit::USAGE))?;
        hosts.push(Host::plain(t));
    }
    if let Some(file) = &args.hosts {
        hosts.extend(hosts::read(file)?);
    } else if hosts.is_empty() {
        hosts = hosts::read(Path::new(hosts::DEFAULT_PATH))?;
    }
    for host in &mut hosts {
        if args.package.is_some() {
            host.package.clone_from(&args.package);
        }
        if args.env.is_some() {
            host.env_file.clone_from(&args.env);
        }
    }
    let ship = || -> Result<Ship> {
        let code = args.code.clone().ok_or(DeployError::NoCode)?;
        if !code.join("bots").is_dir() && !code.is_dir() {
            return Err(DeployError::NotADirectory(code).into());
        }
        Ok(Ship {
            code,
            wheelhouse: args.wheelhouse.clone(),
            python: args.python.clone(),
            take_over: args.take_over.clone(),
            bwlimit: args.bwlimit,
            pause_swap_after: args.pause_swap_after,
        })
    };
    let mode = if args.list {
        Mode::List
    } else if args.rollback {
        Mode::Rollback { to: args.to.clone() }
    } else if args.dry_run {
        Mode::DryRun(ship()?)
    } else {
        Mode::Deploy(ship()?)
    };
    Ok(Settings {
        hosts,
        mode,
        ssh: SshSettings {
            options: args.ssh_option.clone(),
            connect: Duration::from_secs(args.timeout),
        },
        health: Health {
            ready: Duration::from_secs(args.ready_timeout),
            settle: Duration::from_secs(args.settle),
        },
        keep: args.keep,
        order: if args.serial {
            deploy::fleet::Order::SERIAL
        } else {
            deploy::fleet::Order {
                parallel: usize::from(args.parallel),
                rolling: args.rolling,
            }
        },
        json: args.json,
    })
}
