//! Issue 27, acceptance 4: the package's own bookkeeping never takes the
//! bot down or silences the alarm. On a booted host of each engine at once
//! (systemd, and `jarvisctl run` under sysvinit), with the installed
//! package, three filesystems are filled in turn and freed again:
//!
//! - `/var/lib/jarvis-supervisor` (a 2 MiB tmpfs over it, holding a copy
//!   of what was there): every run of the health timer's command pings the
//!   heartbeat, and the history keeps whole samples only;
//! - the bot's `logs/` (a 4 MiB tmpfs over it, as a small disk of its own,
//!   under the bot from a restart on): the bot keeps running, and under
//!   `jarvisctl run` its output is counted and dropped, never torn;
//! - `/run` (the container's own tmpfs, made small and filled): a crash
//!   loop still starts the bot at each attempt, with a backoff that grows
//!   to its longest delay, and the unit is never failed.
//!
//! In each, `status` names the full filesystem while it lasts, the
//! heartbeat is pinged, the bot's state is byte-identical after it (all of
//! it where the bot ran on; what no start rewrites where it crash-looped),
//! the health history lost nothing, and the time from freeing the space to
//! recovery is printed as a `figures:` line.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::container::Container;
use super::roots::Suite;
use super::{active, apt_install, deploy_standin, on_suites, output_when, pkg, CODE, UNIT};

const PORT: u16 = 18093;
const SECRET: &str = "hc-7d1e";
const RECEIVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(sys.argv[2], "a") as f:
            f.write(self.path + "\n")
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;
const PINGS: &str = "/var/tmp/pings.log";
const STORE: &str = "/var/lib/jarvis-supervisor";
const LOGS: &str = "/home/jarvis/Jarvis/logs";
const MODE: &str = "/home/jarvis/Jarvis/data/standin-mode";
/// The bot's own record of its starts (STANDIN_START_LOG): written by the
/// bot as it starts, so each line is a start of the bot itself.
const STARTS: &str = "/home/jarvis/Jarvis/data/starts.log";
const FILLER: &str = "hostfaults.fill";
/// The backoff's longest delay for this test (the unit's is 60 s).
const MAX_WAIT: f64 = 5.0;

/// `jarvisctl status --json`, as the operator reads it.
fn status(c: &Container) -> Value {
    let r = c.sh("jarvisctl status --json");
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{}", r.all()))
}

fn reasons(s: &Value) -> Vec<String> {
    s["reasons"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The reason that names `needle`, if status gives one.
fn naming(s: &Value, needle: &str) -> Option<String> {
    reasons(s).into_iter().find(|r| r.contains(needle))
}

fn running(c: &Container, suite: Suite) -> bool {
    if suite.has_systemd() {
        active(c)
    } else {
        c.sh("cat /run/jarvis-supervisor-run/state.json")
            .stdout
            .contains("\"state\": \"running\"")
    }
}

/// The engine gave up (systemd's failed unit; jarvisctl run's failed state).
fn failed(c: &Container, suite: Suite) -> bool {
    if suite.has_systemd() {
        c.prop(UNIT, "ActiveState") == "failed"
    } else {
        c.sh("cat /run/jarvis-supervisor-run/state.json")
            .stdout
            .contains("\"state\": \"failed\"")
    }
}

/// What the engine says, for a failure's message.
fn diagnosis(c: &Container, suite: Suite) -> String {
    let cmd = if suite.has_systemd() {
        format!("systemctl status --no-pager {UNIT}; journalctl -u {UNIT} -o cat --no-pager -q | tail -n 30; journalctl _PID=1 -o cat --no-pager -q | tail -n 20")
    } else {
        format!("cat /run/jarvis-supervisor-run/state.json; tail -n 30 /run/jarvis-supervisor-run/engine.log; tail -n 20 {CODE}/logs/supervisor.stdout")
    };
    c.sh(&format!("{{ {cmd}; df -h /run {STORE} {LOGS}; }} 2>&1"))
        .stdout
}

/// Waits for `cond`, polled every 100 ms, or panics naming `what`.
fn until(
    c: &Container,
    suite: Suite,
    what: &str,
    secs: u64,
    mut cond: impl FnMut(&Container) -> bool,
) -> Duration {
    let t0 = Instant::now();
    while !cond(c) {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{}: no {what} within {secs} s\n{}",
            suite.name(),
            diagnosis(c, suite)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    t0.elapsed()
}

fn main_pid(c: &Container) -> Option<u64> {
    status(c)["main_pid"].as_u64()
}

/// What a restart leaves alone: the user's trading state and code (the
/// bot rewrites its own start records at each start).
fn lasting_hashes(c: &Container) -> String {
    c.ok(&format!(
        "cd {CODE} && sha256sum .env data/trading-state.json bots/supervisor.py core/__init__.py"
    ))
}

/// The package's health history: it only grows, by whole samples.
fn history(c: &Container) -> String {
    c.ok(&format!("cat {STORE}/samples.jsonl"))
}

/// The health timer's run during a fault that leaves /var/lib alone: it
/// stores its sample and pings, with the WARNING's code at least (a full
/// filesystem is one). Returns the ping's path, its secret elided.
fn pinged_during(c: &Container, suite: Suite, fault: &str) -> String {
    let name = suite.name();
    let n = pings(c).len();
    let (mut code, mut out) = record(c, suite, "");
    if code == 219 {
        // 219/CGROUP: PID 1 could not put the run in its cgroup, before
        // any code of the package ran. Seen once in ten runs of this test
        // (in the /run cell), never in 160 starts of the unit during a
        // crash loop, 80 of them with /run full; this sandbox's cgroup v1
        // hybrid says "Failed to attach ... to compat systemd cgroup" at
        // every boot. On a host the timer's next run follows: that one is
        // judged here, and the failure is printed, never hidden.
        println!("{name}: with {fault}, PID 1 could not start the health timer's run (219/CGROUP), run again:\n{out}");
        (code, out) = record(c, suite, "");
    }
    assert_eq!(code, 0, "{name}: status --record with {fault}:\n{out}");
    let p = pings(c);
    assert_eq!(p.len(), n + 1, "{name}: no ping with {fault}: {p:?}\n{out}");
    let last = &p[n];
    assert!(
        last.starts_with(&format!("/{SECRET}/")) && !last.ends_with("/0"),
        "{name}: the ping with {fault} has no WARNING's code: {last}"
    );
    last.replace(SECRET, "…")
}

/// Fills the filesystem of `dir` with a file in it; the bytes written.
fn fill(c: &Container, dir: &str) -> u64 {
    c.sh(&format!(
        "dd if=/dev/zero of={dir}/{FILLER} bs=64k 2>/dev/null; sync"
    ));
    let free = c.ok(&format!("df -B1 --output=avail {dir} | tail -n 1"));
    assert!(
        free.trim().parse::<u64>().unwrap_or(u64::MAX) < 64 * 1024,
        "{dir} is not full: {free}"
    );
    c.ok(&format!("stat -c %s {dir}/{FILLER}"))
        .trim()
        .parse()
        .unwrap()
}

/// The heartbeat's record of the health timer's run: `status --record`,
/// run as the timer runs it (its unit under systemd; by hand, as a cron
/// line would, without). Returns its exit code and what it said. Under
/// systemd its output reaches the journal through journald, which may read
/// it after `systemctl start` returns: with `until` not empty, the run's
/// journal is read until it holds that text (its last line; 30 s at most).
fn record(c: &Container, suite: Suite, until: &str) -> (i32, String) {
    if suite.has_systemd() {
        c.sh("systemctl start jarvis-supervisor-health.service");
        let id = c.prop("jarvis-supervisor-health.service", "InvocationID");
        let said = output_when(
            c,
            &format!("journalctl _SYSTEMD_INVOCATION_ID={id} -o cat --no-pager -q"),
            Duration::from_secs(30),
            |j| j.contains(until),
        );
        let code = c
            .prop("jarvis-supervisor-health.service", "ExecMainStatus")
            .parse()
            .unwrap_or(-1);
        // What PID 1 said of a run that failed (its own steps, before ours).
        let pid1 = if code == 0 {
            String::new()
        } else {
            c.sh("journalctl _PID=1 UNIT=jarvis-supervisor-health.service -o cat --no-pager -q -n 12; journalctl -o short-monotonic --no-pager -q -n 30 | grep -i health")
                .stdout
        };
        c.sh("systemctl reset-failed jarvis-supervisor-health.service");
        (code, said + &pid1)
    } else {
        let r = c.sh("jarvisctl status --record 2>&1");
        (r.status, r.stdout)
    }
}

/// The path the heartbeat gets for a status: the bare URL when OK, else
/// the exit code after it.
fn ping_for(s: &Value) -> String {
    match s["exit_code"].as_i64() {
        Some(0) => format!("/{SECRET}"),
        code => format!("/{SECRET}/{}", code.unwrap_or(-1)),
    }
}

fn pings(c: &Container) -> Vec<String> {
    c.sh(&format!("cat {PINGS}"))
        .stdout
        .lines()
        .map(str::to_string)
        .collect()
}

/// The bot's `logs/` on a 4 MiB disk of its own, filled while the bot
/// floods it (100 lines a second), then freed.
fn logs_full(c: &Container, suite: Suite) {
    let name = suite.name();
    // The disk under the bot's logs from its start: the bot and the engine
    // open their files there at the restart.
    c.ok(&format!(
        "mkdir -p /var/tmp/logs-orig && cp -a {LOGS}/. /var/tmp/logs-orig/ && mount -t tmpfs -o size=4m,mode=0750 tmpfs {LOGS} && cp -a /var/tmp/logs-orig/. {LOGS}/ && chown jarvis:jarvis {LOGS}"
    ));
    if suite.has_systemd() {
        c.ok(&format!("systemctl restart {UNIT}"));
    } else {
        c.ok("service jarvis-supervisor restart");
    }
    until(c, suite, "bot running on the logs disk", 30, |c| {
        running(c, suite)
    });
    let pid = main_pid(c);
    assert!(pid.is_some(), "{name}: no main pid: {}", status(c));
    let before = bot_hashes(c);
    let kept = history(c);
    c.ok(&format!("echo flood > {MODE}"));
    let stdout = format!("{LOGS}/supervisor.stdout");
    if !suite.has_systemd() {
        until(c, suite, "flood lines in supervisor.stdout", 15, |c| {
            c.sh(&format!("grep -c '^flood=' {stdout}"))
                .stdout
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
                > 20
        });
    }
    let filled = fill(c, LOGS);
    let t_full = Instant::now();
    let since = c.ok("echo $(( $(date +%s) + 1 ))").trim().to_string();
    // jarvisctl run counts what it drops; the bot runs on.
    let lost = |c: &Container| {
        let st = c.sh("cat /run/jarvis-supervisor-run/state.json").stdout;
        serde_json::from_str::<Value>(&st)
            .ok()
            .and_then(|v| v["output_lines_lost"].as_u64())
            .unwrap_or(0)
    };
    if !suite.has_systemd() {
        until(c, suite, "100 output lines counted as lost", 15, |c| {
            lost(c) >= 100
        });
    } else {
        // Under systemd its output goes to the journal: the flood goes on
        // (a second of it, from the second after the fill) while its own
        // log files cannot grow.
        until(c, suite, "the flood to go on through the full disk", 15, |c| {
            c.sh(&format!(
                "journalctl -u {UNIT} -o cat --no-pager -q --since=@{since} | grep -c '^flood='"
            ))
            .stdout
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
                >= 100
        });
    }
    let during = status(c);
    let said = naming(&during, &format!("the filesystem {LOGS} (tmpfs) has"));
    assert!(
        said.is_some(),
        "{name}: status does not name the full logs filesystem: {:?}",
        reasons(&during)
    );
    let said = said.unwrap();
    if !suite.has_systemd() {
        assert!(said.contains("counted and dropped"), "{name}: {said}");
    }
    let ping = pinged_during(c, suite, "logs/ full");
    assert_eq!(main_pid(c), pid, "{name}: the bot was restarted with logs/ full");
    assert!(
        running(c, suite),
        "{name}: the bot stopped with logs/ full\n{}",
        diagnosis(c, suite)
    );
    let lasted = t_full.elapsed().as_secs_f64();

    // Freed: the engine writes again and first says what it lost.
    c.ok(&format!("rm {LOGS}/{FILLER}"));
    let t_free = Instant::now();
    let mut note = String::new();
    if !suite.has_systemd() {
        until(c, suite, "the lost-lines note in supervisor.stdout", 15, |c| {
            note = c
                .sh(&format!("grep 'output line(s) lost' {stdout} | tail -n 1"))
                .stdout
                .trim()
                .to_string();
            !note.is_empty()
        });
    }
    until(c, suite, "status no longer naming the logs filesystem", 15, |c| {
        naming(&status(c), LOGS).is_none()
    });
    let recovered = t_free.elapsed().as_secs_f64();
    c.ok(&format!("rm {MODE}"));
    assert_eq!(
        main_pid(c),
        pid,
        "{name}: the bot was restarted after logs/ was freed"
    );
    // No torn line in what jarvisctl run wrote.
    if !suite.has_systemd() {
        let text = c.ok(&format!("grep -a 'flood=' {stdout} || true"));
        let re = regex::Regex::new(r"^flood=\d+ pid=\d+ x{60}$").unwrap();
        let torn: Vec<&str> = text.lines().filter(|l| !re.is_match(l)).take(3).collect();
        assert!(
            torn.is_empty(),
            "{name}: torn lines in supervisor.stdout: {torn:?}"
        );
    }
    assert_eq!(
        bot_hashes(c),
        before,
        "{name}: the bot's state changed with logs/ full"
    );
    assert!(
        history(c).starts_with(&kept),
        "{name}: the health history lost samples"
    );
    println!(
        "figures: {name}: logs/ full ({filled} bytes filled) for {lasted:.1} s: the bot ran on (pid {}), the heartbeat got {ping}, status said {said:?}; {}recovered {recovered:.1} s after freeing",
        pid.unwrap_or(0),
        if note.is_empty() { String::new() } else { format!("jarvisctl run then wrote {note:?}; ") }
    );
}

/// The bot's state: everything it keeps in its code root (the test's own
/// switch left out).
fn bot_hashes(c: &Container) -> String {
    c.ok(&format!(
        "cd {CODE} && find .env data bots core -type f ! -name standin-mode ! -name '*.pyc' | sort | xargs sha256sum"
    ))
}

/// /var/lib/jarvis-supervisor on a 2 MiB disk holding a copy of what was
/// there, filled: the health timer's run pings anyway, every time.
fn var_lib_full(c: &Container, suite: Suite) {
    let name = suite.name();
    let samples = format!("{STORE}/samples.jsonl");
    // One record first: the history holds a sample, the heartbeat a ping.
    let (code, said) = record(c, suite, "");
    assert_eq!(code, 0, "{name}: status --record before the fault: {said}");
    assert_eq!(pings(c), [ping_for(&status(c))], "{name}");
    let pid = main_pid(c);
    c.ok(&format!(
        "mkdir -p /var/tmp/store-orig && cp -a {STORE}/. /var/tmp/store-orig/ && mount -t tmpfs -o size=2m,mode=0755 tmpfs {STORE} && cp -a /var/tmp/store-orig/. {STORE}/"
    ));
    let before = bot_hashes(c);
    let history = c.ok(&format!("cat {samples}"));
    let filled = fill(c, STORE);
    let t_full = Instant::now();
    let during = status(c);
    let said = naming(&during, &format!("the filesystem of {STORE} is full"));
    assert!(
        said.is_some(),
        "{name}: status does not name the full /var/lib: {:?}",
        reasons(&during)
    );
    // The history's last page still has room for a few samples: the
    // timer's command, run until one finds none (each pings first).
    let more: u32 = c
        .ok("n=0; while [ $n -lt 200 ] && jarvisctl status --record >/dev/null 2>&1; do n=$((n+1)); done; echo $n")
        .trim()
        .parse()
        .unwrap();
    assert!(more < 200, "{name}: 200 samples stored on a full /var/lib?");
    // Then the timer's own run: pinged, and it fails (exit 3) saying the
    // sample was not stored.
    let (code, out) = record(c, suite, "the heartbeat was pinged");
    let p = pings(c);
    let records = more as usize + 2;
    assert_eq!(
        p.len(),
        1 + records,
        "{name}: {records} records with /var/lib full, {} pings: {p:?}; the last said:\n{out}",
        p.len() - 1
    );
    let bad: Vec<&String> = p[1..]
        .iter()
        .filter(|x| !x.starts_with(&format!("/{SECRET}/")) || x.ends_with("/0"))
        .collect();
    assert!(
        bad.is_empty(),
        "{name}: pings without the WARNING's code: {bad:?}"
    );
    assert_eq!(code, 3, "{name}: status --record with /var/lib full:\n{out}");
    assert!(
        out.contains("No space left on device") && out.contains("the heartbeat was pinged"),
        "{name}: {out}"
    );
    assert!(
        !out.contains(SECRET),
        "{name}: the ping URL's secret was printed:\n{out}"
    );
    let prom = c.ok("cat /var/lib/prometheus/node-exporter/jarvis_supervisor.prom");
    assert!(
        prom.contains("\njarvis_supervisor_sample_stored{bot=\"default\"} 0\n"),
        "{name}: the metrics do not say the sample was lost:\n{prom}"
    );
    let lasted = t_full.elapsed().as_secs_f64();
    // Nothing lost or torn in the history: what was there, then whole samples.
    let now = c.ok(&format!("cat {samples}"));
    assert!(now.starts_with(&history), "{name}: the history lost lines");
    let torn: Vec<&str> = now
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_err())
        .collect();
    assert!(torn.is_empty(), "{name}: torn samples: {torn:?}");
    assert_eq!(
        now.lines().count(),
        history.lines().count() + more as usize,
        "{name}: the samples stored are not the records that exited 0"
    );
    assert_eq!(
        bot_hashes(c),
        before,
        "{name}: the bot's state changed with /var/lib full"
    );

    c.ok(&format!("rm {STORE}/{FILLER}"));
    let t_free = Instant::now();
    let n = now.lines().count();
    let (code, out) = record(c, suite, "");
    assert_eq!(
        code, 0,
        "{name}: status --record after /var/lib was freed:\n{out}"
    );
    let recovered = t_free.elapsed().as_secs_f64();
    assert_eq!(
        c.ok(&format!("wc -l < {samples}")).trim(),
        (n + 1).to_string(),
        "{name}: no sample stored after /var/lib was freed"
    );
    let after = status(c);
    assert_eq!(pings(c).last(), Some(&ping_for(&after)), "{name}");
    assert!(
        naming(&after, STORE).is_none(),
        "{name}: status still names /var/lib after it was freed: {:?}",
        reasons(&after)
    );
    assert_eq!(
        main_pid(c),
        pid,
        "{name}: the bot was restarted with /var/lib full"
    );
    // The package's own state back on its disk, as it was.
    c.ok(&format!("umount {STORE}"));
    println!(
        "figures: {name}: /var/lib full ({filled} bytes filled) for {lasted:.1} s: {records} records, {records} pings (with the WARNING's code); {more} sample(s) still fitted in the history's last page, then status --record exited 3 after its ping, the metrics said sample_stored 0; status said {:?}; the first record after freeing ({recovered:.1} s after, run at once; the timer runs it every 5 min) stored its sample",
        said.unwrap()
    );
}

/// Seconds since the epoch of each start of the bot.
fn starts(c: &Container) -> Vec<f64> {
    c.sh(&format!("cat {STARTS}"))
        .stdout
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// /run made small and filled, then a crash loop through it: the bot
/// starts at each attempt, with a growing backoff, and the unit is never
/// failed; freed with the crash's cause gone, it runs again.
fn run_full(c: &Container, suite: Suite) {
    let name = suite.name();
    let before = lasting_hashes(c);
    let kept = history(c);
    // The container's /run is a tmpfs of a fifth of the host's memory: made
    // as small as a small VPS's (what it holds and 4 MiB) before it is
    // filled, and given its size back after.
    let opts = c.ok("findmnt -n -o OPTIONS /run");
    let size = opts
        .split(',')
        .find_map(|o| o.strip_prefix("size="))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{name}: /run has no size option: {opts}"));
    let used_k: u64 = c
        .ok("df -k --output=used /run | tail -n 1")
        .trim()
        .parse()
        .unwrap();
    c.ok(&format!("mount -o remount,size={}k /run", used_k + 4096));
    let filled = fill(c, "/run");
    let t_full = Instant::now();
    let since = c.ok("date +%s").trim().to_string();
    let seen = starts(c).len();
    let failed_seen = std::cell::Cell::new(false);
    // A crash loop: the bot crashes as soon as it is READY.
    c.ok(&format!("echo crash > {MODE}"));
    let mut s = Vec::new();
    until(
        c,
        suite,
        "a backoff of its longest delay with /run full",
        60,
        |c| {
            if failed(c, suite) {
                failed_seen.set(true);
            }
            s = starts(c)[seen..].to_vec();
            s.len() >= 5 && s.windows(2).last().is_some_and(|w| w[1] - w[0] >= MAX_WAIT)
        },
    );
    let during = status(c);
    let gaps: Vec<f64> = s.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        !failed_seen.get(),
        "{name}: the unit was failed during the crash loop with /run full\n{}",
        diagnosis(c, suite)
    );
    let said = naming(&during, "the filesystem /run (tmpfs) has");
    assert!(
        said.is_some(),
        "{name}: status does not name the full /run: {:?}",
        reasons(&during)
    );
    let ping = pinged_during(c, suite, "/run full");
    let lasted = t_full.elapsed().as_secs_f64();
    // What the backoff and (under systemd) PID 1 said meanwhile.
    let words = if suite.has_systemd() {
        c.sh(&format!(
            "journalctl -u {UNIT} -o cat --no-pager -q --since=@{since} | grep -E '^backoff: ' | grep -E 'cannot|waiting' | sort | uniq -c; echo 'PID 1, about space or failures, while /run was full:'; journalctl _PID=1 -o cat --no-pager -q --since=@{since} | grep -iE 'space|fail' | sort | uniq -c | sort -rn | head -n 8; echo 'and before:'; journalctl _PID=1 -o cat --no-pager -q --until=@{since} | grep -iE 'space|fail' | sort | uniq -c | sort -rn | head -n 8"
        ))
        .stdout
    } else {
        c.sh(&format!(
            "cat /run/jarvis-supervisor-run/engine.log {CODE}/logs/supervisor.stdout 2>/dev/null | grep -E 'backoff: .*(cannot|waiting)|No space' | sort | uniq -c"
        ))
        .stdout
    };

    // Freed, and the crash's cause gone at the same moment.
    c.ok(&format!("rm /run/{FILLER} {MODE}"));
    let t_free = Instant::now();
    until(c, suite, "the bot running after /run was freed", 30, |c| {
        if failed(c, suite) {
            failed_seen.set(true);
        }
        running(c, suite)
    });
    let up = t_free.elapsed().as_secs_f64();
    until(c, suite, "status no longer naming /run", 10, |c| {
        naming(&status(c), "the filesystem /run ").is_none()
    });
    let recovered = t_free.elapsed().as_secs_f64();
    c.ok(&format!("mount -o remount,size={size} /run"));
    assert!(
        !failed_seen.get(),
        "{name}: the unit was failed after /run was freed"
    );
    if suite.has_systemd() {
        assert_eq!(c.prop(UNIT, "ActiveState"), "active", "{name}");
    }
    assert_eq!(
        lasting_hashes(c),
        before,
        "{name}: the state changed with /run full"
    );
    assert!(
        history(c).starts_with(&kept),
        "{name}: the health history lost samples"
    );
    // Each gap is the backoff's wait and the bot's own run (READY after
    // 1 s, then the crash): it grows to the longest wait (the last gap
    // holds it: the wait above). Without backoff it is RestartSec= (1 s)
    // and that run, every time; a load that slows one start moves one gap,
    // not the growth from the first to the last.
    let (first, last) = (gaps[0], gaps[gaps.len() - 1]);
    assert!(
        last >= MAX_WAIT && last - first >= 2.0,
        "{name}: the backoff did not grow with /run full: gaps {gaps:?}"
    );
    println!(
        "figures: {name}: /run full ({filled} bytes filled) for {lasted:.1} s: {} starts of the bot, gaps {:?} s (growing to the {MAX_WAIT} s longest wait), the unit never failed; the heartbeat got {ping}; status said {:?}; freed: the bot running {up:.1} s after, status clear {recovered:.1} s after",
        s.len(),
        gaps.iter().map(|g| (g * 10.0).round() / 10.0).collect::<Vec<_>>(),
        said.unwrap()
    );
    println!("{name}: said meanwhile:\n{}", words.trim_end());
}

fn scenario(suite: Suite) {
    let name = suite.name();
    let t0 = Instant::now();
    let c = Container::boot(suite);
    deploy_standin(&c);
    c.ok(&format!(
        "printf 'STANDIN_START_LOG=data/starts.log\\nSTANDIN_FLOOD_LINES_PER_S=100\\n' >> {CODE}/.env"
    ));
    // A backoff that reaches its longest delay within seconds (the unit's
    // own steps, with a shorter --max).
    c.write(
        "/etc/systemd/system/jarvis-supervisor.service.d/50-test.conf",
        &format!("[Service]\nExecStartPre=\nExecStartPre=/usr/bin/jarvisctl backoff --max {MAX_WAIT}\nExecStartPre=/usr/bin/jarvisctl check --preflight\n"),
    );
    c.ok("mkdir -p /var/lib/prometheus/node-exporter /etc/jarvis-supervisor");
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "{name}: {}", out.all());
    until(&c, suite, "the bot running after the install", 60, |c| {
        running(c, suite)
    });
    if suite.has_systemd() {
        // Its runs here are the test's, one at a time.
        c.ok("systemctl stop jarvis-supervisor-health.timer");
    }
    c.write("/var/tmp/receiver.py", RECEIVER);
    c.ok(&format!(
        "setsid nohup python3 /var/tmp/receiver.py {PORT} {PINGS} </dev/null >/dev/null 2>&1 &"
    ));
    c.write(
        "/etc/jarvis-supervisor/heartbeat.conf",
        &format!("url = http://127.0.0.1:{PORT}/{SECRET}\n"),
    );
    c.ok("chmod 640 /etc/jarvis-supervisor/heartbeat.conf");
    until(&c, suite, "the heartbeat receiver", 10, |c| {
        c.sh(&format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{PORT}'"))
            .status
            == 0
    });

    // /var/lib first: a record there is OK while the logs are on their
    // own small disk (under 1 GiB, which status warns about).
    var_lib_full(&c, suite);
    logs_full(&c, suite);
    run_full(&c, suite);
    println!(
        "figures: {name}: the three cells in {:.0} s (the whole test with boot and install)",
        t0.elapsed().as_secs_f64()
    );
}

pub fn both_engines() {
    on_suites(&[Suite::Bookworm, Suite::Sysvinit], scenario);
}
