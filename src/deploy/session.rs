//! What a deploy does on a host, as one trait: each method is one action
//! there (over ssh in `remote`, in memory in the tests' fake). The steps
//! that decide (stage, swap, undo, recover, roll back) are written against
//! it, in `transaction` and `recovery`.

use std::path::Path;
use std::time::Duration;

use super::environment::Wheelhouse;
use super::error::Result;
use super::host_paths::{ddir, manifest_of, DEPLOYS, HASHES};
use super::journal::Meta;
use super::probe::{Facts, PackageManager};
use super::reply::{Compiled, Plan, Verify};
use super::settings::Package;
use super::watch::Healthy;

/// The host's deploy lock, held until dropped.
pub type LockGuard = Box<dyn std::any::Any>;

/// The manifest a plan moves the live code to.
pub enum Target<'a> {
    /// Sent with the request (before anything is written on the host).
    Sent(&'a [u8]),
    /// Deploy `id`'s stored manifest.
    Stored(&'a str),
}

/// The worker's `plan`: what moving the live code from the manifest of
/// deploy `from` (None: no deploy yet) to `to` would do.
pub struct PlanRequest<'a> {
    pub code_dir: &'a str,
    pub from: Option<&'a str>,
    pub to: Target<'a>,
    pub take_over: &'a [String],
    /// The digests it reads are kept for the next step and deploy (false:
    /// a dry run writes nothing on the host).
    pub keep: bool,
}

impl PlanRequest<'_> {
    /// The worker's arguments, and the data it reads after its source.
    pub fn args(&self) -> (Vec<String>, &[u8]) {
        let (to, data) = match self.to {
            Target::Sent(d) => ("@data".to_string(), d),
            Target::Stored(id) => (format!("{}/manifest.tsv", ddir(id)), &b""[..]),
        };
        let mut a = vec![
            "plan".to_string(),
            self.code_dir.to_string(),
            manifest_of(self.from),
            to,
        ];
        a.extend(take_over_args(self.take_over));
        // Where the deploy's store goes: its space is in the plan.
        a.extend(["--store".to_string(), DEPLOYS.to_string()]);
        a.extend(["--hashes".to_string(), HASHES.to_string()]);
        if self.keep {
            a.push("--keep-hashes".to_string());
        }
        (a, data)
    }
}

/// The interpreter the worker's `compile` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotPython {
    /// What the shipped unit's launcher (`jarvisctl venv exec`) picks in
    /// the code root at the next start: its venv's, else the system's.
    Launcher,
    /// Named: by ExecStart=, or by the deploy's `--python`.
    Path(String),
}

/// How the unit starts the bot: a file it always runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryPoint {
    /// A script, relative to the code root.
    Script(String),
    /// `-m NAME`.
    Module(String),
}

/// The worker's `compile`: these files of deploy `id`'s store compiled by
/// the bot's interpreter, as the service user.
#[derive(Debug, Clone)]
pub struct CompileRequest {
    pub id: String,
    pub code_dir: String,
    pub owner: String,
    pub python: BotPython,
    pub entry: Option<EntryPoint>,
    pub files: Vec<String>,
}

impl CompileRequest {
    /// The worker's arguments, and its data: the files, one a line.
    pub fn args(&self) -> (Vec<String>, Vec<u8>) {
        let mut a = vec![
            "compile".to_string(),
            format!("{}/code", ddir(&self.id)),
            "--owner".into(),
            self.owner.clone(),
        ];
        match &self.python {
            BotPython::Launcher => a.extend(["--launcher".into(), self.code_dir.clone()]),
            BotPython::Path(p) => a.extend(["--python".into(), p.clone()]),
        }
        match &self.entry {
            Some(EntryPoint::Script(s)) => a.extend(["--entry-script".into(), s.clone()]),
            Some(EntryPoint::Module(m)) => a.extend(["--entry-module".into(), m.clone()]),
            None => {}
        }
        (a, self.files.join("\n").into_bytes())
    }
}

/// What the swap does with the host's .env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvStep {
    Keep,
    /// Writes the deploy's `private/env.new`, keeping the one it replaces.
    Send,
    /// Puts back the .env kept by the deploy (undo).
    Restore,
}

/// The worker's `apply`: moves the live code from manifest `from` to
/// manifest `to` (host paths), taking files from the stores `srcs`.
#[derive(Debug, Clone)]
pub struct Apply {
    pub code_dir: String,
    pub from: String,
    pub to: String,
    pub srcs: Vec<String>,
    pub owner: String,
    /// The deploy that does it (its directory holds the .env files).
    pub id: String,
    /// Undo: files changed since are left as they are, not refused.
    pub lenient: bool,
    pub take_over: Vec<String>,
    pub env: EnvStep,
    /// Tests only: stop after N changes, as a cut connection would.
    pub pause_after: Option<u32>,
}

impl Apply {
    /// Deploy `id`'s swap: from the manifest of deploy `from` to its own.
    pub fn forward(f: &Facts, from: Option<&str>, id: &str) -> Apply {
        let dir = ddir(id);
        Apply {
            code_dir: f.code_dir.clone(),
            from: manifest_of(from),
            to: format!("{dir}/manifest.tsv"),
            srcs: vec![format!("{dir}/code")],
            owner: f.owner.clone(),
            id: id.to_string(),
            lenient: false,
            take_over: Vec::new(),
            env: EnvStep::Keep,
            pause_after: None,
        }
    }

    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "apply".to_string(),
            self.code_dir.clone(),
            self.from.clone(),
            self.to.clone(),
        ];
        if self.lenient {
            a.push("--lenient".into());
        }
        for s in &self.srcs {
            a.extend(["--src".into(), s.clone()]);
        }
        a.extend([
            "--owner".into(),
            self.owner.clone(),
            "--id".into(),
            self.id.clone(),
        ]);
        a.extend(take_over_args(&self.take_over));
        a.extend(["--hashes".into(), HASHES.into()]);
        let dir = ddir(&self.id);
        match self.env {
            EnvStep::Keep => {}
            EnvStep::Send => a.extend([
                "--env-new".into(),
                format!("{dir}/private/env.new"),
                "--env-backup".into(),
                format!("{dir}/private/env.before"),
            ]),
            EnvStep::Restore => a.extend(["--env-restore".into(), format!("{dir}/private/env.before")]),
        }
        if let Some(n) = self.pause_after {
            a.extend(["--pause-after".into(), n.to_string()]);
        }
        a
    }
}

/// The worker's `clean` of deploy `id`: from the manifest it replaced to
/// its own, or the other way when it was undone.
pub fn clean_args(code_dir: &str, id: &str, undone: bool) -> Vec<String> {
    let dir = ddir(id);
    let (mine, before) = (format!("{dir}/manifest.tsv"), format!("{dir}/before.tsv"));
    let (from, to) = if undone { (mine, before) } else { (before, mine) };
    vec!["clean".to_string(), code_dir.to_string(), from, to]
}

fn take_over_args(paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .flat_map(|p| ["--take-over".to_string(), p.trim_start_matches("./").to_string()])
        .collect()
}

/// The files a first swap replaces, for its `before.tsv`.
pub enum Before<'a> {
    /// The manifest of the deploy in effect.
    Deploy(&'a str),
    /// No deploy yet: the files adopted (a manifest's text).
    Adopted(Vec<u8>),
}

/// How the push decides that a file the store links from the deploy in
/// effect is already right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// By size and modification time (rsync's quick check): nothing is read
    /// but the files that changed. The store is verified against the
    /// manifest after, so a file wrongly taken for unchanged is caught there.
    SizeAndTime,
    /// By content (`--checksum`): every file read on both sides. Only for
    /// the files the quick check got wrong.
    Content,
}

/// One host, as a deploy sees it. Every method is one action on the host.
pub trait Session {
    fn name(&self) -> &str;
    /// What the host has; refuses a host that lacks a tool or the unit.
    fn probe(&self) -> Result<Facts>;
    fn lock(&self) -> Result<LockGuard>;

    // The history: /var/lib/jarvis-supervisor/deploys.
    /// The id of the deploy whose manifest the live code matches.
    fn current(&self) -> Result<Option<String>>;
    /// `current` as the file holds it (at most 256 bytes); None: no file.
    fn current_raw(&self) -> Result<Option<String>>;
    fn set_current(&self, id: Option<&str>) -> Result<()>;
    /// Every deploy kept, oldest first.
    fn history(&self) -> Result<Vec<(String, Meta)>>;
    fn write_meta(&self, id: &str, meta: &Meta) -> Result<()>;
    /// Makes a new deploy directory, `base` or `base-N`; returns the id.
    fn new_deploy_dir(&self, base: &str) -> Result<String>;
    /// Deletes these deploys, and the wheelhouses not in `wheelhouses`.
    fn remove_deploys(&self, ids: &[String], wheelhouses: &[String]) -> Result<()>;

    // A deploy's store.
    /// Its manifest, its `code/` with the manifest's directories and every
    /// file deploy `link`'s store holds with the same content (hard links),
    /// and its empty `private/`: the files left to push.
    fn prepare_store(&self, id: &str, manifest: &[u8], link: Option<&str>) -> Result<Vec<String>>;
    /// The files listed in `files_from` from `local` into its `code/`,
    /// unchanged ones (by `compare`) linked from deploy `link`'s.
    fn push_code(
        &self,
        id: &str,
        local: &Path,
        files_from: &Path,
        link: Option<&str>,
        compare: Compare,
    ) -> Result<()>;
    /// Deploy `id`'s store against its manifest; files that are the inodes
    /// of deploy `linked`'s store (linked by `push_code`) are not read again.
    fn verify(&self, id: &str, linked: Option<&str>) -> Result<Verify>;
    fn store_env(&self, id: &str, env: &[u8]) -> Result<()>;
    fn send_package(&self, p: &Package) -> Result<()>;
    fn store_before(&self, id: &str, before: Before) -> Result<()>;
    /// Whether deploy `id` got as far as writing its `before.tsv`.
    fn has_before(&self, id: &str) -> Result<bool>;
    /// Drops its copy of the code (its records stay).
    fn drop_code(&self, id: &str) -> Result<()>;
    /// `--rollback --to`: deploy `from`'s manifest and code (linked) into
    /// deploy `id`, and the manifest of deploy `before` as its before.tsv.
    fn copy_deploy(&self, from: &str, id: &str, before: Option<&str>) -> Result<()>;

    // The worker (python/deploy_host.py), under the host's step lock.
    fn plan(&self, req: &PlanRequest) -> Result<Plan>;
    /// Compiles files of a store with the bot's interpreter; judges the
    /// broken ones run or not run.
    fn compile(&self, req: &CompileRequest) -> Result<Compiled>;
    fn apply(&self, req: &Apply) -> Result<Plan>;
    /// Deploy `id` is over (verified, or `undone`): the old files its swap
    /// kept aside in the code root for its undo, and any temporary file,
    /// go. Call only once `current` and its meta.json say so. How many went.
    fn clean(&self, code_dir: &str, id: &str, undone: bool) -> Result<u64>;

    // The package and the service.
    /// A kept package file for `version`, if the host has one.
    fn kept_package(&self, name: &str, version: &str, ext: &str) -> Result<Option<String>>;
    fn install(&self, pm: PackageManager, file: &str) -> Result<()>;
    fn restart(&self, f: &Facts) -> Result<()>;
    /// Waits for verdict OK and state active within `ready`, then requires
    /// both, with the same main pid, for `settle`. Returns the pid.
    fn wait_healthy(&self, ready: Duration, settle: Duration) -> Result<Healthy>;

    // The bot's Python environment.
    /// The environment in use (`venvs/ID`; None: the system's python3).
    fn venv_in_use(&self) -> Result<Option<String>>;
    fn ship_wheelhouse(&self, w: &Wheelhouse) -> Result<()>;
    /// Builds one beside the one in use; its `venvs/ID`.
    fn venv_build(
        &self,
        requirements: &str,
        wheelhouse: Option<&str>,
        python: Option<&str>,
    ) -> Result<String>;
    fn venv_switch(&self, target: Option<&str>) -> Result<()>;
    fn venv_exists(&self, code_dir: &str, venv: &str) -> bool;
    fn wheelhouse_kept(&self, dir: &str) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workers_arguments() {
        let f = Facts {
            code_dir: "/srv/bot".into(),
            owner: "jarvis:jarvis".into(),
            ..Facts::default()
        };
        let mut a = Apply::forward(&f, None, "20261202T184639Z");
        a.take_over = vec!["./bots/x.py".into()];
        a.env = EnvStep::Send;
        let d = "/var/lib/jarvis-supervisor/deploys/20261202T184639Z";
        assert_eq!(
            a.args(),
            [
                "apply".to_string(),
                "/srv/bot".into(),
                "-".into(),
                format!("{d}/manifest.tsv"),
                "--src".into(),
                format!("{d}/code"),
                "--owner".into(),
                "jarvis:jarvis".into(),
                "--id".into(),
                "20261202T184639Z".into(),
                "--take-over".into(),
                "bots/x.py".into(),
                "--hashes".into(),
                "/var/lib/jarvis-supervisor/deploy-hashes.json".into(),
                "--env-new".into(),
                format!("{d}/private/env.new"),
                "--env-backup".into(),
                format!("{d}/private/env.before"),
            ]
        );
        let p = PlanRequest {
            code_dir: "/srv/bot",
            from: Some("20261201T000000Z"),
            to: Target::Sent(b"m"),
            take_over: &[],
            keep: false,
        };
        let (args, data) = p.args();
        assert_eq!(
            args,
            [
                "plan",
                "/srv/bot",
                "/var/lib/jarvis-supervisor/deploys/20261201T000000Z/manifest.tsv",
                "@data",
                "--store",
                "/var/lib/jarvis-supervisor/deploys",
                "--hashes",
                "/var/lib/jarvis-supervisor/deploy-hashes.json"
            ]
        );
        assert_eq!(data, b"m");
    }
}
