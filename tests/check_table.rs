//! Issue 4, acceptance 1: malformed `.env` files and broken installations,
//! each with its exact finding, line, fix and exit code 1, and never a
//! secret value in the human or the JSON output. Runs as any user on a
//! temporary root.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every value below carries this marker; it must never be printed.
const SECRET: &str = "S3cr3tV4lue";
const TOKEN: &str = "123456789:S3cr3tV4lueS3cr3tV4lueS3cr3tV4lue_x";
const IDS: &str = "123456789";

fn id(flag: &str) -> String {
    String::from_utf8(Command::new("id").arg(flag).output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string()
}

/// A healthy installation under a temporary root, owned by the current user.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let t = Tree { dir };
        let unit = fs::read_to_string(repo("systemd/jarvis-supervisor.service")).unwrap();
        t.write("usr/lib/systemd/system/jarvis-supervisor.service", &unit);
        t.write(
            "etc/systemd/system/jarvis-supervisor.service.d/10-test.conf",
            &format!("[Service]\nUser={}\nGroup={}\n", id("-un"), id("-gn")),
        );
        t.write(
            "etc/jarvis-supervisor/env-rules.conf",
            &fs::read_to_string(repo("packaging/etc/env-rules.conf")).unwrap(),
        );
        fs::create_dir_all(t.path("tmp")).unwrap();
        let out = t.run(&["setup"]);
        assert!(out.status.success(), "{}", text(&out));
        t.write("home/jarvis/Jarvis/bots/supervisor.py", "print('bot')\n");
        t.env(&format!("TELEGRAM_BOT_TOKEN={TOKEN}\nTELEGRAM_ADMIN_IDS={IDS}\n"));
        let python = String::from_utf8(
            Command::new("sh")
                .args(["-c", "command -v python3"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        fs::create_dir_all(t.path("usr/bin")).unwrap();
        std::os::unix::fs::symlink(python.trim(), t.path("usr/bin/python3")).unwrap();
        t
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn env(&self, content: &str) {
        self.env_bytes(content.as_bytes());
    }

    fn env_bytes(&self, content: &[u8]) {
        let p = self.path("home/jarvis/Jarvis/.env");
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--root")
            .arg(self.dir.path())
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }
}

#[test]
fn a_healthy_tree_passes() {
    let t = Tree::new();
    let out = t.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(SECRET));
}

/// What a case must produce.
struct Want {
    check: &'static str,
    found: &'static str,
    line: Option<usize>,
    fix: &'static str,
}

fn want(check: &'static str, found: &'static str, line: Option<usize>, fix: &'static str) -> Want {
    Want {
        check,
        found,
        line,
        fix,
    }
}

fn env_case(content: &str) -> impl Fn(&Tree) + Send + Sync + '_ {
    move |t: &Tree| t.env(content)
}

type Case<'a> = (&'a str, Box<dyn Fn(&Tree) + Send + Sync + 'a>, Want);

fn cases() -> Vec<Case<'static>> {
    let good = || format!("TELEGRAM_BOT_TOKEN={TOKEN}\nTELEGRAM_ADMIN_IDS={IDS}\n");
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    vec![
        (
            "export prefix",
            Box::new(env_case(leak(format!(
                "export TELEGRAM_BOT_TOKEN={TOKEN}\nTELEGRAM_ADMIN_IDS={IDS}\n"
            )))),
            want(
                "env",
                "line 1 (TELEGRAM_BOT_TOKEN) has an 'export' prefix",
                Some(1),
                "remove 'export ' from the line",
            ),
        ),
        (
            "unclosed double quote",
            Box::new(env_case(leak(format!(
                "TELEGRAM_ADMIN_IDS={IDS}\nTELEGRAM_BOT_TOKEN=\"{TOKEN}\nOTHER=1\n"
            )))),
            want(
                "env",
                "line 2 (TELEGRAM_BOT_TOKEN) opens a quote that is never closed",
                Some(2),
                "close the quote on the same line",
            ),
        ),
        (
            "unclosed single quote",
            Box::new(env_case(leak(format!("{}API_KEY='{SECRET}\n", good())))),
            want(
                "env",
                "line 3 (API_KEY) opens a quote that is never closed",
                Some(3),
                "close the quote",
            ),
        ),
        (
            "comment after the value",
            Box::new(env_case(leak(format!(
                "TELEGRAM_BOT_TOKEN={TOKEN}\nTELEGRAM_ADMIN_IDS={IDS} # the admins\n"
            )))),
            want(
                "env",
                "line 2 (TELEGRAM_ADMIN_IDS) has a '# comment' after the value",
                Some(2),
                "move the comment to a line of its own",
            ),
        ),
        (
            "${VAR} reference",
            Box::new(env_case(leak(format!(
                "{}SOLANA_RPC_URL=https://x/${{HELIUS_{SECRET}}}\n",
                good()
            )))),
            want(
                "env",
                "line 3 (SOLANA_RPC_URL) uses $ or backquotes",
                Some(3),
                "nothing is expanded",
            ),
        ),
        (
            "$(command)",
            Box::new(env_case(leak(format!("{}KEY=$(cat /run/{SECRET})\n", good())))),
            want(
                "env",
                "line 3 (KEY) uses $ or backquotes",
                Some(3),
                "nothing is expanded",
            ),
        ),
        (
            "CRLF line endings",
            Box::new(env_case(leak(format!(
                "TELEGRAM_BOT_TOKEN={TOKEN}\r\nTELEGRAM_ADMIN_IDS={IDS}\r\n"
            )))),
            want(
                "env",
                "line 1 ends in CR LF",
                Some(1),
                "convert to LF line endings",
            ),
        ),
        (
            "UTF-8 BOM",
            Box::new(env_case(leak(format!("\u{feff}{}", good())))),
            want(
                "env",
                "line 1 starts with a UTF-8 byte-order mark",
                Some(1),
                "without BOM",
            ),
        ),
        (
            "invalid name",
            Box::new(env_case(leak(format!("{}API-KEY={SECRET}\n", good())))),
            want(
                "env",
                "line 3 (API-KEY) has a name systemd does not accept",
                Some(3),
                "rename the key",
            ),
        ),
        (
            "name starting with a digit",
            Box::new(env_case(leak(format!("{}2FA_SEED={SECRET}\n", good())))),
            want(
                "env",
                "line 3 (2FA_SEED) has a name systemd does not accept",
                Some(3),
                "rename the key",
            ),
        ),
        (
            "key defined twice",
            Box::new(env_case(leak(format!(
                "{}TELEGRAM_ADMIN_IDS=987654321\n",
                good()
            )))),
            want(
                "env",
                "line 3 (TELEGRAM_ADMIN_IDS) assigns a key already assigned above",
                Some(3),
                "keep one assignment",
            ),
        ),
        (
            "backslash continuation",
            Box::new(env_case(leak(format!("{}LONG={SECRET}\\\nmore\n", good())))),
            want(
                "env",
                "line 3 (LONG) ends in a backslash",
                Some(3),
                "put the whole value on one line",
            ),
        ),
        (
            "spaces around =",
            Box::new(env_case(leak(format!(
                "TELEGRAM_BOT_TOKEN = {TOKEN}\nTELEGRAM_ADMIN_IDS={IDS}\n"
            )))),
            want(
                "env",
                "line 1 (TELEGRAM_BOT_TOKEN) has spaces around '='",
                Some(1),
                "without spaces around '='",
            ),
        ),
        (
            "line without =",
            Box::new(env_case(leak(format!("{}{SECRET}\n", good())))),
            want("env", "line 3 has no '='", Some(3), "make it KEY=VALUE"),
        ),
        (
            "unquoted value with spaces",
            Box::new(env_case(leak(format!("{}BOT_NAME=my {SECRET} bot\n", good())))),
            want(
                "env",
                "line 3 (BOT_NAME) has spaces or shell syntax in an unquoted value",
                Some(3),
                "quote the value",
            ),
        ),
        (
            "quote in the middle",
            Box::new(env_case(leak(format!("{}PASS=ab\"{SECRET}\"\n", good())))),
            want(
                "env",
                "line 3 (PASS) has spaces or shell syntax in an unquoted value",
                Some(3),
                "quote the value",
            ),
        ),
        (
            "comment ending in a backslash",
            Box::new(env_case(leak(format!("# old token \\\n{}", good())))),
            want(
                "env",
                "line 1 is a comment ending in a backslash",
                Some(1),
                "remove the backslash",
            ),
        ),
        (
            "control character",
            Box::new(env_case(leak(format!("{}KEY={SECRET}\x07\n", good())))),
            want(
                "env",
                "line 3 (KEY) has a control character",
                Some(3),
                "remove the control character",
            ),
        ),
        (
            "not UTF-8",
            Box::new(move |t: &Tree| {
                let mut b = format!("{}NAME=caf", good()).into_bytes();
                b.extend_from_slice(b"\xe9\n");
                t.env_bytes(&b)
            }),
            want(
                "env",
                "line 3 is not valid UTF-8",
                Some(3),
                "save the file as UTF-8",
            ),
        ),
        (
            "token missing",
            Box::new(env_case(leak(format!(
                "TELEGRAM_ADMIN_IDS={IDS}\nOTHER={SECRET}\n"
            )))),
            want(
                "required",
                "TELEGRAM_BOT_TOKEN is not set",
                None,
                "add TELEGRAM_BOT_TOKEN=",
            ),
        ),
        (
            "token malformed",
            Box::new(env_case(leak(format!(
                "TELEGRAM_BOT_TOKEN=12345:{SECRET}\nTELEGRAM_ADMIN_IDS={IDS}\n"
            )))),
            want(
                "required",
                "TELEGRAM_BOT_TOKEN (line 1) is malformed: expected 8 to 10 digits",
                Some(1),
                "correct the value of TELEGRAM_BOT_TOKEN",
            ),
        ),
        (
            "admin ids malformed",
            Box::new(env_case(leak(format!(
                "TELEGRAM_BOT_TOKEN={TOKEN}\nTELEGRAM_ADMIN_IDS=12345\n"
            )))),
            want(
                "required",
                "TELEGRAM_ADMIN_IDS (line 2) is malformed",
                Some(2),
                "correct the value of TELEGRAM_ADMIN_IDS",
            ),
        ),
        (
            "admin ids missing",
            Box::new(env_case(leak(format!("TELEGRAM_BOT_TOKEN={TOKEN}\n")))),
            want(
                "required",
                "TELEGRAM_ADMIN_IDS is not set",
                None,
                "comma-separated numeric ids",
            ),
        ),
        (
            "PYTHONPATH overridden in .env",
            Box::new(env_case(leak(format!("{}PYTHONPATH=/opt/{SECRET}\n", good())))),
            want(
                "pythonpath",
                "PYTHONPATH does not include /home/jarvis/Jarvis",
                None,
                "no other PYTHONPATH in .env",
            ),
        ),
        // Broken installations.
        (
            ".env missing",
            Box::new(|t: &Tree| fs::remove_file(t.path("home/jarvis/Jarvis/.env")).unwrap()),
            want(
                "env",
                "/home/jarvis/Jarvis/.env is missing",
                None,
                "install -m 600 /dev/null /home/jarvis/Jarvis/.env",
            ),
        ),
        (
            ".env world-readable",
            Box::new(|t: &Tree| {
                fs::set_permissions(
                    t.path("home/jarvis/Jarvis/.env"),
                    fs::Permissions::from_mode(0o644),
                )
                .unwrap()
            }),
            want("env", "has mode 0644, not 0600", None, "sudo jarvisctl setup"),
        ),
        (
            "logs directory missing",
            Box::new(|t: &Tree| fs::remove_dir(t.path("home/jarvis/Jarvis/logs")).unwrap()),
            want(
                "path",
                "/home/jarvis/Jarvis/logs (ReadWritePaths=) is missing: the bot cannot start (226/NAMESPACE)",
                None,
                "sudo jarvisctl setup",
            ),
        ),
        (
            "data directory not writable",
            Box::new(|t: &Tree| {
                fs::set_permissions(
                    t.path("home/jarvis/Jarvis/data"),
                    fs::Permissions::from_mode(0o550),
                )
                .unwrap()
            }),
            want(
                "path",
                "/home/jarvis/Jarvis/data is not writable",
                None,
                "sudo jarvisctl setup",
            ),
        ),
        (
            "code missing",
            Box::new(|t: &Tree| fs::remove_file(t.path("home/jarvis/Jarvis/bots/supervisor.py")).unwrap()),
            want(
                "code",
                "/home/jarvis/Jarvis/bots/supervisor.py is missing",
                None,
                "rsync -a --chown=",
            ),
        ),
        (
            "interpreter missing",
            Box::new(|t: &Tree| fs::remove_file(t.path("usr/bin/python3")).unwrap()),
            want(
                "python",
                "the interpreter /usr/bin/python3 is missing (the system's python3: the code root has no venv/bin/python): the start fails with 203/EXEC",
                None,
                "apt install python3",
            ),
        ),
        (
            "Python too old",
            Box::new(|t: &Tree| {
                fs::remove_file(t.path("usr/bin/python3")).unwrap();
                t.write("usr/bin/python3", "#!/bin/sh\necho 3.9\n");
                fs::set_permissions(t.path("usr/bin/python3"), fs::Permissions::from_mode(0o755)).unwrap();
            }),
            want(
                "python",
                "/usr/bin/python3 is Python 3.9 (the system's python3: the code root has no venv/bin/python): the bot needs 3.11 or newer",
                None,
                "install Python 3.11+",
            ),
        ),
        (
            "PYTHONPATH removed by a drop-in",
            Box::new(|t: &Tree| {
                t.write(
                    "etc/systemd/system/jarvis-supervisor.service.d/20-env.conf",
                    "[Service]\nEnvironment=\n",
                );
            }),
            want(
                "pythonpath",
                "ModuleNotFoundError: No module named 'core'",
                None,
                "Environment=PYTHONPATH=/home/jarvis/Jarvis",
            ),
        ),
        (
            "service user missing",
            Box::new(|t: &Tree| {
                t.write(
                    "etc/systemd/system/jarvis-supervisor.service.d/30-user.conf",
                    "[Service]\nUser=jarvis-no-such-user\n",
                );
            }),
            want(
                "user",
                "user jarvis-no-such-user does not exist: the start fails with 217/USER",
                None,
                "sudo jarvisctl setup",
            ),
        ),
        (
            "working directory missing",
            Box::new(|t: &Tree| {
                t.write(
                    "etc/systemd/system/jarvis-supervisor.service.d/30-wd.conf",
                    "[Service]\nWorkingDirectory=/home/jarvis/Gone\n",
                );
            }),
            want(
                "path",
                "/home/jarvis/Gone (WorkingDirectory=) is missing: the bot cannot start (200/CHDIR)",
                None,
                "sudo jarvisctl setup",
            ),
        ),
    ]
}

#[test]
fn every_malformed_env_and_broken_install_is_named_with_line_and_fix() {
    let cases = cases();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    // Each case is two `check` runs in a tree of its own: spread over the
    // cores (the case table is most of this file's time).
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let failures: Vec<String> = std::thread::scope(|s| {
        let running: Vec<_> = cases
            .chunks(cases.len().div_ceil(workers))
            .map(|chunk| s.spawn(move || chunk.iter().filter_map(wrong).collect::<Vec<_>>()))
            .collect();
        running
            .into_iter()
            .flat_map(|h| h.join().expect("a case panicked"))
            .collect()
    });
    println!("{} cases checked", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// What a case got wrong, if anything.
fn wrong((name, break_it, want): &Case) -> Option<String> {
    let t = Tree::new();
    break_it(&t);
    let human = t.run(&["check"]);
    let json = t.run(&["check", "--json"]);
    let h = text(&human);
    let mut problems = Vec::new();
    if human.status.code() != Some(1) || json.status.code() != Some(1) {
        problems.push(format!(
            "exit {:?}/{:?}, not 1",
            human.status.code(),
            json.status.code()
        ));
    }
    if h.contains(SECRET) || text(&json).contains(SECRET) {
        problems.push("a secret value was printed".to_string());
    }
    let line = h
        .lines()
        .find(|l| l.starts_with(&format!("✗ {}: ", want.check)) && l.contains(want.found));
    match line {
        Some(l) if l.contains(want.fix) => {}
        Some(l) => problems.push(format!("the fix {:?} is missing from {l:?}", want.fix)),
        None => problems.push(format!("no line '✗ {}: ...{}...'", want.check, want.found)),
    }
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap_or_default();
    let hit = v["checks"].as_array().into_iter().flatten().find(|f| {
        f["check"] == want.check
            && f["level"] == "fail"
            && f["found"].as_str().is_some_and(|s| s.contains(want.found))
    });
    match hit {
        Some(f) => {
            if let Some(n) = want.line {
                if f["line"] != n {
                    problems.push(format!("JSON line {} not {n}", f["line"]));
                }
            }
            if !f["fix"].as_str().is_some_and(|s| s.contains(want.fix)) {
                problems.push("JSON fix missing".into());
            }
        }
        None => problems.push("no matching JSON finding".into()),
    }
    (!problems.is_empty()).then(|| format!("{name}: {}\n{h}", problems.join("; ")))
}

#[test]
fn env_lint_checks_any_file_without_printing_values() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("prod.env");
    fs::write(
        &f,
        format!("export TELEGRAM_BOT_TOKEN={TOKEN}\nTELEGRAM_ADMIN_IDS={IDS} # admins\n"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["env", "lint"])
        .arg(&f)
        .arg("--rules")
        .arg(repo("packaging/etc/env-rules.conf"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("line 1 (TELEGRAM_BOT_TOKEN) has an 'export' prefix"),
        "{t}"
    );
    assert!(
        t.contains("line 2 (TELEGRAM_ADMIN_IDS) has a '# comment' after the value"),
        "{t}"
    );
    assert!(t.contains("✗ required: TELEGRAM_BOT_TOKEN is not set"), "{t}");
    assert!(!t.contains(SECRET), "{t}");
    fs::write(
        &f,
        format!("TELEGRAM_BOT_TOKEN={TOKEN}\nTELEGRAM_ADMIN_IDS={IDS}\n"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["env", "lint", "--json"])
        .arg(&f)
        .arg("--rules")
        .arg(repo("packaging/etc/env-rules.conf"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
}

/// A `.env` comes after the unit's `Environment=` and overrides it: a
/// PYTHONPATH out of the code root, or byte code turned back on, would
/// run code the drift check does not see. And more values than can be
/// masked make every bot line hidden: both are named.
#[test]
fn env_lint_names_python_overrides_and_more_values_than_can_be_masked() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(".env");
    let lint = |f: &std::path::Path| {
        let out = Command::new(BIN)
            .args(["env", "lint"])
            .arg(f)
            .arg("--rules")
            .arg(repo("packaging/etc/env-rules.conf"))
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        text(&out)
    };
    fs::write(
        &f,
        format!(
            "TELEGRAM_BOT_TOKEN={TOKEN}\nTELEGRAM_ADMIN_IDS={IDS}\nPYTHONPATH={}:{}/bots\n",
            dir.path().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let t = lint(&f);
    assert!(!t.contains("PYTHONPATH"), "the code root itself is fine:\n{t}");
    fs::write(
        &f,
        format!(
            "TELEGRAM_BOT_TOKEN={TOKEN}\nTELEGRAM_ADMIN_IDS={IDS}\nPYTHONPATH={}:/tmp/elsewhere\nPYTHONDONTWRITEBYTECODE=\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let t = lint(&f);
    assert!(
        t.contains("line 3 sets PYTHONPATH, which replaces the unit's setting")
            && t.contains("line 4 sets PYTHONDONTWRITEBYTECODE"),
        "{t}"
    );
    assert!(t.contains("remove PYTHONPATH from"), "{t}");
    let mut many = format!("TELEGRAM_BOT_TOKEN={TOKEN}\nTELEGRAM_ADMIN_IDS={IDS}\n");
    for i in 0..20_001 {
        many.push_str(&format!("V{i}=value_{i}\n"));
    }
    fs::write(&f, many).unwrap();
    let t = lint(&f);
    assert!(
        t.contains("holds 20003 values, more than the 20000 that can be masked"),
        "{t}"
    );
    assert!(!t.contains("value_1"), "{t}");
}

#[test]
fn a_bad_rules_file_is_a_usage_error_naming_file_and_line() {
    let t = Tree::new();
    t.write(
        "etc/jarvis-supervisor/env-rules.conf",
        "TELEGRAM_BOT_TOKEN ^[0-9]+$ digits\nBROKEN\n",
    );
    let out = t.run(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("env-rules.conf:2: expected NAME REGEX DESCRIPTION"),
        "{}",
        text(&out)
    );
}

#[test]
fn preflight_prints_only_problems() {
    let t = Tree::new();
    let out = t.run(&["check", "--preflight"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(text(&out), "", "a passing preflight must be silent");
    fs::remove_file(t.path("home/jarvis/Jarvis/.env")).unwrap();
    let out = t.run(&["check", "--preflight"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).starts_with("✗ env: /home/jarvis/Jarvis/.env is missing"),
        "{}",
        text(&out)
    );
}

/// Issue 13, finding 8: the service user makes `.env` a FIFO (root's check
/// would wait forever for a writer) or a link to /dev/zero (root would read
/// until memory runs out), or a link to a root-only file. `check` and the
/// preflight end at once, name the file and print nothing of a target.
#[test]
fn a_fifo_or_linked_env_never_hangs_check_nor_is_read() {
    let t = Tree::new();
    let env = t.path("home/jarvis/Jarvis/.env");
    let secret = t.path("root-only.env");
    fs::write(&secret, format!("STOLEN={SECRET}\n")).unwrap();
    type Plant = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Plant)> = vec![
        (
            "a FIFO",
            Box::new(|p: &Path| {
                nix_mkfifo(p);
            }),
        ),
        (
            "a link to /dev/zero",
            Box::new(|p: &Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap()),
        ),
        ("a link to another file", {
            let s = secret.clone();
            Box::new(move |p: &Path| std::os::unix::fs::symlink(&s, p).unwrap())
        }),
    ];
    for (what, plant) in cases {
        let _ = fs::remove_file(&env);
        plant(&env);
        for args in [
            &["check"][..],
            &["check", "--json"][..],
            &["check", "--preflight"][..],
        ] {
            let t0 = std::time::Instant::now();
            let mut child = Command::new(BIN)
                .arg("--root")
                .arg(t.dir.path())
                .args(args)
                .env("NO_COLOR", "1")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if t0.elapsed() > std::time::Duration::from_secs(20) {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("jarvisctl {args:?} hung on .env as {what}");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let out = child.wait_with_output().unwrap();
            let all = text(&out);
            assert_ne!(out.status.code(), Some(0), "{what}: {args:?} passed:\n{all}");
            assert!(
                all.contains(".env"),
                "{what}: {args:?} does not name the file:\n{all}"
            );
            assert!(
                !all.contains(SECRET),
                "{what}: {args:?} printed a value of the target:\n{all}"
            );
            println!(
                "{what}: jarvisctl {args:?} ended in {:.0?}, exit {:?}",
                t0.elapsed(),
                out.status.code()
            );
        }
    }
}

fn nix_mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().unwrap();
    assert!(st.success());
}

/// Issue 13, finding 5: a line that is not a valid assignment is never
/// echoed: a URL with a password typed with ':' instead of '=', in every
/// command that reads .env, human and JSON.
#[test]
fn an_unparsable_line_is_never_echoed() {
    let t = Tree::new();
    let env = format!(
        "TELEGRAM_BOT_TOKEN={TOKEN}\nTELEGRAM_ADMIN_IDS={IDS}\n\
         DATABASE_URL: postgres://trader:{SECRET}@db.internal/x?sslmode=require\n\
         {SECRET}-bare-line\n"
    );
    t.env(&env);
    let file = t.path("home/jarvis/Jarvis/.env");
    for args in [
        vec!["env", "lint", file.to_str().unwrap()],
        vec!["env", "lint", "--json", file.to_str().unwrap()],
        vec!["check"],
        vec!["check", "--json"],
        vec!["check", "--preflight"],
    ] {
        let out = t.run(&args);
        let all = text(&out);
        assert!(
            !all.contains(SECRET),
            "jarvisctl {args:?} echoed the line:\n{all}"
        );
        assert!(
            all.contains("line 3"),
            "jarvisctl {args:?} does not name the line:\n{all}"
        );
    }
}

/// Issue 13, finding 14: a drop-in line without '=' is what systemd
/// ignores with a warning: check warns (without echoing the line) and the
/// preflight lets the bot start; a masked unit fails check, as systemd
/// refuses to start it.
#[test]
fn a_bad_dropin_line_warns_and_a_masked_unit_fails() {
    let t = Tree::new();
    t.write(
        "etc/systemd/system/jarvis-supervisor.service.d/20-typo.conf",
        &format!("[Service]\nEnvironment=A=1\n{SECRET}-pasted-without-a-key\n"),
    );
    let out = t.run(&["check"]);
    let all = text(&out);
    assert!(all.contains("20-typo.conf:3: a line without '='"), "{all}");
    assert!(!all.contains(SECRET), "{all}");
    let pre = t.run(&["check", "--preflight"]);
    assert_eq!(pre.status.code(), Some(0), "{}", text(&pre));
    std::os::unix::fs::symlink(
        "/dev/null",
        t.path("etc/systemd/system/jarvis-supervisor.service"),
    )
    .unwrap();
    let out = t.run(&["check"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("masks the unit") && all.contains("systemctl unmask"),
        "{all}"
    );
}
