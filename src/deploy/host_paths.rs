//! Where a deploy keeps its records and files on each host.

/// Where each host keeps its deploy history, one directory per deploy:
/// `meta.json`, `manifest.tsv` (what it shipped), `before.tsv` (the
/// manifest it replaced), `code/` (a copy of the shipped files, to roll
/// back to) and `private/` (the .env it replaced, when it sent one).
pub const DEPLOYS: &str = "/var/lib/jarvis-supervisor/deploys";
/// The id of the deploy whose manifest the live code matches.
pub const CURRENT: &str = "/var/lib/jarvis-supervisor/deploys/current";
/// The digests of the live code's files, kept by the worker across steps
/// and deploys (python/deploy_host.py `Tree`): a file unchanged since is
/// not read again. Beside the history, not in it: a cache, not a deploy.
pub const HASHES: &str = "/var/lib/jarvis-supervisor/deploy-hashes.json";
/// Every package a deploy shipped, kept to roll back to.
pub const PACKAGES: &str = "/var/lib/jarvis-supervisor/packages";
/// The wheelhouses deploy --wheelhouse shipped, by content digest: root's,
/// readable by the service user, who builds from them.
pub const WHEELHOUSES: &str = "/var/lib/jarvis-supervisor/wheelhouses";
/// Held (flock) for the whole remote session of a deploy.
pub const LOCK: &str = "/run/jarvis-deploy.lock";
/// Held by the worker while its apply changes the live code, and only then
/// (python/deploy_host.py): what the host's settle waits for.
pub const SWAP_LOCK: &str = "/run/jarvis-deploy-swap.lock";
/// Held by each step that changes the host (swap, install, restart), so
/// that a step whose client was cut off finishes before the next begins.
pub const STEP_LOCK: &str = "/run/jarvis-deploy-step.lock";

/// Deploy `id`'s directory.
pub fn ddir(id: &str) -> String {
    format!("{DEPLOYS}/{id}")
}

/// The manifest of deploy `id` as a worker argument ("-": no deploy, no
/// manifest).
pub fn manifest_of(id: Option<&str>) -> String {
    id.map_or_else(|| "-".to_string(), |id| format!("{}/manifest.tsv", ddir(id)))
}
