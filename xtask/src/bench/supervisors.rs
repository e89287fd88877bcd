//! `cargo xtask bench`, the supervisors: `jarvisctl run` against supervisord,
//! PM2, runit, daemontools and s6, each supervising the same child,
//! measured in one run on this machine and printed with ratios: against the
//! best peer, jarvisctl's figure over each peer's, and against `cat` for
//! log throughput. Figures, never timed tests: the bench only fails when
//! jarvisctl misses a target of issue 17 or cannot be measured.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;

use super::peers::{self, wait_until, Kind, Running};
use super::procfs;
use super::report::{self, Report, Row};
use super::stats::{self, LineCount};
use super::tools::{self, Tools};
use crate::run::Result;

pub const ROTATIONS: usize = 10;
/// The log throughput of each supervisor, and of cat, is the best of this
/// many runs.
pub const LOG_ROUNDS: usize = 3;
/// The second restart test: a child that lived 1.5 s, restarted 30 times
/// (all peers at once: on a shared machine, fewer samples made the medians
/// swing by a factor of 2 between runs).
pub const LIVED_MS: u64 = 1500;
pub const LIVED_RESTARTS: usize = 30;

pub struct Config {
    pub idle_seconds: u64,
    pub log_bytes: u64,
    pub restarts: usize,
}

impl Config {
    pub fn from_env() -> Result<Config> {
        let num = |name: &str, default: u64| -> Result<u64> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name}={v} is not a whole number")),
                Err(_) => Ok(default),
            }
        };
        Ok(Config {
            idle_seconds: num("JARVIS_BENCH_IDLE_SECONDS", 60)?.max(1),
            log_bytes: num("JARVIS_BENCH_LOG_MB", 1000)?.max(1) * 1_000_000,
            restarts: num("JARVIS_BENCH_RESTARTS", 50)?.max(1) as usize,
        })
    }
}

fn mkfifo(path: &Path) -> Result<()> {
    let _ = std::fs::remove_file(path);
    crate::run::output(Command::new("mkfifo").arg(path)).map(|_| ())
}

/// Tell the child waiting on `fifo` to start; false if it never opened it.
/// Non-blocking, so that opening the FIFO fails at once while the child
/// has not opened it for reading, instead of hanging if it never does.
fn go(fifo: &Path) -> bool {
    let mut opened = None;
    wait_until(Duration::from_secs(10), || {
        opened = OpenOptions::new()
            .write(true)
            .custom_flags(OFlag::O_NONBLOCK.bits())
            .open(fifo)
            .ok();
        opened.is_some()
    });
    opened.is_some_and(|mut f| f.write_all(b"g").is_ok())
}

fn started(r: &Running) -> bool {
    wait_until(Duration::from_secs(15), || !r.stamps().starts.is_empty())
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Restart latency: a child that exits at once, timed from its exit stamp
/// to the next child's exec stamp.
fn restart(kind: Kind, tools: &Tools, dir: &Path, cfg: &Config, row: &mut Row) -> Result<()> {
    let r = peers::start(kind, tools, dir, &["exit".to_string()])?;
    // runit, daemontools, s6 and supervisord wait a second before
    // restarting a child that lived under a second: they get what 20 s
    // give.
    wait_until(Duration::from_secs(20), || {
        r.stamps().starts.len() > cfg.restarts || !r.alive()
    });
    let s = r.stamps();
    drop(r);
    let mut gaps = stats::restart_gaps(&s);
    gaps.truncate(cfg.restarts);
    row.restart_samples = gaps.len();
    row.restart_gap_ms = stats::median(&gaps).map(|ns| ns as f64 / 1e6);
    if gaps.is_empty() {
        return Err(format!(
            "no restart seen ({} starts); see {}",
            s.starts.len(),
            dir.display()
        ));
    }
    Ok(())
}

/// Restart latency of a child that lived LIVED_MS: past the one-second
/// guard against restart loops that runit, daemontools, s6 and
/// supervisord keep. All peers at once: each sleeps nearly all the time.
fn restart_lived(tools: &Tools, kinds: &[Kind], run: &Path, rows: &mut [Row]) {
    let words = ["exit".to_string(), format!("live={LIVED_MS}")];
    let mut running = Vec::new();
    for (kind, row) in kinds.iter().zip(rows.iter_mut()) {
        match peers::start(*kind, tools, &run.join(format!("{}-lived", kind.key())), &words) {
            Ok(r) => running.push(Some(r)),
            Err(e) => {
                row.errors.push(format!("restart after {LIVED_MS} ms: {e}"));
                running.push(None);
            }
        }
    }
    let wait = Duration::from_millis(LIVED_MS * (LIVED_RESTARTS as u64 + 2) + 5000);
    wait_until(wait, || {
        running
            .iter()
            .flatten()
            .all(|r| r.stamps().starts.len() > LIVED_RESTARTS || !r.alive())
    });
    for (r, row) in running.into_iter().zip(rows.iter_mut()) {
        let Some(r) = r else { continue };
        let mut gaps = stats::restart_gaps(&r.stamps());
        drop(r);
        gaps.truncate(LIVED_RESTARTS);
        row.restart_lived_samples = gaps.len();
        row.restart_lived_gap_ms = stats::median(&gaps).map(|ns| ns as f64 / 1e6);
        if gaps.is_empty() {
            row.errors
                .push(format!("restart after {LIVED_MS} ms: no restart seen"));
        }
    }
}

/// Footprint and idle cost: every peer at once, each with a healthy child,
/// over the same window. Memory is read at the end of the window, after
/// the wakeups are counted: each supervisor has been idle for the whole
/// window by then (jarvisctl gives back its code pages just before it
/// blocks), and the child is still running.
fn idle(tools: &Tools, kinds: &[Kind], run: &Path, cfg: &Config, rows: &mut [Row]) {
    let mut running: Vec<Option<Running>> = Vec::new();
    for (kind, row) in kinds.iter().zip(rows.iter_mut()) {
        let dir = run.join(format!("{}-idle", kind.key()));
        match peers::start(*kind, tools, &dir, &["sleep".to_string()]) {
            Ok(r) if started(&r) => running.push(Some(r)),
            Ok(_) => {
                row.errors
                    .push(format!("idle: the child never started; see {}", dir.display()));
                running.push(None);
            }
            Err(e) => {
                row.errors.push(format!("idle: {e}"));
                running.push(None);
            }
        }
    }
    // Let start-up work (PM2's, notably) finish before the window opens.
    std::thread::sleep(Duration::from_secs(2));
    let snapshot = |r: &Running| -> (Vec<u32>, u64, u64) {
        let pids = r.supervisor_pids();
        let cpu = pids
            .iter()
            .filter_map(|p| procfs::stat(*p))
            .map(|s| s.cpu_ticks)
            .sum();
        let ctx = pids.iter().filter_map(|p| procfs::context_switches(*p)).sum();
        (pids, cpu, ctx)
    };
    let before: Vec<Option<(Vec<u32>, u64, u64)>> =
        running.iter().map(|r| r.as_ref().map(snapshot)).collect();
    eprintln!("bench: idle window of {} s, all peers at once", cfg.idle_seconds);
    std::thread::sleep(Duration::from_secs(cfg.idle_seconds));
    let hz = procfs::ticks_per_second() as f64;
    for ((r, b), row) in running.iter().zip(before).zip(rows.iter_mut()) {
        let (Some(r), Some((pids0, cpu0, ctx0))) = (r, b) else {
            continue;
        };
        let (pids, cpu, ctx) = snapshot(r);
        if pids != pids0 {
            row.errors.push(format!(
                "idle: its processes changed during the window ({pids0:?} -> {pids:?})"
            ));
        }
        row.idle_cpu_ms = Some(cpu.saturating_sub(cpu0) as f64 * 1000.0 / hz);
        row.idle_wakeups = Some(ctx.saturating_sub(ctx0));
    }
    // All wakeups counted first, then the memory of each: reading
    // /proc/PID/smaps_rollup does not wake the process.
    for (r, row) in running.iter().zip(rows.iter_mut()) {
        let Some(r) = r else { continue };
        let s = r.stamps();
        if s.starts.len() != 1 || !s.exits.is_empty() {
            row.errors.push(format!(
                "idle: the child did not stay up ({} starts, {} exits)",
                s.starts.len(),
                s.exits.len()
            ));
        }
        let pids = r.supervisor_pids();
        let mem: Vec<(u64, u64)> = pids.iter().filter_map(|p| procfs::memory(*p)).collect();
        if mem.len() != pids.len() {
            row.errors
                .push(format!("idle: cannot read the memory of all of {pids:?}"));
        }
        row.rss_kb = Some(mem.iter().map(|m| m.0).sum());
        row.pss_kb = Some(mem.iter().map(|m| m.1).sum());
        row.processes = pids
            .iter()
            .filter_map(|p| procfs::stat(*p))
            .map(|s| s.comm)
            .collect();
        match r.supervisor_pid().filter(|p| pids.contains(p)) {
            Some(p) => match procfs::memory(p) {
                Some((rss, pss)) => {
                    row.sup_rss_kb = Some(rss);
                    row.sup_pss_kb = Some(pss);
                    row.sup_process = procfs::stat(p).map(|s| s.comm).unwrap_or_default();
                }
                None => row.errors.push(format!("idle: cannot read the memory of {p}")),
            },
            None => row
                .errors
                .push("idle: the supervisor process is not running".into()),
        }
    }
}

/// `child | cat > file`: the baseline for log throughput.
fn cat_baseline(tools: &Tools, dir: &Path, bytes: u64) -> Result<f64> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let fifo = dir.join("go");
    mkfifo(&fifo)?;
    let file = dir.join("out.log");
    let out = std::fs::File::create(&file).map_err(|e| e.to_string())?;
    let (rd, wr) = std::io::pipe().map_err(|e| e.to_string())?;
    // cat first: if the child cannot start, the pipe's last writer goes
    // with `wr` and cat ends; either way both are reaped on return.
    let _cat = Reaped(
        Command::new("cat")
            .stdin(rd)
            .stdout(out)
            .spawn()
            .map_err(|e| format!("cannot start cat: {e}"))?,
    );
    let _child = Reaped(
        Command::new(&tools.child)
            .arg("flood")
            .arg(dir.join("stamps"))
            .arg(format!("bytes={bytes}"))
            .arg(format!("go={}", fifo.display()))
            .stdout(wr)
            .spawn()
            .map_err(|e| format!("cannot start the child: {e}"))?,
    );
    let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let ok = go(&fifo);
    let t = Instant::now();
    let done = ok && wait_until(log_timeout(bytes), || size() >= bytes);
    let elapsed = t.elapsed();
    let got = size();
    drop(_child);
    drop(_cat);
    let _ = std::fs::remove_dir_all(dir);
    if !done {
        return Err(format!("cat wrote {got} of {bytes} bytes"));
    }
    Ok(mb_s(bytes, elapsed))
}

/// A process the bench spawned itself, killed and reaped when dropped (the
/// child before cat: declared after it, dropped before it).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn log_timeout(bytes: u64) -> Duration {
    // 10 MB/s at worst, and 30 s for start-up.
    Duration::from_secs(30 + bytes / 10_000_000)
}

/// Log throughput: the child writes `bytes` of 100-byte lines, timed until
/// the peer's log files on disk hold them all.
fn throughput(kind: Kind, tools: &Tools, dir: &Path, fifo: &Path, bytes: u64) -> Result<f64> {
    mkfifo(fifo)?;
    let words = [
        "flood".to_string(),
        format!("bytes={bytes}"),
        format!("go={}", fifo.display()),
    ];
    let r = peers::start(kind, tools, dir, &words)?;
    if !started(&r) || !go(fifo) {
        return Err(format!("the child never started; see {}", dir.display()));
    }
    let t = Instant::now();
    let done = wait_until(log_timeout(bytes), || r.log_bytes() >= bytes);
    let elapsed = t.elapsed();
    let got = r.log_bytes();
    drop(r);
    let _ = std::fs::remove_dir_all(dir);
    if !done {
        return Err(format!(
            "the log holds {got} of {bytes} bytes after {:.0} s",
            elapsed.as_secs_f64()
        ));
    }
    Ok(mb_s(bytes, elapsed))
}

/// Lines lost: the child writes numbered lines while the peer's log is
/// rotated ROTATIONS times its own way.
fn rotation(kind: Kind, tools: &Tools, dir: &Path, fifo: &Path) -> Result<LineCount> {
    mkfifo(fifo)?;
    let stop = dir.with_extension("stop");
    let _ = std::fs::remove_file(&stop);
    let words = [
        "lines".to_string(),
        format!("go={}", fifo.display()),
        format!("stop={}", stop.display()),
    ];
    let r = peers::start(kind, tools, dir, &words)?;
    if !started(&r) || !go(fifo) {
        return Err(format!("the child never started; see {}", dir.display()));
    }
    let mut errors = Vec::new();
    for i in 1..=ROTATIONS {
        std::thread::sleep(Duration::from_millis(100));
        if let Err(e) = r.rotate(i) {
            errors.push(e);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&stop, "").map_err(|e| e.to_string())?;
    if !wait_until(Duration::from_secs(10), || r.stamps().done.is_some()) {
        return Err("the child never finished writing".into());
    }
    let written = r.stamps().done.unwrap_or(0);
    // Settle: all bytes there, or no growth for a second.
    let mut last = (r.log_bytes(), Instant::now());
    wait_until(Duration::from_secs(15), || {
        let b = r.log_bytes();
        if b != last.0 {
            last = (b, Instant::now());
        }
        b >= written * 100 || last.1.elapsed() > Duration::from_secs(1)
    });
    let texts = r.log_texts();
    drop(r);
    if !errors.is_empty() {
        return Err(format!("rotation failed: {}", errors.join("; ")));
    }
    Ok(stats::count_lines(written, texts.iter().map(Vec::as_slice)))
}

pub fn measure(root: &Path, jarvisctl: &Path, cfg: &Config) -> Result<Report> {
    let bench = root.join("target/bench");
    // The child's words travel space-separated (supervisord's command=,
    // ./child.args, ExecStart=): a path with a space would split.
    if bench.to_string_lossy().contains(char::is_whitespace) {
        return Err(format!(
            "{} has a space in it; note: run the bench from a checkout whose path has none",
            bench.display()
        ));
    }
    let run = bench.join("run");
    let _ = std::fs::remove_dir_all(&run);
    std::fs::create_dir_all(&run).map_err(|e| e.to_string())?;
    // Orphans of the peers (PM2's daemon, a child whose supervisor was
    // killed) become the bench's children, so that it reaps them and no
    // zombie outlives the run.
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("cannot become a subreaper: {e}"))?;
    let tools = tools::install(&bench, jarvisctl)?;
    let available = tools.jarvisctl.is_some();
    if !available {
        eprintln!(
            "\n!!! jarvisctl run: not available in this build ({}) !!!\n",
            jarvisctl.display()
        );
    }
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| *k != Kind::Jarvisctl || available)
        .collect();
    let v = &tools.versions;
    let mut rows: Vec<Row> = kinds
        .iter()
        .map(|k| Row {
            key: k.key(),
            peer: k.name(),
            version: match k {
                Kind::Supervisord => v.supervisord.clone(),
                Kind::Pm2 => v.pm2.clone(),
                Kind::Runit => v.runit.clone(),
                Kind::Daemontools => v.daemontools.clone(),
                Kind::S6 => v.s6.clone(),
                Kind::Jarvisctl => v.jarvisctl.clone(),
            },
            ..Row::default()
        })
        .collect();
    if !available {
        rows.push(Row {
            key: "jarvisctl",
            peer: Kind::Jarvisctl.name(),
            errors: vec!["not available in this build".into()],
            ..Row::default()
        });
    }
    for (kind, row) in kinds.iter().zip(rows.iter_mut()) {
        eprintln!("bench: restart latency, {}", kind.name());
        if let Err(e) = restart(
            *kind,
            &tools,
            &run.join(format!("{}-restart", kind.key())),
            cfg,
            row,
        ) {
            row.errors.push(format!("restart: {e}"));
        }
    }
    eprintln!("bench: restart latency after {LIVED_MS} ms, all peers at once");
    restart_lived(&tools, &kinds, &run, &mut rows);
    idle(&tools, &kinds, &run, cfg, &mut rows);
    eprintln!("bench: log throughput, {} MB each", cfg.log_bytes / 1_000_000);
    let mut cat: Option<f64> = None;
    let mut cat_errors = Vec::new();
    let mut cat_run = |cat: &mut Option<f64>| match cat_baseline(&tools, &run.join("cat"), cfg.log_bytes) {
        Ok(v) => *cat = Some(cat.map_or(v, |c: f64| c.max(v))),
        Err(e) => cat_errors.push(e),
    };
    // LOG_ROUNDS rounds of cat then every peer, and cat once more: each at
    // its best in this run. On this shared machine one measurement of the
    // same binary moved by a factor of 2 between runs.
    for _ in 0..LOG_ROUNDS {
        cat_run(&mut cat);
        for (kind, row) in kinds.iter().zip(rows.iter_mut()) {
            let dir = run.join(format!("{}-log", kind.key()));
            match throughput(
                *kind,
                &tools,
                &dir,
                &run.join(format!("{}-log.go", kind.key())),
                cfg.log_bytes,
            ) {
                Ok(v) => row.log_mb_s = Some(row.log_mb_s.map_or(v, |b| b.max(v))),
                Err(e) => row.errors.push(format!("log throughput: {e}")),
            }
        }
    }
    cat_run(&mut cat);
    for row in rows.iter_mut() {
        row.log_ratio_to_cat = row.log_mb_s.zip(cat).map(|(v, c)| v / c);
    }
    for (kind, row) in kinds.iter().zip(rows.iter_mut()) {
        eprintln!("bench: {ROTATIONS} rotations, {}", kind.name());
        let dir = run.join(format!("{}-rotate", kind.key()));
        match rotation(
            *kind,
            &tools,
            &dir,
            &run.join(format!("{}-rotate.go", kind.key())),
        ) {
            Ok(l) => row.rotation = Some(l),
            Err(e) => row.errors.push(format!("rotation: {e}")),
        }
    }
    if !cat_errors.is_empty() && cat.is_none() {
        eprintln!("bench: cat baseline failed: {}", cat_errors.join("; "));
    }
    let targets = report::targets(&rows, cat, available);
    let ratios = report::ratios(&rows, cat);
    Ok(Report {
        idle_seconds: cfg.idle_seconds,
        log_bytes: cfg.log_bytes,
        restarts_wanted: cfg.restarts,
        cat_mb_s: cat,
        jarvisctl_run_available: available,
        rows,
        ratios,
        targets,
    })
}

/// The jarvisctl under test: $JARVISCTL, else the release build.
pub fn jarvisctl_path(release: PathBuf) -> PathBuf {
    std::env::var_os("JARVISCTL")
        .map(PathBuf::from)
        .unwrap_or(release)
}

/// Run the comparison, print it (the table, or JSON with `json`), write
/// target/bench/supervisors.json, and fail unless every target is met.
pub fn bench(root: &Path, jarvisctl: &Path, json: bool) -> Result<()> {
    let cfg = Config::from_env()?;
    let rep = measure(root, jarvisctl, &cfg)?;
    let text = serde_json::to_string_pretty(&rep).map_err(|e| e.to_string())?;
    let file = root.join("target/bench/supervisors.json");
    std::fs::write(&file, format!("{text}\n")).map_err(|e| format!("{}: {e}", file.display()))?;
    if json {
        eprint!("{}", report::table(&rep));
        println!("{text}");
    } else {
        print!("{}", report::table(&rep));
        println!("(figures also in {})", file.display());
    }
    if !rep.jarvisctl_run_available {
        return Err(
            "jarvisctl run: not available in this build; the peers were measured, jarvisctl was not".into(),
        );
    }
    let missed: Vec<&str> = rep
        .targets
        .iter()
        .filter(|t| t.met != Some(true))
        .map(|t| t.target)
        .collect();
    if missed.is_empty() {
        Ok(())
    } else {
        Err(format!("jarvisctl run misses: {}", missed.join("; ")))
    }
}
