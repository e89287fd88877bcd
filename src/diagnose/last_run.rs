//! What systemd recorded of the last runs: the last one's result, and the
//! repeated failures of the last 24 h, each named as the evidence allows (a
//! SIGKILL is not an OOM kill unless the kernel or systemd says so).

use std::process::Command;

use super::Fixes;
use crate::failed_unit::FailedBy;
use crate::report::Finding;
use crate::systemd;

/// `journalctl` commands that `check` suggests. Each is a command that
/// journalctl accepts as written (a test runs every one of them through
/// the option list of `journalctl --help`): journalctl has no context
/// option like grep's `-A`, so the lines after a match come from grep.
pub(crate) const JOURNAL_TAIL: &str = "journalctl -u jarvis-supervisor -n 50 --no-pager";
pub(crate) const JOURNAL_TRACEBACKS: &str =
    "journalctl -u jarvis-supervisor -n 5000 -o cat --no-pager | grep -A 30 'Fatal Python error'";
/// [`JOURNAL_TAIL`] and [`JOURNAL_TRACEBACKS`] for the unit `name`
/// (`jarvis-supervisor@NAME` for a named instance).
fn journal_tail(name: &str) -> String {
    JOURNAL_TAIL.replacen("jarvis-supervisor", name, 1)
}

fn journal_tracebacks(name: &str) -> String {
    JOURNAL_TRACEBACKS.replacen("jarvis-supervisor", name, 1)
}

/// The kernel's own record of an OOM kill (whole host or a memory cgroup).
pub(crate) const KERNEL_OOM: &str = "journalctl -k -g 'Killed process' --no-pager -n 20";

/// What the last run says, when it failed: each row of the plan's
/// "Common Issues" table, read from the unit's properties.
pub(super) fn check_last_run(fixes: &Fixes) -> Option<Finding> {
    let p = systemd::show(
        &fixes.instance().unit(),
        &[
            "ActiveState",
            "Result",
            "ExecMainCode",
            "ExecMainStatus",
            "NRestarts",
            "MemoryMax",
            "Restart",
            "StartLimitBurst",
        ],
    )?;
    // PID 1's record is read only for a failed unit: it alone says why.
    let failed_by = if p.get("ActiveState").map(String::as_str) == Some("failed") {
        crate::failed_unit::of_host()
    } else {
        FailedBy::Unknown
    };
    last_run_finding(
        &p,
        &OomEvidence::of_host(fixes.instance().unit()),
        failed_by,
        fixes,
    )
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
    /// The unit whose memory cgroup the kernel's lines name.
    pub unit: String,
}

impl OomEvidence {
    fn of_host(unit: String) -> OomEvidence {
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
            unit,
        }
    }

    /// The kernel's OOM kills of a process of the unit (its memory cgroup
    /// named in the kernel's `oom-kill:` line).
    fn kernel_kills(&self) -> usize {
        self.kernel.as_deref().map_or(0, |k| {
            k.lines()
                .filter(|l| l.contains("oom-kill:") && l.contains(&format!("/{},task=", self.unit)))
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
fn last_run_finding(
    p: &std::collections::BTreeMap<String, String>,
    oom: &OomEvidence,
    failed_by: FailedBy,
    fixes: &Fixes,
) -> Option<Finding> {
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let state = get("ActiveState");
    let result = get("Result");
    let status: i32 = get("ExecMainStatus").parse().unwrap_or(0);
    let name = fixes.unit();
    let journal = journal_tail(&name);
    let journal = journal.as_str();
    // With Restart=always, systemd leaves a unit failed when the start limit
    // refused a restart, or when a stop or restart job ended a run or a start
    // step unclean (issue 27: an `apt remove` during a crash loop). Result=
    // holds the last run's either way (start-limit-hit only shows on a
    // manual start), so PID 1's own lines tell them apart.
    if state == "failed" && get("Restart") == "always" && result != "start-limit-hit" {
        // No record either way (journald drops PID 1's lines under load, or
        // rotated them): as many automatic restarts as the limit allows is
        // systemd's own count of a loop that reached it.
        let restarts: u64 = get("NRestarts").parse().unwrap_or(0);
        let burst: u64 = get("StartLimitBurst").parse().unwrap_or(u64::MAX);
        let failed_by = match failed_by {
            FailedBy::Unknown if restarts.saturating_add(1) >= burst => FailedBy::StartLimit,
            other => other,
        };
        return Some(match failed_by {
            FailedBy::StartLimit => Finding::fail(
                "last-run",
                format!(
                    "the start limit was hit after {} restarts: systemd gave up (the last run: {result}, status {status})",
                    get("NRestarts")
                ),
                format!("fix the cause ({journal}), then systemctl reset-failed {name}"),
            ),
            // Not a fault: a start works on it as it is.
            FailedBy::Stop => Finding::pass(
                "last-run",
                format!(
                    "the service is failed only because it was stopped during a start or a crash loop (result {result}): a start clears it, or systemctl reset-failed {name}"
                ),
            ),
            FailedBy::Unknown => Finding::warn(
                "last-run",
                format!(
                    "the service is failed (result {result}, status {status}, after {} restarts); systemd's journal does not say why (no record of its start limit nor of a stop)",
                    get("NRestarts")
                ),
                format!("{journal}; systemctl reset-failed {name}, then start it"),
            ),
        });
    }
    let (found, fix) = match (result, status) {
        ("success", _) => return Some(Finding::pass("last-run", format!("the service is {state}, last result: success"))),
        ("watchdog", _) => (
            "the watchdog killed the bot: no WATCHDOG=1 within WatchdogSec (a hang, or pings stopped)".to_string(),
            format!("read the tracebacks: {}", journal_tracebacks(&name)),
        ),
        ("oom-kill", _) => (
            format!(
                "the bot was killed by the OOM killer at MemoryMax={} (systemd's Result=oom-kill)",
                get("MemoryMax")
            ),
            format!("raise MemoryMax= in a drop-in (systemctl edit {name}) or find the leak"),
        ),
        ("signal", 9) if oom.kernel_kills() > 0 => (
            format!(
                "the bot was killed by the kernel's OOM killer ({} in the kernel log in 24 h) at MemoryMax={}",
                oom.kernel_kills(),
                get("MemoryMax")
            ),
            format!("raise MemoryMax= in a drop-in (systemctl edit {name}) or find the leak; {KERNEL_OOM}"),
        ),
        ("signal", 9) => oom.sigkill(),
        ("signal", n) if n > 0 => (
            format!("the bot was killed by signal {n} ({})", signal_name(n)),
            journal.to_string(),
        ),
        ("resources", _) => (
            "systemd could not prepare the start: most often an EnvironmentFile= (.env) that is missing or not UTF-8".to_string(),
            format!("{} (the env lines above), then systemctl restart {name}", fixes.check()),
        ),
        ("start-limit-hit", _) => (
            "the start limit was hit: the bot crashed too often".to_string(),
            format!("fix the cause ({journal}), then systemctl reset-failed {name}"),
        ),
        ("timeout", _) => (
            "no READY=1 within TimeoutStartSec: the bot did not finish starting".to_string(),
            journal.to_string(),
        ),
        ("exit-code", 217) => ("the last start failed with 217/USER: the service user is missing".into(), fixes.provision()),
        ("exit-code", 226) => (
            "the last start failed with 226/NAMESPACE: a ReadWritePaths= directory is missing".into(),
            fixes.namespace(),
        ),
        ("exit-code", 200) => ("the last start failed with 200/CHDIR: the code directory is missing".into(), "deploy the code".into()),
        ("exit-code", 203) => ("the last start failed with 203/EXEC: the interpreter is missing".into(), "sudo apt install python3".into()),
        ("exit-code", 1) => (
            "the bot exited with status 1: a Python error, or a variable missing or malformed".to_string(),
            format!("{} (the lines above), then {journal}", fixes.check()),
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
pub(super) fn check_history(fixes: &Fixes) -> Vec<Finding> {
    let unit = fixes.instance().unit();
    let Some(text) = systemd::own_lines_24h(&unit) else {
        return Vec::new();
    };
    history_findings(&text, &OomEvidence::of_host(unit), fixes)
}

/// The findings for PID 1's lines about the unit (`-o cat`). An OOM kill is
/// counted only from systemd's own record of it ("A process of this unit
/// has been killed by the OOM killer.", "Failed with result 'oom-kill'."),
/// never from "status=9/KILL", which any `kill -9` also leaves.
fn history_findings(text: &str, evidence: &OomEvidence, fixes: &Fixes) -> Vec<Finding> {
    let name = fixes.unit();
    let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    // One OOM kill leaves both lines (several processes killed leave several
    // of the first): the larger count is the number of runs it ended. On a
    // cgroup v1 host systemd records none, and the kernel's log is the record.
    let oom = count("Failed with result 'oom-kill'")
        .max(count("has been killed by the OOM killer"))
        .max(evidence.kernel_kills());
    // An OOM kill of the main process also reads "status=9/KILL".
    let sigkill = count("code=killed, status=9/KILL").saturating_sub(oom);
    let tracebacks = format!("read the tracebacks: {}", journal_tracebacks(&name));
    let (sigkill_found, who_killed) = evidence.sigkill();
    let reset = format!("fix the cause, then systemctl reset-failed {name}");
    let rows: [(&str, usize, String); 5] = [
        (
            "the watchdog killed a hung bot",
            count("Watchdog timeout"),
            tracebacks,
        ),
        (
            "the bot was killed by the OOM killer (systemd's or the kernel's record)",
            oom,
            format!("raise MemoryMax= (systemctl edit {name}) or find the leak"),
        ),
        (sigkill_found.as_str(), sigkill, who_killed),
        (
            "the bot exited with status 1 (a Python error, or a bad variable)",
            count("status=1/FAILURE"),
            journal_tail(&name),
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

#[cfg(test)]
mod tests {
    use super::*;
    use jarvis_model::instance::Instance;
    use jarvis_model::unit::Unit;
    use std::collections::BTreeMap;

    /// The default instance's fixes, which these tests read.
    fn default() -> Fixes {
        Fixes::new(&Instance::Default, &Unit::default())
    }

    const KILL9: &str = include_str!("../../tests/fixtures/systemd/pid1-kill9.txt");
    const OOM: &str = include_str!("../../tests/fixtures/systemd/pid1-oom-kill.txt");

    /// A host where an OOM kill would be on record (systemd on cgroup v2).
    fn seen() -> OomEvidence {
        OomEvidence {
            systemd_sees: true,
            kernel: None,
            unit: "jarvis-supervisor.service".into(),
        }
    }

    /// A cgroup v1 host whose kernel log is not in the journal (a container).
    fn blind() -> OomEvidence {
        OomEvidence {
            systemd_sees: false,
            kernel: None,
            unit: "jarvis-supervisor.service".into(),
        }
    }

    fn said(f: &[Finding]) -> String {
        f.iter()
            .map(|f| format!("{} — fix: {}\n", f.found, f.fix.as_deref().unwrap_or("")))
            .collect()
    }

    #[test]
    fn two_kill9s_are_reported_as_signal_9_never_as_oom() {
        let text = said(&history_findings(KILL9, &seen(), &default()));
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
        let text = said(&history_findings(KILL9, &blind(), &default()));
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
        let text = said(&history_findings(OOM, &seen(), &default()));
        assert!(
            text.contains("killed by the OOM killer (systemd's or the kernel's record): 1 time(s)"),
            "{text}"
        );
        assert!(text.contains("raise MemoryMax="), "{text}");
        assert!(!text.contains("signal 9"), "{text}");
        // Both together: each counted once, as what it was.
        let text = said(&history_findings(&format!("{KILL9}{OOM}"), &seen(), &default()));
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
            FailedBy::Unknown,
            &default(),
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
            FailedBy::Unknown,
            &default(),
        )
        .unwrap();
        let text = said(&[f]);
        assert!(
            text.contains("killed by the OOM killer at MemoryMax=209715200"),
            "{text}"
        );
    }

    /// A unit that is failed, as `systemctl show` gives it after a crash
    /// loop (Result= keeps the last run's: systemd 252 at the start limit),
    /// and after a stop during the backoff's ExecStartPre= (Result=signal).
    fn failed_props(result: &str) -> BTreeMap<String, String> {
        props(&[
            ("ActiveState", "failed"),
            ("Result", result),
            ("ExecMainStatus", "1"),
            ("NRestarts", "5"),
            ("Restart", "always"),
            ("StartLimitBurst", "101"),
        ])
    }

    #[test]
    fn a_failed_unit_is_start_limit_hit_only_when_systemd_wrote_so() {
        let limit = crate::failed_unit::from_json_lines(include_str!(
            "../../tests/fixtures/systemd/pid1-start-limit.jsonl"
        ));
        let f = last_run_finding(&failed_props("exit-code"), &seen(), limit, &default()).unwrap();
        assert!(!f.ok, "{:?}", f.found);
        assert!(
            f.found.contains("the start limit was hit after 5 restarts"),
            "{}",
            f.found
        );

        // An operator's stop during the backoff wait: not a start limit, and
        // no reason not to start (the postinst starts on a passing check).
        let stop = crate::failed_unit::from_json_lines(include_str!(
            "../../tests/fixtures/systemd/pid1-stop-during-backoff.jsonl"
        ));
        let f = last_run_finding(&failed_props("signal"), &seen(), stop, &default()).unwrap();
        assert!(f.ok, "{:?}", f.found);
        assert!(!f.found.contains("start limit was hit"), "{}", f.found);
        assert!(f.found.contains("stopped during a start"), "{}", f.found);

        // No record either way: said as unknown, never as the start limit...
        let f = last_run_finding(&failed_props("exit-code"), &seen(), FailedBy::Unknown, &default()).unwrap();
        assert!(!f.found.contains("start limit was hit"), "{}", f.found);
        assert!(f.found.contains("does not say why"), "{}", f.found);
        // ...unless systemd's restart count reached the limit.
        let mut at_limit = failed_props("exit-code");
        at_limit.insert("NRestarts".into(), "100".into());
        let f = last_run_finding(&at_limit, &seen(), FailedBy::Unknown, &default()).unwrap();
        assert!(
            f.found.contains("the start limit was hit after 100 restarts"),
            "{}",
            f.found
        );
        // A stop on record wins over the count: the operator's stop of a
        // long loop is still a stop.
        let f = last_run_finding(&at_limit, &seen(), stop, &default()).unwrap();
        assert!(f.ok && f.found.contains("stopped during a start"), "{}", f.found);
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
            unit: "jarvis-supervisor.service".into(),
        };
        // systemd on v1 wrote only "status=9/KILL" for it: one of the two
        // SIGKILLs is the kernel's, the other someone's.
        let text = said(&history_findings(KILL9, &ev, &default()));
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
            FailedBy::Unknown,
            &default(),
        )
        .unwrap();
        assert!(
            said(&[last]).contains("killed by the kernel's OOM killer (1 in the kernel log"),
            ""
        );
    }

    #[test]
    fn a_named_instances_last_runs_are_fixed_on_its_own_unit() {
        let alpha = Instance::from_arg(Some("alpha")).unwrap();
        let fixes = Fixes::new(&alpha, &Unit::default());
        let mut text = said(&history_findings(&format!("{KILL9}{OOM}"), &seen(), &fixes));
        for (result, status) in [
            ("exit-code", "1"),
            ("oom-kill", "9"),
            ("start-limit-hit", "1"),
            ("exit-code", "226"),
        ] {
            let f = last_run_finding(
                &props(&[
                    ("ActiveState", "failed"),
                    ("Result", result),
                    ("ExecMainStatus", status),
                ]),
                &seen(),
                FailedBy::Unknown,
                &fixes,
            )
            .unwrap();
            text += &said(&[f]);
        }
        for want in [
            "systemctl edit jarvis-supervisor@alpha)",
            "systemctl reset-failed jarvis-supervisor@alpha",
            "journalctl -u jarvis-supervisor@alpha -n 50",
            "sudo jarvisctl check --instance alpha",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        // Never the default's unit, nor setup, which provisions only it.
        for line in text.lines() {
            assert!(
                !line.contains("jarvis-supervisor ")
                    && !line.ends_with("jarvis-supervisor")
                    && !line.contains("jarvisctl setup"),
                "{line}"
            );
        }
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
        // The code of every part of the diagnosis, not these tests.
        let src: String = [
            include_str!("mod.rs"),
            include_str!("host.rs"),
            include_str!("python.rs"),
            include_str!("last_run.rs"),
        ]
        .iter()
        .map(|all| &all[..all.rfind("#[cfg(test)]").unwrap_or(all.len())])
        .collect();
        let src = src.as_str();
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
