//! `cargo xtask test`: every layer, then one closing line that counts them
//! all: "N passed, N failed".

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

use crate::before;
use crate::deps;
use crate::dist;
use crate::repo;
use crate::run::{self, Result};
use crate::tools;

#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
    /// The panics of the runs that had failures, a few lines each: printed
    /// again just above the closing count, where a CI log's tail shows them.
    panics: Vec<String>,
}

/// Lines kept of each panic for the closing digest, and of each line.
const PANIC_LINES: usize = 4;
const PANIC_WIDTH: usize = 300;

pub fn test(filter: Option<&str>) -> Result<ExitCode> {
    if !deps::is_root() {
        return Err("the package and end-to-end layers need root (containers, apt): run it as root".into());
    }
    deps::apt(deps::TEST_PACKAGES)?;
    // The containers' Debian roots, made while the packages build: made by
    // the first tests instead, on a fresh machine, the debootstraps ran
    // beside booted containers and starved their waits.
    let roots = std::thread::spawn(prepare_roots);
    let built = dist::dist()?;
    let root = run::root();
    // Extra versions of the same build, for the upgrade and downgrade tests.
    let extra = root.join("target/dist-test");
    let _ = std::fs::remove_dir_all(&extra);
    let higher = dist::build_deb(Some("99.0.0-1"), &extra)?;
    let lower = dist::build_deb(Some("0.0.1-1"), &extra)?;
    // The package before instances, from git history: the upgrade test
    // starts from what hosts run today (cached by its commit).
    let before_instances = before::build(&built.deb)?;
    // The repositories (issue 8): the build as published, and the same
    // repository after a higher version was published into it.
    repo::build(&root.join("target/dist"), &root.join("target/repo"))?;
    let higher_dist = root.join("target/dist-repo-higher");
    let _ = std::fs::remove_dir_all(&higher_dist);
    std::fs::create_dir_all(&higher_dist).map_err(|e| e.to_string())?;
    for deb in [&built.deb, &higher] {
        std::fs::copy(deb, higher_dist.join(deb.file_name().unwrap_or_default()))
            .map_err(|e| format!("cannot copy {}: {e}", deb.display()))?;
    }
    repo::build(&higher_dist, &root.join("target/repo-higher"))?;
    // actionlint, zizmor, ansible-playbook and ansible-lint, in a venv under
    // target/.
    let tools = tools::ensure()?;

    let mut tally = Tally::default();
    // Layer 1: unit and CLI tests. Not `--workspace`: the product's
    // dependencies would take xtask's features too, and the root-only layers
    // below (`-p jarvis-supervisor`) would rebuild them all (1.5 to 2 min of
    // a CI run). The product's crates run together (one feature set: the
    // root package depends on the others), xtask apart. The engine's own
    // tests build the jarvis-engine binary that the root layers below run.
    let product: &[&str] = &[
        "-p",
        "jarvis-supervisor",
        "-p",
        "jarvis-model",
        "-p",
        "jarvis-engine",
        "-p",
        "jarvis-cli",
        "-p",
        "jarvis-test-support",
    ];
    for packages in [product, &["-p", "xtask"][..]] {
        let mut unit = run::cargo();
        unit.current_dir(&root)
            .args(["test", "--locked", "--no-fail-fast"])
            .args(packages);
        if let Some(f) = filter {
            unit.args(["--", f]);
        }
        cargo_test(&mut unit, &mut tally)?;
    }

    // The fallback engine's own tests, the attacks on root's commands and
    // the Python environment's (built as the service user) need root (they switch users); run apart from the container layer,
    // whose load would blur their timings. The bin's own root-only unit
    // tests (the deploy worker on a small tmpfs that fills) run here too.
    let mut engine = run::cargo();
    engine.current_dir(&root).args([
        "test",
        "--locked",
        "--no-fail-fast",
        "-p",
        "jarvis-supervisor",
        "--bin",
        "jarvisctl",
        "--test",
        "run_engine",
        "--test",
        "attacks",
        "--test",
        "python_env",
        "--",
        "--ignored",
        "--show-output",
    ]);
    // Root's commands under attack run as shipped: the release build.
    engine.env("JARVIS_JARVISCTL", root.join("target/release/jarvisctl"));
    if let Some(f) = filter {
        engine.arg(f);
    }
    roots
        .join()
        .map_err(|_| "preparing the containers' roots panicked".to_string())??;
    cargo_test(&mut engine, &mut tally)?;

    // Layers 2 and 3: package checks and booted containers (ignored by a
    // plain `cargo test`, because they need root and the built packages).
    let mut slow = run::cargo();
    slow.current_dir(&root)
        .args([
            "test",
            "--locked",
            "--no-fail-fast",
            "-p",
            "jarvis-supervisor",
            "--test",
            "package",
            "--test",
            "fuzz_envfile",
            "--test",
            "e2e",
            "--test",
            "release",
            "--test",
            "reproducible",
            "--",
            "--ignored",
            "--show-output",
            // The containers mostly wait (boots, the bot's own timers): a
            // third at a time keeps 2 cores busy without starving them.
            "--test-threads",
            "3",
        ])
        .env("JARVIS_DEB", &built.deb)
        .env("JARVIS_RPM", &built.rpm)
        .env("JARVIS_DEB_HIGHER", &higher)
        .env("JARVIS_DEB_LOWER", &lower)
        .env("JARVIS_DEB_BEFORE_INSTANCES", &before_instances)
        .env("JARVIS_REPO", root.join("target/repo"))
        .env("JARVIS_REPO_HIGHER", root.join("target/repo-higher"))
        .env("JARVIS_ACTIONLINT", &tools.actionlint)
        .env("JARVIS_ZIZMOR", &tools.zizmor)
        .env("JARVIS_PY_BIN", &tools.py_bin)
        .env("JARVIS_E2E_REQUIRED", "1");
    if let Some(f) = filter {
        slow.arg(f);
    }
    cargo_test(&mut slow, &mut tally)?;

    if tally.ignored > 0 {
        // What layer 1 ignored ran in layers 2 and 3; say so plainly.
        println!(
            "\n({} tests ignored by the plain cargo test run ran in the engine, package and e2e layers, as root)",
            tally.ignored
        );
    }
    if tally.failed > 0 && !tally.panics.is_empty() {
        println!("\nwhat failed, in short (the whole output is above):");
        for p in &tally.panics {
            println!("{p}");
        }
    }
    println!("\n{} passed, {} failed", tally.passed, tally.failed);
    Ok(if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every suite's cached root, made in parallel where missing.
fn prepare_roots() -> Result<()> {
    let t0 = std::time::Instant::now();
    let made: Vec<_> = jarvis_test_support::roots::Suite::ALL
        .into_iter()
        .map(|suite| std::thread::spawn(move || jarvis_test_support::roots::prepare(suite)))
        .collect();
    for m in made {
        m.join()
            .map_err(|_| "debootstrap's thread panicked".to_string())??;
    }
    println!(
        "xtask: the containers' roots are ready ({:.0} s)",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Run one `cargo test`, echoing its output and adding up its
/// "test result:" lines. A build failure counts as a failed test.
/// `--no-fail-fast` is the caller's: without it cargo stops at the first
/// test binary with a failure, and the layers after it are never counted.
fn cargo_test(cmd: &mut Command, tally: &mut Tally) -> Result<()> {
    let mut panics = Panics::default();
    let mut failed_here = 0;
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    // Read on a thread: a process that a failed test left running (a
    // daemonized engine) keeps the pipe open after cargo exits, and an EOF
    // would never come; the run hung there until the CI's limit.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut saw_result = false;
    let mut exited: Option<std::process::ExitStatus> = None;
    // Counted from the last line: after cargo exits its last lines may
    // still be on their way (a slow reader of our own output), and only a
    // pipe that stays silent is one a leftover process holds.
    let mut last_line = std::time::Instant::now();
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(line) => {
                last_line = std::time::Instant::now();
                let line = line.map_err(|e| e.to_string())?;
                println!("{line}");
                panics.feed(&line);
                if let Some(rest) = line.strip_prefix("test result: ") {
                    saw_result = true;
                    tally.passed += count(rest, "passed");
                    failed_here += count(rest, "failed");
                    tally.ignored += count(rest, "ignored");
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if exited.is_none() {
            exited = child.try_wait().map_err(|e| e.to_string())?;
        }
        if exited.is_some() && last_line.elapsed() > std::time::Duration::from_secs(5) {
            eprintln!(
                "xtask: cargo test exited, but a process it started still holds its output open \
                 (a test left it running): not waited for"
            );
            break;
        }
    }
    let status = match exited {
        Some(st) => st,
        None => child.wait().map_err(|e| e.to_string())?,
    };
    if !status.success() && !saw_result {
        failed_here += 1;
        eprintln!("xtask: cargo test failed before running tests ({status})");
    }
    tally.failed += failed_here;
    panics.close();
    if failed_here > 0 {
        tally.panics.extend(panics.done);
    }
    Ok(())
}

/// The panics in a test run's output, a few lines each: the line
/// "thread 'NAME' panicked at FILE:LINE:COL:" and the message after it.
#[derive(Default)]
struct Panics {
    done: Vec<String>,
    open: Option<Vec<String>>,
}

impl Panics {
    fn feed(&mut self, line: &str) {
        if line.starts_with("thread '") && line.contains(" panicked at ") {
            self.close();
            self.open = Some(vec![clip(line)]);
            return;
        }
        let Some(lines) = self.open.as_mut() else {
            return;
        };
        let ends =
            line.starts_with("note: ") || line.starts_with("stack backtrace:") || line.starts_with("---- ");
        if ends || lines.len() >= PANIC_LINES {
            self.close();
        } else {
            lines.push(format!("  {}", clip(line)));
        }
    }

    fn close(&mut self) {
        if let Some(lines) = self.open.take() {
            self.done.push(lines.join("\n"));
        }
    }
}

fn clip(line: &str) -> String {
    match line.char_indices().nth(PANIC_WIDTH) {
        Some((at, _)) => format!("{} […]", &line[..at]),
        None => line.to_string(),
    }
}

fn count(summary: &str, word: &str) -> u64 {
    // "ok. 3 passed; 0 failed; 1 ignored; ..."
    summary
        .split(';')
        .filter_map(|part| {
            let mut it = part.split_whitespace().rev();
            let w = it.next()?;
            let n = it.next()?;
            (w == word)
                .then(|| {
                    n.trim_start_matches("ok.")
                        .trim_start_matches("FAILED.")
                        .parse::<u64>()
                        .ok()
                })
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process left running by a failed test holds cargo's output open:
    /// the layer still ends soon after cargo, with its tally.
    #[test]
    fn a_layer_ends_with_cargo_even_when_a_leftover_holds_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("leftover.pid");
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo 'test result: FAILED. 3 passed; 1 failed; 2 ignored; 0 measured'; sleep 60 & echo $! > \"$0\"; exit 101",
        ])
        .arg(&pid_file);
        let mut tally = Tally::default();
        let t0 = std::time::Instant::now();
        cargo_test(&mut cmd, &mut tally).unwrap();
        let took = t0.elapsed();
        // The leftover is ours: ended by its pid.
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let _ = Command::new("kill").arg(pid.trim()).status();
        assert!(took < std::time::Duration::from_secs(20), "{took:?}");
        assert_eq!((tally.passed, tally.failed, tally.ignored), (3, 1, 2));
    }

    /// A run with a failure hands its panics, a few lines each, to the
    /// closing digest; a run with none hands nothing.
    #[test]
    fn the_panics_of_a_failed_run_reach_the_digest_and_a_passing_runs_do_not() {
        let long = "x".repeat(PANIC_WIDTH + 50);
        let script = format!(
            "printf '%s\\n' 'running 2 tests' \
             \"thread 'busy' panicked at tests/e2e/busy.rs:80:9:\" 'bookworm: 25000 lines written: not within 75s' '{long}' l3 l4 l5 \
             'note: run with RUST_BACKTRACE=1' \
             \"thread '<unnamed>' (4242) panicked at tests/e2e/main.rs:270:33:\" 'bookworm failed' \
             'test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured'; exit 101"
        );
        let mut tally = Tally::default();
        cargo_test(Command::new("sh").args(["-c", &script]), &mut tally).unwrap();
        assert_eq!(tally.failed, 1);
        assert_eq!(tally.panics.len(), 2, "{:?}", tally.panics);
        let first: Vec<&str> = tally.panics[0].lines().collect();
        assert_eq!(first.len(), PANIC_LINES, "{first:?}");
        assert!(first[0].contains("busy.rs:80:9"), "{first:?}");
        assert!(first[1].contains("not within 75s"), "{first:?}");
        assert!(
            first[2].ends_with("[…]") && first[2].len() < long.len(),
            "{first:?}"
        );
        assert!(tally.panics[1].contains("bookworm failed"));

        let mut passing = Tally::default();
        let ok = "printf '%s\\n' \"thread 'x' panicked at a.rs:1:1:\" expected 'test result: ok. 1 passed; 0 failed; 0 ignored'";
        cargo_test(Command::new("sh").args(["-c", ok]), &mut passing).unwrap();
        assert!(passing.panics.is_empty(), "{:?}", passing.panics);
    }
}
