//! CLI tests (layer 1): the real `jarvisctl` binary on a temporary root, as
//! an ordinary user, plus static checks of the shipped unit and snippet.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A temporary root holding the shipped unit, with User=/Group= switched to
/// the current user so that no root is needed.
fn tree() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let me = whoami();
    let unit = fs::read_to_string(repo("systemd/jarvis-supervisor.service")).unwrap();
    let dest = dir.path().join("usr/lib/systemd/system");
    fs::create_dir_all(&dest).unwrap();
    fs::write(dest.join("jarvis-supervisor.service"), unit).unwrap();
    let dropin = dir.path().join("etc/systemd/system/jarvis-supervisor.service.d");
    fs::create_dir_all(&dropin).unwrap();
    let group = String::from_utf8(Command::new("id").arg("-gn").output().unwrap().stdout).unwrap();
    fs::write(
        dropin.join("10-test.conf"),
        format!("[Service]\nUser={me}\nGroup={}\n", group.trim()),
    )
    .unwrap();
    // The home comes from the account; rooted paths from the unit.
    (dir, me)
}

fn jarvisctl(root: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--root")
        .arg(root)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// The rooted unit uses /home/jarvis paths; the current user's home is
/// elsewhere, so ownership is only corrected where the test makes it so.
#[test]
fn setup_creates_every_writable_path_0750_then_reports_nothing() {
    let (dir, _me) = tree();
    let root = dir.path();
    let out = jarvisctl(root, &["setup"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    for d in [
        "home/jarvis/Jarvis/logs",
        "home/jarvis/Jarvis/data",
        "home/jarvis/Jarvis/bots",
        "home/jarvis/.lifeos",
        "home/jarvis/.local/state/jarvis",
    ] {
        let p = root.join(d);
        assert!(p.is_dir(), "{d} not created:\n{stdout}");
        assert_eq!(mode(&p), 0o750, "{d}");
        assert!(
            stdout.contains(&format!("created directory {}", p.display())),
            "no line for {d}:\n{stdout}"
        );
    }
    // One line per change.
    assert_eq!(
        stdout.lines().count(),
        stdout
            .lines()
            .filter(|l| l.starts_with("created directory"))
            .count()
    );
    let again = jarvisctl(root, &["setup"]);
    assert!(again.status.success());
    assert_eq!(text(&again), "", "a second run must print nothing");
}

#[test]
fn setup_fixes_env_mode_without_touching_its_content() {
    let (dir, _me) = tree();
    let root = dir.path();
    let env = root.join("home/jarvis/Jarvis/.env");
    fs::create_dir_all(env.parent().unwrap()).unwrap();
    let secret = "TELEGRAM_BOT_TOKEN=123456789:AAFakeTokenForTestsOnly_abcdefghijklmn\n";
    fs::write(&env, secret).unwrap();
    fs::set_permissions(&env, fs::Permissions::from_mode(0o644)).unwrap();
    let out = jarvisctl(root, &["setup"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mode(&env), 0o600);
    assert_eq!(fs::read_to_string(&env).unwrap(), secret, ".env content changed");
    let t = text(&out);
    assert!(
        t.contains(&format!("changed mode of {} from 0644 to 0600", env.display())),
        "{t}"
    );
    assert!(!t.contains("AAFake"), "a secret was printed: {t}");
}

#[test]
fn setup_never_creates_env() {
    let (dir, _) = tree();
    let out = jarvisctl(dir.path(), &["setup"]);
    assert!(out.status.success());
    assert!(!dir.path().join("home/jarvis/Jarvis/.env").exists());
}

#[test]
fn setup_refuses_a_symlinked_env() {
    let (dir, _) = tree();
    let root = dir.path();
    let target = root.join("elsewhere");
    fs::write(&target, "x").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    fs::create_dir_all(root.join("home/jarvis/Jarvis")).unwrap();
    std::os::unix::fs::symlink(&target, root.join("home/jarvis/Jarvis/.env")).unwrap();
    let out = jarvisctl(root, &["setup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("/home/jarvis/Jarvis/.env is a symbolic link"),
        "{}",
        text(&out)
    );
    assert_eq!(mode(&target), 0o644, "setup followed a symlinked .env");
}

#[test]
fn setup_json_lists_the_changes() {
    let (dir, _) = tree();
    let out = jarvisctl(dir.path(), &["setup", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["changes"].as_array().unwrap().len() >= 5, "{v}");
}

#[test]
fn missing_unit_says_what_and_how_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = jarvisctl(dir.path(), &["setup"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains("jarvis-supervisor.service is not installed"), "{t}");
    assert!(t.contains("note: reinstall the package"), "{t}");
}

/// As systemd, a drop-in line without '=' is ignored with a warning that
/// names the file and line; it is not a configuration error (exit 2) that
/// would stop the preflight, and so the bot (issue 13, finding 14).
#[test]
fn bad_dropin_line_names_file_and_line() {
    let (dir, _) = tree();
    let f = dir
        .path()
        .join("etc/systemd/system/jarvis-supervisor.service.d/20-bad.conf");
    fs::write(&f, "[Service]\nthis is not a setting\n").unwrap();
    let out = jarvisctl(dir.path(), &["check"]);
    assert_ne!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{}:2", f.display())),
        "{}",
        text(&out)
    );
}

#[test]
fn backoff_waits_after_a_quick_restart_only() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("backoff.json");
    let run = || {
        Command::new(BIN)
            .args(["backoff", "--base", "1", "--state"])
            .arg(&state)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success());
    assert_eq!(text(&first), "", "the first start must not wait");
    // One quick restart goes ahead at once: a single crash is back fast.
    let second = run();
    assert!(second.status.success());
    assert_eq!(text(&second), "", "the first quick restart must not wait");
    let t0 = std::time::Instant::now();
    let third = run();
    assert!(third.status.success());
    assert!(text(&third).contains("start 3 in a row"), "{}", text(&third));
    assert!(text(&third).contains("waiting 1 s"), "{}", text(&third));
    assert!(t0.elapsed() >= std::time::Duration::from_secs(1));
}

#[test]
fn usage_error_exits_2() {
    let out = Command::new(BIN).arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["check", "--no-such-option"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `status` is a monitoring plugin: a bad argument, or a value it cannot
/// use, is UNKNOWN (3), never CRITICAL (2); --help stays 0.
#[test]
fn a_bad_status_argument_exits_3_unknown() {
    for args in [
        &["status", "--no-such-option"][..],
        &["status", "--timeout", "abc", "--host", "root@a"],
        &["status", "--timeout", "-5", "--host", "root@a"],
        &["status", "--host", "a;id"],
        &["--root", "/nonexistent", "status", "--bogus"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", text(&out));
        assert!(!text(&out).is_empty(), "{args:?}: no message");
    }
    let help = Command::new(BIN).args(["status", "--help"]).output().unwrap();
    assert_eq!(help.status.code(), Some(0));
}

/// `[Section]` -> key -> values, in order.
fn settings(text: &str) -> Vec<(String, String, String)> {
    let mut sec = String::new();
    let mut out = Vec::new();
    for l in text.lines().map(str::trim) {
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        if l.starts_with('[') {
            sec = l.trim_matches(['[', ']']).to_string();
        } else if let Some((k, v)) = l.split_once('=') {
            out.push((sec.clone(), k.to_string(), v.to_string()));
        }
    }
    out
}

#[test]
fn shipped_unit_keeps_the_plan_and_fixes_its_mistakes() {
    let unit = fs::read_to_string(repo("systemd/jarvis-supervisor.service")).unwrap();
    let s = settings(&unit);
    let get = |sec: &str, k: &str| {
        s.iter()
            .filter(|(a, b, _)| a == sec && b == k)
            .map(|(_, _, v)| v.clone())
            .collect::<Vec<_>>()
    };
    let one = |sec: &str, k: &str| {
        get(sec, k)
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("[{sec}] {k}= missing"))
    };
    assert_eq!(one("Service", "Type"), "notify");
    assert_eq!(one("Service", "WatchdogSec"), "300s");
    assert_eq!(one("Service", "Restart"), "always");
    // The first start plus 100 restarts.
    assert_eq!(one("Unit", "StartLimitBurst"), "101");
    assert!(
        get("Service", "StartLimitBurst").is_empty() && get("Service", "StartLimitIntervalSec").is_empty()
    );
    let env = get("Service", "Environment");
    assert!(
        env.contains(&"PYTHONPATH=/home/jarvis/Jarvis".to_string()),
        "{env:?}"
    );
    assert!(env.contains(&"PYTHONUNBUFFERED=1".to_string()), "{env:?}");
    // No byte code written beside the sources: any .pyc there is planted.
    assert!(env.contains(&"PYTHONDONTWRITEBYTECODE=1".to_string()), "{env:?}");
    for k in ["TimeoutStartSec", "TimeoutStopSec"] {
        let v: u64 = one("Service", k).trim_end_matches('s').parse().unwrap();
        assert!(v >= 120, "{k}={v}");
    }
    assert!(
        get("Service", "ExecReload").is_empty(),
        "no ExecReload: a HUP kills the bot"
    );
    assert_eq!(one("Service", "MemoryMax"), "4G");
    assert_eq!(one("Service", "CPUQuota"), "90%");
    assert!(
        get("Service", "MemoryDenyWriteExecute").is_empty(),
        "Node's JIT needs W+X memory"
    );
    let rw: Vec<String> = get("Service", "ReadWritePaths")
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    for p in &rw {
        assert!(p.trim_start_matches('-').starts_with('/'), "not absolute: {p}");
    }
    for needed in [
        "/home/jarvis/Jarvis/logs",
        "/home/jarvis/Jarvis/data",
        "/home/jarvis/Jarvis/bots",
        "/home/jarvis/.lifeos",
        "/home/jarvis/.local/state/jarvis",
        "/tmp",
    ] {
        assert!(rw.iter().any(|p| p == needed), "{needed} not writable: {rw:?}");
    }
}

#[test]
fn logrotate_snippet_rotates_daily_7_compressed_without_signalling() {
    let s = fs::read_to_string(repo("logrotate/jarvis")).unwrap();
    let words: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    for w in [
        "daily",
        "rotate 7",
        "compress",
        "delaycompress",
        "missingok",
        "notifempty",
        "copytruncate",
    ] {
        assert!(words.contains(&w), "missing {w}");
    }
    assert!(
        !s.contains("postrotate") && !s.contains("kill"),
        "a rotation must never signal the bot"
    );
    assert!(!s.contains("/var/log/jarvis"), "the plan's unused stanza is gone");
}

/// Issue 13, finding 13: a reader that goes away (`| head -1`) ends the
/// command quietly with 141, as SIGPIPE would, never a panic and 101.
#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("dup.env");
    let text: String = (0..20_000).map(|i| format!("KEY_{}=v{i}\n", i % 10)).collect();
    std::fs::write(&env, text).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} env lint {} | head -1 >/dev/null; echo ${{PIPESTATUS[0]}}",
            env!("CARGO_BIN_EXE_jarvisctl"),
            env.display()
        ))
        .output()
        .unwrap();
    let rc = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(rc, "141", "{err}");
}

/// The command line itself, to list the subcommands and to parse each
/// example exactly as the binary would.
use jarvis_cli as cli_def;

/// Every visible subcommand by its words: `["setup"]`, `["env"]`,
/// `["env", "lint"]`, ...
fn visible_subcommands(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for sub in cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help" && !s.is_hide_set())
    {
        let mut words = prefix.to_vec();
        words.push(sub.get_name().to_string());
        out.push(words.clone());
        visible_subcommands(sub, &words, out);
    }
}

/// The words of an example line as a shell splits them: quotes group, and
/// the examples use no other shell syntax.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(quote.is_none(), "an unclosed quote in {line:?}");
    words.extend(word);
    words
}

#[test]
fn every_subcommand_help_ends_with_examples_that_parse() {
    use clap::{CommandFactory, Parser};
    let mut subs = Vec::new();
    visible_subcommands(&cli_def::Cli::command(), &[], &mut subs);
    for nested in [["env", "lint"], ["venv", "build"], ["venv", "exec"]] {
        assert!(
            subs.contains(&nested.map(String::from).to_vec()),
            "{nested:?} not listed: {subs:?}"
        );
    }
    for sub in &subs {
        let out = Command::new(BIN)
            .args(sub)
            .arg("--help")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{sub:?} --help: {}", text(&out));
        let help = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = help.trim_end().lines().collect();
        let start = lines
            .iter()
            .rposition(|l| *l == "Examples:")
            .unwrap_or_else(|| panic!("{sub:?} --help has no examples:\n{help}"));
        let examples = &lines[start + 1..];
        assert!(
            (1..=3).contains(&examples.len()),
            "{sub:?}: the help must end with 1 to 3 examples:\n{help}"
        );
        for example in examples {
            assert!(
                example.starts_with("  "),
                "{sub:?}: not an example line: {example:?}"
            );
            let mut words = shell_words(example);
            if words.first().is_some_and(|w| w == "sudo") {
                words.remove(0);
                if words.first().is_some_and(|w| w == "-u") {
                    words.drain(..2);
                }
            }
            assert_eq!(
                words.first().map(String::as_str),
                Some("jarvisctl"),
                "{sub:?}: {example}"
            );
            assert_eq!(
                words.get(1..=sub.len()),
                Some(&sub[..]),
                "{sub:?}: the example runs another command: {example}"
            );
            if let Err(e) = cli_def::Cli::try_parse_from(&words) {
                panic!("{sub:?}: the example `{}` does not parse:\n{e}", example.trim());
            }
        }
    }
}

/// Issue 26: `instance add` writes the instance's drop-in (with --dry-run,
/// nothing), `instance list` shows it beside the default, `remove` sets it
/// aside and `restore` brings it back byte for byte; every step is one line.
#[test]
fn an_instance_is_added_listed_removed_and_restored_in_a_rooted_tree() {
    let (dir, _) = tree();
    // An account of this host other than root (instance add refuses root).
    let me = "nobody";
    let root = dir.path();
    fs::copy(
        repo("systemd/group/jarvis-supervisor@.service"),
        root.join("usr/lib/systemd/system/jarvis-supervisor@.service"),
    )
    .unwrap();
    let dropin = root.join("etc/systemd/system/jarvis-supervisor@alpha.service.d/50-jarvisctl-instance.conf");
    let add = [
        "instance",
        "add",
        "alpha",
        "--code-root",
        "/srv/gateway",
        "--script",
        "bots/alpha/alpha_telegram_bot.py",
        "--type",
        "simple",
        "--user",
        me,
        "--memory-max",
        "512M",
    ];
    let mut dry = add.to_vec();
    dry.push("--dry-run");
    let out = jarvisctl(root, &dry);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(
            "would write /etc/systemd/system/jarvis-supervisor@alpha.service.d/50-jarvisctl-instance.conf"
        ),
        "{}",
        text(&out)
    );
    assert!(!dropin.exists(), "--dry-run wrote the drop-in");

    let out = jarvisctl(root, &add);
    assert!(out.status.success(), "{}", text(&out));
    let written = fs::read_to_string(&dropin).unwrap();
    assert!(
        written.contains("Type=simple\n") && written.contains(&format!("User={me}\n")),
        "{written}"
    );
    // Again: nothing to change.
    let out = jarvisctl(root, &add);
    assert!(
        text(&out).contains("instance alpha: nothing to change"),
        "{}",
        text(&out)
    );

    let out = jarvisctl(root, &["instance", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "alpha"], "{v}");
    assert_eq!(v["instances"][1]["type"], "simple", "{v}");
    assert_eq!(v["instances"][1]["code_root"], "/srv/gateway", "{v}");
    let human = text(&jarvisctl(root, &["instance", "list"]));
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("alpha ") && l.contains("jarvis-supervisor@alpha.service")),
        "{human}"
    );

    // Removed: stopped (it was not running), set aside, not listed.
    let out = jarvisctl(root, &["instance", "remove", "alpha"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!dropin.exists());
    assert!(!text(&jarvisctl(root, &["instance", "list"])).contains("alpha"));
    let out = jarvisctl(root, &["instance", "restore", "alpha"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read_to_string(&dropin).unwrap(), written);
    // Nothing to restore twice; an unknown one is named with the known.
    let out = jarvisctl(root, &["instance", "restore", "alpha"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("has no removed instance to restore"),
        "{}",
        text(&out)
    );
    let out = jarvisctl(root, &["instance", "remove", "beta"]);
    assert!(text(&out).contains("instances: alpha"), "{}", text(&out));
}

/// Each named instance's logs are rotated: one stanza for a tree that two
/// instances share (logrotate refuses a log named twice), none for the
/// default's tree (the shipped file has it), one per instance for its
/// engine's output file, as the owner of logs/; never as root in a logs/
/// others can write; gone with the last instance.
#[test]
fn named_instances_logs_are_rotated_once_per_tree_as_the_owner_of_logs() {
    let (dir, _) = tree();
    let root = dir.path();
    fs::copy(
        repo("systemd/group/jarvis-supervisor@.service"),
        root.join("usr/lib/systemd/system/jarvis-supervisor@.service"),
    )
    .unwrap();
    let file = root.join("etc/logrotate.d/jarvis-instances");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    let nobody_group = String::from_utf8(
        Command::new("id")
            .args(["-gn", "nobody"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let nobody_group = nobody_group.trim();
    for (name, code_root) in [
        ("alpha", "/srv/gateway"),
        ("beta", "/srv/gateway"),
        ("split", "/home/jarvis/Jarvis"),
    ] {
        let out = jarvisctl(
            root,
            &[
                "instance",
                "add",
                name,
                "--code-root",
                code_root,
                "--script",
                "bot.py",
                "--type",
                "simple",
                "--user",
                "nobody",
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let conf = fs::read_to_string(&file).unwrap();
    assert_eq!(conf.matches("/srv/gateway/logs/*.log {").count(), 1, "{conf}");
    assert!(
        !conf.contains("/home/jarvis/Jarvis/logs/*.log"),
        "the default's tree twice:\n{conf}"
    );
    for (name, code_root) in [
        ("alpha", "/srv/gateway"),
        ("beta", "/srv/gateway"),
        ("split", "/home/jarvis/Jarvis"),
    ] {
        assert!(
            conf.contains(&format!(
                "{code_root}/logs/jarvis-supervisor@{name}.stdout {{\n    su nobody {nobody_group}\n"
            )),
            "{name}'s output file:\n{conf}"
        );
        assert!(
            conf.contains(&format!("cat /run/jarvis-supervisor-run@{name}/run.pid")),
            "{conf}"
        );
    }
    // logs/ not made yet: rotated as the instance's user; once made, as
    // its owner; a root-owned logs/ that others can write: not at all.
    assert!(
        conf.contains("/srv/gateway/logs/*.log {\n    su nobody "),
        "{conf}"
    );
    let logs = root.join("srv/gateway/logs");
    fs::create_dir_all(&logs).unwrap();
    fs::set_permissions(&logs, fs::Permissions::from_mode(0o777)).unwrap();
    let out = jarvisctl(root, &["instance", "remove", "split"]);
    assert!(out.status.success(), "{}", text(&out));
    // Only /srv/gateway's instances are left, and as root that logs/ is
    // not rotated: the file may be gone.
    let conf = fs::read_to_string(&file).unwrap_or_default();
    assert!(
        !conf.contains("@split"),
        "a removed instance still rotated:\n{conf}"
    );
    let owner = fs::metadata(&logs).unwrap().uid();
    if owner == 0 {
        assert!(
            !conf.contains("/srv/gateway/logs/"),
            "rotated as root where others write:\n{conf}"
        );
        assert!(
            text(&out).contains("not rotated: root owns it and others can write it")
                && text(&out).contains("chown nobody:"),
            "{}",
            text(&out)
        );
    } else {
        let me = whoami();
        assert!(
            conf.contains(&format!("/srv/gateway/logs/*.log {{\n    su {me} ")),
            "{conf}"
        );
    }
    // The file parses (debug mode changes nothing).
    if owner != 0 {
        let lr = Command::new("logrotate")
            .args(["-d", "-s"])
            .arg(root.join("status"))
            .arg(&file)
            .output();
        let lr = lr.expect("logrotate is installed (cargo xtask test installs it)");
        assert!(lr.status.success(), "{}", text(&lr));
    }
    // Back to a logs/ of its own user: rotated again; the last instance
    // gone: the file gone.
    fs::set_permissions(&logs, fs::Permissions::from_mode(0o750)).unwrap();
    let out = jarvisctl(root, &["instance", "remove", "alpha"]);
    assert!(out.status.success(), "{}", text(&out));
    let conf = fs::read_to_string(&file).unwrap();
    assert!(
        conf.contains("/srv/gateway/logs/*.log {")
            && conf.contains("@beta.stdout")
            && !conf.contains("@alpha"),
        "{conf}"
    );
    let lr = Command::new("logrotate")
        .args(["-d", "-s"])
        .arg(root.join("status"))
        .arg(&file)
        .output();
    let lr = lr.expect("logrotate is installed (cargo xtask test installs it)");
    assert!(lr.status.success(), "logrotate -d:\n{}\n{conf}", text(&lr));
    let out = jarvisctl(root, &["instance", "remove", "beta"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!file.exists(), "no instance left, yet {} stays", file.display());
}

/// A rooted tree with the default instance and a named one, alpha, made by
/// `instance add` (as nobody: instance add refuses root) from /srv/gateway,
/// which is not there.
fn tree_with_alpha() -> tempfile::TempDir {
    let (dir, _) = tree();
    add_alpha(dir.path());
    dir
}

fn add_alpha(root: &Path) {
    fs::copy(
        repo("systemd/group/jarvis-supervisor@.service"),
        root.join("usr/lib/systemd/system/jarvis-supervisor@.service"),
    )
    .unwrap();
    let out = jarvisctl(
        root,
        &[
            "instance",
            "add",
            "alpha",
            "--code-root",
            "/srv/gateway",
            "--script",
            "bots/alpha/alpha_telegram_bot.py",
            "--type",
            "simple",
            "--user",
            "nobody",
            "--memory-max",
            "512M",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// The lines of `check`'s output, without the free space (it moves
/// between two runs).
fn check_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains(" disk: "))
        .map(str::to_string)
        .collect()
}

/// `check --instance alpha` reads alpha's unit: its missing code root is
/// named with alpha's own fix (the rsync into it, or instance add with its
/// entry point, type, user and limits), never the default's `setup`; an
/// instance never made is refused with the ones there are.
#[test]
fn check_instance_names_a_named_instances_missing_code_root_with_its_own_fix() {
    let dir = tree_with_alpha();
    let root = dir.path();
    let out = jarvisctl(root, &["check", "--instance", "alpha"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let lines = check_lines(&out);
    let chdir = lines
        .iter()
        .find(|l| l.contains("/srv/gateway (WorkingDirectory=) is missing"))
        .unwrap_or_else(|| panic!("no line for the code root:\n{}", text(&out)));
    assert!(chdir.starts_with("✗ [alpha] path: "), "{chdir}");
    assert!(
        chdir.contains(
            "sudo jarvisctl instance add alpha --code-root DIR --script bots/alpha/alpha_telegram_bot.py --type simple --user nobody --memory-max 512M"
        ),
        "{chdir}"
    );
    let rw = lines
        .iter()
        .find(|l| l.contains("/srv/gateway (ReadWritePaths=) is missing"))
        .unwrap_or_else(|| panic!("{}", text(&out)));
    assert!(
        rw.contains("fix: sudo install -d -o nobody -g ") && rw.ends_with(" -m 0750 /srv/gateway"),
        "{rw}"
    );
    assert!(
        lines.iter().all(|l| l.starts_with("✓ [alpha] ")
            || l.starts_with("✗ [alpha] ")
            || l.starts_with("! [alpha] ")),
        "{lines:#?}"
    );
    let all = text(&out);
    assert!(!all.contains("jarvisctl setup"), "{all}");
    assert!(
        !all.contains("/home/jarvis/Jarvis"),
        "the default's paths in alpha's check:\n{all}"
    );

    let out = jarvisctl(root, &["check", "--instance", "alpha", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    let checks = v["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["instance"] == "alpha"), "{v}");

    // There, but another user's (a tree several instances share is root's):
    // a warning that says so, not a start that fails.
    fs::create_dir_all(root.join("srv/gateway")).unwrap();
    let lines = check_lines(&jarvisctl(root, &["check", "--instance", "alpha"]));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("! [alpha] path: /srv/gateway (the code root) is not writable by nobody")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("(WorkingDirectory=) is missing")),
        "{lines:#?}"
    );

    let out = jarvisctl(root, &["check", "--instance", "zed"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no instance zed on this host")
            && text(&out).contains("the instances are: default, alpha"),
        "{}",
        text(&out)
    );
}

/// Without --instance, a host with named instances gets every one checked:
/// the default's findings as they were, each labelled [default], then
/// alpha's, labelled [alpha]; in JSON, each finding says its instance.
/// `--instance default` and `--preflight` are the default's alone.
#[test]
fn check_without_instance_checks_the_default_then_every_named_one() {
    let (dir, _) = tree();
    let root = dir.path();
    let alone = jarvisctl(root, &["check"]);
    let before = check_lines(&alone);
    assert!(before.iter().all(|l| !l.contains("[default]")), "{before:#?}");
    let json = String::from_utf8_lossy(&jarvisctl(root, &["check", "--json"]).stdout).to_string();
    assert!(!json.contains("\"instance\""), "{json}");

    add_alpha(root);
    let out = jarvisctl(root, &["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let lines = check_lines(&out);
    let labelled: Vec<String> = before
        .iter()
        .map(|l| {
            let (mark, rest) = l.split_once(' ').unwrap();
            format!("{mark} [default] {rest}")
        })
        .collect();
    assert_eq!(lines[..labelled.len()], labelled[..], "{}", text(&out));
    let named = &lines[labelled.len()..];
    assert!(
        !named.is_empty() && named.iter().all(|l| l.contains(" [alpha] ")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("[alpha] path: /srv/gateway (WorkingDirectory=) is missing")),
        "{lines:#?}"
    );

    let out = jarvisctl(root, &["check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let of = |i: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["instance"] == i)
            .count()
    };
    assert!(of("default") > 0 && of("alpha") > 0, "{v}");
    assert_eq!(
        of("default") + of("alpha"),
        v["checks"].as_array().unwrap().len(),
        "{v}"
    );

    for args in [
        &["check", "--instance", "default"][..],
        &["check", "--preflight"][..],
    ] {
        let out = jarvisctl(root, args);
        assert!(
            !text(&out).contains("[alpha]") && !text(&out).contains("/srv/gateway"),
            "{args:?}: {}",
            text(&out)
        );
    }
}

/// On a host whose instances run from different code roots, a venv change
/// with no --instance is refused (usage) with each instance and its code
/// root, and nothing is built; with --instance it acts on that instance's
/// code root.
#[test]
fn venv_without_instance_is_refused_with_the_instances_and_their_code_roots() {
    let dir = tree_with_alpha();
    let root = dir.path();
    for args in [
        &["venv", "build"][..],
        &["venv", "rollback"][..],
        &["venv", "adopt", "--json"][..],
        &["venv", "switch", "none"][..],
    ] {
        let out = jarvisctl(root, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(
                "this host runs several instances: say which with --instance NAME: default (/home/jarvis/Jarvis), alpha (/srv/gateway)"
            ),
            "{args:?}: {}",
            text(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out));
    }
    assert!(!root.join("home/jarvis/Jarvis/venvs").exists());
    // Named: alpha's own code root, which is missing here.
    let out = jarvisctl(root, &["venv", "build", "--instance", "alpha"]);
    assert!(
        text(&out).contains("/srv/gateway") && !text(&out).contains("several instances"),
        "{}",
        text(&out)
    );
    let out = jarvisctl(root, &["venv", "build", "--instance", "zed"]);
    assert!(text(&out).contains("no instance zed"), "{}", text(&out));
}

/// `configure --show --instance alpha` prints alpha's settings with the file
/// and line of each: its drop-in for what instance add wrote, the template
/// for the rest. Its code root is not changed by configure, which names the
/// instance add that does it; the restart timer is the default's.
#[test]
fn configure_show_instance_prints_a_named_instances_settings_and_their_files() {
    let dir = tree_with_alpha();
    let root = dir.path();
    let out = jarvisctl(root, &["configure", "--show", "--instance", "alpha"]);
    assert!(out.status.success(), "{}", text(&out));
    let show = String::from_utf8_lossy(&out.stdout).to_string();
    let dropin = root.join("etc/systemd/system/jarvis-supervisor@alpha.service.d/50-jarvisctl-instance.conf");
    let template = root.join("usr/lib/systemd/system/jarvis-supervisor@.service");
    assert!(
        show.starts_with("jarvis-supervisor@alpha.service, as in effect:\n"),
        "{show}"
    );
    for (setting, file) in [
        ("Type=simple", &dropin),
        ("User=nobody", &dropin),
        ("WorkingDirectory=/srv/gateway", &dropin),
        (
            "ExecStart=/usr/bin/jarvisctl venv exec -- bots/alpha/alpha_telegram_bot.py",
            &dropin,
        ),
        ("Environment=PYTHONUNBUFFERED=1", &template),
    ] {
        assert!(
            show.lines()
                .any(|l| l.starts_with(&format!("{setting}  ({}:", file.display()))),
            "{setting} from {}:\n{show}",
            file.display()
        );
    }
    assert!(!show.contains("/home/jarvis/Jarvis"), "{show}");
    let out = jarvisctl(root, &["configure", "--show", "--instance", "alpha", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|s| s["key"] == "WorkingDirectory" && s["value"] == "/srv/gateway"),
        "{v}"
    );

    let before = fs::read_to_string(&dropin).unwrap();
    let out = jarvisctl(
        root,
        &["configure", "--instance", "alpha", "--code-root", "/srv/new"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(
            "sudo jarvisctl instance add alpha --code-root /srv/new --script bots/alpha/alpha_telegram_bot.py --type simple --user nobody --memory-max 512M"
        ),
        "{}",
        text(&out)
    );
    assert_eq!(fs::read_to_string(&dropin).unwrap(), before);
    let out = jarvisctl(
        root,
        &[
            "configure",
            "--instance",
            "alpha",
            "--weekly-restart",
            "Sun 04:00",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("restarts the default instance only"),
        "{}",
        text(&out)
    );
    // Without --instance: the default's, as before.
    let out = jarvisctl(root, &["configure", "--show"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("jarvis-supervisor.service, as in effect:\n"),
        "{}",
        text(&out)
    );
}

/// The gateway's hand-written units in a rooted tree: root, a tree under
/// /root, one env file with every bot's token (and a secret of no bot's),
/// a target that wants them all.
fn gateway_tree() -> (tempfile::TempDir, Vec<(std::path::PathBuf, Vec<u8>)>) {
    let (dir, _) = tree();
    let root = dir.path();
    fs::copy(
        repo("systemd/group/jarvis-supervisor@.service"),
        root.join("usr/lib/systemd/system/jarvis-supervisor@.service"),
    )
    .unwrap();
    let etc = root.join("etc/systemd/system");
    let mut files = Vec::new();
    for bot in ["alpha", "beta"] {
        let unit = format!(
            "[Unit]\nDescription={bot} bot\nAfter=network.target\n\n[Service]\nType=simple\nUser=root\n\
             WorkingDirectory=/root/gateway\nEnvironmentFile=/root/gateway/tokens.env\n\
             Environment=DEBUG=shh-a-value\n\
             ExecStart=/usr/bin/python3 bots/{bot}/{bot}_telegram_bot.py\nRestart=always\nRestartSec=10\n\
             MemoryMax=512M\nCPUQuota=50%\nTasksMax=64\n\n[Install]\nWantedBy=gateway.target\n"
        );
        fs::write(etc.join(format!("{bot}.service")), &unit).unwrap();
        files.push((etc.join(format!("{bot}.service")), unit.into_bytes()));
        let code = root.join(format!("root/gateway/bots/{bot}"));
        fs::create_dir_all(&code).unwrap();
        fs::write(code.join(format!("{bot}_telegram_bot.py")), "print('hi')\n").unwrap();
    }
    let target = "[Unit]\nDescription=the gateway\nWants=alpha.service beta.service\n\n[Install]\nWantedBy=multi-user.target\n";
    fs::write(etc.join("gateway.target"), target).unwrap();
    files.push((etc.join("gateway.target"), target.as_bytes().to_vec()));
    let env = "# every bot's token\nALPHA_BOT_TOKEN=111:AAsecret-alpha\nALPHA_HEARTBEAT_URL=https://hc.example/alpha\n\
               BETA_BOT_TOKEN='222:AAsecret-beta \"quoted\" $x'\nBETA_HEARTBEAT_URL=https://hc.example/beta\n\
               SENTRY_DSN=https://sentry-secret@example/1\nALPHABET_SOUP=letters\n";
    fs::write(root.join("root/gateway/tokens.env"), env).unwrap();
    fs::set_permissions(
        root.join("root/gateway/tokens.env"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    files.push((root.join("root/gateway/tokens.env"), env.as_bytes().to_vec()));
    // A file only root could read, and a directory only root could enter.
    fs::create_dir_all(root.join("root/gateway/conf")).unwrap();
    fs::write(root.join("root/gateway/conf/wallet.json"), "{}").unwrap();
    fs::set_permissions(
        root.join("root/gateway/conf/wallet.json"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::set_permissions(root.join("root/gateway/conf"), fs::Permissions::from_mode(0o700)).unwrap();
    (dir, files)
}

/// Every file of a tree with its bytes and mode, for "changed nothing".
fn snapshot(root: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if m.is_dir() {
                out.push((rel, Vec::new(), m.mode() & 0o7777));
                stack.push(p);
            } else {
                out.push((rel, fs::read(&p).unwrap_or_default(), m.mode() & 0o7777));
            }
        }
    }
    out.sort();
    out
}

/// `jarvisctl import` on the gateway's units in a rooted tree: the plan names
/// each instance, its user, its limits and its variables by name, never a
/// value; --dry-run changes nothing; the import splits the env file by
/// prefix; --undo puts every file back byte for byte.
#[test]
fn import_plans_splits_by_prefix_and_undoes_byte_for_byte() {
    let (dir, originals) = gateway_tree();
    let root = dir.path();
    let secrets = ["AAsecret", "sentry-secret", "shh-a-value", "hc.example"];
    let before = snapshot(root);

    let out = jarvisctl(root, &["import", "gateway.target", "--dry-run"]);
    let plan = text(&out);
    assert!(out.status.success(), "{plan}");
    assert_eq!(snapshot(root), before, "--dry-run changed files:\n{plan}");
    for want in [
        "would move the code tree /root/gateway to /srv/gateway",
        "would write /etc/jarvis-supervisor/alpha.env (root:root 0600) with ALPHA_BOT_TOKEN, ALPHA_HEARTBEAT_URL\n",
        "would write /etc/jarvis-supervisor/beta.env (root:root 0600) with BETA_BOT_TOKEN, BETA_HEARTBEAT_URL\n",
        "jarvis-supervisor@alpha.service as jarvis-alpha:jarvis-tree-gateway from /srv/gateway, MemoryMax=512M CPUQuota=50% RestartSec=10 Restart=always TasksMax=64)",
        "jarvis-supervisor@beta.service as jarvis-beta:jarvis-tree-gateway",
        "note: SENTRY_DSN (/root/gateway/tokens.env:6) matches no instance's prefix: given to none; --share SENTRY_DSN gives it to all",
        "note: alpha.service: Environment= is not carried over",
        "note: ALPHABET_SOUP (/root/gateway/tokens.env:7) matches no instance's prefix",
        "would set /srv/gateway: 0750 (let only root and the tree's instances enter)",
        "would set /srv/gateway/tokens.env: 0600 (an env file of every bot: root's alone)",
        "would make /srv/gateway/data: 2770 (make the directory the bots write)",
        "would set /srv/gateway/conf: 0750 (read by the bots)",
        "would set /srv/gateway/conf/wallet.json: 0640 (read by the bots)",
        "only the files change",
    ] {
        assert!(plan.contains(want), "{want:?} missing in:\n{plan}");
    }
    for s in secrets {
        assert!(!plan.contains(s), "the plan shows a value ({s}):\n{plan}");
    }
    // Every change one line, in JSON too, without values.
    let out = jarvisctl(root, &["import", "gateway.target", "--dry-run", "--json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(v["dry_run"], true);
    assert!(v["changes"].as_array().unwrap().len() >= 10, "{v}");
    assert_eq!(v["instances"][1]["spec"]["user"], "jarvis-beta", "{v}");
    assert_eq!(
        v["instances"][1]["keys"],
        serde_json::json!(["BETA_BOT_TOKEN", "BETA_HEARTBEAT_URL"]),
        "{v}"
    );
    for s in secrets {
        assert!(!text(&out).contains(s), "the JSON shows a value ({s})");
    }
    // A key to share that is no one's typo guard; a unit that cannot be a name.
    let out = jarvisctl(
        root,
        &["import", "gateway.target", "--share", "NOPE", "--dry-run"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    fs::write(
        root.join("etc/systemd/system/Bad.Bot.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    let out = jarvisctl(root, &["import", "Bad.Bot.service", "--dry-run"]);
    assert!(
        !out.status.success() && text(&out).contains("Bad.Bot.service cannot become an instance"),
        "{}",
        text(&out)
    );
    fs::remove_file(root.join("etc/systemd/system/Bad.Bot.service")).unwrap();
    // A line systemd and a shell would read differently stops the import,
    // named by file and line, never shown.
    let env = root.join("root/gateway/tokens.env");
    let good = fs::read(&env).unwrap();
    let mut bad = good.clone();
    bad.extend_from_slice(b"GAMMA_TOKEN=AAsecret with spaces\n");
    fs::write(&env, &bad).unwrap();
    let out = jarvisctl(root, &["import", "gateway.target", "--dry-run"]);
    assert!(
        !out.status.success() && text(&out).contains("/root/gateway/tokens.env:8: "),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("AAsecret"), "{}", text(&out));
    fs::write(&env, &good).unwrap();
    fs::set_permissions(&env, fs::Permissions::from_mode(0o644)).unwrap();

    let out = jarvisctl(root, &["import", "gateway.target", "--share", "SENTRY_DSN"]);
    assert!(out.status.success(), "{}", text(&out));
    for s in secrets {
        assert!(!text(&out).contains(s), "import shows a value ({s})");
    }
    assert!(!root.join("root/gateway").exists());
    let alpha = fs::read_to_string(root.join("etc/jarvis-supervisor/alpha.env")).unwrap();
    assert!(
        alpha.contains("ALPHA_BOT_TOKEN=\"111:AAsecret-alpha\"\n"),
        "{alpha}"
    );
    assert!(alpha.contains("SENTRY_DSN="), "{alpha}");
    assert!(
        !alpha.contains("BETA") && !alpha.contains("ALPHABET"),
        "alpha got variables not its own:\n{alpha}"
    );
    assert_eq!(mode(&root.join("etc/jarvis-supervisor/alpha.env")), 0o600);
    // Read back as systemd reads it: the value with its quotes and $ intact.
    let beta = fs::read(root.join("etc/jarvis-supervisor/beta.env")).unwrap();
    let parsed = jarvis_model::envfile::parse(&beta);
    assert_eq!(
        parsed.get("BETA_BOT_TOKEN"),
        Some("222:AAsecret-beta \"quoted\" $x")
    );
    assert_eq!(parsed.get("ALPHA_BOT_TOKEN"), None);
    assert_eq!(mode(&root.join("srv/gateway/tokens.env")), 0o600);
    assert_eq!(mode(&root.join("srv/gateway/data")), 0o2770);
    assert_eq!(mode(&root.join("srv/gateway")), 0o750);
    let dropin = fs::read_to_string(
        root.join("etc/systemd/system/jarvis-supervisor@alpha.service.d/50-jarvisctl-instance.conf"),
    )
    .unwrap();
    for line in [
        "Type=simple\n",
        "User=jarvis-alpha\nGroup=jarvis-tree-gateway\n",
        "WorkingDirectory=/srv/gateway\n",
        "EnvironmentFile=/etc/jarvis-supervisor/alpha.env\n",
        "ExecStart=/usr/bin/python3 -B bots/alpha/alpha_telegram_bot.py\n",
        "MemoryMax=512M\nCPUQuota=50%\nRestartSec=10\nRestart=always\nTasksMax=64\n",
    ] {
        assert!(dropin.contains(line), "{line:?} missing in:\n{dropin}");
    }
    // A second import is refused until the first is undone.
    let out = jarvisctl(root, &["import", "gateway.target", "--dry-run"]);
    assert!(
        text(&out).contains("an import is recorded already"),
        "{}",
        text(&out)
    );

    // Changed after the import: the shared file is put back as it was; the
    // split file someone edited is kept aside, not deleted.
    fs::write(root.join("srv/gateway/tokens.env"), "EDITED=1\n").unwrap();
    fs::write(
        root.join("etc/jarvis-supervisor/alpha.env"),
        "ALPHA_BOT_TOKEN=new\n",
    )
    .unwrap();
    let out = jarvisctl(root, &["import", "--undo", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        root.join("srv/gateway").exists(),
        "--undo --dry-run moved the tree back"
    );
    let out = jarvisctl(root, &["import", "--undo"]);
    assert!(out.status.success(), "{}", text(&out));
    for (f, bytes) in &originals {
        assert_eq!(&fs::read(f).unwrap(), bytes, "{} is not as it was", f.display());
    }
    assert!(!root.join("etc/jarvis-supervisor/alpha.env").exists());
    assert_eq!(
        fs::read_to_string(root.join("etc/jarvis-supervisor/alpha.env.after-import")).unwrap(),
        "ALPHA_BOT_TOKEN=new\n"
    );
    assert!(!root.join("etc/jarvis-supervisor/beta.env").exists());
    assert!(!root
        .join("etc/systemd/system/jarvis-supervisor@alpha.service.d")
        .exists());
    // Every file and mode as before, but for the kept copies of the import.
    let after: Vec<_> = snapshot(root)
        .into_iter()
        .filter(|(p, _, _)| {
            !p.starts_with("var/lib/jarvis-supervisor")
                && p != "var/lib"
                && p != "var"
                && !p.starts_with("etc/jarvis-supervisor")
                && p != "srv"
        })
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(p, _, _)| p != "etc/jarvis-supervisor")
        .collect();
    assert_eq!(after, before);
}

/// Issue 26: `status --hosts hosts.toml` checks the instances a host's
/// entry lists, one row each, from the host's own report (here a stand-in
/// `ssh` on PATH answers as a gateway with the default and alpha would);
/// a listed instance the host does not run is CRITICAL and says what to do.
#[test]
fn status_hosts_checks_each_listed_instance_and_names_a_missing_one() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let report = r#"{"schema":1,"verdict":"CRITICAL","exit_code":2,"state":"active","reasons":[],"instances":[{"name":"default","unit":"jarvis-supervisor.service","verdict":"OK","state":"active","main_pid":10},{"name":"alpha","unit":"jarvis-supervisor@alpha.service","verdict":"CRITICAL","state":"failed/failed","reasons":["not running (failed/failed)"]}]}"#;
    let ssh = bin.join("ssh");
    fs::write(&ssh, format!("#!/bin/sh\ncat <<'EOF'\n{report}\nEOF\nexit 2\n")).unwrap();
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o755)).unwrap();
    let hosts = d.path().join("hosts.toml");
    fs::write(
        &hosts,
        "[[host]]\nssh = \"root@gw\"\ninstances = [\"default\", \"alpha\", \"beta\"]\n\n[[host]]\nssh = \"root@vps1\"\n",
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["status", "--hosts", hosts.to_str().unwrap()])
            .args(extra)
            .env("PATH", &path)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = |start: &str| {
        table
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row {start:?}:\n{table}"))
            .to_string()
    };
    assert!(row("root@gw default ").contains("OK"), "{table}");
    assert!(row("root@gw alpha ").contains("CRITICAL"), "{table}");
    let beta = row("root@gw beta ");
    assert!(
        beta.contains("CRITICAL") && beta.contains("jarvisctl instance add beta"),
        "{table}"
    );
    // A host without a list: one row, its own worst verdict, as before.
    assert!(row("root@vps1 (all) ").contains("CRITICAL"), "{table}");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let out = run(&["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows: Vec<(String, String, String)> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["host"].as_str().unwrap_or("").to_string(),
                r["instance"].as_str().unwrap_or("-").to_string(),
                r["verdict"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want = [
        ("root@gw", "default", "OK"),
        ("root@gw", "alpha", "CRITICAL"),
        ("root@gw", "beta", "CRITICAL"),
        ("root@vps1", "-", "CRITICAL"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(rows, want);

    // A bad name in the file: its line, never the text.
    fs::write(
        &hosts,
        "[[host]]\nssh = \"root@gw\"\ninstances = [\n  \"Alpha!\",\n]\n",
    )
    .unwrap();
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hosts.toml:4:") && !err.contains("Alpha!"), "{err}");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}
