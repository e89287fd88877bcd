//! Issue 26, acceptance 1: every bot on the host, each hardened, under one
//! group, on both engines. Three instances run: the default one (the
//! notify-type stand-in with its watchdog) and two simple-type gateway
//! bots that share one code tree (/srv/gateway) and were given different
//! secrets. Each runs as its own user, none can read another's env file
//! (tried as each user), a crash of one leaves the others' pids alone, the
//! group stops and starts all three, and `status` shows all three.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::container::Container;
use super::roots::Suite;
use super::{engine_main_pid, on_suites, with_the_bot, CODE};

const TREE: &str = "/srv/gateway";
const BOTS: [&str; 2] = ["alpha", "beta"];
/// beta's output, lines a second.
const BUSY: u32 = 50;

fn token(bot: &str) -> String {
    format!(
        "{}:AAsecret-of-{bot}-only-0123456789",
        if bot == "alpha" { 111 } else { 222 }
    )
}

/// The gateway's tree, root's, with one entry point per bot, and one env
/// file per bot in /etc/jarvis-supervisor, each holding only its token.
fn gateway(c: &Container) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gateway/telegram_bot.py");
    for bot in BOTS {
        c.put(&script, &format!("{TREE}/bots/{bot}/{bot}_telegram_bot.py"));
        c.write(
            &format!("/etc/jarvis-supervisor/{bot}.env"),
            &format!(
                "{}_BOT_TOKEN={}\n{}_HEARTBEAT_URL=http://127.0.0.1:9/{bot}\n{}",
                bot.to_uppercase(),
                token(bot),
                bot.to_uppercase(),
                // beta as busy as the real program: 180,000 lines an hour.
                if bot == "beta" {
                    format!("GATEWAY_FLOOD_LINES_PER_S={BUSY}\n")
                } else {
                    String::new()
                }
            ),
        );
    }
    // Written as an operator would (0644): instance add makes them root's, 600.
    c.ok(&format!(
        "chown -R root:root {TREE}; chmod -R go-w {TREE}; mkdir -p {TREE}/data; chmod 1777 {TREE}/data; chmod 644 /etc/jarvis-supervisor/*.env"
    ));
}

/// The main pid of each of the three, as its engine records it.
fn pids(c: &Container, suite: Suite) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    for name in ["default", "alpha", "beta"] {
        let pid = if suite.has_systemd() {
            let unit = if name == "default" {
                "jarvis-supervisor.service".to_string()
            } else {
                format!("jarvis-supervisor@{name}.service")
            };
            let p = c.prop(&unit, "MainPID");
            if p == "0" || c.prop(&unit, "SubState") != "running" {
                String::new()
            } else {
                p
            }
        } else {
            let dir = if name == "default" {
                "/run/jarvis-supervisor-run".to_string()
            } else {
                format!("/run/jarvis-supervisor-run@{name}")
            };
            engine_main_pid(c, &dir)
        };
        out.insert(name, pid);
    }
    out
}

fn wait_all_running(c: &Container, suite: Suite, what: &str) -> BTreeMap<&'static str, String> {
    let mut last = BTreeMap::new();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.wait_for(what, Duration::from_secs(90), |c| {
            last = pids(c, suite);
            // A simple-type unit is "running" from its fork, before its
            // user is set and the program has run a line: wait for each
            // bot's own start record naming that pid.
            last.values().all(|p| !p.is_empty())
                && BOTS.iter().all(|bot| {
                    c.sh(&format!("tail -n 1 {TREE}/data/{bot}.started"))
                        .stdout
                        .split_whitespace()
                        .next()
                        == Some(last[bot].as_str())
                })
        })
    }));
    if waited.is_err() {
        let why = c.sh(&format!("tail -n 3 {TREE}/data/*.started; jarvisctl status 2>&1; systemctl --no-pager status 'jarvis-supervisor*' 2>&1 | tail -n 60; tail -n 20 /run/jarvis-supervisor-run*/engine.log 2>&1")).stdout;
        panic!("{}: {what}: not all three run: {last:?}\n{why}", suite.name());
    }
    last
}

fn scenario(suite: Suite) {
    let name = suite.name();
    let c = with_the_bot(suite);
    gateway(&c);
    for bot in BOTS {
        let out = c.sh(&format!(
            "jarvisctl instance add {bot} --code-root {TREE} --script bots/{bot}/{bot}_telegram_bot.py --type simple \
             --env-file /etc/jarvis-supervisor/{bot}.env --memory-max 512M --cpu-quota 50% --restart-sec 1s 2>&1"
        ));
        assert_eq!(out.status, 0, "{name}: instance add {bot}: {}", out.all());
        assert!(
            out.stdout.contains(&format!("created system user jarvis-{bot}")),
            "{name}: {}",
            out.stdout
        );
    }
    // The group starts all three (the default one runs since the install).
    let group_start = if suite.has_systemd() {
        "systemctl start jarvis-supervisor.target"
    } else {
        "service jarvis-supervisor start"
    };
    c.ok(&format!("{group_start} 2>&1"));
    let before = wait_all_running(&c, suite, "the group's start");

    // Each as its own user; each bot's environment holds its own token only.
    for (inst, user) in [
        ("default", "jarvis"),
        ("alpha", "jarvis-alpha"),
        ("beta", "jarvis-beta"),
    ] {
        let uid = c.ok(&format!("id -u {user}")).trim().to_string();
        let real = c.ok(&format!(
            "awk '/^Uid:/ {{print $2}}' /proc/{}/status",
            before[inst]
        ));
        assert_eq!(real.trim(), uid, "{name}: {inst} runs as uid {real}, not {user}");
    }
    for bot in BOTS {
        // Written just after its start record (opened with truncation).
        let want = format!("{}_BOT_TOKEN", bot.to_uppercase());
        let read = |c: &Container| {
            c.sh(&format!("cat {TREE}/data/{bot}.seen"))
                .stdout
                .trim()
                .to_string()
        };
        c.wait_for(&format!("{name}: {bot}'s .seen"), Duration::from_secs(30), |c| {
            !read(c).is_empty()
        });
        let seen = read(&c);
        assert_eq!(seen, want, "{name}: {bot} sees more than its own token");
        let mode = c.ok(&format!("stat -c '%U:%G %a' /etc/jarvis-supervisor/{bot}.env"));
        assert_eq!(mode.trim(), "root:root 600", "{name}: {bot}.env");
    }

    // The attack: as each instance's user, read every other's env file
    // and environment. Every read is refused.
    let files = [
        ("jarvis", format!("{CODE}/.env"), "default"),
        (
            "jarvis-alpha",
            "/etc/jarvis-supervisor/alpha.env".to_string(),
            "alpha",
        ),
        (
            "jarvis-beta",
            "/etc/jarvis-supervisor/beta.env".to_string(),
            "beta",
        ),
    ];
    let mut tried = 0;
    for (user, _, mine) in &files {
        for (_, file, theirs) in &files {
            if theirs == mine {
                continue;
            }
            let environ = format!("/proc/{}/environ", before[theirs]);
            for target in [file.as_str(), environ.as_str()] {
                let r = c.sh(&format!("runuser -u {user} -- cat {target} 2>&1"));
                tried += 1;
                assert!(
                    r.status != 0 && !r.stdout.contains("BOT_TOKEN") && !r.stdout.contains("AAsecret"),
                    "{name}: {user} read {target} of {theirs}:\n{}",
                    r.stdout
                );
            }
        }
    }

    // logs --instance: that bot's output alone (its journal, or its own
    // capture file in the shared tree's logs/), its token never shown.
    // Its first line, printed after .seen, read by journald or its engine
    // a moment later.
    c.wait_for(
        &format!("{name}: alpha's first line in its logs"),
        Duration::from_secs(30),
        |c| {
            c.sh("jarvisctl logs --instance alpha -n 100 2>&1")
                .stdout
                .contains("alpha: polling Telegram")
        },
    );

    let logs = c.sh("jarvisctl logs --instance alpha -n 100 2>&1");
    assert_eq!(logs.status, 0, "{name}: logs --instance alpha: {}", logs.stdout);
    assert!(
        logs.stdout.contains("alpha: polling Telegram") && !logs.stdout.contains("beta: polling"),
        "{name}: logs --instance alpha:\n{}",
        logs.stdout
    );
    assert!(
        !logs.stdout.contains("AAsecret"),
        "{name}: a token in the logs:\n{}",
        logs.stdout
    );

    // logs --instance of the busy one: the newest lines, in order, none
    // older than the newest line its journal or capture held just before.
    let newest = |text: &str| -> Vec<u64> {
        text.lines()
            .filter_map(|l| l.split("beta: tick ").nth(1))
            .filter_map(|n| n.trim().parse().ok())
            .collect()
    };
    // beta's newest line, from its journal or its capture file.
    let newest_line = |c: &Container| {
        if suite.has_systemd() {
            c.sh("journalctl -u jarvis-supervisor@beta -n 1 -o cat -q --no-pager")
                .stdout
        } else {
            c.sh(&format!("tail -n 1 {TREE}/logs/jarvis-supervisor@beta.stdout"))
                .stdout
        }
    };
    c.wait_for("500 of beta's lines", Duration::from_secs(60), |c| {
        newest(&newest_line(c)).first().is_some_and(|n| *n >= 500)
    });
    let last = newest(&newest_line(&c))[0];
    let t = std::time::Instant::now();
    let busy = c.sh("jarvisctl logs --instance beta -n 50 2>&1");
    let took = t.elapsed();
    let ticks = newest(&busy.stdout);
    assert_eq!(busy.status, 0, "{name}: {}", busy.stdout);
    assert_eq!(
        ticks.len(),
        50,
        "{name}: logs --instance beta -n 50:\n{}",
        busy.stdout
    );
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1) && ticks[49] >= last,
        "{name}: not beta's newest 50 lines in order (its newest before the call: {last}):\n{}",
        busy.stdout
    );
    println!("figures: {name}: logs --instance beta -n 50 of a bot writing {BUSY} lines/s: ticks {}..{} in {took:.2?} (newest before the call {last})", ticks[0], ticks[49]);

    // Each instance's logs are rotated (/etc/logrotate.d/jarvis-instances,
    // written by instance add): the file parses; without systemd, beta's
    // output file is renamed and its engine, told by the postrotate's HUP,
    // writes on in a new one, losing no line.
    let lr = c.sh("logrotate -d /etc/logrotate.d/jarvis-instances 2>&1");
    assert_eq!(lr.status, 0, "{name}: logrotate -d:\n{}", lr.all());
    if !suite.has_systemd() {
        let out = format!("{TREE}/logs/jarvis-supervisor@beta.stdout");
        let r = c.sh(
            "logrotate -f -s /var/lib/logrotate/jarvis-test.status /etc/logrotate.d/jarvis-instances 2>&1",
        );
        assert_eq!(r.status, 0, "{name}: logrotate -f:\n{}", r.all());
        c.wait_for(
            "beta writing to a new output file after the rotation",
            Duration::from_secs(30),
            |c| {
                c.sh(&format!("grep -c 'beta: tick' {out}"))
                    .stdout
                    .trim()
                    .parse::<u64>()
                    .is_ok_and(|n| n >= 5)
            },
        );
        let old = c.sh(&format!("grep 'beta: tick' {out}.1 | tail -n 1")).stdout;
        let new = c.sh(&format!("grep -m 1 'beta: tick' {out}")).stdout;
        let (old, new) = (newest(&old), newest(&new));
        assert!(
            !old.is_empty() && !new.is_empty() && new[0] == old[0] + 1,
            "{name}: a line lost or split at the rotation: last of .1 {old:?}, first of the new file {new:?}"
        );
        println!(
            "figures: {name}: beta's output rotated at tick {}, none lost",
            old[0]
        );
    }

    // A crash of one: it comes back; the others keep their pids.
    c.ok(&format!("kill -KILL {}", before["alpha"]));
    let mut after = BTreeMap::new();
    c.wait_for("alpha back with a new pid", Duration::from_secs(60), |c| {
        after = pids(c, suite);
        !after["alpha"].is_empty() && after["alpha"] != before["alpha"]
    });
    assert_eq!(
        (&after["default"], &after["beta"]),
        (&before["default"], &before["beta"]),
        "{name}: alpha's crash moved the others"
    );

    // status: one line per instance, each OK, and OK overall.
    let st = c.sh("jarvisctl status --json");
    let doc: serde_json::Value = serde_json::from_str(&st.stdout)
        .unwrap_or_else(|e| panic!("{name}: status --json: {e}: {}", st.all()));
    let verdicts: BTreeMap<String, String> = doc["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no instances in {doc}"))
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap_or("").to_string(),
                l["verdict"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want: BTreeMap<String, String> = ["alpha", "beta", "default"]
        .iter()
        .map(|n| (n.to_string(), "OK".to_string()))
        .collect();
    assert_eq!(verdicts, want, "{name}: status: {doc}");
    assert_eq!(st.status, 0, "{name}: status exit code: {doc}");
    let human = c.sh("jarvisctl status").stdout;
    println!("{name}: jarvisctl status:\n{human}");

    // The group stops all three, and starts them again.
    let (stop, start) = if suite.has_systemd() {
        (
            "systemctl stop jarvis-supervisor.target",
            "systemctl start jarvis-supervisor.target",
        )
    } else {
        (
            "service jarvis-supervisor stop",
            "service jarvis-supervisor start",
        )
    };
    c.ok(&format!("{stop} 2>&1"));
    // Down: every unit inactive (not merely leaving "running"), every
    // engine gone (it removes its pid file as it exits).
    let down = if suite.has_systemd() {
        "systemctl is-active jarvis-supervisor.service 'jarvis-supervisor@alpha.service' 'jarvis-supervisor@beta.service' | grep -qvx -e inactive -e failed && exit 1; exit 0"
    } else {
        "ls /run/jarvis-supervisor-run*/run.pid >/dev/null 2>&1 && exit 1; exit 0"
    };
    c.wait_for("all three stopped", Duration::from_secs(60), |c| {
        c.sh(down).status == 0
    });
    // The brackets keep pgrep from matching its own shell.
    let left = c.sh("pgrep -af '[_]telegram_bot.py|bots/[s]upervisor.py'").stdout;
    assert!(
        left.trim().is_empty(),
        "{name}: left after the group's stop: {left}"
    );
    c.ok(&format!("{start} 2>&1"));
    let again = wait_all_running(&c, suite, "the group's start after its stop");

    // apt remove stops every instance; purge keeps each one's user, code,
    // env file and state, and removes only the drop-ins jarvisctl wrote.
    let kept = |c: &Container| {
        c.ok(&format!(
            "getent passwd jarvis-alpha jarvis-beta | cut -d: -f1; sha256sum /etc/jarvis-supervisor/alpha.env /etc/jarvis-supervisor/beta.env {TREE}/bots/alpha/alpha_telegram_bot.py; ls {TREE}/data"
        ))
    };
    let before_remove = kept(&c);
    let out = c.sh("apt-get remove -y -q jarvis-supervisor 2>&1");
    assert_eq!(out.status, 0, "{name}: {}", out.all());
    let left = c.sh("pgrep -af '[_]telegram_bot.py|bots/[s]upervisor.py'").stdout;
    assert!(
        left.trim().is_empty(),
        "{name}: left running after apt remove: {left}"
    );
    let out = c.sh("apt-get purge -y -q jarvis-supervisor 2>&1");
    assert_eq!(out.status, 0, "{name}: {}", out.all());
    assert_eq!(
        kept(&c),
        before_remove,
        "{name}: purge changed an instance's user, code, env file or state"
    );
    let dropins = c
        .sh("ls /etc/systemd/system/jarvis-supervisor@*.service.d/ 2>/dev/null")
        .stdout;
    assert!(
        dropins.trim().is_empty(),
        "{name}: purge left jarvisctl's drop-ins: {dropins}"
    );

    println!(
        "figures: {name}: 3 instances as 3 users; {tried} cross-reads refused; alpha's crash left default {} and beta {} as they were; the group stopped and started all three (now {again:?}); apt remove stopped all three, purge kept their users, code and env files",
        before["default"], before["beta"]
    );
}

pub fn both_engines() {
    on_suites(&[Suite::Bookworm, Suite::Sysvinit], scenario);
}
