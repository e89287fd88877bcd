//! `jarvisctl import` on a booted Debian 12 with systemd: a bot gateway's
//! hand-written units (root, a tree under /root, one tokens.env holding every
//! bot's token, a target that wants them all) become instances. After the
//! import every bot runs as its own user with the same limits and restart
//! policy, each unit scores 2.0 or lower in `systemd-analyze security`, and
//! each bot sees only its own token; `import --undo` brings the old unit
//! files back byte for byte, and the old units run again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::container::Container;
use super::roots::Suite;
use super::{apt_install, engine_main_pid, pkg, security_score};

const TREE: &str = "/root/gateway";
const MOVED: &str = "/srv/gateway";
const BOTS: [&str; 3] = ["alpha", "beta", "gamma"];
/// What each old unit and its instance must agree on (systemctl show).
const KEPT: [&str; 5] = [
    "MemoryMax",
    "CPUQuotaPerSecUSec",
    "Restart",
    "RestartUSec",
    "Type",
];

fn token(bot: &str) -> String {
    format!("{}:AAsecret-of-{bot}-only", bot.len() * 111)
}

/// The files the undo must bring back byte for byte.
fn files() -> Vec<String> {
    let mut f: Vec<String> = BOTS
        .iter()
        .map(|b| format!("/etc/systemd/system/{b}.service"))
        .collect();
    f.push("/etc/systemd/system/gateway.target".into());
    f.push(format!("{TREE}/tokens.env"));
    f
}

fn sums(c: &Container) -> String {
    c.ok(&format!(
        "sha256sum {}; stat -c '%n %U:%G %a' {}",
        files().join(" "),
        files().join(" ")
    ))
}

/// The gateway as it is on the host today.
fn gateway(c: &Container) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gateway/telegram_bot.py");
    let mut env = String::from("# every bot's token, one file\n");
    for bot in BOTS {
        c.put(&script, &format!("{TREE}/bots/{bot}/{bot}_telegram_bot.py"));
        let up = bot.to_uppercase();
        env.push_str(&format!(
            "{up}_BOT_TOKEN={}\n{up}_HEARTBEAT_URL=http://127.0.0.1:9/{bot}\n",
            token(bot)
        ));
        c.write(
            &format!("/etc/systemd/system/{bot}.service"),
            &format!(
                "[Unit]\nDescription=Telegram bot {bot}\nAfter=network-online.target\nPartOf=gateway.target\n\n\
                 [Service]\nType=simple\nUser=root\nWorkingDirectory={TREE}\nEnvironmentFile={TREE}/tokens.env\n\
                 ExecStart=/usr/bin/python3 bots/{bot}/{bot}_telegram_bot.py\nRestart=always\nRestartSec=10\n\
                 MemoryMax=512M\nCPUQuota=50%\n\n[Install]\nWantedBy=gateway.target\n"
            ),
        );
    }
    env.push_str("OPENAI_API_KEY=sk-shared-secret-of-nobody\n");
    c.write(&format!("{TREE}/tokens.env"), &env);
    c.write(
        "/etc/systemd/system/gateway.target",
        "[Unit]\nDescription=All Telegram bots\nWants=alpha.service beta.service gamma.service\n\n[Install]\nWantedBy=multi-user.target\n",
    );
    // As root with umask 022 makes them; /root itself is 0700.
    c.ok(&format!(
        "chown -R root:root {TREE}; chmod 700 /root; find {TREE} -type d -exec chmod 755 {{}} +; find {TREE} -type f -exec chmod 644 {{}} +; mkdir -m 755 {TREE}/data"
    ));
}

fn start_gateway(c: &Container) {
    c.ok("systemctl daemon-reload && systemctl enable alpha.service beta.service gamma.service gateway.target 2>&1 && systemctl start gateway.target");
}

fn main_pid(c: &Container, unit: &str) -> String {
    let p = c.prop(unit, "MainPID");
    if p == "0" || c.prop(unit, "SubState") != "running" {
        String::new()
    } else {
        p
    }
}

fn uid_of(c: &Container, pid: &str) -> String {
    c.ok(&format!("awk '/^Uid:/ {{print $2}}' /proc/{pid}/status"))
        .trim()
        .to_string()
}

fn running(c: &Container, units: &[String], what: &str) -> BTreeMap<String, String> {
    let mut last = BTreeMap::new();
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.wait_for(what, Duration::from_secs(90), |c| {
            last = units.iter().map(|u| (u.clone(), main_pid(c, u))).collect();
            last.values().all(|p| !p.is_empty())
        })
    }));
    if ok.is_err() {
        let why = c
            .sh("systemctl --no-pager status 'jarvis-supervisor@*' alpha beta gamma 2>&1 | tail -n 80")
            .stdout;
        panic!("{what}: not all run: {last:?}\n{why}");
    }
    last
}

fn seen(c: &Container, dir: &str, bot: &str) -> String {
    c.sh(&format!("cat {dir}/data/{bot}.seen 2>/dev/null"))
        .stdout
        .trim()
        .to_string()
}

pub fn gateway_units_become_instances_and_come_back() {
    let c = Container::boot(Suite::Bookworm);
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "{}", out.all());
    gateway(&c);
    start_gateway(&c);
    let old: Vec<String> = BOTS.iter().map(|b| format!("{b}.service")).collect();
    let before_pids = running(&c, &old, "the gateway's units");
    let every = "ALPHA_BOT_TOKEN BETA_BOT_TOKEN GAMMA_BOT_TOKEN";
    for bot in BOTS {
        assert_eq!(uid_of(&c, &before_pids[&format!("{bot}.service")]), "0");
        c.wait_for("each old bot sees every token", Duration::from_secs(30), |c| {
            seen(c, TREE, bot) == every
        });
    }
    let kept: BTreeMap<String, Vec<String>> = BOTS
        .iter()
        .map(|b| {
            (
                b.to_string(),
                KEPT.iter().map(|k| c.prop(&format!("{b}.service"), k)).collect(),
            )
        })
        .collect();
    let sums_before = sums(&c);

    let dry = c.sh("jarvisctl import gateway.target --dry-run 2>&1");
    assert_eq!(dry.status, 0, "{}", dry.all());
    assert_eq!(sums(&c), sums_before, "--dry-run changed a file:\n{}", dry.stdout);
    let out = c.sh("jarvisctl import gateway.target 2>&1");
    println!("jarvisctl import:\n{}", out.stdout);
    assert_eq!(out.status, 0, "{}", out.all());
    for secret in ["AAsecret", "sk-shared", "127.0.0.1:9"] {
        assert!(
            !out.stdout.contains(secret) && !dry.stdout.contains(secret),
            "import printed a value ({secret})"
        );
    }
    assert!(
        out.stdout.contains("OPENAI_API_KEY"),
        "the unmatched key is not named:\n{}",
        out.stdout
    );

    let new: Vec<String> = BOTS
        .iter()
        .map(|b| format!("jarvis-supervisor@{b}.service"))
        .collect();
    let pids = running(&c, &new, "the imported instances");
    for u in &old {
        assert_eq!(
            c.prop(u, "ActiveState"),
            "inactive",
            "{u} still runs after the import"
        );
        assert_eq!(
            c.prop(u, "UnitFileState"),
            "disabled",
            "{u} still enabled after the import"
        );
    }
    let mut scores = Vec::new();
    for bot in BOTS {
        let unit = format!("jarvis-supervisor@{bot}.service");
        let now: Vec<String> = KEPT.iter().map(|k| c.prop(&unit, k)).collect();
        assert_eq!(now, kept[bot], "{bot}: {KEPT:?} changed by the import");
        let score = security_score(&c, &unit);
        assert!(score <= 2.0, "{unit}: exposure {score}");
        scores.push(format!("{bot} {score}"));
        let want = format!("{}_BOT_TOKEN", bot.to_uppercase());
        c.wait_for(
            &format!("{bot} sees only its own token"),
            Duration::from_secs(30),
            |c| seen(c, MOVED, bot) == want,
        );
        // Its uid once the program has run (a simple unit is "running"
        // from its fork, before its user is set).
        let uid = c.ok(&format!("id -u jarvis-{bot}")).trim().to_string();
        assert_ne!(uid, "0");
        assert_eq!(
            uid_of(&c, &pids[&unit]),
            uid,
            "{bot} does not run as jarvis-{bot}"
        );
        let mode = c.ok(&format!("stat -c '%U:%G %a' /etc/jarvis-supervisor/{bot}.env"));
        assert_eq!(mode.trim(), "root:root 600", "{bot}.env");
    }
    // The attack: as each bot's user, read the others' env files, the old
    // shared one and their environments. Every read is refused.
    let mut tried = 0;
    for me in BOTS {
        for other in BOTS.iter().filter(|o| **o != me) {
            let environ = format!(
                "/proc/{}/environ",
                pids[&format!("jarvis-supervisor@{other}.service")]
            );
            for target in [
                format!("/etc/jarvis-supervisor/{other}.env"),
                format!("{MOVED}/tokens.env"),
                environ,
            ] {
                let r = c.sh(&format!("runuser -u jarvis-{me} -- cat {target} 2>&1"));
                tried += 1;
                assert!(
                    r.status != 0 && !r.stdout.contains("AAsecret"),
                    "jarvis-{me} read {target}:\n{}",
                    r.stdout
                );
            }
        }
    }

    let undo = c.sh("jarvisctl import --undo 2>&1");
    println!("jarvisctl import --undo:\n{}", undo.stdout);
    assert_eq!(undo.status, 0, "{}", undo.all());
    assert_eq!(sums(&c), sums_before, "the old files are not as they were");
    let back = running(&c, &old, "the old units after the undo");
    for u in &old {
        assert_eq!(uid_of(&c, &back[u]), "0", "{u} after the undo");
        assert_eq!(c.prop(u, "UnitFileState"), "enabled", "{u} not enabled again");
        assert_ne!(back[u], before_pids[u], "{u} was not restarted");
    }
    for u in &new {
        assert_eq!(c.prop(u, "ActiveState"), "inactive", "{u} runs after the undo");
    }
    assert_eq!(
        c.sh("ls /etc/jarvis-supervisor/alpha.env").status,
        2,
        "the split env file is left"
    );
    println!(
        "figures: 3 gateway bots imported, each as its own user; security exposure {}; {tried} cross-reads refused; undo: {} files byte for byte, old units running again ({back:?})",
        scores.join(", "),
        files().len()
    );
}

/// The main pid `jarvisctl run` records for an instance, while it runs.
fn engine_pid(c: &Container, bot: &str) -> String {
    engine_main_pid(c, &format!("/run/jarvis-supervisor-run@{bot}"))
}

/// On a host without systemd (sysvinit), the import changes the files only
/// and says so; the init script then runs each bot as its own user with its
/// own token, and the undo puts every file back byte for byte.
pub fn without_systemd_only_the_files_change() {
    let c = Container::boot(Suite::Sysvinit);
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "{}", out.all());
    gateway(&c);
    let sums_before = sums(&c);
    let out = c.sh("jarvisctl import gateway.target 2>&1");
    println!("jarvisctl import (sysvinit):\n{}", out.stdout);
    assert_eq!(out.status, 0, "{}", out.all());
    assert!(
        out.stdout.contains("systemd is not running here"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("AAsecret"), "{}", out.stdout);
    c.ok("service jarvis-supervisor start 2>&1");
    let mut pids = BTreeMap::new();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.wait_for(
            "the imported bots under jarvisctl run",
            Duration::from_secs(90),
            |c| {
                pids = BOTS.iter().map(|b| (*b, engine_pid(c, b))).collect();
                pids.values().all(|p| !p.is_empty())
            },
        )
    }));
    if waited.is_err() {
        let why = c.sh("tail -n 20 /run/jarvis-supervisor-run@*/engine.log 2>&1; tail -n 20 /srv/gateway/logs/*.stdout 2>&1").stdout;
        panic!("not all run under the init script: {pids:?}\n{why}");
    }
    for bot in BOTS {
        let uid = c.ok(&format!("id -u jarvis-{bot}")).trim().to_string();
        assert_eq!(uid_of(&c, &pids[bot]), uid, "{bot} does not run as jarvis-{bot}");
        let want = format!("{}_BOT_TOKEN", bot.to_uppercase());
        c.wait_for(
            &format!("{bot} sees only its own token"),
            Duration::from_secs(30),
            |c| seen(c, MOVED, bot) == want,
        );
    }
    c.ok("service jarvis-supervisor stop 2>&1");
    let undo = c.sh("jarvisctl import --undo 2>&1");
    assert_eq!(undo.status, 0, "{}", undo.all());
    assert_eq!(sums(&c), sums_before, "the old files are not as they were");
    println!("figures: sysvinit: 3 bots imported (files only), run by the init script as their own users ({pids:?}); undo: {} files byte for byte", files().len());
}
