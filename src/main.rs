//! `jarvisctl`: the helper of the jarvis-supervisor package.
//!
//! `main` only parses the command line, dispatches, and maps the outcome to
//! an exit code; every subcommand lives in its own module under `cmd/`.
// One module may use unsafe, and says why: engine/trim.rs.
#![deny(unsafe_code)]

mod cli;
mod cmd;
mod engine;
mod envcheck;
mod envrules;
mod error;
mod heartbeat;
mod output;
mod paths;
mod provision;
mod report;
mod samples;
mod ssh;
mod systemd;
mod unit;
mod untrusted;

use jarvis_supervisor::envfile;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let code = match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            err.print();
            err.exit_code()
        }
    };
    std::process::exit(code);
}
