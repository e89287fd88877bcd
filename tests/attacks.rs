//! Issue 13: attacks by the service user on what root runs (`setup`,
//! `status`, `check`, `env lint`, `run`), performed as `nobody` against the
//! built binary run as root on a temporary root (`--root`), each showing
//! that the attack fails, says why, and that nothing outside the service's
//! tree changed; and every hostile input of the issue's table fed to the
//! binary. Root only: ignored by a plain `cargo test`, run by
//! `cargo xtask test` with the engine tests.

mod common;
use common::host::{tail, Host};
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Finding 17: a `.env` hard-linked to a root file (possible where
/// fs.protected_hardlinks=0; made here by root for that reason) is refused,
/// not chowned to the service user.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn setup_refuses_a_hard_linked_env() {
    let h = Host::new();
    let before = h.target();
    fs::hard_link(h.path("root-only/shadow"), h.path("home/jarvis/Jarvis/.env")).unwrap();
    let out = h.setup();
    let all = text(&out);
    assert!(!out.status.success(), "setup accepted a hard-linked .env:\n{all}");
    assert!(all.contains(".env") && all.contains("hard link"), "{all}");
    assert_eq!(h.target(), before, "the root file's owner or mode changed");
    assert!(!all.contains("$6$hash"), "{all}");
}

/// The attacker's loop: swap `a` and `b` with renameat2(RENAME_EXCHANGE)
/// for `secs` seconds, making the directory's mode wrong each time so that
/// setup has a chmod to do.
const SWAPPER: &str = r#"
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b, secs = sys.argv[1].encode(), sys.argv[2].encode(), float(sys.argv[3])
n, t0 = 0, time.time()
while time.time() - t0 < secs:
    try:
        if not os.path.islink(sys.argv[1]):
            os.chmod(sys.argv[1], 0o777)
    except OSError:
        pass
    libc.renameat2(-100, a, -100, b, 2)
    n += 1
print(n)
"#;

/// Root's side of a race: `root_run` again and again for 7 s while the
/// attacker's script (as nobody, for 8 s, printing how many swaps it made)
/// runs; the root-only file's owner and mode are checked after each run.
/// Returns the runs and the swaps (at least `min_swaps`: the attack ran).
fn race(h: &Host, attacker: &str, what: &str, min_swaps: u64, mut root_run: impl FnMut()) -> (usize, u64) {
    let before = h.target();
    let swap = nobody_sh(attacker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    let t0 = Instant::now();
    let mut runs = 0;
    while t0.elapsed() < Duration::from_secs(7) {
        root_run();
        runs += 1;
        assert_eq!(
            h.target(),
            before,
            "after {runs} {what}: the root file's owner or mode changed"
        );
    }
    let out = swap.wait_with_output().unwrap();
    let swaps = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let n = swaps.parse::<u64>().unwrap_or(0);
    assert!(
        n >= min_swaps,
        "the attacker did not run: {swaps} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(h.target(), before);
    (runs, n)
}

/// Finding 7: while root runs setup again and again, the service user
/// keeps exchanging its `bots` directory with a link to a root-only file.
/// The file's mode and owner never change.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn setup_never_chmods_through_a_link_swapped_in_after_its_check() {
    let h = Host::new();
    let before = h.target();
    let bots = h.path("home/jarvis/Jarvis/bots");
    let evil = h.path("home/jarvis/Jarvis/evil");
    let attacker = format!(
        "ln -s {} {} && exec python3 -c '{}' {} {} 8",
        h.path("root-only/shadow").display(),
        evil.display(),
        SWAPPER.replace('\'', "\""),
        bots.display(),
        evil.display()
    );
    let (runs, swaps) = race(&h, &attacker, "setups", 1001, || {
        let _ = h.setup();
    });
    println!("figures: {runs} setups raced {swaps} exchanges; the root file kept {before:?}");
}

/// Finding 8, the log part: `status` shows the last error lines of the
/// bot's output file, which sits in the service user's `logs/`. As that
/// user, link it to a root-only file, to /dev/zero, or make it a FIFO: root's
/// `status` shows none of the root file, says why no line is shown, and
/// returns at once.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn status_never_reads_a_linked_or_fifo_log_as_root() {
    let h = Host::new();
    // Words that status picks as error lines, in the root-only file.
    h.write("root-only/shadow", "root:$6$hash:ERROR:0:99999:7:::\n");
    fs::set_permissions(h.path("root-only/shadow"), fs::Permissions::from_mode(0o600)).unwrap();
    let log = h.code("logs/supervisor.stdout");
    as_nobody(&format!(
        "printf 'TELEGRAM_BOT_TOKEN=123456789:AAFakeTokenForTestsOnly_abcdefghijklmn\\n' > {env} && chmod 600 {env}",
        env = h.code(".env").display()
    ));
    let attacks = [
        (
            "a link to a root-only file",
            format!("ln -s {} {}", h.path("root-only/shadow").display(), log.display()),
        ),
        (
            "a link to /dev/zero",
            format!("ln -s /dev/zero {}", log.display()),
        ),
        ("a FIFO", format!("mkfifo {}", log.display())),
    ];
    for (what, attack) in attacks {
        as_nobody(&format!("rm -f {}; {attack}", log.display()));
        for args in [&["status"][..], &["status", "--json"][..]] {
            let ran = h.run(args, false);
            ran.no_panic(&format!("status with {what}"));
            let all = ran.all();
            if args.len() == 2 {
                let v: serde_json::Value = serde_json::from_slice(&ran.out.stdout)
                    .unwrap_or_else(|e| panic!("not JSON ({e}):\n{all}"));
                // The fallback path reads the output file; say so if this
                // host answered from systemd instead.
                assert_eq!(
                    v["supervisor"], "jarvisctl run",
                    "this test needs a host without systemd running: {v}"
                );
            }
            assert!(
                !all.contains("$6$hash"),
                "status showed the root-only file through {what}:\n{all}"
            );
            assert!(
                all.contains("error lines not shown") && all.contains("supervisor.stdout"),
                "status does not say why no line is shown ({what}):\n{all}"
            );
            assert!(ran.secs < 10.0, "status took {:.1} s with {what}", ran.secs);
        }
        println!("status with {what} as the log: refused, answered in well under a second");
    }
    // Still what it was: root's file, mode 0600, unchanged.
    assert_eq!(h.target(), (0, 0, 0o600));
    assert_eq!(
        fs::read_to_string(h.path("root-only/shadow")).unwrap(),
        "root:$6$hash:ERROR:0:99999:7:::\n"
    );
}

/// Finding 6: the bot prints its own `.env` values in the forms a program
/// does (a token in a URL, URL-encoded; a config dumped as JSON; a PEM key
/// line by line; a 3-character PIN as a word), in lines that `status`
/// picks as errors. Root's `status` and `status --json` show none of them.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn status_masks_the_bots_values_in_every_form_it_prints_them() {
    let h = Host::new();
    let values = [
        (
            "TELEGRAM_BOT_TOKEN",
            "123456789:AAFakeTokenForTestsOnly_abcdefghijklmn",
        ),
        ("DB_PASSWORD", "p@ss w/rd&ünï"),
        ("PIN", "7x9"),
    ];
    let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END PRIVATE KEY-----";
    let mut text_env: String = values.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    text_env += &format!("WALLET_KEY=\"{pem}\"\n");
    // The bot's lines: every form of every value, each on an error line.
    let mut lines = String::new();
    let mut forms: Vec<String> = Vec::new();
    for (_, v) in values.iter().copied().chain([("WALLET_KEY", pem)]) {
        let url: String = v
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let json = serde_json::to_string(v).unwrap();
        let json = json[1..json.len() - 1].to_string();
        lines += &format!("ERROR GET https://api.example/x?key={url}&y=1 failed\n");
        lines += &format!("ERROR config {{\"secret\": \"{json}\"}}\n");
        forms.extend([url, json]);
        for l in v.lines() {
            lines += &format!("Traceback: value {l} rejected\n");
            forms.push(l.to_string());
        }
    }
    // status shows the last 5 error lines: one run per 4 lines.
    let all_lines: Vec<&str> = lines.lines().collect();
    h.write_as_service_user(".env", text_env.as_bytes());
    let mut shown = 0;
    for chunk in all_lines.chunks(4) {
        h.write_as_service_user("logs/supervisor.stdout", (chunk.join("\n") + "\n").as_bytes());
        for args in [&["status"][..], &["status", "--json"][..]] {
            let ran = h.run(args, false);
            let all = ran.all();
            for f in forms.iter().filter(|f| f.len() >= 3 && !f.starts_with("-----")) {
                assert!(!all.contains(f.as_str()), "status printed a value ({f}):\n{all}");
            }
            assert!(
                all.contains("****"),
                "the error lines are not shown masked:\n{all}"
            );
            shown += 1;
        }
    }
    println!(
        "figures: {} forms of 4 values in {} bot lines; {shown} status runs showed none",
        forms.len(),
        all_lines.len()
    );
}

/// Finding 5: a line that cannot be parsed is never echoed. The service
/// user's `.env` holds a URL with a password on a line without `=`, and a
/// PEM key whose quotes are never closed. Root's `env lint`, `check` and
/// the preflight (whose output goes to the journal), in both output forms,
/// name the lines and print neither.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn invalid_env_lines_are_never_echoed_by_root() {
    let h = Host::new();
    let env = h.code(".env");
    let body = "TELEGRAM_BOT_TOKEN=123456789:AAFakeTokenForTestsOnly_abcdefghijklmn\n\
                DATABASE_URL: postgres://trader:Hunter2Secret@db.example/trades\n\
                WALLET_KEY=\"-----BEGIN PRIVATE KEY-----\n\
                MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n";
    h.write_as_service_user(".env", body.as_bytes());
    let env_s = env.display().to_string();
    for args in [
        &["env", "lint", &env_s][..],
        &["env", "lint", "--json", &env_s][..],
        &["check"][..],
        &["check", "--json"][..],
        &["check", "--preflight"][..],
    ] {
        let ran = h.run(args, false);
        ran.no_panic(&format!("{args:?}"));
        let all = ran.all();
        assert_ne!(
            ran.out.status.code(),
            Some(0),
            "{args:?} passed a broken .env:\n{all}"
        );
        for secret in ["Hunter2Secret", "postgres://", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"] {
            assert!(!all.contains(secret), "{args:?} echoed {secret}:\n{all}");
        }
        assert!(all.contains("line 2"), "{args:?} does not name line 2:\n{all}");
    }
}

/// Acceptance 4 and finding 16: the service user writes a 1,000,000-line
/// `.env` (every 1000th line broken). Every root command that reads it
/// ends without a panic, with stdout open or closed, and says what is
/// wrong; `run` refuses to start the bot with the reason (the kernel would
/// refuse that environment). The times are printed; the linear-time
/// figure is `cargo xtask bench`'s.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn a_million_line_env_panics_nothing_and_says_what_is_wrong() {
    let h = Host::new();
    let env = h.code(".env");
    let mut body = String::from("TELEGRAM_BOT_TOKEN=123456789:AAFakeTokenForTestsOnly_abcdefghijklmn\n");
    for i in 0..1_000_000 {
        if i % 1000 == 999 {
            body += &format!("broken line {i}\n");
        } else {
            body += &format!("KEY_{i}=value_{i}\n");
        }
    }
    h.write_as_service_user(".env", body.as_bytes());
    let env_s = env.display().to_string();
    let mut figures = Vec::new();
    for args in [
        &["env", "lint", &env_s][..],
        &["check"][..],
        &["check", "--preflight"][..],
        &["status"][..],
        &["status", "--json"][..],
    ] {
        // With stdout closed too, where the output is long (a write fails).
        let closed_too = args.len() == 1 || args[0] == "env";
        for closed in [false, true].into_iter().filter(|c| !c || closed_too) {
            let ran = h.run(args, closed);
            ran.no_panic(&format!("{args:?} (stdout closed: {closed})"));
            if !closed {
                let all = ran.all();
                if args[0] != "status" {
                    assert!(
                        all.contains("line 1001"),
                        "{args:?} does not name a broken line:\n{}",
                        tail(&all)
                    );
                }
                if args == ["check"] {
                    assert!(
                        all.contains("Argument list too long"),
                        "check does not say the bot cannot start:\n{}",
                        tail(&all)
                    );
                }
                figures.push(format!("{}: {:.2} s", args.join(" "), ran.secs));
            }
        }
    }
    // `run`: the environment is read, found too large, and said so; the
    // engine is then stopped by the test.
    let unit = h.path("big.service");
    fs::write(
        &unit,
        format!(
            "[Service]\nType=simple\nUser=nobody\nEnvironmentFile={}\nExecStart=/bin/true\nRestart=no\n",
            env.display()
        ),
    )
    .unwrap();
    let unit_s = unit.display().to_string();
    let ran = h.run(&["run", "--unit", &unit_s], false);
    ran.no_panic("run");
    let all = ran.all();
    assert!(
        all.contains("environment is too large") && all.contains("ARG_MAX"),
        "run does not say why the bot cannot start:\n{all}"
    );
    figures.push(format!("run: {:.2} s to refuse", ran.secs));
    println!(
        "figures (1,000,000-line .env, {}): {}",
        common::bin_under_attack().1,
        figures.join("; ")
    );
}

/// Acceptance 4, the rest of the findings table, against the built binary
/// as root: huge time spans (13), a drop-in line without `=` and one
/// outside a section (14), a history with an invalid UTF-8 byte among
/// 40,001 lines (15), a heartbeat URL with a token in its query and a line
/// holding only a URL (12), non-ASCII values. These files are root's, so
/// no service-user attack reaches them; each input is still fed to every
/// command that reads it: no panic, and what each says is right.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn every_input_in_the_findings_table_panics_nothing() {
    let h = Host::new();
    h.write(
        "etc/systemd/system/jarvis-supervisor.service.d/20-huge.conf",
        "text before any section\n[Service]\nTimeoutStopSec=99999999999999999999\n\
         RestartSec=18446744073709551615s\nWatchdogSec=9999999999999h\na line with no equals sign\n",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut history: Vec<u8> = (0..40_000u64)
        .flat_map(|i| {
            format!(
                "{{\"t\":{},\"rss\":{},\"restarts\":0,\"state\":\"active\"}}\n",
                now - 40_000 + i,
                100 << 20
            )
            .into_bytes()
        })
        .collect();
    history.extend_from_slice(b"{\"t\":1,\"state\":\"\xff\"}\n");
    fs::create_dir_all(h.path("var/lib/jarvis-supervisor")).unwrap();
    fs::write(h.path("var/lib/jarvis-supervisor/samples.jsonl"), &history).unwrap();
    // Port 9 on loopback: nothing listens, the ping fails at once.
    h.write(
        "etc/jarvis-supervisor/heartbeat.conf",
        "url = http://127.0.0.1:9/ping?token=SECRETTOKEN1\nhttp://127.0.0.1:9/x?token=SECRETTOKEN2\n",
    );
    h.write_as_service_user(
        ".env",
        "TELEGRAM_BOT_TOKEN=123456789:AAFakeTokenForTestsOnly_abcdefghijklmn\nTELEGRAM_ADMIN_IDS=123456789\nGREETING=\"grüße 🚀\"\n"
            .as_bytes(),
    );
    for args in [
        &["check"][..],
        &["check", "--json"][..],
        &["check", "--preflight"][..],
        &["status"][..],
        &["status", "--json"][..],
        &["status", "--trend"][..],
        &["status", "--trend", "--json"][..],
        &["status", "--record"][..],
    ] {
        let ran = h.run(args, false);
        ran.no_panic(&format!("{args:?}"));
        let all = ran.all();
        assert!(
            !all.contains("SECRETTOKEN"),
            "{args:?} printed the heartbeat token:\n{all}"
        );
        assert!(
            !all.contains("a line with no equals"),
            "{args:?} echoed a unit line:\n{all}"
        );
        if args[0] == "check" {
            assert!(
                all.contains("20-huge.conf:6"),
                "{args:?} does not name the bad drop-in line:\n{all}"
            );
        }
        if args == ["status", "--trend"] {
            assert!(
                all.contains("from 40000 samples"),
                "the damaged line cost more than itself:\n{all}"
            );
        }
        if args == ["status", "--record"] {
            assert!(
                all.contains("heartbeat.conf:2") && all.contains("no ping sent"),
                "the bad heartbeat line is not named:\n{all}"
            );
        }
    }
    // With the URL alone: the ping fails, is reported, and the token stays
    // hidden.
    h.write(
        "etc/jarvis-supervisor/heartbeat.conf",
        "url = http://127.0.0.1:9/ping?token=SECRETTOKEN1\n",
    );
    let ran = h.run(&["status", "--record"], false);
    ran.no_panic("status --record");
    let all = ran.all();
    assert!(
        all.contains("127.0.0.1:9") && !all.contains("SECRETTOKEN"),
        "the failed ping is not reported, or shows its token:\n{all}"
    );
    // run with the huge spans: it starts, the program exits, run ends.
    let unit = h.path("huge.service");
    fs::write(
        &unit,
        "[Service]\nType=simple\nUser=nobody\nExecStart=/bin/true\nRestart=no\n\
         TimeoutStopSec=99999999999999999999\nRestartSec=18446744073709551615s\nWatchdogSec=9999999999999h\n",
    )
    .unwrap();
    let unit_s = unit.display().to_string();
    let ran = h.run(&["run", "--unit", &unit_s], false);
    ran.no_panic("run with huge time spans");
    assert_eq!(ran.out.status.code(), Some(0), "{}", ran.all());
}

/// `jarvisctl pause` and `resume` make and remove a file in the code root,
/// which the service user writes. A link planted under the pause file's
/// name is neither written through nor followed by the removal, and a code
/// root swapped for a link to a root directory is refused: nothing outside
/// the service's tree changes.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn pause_and_resume_never_write_or_remove_through_a_planted_link() {
    let h = Host::new();
    let before = h.target();
    let shadow = fs::read(h.path("root-only/shadow")).unwrap();
    let code = h.path("home/jarvis/Jarvis");
    as_nobody(&format!(
        "ln -s {} {}/PAUSE_AUTOMATIONS",
        h.path("root-only/shadow").display(),
        code.display()
    ));
    let jarvisctl = |args: &[&str]| {
        std::process::Command::new(BIN)
            .arg("--root")
            .arg(h.dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = jarvisctl(&["pause", "--reason", "attack"]);
    let all = text(&out);
    assert!(all.contains("was already there; kept"), "{all}");
    assert_eq!(fs::read(h.path("root-only/shadow")).unwrap(), shadow);
    assert_eq!(h.target(), before, "the root file's owner or mode changed");
    let out = jarvisctl(&["resume"]);
    assert!(
        fs::symlink_metadata(code.join("PAUSE_AUTOMATIONS")).is_err(),
        "the link stays: {}",
        text(&out)
    );
    assert_eq!(
        fs::read(h.path("root-only/shadow")).unwrap(),
        shadow,
        "resume removed or changed the link's target"
    );
    assert_eq!(h.target(), before);

    // The code root itself swapped for a link to a root-only directory.
    as_nobody(&format!(
        "mv {c} {c}.away && ln -s {} {c}",
        h.path("root-only").display(),
        c = code.display()
    ));
    let out = jarvisctl(&["pause"]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("refused"), "{all}");
    assert!(
        !h.path("root-only/PAUSE_AUTOMATIONS").exists(),
        "pause wrote into a root directory"
    );
    let _ = fs::remove_file(&code);
    fs::rename(h.path("home/jarvis/Jarvis.away"), &code).unwrap();
}

/// The health unit's `TimeoutStartSec=`: the bound `status --record` runs in.
fn health_timeout() -> Duration {
    let unit = fs::read_to_string(repo("systemd/jarvis-supervisor-health.service")).unwrap();
    let secs = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStartSec="))
        .and_then(|v| v.trim().trim_end_matches('s').parse::<u64>().ok())
        .expect("TimeoutStartSec= in seconds in the health unit");
    Duration::from_secs(secs)
}

/// The engine's record that the bot is up, as `jarvisctl run` writes it,
/// for a process named `jarvisctl` that stands for both the engine and the
/// bot; it ends when the returned guard is dropped, the test passed or not.
fn bot_up_under_the_engine(h: &Host) -> KillOnDrop {
    let bin = h.path("fake-engine/jarvisctl");
    fs::create_dir_all(bin.parent().unwrap()).unwrap();
    fs::copy("/bin/sleep", &bin).unwrap();
    let child = std::process::Command::new(&bin).arg("600").spawn().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let state = serde_json::json!({
        "schema": 1, "state": "running", "engine_pid": child.id(), "main_pid": child.id(),
        "n_restarts": 0, "result": "success", "last_exit": null, "last_watchdog_unix": null,
        "watchdog_usec": 0, "status_text": "", "started_unix": now - 600.0, "memory_limit": "none",
    });
    h.write("run/jarvis-supervisor-run/state.json", &state.to_string());
    KillOnDrop(child)
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 24, finding 2 and acceptance 2: the service user writes a `.env`
/// of 5,000 values and 2 MiB of `[cN] Component crashed` lines, each
/// naming one of the values, into the bot's output. With the bot up under
/// `jarvisctl run`, root's `status --json` and the health timer's
/// `status --record` read those lines for the components: both finish well
/// within the health unit's `TimeoutStartSec=` (the old masking took
/// 18.9 s with 500 values, and was killed at 120 s with 5,000), and the
/// crash messages are shown masked.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn status_record_is_bounded_with_5000_values_and_2_mib_of_crash_lines() {
    let h = Host::new();
    let bound = health_timeout();
    let values: Vec<String> = (0..5000)
        .map(|i| format!("secret-{i:05}-abcdefghijklmnop"))
        .collect();
    let env: String = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("KEY_{i}={v}\n"))
        .chain(["TELEGRAM_BOT_TOKEN=123456789:AAFakeTokenForTestsOnly_abcdefghijklmn\n".to_string()])
        .collect();
    h.write_as_service_user(".env", env.as_bytes());
    let stamp = chrono::Local::now().format("%Y-%m-%d %H:%M:%S,%3f").to_string();
    let mut log = String::new();
    let mut n = 0;
    while log.len() < 2 << 20 {
        log += &format!(
            "{stamp} - jarvis.supervisor - ERROR - [c{}] Component crashed (attempt {}/100): request refused for token {}\n",
            n % 20,
            n % 100,
            values[n % values.len()]
        );
        n += 1;
    }
    h.write_as_service_user("logs/supervisor.stdout", log.as_bytes());
    let bot = bot_up_under_the_engine(&h);

    let ran = h.run(&["status", "--json"], false);
    ran.no_panic("status --json");
    let v: serde_json::Value = serde_json::from_slice(&ran.out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", tail(&ran.all())));
    // No health record in the output: the components are those its crash
    // lines name, each with its newest message, masked.
    let comps = &v["components"];
    let list = comps["list"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 20, "the crash lines were not read: {comps}");
    for c in &list {
        assert!(c["crashes_1h"].as_u64() > Some(0), "{c}");
        assert_eq!(c["last_error"], "request refused for token ****", "{c}");
    }
    let all = ran.all();
    for v in &values {
        assert!(!all.contains(v.as_str()), "status printed a value ({v})");
    }

    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().display().to_string();
    let rec = h.run_with(
        &["status", "--record"],
        false,
        &[("JARVIS_TEXTFILE_DIR", &dir_s)],
        None,
    );
    rec.no_panic("status --record");
    let prom = fs::read_to_string(dir.path().join("jarvis_supervisor.prom"))
        .unwrap_or_else(|e| panic!("no textfile ({e}):\n{}", tail(&rec.all())));
    assert!(
        prom.contains("jarvis_supervisor_component_crashes_1h{component=\"c0\"}"),
        "{prom}"
    );
    drop(bot);
    for (what, secs) in [("status --json", ran.secs), ("status --record", rec.secs)] {
        assert!(
            secs < bound.as_secs_f64() / 4.0,
            "{what} took {secs:.1} s, the health unit allows {} s",
            bound.as_secs()
        );
    }
    println!(
        "figures: {} values, {n} crash lines ({} KiB): status --json {:.2} s, status --record {:.2} s ({}; bound {} s)",
        values.len(),
        log.len() / 1024,
        ran.secs,
        rec.secs,
        bin_under_attack().1,
        bound.as_secs()
    );
}

/// The attacker's watch: each time root's temporary textfile appears in
/// the directory, put a link to `target` in its place (rename over it:
/// one step), then make the next link. Prints how many it swapped.
const TEMP_SWAPPER: &str = r#"
import ctypes, os, select, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
d, target, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
fd = libc.inotify_init1(os.O_NONBLOCK)
libc.inotify_add_watch(fd, d.encode(), 0x100)
spare = os.path.join(d, "spare")
n, t0 = 0, time.time()
while time.time() - t0 < secs:
    if not os.path.lexists(spare):
        os.symlink(target, spare)
    if not select.select([fd], [], [], 0.2)[0]:
        continue
    buf = os.read(fd, 65536)
    i = 0
    while i < len(buf):
        _, _, _, size = struct.unpack_from("iIII", buf, i)
        name = buf[i + 16:i + 16 + size].rstrip(b"\0").decode()
        i += 16 + size
        if name.startswith(".jarvis_supervisor.") and name.endswith(".tmp"):
            try:
                os.rename(spare, os.path.join(d, name))
                n += 1
                os.symlink(target, spare)
            except OSError:
                pass
print(n)
"#;

/// Issue 24, finding 10: the textfile directory is writable by every user.
/// Another user (`nobody` here) swaps root's temporary file for a link to
/// a root-only 0600 file the moment it appears, while root runs the health
/// timer's `status --record` again and again. The root file stays 0600
/// (the old code set the mode by path: 0644 after some hundred runs).
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn status_record_never_chmods_a_file_swapped_into_the_textfile_directory() {
    let h = Host::new();
    let before = h.target();
    let dir = h.path("textfile");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let dir_s = dir.display().to_string();
    let attacker = format!(
        "exec python3 -c '{}' {dir_s} {} 8",
        TEMP_SWAPPER.replace('\'', "\""),
        h.path("root-only/shadow").display()
    );
    let mut refused = 0;
    let (runs, swaps) = race(&h, &attacker, "runs of status --record", 1, || {
        let ran = h.run_with(
            &["status", "--record"],
            false,
            &[("JARVIS_TEXTFILE_DIR", &dir_s)],
            None,
        );
        ran.no_panic("status --record");
        if ran.all().contains("another user replaced the file") {
            refused += 1;
        }
    });
    println!(
        "figures: {runs} runs of status --record raced {swaps} swaps of the temporary file; {refused} said the file was replaced; the root file kept {before:?}"
    );
}

/// Issue 24, finding 11: the service user makes its `.env` a link to a
/// root-only env file, then a FIFO, and root runs the README's
/// `sudo jarvisctl env lint .env` in the code directory (and with the full
/// path). Each is refused at once, naming the path and the fix; no key of
/// the root file is shown.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn env_lint_as_root_never_follows_a_linked_env_nor_waits_on_a_fifo() {
    let h = Host::new();
    h.write(
        "root-only/root.env",
        "ROOT_ONLY_DATABASE_PASSWORD=hunter2hunter2\nTELEGRAM_BOT_TOKEN=123456789:AAFakeTokenForTestsOnly_abcdefghijklmn\n",
    );
    fs::set_permissions(h.path("root-only/root.env"), fs::Permissions::from_mode(0o600)).unwrap();
    let env = h.code(".env");
    let env_s = env.display().to_string();
    let attacks = [
        (
            "a link to a root-only env file",
            format!("ln -s {} {env_s}", h.path("root-only/root.env").display()),
            "symbolic link",
        ),
        ("a FIFO", format!("mkfifo {env_s}"), "not a regular file"),
    ];
    let mut times = Vec::new();
    for (what, attack, why) in attacks {
        as_nobody(&format!("rm -f {env_s}; {attack}"));
        for args in [
            &["env", "lint", ".env"][..],
            &["env", "lint", "--json", &env_s][..],
        ] {
            let ran = h.run_with(args, false, &[], Some(&h.code("")));
            ran.no_panic(&format!("{args:?} with {what}"));
            let all = ran.all();
            assert_ne!(ran.out.status.code(), Some(0), "{args:?} passed {what}:\n{all}");
            assert!(
                !all.contains("ROOT_ONLY_DATABASE_PASSWORD") && !all.contains("is set and well-formed"),
                "{args:?} read the root file through {what}:\n{all}"
            );
            assert!(
                all.contains(".env") && all.contains(why) && all.contains("replace"),
                "{args:?} does not name {what} and the fix:\n{all}"
            );
            assert!(ran.secs < 5.0, "{args:?} took {:.1} s with {what}", ran.secs);
            times.push(ran.secs);
        }
    }
    let slowest = times.iter().copied().fold(0.0, f64::max);
    println!("figures: env lint as root refused a linked .env and a FIFO in {} runs, the slowest {slowest:.2} s; no key of the root file shown", times.len());
}
