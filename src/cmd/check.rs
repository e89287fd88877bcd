//! `jarvisctl check`: every known reason the service would not start, each
//! on one line with what was found and the command that fixes it. The
//! postinst starts the service only when it passes; the unit runs
//! `--preflight` (the fast, certain part) as `ExecStartPre=`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::envcheck::EnvCheck;
use crate::envrules;
use crate::interpreter::{Interpreter, Source};
use crate::provision::{self, Account, DIR_MODE};
use crate::report::{self, Finding, Show};
use crate::systemd;
use jarvis_cli::CheckArgs;
use jarvis_model::error::Result;
use jarvis_model::paths::{Paths, PREFLIGHT_FAILED, UNIT};
use jarvis_model::unit::Unit;

/// Below this much free space on the logs' file system, `check` fails.
const MIN_FREE_BYTES: u64 = 1 << 30;

pub fn run(paths: &Paths, args: &CheckArgs) -> Result<i32> {
    let unit = Unit::load(paths)?;
    let rules = envrules::load(&paths.host(Path::new(envrules::PATH)))?;
    let findings = checks(paths, &unit, &rules, args.preflight);
    if args.preflight {
        remember_for_backoff(&findings);
    }
    let show = if args.json {
        Show::Json
    } else if args.quiet {
        Show::Quiet
    } else if args.preflight {
        Show::Problems
    } else {
        Show::All
    };
    Ok(report::emit(&findings, show))
}

/// A failed preflight ends the start at once, so systemd's status soon shows
/// only the restart; the backoff step of the next start repeats these lines
/// while it waits (see `backoff`). Kept in the unit's runtime directory.
fn remember_for_backoff(findings: &[Finding]) {
    let Some(dir) = systemd::runtime_directory() else {
        return;
    };
    let path = dir.join(PREFLIGHT_FAILED);
    let failed: Vec<String> = findings
        .iter()
        .filter(|f| f.level == report::Level::Fail)
        .map(|f| {
            format!(
                "✗ {}: {} — fix: {}",
                f.check,
                f.found,
                f.fix.as_deref().unwrap_or("")
            )
        })
        .collect();
    if failed.is_empty() {
        let _ = std::fs::remove_file(path);
    } else {
        let _ = std::fs::write(path, failed.join("\n") + "\n");
    }
}

pub fn checks(paths: &Paths, unit: &Unit, rules: &[envrules::Rule], preflight: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(m) = &unit.masked {
        out.push(Finding::fail(
            "unit",
            format!("{} masks the unit: systemd refuses every start", m.display()),
            "sudo systemctl unmask jarvis-supervisor",
        ));
    }
    for w in &unit.warnings {
        out.push(Finding::warn(
            "unit",
            w.clone(),
            "fix or remove the line: KEY=VALUE under a [Section]",
        ));
    }
    let user = unit.user();
    let group = unit.group().unwrap_or_else(|| user.clone());
    let account = Account::lookup(&user, &group);
    match &account {
        Some(a) => out.push(Finding::pass(
            "user",
            format!("{user} exists (uid {}, group {group})", a.uid),
        )),
        None => out.push(Finding::fail(
            "user",
            format!("user {user} does not exist: the start fails with 217/USER"),
            "sudo jarvisctl setup",
        )),
    }
    let code_root = unit
        .working_directory()
        .map(|w| w.path)
        .unwrap_or_else(|| PathBuf::from("/"));
    out.extend(check_paths(paths, unit, account.as_ref(), &code_root));

    let exec = unit.exec_start();
    if let Some(script) = exec.iter().skip(1).find(|w| w.ends_with(".py")) {
        let script = code_root.join(script);
        if paths.host(&script).is_file() {
            out.push(Finding::pass("code", format!("{} is present", script.display())));
        } else {
            out.push(Finding::fail(
                "code",
                format!("{} is missing", script.display()),
                format!(
                    // As root: the service user has no login shell.
                    "deploy the code: jarvisctl deploy --host root@HOST --code ./Jarvis, or rsync -a --chown={user}:{group} --exclude .env --exclude logs --exclude data ./Jarvis/ root@HOST:{}/",
                    code_root.display()
                ),
            ));
        }
    }
    if let Some((chosen, _)) = crate::interpreter::of_unit(paths, unit) {
        match chosen {
            Ok(interp) => {
                let python = check_python(paths, &interp, account.as_ref());
                let runs = python.level == report::Level::Pass;
                out.push(python);
                if runs && !preflight {
                    out.extend(check_requirements(paths, &code_root, &interp, account.as_ref()));
                }
            }
            Err(why) => out.push(Finding::fail("python", why.clone(), "sudo jarvisctl venv build")),
        }
    }
    if !preflight {
        out.extend(code_drift(paths, &code_root));
    }

    let version = systemd::version();
    let mut env_pythonpath = None;
    // Files outside the code root are root's server-wide settings
    // (/etc/default/jarvis-supervisor): linted the same, with no owner
    // rule, and what they set counts for the required variables of the
    // files after them (.env, which wins on a clash).
    let mut inherited = jarvis_model::envfile::Parsed::default();
    for env in unit.environment_files() {
        let host = paths.host(&env.path);
        let root_file = !env.path.starts_with(&code_root);
        if env.optional && !host.exists() && (rules.is_empty() || root_file) {
            continue;
        }
        let check = EnvCheck {
            account: if root_file { None } else { account.as_ref() },
            rules: if root_file { &[] } else { rules },
            systemd: version.unwrap_or(u32::MAX),
            inherited: Some(&inherited),
        };
        let (found, parsed) = check.run(&env.path, &host);
        out.extend(found);
        if let Some(p) = parsed {
            if let Some(v) = p.get("PYTHONPATH") {
                env_pythonpath = Some(v.to_string());
            }
            inherited.vars.extend(p.vars);
        }
    }
    out.push(check_pythonpath(unit, &code_root, env_pythonpath.as_deref()));

    if preflight {
        return out;
    }
    out.push(check_disk(paths, unit, &code_root));
    if paths.is_system() {
        match version {
            Some(v) => out.push(Finding::pass("systemd", systemd::meaning(v))),
            None => out.push(Finding::warn(
                "systemd",
                "systemctl not found: this host has no systemd",
                "run the bot with the fallback engine: jarvisctl run --daemon",
            )),
        }
        out.push(check_verify());
        out.push(check_logrotate(paths));
        if systemd::running() {
            if let Some(f) = check_last_run() {
                out.push(f);
            }
            out.extend(check_history());
        }
    }
    out
}

fn check_paths(paths: &Paths, unit: &Unit, account: Option<&Account>, code_root: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    if !paths.host(code_root).is_dir() {
        out.push(Finding::fail(
            "path",
            format!(
                "{} (WorkingDirectory=) is missing: the bot cannot start (200/CHDIR)",
                code_root.display()
            ),
            "sudo jarvisctl setup, then deploy the code",
        ));
    }
    for rw in unit.read_write_paths().into_iter().filter(|p| !p.optional) {
        let host = paths.host(&rw.path);
        let shown = rw.path.display();
        let Ok(m) = std::fs::metadata(&host) else {
            out.push(Finding::fail(
                "path",
                format!("{shown} (ReadWritePaths=) is missing: the bot cannot start (226/NAMESPACE)"),
                "sudo jarvisctl setup",
            ));
            continue;
        };
        let Some(acct) = account else { continue };
        if !provision::is_managed(&rw.path, Some(code_root), &acct.home) {
            continue; // /tmp and the like: existing is enough
        }
        let mode = m.mode() & 0o7777;
        if m.uid() != acct.uid || mode & 0o200 == 0 {
            out.push(Finding::fail(
                "path",
                format!("{shown} is not writable by {} (owner uid {}, mode {mode:04o}): the bot fails with EACCES", acct.user, m.uid()),
                "sudo jarvisctl setup",
            ));
        } else if mode != DIR_MODE {
            out.push(Finding::warn(
                "path",
                format!("{shown} has mode {mode:04o}, not {DIR_MODE:04o}"),
                "sudo jarvisctl setup",
            ));
        } else {
            out.push(Finding::pass(
                "path",
                format!("{shown} is {}'s, mode {mode:04o}", acct.user),
            ));
        }
    }
    out
}

/// How long the interpreter has to tell its version (it takes tens of
/// milliseconds), and what is kept of its answer.
const PYTHON_LIMITS: crate::runner::Limits = crate::runner::Limits {
    deadline: std::time::Duration::from_secs(5),
    keep: 4 << 10,
};

/// How long the interpreter has to list its packages against
/// requirements.txt, and what is kept of its JSON report.
const REQUIREMENTS_LIMITS: crate::runner::Limits = crate::runner::Limits {
    deadline: std::time::Duration::from_secs(30),
    keep: 4 << 20,
};

/// The interpreter exists and runs, and is 3.11 or newer. It runs as the
/// service user, even in a root `check`: a venv's interpreter is theirs to
/// write. Fast enough for the preflight (`-I -S`: no site packages).
fn check_python(paths: &Paths, interp: &Interpreter, account: Option<&Account>) -> Finding {
    let host = paths.host(&interp.path);
    let shown = interp.path.display();
    let why = interp.source.describe();
    let executable = std::fs::metadata(&host).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0);
    if !executable {
        return Finding::fail(
            "python",
            format!("the interpreter {shown} is missing ({why}): the start fails with 203/EXEC"),
            match interp.source {
                Source::Venv => "sudo jarvisctl venv build",
                _ => "sudo apt install python3 (3.11 or newer)",
            },
        );
    }
    let Some(mut cmd) = account.and_then(|a| crate::interpreter::as_service_user(a, &host)) else {
        return Finding::warn(
            "python",
            format!("{shown} ({why}) is present; not run: only root or the service user may run it"),
            "run check as root",
        );
    };
    cmd.args([
        "-I",
        "-S",
        "-c",
        "import sys; print('%d.%d' % sys.version_info[:2])",
    ])
    .env_clear();
    let out = crate::runner::run(cmd, b"", PYTHON_LIMITS).ok();
    if out.as_ref().is_some_and(|o| o.timed_out()) {
        return Finding::fail(
            "python",
            format!(
                "{shown} ({why}) did not tell its version within {} s and was killed: the start would hang",
                PYTHON_LIMITS.deadline.as_secs()
            ),
            "rebuild the environment: sudo jarvisctl venv build",
        );
    }
    let version = out
        .filter(|o| o.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let parsed = version.as_deref().and_then(|v| {
        let (a, b) = v.split_once('.')?;
        Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?))
    });
    match parsed {
        Some(v) if v >= (3, 11) => Finding::pass("python", format!("{shown} is Python {}.{} ({why})", v.0, v.1)),
        Some(v) => Finding::fail(
            "python",
            format!("{shown} is Python {}.{} ({why}): the bot needs 3.11 or newer (asyncio.timeout)", v.0, v.1),
            "install Python 3.11+ and build the environment with it: sudo jarvisctl venv build --python /usr/bin/python3.11",
        ),
        None => Finding::fail(
            "python",
            format!("{shown} ({why}) did not run: the start would fail"),
            "rebuild the environment: sudo jarvisctl venv build",
        ),
    }
}

fn check_pythonpath(unit: &Unit, code_root: &Path, from_env: Option<&str>) -> Finding {
    // EnvironmentFile= wins over Environment=, as in systemd.
    let from_unit = unit
        .words("Service", "Environment")
        .into_iter()
        .filter_map(|w| w.strip_prefix("PYTHONPATH=").map(str::to_string))
        .next_back();
    let value = from_env.map(str::to_string).or(from_unit);
    let root = code_root.to_string_lossy();
    let ok = value.as_deref().is_some_and(|v| {
        v.split(':')
            .any(|p| p.trim_end_matches('/') == root.trim_end_matches('/'))
    });
    if ok {
        Finding::pass("pythonpath", format!("PYTHONPATH includes {root}"))
    } else {
        Finding::fail(
            "pythonpath",
            format!("PYTHONPATH does not include {root}: the bot fails with ModuleNotFoundError: No module named 'core'"),
            format!("set Environment=PYTHONPATH={root} (systemctl edit jarvis-supervisor), and no other PYTHONPATH in .env"),
        )
    }
}

fn check_disk(paths: &Paths, unit: &Unit, code_root: &Path) -> Finding {
    let logs = unit
        .read_write_paths()
        .into_iter()
        .map(|p| p.path)
        .find(|p| p.ends_with("logs"))
        .unwrap_or_else(|| code_root.to_path_buf());
    let mut probe = paths.host(&logs);
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    match nix::sys::statvfs::statvfs(&probe) {
        Ok(st) => {
            let free = st.blocks_available() * st.fragment_size();
            let gib = free as f64 / (1u64 << 30) as f64;
            if free >= MIN_FREE_BYTES {
                Finding::pass("disk", format!("{gib:.1} GiB free for {}", logs.display()))
            } else {
                Finding::fail(
                    "disk",
                    format!(
                        "only {gib:.2} GiB free for {}: logs and databases will fail to write",
                        logs.display()
                    ),
                    "free space (journalctl --vacuum-size=200M; old logs in the logs directory)",
                )
            }
        }
        Err(e) => Finding::warn(
            "disk",
            format!("cannot measure free space for {}: {e}", logs.display()),
            "check df -h",
        ),
    }
}

fn check_verify() -> Finding {
    match crate::systemd::analyze(&["verify", UNIT]) {
        Some((ok, text)) => {
            if ok && text.trim().is_empty() {
                Finding::pass("unit", format!("systemd-analyze verify {UNIT}: clean"))
            } else {
                Finding::fail(
                    "unit",
                    format!(
                        "systemd-analyze verify {UNIT}: {}",
                        text.trim().replace('\n', "; ")
                    ),
                    "fix the drop-ins in /etc/systemd/system/jarvis-supervisor.service.d/",
                )
            }
        }
        None => Finding::warn(
            "unit",
            format!(
                "the unit was not verified: systemd-analyze is not installed, or did not answer within {} s",
                crate::systemd::ANALYZE_LIMITS.deadline.as_secs()
            ),
            "apt install systemd",
        ),
    }
}

fn check_logrotate(paths: &Paths) -> Finding {
    let snippet = paths.host(Path::new("/etc/logrotate.d/jarvis"));
    if !snippet.exists() {
        return Finding::fail(
            "logrotate",
            "/etc/logrotate.d/jarvis is missing: the logs will grow without bound",
            "sudo apt install --reinstall jarvis-supervisor",
        );
    }
    if !nix::unistd::geteuid().is_root() {
        return Finding::warn(
            "logrotate",
            "not checked: logrotate -d needs root",
            "sudo jarvisctl check",
        );
    }
    let mut logrotate = Command::new("logrotate");
    logrotate.arg("-d").arg(&snippet);
    match crate::runner::tool(logrotate) {
        Some(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stderr),
                String::from_utf8_lossy(&o.stdout)
            );
            // logrotate's own complaints start with "error:" (a log may be
            // called jarvis_errors.log).
            let error = text.lines().find(|l| l.trim_start().starts_with("error:"));
            match error {
                None if o.success() => Finding::pass("logrotate", "/etc/logrotate.d/jarvis parses"),
                _ => Finding::fail(
                    "logrotate",
                    format!(
                        "logrotate -d /etc/logrotate.d/jarvis: {}",
                        error
                            .unwrap_or(if o.timed_out() {
                                "did not finish in time"
                            } else {
                                "failed"
                            })
                            .trim()
                    ),
                    "fix the snippet, or reinstall it",
                ),
            }
        }
        None => Finding::fail(
            "logrotate",
            "logrotate is not installed",
            "sudo apt install logrotate",
        ),
    }
}

/// `journalctl` commands that `check` suggests. Each is a command that
/// journalctl accepts as written (a test runs every one of them through
/// the option list of `journalctl --help`): journalctl has no context
/// option like grep's `-A`, so the lines after a match come from grep.
pub(crate) const JOURNAL_TAIL: &str = "journalctl -u jarvis-supervisor -n 50 --no-pager";
pub(crate) const JOURNAL_TRACEBACKS: &str =
    "journalctl -u jarvis-supervisor -n 5000 -o cat --no-pager | grep -A 30 'Fatal Python error'";
/// The kernel's own record of an OOM kill (whole host or a memory cgroup).
pub(crate) const KERNEL_OOM: &str = "journalctl -k -g 'Killed process' --no-pager -n 20";

/// What the last run says, when it failed: each row of the plan's
/// "Common Issues" table, read from the unit's properties.
fn check_last_run() -> Option<Finding> {
    let p = systemd::show(
        UNIT,
        &[
            "ActiveState",
            "Result",
            "ExecMainCode",
            "ExecMainStatus",
            "NRestarts",
            "MemoryMax",
            "Restart",
        ],
    )?;
    last_run_finding(&p, &OomEvidence::of_host())
}

/// Where an OOM kill of the bot would be on record on this host. systemd
/// records one (Result=oom-kill) only on the unified cgroup hierarchy with
/// the memory controller; the kernel logs every one it makes. With neither,
/// a SIGKILL's cause is unknown, and said so.
pub(crate) struct OomEvidence {
    /// systemd can see OOM kills (cgroup v2 with the memory controller).
    pub systemd_sees: bool,
    /// The kernel's lines of the last 24 h, when its log is in the journal.
    pub kernel: Option<String>,
}

impl OomEvidence {
    fn of_host() -> OomEvidence {
        let unified = nix::sys::statfs::statfs("/sys/fs/cgroup")
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
        let memory = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
        let journal = |args: &[&str]| {
            let mut cmd = Command::new("journalctl");
            cmd.args(["-k", "-q", "--no-pager", "-o", "cat"]).args(args);
            crate::runner::tool(cmd)
                .filter(|o| o.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        // No kernel line at all since boot: its log is not in the journal
        // (a container), which is not the same as "no OOM kill".
        let has_kernel_log = journal(&["-b", "-n", "1"]).is_some_and(|t| !t.trim().is_empty());
        OomEvidence {
            systemd_sees: unified && memory,
            kernel: if has_kernel_log {
                journal(&["--since", "-24h", "-g", "oom-kill:"])
            } else {
                None
            },
        }
    }

    /// The kernel's OOM kills of a process of the unit (its memory cgroup
    /// named in the kernel's `oom-kill:` line).
    fn kernel_kills(&self) -> usize {
        self.kernel.as_deref().map_or(0, |k| {
            k.lines()
                .filter(|l| l.contains("oom-kill:") && l.contains(&format!("/{UNIT},task=")))
                .count()
        })
    }

    /// What a SIGKILL without an OOM record is, in words, and its fix.
    fn sigkill(&self) -> (String, String) {
        if self.systemd_sees || self.kernel.is_some() {
            (
                "the bot was killed by signal 9 (KILL), not by the OOM killer: someone or something killed it".into(),
                "find who sent it (an admin's kill -9, a script's pkill -9, a deploy tool)".into(),
            )
        } else {
            (
                "the bot was killed by signal 9 (KILL), and no OOM kill is on record (systemd cannot see them on this cgroup v1 host, and the kernel log is not in the journal): someone or something killed it, or the kernel did".into(),
                "an OOM kill names the bot's pid in the kernel log (dmesg | grep -i 'killed process'); otherwise find who sent it (an admin's kill -9, a script's pkill -9)".into(),
            )
        }
    }
}

/// The finding for the unit's properties (`systemctl show`). OOM only
/// from systemd's own `Result=oom-kill`: a SIGKILL alone says who sent a
/// signal, not why.
fn last_run_finding(p: &std::collections::BTreeMap<String, String>, oom: &OomEvidence) -> Option<Finding> {
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let state = get("ActiveState");
    let result = get("Result");
    let status: i32 = get("ExecMainStatus").parse().unwrap_or(0);
    let journal = JOURNAL_TAIL;
    // With Restart=always, systemd leaves a unit failed only when the start
    // limit refused the next restart; Result= then still holds the last
    // run's (start-limit-hit only shows on a manual start), so it is told
    // from the state.
    if state == "failed" && get("Restart") == "always" && result != "start-limit-hit" {
        return Some(Finding::fail(
            "last-run",
            format!(
                "the start limit was hit after {} restarts: systemd gave up (the last run: {result}, status {status})",
                get("NRestarts")
            ),
            format!("fix the cause ({journal}), then systemctl reset-failed jarvis-supervisor"),
        ));
    }
    let (found, fix) = match (result, status) {
        ("success", _) => return Some(Finding::pass("last-run", format!("the service is {state}, last result: success"))),
        ("watchdog", _) => (
            "the watchdog killed the bot: no WATCHDOG=1 within WatchdogSec (a hang, or pings stopped)".to_string(),
            format!("read the tracebacks: {JOURNAL_TRACEBACKS}"),
        ),
        ("oom-kill", _) => (
            format!(
                "the bot was killed by the OOM killer at MemoryMax={} (systemd's Result=oom-kill)",
                get("MemoryMax")
            ),
            "raise MemoryMax= in a drop-in (systemctl edit jarvis-supervisor) or find the leak".to_string(),
        ),
        ("signal", 9) if oom.kernel_kills() > 0 => (
            format!(
                "the bot was killed by the kernel's OOM killer ({} in the kernel log in 24 h) at MemoryMax={}",
                oom.kernel_kills(),
                get("MemoryMax")
            ),
            format!("raise MemoryMax= in a drop-in (systemctl edit jarvis-supervisor) or find the leak; {KERNEL_OOM}"),
        ),
        ("signal", 9) => oom.sigkill(),
        ("signal", n) if n > 0 => (
            format!("the bot was killed by signal {n} ({})", signal_name(n)),
            journal.to_string(),
        ),
        ("resources", _) => (
            "systemd could not prepare the start: most often an EnvironmentFile= (.env) that is missing or not UTF-8".to_string(),
            "sudo jarvisctl check (the env lines above), then systemctl restart jarvis-supervisor".to_string(),
        ),
        ("start-limit-hit", _) => (
            "the start limit was hit: the bot crashed too often".to_string(),
            format!("fix the cause ({journal}), then systemctl reset-failed jarvis-supervisor"),
        ),
        ("timeout", _) => (
            "no READY=1 within TimeoutStartSec: the bot did not finish starting".to_string(),
            journal.to_string(),
        ),
        ("exit-code", 217) => ("the last start failed with 217/USER: the service user is missing".into(), "sudo jarvisctl setup".into()),
        ("exit-code", 226) => (
            "the last start failed with 226/NAMESPACE: a ReadWritePaths= directory is missing".into(),
            "sudo jarvisctl setup".into(),
        ),
        ("exit-code", 200) => ("the last start failed with 200/CHDIR: the code directory is missing".into(), "deploy the code".into()),
        ("exit-code", 203) => ("the last start failed with 203/EXEC: the interpreter is missing".into(), "sudo apt install python3".into()),
        ("exit-code", 1) => (
            "the bot exited with status 1: a Python error, or a variable missing or malformed".to_string(),
            format!("sudo jarvisctl check (the lines above), then {journal}"),
        ),
        ("exit-code", 0) => (
            "a start step (ExecStartPre=) failed before the bot ran".to_string(),
            format!("see the lines above, and {journal}"),
        ),
        ("exit-code", n) => (format!("the bot exited with status {n}"), journal.to_string()),
        (other, _) if !other.is_empty() => (format!("the last run ended with result {other}"), journal.to_string()),
        _ => return None,
    };
    // Active again after a failure: report it, but it does not fail the check.
    if state == "active" {
        return Some(Finding::warn(
            "last-run",
            format!("running now, but earlier {found}"),
            fix,
        ));
    }
    Some(Finding::fail("last-run", found, fix))
}

/// A signal's name, as systemd prints it ("KILL" for 9).
fn signal_name(n: i32) -> String {
    nix::sys::signal::Signal::try_from(n)
        .map(|s| s.as_str().trim_start_matches("SIG").to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Repeated failures in the last 24 h, from systemd's own journal lines about
/// the unit (never the bot's output, which may hold secrets): the rows of the
/// "Common Issues" table that a restart hides from `Result=`.
fn check_history() -> Vec<Finding> {
    let Some(text) = systemd::own_lines_24h(UNIT) else {
        return Vec::new();
    };
    history_findings(&text, &OomEvidence::of_host())
}

/// The findings for PID 1's lines about the unit (`-o cat`). An OOM kill is
/// counted only from systemd's own record of it ("A process of this unit
/// has been killed by the OOM killer.", "Failed with result 'oom-kill'."),
/// never from "status=9/KILL", which any `kill -9` also leaves.
fn history_findings(text: &str, evidence: &OomEvidence) -> Vec<Finding> {
    let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    // One OOM kill leaves both lines (several processes killed leave several
    // of the first): the larger count is the number of runs it ended. On a
    // cgroup v1 host systemd records none, and the kernel's log is the record.
    let oom = count("Failed with result 'oom-kill'")
        .max(count("has been killed by the OOM killer"))
        .max(evidence.kernel_kills());
    // An OOM kill of the main process also reads "status=9/KILL".
    let sigkill = count("code=killed, status=9/KILL").saturating_sub(oom);
    let tracebacks = format!("read the tracebacks: {JOURNAL_TRACEBACKS}");
    let (sigkill_found, who_killed) = evidence.sigkill();
    let reset = "fix the cause, then systemctl reset-failed jarvis-supervisor".to_string();
    let rows: [(&str, usize, String); 5] = [
        (
            "the watchdog killed a hung bot",
            count("Watchdog timeout"),
            tracebacks,
        ),
        (
            "the bot was killed by the OOM killer (systemd's or the kernel's record)",
            oom,
            "raise MemoryMax= (systemctl edit jarvis-supervisor) or find the leak".to_string(),
        ),
        (sigkill_found.as_str(), sigkill, who_killed),
        (
            "the bot exited with status 1 (a Python error, or a bad variable)",
            count("status=1/FAILURE"),
            JOURNAL_TAIL.to_string(),
        ),
        (
            "the start limit was hit",
            count("Start request repeated too quickly"),
            reset,
        ),
    ];
    let mut found = Vec::new();
    for (what, n, fix) in rows {
        if n > 0 {
            found.push(Finding::warn(
                "history",
                format!("{what}: {n} time(s) in the last 24 h"),
                fix,
            ));
        }
    }
    found
}

/// Every requirement of `requirements.txt` is installed in the interpreter
/// that runs the bot, at a version that satisfies it, its markers evaluated
/// by that interpreter, which runs as the service user. One finding per
/// missing or mismatched requirement; the rest summed up.
fn check_requirements(
    paths: &Paths,
    code_root: &Path,
    interp: &Interpreter,
    account: Option<&Account>,
) -> Vec<Finding> {
    let file = code_root.join("requirements.txt");
    let shown = file.display();
    let bytes = match jarvis_model::untrusted::read(&paths.host(&file), None, 1 << 20) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            return vec![Finding::fail(
                "requirements",
                format!("cannot read {shown}: {e}"),
                "make it a regular file of the code, as deploy ships it",
            )]
        }
    };
    let python = interp.path.display();
    let report = account
        .and_then(|a| crate::interpreter::as_service_user(a, &paths.host(&interp.path)))
        .and_then(|mut cmd| {
            crate::python::isolated(&mut cmd, crate::python::REQUIREMENTS_READER)
                .env_clear()
                .env("LANG", "C.UTF-8");
            crate::runner::run(cmd, &bytes, REQUIREMENTS_LIMITS).ok()
        });
    let answer = report
        .as_ref()
        .filter(|o| !o.timed_out())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    let Some(report) = answer else {
        let why = match report {
            Some(o) if o.timed_out() => format!(
                "it did not answer within {} s and was killed",
                REQUIREMENTS_LIMITS.deadline.as_secs()
            ),
            _ => "it gave no report".to_string(),
        };
        return vec![Finding::warn(
            "requirements",
            format!("could not list the packages installed in {python} ({why})"),
            "rebuild the environment: sudo jarvisctl venv build",
        )];
    };
    if let Some(e) = report["error"].as_str() {
        return vec![Finding::warn(
            "requirements",
            format!(
                "cannot check {shown} against {python}: {}",
                crate::output::printable(e)
            ),
            "build the environment, which has pip: sudo jarvisctl venv build",
        )];
    }
    let mut out = Vec::new();
    let (mut ok, mut skipped) = (0, Vec::new());
    let word = |v: &serde_json::Value, k: &str| crate::output::printable(v[k].as_str().unwrap_or(""));
    for r in report["results"].as_array().into_iter().flatten() {
        let line = r["line"].as_u64().unwrap_or(0) as usize;
        let (name, spec) = (word(r, "name"), word(r, "spec"));
        match r["kind"].as_str().unwrap_or("") {
            "ok" => ok += 1,
            "skipped" => skipped.push(name),
            "missing" => out.push(
                Finding::fail(
                    "requirements",
                    format!("{name}{spec} ({shown} line {line}) is not installed in {python}: the components that import it crash"),
                    "sudo jarvisctl venv build",
                )
                .at(line, None),
            ),
            "mismatch" => out.push(
                Finding::fail(
                    "requirements",
                    format!(
                        "{name} {} is installed in {python}; {shown} line {line} wants {spec}",
                        word(r, "installed")
                    ),
                    "sudo jarvisctl venv build",
                )
                .at(line, None),
            ),
            "invalid" => out.push(
                Finding::warn(
                    "requirements",
                    format!("{shown} line {line} is not a requirement pip can read"),
                    format!("correct line {line} of {shown}"),
                )
                .at(line, None),
            ),
            _ => {}
        }
    }
    if out.iter().all(|f| f.level != report::Level::Fail) {
        out.push(Finding::pass(
            "requirements",
            format!("{ok} requirement(s) of {shown} installed in {python}"),
        ));
    }
    if !skipped.is_empty() {
        out.push(Finding::pass(
            "requirements",
            format!("skipped, their markers exclude this host: {}", skipped.join(", ")),
        ));
    }
    out
}

/// Shipped files that changed on the host since the deploy in effect, and
/// importable code that no deploy shipped, one finding each (the first
/// 20). Not in the preflight: it reads every shipped file.
fn code_drift(paths: &Paths, code_root: &Path) -> Vec<Finding> {
    use crate::drift::What;
    let Some(d) = crate::drift::check(paths, code_root) else {
        return Vec::new();
    };
    if d.changed.is_empty() {
        return vec![Finding::pass(
            "code",
            format!(
                "the {} shipped file(s) are as deploy {} shipped them, and no importable file that it did not ship is in the code",
                d.files, d.deploy
            ),
        )];
    }
    let restore = format!(
        "if not on purpose, restore them: jarvisctl deploy --rollback --to {} (from your workstation); \
         if on purpose, ship the change with your code",
        d.deploy
    );
    let fix = |c: &crate::drift::Changed| match c.what {
        What::Unshipped => format!(
            "Python can import it in place of shipped code; the bot writes no byte code \
             (PYTHONDONTWRITEBYTECODE=1), so it was put there: left from an install by hand, \
             or planted (then treat the bot's account as compromised). \
             Look at it, then remove it: sudo rm -r -- '{}/{}'",
            code_root.display(),
            c.path
        ),
        What::Unsearched => {
            "move what is not code out of the code root (or flatten it), so that it can be searched".into()
        }
        _ => restore.clone(),
    };
    let mut out: Vec<Finding> = d
        .changed
        .iter()
        .take(20)
        .map(|c| {
            let since = match c.what {
                What::Unshipped | What::Unsearched => format!("(deploy in effect: {})", d.deploy),
                _ => format!("since deploy {}", d.deploy),
            };
            Finding::warn(
                "code",
                format!("{}/{} {} {since}", code_root.display(), c.path, c.what.as_str()),
                fix(c),
            )
        })
        .collect();
    let more = d.changed.len().saturating_sub(20) + d.unshipped_more;
    if more > 0 {
        out.push(Finding::warn(
            "code",
            format!("and {more} more changed or unshipped file(s) in the code"),
            "run jarvisctl check again once the ones above are dealt with",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const KILL9: &str = include_str!("../../tests/fixtures/systemd/pid1-kill9.txt");
    const OOM: &str = include_str!("../../tests/fixtures/systemd/pid1-oom-kill.txt");

    /// A host where an OOM kill would be on record (systemd on cgroup v2).
    fn seen() -> OomEvidence {
        OomEvidence {
            systemd_sees: true,
            kernel: None,
        }
    }

    /// A cgroup v1 host whose kernel log is not in the journal (a container).
    fn blind() -> OomEvidence {
        OomEvidence {
            systemd_sees: false,
            kernel: None,
        }
    }

    fn said(f: &[Finding]) -> String {
        f.iter()
            .map(|f| format!("{} — fix: {}\n", f.found, f.fix.as_deref().unwrap_or("")))
            .collect()
    }

    #[test]
    fn two_kill9s_are_reported_as_signal_9_never_as_oom() {
        let text = said(&history_findings(KILL9, &seen()));
        assert!(
            text.contains(
                "killed by signal 9 (KILL), not by the OOM killer: someone or something killed it: 2 time(s)"
            ),
            "{text}"
        );
        assert!(!text.contains("OOM killer (systemd"), "{text}");
        assert!(
            !text.contains("MemoryMax"),
            "a kill -9 is not fixed by more memory: {text}"
        );
        // Where no OOM kill could be on record, it is not called "not OOM"
        // either, and still not fixed with more memory.
        let text = said(&history_findings(KILL9, &blind()));
        assert!(
            text.contains("killed by signal 9 (KILL), and no OOM kill is on record"),
            "{text}"
        );
        assert!(
            !text.contains("not by the OOM killer") && !text.contains("MemoryMax"),
            "{text}"
        );
    }

    #[test]
    fn systemds_own_oom_record_is_one_oom_kill_and_no_sigkill() {
        let text = said(&history_findings(OOM, &seen()));
        assert!(
            text.contains("killed by the OOM killer (systemd's or the kernel's record): 1 time(s)"),
            "{text}"
        );
        assert!(text.contains("raise MemoryMax="), "{text}");
        assert!(!text.contains("signal 9"), "{text}");
        // Both together: each counted once, as what it was.
        let text = said(&history_findings(&format!("{KILL9}{OOM}"), &seen()));
        assert!(text.contains("kernel's record): 1 time(s)"), "{text}");
        assert!(
            text.contains("someone or something killed it: 2 time(s)"),
            "{text}"
        );
    }

    fn props(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_last_runs_sigkill_is_not_oom_but_result_oom_kill_is() {
        let f = last_run_finding(
            &props(&[
                ("ActiveState", "active"),
                ("Result", "signal"),
                ("ExecMainStatus", "9"),
                ("MemoryMax", "4294967296"),
                ("Restart", "always"),
            ]),
            &seen(),
        )
        .unwrap();
        let text = said(&[f]);
        assert!(
            text.contains("killed by signal 9 (KILL), not by the OOM killer"),
            "{text}"
        );
        assert!(!text.contains("MemoryMax"), "{text}");
        let f = last_run_finding(
            &props(&[
                ("ActiveState", "activating"),
                ("Result", "oom-kill"),
                ("ExecMainStatus", "9"),
                ("MemoryMax", "209715200"),
            ]),
            &seen(),
        )
        .unwrap();
        let text = said(&[f]);
        assert!(
            text.contains("killed by the OOM killer at MemoryMax=209715200"),
            "{text}"
        );
    }

    #[test]
    fn on_cgroup_v1_the_kernels_oom_line_for_the_unit_is_the_record() {
        // The kernel's line (5.x and later) for a kill at the unit's MemoryMax.
        let kernel = "Memory cgroup out of memory: Killed process 4321 (python3) total-vm:812000kB, anon-rss:130000kB, file-rss:0kB, shmem-rss:0kB, UID:999 pgtables:400kB oom_score_adj:0\n\
                      oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/system.slice/jarvis-supervisor.service,task_memcg=/system.slice/jarvis-supervisor.service,task=python3,pid=4321,uid=999\n\
                      oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/system.slice/other.service,task_memcg=/system.slice/other.service,task=node,pid=99,uid=0\n";
        let ev = OomEvidence {
            systemd_sees: false,
            kernel: Some(kernel.into()),
        };
        // systemd on v1 wrote only "status=9/KILL" for it: one of the two
        // SIGKILLs is the kernel's, the other someone's.
        let text = said(&history_findings(KILL9, &ev));
        assert!(
            text.contains("OOM killer (systemd's or the kernel's record): 1 time(s)"),
            "{text}"
        );
        assert!(
            text.contains("not by the OOM killer: someone or something killed it: 1 time(s)"),
            "{text}"
        );
        let last = last_run_finding(
            &props(&[
                ("ActiveState", "active"),
                ("Result", "signal"),
                ("ExecMainStatus", "9"),
                ("MemoryMax", "134217728"),
            ]),
            &ev,
        )
        .unwrap();
        assert!(
            said(&[last]).contains("killed by the kernel's OOM killer (1 in the kernel log"),
            ""
        );
    }

    /// Options of journalctl (systemd 249 to 257) that `check` may use.
    const JOURNALCTL_OPTIONS: &[&str] = &[
        "-u",
        "--unit",
        "-n",
        "--lines",
        "-o",
        "--output",
        "--no-pager",
        "-g",
        "--grep",
        "-k",
        "--dmesg",
        "-r",
        "--reverse",
        "-S",
        "--since",
        "-U",
        "--until",
        "-b",
        "--boot",
        "-q",
        "--quiet",
        "-p",
        "--priority",
        "--vacuum-size",
        "-e",
        "--pager-end",
    ];

    /// Every `journalctl` command in this file's text, as far as its
    /// string goes (a `format!` argument ends it).
    fn suggested_journalctl_commands() -> Vec<String> {
        let all = include_str!("check.rs");
        // The code, not these tests.
        let src = &all[..all.rfind("#[cfg(test)]").unwrap_or(all.len())];
        let mut out = Vec::new();
        for (i, _) in src.match_indices("journalctl ") {
            // Only inside string literals: an odd number of quotes before it on its line.
            let line_start = src[..i].rfind('\n').map_or(0, |n| n + 1);
            if src[line_start..i].matches('"').count().is_multiple_of(2) {
                continue;
            }
            let rest = &src[i..];
            let end = rest.find(['"', ')', ';', '|', '{']).unwrap_or(rest.len());
            out.push(rest[..end].trim().to_string());
        }
        out
    }

    #[test]
    fn every_suggested_journalctl_command_uses_only_options_journalctl_accepts() {
        let cmds = suggested_journalctl_commands();
        assert!(cmds.len() >= 4, "{cmds:?}");
        let help = std::process::Command::new("journalctl")
            .arg("--help")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for cmd in &cmds {
            // Quoted arguments (a grep pattern) are values, not options.
            let mut in_quote = false;
            for word in cmd.split_whitespace().skip(1) {
                let quoted = in_quote || word.starts_with('\'');
                if word.starts_with('\'') {
                    in_quote = true;
                }
                if word.ends_with('\'') {
                    in_quote = false;
                }
                if quoted || !word.starts_with('-') {
                    continue;
                }
                let opt = word.split('=').next().unwrap_or(word);
                assert!(
                    JOURNALCTL_OPTIONS.contains(&opt),
                    "`{cmd}`: {opt} is not an option journalctl accepts"
                );
                // And this host's journalctl lists it, when it has one.
                if !help.is_empty() {
                    assert!(
                        help.contains(&format!("{opt} "))
                            || help.contains(&format!("{opt}="))
                            || help.contains(&format!("{opt}\n")),
                        "`{cmd}`: journalctl --help does not list {opt}"
                    );
                }
            }
        }
        // The context switch is grep's, after a pipe.
        assert!(
            JOURNAL_TRACEBACKS.contains("| grep -A 30 "),
            "{JOURNAL_TRACEBACKS}"
        );
    }
}
