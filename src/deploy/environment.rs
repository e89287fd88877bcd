//! The bot's Python environment in a deploy (issue 14): built on each host
//! before the swap, as the service user, beside the one in use (`jarvisctl
//! venv build --no-switch` on the host); switched with the code in the
//! swap (`venv switch`, one rename); switched back by every undo. A host
//! whose build fails is left as it was. The deploy's meta.json records the
//! environment in use before and after (`venv.before`, `venv.after`), so
//! the journal that undoes the code undoes the environment too.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::error::{DeployError, Result};
use super::host_paths::WHEELHOUSES;
use super::journal::{Meta, Venv};
use super::plan;
use super::progress;
use super::remote::{last_line, SshSession};
use super::reply::{Adopted, Built, Plan};
use super::session::Session;
use super::shell::sh_quote;
use jarvis_model::manifest::Manifest;

/// A build installs every requirement: minutes on a slow host.
const BUILD: Duration = Duration::from_secs(1800);
const SHORT: Duration = Duration::from_secs(120);

/// A wheelhouse to ship: its directory and the digest of its content,
/// which names it on the host (the same wheels are sent once).
pub struct Wheelhouse {
    pub dir: std::path::PathBuf,
    pub id: String,
}

impl Wheelhouse {
    pub fn read(dir: &Path) -> Result<Wheelhouse> {
        if !dir.is_dir() {
            return Err(DeployError::NotAWheelhouse(dir.to_path_buf()));
        }
        let m = Manifest::build(dir)?;
        let digest = Sha256::digest(m.render("root:root").as_bytes());
        Ok(Wheelhouse {
            dir: dir.to_path_buf(),
            id: jarvis_model::manifest::hex(&digest)[..16].to_string(),
        })
    }

    /// Where it is on a host.
    pub fn remote(&self) -> String {
        format!("{WHEELHOUSES}/{}", self.id)
    }
}

/// Why this deploy must build an environment on a host, if it must: the
/// code's requirements.txt is new or changed there, or the wheelhouse or
/// the interpreter differs from what built the one in use.
pub fn reason(
    plan: &Plan,
    ships_requirements: bool,
    current: Option<&Meta>,
    wheelhouse: Option<&Wheelhouse>,
    python: Option<&str>,
) -> Option<String> {
    if !ships_requirements {
        return None;
    }
    let listed = |l: &[String]| l.iter().any(|p| p == "requirements.txt");
    if listed(&plan.put) {
        return Some("requirements.txt is new on this host".into());
    }
    if listed(&plan.replace) {
        return Some("requirements.txt changed".into());
    }
    let was = current.and_then(|m| m.venv.as_ref());
    if let Some(w) = wheelhouse {
        if was.and_then(|v| v.wheelhouse.as_deref()) != Some(w.id.as_str()) {
            return Some(format!("the wheelhouse changed ({})", w.id));
        }
    }
    if let Some(p) = python {
        if was.and_then(|v| v.python.as_deref()) != Some(p) {
            return Some(format!("the interpreter changed ({p})"));
        }
    }
    None
}

/// The environment's commands on the host, over ssh.
impl SshSession<'_> {
    /// The host's jarvisctl must have the commands below (0.2 and later).
    fn venv_supported(&self) -> Result<()> {
        self.sh("jarvisctl venv switch --help >/dev/null 2>&1", SHORT)
            .map(|_| ())
            .map_err(|_| DeployError::NoVenvCommands)
    }

    /// Sends the wheels (only the ones the host lacks cross the wire), root's
    /// and readable by the service user, who builds from them.
    pub fn venv_ship(&self, w: &Wheelhouse) -> Result<()> {
        self.sh(
            &format!("mkdir -p -m 755 {WHEELHOUSES} && mkdir -p -m 755 {}", w.remote()),
            SHORT,
        )?;
        let src = format!("{}/", w.dir.display());
        let dest = plan::rsync_dest(&self.host.target.destination, &format!("{}/", w.remote()));
        let out = self.rsync(
            Command::new("rsync")
                .args(["-rt", "--delete", "--chmod=D755,F644", "-e", &self.shell()])
                .arg(&src)
                .arg(&dest),
        )?;
        if out.status != Some(0) {
            return Err(DeployError::SendWheelhouseFailed(last_line(&out.stderr)));
        }
        Ok(())
    }

    /// The environment in use on the host (`venvs/ID`, or None: the system's
    /// python3); a venv/ made by hand becomes a kept one first, so that there
    /// is always something to switch back to.
    pub fn venv_adopt(&self) -> Result<Option<String>> {
        self.venv_supported()?;
        let out = self.sh("jarvisctl venv adopt --json", SHORT)?;
        let v: Adopted = serde_json::from_str(out.lines().last().unwrap_or(""))
            .map_err(|_| DeployError::NoAdoptReport(last_line(&out)))?;
        Ok(v.venv)
    }

    /// Builds beside the one in use from `requirements` (a root-only file on
    /// the host); the new `venvs/ID`, or the reason it failed (the builder's
    /// own: the requirement and pip's last error line).
    pub fn venv_build_on_host(
        &self,
        requirements: &str,
        wheelhouse: Option<&str>,
        python: Option<&str>,
    ) -> Result<String> {
        let mut cmd = format!(
            "jarvisctl venv build --no-switch --json --requirements {}",
            sh_quote(requirements)
        );
        if let Some(w) = wheelhouse {
            cmd += &format!(" --wheelhouse {}", sh_quote(w));
        }
        if let Some(p) = python {
            cmd += &format!(" --python {}", sh_quote(p));
        }
        // Its exit code says no more than its report.
        let out = self.sh(&format!("{cmd}; true"), BUILD)?;
        let report: Option<Built> = serde_json::from_str(out.lines().last().unwrap_or("")).ok();
        let Some(v) = report else {
            return Err(DeployError::BuildFailed(last_line(&out)));
        };
        if v.ok {
            if let Some(new) = v.venv {
                return Ok(new);
            }
        }
        let text = |t: &Option<String>| crate::output::printable(t.as_deref().unwrap_or(""));
        Err(DeployError::BuildFailed(match &v.requirement {
            Some(_) => format!("requirement {} failed: {}", text(&v.requirement), text(&v.error)),
            None => text(&v.error).to_string(),
        }))
    }

    /// Points venv/ at `target` (None: no venv, the system's python3).
    pub fn venv_switch_on_host(&self, target: Option<&str>) -> Result<()> {
        let t = target.unwrap_or("none");
        self.sh(&format!("jarvisctl venv switch --json {}", sh_quote(t)), SHORT)
            .map(|_| ())
            .map_err(|e| DeployError::SwitchFailed {
                target: t.to_string(),
                why: Box::new(e),
            })
    }
}

/// meta.json's record of the environment of a deploy.
pub fn record(
    before: Option<&str>,
    after: Option<&str>,
    wheelhouse: Option<&Wheelhouse>,
    python: Option<&str>,
) -> Venv {
    Venv {
        before: before.map(str::to_string),
        after: after.map(str::to_string),
        wheelhouse: wheelhouse.map(|w| w.id.clone()),
        python: python.map(str::to_string),
    }
}

/// Undo: the environment in use before deploy `meta`, when it changed it.
pub fn restore(s: &dyn Session, meta: &Meta) -> Result<Option<String>> {
    let Some(v) = &meta.venv else {
        return Ok(None);
    };
    if v.before == v.after {
        return Ok(None);
    }
    let before = v.before.as_deref();
    s.venv_switch(before)?;
    Ok(Some(before.unwrap_or("none (the system's python3)").to_string()))
}

/// `--rollback --to`: the record of the environment to switch to with
/// deploy `target`'s code (`after`: the one it ran with), or None when
/// that is the one in use or the deploy recorded none. One that was
/// removed since is rebuilt now, as the service user, from the target's
/// requirements (and its wheelhouse while kept): a failure changes nothing.
pub fn for_rollback(
    s: &dyn Session,
    code_dir: &str,
    target: &Meta,
    requirements: &str,
) -> Result<Option<Venv>> {
    let Some(v) = &target.venv else {
        return Ok(None);
    };
    let want = v.after.as_deref();
    let now = s.venv_in_use()?;
    if now.as_deref() == want {
        return Ok(None);
    }
    let python = v.python.as_deref();
    let wheelhouse = v
        .wheelhouse
        .as_deref()
        .filter(|id| is_wheelhouse_id(id))
        .map(|id| format!("{WHEELHOUSES}/{id}"));
    let after = match want {
        None => None,
        Some(w) if s.venv_exists(code_dir, w) => Some(w.to_string()),
        Some(w) => {
            let wheels = wheelhouse.as_deref().filter(|d| s.wheelhouse_kept(d));
            progress(
                s.name(),
                &format!("{w} is gone: rebuilding that deploy's environment from its requirements.txt"),
            );
            Some(s.venv_build(requirements, wheels, python)?)
        }
    };
    Ok(Some(Venv {
        before: now,
        after,
        wheelhouse: v.wheelhouse.clone(),
        python: python.map(str::to_string),
    }))
}

/// The wheelhouses named by the deploys kept, given their metas.
pub fn wheelhouses_named<'a>(metas: impl IntoIterator<Item = &'a Meta>) -> Vec<String> {
    metas
        .into_iter()
        .filter_map(|m| m.venv.as_ref()?.wheelhouse.as_deref())
        .filter(|id| is_wheelhouse_id(id))
        .map(str::to_string)
        .collect()
}

/// A meta.json's wheelhouse id names a directory under WHEELHOUSES only
/// when it has the form we give them.
fn is_wheelhouse_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_is_needed_only_when_what_made_the_environment_changed() {
        let plan = |put: &[&str], replace: &[&str]| Plan {
            put: put.iter().map(|s| s.to_string()).collect(),
            replace: replace.iter().map(|s| s.to_string()).collect(),
            ..Plan::default()
        };
        let none = None;
        assert_eq!(reason(&plan(&["bots/x.py"], &[]), true, none, None, None), None);
        assert!(reason(&plan(&["requirements.txt"], &[]), true, none, None, None)
            .unwrap()
            .contains("new"));
        assert!(reason(&plan(&[], &["requirements.txt"]), true, none, None, None)
            .unwrap()
            .contains("changed"));
        // Not shipped any more: the environment in use stays.
        assert_eq!(
            reason(&plan(&[], &["requirements.txt"]), false, none, None, None),
            None
        );
        let w = Wheelhouse {
            dir: "/w".into(),
            id: "0123456789abcdef".into(),
        };
        let cur = Meta {
            venv: Some(Venv {
                wheelhouse: Some("0123456789abcdef".into()),
                python: Some("/usr/bin/python3.11".into()),
                ..Venv::default()
            }),
            ..Meta::default()
        };
        let cur = Some(&cur);
        assert_eq!(
            reason(&plan(&[], &[]), true, cur, Some(&w), Some("/usr/bin/python3.11")),
            None
        );
        assert!(reason(&plan(&[], &[]), true, none, Some(&w), None)
            .unwrap()
            .contains("wheelhouse"));
        assert!(
            reason(&plan(&[], &[]), true, cur, None, Some("/usr/bin/python3.12"))
                .unwrap()
                .contains("interpreter")
        );
    }

    #[test]
    fn only_well_formed_wheelhouse_ids_are_kept() {
        let with = |w: &str| Meta {
            venv: Some(Venv {
                wheelhouse: Some(w.into()),
                ..Venv::default()
            }),
            ..Meta::default()
        };
        let metas = [with("0123456789abcdef"), with("../../etc"), Meta::default()];
        assert_eq!(wheelhouses_named(&metas), vec!["0123456789abcdef".to_string()]);
    }
}
