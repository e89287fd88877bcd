//! Developer commands: `cargo xtask dist` builds the packages, `cargo xtask
//! repo` makes package repositories of them, `cargo xtask test` runs every
//! test layer. Both install what they need when run as root.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod before;
mod bench;
mod completions;
mod deps;
mod dist;
mod man;
mod repo;
mod run;
mod sbom;
mod test;
mod tools;
mod try_demo;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build target/dist/: the .deb, the .rpm, a CycloneDX SBOM beside each,
    /// and SHA256SUMS, reproducibly (SOURCE_DATE_EPOCH: the last commit).
    Dist,
    /// Run every test layer: unit and CLI tests, package checks, and the
    /// end-to-end tests in booted containers. Ends with "N passed, N failed".
    Test {
        /// Only run tests whose name contains this (all layers).
        filter: Option<String>,
    },
    /// Speed figures, as ratios against peers measured in the same run:
    /// the preflight's cost, a huge `.env`, `jarvisctl run` against supervisord, PM2,
    /// runit and s6 (also written to target/bench/supervisors.json);
    /// `--only deploy`: jarvisctl deploy against rsync + ssh and Ansible
    /// (target/bench/deploy.json).
    Bench {
        /// Print the supervisor figures as JSON on stdout (the table goes
        /// to stderr).
        #[arg(long)]
        json: bool,
        /// Run one part only: preflight, env, supervisors, status, venv, busy or masking;
        /// or deploy (not run by default: it boots 4 containers; runs
        /// from $JARVIS_BENCH_DEPLOY_RUNS, default 2; see xtask/src/bench/deploy.rs).
        #[arg(long, value_parser = ["preflight", "env", "supervisors", "status", "venv", "busy", "masking", "deploy"])]
        only: Option<String>,
    },
    /// Turn target/dist/ into a signed APT repository (target/repo/apt) and
    /// a YUM repository (target/repo/yum). The key comes from
    /// $JARVIS_REPO_GPG_KEY (armored secret key), else a test key.
    Repo {
        /// Take the packages from DIR instead of target/dist.
        #[arg(long, value_name = "DIR")]
        from: Option<std::path::PathBuf>,
        /// Write the repositories into DIR instead of target/repo.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
    },
    /// Install what the build and test steps need: Debian packages (root)
    /// and the pinned cargo tools.
    Deps,
    /// Build the package as it was before instances (from git history,
    /// cached in target/before-instances/) and print its path: the upgrade
    /// test's starting point, which `test` builds too. Needs target/dist
    /// (`cargo xtask dist`), whose version it must sort below.
    BeforeInstances,
    /// Boot a throwaway Debian container, install the fresh .deb with a demo
    /// bot, show the service, and leave the container running.
    Try,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Dist => dist::dist().map(|_| ExitCode::SUCCESS),
        Cmd::Test { filter } => test::test(filter.as_deref()),
        Cmd::Repo { from, out } => repo::repo(from, out).map(|_| ExitCode::SUCCESS),
        Cmd::Deps => deps::all().map(|_| ExitCode::SUCCESS),
        Cmd::BeforeInstances => dist::only_file(&run::root().join("target/dist"), ".deb")
            .and_then(|deb| before::build(&deb))
            .map(|p| {
                println!("{}", p.display());
                ExitCode::SUCCESS
            }),
        Cmd::Try => try_demo::try_demo().map(|_| ExitCode::SUCCESS),
        Cmd::Bench { json, only } => bench::bench(json, only.as_deref()).map(|_| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
