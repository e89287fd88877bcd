//! The command line: subcommands and their flags (clap derive).
//!
//! Also included by `xtask` to render the man page, so it depends on
//! nothing but clap and std.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The `Examples:` block that ends a subcommand's `--help` (and its entry in
/// the man page): one invocation per line, each one that parses, which
/// tests/cli.rs checks.
macro_rules! examples {
    ($($line:literal),+ $(,)?) => {
        concat!("Examples:", $("\n  ", $line),+)
    };
}

/// Set up, check, monitor, deploy and supervise the Jarvis bot service
///
/// jarvisctl is the helper of the jarvis-supervisor package. It provisions
/// the host for the service (setup), names every reason the service would
/// not start (check), reports its health and logs (status, logs), ships the
/// bot's code to hosts over ssh (deploy), manages the bot's Python
/// environment (venv), and supervises the bot from the same unit file on a
/// host without systemd (run); start, stop, restart, pause and resume
/// act on whichever engine runs it. The systemd unit runs it too: backoff
/// and check --preflight before each start, venv exec as the start itself,
/// status --record every 5 minutes, alert when the service gives up.
///
/// Paths and the service user come from the installed unit and its
/// drop-ins, never from a second configuration.
#[derive(Debug, Parser)]
#[command(name = "jarvisctl", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Treat DIR as the file system root (for tests and image builds).
    /// Users and groups are still looked up on this host.
    #[arg(long, global = true, value_name = "DIR", hide = true)]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the jarvis user and group, the directories the unit makes
    /// writable, and fix the owner and mode of .env. Idempotent: prints one
    /// line per change and nothing when nothing changed.
    #[command(after_help = examples!(
        "sudo jarvisctl setup",
        "sudo jarvisctl setup --json",
    ))]
    Setup(SetupArgs),
    /// Check every known reason the service would not start, each with its
    /// fix. Exit 0 when every check passes, 1 when one fails.
    #[command(after_help = examples!(
        "sudo jarvisctl check",
        "sudo jarvisctl check --json",
        "sudo jarvisctl check --instance alpha",
    ))]
    Check(CheckArgs),
    /// Health of the service on this host: state, restarts, watchdog,
    /// memory, logs, disk, recent errors (secrets masked). Exit 0 OK,
    /// 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    #[command(after_help = examples!(
        "sudo jarvisctl status",
        "sudo jarvisctl status --trend",
        "jarvisctl status --host root@vps1 --host root@vps2:2222",
    ))]
    Status(StatusArgs),
    /// Per-host settings, written as systemd drop-ins.
    #[command(after_help = examples!(
        "sudo jarvisctl configure --weekly-restart \"Sun 04:00\"",
        "sudo jarvisctl configure --code-root /srv/jarvis --python /usr/bin/python3.11",
        "jarvisctl configure --show --instance alpha",
    ))]
    Configure(ConfigureArgs),
    /// Work with .env files.
    #[command(subcommand, after_help = examples!("jarvisctl env lint vps.env"))]
    Env(EnvCommand),
    /// Crash-loop backoff, run by the unit as ExecStartPre: waits longer
    /// after each quick restart, and not at all after a long healthy run.
    #[command(after_help = examples!(
        "jarvisctl backoff",
        "jarvisctl backoff --state /tmp/backoff.state --max 30",
    ))]
    Backoff(BackoffArgs),
    /// Finish a deploy that was cut off on this host (power loss, a full
    /// disk, a killed worker) from its journal: a half-done swap is undone,
    /// a damaged deploys/current rebuilt. Run before every start of the bot.
    #[command(after_help = examples!(
        "sudo jarvisctl settle",
        "sudo jarvisctl settle --json",
    ))]
    Settle(SettleArgs),
    /// Supervise the program without systemd, from the same unit file and
    /// drop-ins: notify socket, watchdog, restarts, start limits, logs.
    #[command(after_help = examples!(
        "sudo jarvisctl run --daemon",
        "sudo jarvisctl run --unit ./jarvis-supervisor.service",
    ))]
    Run(RunArgs),
    /// Start the bot on whichever engine runs it (systemd, else jarvisctl
    /// run) and wait until it is ready. Exit 0 when it runs, 1 with the
    /// reason when it failed, crashed at start, is paused, or was not ready
    /// within TimeoutStartSec= + 10 s.
    #[command(after_help = examples!(
        "sudo jarvisctl start",
        "sudo jarvisctl start --json",
    ))]
    Start(StartArgs),
    /// Stop the bot on whichever engine runs it (systemd, else jarvisctl
    /// run) gracefully, and wait. Exit 0 when nothing of it runs, 1 when it
    /// still runs after TimeoutStopSec= + 10 s.
    #[command(after_help = examples!(
        "sudo jarvisctl stop",
        "sudo jarvisctl stop --timeout 30",
    ))]
    Stop(StopArgs),
    /// Stop and start the bot, and wait until a new main process is ready.
    /// Exit 0 when it runs with a new pid, 1 with the reason otherwise.
    #[command(after_help = examples!(
        "sudo jarvisctl restart",
        "sudo jarvisctl restart --json",
    ))]
    Restart(StartArgs),
    /// Stop trading safely with the program's own switch: make
    /// PAUSE_AUTOMATIONS in the code root, record who and why, stop the bot.
    /// A paused bot is not started again (at boot either) and raises no
    /// alert; status says paused.
    #[command(after_help = examples!(
        "sudo jarvisctl pause --reason \"exchange maintenance\"",
        "sudo jarvisctl pause --json",
    ))]
    Pause(PauseArgs),
    /// Undo a pause (jarvisctl pause, or the file made by hand): remove
    /// PAUSE_AUTOMATIONS, start the bot and wait until it is ready.
    #[command(after_help = examples!(
        "sudo jarvisctl resume",
        "sudo jarvisctl resume --json",
    ))]
    Resume(StartArgs),
    /// Internal: the unit's ExecCondition=, run as the service user in the
    /// code root; exit 1 (start skipped) when the program's pause switch is set.
    #[command(hide = true)]
    Condition,
    /// The bot's output and its own logs/*.log, in time order, on both
    /// engines, every .env value masked (like pm2 logs / supervisorctl tail).
    #[command(after_help = examples!(
        "sudo jarvisctl logs -n 100",
        "sudo jarvisctl logs -f --component buy_bot",
        "sudo jarvisctl logs --since \"5 min ago\"",
    ))]
    Logs(LogsArgs),
    /// The service gave up (start limit): ping the heartbeat URL's /fail
    /// and run heartbeat.conf's on_failure command, at once. Run by
    /// jarvis-supervisor-alert.service (OnFailure=) and by jarvisctl run.
    #[command(after_help = examples!(
        "sudo jarvisctl alert --reason \"testing the alert\"",
    ))]
    Alert(AlertArgs),
    /// Ship the bot's code (and optionally the package and .env) to hosts
    /// over ssh, restart, verify it stays healthy, and roll back by itself
    /// on failure. Exit 0 when every host was deployed, 1 otherwise.
    #[command(after_help = examples!(
        "jarvisctl deploy --code ./Jarvis --host root@vps1 --dry-run",
        "jarvisctl deploy --code ./Jarvis --hosts fleet.toml --env vps.env",
        "jarvisctl deploy --rollback --host root@vps1",
    ))]
    Deploy(DeployArgs),
    /// The bot's Python environment: venv/ in the code root, which the
    /// service runs when it exists (else the system's python3).
    #[command(
        subcommand,
        after_help = examples!(
            "sudo jarvisctl venv build",
            "sudo jarvisctl venv rollback",
            "sudo jarvisctl venv build --instance alpha",
        )
    )]
    Venv(VenvCommand),
    /// Several bots on one host: each instance is its own unit
    /// (jarvis-supervisor@NAME.service) with its own code root, entry point,
    /// environment files, user, readiness type and limits, started with the
    /// others by jarvis-supervisor.target.
    #[command(
        subcommand,
        after_help = examples!(
            "sudo jarvisctl instance add alpha --code-root /srv/gateway --script bots/alpha/alpha_telegram_bot.py --type simple",
            "sudo jarvisctl instance list",
        )
    )]
    Instance(InstanceCommand),
    /// Turn hand-written units (a bot gateway's: root, a tree under /root,
    /// one shared env file, a target) into named instances: each its own
    /// user, its own env file holding only its variables, the same limits and
    /// restart policy; the old units are disabled and stopped. Every change
    /// is printed first; --undo brings the old units back as they were.
    #[command(after_help = examples!(
        "sudo jarvisctl import gateway.target --dry-run",
        "sudo jarvisctl import alpha.service beta.service --share SENTRY_DSN",
        "sudo jarvisctl import --undo",
    ))]
    Import(ImportArgs),
    /// Internal: the last step before exec of a supervised process (drop
    /// privileges, parent-death signal, limits), run by `jarvisctl run`.
    #[command(hide = true, name = "exec-helper")]
    ExecHelper(ExecHelperArgs),
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Print the changes as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print nothing; only the exit code tells.
    #[arg(long, short, conflicts_with = "json")]
    pub quiet: bool,
    /// Only the fast, certain checks, printing only problems: the unit's
    /// ExecStartPre=.
    #[arg(long)]
    pub preflight: bool,
    /// Check this instance (jarvis-supervisor@NAME.service; "default" for
    /// jarvis-supervisor.service). Without it, a host with named instances
    /// has every one checked, each line labelled [NAME], the worst exit code.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// Restart the bot on a schedule, only if it is running: a systemd
    /// calendar spec such as "Sun 04:00" (hosts are staggered by up to 30
    /// minutes), or "off".
    #[arg(long, value_name = "SPEC|off")]
    pub weekly_restart: Option<String>,
    /// Move the code root: rewrite every setting that depends on it
    /// (WorkingDirectory, PYTHONPATH, EnvironmentFile, ReadWritePaths,
    /// ExecStart, log rotation) in a drop-in and a generated logrotate
    /// file, never in the shipped files; then run setup.
    #[arg(long, value_name = "DIR")]
    pub code_root: Option<PathBuf>,
    /// Run the bot with this interpreter instead of the code root's venv
    /// or the system's python3 ("auto": back to that rule).
    #[arg(long, value_name = "PATH|auto")]
    pub python: Option<String>,
    /// Print the settings in effect and the file and line that set each.
    #[arg(long, conflicts_with_all = ["weekly_restart", "code_root", "python"])]
    pub show: bool,
    /// With --show: as JSON.
    #[arg(long, requires = "show")]
    pub json: bool,
    /// This instance (jarvis-supervisor@NAME.service; "default" for
    /// jarvis-supervisor.service, which is the one without it). With
    /// --show, its settings; its code root and interpreter are changed by
    /// `jarvisctl instance add NAME`, which this names in full.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON (schema 2, documented in docs/monitoring.md).
    #[arg(long)]
    pub json: bool,
    /// Only this instance ("default" for jarvis-supervisor.service). On a
    /// host with named instances, status without it prints one line per
    /// instance, and the worst verdict is the exit code.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["record", "trend", "host", "hosts"])]
    pub instance: Option<String>,
    /// A restarting bot (a crash loop) is CRITICAL when it has been down for
    /// more than half of this window, and its restarts are counted over it.
    #[arg(long, value_name = "SECONDS", default_value_t = 600.0)]
    pub crash_window: f64,
    /// Record one sample (time, memory, restarts, state) in the history,
    /// quietly: what the health timer runs every 5 minutes.
    #[arg(long, conflicts_with = "trend")]
    pub record: bool,
    /// Plot memory and restarts over the last 24 h and 7 days from the
    /// history; give each window's memory slope only with 12 samples over
    /// 1 h (24 h) or 1 day (7 days), and flag growth that would reach
    /// MemoryMax within 7 days.
    #[arg(long)]
    pub trend: bool,
    /// Check this host over ssh instead of this one (user@host or
    /// user@host:port); repeat for several, checked in parallel. Prints one
    /// row per host; the exit code is the worst of all.
    #[arg(long, value_name = "USER@HOST", conflicts_with_all = ["record", "trend"])]
    pub host: Vec<String>,
    /// Check every host listed in FILE (one user@host[:port] per line,
    /// `#` comments; or the deploy's hosts.toml, where a host's
    /// `instances = ["default", "alpha"]` gives one row per instance, and a
    /// listed instance the host does not run is CRITICAL), like --host.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["record", "trend"])]
    pub hosts: Option<PathBuf>,
    /// With --host: give up on a host after this many seconds (it shows as
    /// UNKNOWN).
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0)]
    pub timeout: f64,
    /// With --host: an ssh option (as for ssh -o), e.g.
    /// "UserKnownHostsFile=~/.ssh/fleet_known_hosts"; repeatable. ssh always
    /// runs with BatchMode=yes.
    #[arg(long, value_name = "OPTION")]
    pub ssh_option: Vec<String>,
    /// After the check, ping this URL (Healthchecks.io style): URL when OK,
    /// URL/<exit code> otherwise. The health timer's run (--record) pings
    /// the URL in /etc/jarvis-supervisor/heartbeat.conf, if one is set. A
    /// failed ping is reported and never changes the result.
    #[arg(long, value_name = "URL", conflicts_with = "trend")]
    pub ping: Option<String>,
    /// The history file (default /var/lib/jarvis-supervisor/samples.jsonl).
    #[arg(long, value_name = "FILE", hide = true)]
    pub samples: Option<PathBuf>,
    /// WARNING when one component crashed this many times in the last hour.
    #[arg(short = 'w', long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub warn_crashes: u64,
    /// The bot's component-record interval: CRITICAL when the newest record
    /// is older than three of them while the bot is up.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub record_interval: f64,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Check a .env file as systemd will read it, before a deploy: lines
    /// systemd and a shell read differently, and the required variables.
    /// Values are never printed. Exit 0 when clean, 1 when not.
    #[command(after_help = examples!(
        "jarvisctl env lint vps.env",
        "jarvisctl env lint --systemd 252 vps.env",
        "sudo jarvisctl env lint /home/jarvis/Jarvis/.env --json",
    ))]
    Lint(EnvLintArgs),
}

#[derive(Debug, Args)]
pub struct EnvLintArgs {
    /// The file to check.
    pub file: PathBuf,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// The required-variable rules (default /etc/jarvis-supervisor/env-rules.conf).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Read the file as this systemd version does (default: this host's).
    #[arg(long, value_name = "VERSION")]
    pub systemd: Option<u32>,
}

#[derive(Debug, Args)]
pub struct SettleArgs {
    /// Print what was settled as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Who runs it, for the deploy's journal.
    #[arg(long, value_enum, default_value_t = SettleBy::Hand)]
    pub by: SettleBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SettleBy {
    /// The unit's ExecStartPre=, before every start (boot included).
    Start,
    /// The package's maintainer script.
    Install,
    /// status --record (the health timer).
    Status,
    /// An operator.
    Hand,
}

impl SettleBy {
    /// As the deploy's journal says it: "undone by ...".
    pub fn phrase(self) -> &'static str {
        match self {
            SettleBy::Start => "the host before the bot's start (jarvisctl settle)",
            SettleBy::Install => "the package's install (jarvisctl settle)",
            SettleBy::Status => "the health check (status --record)",
            SettleBy::Hand => "jarvisctl settle",
        }
    }
}

#[derive(Debug, Args)]
pub struct BackoffArgs {
    /// Delay before the first quick restart, in seconds; it doubles after
    /// each further quick restart.
    #[arg(long, default_value_t = 1, value_name = "SECONDS")]
    pub base: u64,
    /// Longest delay, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub max: u64,
    /// A run that lasted this long counts as healthy and resets the backoff.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub stable_after: u64,
    /// A run that lasted this long got past its start (the bot is READY 2
    /// to 7 s after start): the failed starts before it no longer count, and
    /// the crash that ended it waits as a first crash does.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub ready_after: u64,
    /// Where the backoff keeps its state; defaults to $RUNTIME_DIRECTORY,
    /// which the unit keeps across restarts but not across a stop.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Detach: return once the lock is taken, with the engine in the
    /// background (its own messages go to engine.log in the state directory).
    #[arg(long)]
    pub daemon: bool,
    /// Read this unit file and FILE.d/*.conf instead of the installed unit
    /// and its drop-ins.
    #[arg(long, value_name = "FILE", conflicts_with = "instance")]
    pub unit: Option<PathBuf>,
    /// Supervise this instance (jarvis-supervisor@NAME.service, made from
    /// the template with its drop-ins) instead of the default one.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// Internal: this process is the detached engine of --daemon.
    #[arg(long, hide = true)]
    pub detached: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new lines as they come.
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the last lines to show first.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 50)]
    pub lines: usize,
    /// Only lines from then on, as journalctl takes it: "5 min ago", -1h,
    /// yesterday, "2026-12-01 05:28[:18]" (local time); the newest of them
    /// are shown (-n).
    // The relative times start with a hyphen: without this, clap takes
    // `--since -1h` for an unknown flag.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Only the lines of this component ([NAME] lines, its record line,
    /// and the traceback after them).
    #[arg(long, value_name = "NAME")]
    pub component: Option<String>,
    /// One JSON object per line: t (unix time), source, text (masked).
    #[arg(long)]
    pub json: bool,
    /// The output of this instance (jarvis-supervisor@NAME.service)
    /// instead of the default's.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}

#[derive(Debug, Args)]
pub struct AlertArgs {
    /// Why, when the caller knows the service gave up; without it, alert
    /// first makes sure no automatic restart follows (systemd 254 and
    /// later run OnFailure= between restarts too).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Alert for this instance (jarvis-supervisor@NAME.service, run by
    /// jarvis-supervisor-alert@NAME.service): its unit's state, and its own
    /// /etc/jarvis-supervisor/heartbeat@NAME.conf.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}

/// Which bot a start, stop, restart, pause or resume acts on.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Act on `jarvisctl run --unit FILE` (the fallback engine with that
    /// unit) instead of the installed service.
    #[arg(long, value_name = "FILE", conflicts_with = "instance")]
    pub unit: Option<PathBuf>,
    /// Act on this instance (jarvis-supervisor@NAME.service) instead of
    /// the default one (jarvis-supervisor.service).
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub on: TargetArgs,
    /// Wait at most this long, in seconds (default: TimeoutStopSec= + 10).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub on: TargetArgs,
    /// Wait at most this long for readiness, in seconds (default:
    /// TimeoutStartSec= + 10).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Why, kept with who paused it and when (status shows it).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub on: TargetArgs,
    /// Wait at most this long for the stop, in seconds (default:
    /// TimeoutStopSec= + 10).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Deploy to this host (user@host or user@host:port); repeatable. The
    /// code directory, user and unit come from the host's installed unit.
    #[arg(long, value_name = "USER@HOST")]
    pub host: Vec<String>,
    /// The hosts file (TOML, `[[host]]` entries with ssh, code_dir,
    /// env_file, package); default /etc/jarvis-supervisor/hosts.toml when
    /// no --host is given.
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// The local code directory to ship (the bot's code root). Each host
    /// compiles the .py files the deploy changes with the interpreter that
    /// runs the bot there, before anything live changes. A file that does
    /// not compile refuses the host when it is run: the unit's entry point,
    /// or a module that some .py file of the tree imports (matched on its
    /// last name; in doubt, run). Any other is a warning.
    #[arg(long, value_name = "DIR")]
    pub code: Option<PathBuf>,
    /// A .deb or .rpm to install where its version differs from the
    /// installed one; replaces the hosts file's `package`.
    #[arg(long, value_name = "FILE")]
    pub package: Option<PathBuf>,
    /// A .env to send (mode 0600, owner jarvis; its values are never
    /// printed); replaces the hosts file's `env_file`. Without it, .env is
    /// never sent.
    #[arg(long, value_name = "FILE")]
    pub env: Option<PathBuf>,
    /// How long a bot that gives no evidence of its own (no /health saying
    /// healthy, no fresh component record with all running) must stay up
    /// and OK after the restart, in seconds; one that gives it is healthy
    /// at once.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub settle: u64,
    /// How long the bot may take to become ready after the restart, in
    /// seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub ready_timeout: u64,
    /// ssh's connect timeout, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    pub timeout: u64,
    /// An ssh option (as for ssh -o), e.g. "UserKnownHostsFile=FILE";
    /// repeatable. ssh always runs with BatchMode=yes.
    #[arg(long, value_name = "OPTION")]
    pub ssh_option: Vec<String>,
    /// One host after the other, stopping at the first failure (the same
    /// as --rolling --parallel 1).
    #[arg(long, conflicts_with_all = ["rolling", "parallel"])]
    pub serial: bool,
    /// At most this many hosts at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: u16,
    /// A canary host first (the first one listed), then batches of
    /// --parallel hosts, each batch after the one before has succeeded;
    /// the first failure stops the rest.
    #[arg(long)]
    pub rolling: bool,
    /// Print what would change (files added, replaced and removed,
    /// unshipped files kept, conflicts, package versions) and touch nothing.
    #[arg(long, conflicts_with_all = ["rollback", "list"])]
    pub dry_run: bool,
    /// Undo the deploy in effect on each host (back to the files it
    /// replaced and the package before it), or with --to return to deploy
    /// ID's files and package. Unshipped files are never touched.
    #[arg(long, conflicts_with = "list")]
    pub rollback: bool,
    /// With --rollback: the deploy ID to return to (see --list).
    #[arg(long, value_name = "ID", requires = "rollback")]
    pub to: Option<String>,
    /// Show the deploy history kept on each host, pruned to --keep entries.
    #[arg(long)]
    pub list: bool,
    /// How many deploys each host keeps in its history.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub keep: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Replace this file (a path relative to the code root) although no
    /// deploy shipped it; the file there now is kept beside it as
    /// PATH.before-deploy-ID. Repeatable. Without it such a file is a
    /// conflict, and the deploy refuses the host.
    #[arg(long, value_name = "PATH")]
    pub take_over: Vec<String>,
    /// Offline hosts: the wheels to build the environment from, with no
    /// package index (built on the workstation for the hosts' Python and
    /// platform: pip wheel -r requirements.txt -w DIR). Sent once per
    /// content; a new wheelhouse rebuilds the environment.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["rollback", "list"])]
    pub wheelhouse: Option<PathBuf>,
    /// The interpreter each host makes the environment from (default: the
    /// host's /usr/bin/python3); a new one rebuilds the environment.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["rollback", "list"])]
    pub python: Option<String>,
    /// Testing: rsync's --bwlimit for the code transfer, in KiB/s.
    #[arg(long, value_name = "KBPS", hide = true)]
    pub bwlimit: Option<u32>,
    /// Testing: the host's swap stops after N changed files until
    /// /run/jarvis-deploy-paused is removed there (fault injection).
    #[arg(long, value_name = "N", hide = true)]
    pub pause_swap_after: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ExecHelperArgs {
    /// NoNewPrivileges=yes: PR_SET_NO_NEW_PRIVS before the exec.
    #[arg(long)]
    pub no_new_privs: bool,
    #[arg(long)]
    pub uid: Option<u32>,
    #[arg(long)]
    pub gid: Option<u32>,
    /// The user name, for the supplementary groups (initgroups).
    #[arg(long)]
    pub user: Option<String>,
    /// The supervisor's pid: die if it is already gone.
    #[arg(long)]
    pub ppid: u32,
    #[arg(long)]
    pub chdir: Option<PathBuf>,
    #[arg(long)]
    pub umask: Option<u32>,
    /// RLIMIT_DATA in bytes (MemoryMax= without a cgroup).
    #[arg(long)]
    pub rlimit_data: Option<u64>,
    /// A cgroup.procs file to join before dropping privileges.
    #[arg(long)]
    pub cgroup_procs: Option<PathBuf>,
    /// Set WATCHDOG_USEC to this and WATCHDOG_PID to the program's pid.
    #[arg(long)]
    pub watchdog_usec: Option<u64>,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Make (or change) an instance: its service user (jarvis-NAME unless
    /// --user), its drop-in, the owner and mode of its directories and
    /// environment files; enabled at boot with the group. Prints every
    /// change; --dry-run changes nothing.
    #[command(after_help = examples!(
        "sudo jarvisctl instance add alpha --code-root /srv/gateway --script bots/alpha/alpha_telegram_bot.py --type simple --env-file /etc/jarvis-supervisor/alpha.env --memory-max 512M --cpu-quota 50%",
        "sudo jarvisctl instance add treasury --code-root /home/jarvis/Jarvis --module bots.treasury --dry-run",
    ))]
    Add(Box<InstanceAddArgs>),
    /// Every instance on this host: the default one and each named one,
    /// with its unit, user, code root and entry point.
    #[command(after_help = examples!("jarvisctl instance list", "jarvisctl instance list --json"))]
    List(InstanceListArgs),
    /// Stop and disable an instance and set its drop-in aside; its user,
    /// code, environment files and state are kept, and `instance restore`
    /// brings it back as it was.
    #[command(after_help = examples!("sudo jarvisctl instance remove alpha"))]
    Remove(InstanceNameArgs),
    /// Bring back an instance that `instance remove` set aside.
    #[command(after_help = examples!("sudo jarvisctl instance restore alpha"))]
    Restore(InstanceNameArgs),
}

/// How the program tells that it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Readiness {
    /// It sends READY=1 and watchdog pings (sd_notify): Type=notify with
    /// a watchdog.
    Notify,
    /// It does not speak sd_notify: running counts as ready (Type=simple).
    Simple,
}

#[derive(Debug, Args)]
pub struct InstanceAddArgs {
    /// The instance's name: a lowercase letter, then lowercase letters,
    /// digits, - or _ (at most 25).
    pub name: String,
    /// The program's code root: its working directory.
    #[arg(long, value_name = "DIR")]
    pub code_root: PathBuf,
    /// The entry point, a script path in the code root.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "module",
        conflicts_with = "module"
    )]
    pub script: Option<PathBuf>,
    /// The entry point, a module run with python -m.
    #[arg(long, value_name = "MODULE")]
    pub module: Option<String>,
    /// The interpreter (default: the code root's venv/bin/python when it
    /// exists, else /usr/bin/python3, decided at each start).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Readiness: notify (sd_notify, with a watchdog) or simple.
    #[arg(long = "type", value_enum, default_value = "notify")]
    pub readiness: Readiness,
    /// An environment file of this instance alone; repeatable. It is made
    /// root's, mode 600: the engine reads it before the program starts,
    /// and no other instance's user can.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// The service user (default: jarvis-NAME, made when missing).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// MemoryMax= (for example 512M).
    #[arg(long, value_name = "SIZE")]
    pub memory_max: Option<String>,
    /// CPUQuota= (for example 50%).
    #[arg(long, value_name = "PERCENT")]
    pub cpu_quota: Option<String>,
    /// RestartSec= (for example 10s).
    #[arg(long, value_name = "TIME")]
    pub restart_sec: Option<String>,
    /// WatchdogSec= of a notify instance (default: the template's).
    #[arg(long, value_name = "TIME")]
    pub watchdog_sec: Option<String>,
    /// Print the changes, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the changes as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The hand-written units: services (each becomes the instance named
    /// after it: alpha.service is alpha) or the target that wants them.
    #[arg(
        value_name = "UNIT",
        required_unless_present = "undo",
        conflicts_with = "undo"
    )]
    pub units: Vec<String>,
    /// Where a code tree under /root moves (default: /srv/ and its name).
    #[arg(long, value_name = "DIR", conflicts_with = "undo")]
    pub tree_to: Option<PathBuf>,
    /// Give this variable of the shared env file to every instance (by
    /// default a variable no bot's NAME_ prefix matches goes to none);
    /// repeatable.
    #[arg(long = "share", value_name = "KEY", conflicts_with = "undo")]
    pub share: Vec<String>,
    /// Undo the last import: the old units, target, tree and env files back
    /// as they were, the instances' drop-ins and split env files gone.
    #[arg(long)]
    pub undo: bool,
    /// Print the changes, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the changes as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InstanceListArgs {
    /// Print the instances as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only the named instances that run from this code root (what a
    /// deploy of it restarts with the default one).
    #[arg(long, value_name = "DIR")]
    pub code_root: Option<PathBuf>,
    /// Print the names only, one per line.
    #[arg(long, conflicts_with = "json")]
    pub names: bool,
}

#[derive(Debug, Args)]
pub struct InstanceNameArgs {
    /// The instance's name.
    pub name: String,
    /// Print the changes, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the changes as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum VenvCommand {
    /// Build the environment from requirements.txt as the service user
    /// (never root: installing runs the packages' build code), into a new
    /// venvs/<id>, then switch venv/ to it in one rename; the previous one
    /// is kept for `venv rollback`. A failed build leaves the one in use as
    /// it was. Exit 0 built, 1 failed.
    #[command(after_help = examples!(
        "sudo jarvisctl venv build",
        "sudo jarvisctl venv build --python /usr/bin/python3.11",
        "sudo jarvisctl venv build --wheelhouse ./wheels --installer pip",
    ))]
    Build(VenvBuildArgs),
    /// Switch venv/ back to the environment before the last build or
    /// rollback.
    #[command(after_help = examples!(
        "sudo jarvisctl venv rollback",
    ))]
    Rollback(VenvRollbackArgs),
    /// Point venv/ at an environment kept under venvs/ (or at none: the
    /// system's python3), in one rename, as the service user. Deploy uses
    /// it to swap the environment with the code.
    #[command(after_help = examples!(
        "sudo jarvisctl venv switch venvs/20260301T120000-4242",
        "sudo jarvisctl venv switch none",
    ))]
    Switch(VenvSwitchArgs),
    /// Make a venv/ built by hand a kept environment (venvs/adopted-*,
    /// linked from venv/, never deleted) and print the one in use.
    #[command(after_help = examples!(
        "sudo jarvisctl venv adopt",
        "sudo jarvisctl venv adopt --json",
    ))]
    Adopt(VenvRollbackArgs),
    /// The unit's ExecStart=: run ARGS with `venv/bin/python` of the code
    /// root (the working directory) when it exists, else with
    /// /usr/bin/python3; the same process, so systemd's main pid stays.
    #[command(after_help = examples!(
        "jarvisctl venv exec -- /home/jarvis/Jarvis/bots/supervisor.py",
        "jarvisctl venv exec --code-root /home/jarvis/Jarvis -- -c \"import sys; print(sys.executable)\"",
    ))]
    Exec(VenvExecArgs),
}

#[derive(Debug, Args)]
pub struct VenvExecArgs {
    /// The code root (default: the working directory, as the unit sets it).
    #[arg(long, value_name = "DIR", conflicts_with = "instance")]
    pub code_root: Option<PathBuf>,
    /// The code root of this instance's unit (its WorkingDirectory=)
    /// instead of the working directory.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// The script and its arguments.
    #[arg(last = true, required = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VenvBuildArgs {
    /// The requirements file (default: requirements.txt in the code root).
    #[arg(long, value_name = "FILE")]
    pub requirements: Option<PathBuf>,
    /// Install only from the wheels in DIR, with no package index (an
    /// offline host; `deploy --wheelhouse` ships one).
    #[arg(long, value_name = "DIR")]
    pub wheelhouse: Option<PathBuf>,
    /// The interpreter the environment is made from.
    #[arg(long, value_name = "PATH", default_value = "/usr/bin/python3")]
    pub python: PathBuf,
    /// pip, uv, or auto: uv when it is installed (faster: see `cargo xtask
    /// bench`), else pip.
    #[arg(long, default_value = "auto", value_parser = ["auto", "pip", "uv"])]
    pub installer: String,
    /// Build beside the environment in use and leave venv/ as it is (deploy
    /// switches it with the code); prints the new environment.
    #[arg(long)]
    pub no_switch: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// The environment of this instance (jarvis-supervisor@NAME.service:
    /// its code root, as its user; "default" for jarvis-supervisor.service).
    /// Needed on a host whose instances run from different code roots.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}

#[derive(Debug, Args)]
pub struct VenvSwitchArgs {
    /// venvs/<id> (relative to the code root), or "none".
    #[arg(value_name = "venvs/ID|none")]
    pub target: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// The environment of this instance (jarvis-supervisor@NAME.service:
    /// its code root, as its user; "default" for jarvis-supervisor.service).
    /// Needed on a host whose instances run from different code roots.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}

#[derive(Debug, Args)]
pub struct VenvRollbackArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// The environment of this instance (jarvis-supervisor@NAME.service:
    /// its code root, as its user; "default" for jarvis-supervisor.service).
    /// Needed on a host whose instances run from different code roots.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}
