//! `cargo xtask bench --only deploy` (issue 28): `jarvisctl deploy` against
//! what a user would script instead, on the same booted hosts, the same
//! tree and in the same run:
//! - rsync + ssh: `rsync -a --delete` of the tree (the bot's state and
//!   `.env` excluded, owner and modes as jarvisctl ships them), then
//!   `ssh host systemctl restart jarvis-supervisor`, unconditionally;
//! - Ansible: a playbook of `ansible.posix.synchronize` (same rsync
//!   options) and a handler that restarts the unit with
//!   `ansible.builtin.systemd` when the code changed; ansible-core as the
//!   release tests pin it (target/py), the `ansible.posix` collection out of
//!   PyPI's pinned `ansible` wheel (no galaxy server); pipelining on, no
//!   fact gathering, ssh's ControlPersist as Ansible sets it.
//!
//! Cases: a first deploy (each host reset to the stand-in alone before
//! each run, history removed), a one-file change, no change, a rollback
//! (`jarvisctl deploy --rollback`; the baselines sync the previous tree
//! again), and the one-file change on a fleet of 4 hosts at once (Ansible
//! with forks 4, the rsync script with one background job per host).
//!
//! Figures: the wall time's median of `JARVIS_BENCH_DEPLOY_RUNS` runs
//! (default 2: about 10 minutes on 2 cores), jarvisctl's over each
//! baseline's; the workstation's CPU
//! (user+sys of every process a tool started, from getrusage of the
//! waited-for children, this process being their subreaper so that ssh
//! masters that daemonize are counted too, and ended after each run, so
//! that each run starts cold); and the bot's downtime, read in the host from
//! systemd: from the old main process's end (the unit's
//! `InactiveEnterTimestampMonotonic`) to the new one being ready
//! (`ActiveEnterTimestampMonotonic`, READY=1), 0 when it was not restarted.
//! The issue's targets are printed beside them; a missed target does not
//! fail the bench.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jarvis_test_support::container::Container;
use jarvis_test_support::remote::{self, host_name, Fleet, CODE};
use jarvis_test_support::roots::Suite;
use serde::Serialize;

use crate::run::{self, Result};

/// The `ansible` package of PyPI that bundles `ansible.posix` for the
/// pinned ansible-core (12.x requires ansible-core ~=2.19).
pub const ANSIBLE_COLLECTIONS: &str = "ansible==12.3.0";
const PORTS: [u16; 4] = [2261, 2262, 2263, 2264];
/// The file the one-file change edits.
const CHANGED: &str = "bots/pkg03/sub04/mod_07.py";

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub enum Tool {
    #[serde(rename = "jarvisctl")]
    Jarvisctl,
    #[serde(rename = "rsync+ssh")]
    Rsync,
    #[serde(rename = "ansible")]
    Ansible,
}

impl Tool {
    const ALL: [Tool; 3] = [Tool::Jarvisctl, Tool::Rsync, Tool::Ansible];
    fn name(self) -> &'static str {
        match self {
            Tool::Jarvisctl => "jarvisctl",
            Tool::Rsync => "rsync+ssh",
            Tool::Ansible => "ansible",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub enum Case {
    #[serde(rename = "first deploy")]
    First,
    #[serde(rename = "one-file change")]
    OneFile,
    #[serde(rename = "no change")]
    NoChange,
    #[serde(rename = "rollback")]
    Rollback,
    #[serde(rename = "fleet of 4")]
    Fleet,
}

impl Case {
    const ALL: [Case; 5] = [
        Case::First,
        Case::OneFile,
        Case::NoChange,
        Case::Rollback,
        Case::Fleet,
    ];
    fn name(self) -> &'static str {
        match self {
            Case::First => "first deploy",
            Case::OneFile => "one-file change",
            Case::NoChange => "no change",
            Case::Rollback => "rollback",
            Case::Fleet => "fleet of 4",
        }
    }
}

/// One timed run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sample {
    pub wall_s: f64,
    pub cpu_s: f64,
    /// The CPU the deployed hosts used meanwhile, summed (every process in
    /// their containers: sshd, the tool's host side, the bot's restart).
    pub host_cpu_s: f64,
    /// The worst host's.
    pub downtime_s: f64,
    /// The part of it before the new main process started (the preflight).
    pub before_main_s: f64,
    /// How many times the unit was started, on the host started most.
    pub starts: u32,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub case: Case,
    pub tool: Tool,
    pub samples: Vec<Sample>,
    pub wall_s: Option<f64>,
    pub cpu_s: Option<f64>,
    pub host_cpu_s: Option<f64>,
    pub downtime_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub target: String,
    pub met: Option<bool>,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub runs: usize,
    pub files: usize,
    pub py_files: usize,
    pub bytes: u64,
    pub hosts: usize,
    pub settle_s: u32,
    pub ansible: String,
    pub rows: Vec<Row>,
    pub targets: Vec<Target>,
    pub findings: Vec<String>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

impl Report {
    pub fn row(&self, case: Case, tool: Tool) -> Option<&Row> {
        self.rows.iter().find(|r| r.case == case && r.tool == tool)
    }
    fn wall(&self, case: Case, tool: Tool) -> Option<f64> {
        self.row(case, tool).and_then(|r| r.wall_s)
    }
    fn cpu(&self, case: Case, tool: Tool) -> Option<f64> {
        self.row(case, tool).and_then(|r| r.cpu_s)
    }

    /// The workstation CPU each host after the first costs `tool`.
    pub fn cpu_per_extra_host(&self, tool: Tool) -> Option<f64> {
        let (four, one) = (self.cpu(Case::Fleet, tool)?, self.cpu(Case::OneFile, tool)?);
        Some((four - one) / (PORTS.len() - 1) as f64)
    }

    fn finish(&mut self) {
        for r in &mut self.rows {
            r.wall_s = median(r.samples.iter().map(|s| s.wall_s).collect());
            r.cpu_s = median(r.samples.iter().map(|s| s.cpu_s).collect());
            r.host_cpu_s = median(r.samples.iter().map(|s| s.host_cpu_s).collect());
            r.downtime_s = median(r.samples.iter().map(|s| s.downtime_s).collect());
        }
        self.targets = targets(self);
        self.findings = findings(self);
    }
}

fn over(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// Issue 28's targets, from this run's figures.
pub fn targets(rep: &Report) -> Vec<Target> {
    let vs_ansible = |case: Case, max: f64| {
        let (j, a) = (rep.wall(case, Tool::Jarvisctl), rep.wall(case, Tool::Ansible));
        let target = format!("{} <= {max:.1}x Ansible", case.name());
        match over(j, a) {
            Some(r) => Target {
                target,
                met: Some(r <= max),
                detail: format!("x{r:.2} ({:.2} s vs {:.2} s)", j.unwrap_or(0.0), a.unwrap_or(0.0)),
            },
            None => Target {
                target,
                met: None,
                detail: "no figure".into(),
            },
        }
    };
    let mut out = vec![
        vs_ansible(Case::OneFile, 1.5),
        vs_ansible(Case::Rollback, 1.0),
        vs_ansible(Case::First, 1.5),
    ];
    let (four, one) = (
        rep.wall(Case::Fleet, Tool::Jarvisctl),
        rep.wall(Case::OneFile, Tool::Jarvisctl),
    );
    out.push(match over(four, one) {
        Some(r) => Target {
            target: "fleet of 4 <= 1.3x one host".into(),
            met: Some(r <= 1.3),
            detail: format!(
                "x{r:.2} ({:.2} s vs {:.2} s)",
                four.unwrap_or(0.0),
                one.unwrap_or(0.0)
            ),
        },
        None => Target {
            target: "fleet of 4 <= 1.3x one host".into(),
            met: None,
            detail: "no figure".into(),
        },
    });
    out.push(match rep.cpu_per_extra_host(Tool::Jarvisctl) {
        Some(c) => Target {
            target: "<= 1 s workstation CPU per extra host".into(),
            met: Some(c <= 1.0),
            detail: format!("{c:.3} s"),
        },
        None => Target {
            target: "<= 1 s workstation CPU per extra host".into(),
            met: None,
            detail: "no figure".into(),
        },
    });
    out
}

/// One line per case: each tool's wall time, CPU and the bot's downtime.
pub fn findings(rep: &Report) -> Vec<String> {
    Case::ALL
        .iter()
        .map(|&case| {
            let parts: Vec<String> = Tool::ALL
                .iter()
                .map(|&tool| match rep.row(case, tool) {
                    Some(Row {
                        wall_s: Some(w),
                        cpu_s: Some(c),
                        downtime_s: Some(d),
                        ..
                    }) => format!("{} {w:.2} s (CPU {c:.2} s, bot down {d:.2} s)", tool.name()),
                    _ => format!("{} not measured", tool.name()),
                })
                .collect();
            let ratios: Vec<String> = [Tool::Rsync, Tool::Ansible]
                .iter()
                .filter_map(|&b| {
                    over(rep.wall(case, Tool::Jarvisctl), rep.wall(case, b))
                        .map(|r| format!("x{r:.2} {}", b.name()))
                })
                .collect();
            let mut line = format!("{}: {}", case.name(), parts.join(", "));
            if !ratios.is_empty() {
                line += &format!("; jarvisctl = {}", ratios.join(", "));
            }
            if case == Case::Fleet {
                let per: Vec<String> = Tool::ALL
                    .iter()
                    .filter_map(|&t| {
                        let r = over(rep.wall(Case::Fleet, t), rep.wall(Case::OneFile, t))?;
                        let c = rep.cpu_per_extra_host(t)?;
                        Some(format!(
                            "{} x{r:.2} one host, {c:.3} s CPU per extra host",
                            t.name()
                        ))
                    })
                    .collect();
                if !per.is_empty() {
                    line += &format!("; {}", per.join(", "));
                }
            }
            line
        })
        .collect()
}

pub fn table(rep: &Report) -> String {
    let mut s = format!(
        "deploy, one run on this machine: median of {} runs; tree {} files ({} .py), {:.1} MB; {} Debian 12 \
         hosts (containers, sshd on loopback); jarvisctl deploy --settle {}; {}\n",
        rep.runs,
        rep.files,
        rep.py_files,
        rep.bytes as f64 / 1e6,
        rep.hosts,
        rep.settle_s,
        rep.ansible
    );
    let mut cells: Vec<[String; 8]> = vec![[
        "case",
        "tool",
        "wall s",
        "jarvisctl =",
        "fleet / 1 host",
        "workstation CPU s",
        "hosts' CPU s",
        "bot down s",
    ]
    .map(String::from)];
    let opt = |v: Option<f64>, p: usize| v.map_or_else(|| "-".to_string(), |v| format!("{v:.p$}"));
    for &case in &Case::ALL {
        for &tool in &Tool::ALL {
            let Some(r) = rep.row(case, tool) else { continue };
            let ratio = if tool == Tool::Jarvisctl {
                String::new()
            } else {
                over(rep.wall(case, Tool::Jarvisctl), r.wall_s)
                    .map_or_else(String::new, |x| format!("x{x:.2}"))
            };
            let fleet = if case == Case::Fleet {
                let r = over(r.wall_s, rep.wall(Case::OneFile, tool))
                    .map_or_else(String::new, |x| format!("x{x:.2}"));
                let c = rep
                    .cpu_per_extra_host(tool)
                    .map_or_else(String::new, |c| format!(" ({c:.3} s CPU/extra host)"));
                format!("{r}{c}")
            } else {
                String::new()
            };
            cells.push([
                if tool == Tool::Jarvisctl {
                    case.name().to_string()
                } else {
                    String::new()
                },
                tool.name().to_string(),
                format!("{} (n={})", opt(r.wall_s, 2), r.samples.len()),
                ratio,
                fleet,
                opt(r.cpu_s, 3),
                opt(r.host_cpu_s, 2),
                opt(r.downtime_s, 2),
            ]);
        }
    }
    s += &super::report::columns(&cells, 2);
    s += "targets (issue 28; printed, not enforced):\n";
    for t in &rep.targets {
        let mark = match t.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        s += &format!("  [{mark}] {}: {}\n", t.target, t.detail);
    }
    s += "findings:\n";
    for f in &rep.findings {
        s += &format!("  {f}\n");
    }
    s
}

/// A deterministic generator (xorshift64*), so that every run ships the
/// same tree.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// Python source of about `size` bytes, different for each `seed`.
fn python_source(rng: &mut Rng, size: usize) -> String {
    let words = [
        "price", "order", "wallet", "signal", "token", "retry", "fetch", "queue", "state", "limit", "trade",
        "balance", "health", "client", "window", "budget",
    ];
    let mut s =
        String::from("\"\"\"A module of the generated bench tree.\"\"\"\nimport asyncio\nimport json\n\n");
    let mut i = 0;
    while s.len() < size {
        let a = words[rng.below(16) as usize];
        let b = words[rng.below(16) as usize];
        let k = rng.below(1000);
        s += &format!(
            "\nasync def {a}_{b}_{i}(session, {b}={k}):\n    \"\"\"Handle the {a} of a {b}.\"\"\"\n    \
             result = await session.get('/{a}/{b}', timeout={k})\n    if result.get('{a}') > {b}:\n        \
             return json.dumps({{'{b}': result['{a}'] * {k}}})\n    await asyncio.sleep(0)\n    return None\n"
        );
        i += 1;
    }
    s
}

pub struct Tree {
    pub dir: tempfile::TempDir,
    pub files: usize,
    pub py_files: usize,
    pub bytes: u64,
}

impl Tree {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The one-file change on (`changed`) or off.
    pub fn set_changed(&self, changed: bool) -> Result<()> {
        let p = self.path().join(CHANGED);
        let text = fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let base = text
            .split("\n# bench: changed\n")
            .next()
            .unwrap_or_default()
            .to_string();
        let new = if changed {
            base + "\n# bench: changed\nCHANGED = True\n"
        } else {
            base
        };
        fs::write(&p, new).map_err(|e| format!("{}: {e}", p.display()))
    }
}

/// A tree like the real program's, generated in a temporary directory: the
/// stand-in bot as its entry point (`bots/supervisor.py`, `core/`), about
/// 2,900 `.py` files in nested packages, and data files (JSON, text and
/// binary assets): about 5,000 files and 100 MB. No `requirements.txt` (the
/// hosts have no package index), no `.env`, `data/` or `logs/`.
pub fn generate(root: &Path, under: &Path) -> Result<Tree> {
    let dir = tempfile::Builder::new()
        .prefix("jarvis-bench-tree-")
        .tempdir_in(under)
        .map_err(|e| e.to_string())?;
    let t = dir.path();
    let put = |rel: &str, data: &[u8]| -> Result<()> {
        let p = t.join(rel);
        fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
        fs::write(&p, data).map_err(|e| format!("{}: {e}", p.display()))
    };
    let standin = root.join("tests/fixtures/standin");
    for rel in ["bots/__init__.py", "bots/supervisor.py", "core/__init__.py"] {
        let data = fs::read(standin.join(rel)).map_err(|e| format!("{rel}: {e}"))?;
        put(rel, &data)?;
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut files, mut py, mut bytes) = (3usize, 3usize, 0u64);
    // 10 top packages (8 bot components, core's and a shared lib), 10
    // subpackages each, 27 modules per subpackage.
    let tops: Vec<String> = (0..8)
        .map(|i| format!("bots/pkg{i:02}"))
        .chain(["core/engine".to_string(), "lib/shared".to_string()])
        .collect();
    for top in &tops {
        put(&format!("{top}/__init__.py"), b"")?;
        files += 1;
        py += 1;
        for sub in 0..10 {
            let pkg = format!("{top}/sub{sub:02}");
            put(&format!("{pkg}/__init__.py"), b"from . import mod_00\n")?;
            files += 1;
            py += 1;
            for m in 0..27 {
                let size = 2_000 + rng.below(14_000) as usize;
                let src = python_source(&mut rng, size);
                bytes += src.len() as u64;
                put(&format!("{pkg}/mod_{m:02}.py"), src.as_bytes())?;
                files += 1;
                py += 1;
            }
            // The package's data: JSON and text beside its code.
            for d in 0..6 {
                let n = 1_000 + rng.below(9_000) as usize;
                let body: String = (0..n / 20)
                    .map(|i| format!("{{\"k{i}\": {}}},\n", rng.below(1 << 20)))
                    .collect();
                let text = format!("[\n{body}{{}}]\n");
                bytes += text.len() as u64;
                put(&format!("{pkg}/assets/table_{d}.json"), text.as_bytes())?;
                files += 1;
            }
            // Binary assets (models, fonts, compiled extensions):
            // incompressible, like the real ones.
            for b in 0..15 {
                let n = 8_000 + rng.below(40_000) as usize;
                bytes += n as u64;
                put(&format!("{pkg}/assets/blob_{b:02}.bin"), &rng.bytes(n))?;
                files += 1;
            }
        }
    }
    // A few large files (a model, a database dump shipped with the code).
    for i in 0..8 {
        let n = (4 << 20) + rng.below(1 << 20) as usize;
        bytes += n as u64;
        put(&format!("lib/models/model_{i}.bin"), &rng.bytes(n))?;
        files += 1;
    }
    // Docs and tests, as a real tree carries.
    for i in 0..60 {
        let src = python_source(&mut rng, 3_000);
        bytes += src.len() as u64;
        put(&format!("tests/unit/test_{i:03}.py"), src.as_bytes())?;
        files += 1;
        py += 1;
        let doc = format!(
            "# Note {i}\n\n{}\n",
            "Documentation line of the bench tree.\n".repeat(40)
        );
        bytes += doc.len() as u64;
        put(&format!("docs/note_{i:03}.md"), doc.as_bytes())?;
        files += 1;
    }
    Ok(Tree {
        dir,
        files,
        py_files: py,
        bytes,
    })
}

/// The container's monotonic clock is the kernel's, shared with this
/// process (no time namespace), in µs.
fn monotonic_us() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000
}

/// user+sys of the waited-for children so far, in s.
fn children_cpu() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    s(u.user_time()) + s(u.system_time())
}

/// This process's children (of every thread).
fn children() -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let text = fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

/// Ends the children that appeared since `before` (ssh masters left
/// behind to persist, reparented to this subreaper), by their pid, and
/// waits for them, so that their CPU is counted and the next run starts
/// cold.
fn end_leftovers(before: &BTreeSet<i32>) {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::waitpid;
    use nix::unistd::Pid;
    for pid in children().difference(before) {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
        let _ = waitpid(Pid::from_raw(*pid), None);
    }
}

/// What the bot went through on one host during a deploy.
#[derive(Clone, Copy, Debug, Default)]
struct Down {
    /// From the old main process's end to the new one's readiness; 0 when
    /// it was not restarted.
    total_s: f64,
    /// The part before the new main process started (the unit's
    /// `ExecStartPre=`, the preflight).
    before_main_s: f64,
    /// How many times the unit was started ("Started" in its journal).
    starts: u32,
}

/// The bot's downtime on `c` since `since_us` (monotonic), read from
/// systemd in the host.
fn downtime(c: &Container, since_us: u64) -> Result<Down> {
    let out = c.sh(
        "systemctl show -p InactiveEnterTimestampMonotonic -p ExecMainStartTimestampMonotonic \
         -p ActiveEnterTimestampMonotonic -p ActiveState jarvis-supervisor; \
         journalctl -u jarvis-supervisor -o short-monotonic --no-pager --since=-10min | grep ' Started '",
    );
    let get = |k: &str| -> Option<String> {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('=').map(str::to_string))
    };
    if get("ActiveState").as_deref() != Some("active") {
        return Err(format!("the bot is not active after the deploy:\n{}", out.all()));
    }
    // "[ 1234.567890] host systemd[1]: Started jarvis-supervisor.service ..."
    let starts = out
        .stdout
        .lines()
        .filter_map(|l| {
            let t = l.strip_prefix('[')?.split(']').next()?.trim();
            let (sec, frac) = t.split_once('.')?;
            Some(sec.parse::<u64>().ok()? * 1_000_000 + frac.parse::<u64>().ok()?)
        })
        .filter(|&t| t >= since_us)
        .count() as u32;
    let num = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let (inactive, main, active) = (
        num("InactiveEnterTimestampMonotonic"),
        num("ExecMainStartTimestampMonotonic"),
        num("ActiveEnterTimestampMonotonic"),
    );
    if active < since_us || inactive < since_us {
        return Ok(Down {
            starts,
            ..Down::default()
        });
    }
    Ok(Down {
        total_s: active.saturating_sub(inactive) as f64 / 1e6,
        before_main_s: main.saturating_sub(inactive) as f64 / 1e6,
        starts,
    })
}

struct Bench<'a> {
    fleet: Fleet,
    tree: &'a Tree,
    py_bin: PathBuf,
    collections: PathBuf,
    work: tempfile::TempDir,
    settle: String,
    /// Children alive before any tool ran (the containers' nspawn).
    own_children: BTreeSet<i32>,
}

impl Bench<'_> {
    fn ssh_opts(&self, port: u16) -> String {
        let mut s = format!("ssh -p {port} -o BatchMode=yes");
        for o in self.fleet.key.options() {
            s += &format!(" -o {o}");
        }
        s
    }

    /// The command that deploys the tree with `tool` to the hosts at
    /// `idx`; `rollback`: jarvisctl's own rollback (the baselines sync the
    /// tree as it is, which is the previous one again).
    fn command(&self, tool: Tool, idx: &[usize], rollback: bool) -> Command {
        let tree = self.tree.path().display().to_string();
        match tool {
            Tool::Jarvisctl => {
                let mut args: Vec<String> = Vec::new();
                for &i in idx {
                    args.push("--host".into());
                    args.push(host_name(self.fleet.ports[i]));
                }
                if rollback {
                    args.push("--rollback".into());
                } else {
                    args.push("--code".into());
                    args.push(tree);
                }
                args.extend(["--settle".to_string(), self.settle.clone()]);
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                self.fleet.command(&a)
            }
            Tool::Rsync => {
                // What a user scripts: one background job per host.
                let mut script = String::new();
                for &i in idx {
                    let port = self.fleet.ports[i];
                    script += &format!(
                        "( rsync -a --delete --chown=jarvis:jarvis --chmod=o-rwx --exclude=/.env --exclude=/data/ \
                         --exclude=/logs/ -e '{ssh}' {tree}/ root@127.0.0.1:{CODE}/ && {ssh} root@127.0.0.1 \
                         systemctl restart jarvis-supervisor ) & pids=\"$pids $!\"\n",
                        ssh = self.ssh_opts(port)
                    );
                }
                script += "rc=0; for p in $pids; do wait $p || rc=1; done; exit $rc\n";
                let mut c = self.fleet.ns.command("sh");
                c.args(["-c", &script]);
                c
            }
            Tool::Ansible => {
                let w = self.work.path();
                let mut c = self.fleet.ns.command("env");
                let path = format!(
                    "{}:{}",
                    self.py_bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                );
                let mut ssh_args =
                    String::from("-C -o ControlMaster=auto -o ControlPersist=60s -o BatchMode=yes");
                for o in self.fleet.key.options() {
                    ssh_args += &format!(" -o {o}");
                }
                let limit: Vec<String> = idx.iter().map(|&i| format!("h{i}")).collect();
                c.arg(format!("PATH={path}"))
                    .arg(format!("ANSIBLE_HOME={}", w.join("home").display()))
                    .arg(format!("ANSIBLE_LOCAL_TEMP={}", w.join("tmp").display()))
                    .arg(format!("ANSIBLE_COLLECTIONS_PATH={}", self.collections.display()))
                    .arg(format!("ANSIBLE_SSH_ARGS={ssh_args}"))
                    .arg("ANSIBLE_PIPELINING=True")
                    .arg("ANSIBLE_NOCOLOR=1")
                    .arg("ANSIBLE_HOST_KEY_CHECKING=False")
                    .arg(self.py_bin.join("ansible-playbook"))
                    .arg("-i")
                    .arg(w.join("inventory.ini"))
                    .args(["-f", &idx.len().to_string(), "-l", &limit.join(",")])
                    .arg("-e")
                    .arg(format!("tree={tree}"))
                    .arg(w.join("deploy.yml"));
                c
            }
        }
    }

    /// Runs one deploy, timed; its sample (the worst host's downtime).
    fn timed(&self, tool: Tool, idx: &[usize], rollback: bool) -> Result<Sample> {
        // Each deploy meets a bot that has run a while, as a real deploy
        // does: the package's restart backoff (`jarvisctl backoff`, an
        // ExecStartPre=) forgets the bench's quick restarts before. Without
        // this, a `systemctl restart` seconds after the last start waits
        // 4, 8, 16 s (measured), and the baselines' figures are that wait.
        for &i in idx {
            self.fleet.hosts[i].sh("rm -f /run/jarvis-supervisor/backoff.json");
        }
        let mut cmd = self.command(tool, idx, rollback);
        let since = monotonic_us();
        let host_cpu = || -> f64 {
            idx.iter()
                .filter_map(|&i| self.fleet.hosts[i].cpu_time())
                .map(|d| d.as_secs_f64())
                .sum()
        };
        let host0 = host_cpu();
        let cpu0 = children_cpu();
        let t0 = Instant::now();
        let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        let wall_s = t0.elapsed().as_secs_f64();
        end_leftovers(&self.own_children);
        let cpu_s = children_cpu() - cpu0;
        let host_cpu_s = host_cpu() - host0;
        if !out.status.success() {
            return Err(format!(
                "{} ({}) failed: {}\n{}{}",
                tool.name(),
                if rollback { "rollback" } else { "deploy" },
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mut worst = Down::default();
        for &i in idx {
            let d = downtime(&self.fleet.hosts[i], since)?;
            if d.total_s >= worst.total_s {
                worst = Down {
                    starts: worst.starts.max(d.starts),
                    ..d
                };
            } else {
                worst.starts = worst.starts.max(d.starts);
            }
        }
        Ok(Sample {
            wall_s,
            cpu_s,
            host_cpu_s,
            downtime_s: worst.total_s,
            before_main_s: worst.before_main_s,
            starts: worst.starts,
        })
    }

    /// Untimed: the same, when only the state after it matters.
    fn untimed(&self, tool: Tool, idx: &[usize], rollback: bool) -> Result<()> {
        self.timed(tool, idx, rollback).map(|_| ())
    }

    /// Checks the one-file change is (`changed`) or is not on host `i`.
    fn check(&self, i: usize, changed: bool) -> Result<()> {
        let r = self.fleet.hosts[i].sh(&format!("grep -c '^CHANGED = True' {CODE}/{CHANGED}"));
        let on = r.stdout.trim() == "1";
        if on != changed {
            return Err(format!(
                "host {i}: the one-file change is {} on the host, expected {}",
                if on { "there" } else { "not there" },
                if changed { "there" } else { "not there" }
            ));
        }
        Ok(())
    }

    /// Back to the stand-in alone, as before a first deploy: no deploy
    /// history, the generated files gone, the bot restarted and healthy.
    fn reset(&self, i: usize) -> Result<()> {
        let c = &self.fleet.hosts[i];
        let r = c.sh(&format!(
            "set -e; rm -rf /var/lib/jarvis-supervisor/deploys; cd {CODE}; \
             find . -mindepth 1 -maxdepth 1 ! -name .env ! -name data ! -name logs -exec rm -rf {{}} +; \
             cp -a /var/tmp/bench-pristine/bots /var/tmp/bench-pristine/core .; \
             chown $(cat /var/tmp/bench-pristine/owner) {CODE}; chmod $(cat /var/tmp/bench-pristine/mode) {CODE}; \
             systemctl restart jarvis-supervisor"
        ));
        if r.status != 0 {
            return Err(format!("resetting host {i} failed:\n{}", r.all()));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !remote::healthy(c) {
            if Instant::now() > deadline {
                return Err(format!("host {i}: the bot is not healthy 60 s after a reset"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }
}

/// The `ansible.posix` collection, extracted from PyPI's pinned `ansible`
/// wheel into target/ansible-collections (once).
fn collections(root: &Path, py_bin: &Path) -> Result<PathBuf> {
    let dir = root.join("target/ansible-collections");
    let posix = dir.join("ansible_collections/ansible/posix");
    let stamp = dir.join("from");
    if posix.join("plugins/modules/synchronize.py").exists()
        && fs::read_to_string(&stamp).ok().as_deref() == Some(ANSIBLE_COLLECTIONS)
    {
        return Ok(dir);
    }
    let _ = fs::remove_dir_all(&dir);
    let dl = root.join("target/ansible-wheel");
    let _ = fs::remove_dir_all(&dl);
    run::status(
        Command::new(py_bin.join("pip"))
            .args(["download", "-q", "--no-deps", "-d"])
            .arg(&dl)
            .arg(ANSIBLE_COLLECTIONS),
    )
    .map_err(|e| {
        format!(
            "{e}\n*** the ansible.posix collection (synchronize) could not be had from PyPI ({ANSIBLE_COLLECTIONS}); \
             the deploy bench needs it ***"
        )
    })?;
    let script = "import sys, zipfile, glob\n\
        w = glob.glob(sys.argv[1] + '/ansible-*.whl')[0]\n\
        z = zipfile.ZipFile(w)\n\
        for n in z.namelist():\n    \
            if n.startswith('ansible_collections/ansible/posix/'):\n        \
                z.extract(n, sys.argv[2])\n";
    run::status(
        Command::new(py_bin.join("python"))
            .args(["-c", script])
            .arg(&dl)
            .arg(&dir),
    )?;
    let _ = fs::remove_dir_all(&dl);
    fs::write(&stamp, ANSIBLE_COLLECTIONS).map_err(|e| e.to_string())?;
    Ok(dir)
}

const PLAYBOOK: &str = "\
- name: Deploy the bot's code
  hosts: all
  gather_facts: false
  tasks:
    - name: Ship the code
      ansible.posix.synchronize:
        src: \"{{ tree }}/\"
        dest: /home/jarvis/Jarvis/
        delete: true
        use_ssh_args: true
        rsync_opts:
          - --chown=jarvis:jarvis
          - --chmod=o-rwx
          - --exclude=/.env
          - --exclude=/data/
          - --exclude=/logs/
      notify: Restart the bot
  handlers:
    - name: Restart the bot
      ansible.builtin.systemd:
        name: jarvis-supervisor
        state: restarted
";

fn runs() -> Result<usize> {
    match std::env::var("JARVIS_BENCH_DEPLOY_RUNS") {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("JARVIS_BENCH_DEPLOY_RUNS={v}: a positive number of runs")),
        Err(_) => Ok(2),
    }
}

/// The .deb the hosts install: `$JARVIS_DEB`, else a fresh `cargo xtask dist`.
fn deb() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("JARVIS_DEB").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    Ok(crate::dist::dist()?.deb)
}

fn measure(root: &Path) -> Result<Report> {
    if !crate::deps::is_root() {
        return Err("the deploy bench boots containers: run it as root".into());
    }
    crate::deps::apt(&[
        "debootstrap",
        "systemd-container",
        "rsync",
        "openssh-client",
        "iproute2",
    ])?;
    let runs = runs()?;
    let settle = std::env::var("JARVIS_BENCH_DEPLOY_SETTLE").unwrap_or_else(|_| "0".into());
    let deb = deb()?;
    let tools = crate::tools::ensure()?;
    let collections = collections(root, &tools.py_bin)?;
    // ssh masters that daemonize (Ansible's ControlPersist) become this
    // process's children: their CPU is counted, and they are ended.
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
    let t = Instant::now();
    let tree = generate(root, Path::new("/var/tmp"))?;
    eprintln!(
        "bench deploy: tree of {} files ({} .py), {:.1} MB generated in {:.1?}",
        tree.files,
        tree.py_files,
        tree.bytes as f64 / 1e6,
        t.elapsed()
    );
    let t = Instant::now();
    let want: Vec<(Suite, u16)> = PORTS.iter().map(|&p| (Suite::Bookworm, p)).collect();
    // The client: $JARVISCTL, else the .deb's own jarvisctl.
    let client = std::env::var_os("JARVISCTL")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let fleet = remote::fleet("bench", &want, root, &deb, client);
    eprintln!(
        "bench deploy: {} hosts booted and healthy in {:.1?}",
        PORTS.len(),
        t.elapsed()
    );
    for c in &fleet.hosts {
        // Many restarts in a day: the stand-in's own loop guard would sleep
        // 60 s before readiness (as the real bot does); not what is measured.
        c.ok(&format!(
            "echo STANDIN_LOOP_GUARD_SLEEP=0 >> {CODE}/.env; echo PYTHONDONTWRITEBYTECODE=1 >> {CODE}/.env; \
             mkdir -p /var/tmp/bench-pristine && cp -a {CODE}/bots {CODE}/core /var/tmp/bench-pristine/ && \
             stat -c %U:%G {CODE} > /var/tmp/bench-pristine/owner && stat -c %a {CODE} > /var/tmp/bench-pristine/mode"
        ));
    }
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut inv = String::from("[bots]\n");
    for (i, p) in fleet.ports.iter().enumerate() {
        inv += &format!(
            "h{i} ansible_host=127.0.0.1 ansible_port={p} ansible_user=root ansible_ssh_private_key_file={}\n",
            fleet.key.file().display()
        );
    }
    fs::write(work.path().join("inventory.ini"), inv).map_err(|e| e.to_string())?;
    fs::write(work.path().join("deploy.yml"), PLAYBOOK).map_err(|e| e.to_string())?;
    let ansible_version = String::from_utf8_lossy(
        &run::output(Command::new(tools.py_bin.join("ansible-playbook")).arg("--version"))?.stdout,
    )
    .lines()
    .next()
    .unwrap_or_default()
    .to_string();
    let b = Bench {
        own_children: children(),
        fleet,
        tree: &tree,
        py_bin: tools.py_bin.clone(),
        collections,
        work,
        settle: settle.clone(),
    };
    let mut rep = Report {
        runs,
        files: tree.files,
        py_files: tree.py_files,
        bytes: tree.bytes,
        hosts: PORTS.len(),
        settle_s: settle.parse().unwrap_or(0),
        ansible: format!(
            "{} with ansible.posix from {ANSIBLE_COLLECTIONS} (synchronize)",
            ansible_version.replace(['[', ']'], "")
        ),
        rows: Case::ALL
            .iter()
            .flat_map(|&case| {
                Tool::ALL.iter().map(move |&tool| Row {
                    case,
                    tool,
                    samples: Vec::new(),
                    wall_s: None,
                    cpu_s: None,
                    host_cpu_s: None,
                    downtime_s: None,
                })
            })
            .collect(),
        targets: Vec::new(),
        findings: Vec::new(),
    };
    let push = |rep: &mut Report, case: Case, tool: Tool, s: Sample| {
        eprintln!(
            "bench deploy: {:16} {:10} {:6.2} s  CPU {:6.3} s  bot down {:5.2} s ({:.2} s before its main process), started {}x",
            case.name(),
            tool.name(),
            s.wall_s,
            s.cpu_s,
            s.downtime_s,
            s.before_main_s,
            s.starts
        );
        if let Some(r) = rep.rows.iter_mut().find(|r| r.case == case && r.tool == tool) {
            r.samples.push(s);
        }
    };
    let all: Vec<usize> = (0..PORTS.len()).collect();
    let tools_first = [Tool::Rsync, Tool::Ansible, Tool::Jarvisctl];
    tree.set_changed(false)?;
    // First deploys on host 0; each run ends with jarvisctl's, so that the
    // host is on the tree with jarvisctl's deploy in effect.
    for _ in 0..runs {
        for tool in tools_first {
            b.reset(0)?;
            let s = b.timed(tool, &[0], false)?;
            b.check(0, false)?;
            push(&mut rep, Case::First, tool, s);
        }
    }
    // The one-file change, its rollback and a deploy with no change, on
    // host 0. Each tool leaves the host on the tree it found.
    for _ in 0..runs {
        for tool in Tool::ALL {
            tree.set_changed(true)?;
            let s = b.timed(tool, &[0], false)?;
            b.check(0, true)?;
            push(&mut rep, Case::OneFile, tool, s);
            tree.set_changed(false)?;
            let s = b.timed(tool, &[0], tool == Tool::Jarvisctl)?;
            b.check(0, false)?;
            push(&mut rep, Case::Rollback, tool, s);
            let s = b.timed(tool, &[0], false)?;
            push(&mut rep, Case::NoChange, tool, s);
        }
    }
    // The fleet: the other hosts get the tree first (untimed), then the
    // one-file change goes to all 4 at once, and back (untimed).
    b.untimed(Tool::Jarvisctl, &all[1..], false)?;
    for _ in 0..runs {
        for tool in Tool::ALL {
            tree.set_changed(true)?;
            let s = b.timed(tool, &all, false)?;
            for &i in &all {
                b.check(i, true)?;
            }
            push(&mut rep, Case::Fleet, tool, s);
            tree.set_changed(false)?;
            b.untimed(tool, &all, tool == Tool::Jarvisctl)?;
        }
    }
    rep.finish();
    Ok(rep)
}

/// Run it, print the table (with `json`, the JSON on stdout and the table
/// on stderr), write target/bench/deploy.json. Missed targets are printed,
/// not failed.
pub fn bench(root: &Path, json: bool) -> Result<()> {
    let rep = measure(root)?;
    let text = serde_json::to_string_pretty(&rep).map_err(|e| e.to_string())?;
    let dir = root.join("target/bench");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let file = dir.join("deploy.json");
    fs::write(&file, format!("{text}\n")).map_err(|e| format!("{}: {e}", file.display()))?;
    if json {
        eprint!("{}", table(&rep));
        println!("{text}");
    } else {
        print!("{}", table(&rep));
        println!("(figures also in {})", file.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(w: f64, c: f64) -> Sample {
        Sample {
            wall_s: w,
            cpu_s: c,
            host_cpu_s: 2.0,
            downtime_s: 1.0,
            before_main_s: 0.1,
            starts: 1,
        }
    }

    fn report(j: [f64; 5], a: [f64; 5], cpu_one: f64, cpu_four: f64) -> Report {
        let mut rows = Vec::new();
        for (k, &case) in Case::ALL.iter().enumerate() {
            for &tool in &Tool::ALL {
                let w = match tool {
                    Tool::Jarvisctl => j[k],
                    _ => a[k],
                };
                let c = match (tool, case) {
                    (Tool::Jarvisctl, Case::OneFile) => cpu_one,
                    (Tool::Jarvisctl, Case::Fleet) => cpu_four,
                    _ => 0.5,
                };
                rows.push(Row {
                    case,
                    tool,
                    samples: vec![sample(w, c), sample(w + 1.0, c), sample(w - 0.5, c)],
                    wall_s: None,
                    cpu_s: None,
                    host_cpu_s: None,
                    downtime_s: None,
                });
            }
        }
        let mut rep = Report {
            runs: 3,
            files: 5000,
            py_files: 2900,
            bytes: 100_000_000,
            hosts: 4,
            settle_s: 0,
            ansible: "ansible".into(),
            rows,
            targets: Vec::new(),
            findings: Vec::new(),
        };
        rep.finish();
        rep
    }

    #[test]
    fn targets_are_met_from_the_medians() {
        // Cases: first, one-file, no change, rollback, fleet.
        let rep = report([6.0, 3.0, 2.0, 3.0, 3.5], [5.0, 4.0, 3.0, 4.0, 6.0], 0.4, 1.0);
        let met: Vec<Option<bool>> = rep.targets.iter().map(|t| t.met).collect();
        assert_eq!(met, [Some(true); 5], "{:?}", rep.targets);
        assert!((rep.cpu_per_extra_host(Tool::Jarvisctl).unwrap() - 0.2).abs() < 1e-9);
        let text = table(&rep);
        assert!(
            text.contains("[met] one-file change <= 1.5x Ansible: x0.75"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("fleet of 4") && l.contains("jarvisctl")),
            "{text}"
        );
        assert_eq!(rep.findings.len(), 5);
        assert!(
            rep.findings[4].starts_with("fleet of 4: jarvisctl 3.50 s"),
            "{}",
            rep.findings[4]
        );
    }

    #[test]
    fn each_target_can_be_missed() {
        let rep = report([9.0, 7.0, 2.0, 4.1, 9.2], [5.0, 4.0, 3.0, 4.0, 6.0], 0.4, 4.0);
        let met: Vec<Option<bool>> = rep.targets.iter().map(|t| t.met).collect();
        assert_eq!(met, [Some(false); 5], "{:?}", rep.targets);
        assert!(table(&rep).contains("[NOT met] <= 1 s workstation CPU per extra host: 1.200 s"));
    }

    #[test]
    fn a_missing_figure_is_not_measured() {
        let mut rep = report([6.0; 5], [5.0; 5], 0.4, 1.0);
        rep.rows.retain(|r| r.tool != Tool::Ansible);
        rep.finish();
        assert_eq!(rep.targets[0].met, None);
        assert!(rep.findings[0].contains("ansible not measured"));
    }

    #[test]
    fn the_tree_is_like_the_real_programs_and_the_same_each_time() {
        let tmp = tempfile::tempdir().unwrap();
        let root = run::root();
        let a = generate(&root, tmp.path()).unwrap();
        let b = generate(&root, tmp.path()).unwrap();
        assert!((4_500..=5_500).contains(&a.files), "{} files", a.files);
        assert!((2_700..=3_100).contains(&a.py_files), "{} .py", a.py_files);
        assert!((90_000_000..=115_000_000).contains(&a.bytes), "{} bytes", a.bytes);
        let same = Command::new("diff")
            .arg("-r")
            .arg(a.path())
            .arg(b.path())
            .status()
            .unwrap();
        assert!(same.success(), "two trees differ");
        assert!(a.path().join("bots/supervisor.py").is_file());
        assert!(!a.path().join("requirements.txt").exists());
        a.set_changed(true).unwrap();
        let text = fs::read_to_string(a.path().join(CHANGED)).unwrap();
        assert!(text.ends_with("CHANGED = True\n"));
        a.set_changed(false).unwrap();
        assert_eq!(
            fs::read(a.path().join(CHANGED)).unwrap(),
            fs::read(b.path().join(CHANGED)).unwrap()
        );
    }
}
