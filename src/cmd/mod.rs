//! One module per subcommand; `run` dispatches to them and returns the exit
//! code.

pub(crate) mod alert;
mod backoff;
mod check;
mod condition;
mod configure;
mod deploy;
mod env;
mod exec_helper;
mod import;
mod instance;
mod logs;
mod pause;
mod restart;
mod resume;
mod run;
mod settle;
mod setup;
mod start;
mod status;
mod stop;
mod venv;

use jarvis_cli::{Cli, Command, EnvCommand, VenvCommand};
use jarvis_model::error::Result;
use jarvis_model::paths::Paths;

pub fn run(cli: Cli) -> Result<i32> {
    let paths = Paths::from_root(cli.root.as_deref());
    match cli.command {
        Command::Setup(args) => setup::run(&paths, &args),
        Command::Check(args) => check::run(&paths, &args),
        Command::Env(EnvCommand::Lint(args)) => env::lint(&paths, &args),
        Command::Status(args) => status::run(&paths, &args),
        Command::Configure(args) => configure::run(&paths, &args),
        Command::Backoff(args) => backoff::run(&args),
        Command::Settle(args) => settle::run(&paths, &args),
        Command::Run(args) => run::run(&paths, &args),
        Command::Start(args) => start::run(&paths, &args),
        Command::Stop(args) => stop::run(&paths, &args),
        Command::Restart(args) => restart::run(&paths, &args),
        Command::Pause(args) => pause::run(&paths, &args),
        Command::Resume(args) => resume::run(&paths, &args),
        Command::Condition => condition::run(),
        Command::Alert(args) => alert::run(&paths, &args),
        Command::Logs(args) => logs::run(&paths, &args),
        Command::Deploy(args) => deploy::run(&paths, &args),
        Command::Venv(VenvCommand::Exec(args)) => venv::exec(&paths, &args),
        Command::Venv(VenvCommand::Build(args)) => venv::build(&paths, &args),
        Command::Venv(VenvCommand::Rollback(args)) => venv::rollback(&paths, &args),
        Command::Venv(VenvCommand::Switch(args)) => venv::switch(&paths, &args),
        Command::Venv(VenvCommand::Adopt(args)) => venv::adopt(&paths, &args),
        Command::Instance(cmd) => instance::run(&paths, &cmd),
        Command::Import(args) => import::run(&paths, &args),
        Command::ExecHelper(args) => exec_helper::run(&args),
    }
}
