//! What a deploy is asked to do, as one validated value (the command
//! builds it from its arguments), and the local preparation that checks
//! what would be sent before any host is contacted: the code's manifest
//! and its file list, the packages, the .env files, the wheelhouse.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::environment::Wheelhouse;
use super::error::{DeployError, Result};
use super::host_paths::PACKAGES;
use super::hosts::Host;
use crate::envcheck::EnvCheck;
use crate::envrules;
use crate::report::Level;
use jarvis_model::manifest::Manifest;
use jarvis_model::paths::Paths;

/// A deploy's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Each with its package and .env to send, if any.
    pub hosts: Vec<Host>,
    pub mode: Mode,
    pub ssh: SshSettings,
    pub health: Health,
    /// Deploys kept in each host's history.
    pub keep: usize,
    /// How many hosts at once, and whether rolling (a canary, then
    /// batches, stopping at the first failure).
    pub order: super::fleet::Order,
    /// The summary as JSON, and no other output on stdout.
    pub json: bool,
}

#[derive(Debug, Clone)]
pub enum Mode {
    /// `--list`: each host's history.
    List,
    /// `--rollback [--to ID]`.
    Rollback {
        to: Option<String>,
    },
    /// `--dry-run`: the plan, nothing changed.
    DryRun(Ship),
    Deploy(Ship),
}

/// What a deploy sends.
#[derive(Debug, Clone)]
pub struct Ship {
    /// The local code directory.
    pub code: PathBuf,
    pub wheelhouse: Option<PathBuf>,
    /// The interpreter the hosts build the environment with.
    pub python: Option<String>,
    /// Paths that unshipped files hold on the hosts, to take over.
    pub take_over: Vec<String>,
    /// Tests: rsync's bandwidth limit, and a swap paused after N changes.
    pub bwlimit: Option<u32>,
    pub pause_swap_after: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct SshSettings {
    pub options: Vec<String>,
    pub connect: Duration,
}

/// The health wait after a restart.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    /// How long the bot may take to become ready.
    pub ready: Duration,
    /// How long it must then stay healthy.
    pub settle: Duration,
}

/// A package given to ship, read locally.
#[derive(Debug, Clone)]
pub struct Package {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    /// "deb" or "rpm".
    pub ext: String,
}

impl Package {
    pub fn read(path: &Path) -> Result<Package> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_string();
        let query = |cmd: &mut Command| -> Result<String> {
            let out = cmd.output().map_err(|e| DeployError::CannotReadPackage {
                path: path.to_path_buf(),
                why: e.to_string(),
            })?;
            if !out.status.success() {
                return Err(DeployError::Unreadable {
                    path: path.to_path_buf(),
                    why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let (name, version) = match ext.as_str() {
            "deb" => (
                query(Command::new("dpkg-deb").arg("-f").arg(path).arg("Package"))?,
                query(Command::new("dpkg-deb").arg("-f").arg(path).arg("Version"))?,
            ),
            "rpm" => (
                query(Command::new("rpm").args(["-qp", "--qf", "%{NAME}"]).arg(path))?,
                query(
                    Command::new("rpm")
                        .args(["-qp", "--qf", "%{VERSION}-%{RELEASE}"])
                        .arg(path),
                )?,
            ),
            _ => return Err(DeployError::NotAPackage(path.to_path_buf())),
        };
        Ok(Package {
            path: path.to_path_buf(),
            name,
            version,
            ext,
        })
    }

    /// Where the host keeps it.
    pub fn kept_path(&self) -> String {
        format!("{PACKAGES}/{}_{}.{}", self.name, self.version, self.ext)
    }
}

/// The code to send, checked: its manifest.
pub struct Code {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub wheelhouse: Option<Wheelhouse>,
}

impl Code {
    pub fn ships(&self, path: &str) -> bool {
        self.manifest.files().any(|e| e.path == path)
    }
}

/// Everything one host's deploy needs, checked locally first.
pub struct Job {
    pub host: Host,
    pub package: Option<Package>,
    pub env: Option<Vec<u8>>,
}

/// Checks what the deploy would send; nothing is sent when one fails.
pub fn prepare(paths: &Paths, s: &Settings) -> Result<(Option<Code>, Vec<Job>)> {
    let ship = match &s.mode {
        Mode::DryRun(ship) | Mode::Deploy(ship) => Some(ship),
        Mode::List | Mode::Rollback { .. } => None,
    };
    let code = match ship {
        Some(ship) => {
            // Its syntax is checked on each host, by the bot's interpreter
            // there (`syntax`): the workstation's Python is not the hosts'.
            Some((ship, Manifest::build(&ship.code)?))
        }
        None => None,
    };
    let mut jobs = Vec::new();
    for host in &s.hosts {
        let (package, env) = match ship {
            Some(_) => (
                host.package.as_deref().map(Package::read).transpose()?,
                host.env_file.as_deref().map(|p| lint_env(paths, p)).transpose()?,
            ),
            None => (None, None),
        };
        jobs.push(Job {
            host: host.clone(),
            package,
            env,
        });
    }
    let code = match code {
        Some((ship, manifest)) => Some(Code {
            dir: ship.code.clone(),
            manifest,
            wheelhouse: ship.wheelhouse.as_deref().map(Wheelhouse::read).transpose()?,
        }),
        None => None,
    };
    Ok((code, jobs))
}

/// rsync's `--files-from` list of `paths`: one a line, each after `./`,
/// since rsync skips a line that starts with `#` or `;` as a comment.
pub fn files_from(paths: &[String]) -> Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut f = tempfile::NamedTempFile::new()
        .map_err(|e| DeployError::TempFile(format!("cannot make a temporary file: {e}")))?;
    let text: String = paths.iter().map(|p| format!("./{p}\n")).collect();
    f.write_all(text.as_bytes())
        .map_err(|e| DeployError::TempFile(format!("cannot write a temporary file: {e}")))?;
    Ok(f)
}

/// `jarvisctl env lint` of the .env to send; returns its bytes. Findings
/// never hold a value.
fn lint_env(paths: &Paths, file: &Path) -> Result<Vec<u8>> {
    let bytes =
        crate::envcheck::read(file).map_err(|e| jarvis_model::error::Error::io("read the .env", file, e))?;
    let rules = envrules::load(&paths.host(Path::new(envrules::PATH)))?;
    let check = EnvCheck {
        account: None,
        rules: &rules,
        systemd: crate::systemd::version().unwrap_or(u32::MAX),
        inherited: None,
    };
    let (findings, _) = check.run(file, file);
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| f.level == Level::Fail)
        .map(|f| match f.line {
            Some(n) => format!("line {n}: {}", f.found),
            None => f.found.clone(),
        })
        .collect();
    if !bad.is_empty() {
        return Err(DeployError::EnvLint {
            file: file.to_path_buf(),
            findings: bad,
        });
    }
    Ok(bytes)
}
