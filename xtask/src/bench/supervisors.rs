//! `cargo xtask bench`, the supervisors: `jarvisctl run` against supervisord,
//! PM2, runit and s6, each supervising the same child, measured in one run
//! on this machine and printed as ratios against the best peer (and against
//! `cat` for log throughput). Figures, never timed tests: the bench only
//! fails when jarvisctl misses a target of issue 6 or cannot be measured.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::peers::{self, wait_until, Kind, Running};
use super::procfs;
use super::stats::{self, LineCount};
use super::tools::{self, Tools};
use crate::run::Result;

/// O_NONBLOCK on Linux (x86-64 and arm64): opening a FIFO for writing then
/// fails at once instead of blocking when the child is not reading it.
const O_NONBLOCK: i32 = 0o4000;
const ROTATIONS: usize = 10;
/// The second restart test: a child that lived 1.5 s, restarted 12 times.
const LIVED_MS: u64 = 1500;
const LIVED_RESTARTS: usize = 12;

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

#[derive(Serialize, Default)]
pub struct Row {
    pub key: &'static str,
    pub peer: &'static str,
    pub version: String,
    pub errors: Vec<String>,
    pub restart_gap_ms: Option<f64>,
    pub restart_samples: usize,
    pub restart_lived_gap_ms: Option<f64>,
    pub restart_lived_samples: usize,
    pub rss_kb: Option<u64>,
    pub pss_kb: Option<u64>,
    pub processes: Vec<String>,
    pub idle_cpu_ms: Option<f64>,
    pub idle_wakeups: Option<u64>,
    pub log_mb_s: Option<f64>,
    pub log_ratio_to_cat: Option<f64>,
    pub rotation: Option<LineCount>,
}

#[derive(Serialize)]
pub struct Target {
    pub target: &'static str,
    /// None: not measured.
    pub met: Option<bool>,
    pub detail: String,
}

#[derive(Serialize)]
pub struct Report {
    pub idle_seconds: u64,
    pub log_bytes: u64,
    pub restarts_wanted: usize,
    pub cat_mb_s: Option<f64>,
    pub jarvisctl_run_available: bool,
    pub rows: Vec<Row>,
    pub targets: Vec<Target>,
}

fn mkfifo(path: &Path) -> Result<()> {
    let _ = std::fs::remove_file(path);
    crate::run::output(Command::new("mkfifo").arg(path)).map(|_| ())
}

/// Tell the child waiting on `fifo` to start; false if it never opened it.
fn go(fifo: &Path) -> bool {
    let mut opened = None;
    wait_until(Duration::from_secs(10), || {
        opened = OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
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
    // runit, s6 and supervisord wait a second before restarting a child
    // that lived under a second: they get what 20 s give.
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
/// guard against restart loops that runit, s6 and supervisord keep. All
/// peers at once: each sleeps nearly all the time.
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
/// over the same window.
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
        let mem: Vec<(u64, u64)> = pids.iter().filter_map(|p| procfs::memory(*p)).collect();
        row.rss_kb = Some(mem.iter().map(|m| m.0).sum());
        row.pss_kb = Some(mem.iter().map(|m| m.1).sum());
        row.processes = pids
            .iter()
            .filter_map(|p| procfs::stat(*p))
            .map(|s| s.comm)
            .collect();
    }
}

/// `child | cat > file`: the baseline for log throughput.
fn cat_baseline(tools: &Tools, dir: &Path, bytes: u64) -> Result<f64> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let fifo = dir.join("go");
    mkfifo(&fifo)?;
    let file = dir.join("out.log");
    let stamps = dir.join("stamps");
    let mut child = Command::new(&tools.child)
        .arg("flood")
        .arg(&stamps)
        .arg(format!("bytes={bytes}"))
        .arg(format!("go={}", fifo.display()))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the child: {e}"))?;
    let out = std::fs::File::create(&file).map_err(|e| e.to_string())?;
    let mut cat = Command::new("cat")
        .stdin(child.stdout.take().expect("piped"))
        .stdout(out)
        .spawn()
        .map_err(|e| format!("cannot start cat: {e}"))?;
    let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let ok = go(&fifo);
    let t = Instant::now();
    let done = ok && wait_until(log_timeout(bytes), || size() >= bytes);
    let elapsed = t.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let _ = cat.wait();
    let _ = std::fs::remove_dir_all(dir);
    if !done {
        return Err(format!("cat wrote {} of {bytes} bytes", size()));
    }
    Ok(mb_s(bytes, elapsed))
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

/// The targets for jarvisctl run, from the figures of this run.
fn targets(rows: &[Row], cat: Option<f64>, available: bool) -> Vec<Target> {
    let (peers, ours): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| r.key != "jarvisctl");
    let ours = ours.first().filter(|_| available);
    let best = |f: &dyn Fn(&Row) -> Option<f64>| -> Option<(f64, &'static str)> {
        peers
            .iter()
            .filter_map(|r| Some((f(r)?, r.peer)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    };
    let judge = |target: &'static str, check: &dyn Fn(&Row) -> Option<(bool, String)>| -> Target {
        match ours.and_then(|r| check(r)) {
            Some((met, detail)) => Target {
                target,
                met: Some(met),
                detail,
            },
            None => Target {
                target,
                met: None,
                detail: if available {
                    "jarvisctl run: no figure".into()
                } else {
                    "jarvisctl run: not available".into()
                },
            },
        }
    };
    vec![
        judge(
            "restart latency within 2 ms of the fastest peer (at once, and after 1.5 s)",
            &|r| {
                let (ms, lived) = (r.restart_gap_ms?, r.restart_lived_gap_ms?);
                let (b, who) = best(&|p| p.restart_gap_ms)?;
                let (bl, whol) = best(&|p| p.restart_lived_gap_ms)?;
                Some((
                    ms <= b + 2.0 && lived <= bl + 2.0,
                    format!(
                        "{ms:.2} ms at once (fastest peer {who} {b:.2} ms), {lived:.2} ms after 1.5 s \
                     (fastest peer {whol} {bl:.2} ms)"
                    ),
                ))
            },
        ),
        judge("RSS under 2 MiB and the lowest of all", &|r| {
            let kb = r.rss_kb?;
            let (b, who) = best(&|p| p.rss_kb.map(|v| v as f64))?;
            Some((
                kb < 2048 && (kb as f64) < b,
                format!("{kb} kB, lowest peer {who} {b:.0} kB"),
            ))
        }),
        judge("no wakeups while healthy (no watchdog in the bench unit)", &|r| {
            let w = r.idle_wakeups?;
            Some((w == 0, format!("{w} wakeups")))
        }),
        judge("log throughput at least 80% of cat", &|r| {
            let (v, c) = (r.log_mb_s?, cat?);
            Some((
                v >= 0.8 * c,
                format!("{v:.0} MB/s, cat {c:.0} MB/s ({:.0}%)", 100.0 * v / c),
            ))
        }),
        judge("no lines lost over 10 rotations", &|r| {
            let l = r.rotation.as_ref()?;
            Some((
                l.missing == 0 && l.duplicated == 0 && l.garbled == 0,
                format!(
                    "{} missing, {} duplicated, {} garbled of {}",
                    l.missing, l.duplicated, l.garbled, l.written
                ),
            ))
        }),
    ]
}

fn ratio(v: Option<f64>, best: Option<f64>) -> String {
    match (v, best) {
        (Some(v), Some(b)) if b > 0.0 => format!("x{:.1}", v / b),
        (Some(_), Some(_)) => "(best 0)".into(),
        _ => String::new(),
    }
}

pub fn table(rep: &Report) -> String {
    let peers: Vec<&Row> = rep.rows.iter().filter(|r| r.key != "jarvisctl").collect();
    let min = |f: &dyn Fn(&Row) -> Option<f64>| peers.iter().filter_map(|r| f(r)).min_by(f64::total_cmp);
    let best_gap = min(&|r| r.restart_gap_ms);
    let best_lived = min(&|r| r.restart_lived_gap_ms);
    let best_rss = min(&|r| r.rss_kb.map(|v| v as f64));
    let best_pss = min(&|r| r.pss_kb.map(|v| v as f64));
    let best_cpu = min(&|r| r.idle_cpu_ms);
    let best_wake = min(&|r| r.idle_wakeups.map(|v| v as f64));
    let opt = |v: Option<f64>, prec: usize| v.map(|v| format!("{v:.prec$}")).unwrap_or_else(|| "-".into());
    let mut s = format!(
        "supervisors, one run on this machine: restart gap = median of up to {} restarts of a child that \
         exits at once, and of {LIVED_RESTARTS} of one that lived {LIVED_MS} ms; idle window {} s (all peers at \
         once); log {} MB of 100-byte lines; {ROTATIONS} rotations\n",
        rep.restarts_wanted,
        rep.idle_seconds,
        rep.log_bytes / 1_000_000
    );
    let mut cells = vec![[
        "peer",
        "version",
        "restart at once ms (n)",
        "after 1.5 s ms (n)",
        "RSS kB",
        "PSS kB",
        "idle CPU ms",
        "idle wakeups",
        "log MB/s",
        "lost/dup/torn",
    ]
    .map(String::from)];
    let cat = rep.cat_mb_s;
    for r in &rep.rows {
        let gap = format!(
            "{} ({}) {}",
            opt(r.restart_gap_ms, 2),
            r.restart_samples,
            ratio(r.restart_gap_ms, best_gap)
        );
        let lived = format!(
            "{} ({}) {}",
            opt(r.restart_lived_gap_ms, 2),
            r.restart_lived_samples,
            ratio(r.restart_lived_gap_ms, best_lived)
        );
        let rss = format!(
            "{} {}",
            opt(r.rss_kb.map(|v| v as f64), 0),
            ratio(r.rss_kb.map(|v| v as f64), best_rss)
        );
        let pss = format!(
            "{} {}",
            opt(r.pss_kb.map(|v| v as f64), 0),
            ratio(r.pss_kb.map(|v| v as f64), best_pss)
        );
        let cpu = format!("{} {}", opt(r.idle_cpu_ms, 0), ratio(r.idle_cpu_ms, best_cpu));
        let wake = format!(
            "{} {}",
            opt(r.idle_wakeups.map(|v| v as f64), 0),
            ratio(r.idle_wakeups.map(|v| v as f64), best_wake)
        );
        let log = format!(
            "{} {}",
            opt(r.log_mb_s, 0),
            r.log_ratio_to_cat
                .map(|x| format!("({x:.2} cat)"))
                .unwrap_or_default()
        );
        let lost = r
            .rotation
            .as_ref()
            .map(|l| format!("{}/{}/{}", l.missing, l.duplicated, l.garbled))
            .unwrap_or_else(|| "-".into());
        let version = if r.version.is_empty() {
            "-".into()
        } else {
            r.version.clone()
        };
        cells.push([r.peer.into(), version, gap, lived, rss, pss, cpu, wake, log, lost]);
    }
    let mut last: [String; 10] = Default::default();
    last[0] = "child | cat > file".into();
    last[8] = opt(cat, 0);
    cells.push(last);
    let widths: Vec<usize> = (0..10)
        .map(|i| cells.iter().map(|c| c[i].trim().len()).max().unwrap_or(0))
        .collect();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i < 2 {
                    format!("{:<w$}", c.trim())
                } else {
                    format!("{:>w$}", c.trim())
                }
            })
            .collect();
        s += line.join("  ").trim_end();
        s.push('\n');
    }
    s += "ratios (xN) are against the best of supervisord, PM2, runit and s6 in this run\n";
    s +=
        "rotations: supervisord rename + SIGUSR2; PM2 rename + `pm2 reloadLogs`; svlogd and s6-log SIGALRM; \
          jarvisctl rename + SIGHUP to the pid in its pid file\n";
    for r in &rep.rows {
        if !r.processes.is_empty() {
            s += &format!("  {} counted: {}\n", r.peer, r.processes.join(" + "));
        }
        for e in &r.errors {
            s += &format!("  {}: error: {e}\n", r.peer);
        }
    }
    if !rep.jarvisctl_run_available {
        s += "\n!!! jarvisctl run: not available in this build: the targets below are not measured !!!\n";
    }
    s += "\ntargets for jarvisctl run (issue 6):\n";
    for t in &rep.targets {
        let mark = match t.met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "NOT MEASURED",
        };
        s += &format!("  [{mark}] {}: {}\n", t.target, t.detail);
    }
    s
}

pub fn measure(root: &Path, jarvisctl: &Path, cfg: &Config) -> Result<Report> {
    let bench = root.join("target/bench");
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
            Ok(v) => row.log_mb_s = Some(v),
            Err(e) => row.errors.push(format!("log throughput: {e}")),
        }
    }
    // cat again after the peers, and the faster of the two: the ratios are
    // against cat at its best in this run.
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
    let targets = targets(&rows, cat, available);
    Ok(Report {
        idle_seconds: cfg.idle_seconds,
        log_bytes: cfg.log_bytes,
        restarts_wanted: cfg.restarts,
        cat_mb_s: cat,
        jarvisctl_run_available: available,
        rows,
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
        eprint!("{}", table(&rep));
        println!("{text}");
    } else {
        print!("{}", table(&rep));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &'static str, gap: f64, lived: f64, rss: u64, wake: u64, mb_s: f64, missing: u64) -> Row {
        Row {
            key,
            peer: key,
            restart_gap_ms: Some(gap),
            restart_lived_gap_ms: Some(lived),
            rss_kb: Some(rss),
            idle_wakeups: Some(wake),
            log_mb_s: Some(mb_s),
            rotation: Some(LineCount {
                written: 100,
                missing,
                ..LineCount::default()
            }),
            ..Row::default()
        }
    }

    fn met(t: &[Target]) -> Vec<Option<bool>> {
        t.iter().map(|t| t.met).collect()
    }

    #[test]
    fn targets_against_the_best_peer() {
        let rows = [
            row("pm2", 5.0, 6.0, 60000, 100, 150.0, 700),
            row("runit", 1000.0, 1.7, 2500, 0, 60.0, 0),
            row("jarvisctl", 6.9, 3.8, 2000, 0, 900.0, 0),
        ];
        // Within 2 ms at once (6.9 <= 7.0), not after 1.5 s (3.8 > 3.7).
        assert_eq!(
            met(&targets(&rows, Some(1000.0), true)),
            [Some(false), Some(true), Some(true), Some(true), Some(true)]
        );
        let rows = [
            row("runit", 2.0, 1.7, 1900, 3, 60.0, 0),
            row("jarvisctl", 3.0, 3.0, 1950, 1, 700.0, 1),
        ];
        assert_eq!(
            met(&targets(&rows, Some(1000.0), true)),
            [Some(true), Some(false), Some(false), Some(false), Some(false)]
        );
    }

    #[test]
    fn nothing_is_met_without_jarvisctl() {
        let rows = [row("runit", 2.0, 1.7, 1900, 0, 60.0, 0)];
        assert_eq!(met(&targets(&rows, Some(1000.0), false)), [None; 5]);
    }
}
