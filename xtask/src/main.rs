//! Developer commands: `cargo xtask dist` builds the packages, `cargo xtask
//! test` runs every test layer. Both install what they need when run as root.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod deps;
mod dist;
mod man;
mod run;
mod test;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build target/dist/: the .deb, the .rpm and SHA256SUMS.
    Dist,
    /// Run every test layer: unit and CLI tests, package checks, and the
    /// end-to-end tests in booted containers. Ends with "N passed, N failed".
    Test {
        /// Only run tests whose name contains this (all layers).
        filter: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Dist => dist::dist().map(|_| ExitCode::SUCCESS),
        Cmd::Test { filter } => test::test(filter.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
