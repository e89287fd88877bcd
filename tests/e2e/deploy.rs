//! Issue 7: `jarvisctl deploy` to two booted hosts at once, one with
//! systemd (Debian 12) and one without (sysvinit), each with sshd on its
//! own loopback port of a network namespace made here and root's login by
//! a key made here. The client is the jarvisctl of the built .deb, run on
//! this machine inside the namespace. The two hosts are shared by every
//! scenario, in order: a first deploy of version 1, a broken deploy, a good
//! deploy of version 2, a package upgrade and its rollback, an interrupted
//! deploy and its re-run, a dry run, and two deploys at once.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::container::Container;
use super::remote::remote;
use super::roots::Suite;
use super::{pkg, CODE};
pub(crate) use jarvis_test_support::remote::{healthy, host_name, status, Fleet};

pub(crate) const PORT_A: u16 = 2231;
pub(crate) const PORT_B: u16 = 2232;

/// A second program in the bot's tree (issue 26): a simple bot that says
/// which version of the tree it started on.
const SECOND_BOT: &str = "import os, time\n\
v = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'version.txt')).read().strip()\n\
open(os.path.join('data', 'second.version'), 'w').write(v + '\\n')\n\
print('second bot on version', v, flush=True)\n\
while True:\n    time.sleep(1)\n";

pub(crate) fn pid(c: &Container) -> u64 {
    status(c)["main_pid"].as_u64().unwrap_or(0)
}

pub(crate) fn version(c: &Container) -> String {
    c.sh(&format!("cat {CODE}/bots/version.txt"))
        .stdout
        .trim()
        .to_string()
}

/// What a deploy must never touch: data, .env (content, owner, mode) and
/// a log file of the bot's.
fn kept(c: &Container) -> String {
    c.ok(&format!(
        "cd {CODE} && sha256sum .env data/trading-state.json data/planted.bin logs/planted.log && stat -c '%U:%G %a %n' .env"
    ))
}

/// A copy of the stand-in fixture, marked with `version`; `broken` adds a
/// `core/__init__.py` that raises at import; `big` adds a file of that
/// many MiB.
pub(crate) fn code(dir: &Path, version: u32, broken: bool, big: usize) -> PathBuf {
    let d = dir.join(format!("code-v{version}"));
    let _ = fs::remove_dir_all(&d);
    let st = Command::new("cp")
        .arg("-r")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/standin"))
        .arg(&d)
        .status()
        .unwrap();
    assert!(st.success());
    let _ = Command::new("find")
        .arg(&d)
        .args(["-name", "__pycache__", "-prune", "-exec", "rm", "-rf", "{}", "+"])
        .status();
    fs::write(d.join("bots/version.txt"), format!("{version}\n")).unwrap();
    if broken {
        fs::write(
            d.join("core/__init__.py"),
            "raise RuntimeError('version with a bug: crashes at import')\n",
        )
        .unwrap();
    }
    if big > 0 {
        let st = Command::new("head")
            .args(["-c", &format!("{}", big << 20), "/dev/urandom"])
            .stdout(fs::File::create(d.join("big.bin")).unwrap())
            .status()
            .unwrap();
        assert!(st.success());
    }
    // Things that must never be shipped.
    fs::create_dir_all(d.join("data")).unwrap();
    fs::write(d.join("data/trading-state.json"), "{\"position\": -1}\n").unwrap();
    fs::write(d.join(".env"), "TELEGRAM_BOT_TOKEN=local-secret-never-shipped\n").unwrap();
    d
}

pub(crate) fn args<'a>(v: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    v.iter().map(String::as_str).chain(more.iter().copied()).collect()
}

/// The JSON summary's row for `host`.
pub(crate) fn row<'a>(summary: &'a Value, host: &str) -> &'a Value {
    summary["hosts"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["host"] == host))
        .unwrap_or_else(|| panic!("no row for {host} in {summary}"))
}

pub(crate) fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn setup() -> Fleet {
    fleet("deploy", &[(Suite::Bookworm, PORT_A), (Suite::Sysvinit, PORT_B)])
}

/// [`remote::fleet`] with this repository's stand-in and `$JARVIS_DEB`.
/// The client is the .deb's jarvisctl; JARVIS_DEPLOY_CLIENT names another
/// build of it (a debug build, while working on deploy).
pub(crate) fn fleet(tag: &str, want: &[(Suite, u16)]) -> Fleet {
    let client = std::env::var_os("JARVIS_DEPLOY_CLIENT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    remote::fleet(
        tag,
        want,
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &pkg("JARVIS_DEB"),
        client,
    )
}

/// Acceptance 1 to 6 of issue 7 on one pair of hosts.
pub fn scenarios() {
    let t_all = Instant::now();
    let f = setup();
    println!("figures: two hosts booted and healthy in {:.1?}", t_all.elapsed());
    let deb = pkg("JARVIS_DEB");
    let higher = pkg("JARVIS_DEB_HIGHER");
    let (deb_s, higher_s) = (deb.to_str().unwrap(), higher.to_str().unwrap());
    let both = f.every_host();
    let timing = ["--settle", "5", "--ready-timeout", "30", "--json"];

    // Version 1, with the installed package shipped too (same version: kept
    // for later rollbacks, not reinstalled).
    let v1 = code(f.tmp.path(), 1, false, 0);
    let mut a = args(&both, &["--code", v1.to_str().unwrap(), "--package", deb_s]);
    a.extend(timing);
    let (rc, out, err, _) = f.deploy("version 1", &a);
    assert_eq!(rc, 0, "{err}{out}\n{}\n{}", diag(f.a()), diag(f.b()));
    for c in [f.a(), f.b()] {
        assert_eq!(version(c), "1");
        assert!(healthy(c));
    }
    let kept0 = [kept(f.a()), kept(f.b())];
    assert!(
        !out.contains("local-secret") && !err.contains("local-secret"),
        "a value was printed"
    );
    for c in [f.a(), f.b()] {
        assert_eq!(
            c.ok(&format!("cat {CODE}/.env | grep -c local-secret || true"))
                .trim(),
            "0",
            "the local .env was shipped without --env"
        );
    }

    // 2. A broken deploy: both hosts roll back to version 1 by themselves.
    let pids = [pid(f.a()), pid(f.b())];
    let core_before = f.a().ok(&format!("sha256sum {CODE}/core/__init__.py"));
    let broken = code(f.tmp.path(), 3, true, 0);
    let mut a = args(&both, &["--code", broken.to_str().unwrap()]);
    a.extend(timing);
    let (rc, out, _, took) = f.deploy("broken version", &a);
    assert_eq!(rc, 1, "a rolled-back deploy exits non-zero");
    let summary = json_of(&out);
    for (c, port) in [(f.a(), PORT_A), (f.b(), PORT_B)] {
        let r = row(&summary, &host_name(port));
        assert_eq!(r["result"], "rolled-back", "{r}");
        let reason = r["reason"].as_str().unwrap();
        assert!(
            (reason.contains("not ready")
                || reason.contains("crashed")
                || reason.contains("restart failed")
                || reason.contains("did not stay up"))
                && reason.contains("rolled back"),
            "{reason}"
        );
        assert_eq!(version(c), "1");
        assert!(healthy(c), "{}", status(c));
        assert_eq!(c.ok(&format!("sha256sum {CODE}/core/__init__.py")), core_before);
    }
    assert_eq!([kept(f.a()), kept(f.b())], kept0, "data or .env changed");
    assert_ne!([pid(f.a()), pid(f.b())], pids);
    println!("figures: broken deploy detected and rolled back on both hosts in {took:.1?}");

    // Issue 26, acceptance 4: a second instance that runs from the same
    // code tree (a simple bot beside the supervisor) is restarted on the
    // new version by the same deploy.
    let second = |c: &Container| -> (String, String) {
        let st = c.sh("jarvisctl status --instance second --json").stdout;
        let pid = serde_json::from_str::<Value>(&st)
            .ok()
            .and_then(|v| v["main_pid"].as_u64())
            .map_or_else(String::new, |p| p.to_string());
        let v = c.ok(&format!("cat {CODE}/data/second.version 2>/dev/null || true"));
        (pid, v.trim().to_string())
    };
    for c in [f.a(), f.b()] {
        c.write(&format!("{CODE}/bots/second_bot.py"), SECOND_BOT);
        c.ok(&format!("chown jarvis:jarvis {CODE}/bots/second_bot.py"));
        c.ok(&format!(
            "jarvisctl instance add second --code-root {CODE} --script bots/second_bot.py --type simple --user jarvis && jarvisctl start --instance second"
        ));
        c.wait_for("the second instance on version 1", Duration::from_secs(30), |c| {
            second(c).1 == "1"
        });
        // And a bot of another tree, which a deploy of this one leaves be.
        c.ok("mkdir -p /srv/other/data && printf 'import time\nwhile True:\n    time.sleep(1)\n' > /srv/other/other_bot.py && chown -R jarvis:jarvis /srv/other");
        c.ok("jarvisctl instance add other --code-root /srv/other --script other_bot.py --type simple --user jarvis && jarvisctl start --instance other");
    }
    let other = |c: &Container| -> String {
        let st = c.sh("jarvisctl status --instance other --json").stdout;
        serde_json::from_str::<Value>(&st)
            .ok()
            .and_then(|v| v["main_pid"].as_u64())
            .map_or_else(String::new, |p| p.to_string())
    };
    let second_before = [second(f.a()).0, second(f.b()).0];
    let other_before = [other(f.a()), other(f.b())];
    assert!(
        other_before.iter().all(|p| !p.is_empty()),
        "the other tree's bot is not running"
    );

    // 1. A good deploy of version 2 over version 1.
    let pids = [pid(f.a()), pid(f.b())];
    let v2 = code(f.tmp.path(), 2, false, 0);
    fs::write(v2.join("bots/added_in_v2.py"), "X = 2\n").unwrap();
    fs::write(v2.join("bots/second_bot.py"), SECOND_BOT).unwrap();
    let mut a = args(&both, &["--code", v2.to_str().unwrap()]);
    a.extend(timing);
    let since = f.a().ok("date +%s").trim().to_string();
    let (rc, out, _, took) = f.deploy("version 2", &a);
    assert_eq!(rc, 0, "{out}");
    // One ssh connection for the whole deploy of a host (issue 28): its
    // commands and rsyncs share it. Counted by the host's sshd.
    let logins = f
        .a()
        .sh(&format!(
            "journalctl --since @{since} -o cat --no-pager | grep -c 'Accepted publickey'"
        ))
        .stdout
        .trim()
        .parse::<u32>()
        .unwrap_or(0);
    println!("figures: the deploy of version 2 made {logins} ssh login(s) to the systemd host");
    assert!(
        (1..=2).contains(&logins),
        "{logins} ssh logins for one deploy of one host: the connection is not shared"
    );
    let summary = json_of(&out);
    for (i, (c, port)) in [(f.a(), PORT_A), (f.b(), PORT_B)].into_iter().enumerate() {
        assert_eq!(row(&summary, &host_name(port))["result"], "deployed");
        assert_eq!(version(c), "2");
        assert!(healthy(c));
        assert_ne!(pid(c), pids[i], "not restarted");
        assert_eq!(
            c.ok(&format!("stat -c '%U:%G' {CODE}/bots/added_in_v2.py"))
                .trim(),
            "jarvis:jarvis"
        );
        let id = row(&summary, &host_name(port))["id"]
            .as_str()
            .unwrap()
            .to_string();
        // The deploy's manifest lists what it shipped, and its store holds it.
        assert!(
            c.ok(&format!(
                "cut -f1,6 /var/lib/jarvis-supervisor/deploys/{id}/manifest.tsv"
            ))
            .lines()
            .any(|l| l == "f\tbots/added_in_v2.py"),
            "bots/added_in_v2.py is not in deploy {id}'s manifest"
        );
        assert_eq!(
            c.ok(&format!(
                "cat /var/lib/jarvis-supervisor/deploys/{id}/code/bots/version.txt"
            ))
            .trim(),
            "2"
        );
    }
    for (i, c) in [f.a(), f.b()].into_iter().enumerate() {
        let (pid2, v) = second(c);
        assert_eq!(
            v,
            "2",
            "the second instance of {CODE} runs the old code: {}",
            diag(c)
        );
        assert_ne!(pid2, second_before[i], "the second instance was not restarted");
        assert_eq!(
            other(c),
            other_before[i],
            "the deploy of {CODE} restarted the bot of another tree (/srv/other)"
        );
        println!(
            "figures: host {}: the second instance of {CODE} restarted on version 2 with the default (pid {} -> {pid2}); the bot of /srv/other kept pid {}",
            i + 1,
            second_before[i],
            other_before[i]
        );
        // Out of the way of the later steps, whose trees lack its script.
        c.ok("jarvisctl instance remove second && jarvisctl instance remove other");
    }
    // The second instance's file is the deploy's now; data/ is the bot's.
    assert_eq!([kept(f.a()), kept(f.b())], kept0, "data, .env or logs changed");
    let v2_id_a = row(&summary, &host_name(PORT_A))["id"]
        .as_str()
        .unwrap()
        .to_string();
    println!("figures: good deploy of version 2 to both hosts (settle 5 s) in {took:.1?}");

    // 3. A package upgrade with a new .env (hosts file), then its rollback.
    let hosts_file = f.tmp.path().join("hosts.toml");
    let mut toml = String::new();
    let mut envs = Vec::new();
    for (c, port) in [(f.a(), PORT_A), (f.b(), PORT_B)] {
        let env = f.tmp.path().join(format!("{port}.env"));
        let text = c.ok(&format!("cat {CODE}/.env")) + "DEPLOY_MARK=upgrade\n";
        fs::write(&env, &text).unwrap();
        envs.push(text);
        toml.push_str(&format!(
            "[[host]]\nssh = \"{}\"\ncode_dir = \"{CODE}\"\nenv_file = \"{port}.env\"\npackage = \"{higher_s}\"\n\n",
            host_name(port)
        ));
    }
    fs::write(&hosts_file, toml).unwrap();
    let v4 = code(f.tmp.path(), 4, false, 0);
    let mut a = vec![
        "--hosts",
        hosts_file.to_str().unwrap(),
        "--code",
        v4.to_str().unwrap(),
    ];
    a.extend(timing);
    let (rc, out, err, took) = f.deploy("package upgrade", &a);
    assert_eq!(rc, 0, "{err}{out}");
    assert!(
        !out.contains("AAFakeToken") && !err.contains("AAFakeToken"),
        "a .env value was printed"
    );
    let summary = json_of(&out);
    for (i, (c, port)) in [(f.a(), PORT_A), (f.b(), PORT_B)].into_iter().enumerate() {
        let r = row(&summary, &host_name(port));
        assert_eq!(r["package_after"], "99.0.0-1", "{r}");
        assert_eq!(status(c)["package_version"], "99.0.0-1");
        assert_eq!(version(c), "4");
        assert!(healthy(c));
        assert_eq!(c.ok(&format!("cat {CODE}/.env")), envs[i]);
        assert_eq!(
            c.ok(&format!("stat -c '%U:%G %a' {CODE}/.env")).trim(),
            "jarvis:jarvis 600"
        );
    }
    println!("figures: package upgrade to 99.0.0-1 with a new .env on both hosts in {took:.1?}");
    let mut a = args(&both, &["--rollback"]);
    a.extend(timing);
    let (rc, out, err, took) = f.deploy("rollback of the upgrade", &a);
    assert_eq!(rc, 0, "{err}{out}");
    for c in [f.a(), f.b()] {
        let v = status(c)["package_version"].as_str().unwrap_or("").to_string();
        assert!(v.starts_with("0.1.0"), "package {v}");
        assert_eq!(version(c), "2");
        assert!(healthy(c));
    }
    assert_eq!([kept(f.a()), kept(f.b())], kept0, "the old .env is not back");
    println!("figures: rollback of the upgrade (package and code) on both hosts in {took:.1?}");
    let (rc, out, _, _) = f.deploy("list", &args(&both, &["--list", "--keep", "3"]));
    assert_eq!(rc, 0);
    assert!(
        out.contains("3 deploy(s) kept, 1 pruned") && out.contains("rolled-back"),
        "{out}"
    );

    // 4. An interrupted deploy: ssh cut mid-transfer on host A.
    let pid_a = pid(f.a());
    let v5 = code(f.tmp.path(), 5, false, 16);
    let child = f
        .command(&[
            "--host",
            &host_name(PORT_A),
            "--code",
            v5.to_str().unwrap(),
            "--bwlimit",
            "1024",
            "--settle",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deploy_pid = child.id();
    let t0 = Instant::now();
    f.a()
        .wait_for("the transfer to start", Duration::from_secs(60), |c| {
            c.sh("ls -a /var/lib/jarvis-supervisor/deploys/*/code | grep -q '^.big.bin'")
                .status
                == 0
        });
    let killed = kill_transfer_ssh(deploy_pid);
    let out = child.wait_with_output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!(
        "== interrupted deploy -> {:?} (killed ssh {killed}) in {:.1?}\n{e}{o}",
        out.status.code(),
        t0.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(o.contains("the live code was not touched"), "{o}");
    assert_eq!(version(f.a()), "2");
    assert_eq!(pid(f.a()), pid_a, "the bot was restarted");
    assert!(healthy(f.a()));
    assert_eq!(f.a().sh(&format!("test -e {CODE}/big.bin")).status, 1);
    let (rc, out, _, took) = f.deploy(
        "re-run after the interruption",
        &[
            "--host",
            &host_name(PORT_A),
            "--code",
            v5.to_str().unwrap(),
            "--settle",
            "5",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    assert_eq!(version(f.a()), "5");
    assert!(healthy(f.a()));
    println!("figures: re-run after an interrupted deploy (16 MiB) completed in {took:.1?}");

    // --rollback --to: back to version 2's deploy on purpose.
    let (rc, out, _, took) = f.deploy(
        "rollback to version 2",
        &[
            "--host",
            &host_name(PORT_A),
            "--rollback",
            "--to",
            &v2_id_a,
            "--settle",
            "5",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    assert_eq!(version(f.a()), "2");
    assert_eq!(f.a().sh(&format!("test -e {CODE}/big.bin")).status, 1);
    assert!(healthy(f.a()));
    println!("figures: rollback --to {v2_id_a} in {took:.1?}");

    // 5. --dry-run changes nothing.
    let sums: Vec<String> = [f.a(), f.b()].iter().map(|c| tree(c)).collect();
    let v6 = code(f.tmp.path(), 6, false, 0);
    let mut a = args(
        &both,
        &["--code", v6.to_str().unwrap(), "--package", higher_s, "--dry-run"],
    );
    a.push("--env");
    let env = f.tmp.path().join(format!("{PORT_A}.env"));
    a.push(env.to_str().unwrap());
    let (rc, out, err, took) = f.deploy("dry run", &a);
    assert_eq!(rc, 0, "{err}{out}");
    assert!(
        out.contains("bots/version.txt") && out.contains("-> 99.0.0-1: would install"),
        "{out}"
    );
    assert!(
        out.contains("TELEGRAM_BOT_TOKEN=***") && !out.contains("AAFakeToken"),
        "{out}"
    );
    for (c, before) in [f.a(), f.b()].iter().zip(&sums) {
        let after = tree(c);
        assert_eq!(&after, before, "the dry run changed the host");
    }
    println!(
        "figures: dry run of 2 hosts in {took:.1?}; host trees unchanged ({} and {} files checked)",
        sums[0].lines().count(),
        sums[1].lines().count()
    );

    // 6. Two deploys at once to one host: the second refuses.
    let v7 = code(f.tmp.path(), 7, false, 0);
    let mut first = f
        .command(&[
            "--host",
            &host_name(PORT_B),
            "--code",
            v7.to_str().unwrap(),
            "--settle",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(first.stderr.take().unwrap());
    let mut lines = stderr.lines();
    let mut seen = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push_str(&l);
        seen.push('\n');
        if l.ends_with(": locked") {
            break;
        }
    }
    let (rc, out, err, _) = f.deploy(
        "second deploy at once",
        &[
            "--host",
            &host_name(PORT_B),
            "--code",
            v7.to_str().unwrap(),
            "--json",
        ],
    );
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    let first_out = first.wait_with_output().unwrap();
    println!(
        "== first deploy -> {:?}\n{seen}{}",
        first_out.status.code(),
        rest.join("\n")
    );
    assert_eq!(rc, 1, "{err}{out}");
    let r = row(&json_of(&out), &host_name(PORT_B)).clone();
    assert_eq!(r["result"], "refused", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("another deploy is running"),
        "{r}"
    );
    assert_eq!(first_out.status.code(), Some(0), "the first deploy failed");
    assert_eq!(version(f.b()), "7");
    assert!(healthy(f.b()));
    assert_eq!([kept(f.a()), kept(f.b())], kept0);
    println!("figures: all deploy scenarios in {:.1?}", t_all.elapsed());
}

/// What the bot and its supervisor said lately, for a failed assertion.
pub(crate) fn diag(c: &Container) -> String {
    c.sh(&format!(
        "journalctl -u jarvis-supervisor --no-pager -n 40 2>&1; tail -n 30 {CODE}/logs/supervisor.stdout /run/jarvis-supervisor-run/engine.log 2>&1; ls -la {CODE} {CODE}/bots {CODE}/core 2>&1"
    ))
    .all()
}

/// Kills the ssh that the deploy's code rsync runs (a grandchild of the
/// deploy); returns its pid.
/// The children of `pid`, (pid, comm), oldest (lowest pid) first.
pub(crate) fn children(pid: u32) -> Vec<(u32, String)> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(')').map(|r| r.1) else {
            continue;
        };
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        if ppid == pid {
            let comm = fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            v.push((p, comm.trim().to_string()));
        }
    }
    v.sort_unstable();
    v
}

pub(crate) fn kill_transfer_ssh(deploy: u32) -> u32 {
    // ip netns exec execs jarvisctl in place: the deploy's pid is jarvisctl.
    let rsync = children(deploy)
        .into_iter()
        .find(|(_, c)| c == "rsync")
        .unwrap_or_else(|| panic!("no rsync under the deploy: {:?}", children(deploy)));
    let ssh = children(rsync.0)
        .into_iter()
        .find(|(_, c)| c == "ssh")
        .expect("no ssh under rsync");
    let st = Command::new("kill")
        .args(["-KILL", &ssh.0.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    ssh.0
}

/// Every file under /home, /etc and /var/lib/jarvis-supervisor with its
/// checksum, owner and mode, but what the bot and the health timer write
/// while they run (logs, their state, the samples).
pub(crate) fn tree(c: &Container) -> String {
    c.ok(
        "find /home /srv /etc /var/lib/jarvis-supervisor -xdev -type f \
         ! -path '/home/jarvis/Jarvis/logs/*' ! -path '/home/jarvis/.local/state/*' \
         ! -path '/home/jarvis/.lifeos/*' ! -path '/srv/*/logs/*' ! -name samples.jsonl ! -path '*/__pycache__/*' \
         -printf '%p %U:%G %m\\n' | LC_ALL=C sort > /var/tmp/tree.list; \
         while read -r p rest; do echo \"$(sha256sum < \"$p\" | cut -c1-16) $p $rest\"; done < /var/tmp/tree.list; rm -f /var/tmp/tree.list",
    )
}
