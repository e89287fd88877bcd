//! `jarvisctl import`: hand-written units (a bot gateway's: root, a tree
//! under /root, one env file with every bot's token, a target) turned into
//! named instances, and back with `--undo`.
//!
//! The plan is made first, from files only, and every change it holds is
//! one printed line; nothing is touched before the copies and the record
//! the undo needs are on disk, under `/var/lib/jarvis-supervisor/import/`.
//!
//! The rules it applies (docs/service.md, "Moving hand-written units over"):
//! - each service becomes the instance named after it (`alpha.service` is
//!   `alpha`), running as `jarvis-NAME` with `jarvis-tree-TREE` as its group,
//!   one group per code tree, shared by the tree's instances;
//! - a tree under /root moves to /srv/TREE (`--tree-to`); its top directory
//!   becomes root:GROUP 0750, so that only root and the tree's instances
//!   enter it; an entry inside that others could not read is given to the
//!   group to read; the tree's `data/` and `logs/` (`data/` made when neither
//!   is there) become root:GROUP 2770, the only places the bots write;
//! - an env file in the tree becomes root:root 0600; each instance gets its
//!   own `/etc/jarvis-supervisor/NAME.env` holding the variables whose names
//!   start with its name in capitals and `_`. A variable that matches no
//!   instance goes to none unless `--share KEY` gives it to all of them.
//!   No value is ever printed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dropin::plain_path;
use crate::instances::{self, plain_value, Entry, Spec};
use crate::provision::{self, Change};
use jarvis_model::envfile;
use jarvis_model::error::{exit, Error, Result};
use jarvis_model::instance::{Instance, InstanceName, DROPIN};
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

/// Where the copies and the record of the last import are kept.
pub const STATE: &str = "/var/lib/jarvis-supervisor/import";
const RECORD: &str = "record.json";
/// The directory of the instances' own env files.
const ENV_DIR: &str = "/etc/jarvis-supervisor";
/// The tree's directories the bots write, made group-writable.
const WRITABLE: [&str; 2] = ["data", "logs"];
/// Largest env file read.
const MAX_ENV: u64 = 1 << 20;

/// [Service] settings carried over as they are (plain values only).
const CARRIED: [&str; 18] = [
    "Restart",
    "MemoryHigh",
    "MemoryLow",
    "MemoryMin",
    "MemorySwapMax",
    "CPUWeight",
    "TasksMax",
    "IOWeight",
    "LimitNOFILE",
    "LimitNPROC",
    "LimitCORE",
    "Nice",
    "TimeoutStartSec",
    "TimeoutStopSec",
    "RuntimeMaxSec",
    "KillMode",
    "KillSignal",
    "SuccessExitStatus",
];
/// [Service] settings read into the instance itself.
const HANDLED: [&str; 11] = [
    "Type",
    "User",
    "Group",
    "WorkingDirectory",
    "ExecStart",
    "EnvironmentFile",
    "MemoryMax",
    "CPUQuota",
    "RestartSec",
    "WatchdogSec",
    "NotifyAccess",
];

/// One hand-written unit as it was before the import.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OldUnit {
    pub name: String,
    /// Its files (the unit and its drop-ins), as systemd sees them, each
    /// with the name of its copy.
    pub files: Vec<(PathBuf, String)>,
    /// `systemctl`'s UnitFileState and ActiveState before, when systemd runs.
    pub enabled: Option<String>,
    pub active: Option<String>,
}

/// An owner and mode changed in the tree, as it was (path relative to it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Was {
    pub rel: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// A file the import writes, and its sha256 as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Written {
    pub path: PathBuf,
    pub sha256: String,
}

/// What an import did, enough to undo it; written before anything changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub services: Vec<OldUnit>,
    pub targets: Vec<OldUnit>,
    pub tree_from: PathBuf,
    pub tree_to: PathBuf,
    pub group: String,
    pub instances: Vec<String>,
    pub dropins: Vec<Written>,
    pub env_files: Vec<Written>,
    /// The env files the units read, with the names of their copies.
    pub env_sources: Vec<(PathBuf, String)>,
    pub modes: Vec<Was>,
    /// Directories of the tree the import made (relative).
    pub made: Vec<PathBuf>,
}

/// One bot: its old unit, the instance it becomes, its variables.
#[derive(Debug, Clone, Serialize)]
pub struct Bot {
    pub unit: String,
    pub spec: Spec,
    /// The names of the variables its env file gets (never their values).
    pub keys: Vec<String>,
    #[serde(skip)]
    env_text: String,
}

/// A permission change in the tree, planned.
#[derive(Debug, Clone)]
struct Perm {
    rel: PathBuf,
    /// Made by the import (a writable directory that was missing).
    make: bool,
    /// The owner to set (on a host; none in a rooted tree): a uid, and
    /// whether the group is the tree's (else root's).
    owner: Option<(u32, bool)>,
    mode: u32,
}

/// The whole import, planned from files, nothing changed yet.
#[derive(Debug)]
pub struct Plan {
    pub bots: Vec<Bot>,
    pub changes: Vec<Change>,
    pub notes: Vec<String>,
    record: Record,
    perms: Vec<Perm>,
}

fn change(target: impl Into<String>, action: impl Into<String>) -> Change {
    Change {
        target: target.into(),
        action: action.into(),
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether systemd runs the host this acts on (never for a rooted tree).
fn live(paths: &Paths) -> bool {
    paths.is_system() && paths.host(Path::new("/run/systemd/system")).is_dir()
}

fn unit_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c))
        && (n.ends_with(".service") || n.ends_with(".target"))
}

/// The unit's file and its drop-ins, as systemd paths.
fn unit_files(paths: &Paths, name: &str) -> Result<Vec<PathBuf>> {
    let dirs = paths.unit_dirs();
    let main = dirs
        .iter()
        .rev()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::new(format!("the unit {name} has no unit file here"))
                .with_note("name the hand-written units by their file names, for example alpha.service or gateway.target")
        })?;
    let mut files = vec![main];
    for d in &dirs {
        if let Ok(read) = fs::read_dir(d.join(format!("{name}.d"))) {
            let mut conf: Vec<PathBuf> = read
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect();
            conf.sort();
            files.extend(conf);
        }
    }
    Ok(files.into_iter().map(|f| system_path(paths, &f)).collect())
}

/// A host path of a rooted tree back as the system sees it.
fn system_path(paths: &Paths, host: &Path) -> PathBuf {
    let root = paths.host(Path::new("/"));
    match host.strip_prefix(&root) {
        Ok(rel) => Path::new("/").join(rel),
        Err(_) => host.to_path_buf(),
    }
}

fn state(unit: &str) -> (Option<String>, Option<String>) {
    let Some(m) = crate::systemd::show(unit, &["UnitFileState", "ActiveState"]) else {
        return (None, None);
    };
    (m.get("UnitFileState").cloned(), m.get("ActiveState").cloned())
}

fn old_unit(paths: &Paths, name: &str, n: &mut usize) -> Result<OldUnit> {
    let files = unit_files(paths, name)?
        .into_iter()
        .map(|f| {
            *n += 1;
            let copy = format!("{n:02}-{}", f.file_name().unwrap_or_default().to_string_lossy());
            (f, copy)
        })
        .collect();
    let (enabled, active) = if live(paths) { state(name) } else { (None, None) };
    Ok(OldUnit {
        name: name.to_string(),
        files,
        enabled,
        active,
    })
}

/// The services a target pulls in (`Wants=`, `Requires=`, `BindsTo=`).
fn wanted(u: &Unit) -> Vec<String> {
    ["Wants", "Requires", "BindsTo"]
        .iter()
        .flat_map(|k| u.words("Unit", k))
        .filter(|w| w.ends_with(".service"))
        .collect()
}

/// The targets in the admin's unit directory that pull in any of `services`.
fn targets_of(paths: &Paths, services: &[String]) -> Vec<String> {
    let dir = paths.host(Path::new(jarvis_model::instance::UNIT_DIR));
    let mut out = Vec::new();
    let Ok(read) = fs::read_dir(&dir) else {
        return out;
    };
    let mut names: Vec<String> = read
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".target") && unit_name_ok(n))
        .collect();
    names.sort();
    for n in names {
        if let Ok(u) = Unit::load_named(paths, &n) {
            if wanted(&u).iter().any(|w| services.contains(w)) {
                out.push(n);
            }
        }
    }
    out
}

/// `alpha` is `ALPHA_`: the start of every variable of its own.
fn prefix(name: &str) -> String {
    format!("{}_", name.to_uppercase().replace('-', "_"))
}

/// `KEY="VALUE"` as systemd reads it back (a double-quoted value, with
/// `\`, `"`, `` ` `` and `$` escaped).
fn assignment(key: &str, value: &str) -> String {
    let mut s = format!("{key}=\"");
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '`' | '$') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push_str("\"\n");
    s
}

/// One unit turned into the instance it becomes.
struct Parsed {
    unit: String,
    spec: Spec,
    env: Vec<PathBuf>,
}

fn parse_service(paths: &Paths, unit: &str, group: Option<&str>) -> Result<Parsed> {
    let stem = unit.trim_end_matches(".service");
    let name: InstanceName = stem.parse().map_err(|e: Error| {
        Error::new(format!("{unit} cannot become an instance: {e}")).with_note(
            "rename the unit file to a name of lowercase letters, digits, - and _ (alpha.service), then import it",
        )
    })?;
    let instance = Instance::Named(name.clone());
    if paths.host(&instance.dropin_dir().join(DROPIN)).exists() {
        return Err(Error::new(format!(
            "{unit}: the instance {name} exists already ({})",
            instance.dropin_dir().join(DROPIN).display()
        ))
        .with_note(format!(
            "remove it first (jarvisctl instance remove {name}) or rename the unit"
        )));
    }
    let u = Unit::load_named(paths, unit)?;
    let bad = |what: String| {
        Error::new(format!("{unit}: {what}"))
            .with_note("change the unit by hand first, or make the instance with jarvisctl instance add")
    };
    let notify = match u.last("Service", "Type").as_deref().unwrap_or("simple") {
        "simple" | "exec" => false,
        "notify" => true,
        other => {
            return Err(bad(format!(
                "Type={other} cannot become an instance (simple, exec or notify only)"
            )))
        }
    };
    let wd = u
        .working_directory()
        .filter(|w| !w.optional)
        .ok_or_else(|| bad("has no WorkingDirectory=: the code tree is not known".into()))?;
    let code_root = plain_path("WorkingDirectory=", &wd.path.to_string_lossy())?;
    let argv = u.exec_start();
    let (python, entry) = match argv.as_slice() {
        [py, m, module] if m == "-m" => (py, Entry::Module(module.clone())),
        [py, script] => {
            let full = if script.starts_with('/') {
                PathBuf::from(script)
            } else {
                code_root.join(script)
            };
            let full = plain_path("ExecStart='s script", &full.to_string_lossy())?;
            let rel = full.strip_prefix(&code_root).map_err(|_| {
                bad(format!(
                    "its script {} is not under its WorkingDirectory {}",
                    full.display(),
                    code_root.display()
                ))
            })?;
            (py, Entry::Script(rel.to_path_buf()))
        }
        _ => {
            return Err(bad(format!(
                "ExecStart= has {} words: an instance runs INTERPRETER SCRIPT or INTERPRETER -m MODULE, with no other arguments",
                argv.len()
            )))
        }
    };
    let python = plain_path("ExecStart='s interpreter", python)?;
    let mut extra = Vec::new();
    for key in CARRIED {
        if let Some(v) = u.last("Service", key) {
            extra.push((key.to_string(), plain_value(&format!("{unit}: {key}="), &v)?));
        }
    }
    let opt = |k: &str| {
        u.last("Service", k)
            .map(|v| plain_value(&format!("{unit}: {k}="), &v))
            .transpose()
    };
    let user = instance.default_user();
    let env = u
        .environment_files()
        .into_iter()
        .filter(|e| !e.optional || paths.host(&e.path).exists())
        .map(|e| e.path)
        .collect();
    Ok(Parsed {
        unit: unit.to_string(),
        spec: Spec {
            name: name.to_string(),
            unit: instance.unit(),
            code_root,
            entry,
            python: Some(python),
            notify,
            env_files: vec![PathBuf::from(ENV_DIR).join(format!("{name}.env"))],
            group: group.map_or_else(|| user.clone(), str::to_string),
            user,
            memory_max: opt("MemoryMax")?,
            cpu_quota: opt("CPUQuota")?,
            restart_sec: opt("RestartSec")?,
            watchdog_sec: if notify { opt("WatchdogSec")? } else { None },
            extra,
        },
        env,
    })
}

/// The settings of the unit that the instance does not carry, by key and
/// `FILE:LINE` (never the value: `Environment=` may hold a secret).
fn dropped(paths: &Paths, unit: &str) -> Vec<String> {
    let Ok(u) = Unit::load_named(paths, unit) else {
        return Vec::new();
    };
    u.keys()
        .into_iter()
        .filter(|(s, k)| s == "Service" && !HANDLED.contains(&k.as_str()) && !CARRIED.contains(&k.as_str()))
        .flat_map(|(_, k)| {
            u.origins("Service", &k).into_iter().map(move |(_, at)| {
                format!("{unit}: {k}= is not carried over ({at}); the instance has the template's")
            })
        })
        .collect()
}

/// Reads an env file the units name: every assignment, or the first line
/// systemd would not read, by `FILE:LINE` (never its text).
fn read_env(paths: &Paths, file: &Path) -> Result<Vec<envfile::Var>> {
    let host = paths.host(file);
    let bytes = jarvis_model::untrusted::read(&host, None, MAX_ENV).map_err(|e| {
        Error::io("read", file, e).with_note("a plain KEY=VALUE file, not a link, of at most 1 MiB")
    })?;
    let parsed = envfile::parse(&bytes);
    if let Some(f) = parsed.findings.iter().find(|f| f.kind.is_error()) {
        return Err(
            Error::new(format!("{}:{}: {}", file.display(), f.line, f.kind.problem())).with_note(format!(
                "{} (jarvisctl env lint {} shows every line)",
                f.kind.fix(),
                file.display()
            )),
        );
    }
    if parsed.refused {
        return Err(
            Error::new(format!("{}: systemd refuses this file", file.display()))
                .with_note(format!("jarvisctl env lint {}", file.display())),
        );
    }
    // The value systemd ends up with, once per key, in file order.
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    for (i, v) in parsed.vars.iter().enumerate() {
        last.insert(v.key.clone(), i);
    }
    Ok(parsed
        .vars
        .into_iter()
        .enumerate()
        .filter(|(i, v)| last.get(&v.key) == Some(i))
        .map(|(_, v)| v)
        .collect())
}

fn tree_group(tree: &Path) -> Result<String> {
    let base = tree
        .file_name()
        .map(|b| b.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let g = format!("jarvis-tree-{base}");
    let ok = g.len() <= 32
        && g.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c));
    if !ok {
        return Err(Error::new(format!(
            "the code tree {} gives no group name ({g} is not a lowercase name of at most 32 characters)",
            tree.display()
        ))
        .with_note("move the tree under a short name of letters, digits, - and _ and point the units at it, then import"));
    }
    Ok(g)
}

/// The tree's entries others could not read, given to the group to read;
/// its writable directories; its env files made root's alone.
fn plan_perms(paths: &Paths, tree: &Path, secrets: &BTreeSet<PathBuf>, system: bool) -> Result<Vec<Perm>> {
    let host = paths.host(tree);
    let mut out = Vec::new();
    let top = fs::symlink_metadata(&host).map_err(|e| Error::io("inspect", tree, e))?;
    if !top.is_dir() {
        return Err(Error::new(format!("{} is not a directory", tree.display())));
    }
    // The top and the writable directories keep their owner (root, for a
    // tree under /root) and get the tree's group.
    let owner = system.then_some((top.uid(), true));
    out.push(Perm {
        rel: PathBuf::new(),
        make: false,
        owner,
        mode: 0o750,
    });
    let writable: Vec<PathBuf> = WRITABLE
        .iter()
        .map(PathBuf::from)
        .filter(|w| fs::symlink_metadata(host.join(w)).is_ok_and(|m| m.is_dir()))
        .collect();
    if writable.is_empty() {
        out.push(Perm {
            rel: PathBuf::from(WRITABLE[0]),
            make: true,
            owner,
            mode: 0o2770,
        });
    }
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = host.join(&rel);
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| Error::io("read", &dir, e))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let r = rel.join(e.file_name());
            let m = fs::symlink_metadata(e.path()).map_err(|err| Error::io("inspect", &e.path(), err))?;
            if m.file_type().is_symlink() {
                continue;
            }
            let mode = m.mode() & 0o7777;
            let inside_writable = writable.iter().any(|w| r.starts_with(w));
            if secrets.contains(&tree.join(&r)) {
                if mode != 0o600 || (system && (m.uid() != 0 || m.gid() != 0)) {
                    out.push(Perm {
                        rel: r.clone(),
                        make: false,
                        owner: system.then_some((0, false)),
                        mode: 0o600,
                    });
                }
            } else if writable.contains(&r) {
                out.push(Perm {
                    rel: r.clone(),
                    make: false,
                    owner: system.then_some((m.uid(), true)),
                    mode: 0o2770,
                });
            } else if inside_writable {
                let want = mode | if m.is_dir() { 0o2070 } else { 0o060 };
                if want != mode || system {
                    out.push(Perm {
                        rel: r.clone(),
                        make: false,
                        owner: system.then_some((m.uid(), true)),
                        mode: want,
                    });
                }
            } else {
                let need = if m.is_dir() { 0o005 } else { 0o004 };
                if mode & need != need && (m.is_dir() || m.is_file()) {
                    let g = if m.is_dir() || mode & 0o100 != 0 {
                        0o050
                    } else {
                        0o040
                    };
                    out.push(Perm {
                        rel: r.clone(),
                        make: false,
                        owner: system.then_some((m.uid(), true)),
                        mode: mode | g,
                    });
                }
            }
            if m.is_dir() {
                stack.push(r);
            }
        }
    }
    Ok(out)
}

/// Plans the import of `units` (services, or targets that want them).
pub fn plan(paths: &Paths, units: &[String], tree_to: Option<&Path>, share: &[String]) -> Result<Plan> {
    let state_dir = paths.host(Path::new(STATE));
    if state_dir.join(RECORD).exists() {
        return Err(
            Error::new(format!("an import is recorded already ({STATE}/{RECORD})"))
                .with_note("undo it first (jarvisctl import --undo), then import again"),
        );
    }
    let mut services: Vec<String> = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    for n in units {
        if !unit_name_ok(n) {
            return Err(Error::new(format!(
                "{:?} is not a service or target name (NAME.service or NAME.target)",
                crate::output::printable(n)
            ))
            .with_code(exit::USAGE));
        }
        if n.ends_with(".target") {
            let u = Unit::load_named(paths, n)?;
            let w = wanted(&u);
            if w.is_empty() {
                return Err(Error::new(format!("the target {n} wants no service"))
                    .with_note("name the services to import"));
            }
            if !targets.contains(n) {
                targets.push(n.clone());
            }
            for s in w {
                if !services.contains(&s) {
                    services.push(s);
                }
            }
        } else if !services.contains(n) {
            services.push(n.clone());
        }
    }
    for t in targets_of(paths, &services) {
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    if services.is_empty() {
        return Err(Error::new("no service to import").with_code(exit::USAGE));
    }
    let mut notes = Vec::new();
    // First pass: the tree, then its group.
    let first = parse_service(paths, &services[0], None)?;
    let tree_from = first.spec.code_root.clone();
    let group = tree_group(&tree_from)?;
    let mut parsed = Vec::new();
    for s in &services {
        let p = parse_service(paths, s, Some(&group))?;
        if p.spec.code_root != tree_from {
            return Err(Error::new(format!(
                "{s} runs from {}, {} from {}: import the units of one code tree at a time",
                p.spec.code_root.display(),
                services[0],
                tree_from.display()
            )));
        }
        notes.extend(dropped(paths, s));
        parsed.push(p);
    }
    let under_root = tree_from.starts_with("/root") && tree_from != Path::new("/root");
    if tree_from == Path::new("/root") || tree_from == Path::new("/") {
        return Err(Error::new(format!(
            "the units run from {}: that is not a code tree of their own",
            tree_from.display()
        ))
        .with_note("move the bots' code into a directory of its own first"));
    }
    let tree_to = match (under_root, tree_to) {
        (_, Some(t)) => plain_path("--tree-to", &t.to_string_lossy())?,
        (true, None) => Path::new("/srv").join(tree_from.file_name().unwrap_or_default()),
        (false, None) => tree_from.clone(),
    };
    if tree_to != tree_from {
        if tree_to.starts_with("/root") || tree_to.starts_with("/home") {
            return Err(Error::new(format!(
                "--tree-to {}: a bot's user cannot read a tree under /root or /home",
                tree_to.display()
            ))
            .with_note("choose a path such as /srv/gateway"));
        }
        if fs::symlink_metadata(paths.host(&tree_to)).is_ok() {
            return Err(Error::new(format!(
                "{} is in the way: the tree {} would move there",
                tree_to.display(),
                tree_from.display()
            ))
            .with_note("move it aside, or give another place with --tree-to DIR"));
        }
    }
    let moved = |p: &Path| -> PathBuf {
        p.strip_prefix(&tree_from)
            .map_or_else(|_| p.to_path_buf(), |r| tree_to.join(r))
    };

    // The env files, read once each, split by prefix.
    let prefixes: Vec<(usize, String)> = parsed
        .iter()
        .enumerate()
        .map(|(i, p)| (i, prefix(&p.spec.name)))
        .collect();
    let mut env_text = vec![String::new(); parsed.len()];
    let mut keys: Vec<Vec<String>> = vec![Vec::new(); parsed.len()];
    let mut sources: Vec<PathBuf> = Vec::new();
    let mut shared_seen = BTreeSet::new();
    let mut unshared: Vec<String> = Vec::new();
    for p in &parsed {
        for f in &p.env {
            if !sources.contains(f) {
                sources.push(f.clone());
            }
        }
    }
    for f in &sources {
        let vars = read_env(paths, f)?;
        for v in vars {
            // The longest prefix wins: BUY_TRACKER_ is buy_tracker's, not buy's.
            let owner = prefixes
                .iter()
                .filter(|(_, pre)| v.key.starts_with(pre.as_str()))
                .max_by_key(|(_, pre)| pre.len())
                .map(|(i, _)| *i);
            let to: Vec<usize> = match owner {
                Some(i) => vec![i],
                None if share.contains(&v.key) => {
                    shared_seen.insert(v.key.clone());
                    (0..parsed.len()).collect()
                }
                None => {
                    unshared.push(format!(
                        "{} ({}:{}) matches no instance's prefix: given to none; --share {} gives it to all",
                        v.key,
                        f.display(),
                        v.line,
                        v.key
                    ));
                    continue;
                }
            };
            for i in to {
                if parsed[i].env.contains(f) && !keys[i].contains(&v.key) {
                    keys[i].push(v.key.clone());
                    env_text[i].push_str(&assignment(&v.key, &v.value));
                }
            }
        }
    }
    if let Some(k) = share.iter().find(|k| !shared_seen.contains(*k)) {
        return Err(Error::new(format!(
            "--share {}: no env file of these units holds it unmatched by an instance's prefix",
            crate::output::printable(k)
        ))
        .with_code(exit::USAGE)
        .with_note("--share names a variable no instance's NAME_ prefix matches"));
    }

    let system = paths.is_system();
    let secrets: BTreeSet<PathBuf> = sources
        .iter()
        .filter(|s| s.starts_with(&tree_from))
        .cloned()
        .collect();
    let perms = plan_perms(paths, &tree_from, &secrets, system)?;

    // Every change, in the order it is made.
    let mut changes = Vec::new();
    let mut n = 0;
    let mut old_services = Vec::new();
    let mut old_targets = Vec::new();
    for s in &services {
        old_services.push(old_unit(paths, s, &mut n)?);
    }
    for t in &targets {
        old_targets.push(old_unit(paths, t, &mut n)?);
    }
    let env_sources: Vec<(PathBuf, String)> = sources
        .iter()
        .map(|s| {
            n += 1;
            (
                s.clone(),
                format!("{n:02}-{}", s.file_name().unwrap_or_default().to_string_lossy()),
            )
        })
        .collect();
    let copied = old_services
        .iter()
        .chain(&old_targets)
        .map(|u| u.files.len())
        .sum::<usize>()
        + env_sources.len();
    changes.push(change(
        STATE,
        format!("keep a copy of {copied} files (the units, their drop-ins, the env files) and what was enabled and active in {STATE}/"),
    ));
    let live = live(paths);
    for u in old_targets.iter().chain(&old_services) {
        if live {
            changes.push(change(
                &u.name,
                format!("disable and stop {} (systemctl disable --now)", u.name),
            ));
        }
    }
    if tree_to != tree_from {
        changes.push(change(
            tree_to.display().to_string(),
            format!(
                "move the code tree {} to {} (a bot's user cannot enter /root)",
                tree_from.display(),
                tree_to.display()
            ),
        ));
    }
    if system {
        if nix::unistd::Group::from_name(&group).ok().flatten().is_none() {
            changes.push(change(
                format!("group {group}"),
                format!("create system group {group}, the tree's instances' group"),
            ));
        }
        for p in &parsed {
            if provision::Account::lookup(&p.spec.user, &group).is_none() {
                changes.push(change(
                    format!("user {}", p.spec.user),
                    format!("create system user {} (group {group})", p.spec.user),
                ));
            }
        }
    } else {
        notes.push(format!(
            "a rooted tree: no user or group is made, and no owner changed (on a host: jarvis-NAME users, group {group})"
        ));
    }
    for p in &perms {
        let path = if p.rel.as_os_str().is_empty() {
            tree_to.clone()
        } else {
            tree_to.join(&p.rel)
        };
        let owner = match p.owner {
            Some((0, false)) => "root:root ".to_string(),
            Some((0, true)) => format!("root:{group} "),
            Some(_) => format!("group {group}, "),
            None => String::new(),
        };
        let what = if p.make {
            "make the directory the bots write"
        } else if p.rel.as_os_str().is_empty() {
            "let only root and the tree's instances enter"
        } else if p.mode == 0o600 {
            "an env file of every bot: root's alone"
        } else if p.mode & 0o2000 != 0
            && p.mode & 0o020 != 0
            && WRITABLE.iter().any(|w| p.rel == Path::new(w))
        {
            "a directory the bots write"
        } else if p.mode & 0o020 != 0 {
            "written by the bots"
        } else {
            "read by the bots"
        };
        changes.push(change(
            path.display().to_string(),
            format!(
                "{}{}: {owner}{:04o} ({what})",
                if p.make { "make " } else { "set " },
                path.display(),
                p.mode
            ),
        ));
    }
    let mut bots = Vec::new();
    let mut dropins = Vec::new();
    let mut env_files = Vec::new();
    for (i, p) in parsed.into_iter().enumerate() {
        let mut spec = p.spec;
        spec.code_root = tree_to.clone();
        let env = spec.env_files[0].clone();
        if fs::symlink_metadata(paths.host(&env)).is_ok() {
            return Err(Error::new(format!(
                "{} is in the way: the import writes {}'s variables there",
                env.display(),
                spec.name
            ))
            .with_note("move it aside, then import again"));
        }
        let text = format!(
            "# Written by jarvisctl import from {}: the variables of {} alone.\n{}",
            p.env
                .iter()
                .map(|e| moved(e).display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            spec.unit,
            env_text[i]
        );
        changes.push(change(
            env.display().to_string(),
            format!(
                "write {} (root:root 0600) with {}",
                env.display(),
                if keys[i].is_empty() {
                    "no variable".to_string()
                } else {
                    keys[i].join(", ")
                }
            ),
        ));
        let dropin = spec.instance_dropin();
        changes.push(change(
            dropin.display().to_string(),
            format!(
                "write {} ({} as {}:{} from {}, {})",
                dropin.display(),
                spec.unit,
                spec.user,
                spec.group,
                tree_to.display(),
                limits(&spec)
            ),
        ));
        dropins.push(Written {
            path: dropin,
            sha256: sha256(spec.dropin().as_bytes()),
        });
        env_files.push(Written {
            path: env,
            sha256: sha256(text.as_bytes()),
        });
        bots.push(Bot {
            unit: p.unit,
            spec,
            keys: keys[i].clone(),
            env_text: text,
        });
    }
    if live {
        for b in &bots {
            changes.push(change(
                &b.spec.unit,
                format!("enable and start {} with jarvis-supervisor.target", b.spec.unit),
            ));
        }
    }
    notes.extend(unshared);
    if !live {
        notes.push(
            "systemd is not running here (or this is a rooted tree): only the files change; no unit is stopped, \
             disabled, enabled or started (without systemd, the init script starts the instances with the group)"
                .into(),
        );
    }
    let record = Record {
        services: old_services,
        targets: old_targets,
        tree_from,
        tree_to,
        group,
        instances: bots.iter().map(|b| b.spec.unit.clone()).collect(),
        dropins,
        env_files,
        env_sources,
        modes: Vec::new(),
        made: perms.iter().filter(|p| p.make).map(|p| p.rel.clone()).collect(),
    };
    Ok(Plan {
        bots,
        changes,
        notes,
        record,
        perms,
    })
}

fn limits(s: &Spec) -> String {
    let mut out: Vec<String> = [
        ("MemoryMax", &s.memory_max),
        ("CPUQuota", &s.cpu_quota),
        ("RestartSec", &s.restart_sec),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
    .collect();
    out.extend(s.extra.iter().map(|(k, v)| format!("{k}={v}")));
    if out.is_empty() {
        "the template's limits".into()
    } else {
        out.join(" ")
    }
}

impl Spec {
    /// The path of this instance's drop-in.
    pub fn instance_dropin(&self) -> PathBuf {
        Instance::Named(self.name.parse().expect("checked"))
            .dropin_dir()
            .join(DROPIN)
    }
}

fn systemctl(args: &[&str]) -> Result<()> {
    crate::systemd::systemctl(args)
        .map_err(|e| Error::new(e).with_note("run it as root, on a host with systemd"))
}

/// A root-only directory for the copies (made, or checked to be root's).
fn state_dir(paths: &Paths) -> Result<PathBuf> {
    let dir = paths.host(Path::new(STATE));
    fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("change the mode of", &dir, e))?;
    Ok(dir)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("create a file in", dir, e))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("change the mode of", tmp.path(), e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("replace", path, e.error))?;
    Ok(())
}

fn write_record(dir: &Path, r: &Record) -> Result<()> {
    let text = serde_json::to_string_pretty(r)
        .map_err(|e| Error::new(format!("cannot write the import record: {e}")))?;
    write_file(&dir.join(RECORD), text.as_bytes(), 0o600)
}

/// Owner and mode of `path`, changed through a descriptor opened without
/// following a link anywhere on the way (a directory, or a regular file
/// with one link): once imported, the bots write in `data/` and `logs/`,
/// and a link or a hard link one of them puts there must never turn
/// root's chown or chmod onto another file (docs/design.md, "Root never
/// trusts the service user's files").
fn set_perm(path: &Path, owner: Option<(u32, u32)>, mode: u32) -> Result<()> {
    let is_dir = fs::symlink_metadata(path)
        .map_err(|e| Error::io("inspect", path, e))?
        .is_dir();
    let file = if is_dir {
        jarvis_model::untrusted::open_dir(path)
    } else {
        jarvis_model::untrusted::open_read(path, None)
    }
    .map_err(|e| Error::io("open", path, e))?;
    if let Some((u, g)) = owner {
        std::os::unix::fs::fchown(&file, Some(u), Some(g))
            .map_err(|e| Error::io("change the owner of", path, e))?;
    }
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("change the mode of", path, e))
}

/// Makes the planned changes, in order. The copies and the record are
/// written before anything else.
pub fn apply(paths: &Paths, plan: &Plan) -> Result<()> {
    let mut rec = plan.record.clone();
    let dir = state_dir(paths)?;
    let copies = dir.join("copies");
    fs::create_dir_all(&copies).map_err(|e| Error::io("create", &copies, e))?;
    for u in rec.services.iter().chain(&rec.targets) {
        for (f, copy) in &u.files {
            let bytes = fs::read(paths.host(f)).map_err(|e| Error::io("read", f, e))?;
            write_file(&copies.join(copy), &bytes, 0o600)?;
        }
    }
    for (f, copy) in &rec.env_sources {
        let bytes = jarvis_model::untrusted::read(&paths.host(f), None, MAX_ENV)
            .map_err(|e| Error::io("read", f, e))?;
        write_file(&copies.join(copy), &bytes, 0o600)?;
    }
    let tree_from = paths.host(&rec.tree_from);
    for p in &plan.perms {
        if p.make {
            continue;
        }
        let m = fs::symlink_metadata(tree_from.join(&p.rel))
            .map_err(|e| Error::io("inspect", &tree_from.join(&p.rel), e))?;
        rec.modes.push(Was {
            rel: p.rel.clone(),
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode() & 0o7777,
        });
    }
    write_record(&dir, &rec)?;

    let live = live(paths);
    if live {
        for u in rec.targets.iter().chain(&rec.services) {
            systemctl(&["disable", "--now", &u.name])?;
        }
    }
    let tree = paths.host(&rec.tree_to);
    if rec.tree_to != rec.tree_from {
        if let Some(parent) = tree.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io("create", parent, e))?;
        }
        fs::rename(&tree_from, &tree).map_err(|e| {
            Error::io("move", &rec.tree_from, e).with_note(format!(
                "move it to {} by hand (or give --tree-to on the same file system), then import --undo and import again",
                rec.tree_to.display()
            ))
        })?;
    }
    let mut gid = None;
    if paths.is_system() {
        for b in &plan.bots {
            let home = PathBuf::from("/home").join(&b.spec.user);
            let (acct, _) = provision::ensure_user(&b.spec.user, &rec.group, &home)?;
            gid = Some(acct.gid);
        }
    }
    for p in &plan.perms {
        let path = tree.join(&p.rel);
        if p.make {
            fs::create_dir(&path).map_err(|e| Error::io("create", &path, e))?;
        }
        let owner = match p.owner {
            Some((u, true)) => Some((
                u,
                gid.ok_or_else(|| Error::new(format!("the group {} was not made", rec.group)))?,
            )),
            Some((u, false)) => Some((u, 0)),
            None => None,
        };
        set_perm(&path, owner, p.mode)?;
    }
    for b in &plan.bots {
        let env = paths.host(&b.spec.env_files[0]);
        write_file(&env, b.env_text.as_bytes(), 0o600)?;
        if paths.is_system() {
            std::os::unix::fs::chown(&env, Some(0), Some(0))
                .map_err(|e| Error::io("change the owner of", &env, e))?;
        }
        crate::dropin::write(&paths.host(&b.spec.instance_dropin()), &b.spec.dropin())?;
    }
    rotation_warnings(paths)?;
    if live {
        for b in &plan.bots {
            instances::enable(paths, &b.spec.unit, true)?;
        }
        let _ = systemctl(&["enable", jarvis_model::instance::TARGET]);
        let units: Vec<&str> = plan.bots.iter().map(|b| b.spec.unit.as_str()).collect();
        let mut args = vec!["start"];
        args.extend(units);
        systemctl(&args)?;
    }
    Ok(())
}

/// The undo of the recorded import, planned.
pub struct Undo {
    pub changes: Vec<Change>,
    record: Record,
}

pub fn plan_undo(paths: &Paths) -> Result<Undo> {
    let file = paths.host(&Path::new(STATE).join(RECORD));
    let text = fs::read_to_string(&file).map_err(|e| {
        Error::io("read", &Path::new(STATE).join(RECORD), e)
            .with_note("there is no import to undo (jarvisctl import made none here)")
    })?;
    let record: Record = serde_json::from_str(&text).map_err(|e| {
        Error::new(format!("{STATE}/{RECORD} is damaged: {e}")).with_note(format!(
            "the copies of the old files are in {STATE}/copies/: put them back by hand"
        ))
    })?;
    let live = live(paths);
    let mut changes = Vec::new();
    for u in &record.instances {
        changes.push(change(
            u,
            if live {
                format!("disable and stop {u} (systemctl disable --now)")
            } else {
                format!("{u}: systemd is not running here, nothing to stop")
            },
        ));
    }
    for d in &record.dropins {
        changes.push(change(
            d.path.display().to_string(),
            format!("remove {}", d.path.display()),
        ));
    }
    for e in &record.env_files {
        let now = fs::read(paths.host(&e.path)).ok();
        changes.push(change(
            e.path.display().to_string(),
            match now {
                Some(b) if sha256(&b) != e.sha256 => format!(
                    "keep {} as {}.after-import (changed since the import)",
                    e.path.display(),
                    e.path.display()
                ),
                _ => format!("remove {}", e.path.display()),
            },
        ));
    }
    if !record.modes.is_empty() {
        changes.push(change(
            record.tree_to.display().to_string(),
            format!(
                "put back the owner and mode of {} entries of {}",
                record.modes.len(),
                record.tree_to.display()
            ),
        ));
    }
    for m in &record.made {
        changes.push(change(
            record.tree_to.join(m).display().to_string(),
            format!(
                "remove {} if still empty (else make it root's, 0755)",
                record.tree_to.join(m).display()
            ),
        ));
    }
    if record.tree_to != record.tree_from {
        changes.push(change(
            record.tree_from.display().to_string(),
            format!(
                "move the code tree {} back to {}",
                record.tree_to.display(),
                record.tree_from.display()
            ),
        ));
    }
    for u in record.services.iter().chain(&record.targets) {
        for (f, _) in &u.files {
            changes.push(change(
                f.display().to_string(),
                format!("put back {} as it was", f.display()),
            ));
        }
    }
    for (f, _) in &record.env_sources {
        changes.push(change(
            f.display().to_string(),
            format!("put back {} as it was", f.display()),
        ));
    }
    for u in record.services.iter().chain(&record.targets) {
        let what = match (live, u.enabled.as_deref(), u.active.as_deref()) {
            (false, _, _) => format!("{}: systemd is not running here, not enabled or started", u.name),
            (true, e, a) => format!(
                "{}{}{}",
                if e == Some("enabled") {
                    format!("enable {}", u.name)
                } else {
                    format!("leave {} disabled", u.name)
                },
                if a == Some("active") {
                    ", start it"
                } else {
                    ", leave it stopped"
                },
                " (as before the import)"
            ),
        };
        changes.push(change(&u.name, what));
    }
    changes.push(change(
        STATE,
        format!(
            "keep the copies in {STATE}.undone-TIME/; the users jarvis-NAME and the group {} stay (remove them with deluser if unused)",
            record.group
        ),
    ));
    Ok(Undo { changes, record })
}

/// The named instances' log rotation, rewritten for the instances there
/// are now; what it cannot cover goes to stderr (stdout may be JSON).
fn rotation_warnings(paths: &Paths) -> Result<()> {
    for c in crate::logrotate::refresh(paths)? {
        if c.action.starts_with("warning: ") {
            eprintln!("jarvisctl import: {}", c.action);
        }
    }
    Ok(())
}

pub fn apply_undo(paths: &Paths, undo: &Undo) -> Result<()> {
    let r = &undo.record;
    let live = live(paths);
    let dir = paths.host(Path::new(STATE));
    let copies = dir.join("copies");
    if live {
        for u in &r.instances {
            let _ = systemctl(&["disable", "--now", u]);
        }
    }
    for d in &r.dropins {
        let p = paths.host(&d.path);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &d.path, e)),
        }
        if let Some(parent) = p.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
    for e in &r.env_files {
        let p = paths.host(&e.path);
        if let Ok(b) = fs::read(&p) {
            if sha256(&b) == e.sha256 {
                fs::remove_file(&p).map_err(|err| Error::io("remove", &e.path, err))?;
            } else {
                let mut aside = p.clone().into_os_string();
                aside.push(".after-import");
                fs::rename(&p, &aside).map_err(|err| Error::io("rename", &e.path, err))?;
            }
        }
    }
    rotation_warnings(paths)?;
    let tree = paths.host(&r.tree_to);
    let tree_from = paths.host(&r.tree_from);
    let at = if tree.exists() {
        tree.clone()
    } else {
        tree_from.clone()
    };
    for w in r.modes.iter().rev() {
        let p = at.join(&w.rel);
        // An entry the bots replaced since (a link, a FIFO, a second hard
        // link, a link on the way) is not the one recorded: left as it
        // is, and named. Only a missing one goes unsaid.
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => eprintln!(
                "import --undo: {} is now a symbolic link, not the entry the import recorded: left as it is",
                p.display()
            ),
            Ok(_) => {
                if let Err(e) = set_perm(&p, paths.is_system().then_some((w.uid, w.gid)), w.mode) {
                    eprintln!("import --undo: {e}: its owner and mode are left as they are");
                }
            }
            Err(_) => {}
        }
    }
    for m in &r.made {
        let p = at.join(m);
        if fs::remove_dir(&p).is_err() && p.is_dir() {
            set_perm(&p, paths.is_system().then_some((0, 0)), 0o755)?;
        }
    }
    if r.tree_to != r.tree_from && tree.exists() {
        if fs::symlink_metadata(&tree_from).is_ok() {
            return Err(Error::new(format!(
                "{} is in the way: the tree {} moves back there",
                r.tree_from.display(),
                r.tree_to.display()
            ))
            .with_note("move it aside, then jarvisctl import --undo again"));
        }
        fs::rename(&tree, &tree_from).map_err(|e| Error::io("move", &r.tree_to, e))?;
    }
    // A file rewritten from its copy keeps the mode it has now (put back
    // above for the tree's), else gets `mode`.
    let restore = |f: &Path, copy: &str, mode: u32| -> Result<()> {
        let want = fs::read(copies.join(copy)).map_err(|e| Error::io("read", &copies.join(copy), e))?;
        let host = paths.host(f);
        if fs::read(&host).ok().as_deref() != Some(want.as_slice()) {
            let mode = fs::metadata(&host).map_or(mode, |m| m.mode() & 0o7777);
            write_file(&host, &want, mode)?;
        }
        Ok(())
    };
    for u in r.services.iter().chain(&r.targets) {
        for (f, copy) in &u.files {
            restore(f, copy, 0o644)?;
        }
    }
    for (f, copy) in &r.env_sources {
        restore(f, copy, 0o600)?;
    }
    if live {
        systemctl(&["daemon-reload"])?;
        for u in r.services.iter().chain(&r.targets) {
            if u.enabled.as_deref() == Some("enabled") {
                systemctl(&["enable", &u.name])?;
            }
        }
        let start: Vec<&str> = r
            .targets
            .iter()
            .chain(&r.services)
            .filter(|u| u.active.as_deref() == Some("active"))
            .map(|u| u.name.as_str())
            .collect();
        if !start.is_empty() {
            let mut args = vec!["start"];
            args.extend(start);
            systemctl(&args)?;
        }
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let done = paths.host(Path::new(&format!("{STATE}.undone-{secs}")));
    fs::rename(&dir, &done).map_err(|e| Error::io("rename", Path::new(STATE), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the split env file says is what systemd reads back, whatever the
    /// value holds.
    #[test]
    fn an_assignment_reads_back_as_the_value() {
        for v in [
            "plain",
            "",
            "with spaces and # hash",
            "quotes \" and ' and `tick` and $HOME and ${X}",
            "back\\slash\\",
            "two\nlines",
        ] {
            let text = assignment("K", v);
            let p = envfile::parse(text.as_bytes());
            assert_eq!(p.get("K"), Some(v), "{text:?}");
            assert!(p.findings.is_empty(), "{text:?}: {:?}", p.findings);
        }
    }

    #[test]
    fn a_prefix_is_the_name_in_capitals_and_an_underscore() {
        assert_eq!(prefix("alpha"), "ALPHA_");
        assert_eq!(prefix("buy-tracker"), "BUY_TRACKER_");
    }
}
