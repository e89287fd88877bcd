//! Issue 15, item 6 and acceptance 4: `jarvisctl logs` works the same on
//! both engines (a systemd and a sysvinit Debian 12, at once): the history
//! from the bot's output and its own logs/*.log, with values masked, and
//! `logs -f` showing each new line within 1 s.

use std::time::Duration;

use super::roots::Suite;
use super::{on_suites, output_when, with_the_bot, CODE};

const TOKEN: &str = "123456789:AAFakeTokenForTestsOnly_abcdefghijklmn";

fn scenario(suite: Suite) {
    let name = suite.name();
    let c = with_the_bot(suite);
    c.wait_for("the bot's log lines", Duration::from_secs(60), |c| {
        c.sh(&format!("grep -c seq= {CODE}/logs/supervisor.log"))
            .stdout
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
            > 5
    });

    // Following: every new line, timestamped by the test as it arrives. The
    // stamp is bash's own clock ($EPOCHREALTIME, no fork per line): a forked
    // `date` per line is itself slow on a loaded machine, and would charge
    // its own delay to `logs -f`.
    let pid = c
        .ok(
            "setsid bash -c 'jarvisctl logs -f -n 0 | while IFS= read -r l; do printf \"%s %s\\n\" \"$EPOCHREALTIME\" \"$l\"; done > /var/tmp/follow.txt' </dev/null >/dev/null 2>&1 & echo $!",
        )
        .trim()
        .to_string();
    assert!(
        pid.parse::<u32>().is_ok_and(|p| p > 1),
        "{name}: no pid for the follower: {pid:?}"
    );
    // The follower is live before the trigger: the program's own log file
    // (a `seq=` line comes every 0.5 s) ...
    c.wait_for("logs -f to show a seq= line", Duration::from_secs(30), |c| {
        c.sh("grep -q ' seq=' /var/tmp/follow.txt").status == 0
    });
    // ... and its output (the journal under systemd, a separate `journalctl
    // -f`): an unknown word in the mode file makes the bot warn on stderr,
    // once per new word, and change nothing else. A new word until one shows.
    let mut probe = 0;
    c.wait_for("logs -f to show the bot's stderr", Duration::from_secs(30), |c| {
        if c.sh("grep -q 'ignoring unknown word' /var/tmp/follow.txt").status == 0 {
            return true;
        }
        probe += 1;
        if probe % 20 == 1 {
            c.ok(&format!("echo probe{probe} > {CODE}/data/standin-mode"));
        }
        false
    });
    // A line with the token, as a bot prints a failed API call.
    c.ok(&format!("echo errtoken > {CODE}/data/standin-mode"));
    let followed = output_when(&c, "cat /var/tmp/follow.txt", Duration::from_secs(30), |f| {
        f.contains("/getMe failed") && f.lines().filter(|l| l.contains(" seq=")).count() >= 8
    });
    c.sh(&format!("kill -- -{pid}"));
    c.ok(&format!("rm -f {CODE}/data/standin-mode"));

    assert!(!followed.contains(TOKEN), "{name}: logs -f printed the token");
    assert!(
        followed.contains("api.telegram.org/bot****/getMe"),
        "{name}: the bot's error line did not arrive, masked:\n{followed}"
    );
    // Delay: arrival against the time the bot wrote into each seq line.
    let mut delays = Vec::new();
    for l in followed.lines().filter(|l| l.contains(" seq=")) {
        let arrived: f64 = l.split(' ').next().and_then(|t| t.parse().ok()).unwrap_or(0.0);
        let iso = l.rsplit(' ').next().unwrap_or("");
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(iso) {
            delays.push(arrived - t.timestamp_millis() as f64 / 1000.0);
        }
    }
    assert!(
        delays.len() >= 5,
        "{name}: too few seq lines followed:\n{followed}"
    );
    let worst = delays.iter().cloned().fold(0.0, f64::max);
    assert!(
        worst < 1.0,
        "{name}: a line took {worst:.2} s to show: {delays:?}"
    );

    // The history: both kinds of source, in time order, masked.
    let hist = c.ok("jarvisctl logs -n 400");
    let output_source = if suite.has_systemd() {
        " journal: "
    } else {
        " supervisor.stdout: "
    };
    assert!(
        hist.contains(output_source) && hist.contains(" supervisor.log: seq="),
        "{name}: not both sources:\n{hist}"
    );
    assert!(!hist.contains(TOKEN), "{name}: logs printed the token");
    assert!(hist.contains("bot****/getMe"), "{name}: {hist}");
    let comp = c.ok("jarvisctl logs -n 50 --component buy_bot");
    assert!(
        !comp.is_empty() && comp.lines().all(|l| l.contains("buy_bot")),
        "{name}: --component let other lines through:\n{comp}"
    );
    let bad = c.sh("jarvisctl logs --since 'next tuesday'");
    assert_eq!(bad.status, 2, "{name}: {}", bad.all());
    assert!(
        bad.all().contains("\"next tuesday\" is not a time") && bad.all().contains("5 min ago"),
        "{name}: {}",
        bad.all()
    );
    println!(
        "figures: {name}: logs -f showed {} lines, the slowest {worst:.2} s after the bot wrote it",
        delays.len()
    );
}

pub fn both_engines() {
    on_suites(&[Suite::Bookworm, Suite::Sysvinit], scenario);
}
