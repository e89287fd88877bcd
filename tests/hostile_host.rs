//! A hostile host, as the operator's machine meets it: an `ssh` on `PATH`
//! that answers every remote command the way a compromised deploy target
//! could (terminal control sequences in every string it returns, or 2 GiB
//! of output, made on the fly, never stored). `status --host` and
//! `deploy` run against it as the operator would, unprivileged, and must
//! show nothing raw, stay within a small memory, and say what happened.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What the hostile host answers: the remote command is ssh's last
/// argument; `HOSTILE` says whether to flood (2 GiB) or to lie with escape
/// sequences (raw in plain text, `\u001b` in JSON, which carries no raw
/// control character).
const FAKE_SSH: &str = r#"#!/bin/sh
for a; do remote=$a; done
flood() { yes 'jarvis' | head -c 2147483648; }
case "$remote" in
*dpkg-query*)
    printf 'pm=dpkg\nversion=0.9\033]0;pwned\007\033[2J\ninit=systemd\nrsync=yes\nflock=yes\npython=yes\n'
    printf '@@jarvis-deploy-file /usr/lib/systemd/system/jarvis-supervisor.service\n'
    printf '[Service]\nUser=jarvis\nGroup=jarvis\nWorkingDirectory=/home/jarvis/Jarvis\nExecStart=/usr/bin/python3 bots/supervisor.py\n'
    ;;
*"for d in"*)
    [ "$HOSTILE" = flood ] && { flood; exit 0; }
    printf '20261207T030000Z\t{"status":"deployed\\u001b]0;pwned\\u0007","kind":"deploy\\u001b[2J","package_before":"0.9\\u001b[1A\\rOK","package_after":"1.0","files":3,"reason":"fine\\nOK all clear\\u001b[31m"}\n'
    ;;
*deploys/current*)
    echo 20261207T030000Z
    ;;
*"flock -o"*)
    cat >/dev/null
    [ "$HOSTILE" = flood ] && { flood; exit 0; }
    printf '{"put":["bots/new\\u001b]0;pwned\\u0007.py"],"replace":["bots/\\u001b[2Jsupervisor.py"],"delete":["old\\r\\u001b[1AOK.py"],"adopted":[],"unshipped":2,"kept_changed":[],"taken_over":[],"conflicts":[{"path":"data/\\u001b]0;x\\u0007key.json","why":"a file \\u001b[31mthat no deploy shipped"}]}\n'
    ;;
*"status --json"*)
    [ "$HOSTILE" = flood ] && { flood; exit 0; }
    printf '{"verdict":"WARNING","state":"active\\u001b]0;pwned\\u0007","reasons":["a component\\u001b[2J crashed\\r\\nOK"]}\n'
    ;;
esac
exit 0
"#;

/// A directory with the hostile `ssh` in it, to put first on `PATH`.
fn hostile_ssh() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("ssh");
    fs::write(&p, FAKE_SSH).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// The bot's code to ship: one file that compiles.
fn code() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("bots")).unwrap();
    fs::write(d.path().join("bots/supervisor.py"), "print('hi')\n").unwrap();
    d
}

/// `jarvisctl ARGS` against the hostile host (`mode`: "flood" or "lie"),
/// measured (see `common::measured`).
fn against(ssh: &Path, mode: &str, args: &[&str]) -> (std::process::Output, f64, f64) {
    let path = format!("{}:{}", ssh.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new(bin_under_attack().0);
    cmd.args(args).env("PATH", path).env("HOSTILE", mode);
    measured(&cmd, Duration::from_secs(120))
}

/// Finding: the host's strings reached the operator's terminal raw through
/// deploy's progress lines, the dry-run plan, `--list` and the status
/// table. Each is now shown with its controls escaped.
#[test]
fn a_hostile_hosts_strings_reach_the_terminal_escaped() {
    let ssh = hostile_ssh();
    let code = code();
    let code_dir = code.path().to_string_lossy().into_owned();
    let runs: [(&str, Vec<&str>, &str); 4] = [
        (
            "deploy --list",
            vec!["deploy", "--host", "root@evil", "--list"],
            "fine\\x0aOK all clear\\x1b[31m",
        ),
        (
            "deploy --dry-run",
            vec!["deploy", "--host", "root@evil", "--code", &code_dir, "--dry-run"],
            "+ bots/new\\x1b]0;pwned\\x07.py",
        ),
        (
            "deploy --dry-run (progress)",
            vec!["deploy", "--host", "root@evil", "--code", &code_dir, "--dry-run"],
            "jarvis-supervisor 0.9\\x1b]0;pwned\\x07\\x1b[2J",
        ),
        (
            "status --host",
            vec!["status", "--host", "root@evil"],
            "a component\\x1b[2J crashed\\x0d\\x0aOK",
        ),
    ];
    for (what, args, shown) in runs {
        let (out, ..) = against(ssh.path(), "lie", &args);
        assert_defused(what, &out);
        let all = text(&out);
        assert!(all.contains(shown), "{what}: {shown:?} is not shown:\n{all}");
        println!("figures: {what}: shown as {shown}");
    }
}

/// Finding: a host that answers with 2 GiB made the operator's jarvisctl
/// hold all of it (4.2 GB per host). The answer is cut off at 16 MiB with
/// an error naming the host, ssh is killed, and memory stays small.
#[test]
fn a_host_that_floods_its_answer_is_cut_off_with_a_clear_error() {
    let ssh = hostile_ssh();
    let code = code();
    let code_dir = code.path().to_string_lossy().into_owned();
    let mut figures = Vec::new();
    for (what, args) in [
        ("status --host", vec!["status", "--host", "root@evil"]),
        ("deploy --list", vec!["deploy", "--host", "root@evil", "--list"]),
        (
            "deploy --dry-run",
            vec!["deploy", "--host", "root@evil", "--code", &code_dir, "--dry-run"],
        ),
    ] {
        let (out, mib, secs) = against(ssh.path(), "flood", &args);
        let all = text(&out);
        assert!(!out.status.success(), "{what} succeeded:\n{all}");
        assert!(
            all.contains("root@evil sent more than 16 MiB of output"),
            "{what}: no error that names the host and the bound:\n{}",
            &all[..all.len().min(3000)]
        );
        assert!(mib < 200.0, "{what}: {mib:.0} MiB used");
        assert!(secs < 30.0, "{what}: took {secs:.1} s");
        figures.push(format!("{what}: {mib:.0} MiB peak, {secs:.1} s"));
    }
    println!("figures: a 2 GiB answer: {}", figures.join("; "));
}
