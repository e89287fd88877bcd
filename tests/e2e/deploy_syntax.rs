//! Issue 28: the deploy's syntax check runs on the host, with the
//! interpreter that runs the bot there, on the files the deploy changes.
//! One Debian 13 host (Python 3.13; the workstation may have an older
//! one): a module the bot imports that only Python 3.12 and later accept
//! (PEP 701's nested quotes) deploys and runs; an example script with a
//! syntax error that nothing imports is a warning, deployed to a bot as
//! busy as the real one and verified by the new process's own component
//! record among its lines; then a deploy whose
//! imported module does not compile is refused before the swap, and the
//! bot runs on, on the old version.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::deploy::{code, diag, fleet, healthy, host_name, json_of, pid, row, version};
use super::roots::Suite;
use super::CODE;

const PORT: u16 = 2251;

/// The stand-in, version `n`, whose package `core` imports `core.fstrings`
/// (`fstrings`: that module's source), with an example nothing imports
/// that does not compile.
fn tree(dir: &Path, n: u32, fstrings: &str) -> PathBuf {
    let d = code(dir, n, false, 0);
    fs::write(d.join("core/fstrings.py"), fstrings).unwrap();
    let init = d.join("core/__init__.py");
    let mut text = fs::read_to_string(&init).unwrap();
    text.push_str("\nfrom .fstrings import LABEL  # noqa: E402,F401\n");
    fs::write(&init, text).unwrap();
    fs::create_dir_all(d.join("examples")).unwrap();
    fs::write(
        d.join("examples/broken_demo.py"),
        "# A demo that nothing imports.\nprint 'hello'\n",
    )
    .unwrap();
    d
}

/// Python 3.12 and later only: the same quotes inside the f-string.
const PEP701: &str = "D = {\"k\": \"pep701\"}\nLABEL = f\"{D[\"k\"]}\"\n";
/// A syntax error on line 2 of a module the bot imports.
const BROKEN: &str = "D = {\"k\": \"pep701\"}\nLABEL = f\"{D[\"k\"]\n";

/// Makes the bot on `c` busy (see the call) and waits until its first
/// burst is in the journal; the burst's size.
fn busy(c: &super::container::Container) -> u64 {
    let (burst, interval) = c.journald_rate_limit();
    // Below journald's limit, as in the busy-bot test; 30 s of it at most.
    let rate = ((0.7 * burst / interval) as u64).min(1_000);
    let lines = rate * 30;
    c.ok(&format!(
        "printf 'STANDIN_HEALTH_INTERVAL=5\\nSTANDIN_BUSY_BURST_LINES={lines}\\nSTANDIN_BUSY_BURST_PER_S={rate}\\nSTANDIN_BUSY_LINES_PER_S=50\\nSTANDIN_NO_HTTP=1\\n' >> {CODE}/.env && systemctl restart jarvis-supervisor"
    ));
    let t0 = std::time::Instant::now();
    loop {
        let n: u64 = c
            .ok("journalctl -u jarvis-supervisor --since -1h -o cat -q | grep -c ' busy=' || true")
            .trim()
            .parse()
            .unwrap_or(0);
        if n >= lines {
            return lines;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(90),
            "the busy bot wrote {n} of {lines} lines in 90 s"
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

pub fn host_python() {
    let f = fleet("syntax", &[(Suite::Trixie, PORT)]);
    let c = f.a();
    let host = host_name(PORT);
    let timing = ["--settle", "3", "--ready-timeout", "30", "--json"];
    let run = |what: &str, dir: &Path| {
        let mut a = vec!["--host", host.as_str(), "--code", dir.to_str().unwrap()];
        a.extend(timing);
        f.deploy(what, &a)
    };

    // The stand-in as it stands on the host, as a first deploy: every .py
    // file compiled, none broken.
    let v1 = code(f.tmp.path(), 1, false, 0);
    let (rc, out, err, _) = run("the stand-in", &v1);
    assert_eq!(rc, 0, "{err}{out}\n{}", diag(c));
    assert!(
        err.contains("compiled with /usr/bin/python3 (Python 3.13"),
        "{err}"
    );
    assert!(!err.contains("WARNING"), "{err}");

    // The workstation's own verdict, for the record: a Python before 3.12
    // refuses the module, which the old local check would have refused.
    let v2 = tree(f.tmp.path(), 2, PEP701);
    let local = Command::new("python3")
        .args([
            "-c",
            "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')",
        ])
        .arg(v2.join("core/fstrings.py"))
        .output()
        .map(|o| o.status.success());
    println!("figures: the workstation's python3 compiles core/fstrings.py: {local:?}");

    // From here the bot is as busy as the real one, and serves no /health:
    // a burst of INFO lines at each start, then 50 a second (180,000 an
    // hour). The deploy's verification must find the new process's
    // component record among them, as fast.
    let burst = busy(c);
    let (rc, out, err, took) = run("a 3.12-only module and a broken example", &v2);
    assert_eq!(rc, 0, "{err}{out}\n{}", diag(c));
    let verified = row(&json_of(&out), &host)["verified"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let now = pid(c);
    assert!(
        verified.starts_with(&format!("pid {now}: its component record has all 4 running, ")),
        "the deploy was not verified by the new process's record (pid {now}): {verified:?}\n{err}"
    );
    assert!(err.contains(&format!("healthy ({verified})")), "{err}");
    let lines = c.ok("journalctl -u jarvis-supervisor --since -1h -o cat -q | wc -l");
    println!(
        "figures: the deploy, syntax check included, took {took:.1?} with the bot writing {burst} lines at each start, then 50/s ({} journal lines in the last hour); verified by {verified}",
        lines.trim()
    );
    assert_eq!(version(c), "2");
    assert!(healthy(c), "{}", diag(c));
    // The bot imported the module: core/__init__.py imports it, and the
    // bot imports core before it starts.
    c.ok(&format!(
        "cd {CODE} && PYTHONPATH={CODE} runuser -u jarvis -- python3 -B -c 'import core; assert core.LABEL == \"pep701\"'"
    ));
    let warned = err
        .lines()
        .find(|l| l.contains("WARNING examples/broken_demo.py line 2 does not compile"))
        .unwrap_or_else(|| panic!("no warning for examples/broken_demo.py:\n{err}"));
    assert!(
        warned.contains("with /usr/bin/python3 (Python 3.13")
            && warned.contains("nothing in the tree imports it"),
        "{warned}"
    );
    let summary = json_of(&out);
    let r = row(&summary, &host);
    assert_eq!(r["result"], "deployed", "{r}");
    let w = r["warnings"].as_array().expect("warnings in the summary");
    assert!(
        w.len() == 1
            && w[0]
                .as_str()
                .unwrap()
                .starts_with("examples/broken_demo.py line 2"),
        "{r}"
    );
    // Compiled in memory: no byte code in the tree or in the deploy's store.
    let pyc = c.ok(&format!(
        "find {CODE}/examples {CODE}/core /var/lib/jarvis-supervisor/deploys -name '*.pyc' -o -name __pycache__"
    ));
    assert_eq!(pyc.trim(), "", "byte code was written");

    // Version 3's imported module does not compile: refused before the
    // swap; the bot runs on, the same process, on version 2.
    let before = pid(c);
    let v3 = tree(f.tmp.path(), 3, BROKEN);
    let (rc, out, err, _) = run("an imported module that does not compile", &v3);
    assert_ne!(rc, 0, "{err}{out}");
    let r = row(&json_of(&out), &host).clone();
    assert_eq!(r["result"], "refused", "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    for part in [
        "core/fstrings.py line ",
        "/usr/bin/python3 (Python 3.13",
        "core/__init__.py imports `fstrings`",
        "nothing on the host was changed",
    ] {
        assert!(reason.contains(part), "{part}: {reason}");
    }
    assert_eq!(version(c), "2");
    assert_eq!(pid(c), before, "the bot was restarted:\n{}", diag(c));
    assert!(healthy(c), "{}", diag(c));
    let live = c.ok(&format!("cat {CODE}/core/fstrings.py"));
    assert_eq!(live, PEP701, "the live module changed");
}
