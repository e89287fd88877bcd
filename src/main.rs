//! `jarvisctl`: the helper of the jarvis-supervisor package.
//!
//! `main` only parses the command line, dispatches, and maps the outcome to
//! an exit code; every subcommand lives in its own module under `cmd/`.
// No unsafe here: the three files that need it are in crates/engine
// (docs/design.md, "Unsafe code").
#![deny(unsafe_code)]

mod cmd;
mod components;
mod control;
mod deploy;
mod diagnose;
mod drift;
mod dropin;
mod envcheck;
mod envrules;
mod failed_unit;
mod health;
mod heartbeat;
mod import;
mod instances;
mod interpreter;
mod listener;
mod live;
mod logread;
mod logrotate;
mod output;
mod pause;
mod provision;
mod python;
mod recent;
mod report;
mod runner;
mod samples;
mod secrets;
mod ssh;
mod systemd;

use clap::{CommandFactory, Parser};

fn main() {
    quiet_on_closed_stdout();
    let cli = jarvis_cli::Cli::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(usage_exit_code(&e));
    });
    let code = match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            err.print();
            err.exit_code()
        }
    };
    std::process::exit(code);
}

/// clap's code (2 for a usage error, 0 for --help), except under
/// `status`, a monitoring plugin: a bad argument is UNKNOWN there (3).
fn usage_exit_code(e: &clap::Error) -> i32 {
    let code = e.exit_code();
    if code == 0 {
        return code;
    }
    let status = jarvis_cli::Cli::command()
        .ignore_errors(true)
        .try_get_matches()
        .ok()
        .is_some_and(|m| m.subcommand_name() == Some("status"));
    if status {
        3
    } else {
        code
    }
}

/// `jarvisctl env lint big.env | head -3`: once the reader is gone, stop
/// quietly with the status a shell gives a process killed by SIGPIPE (141),
/// instead of Rust's "failed printing to stdout" panic and exit 101. Rust
/// ignores SIGPIPE, so the closed pipe surfaces as that print's panic;
/// every other panic keeps the default report.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
