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

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::plan::{self, sh_quote, WHEELHOUSES};
use super::remote::Session;
use jarvis_model::error::{Error, Result};
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
            return Err(Error::new(format!("the wheelhouse {} is not a directory", dir.display()))
                .with_code(jarvis_model::error::exit::USAGE)
                .with_note("build one with: pip wheel -r requirements.txt -w DIR (for the hosts' Python and platform)"));
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
    plan: &Value,
    ships_requirements: bool,
    current: &Value,
    wheelhouse: Option<&Wheelhouse>,
    python: Option<&str>,
) -> Option<String> {
    if !ships_requirements {
        return None;
    }
    let listed = |key: &str| plan::plan_list(plan, key).contains(&"requirements.txt");
    if listed("put") {
        return Some("requirements.txt is new on this host".into());
    }
    if listed("replace") {
        return Some("requirements.txt changed".into());
    }
    let was = &current["venv"];
    if let Some(w) = wheelhouse {
        if was["wheelhouse"].as_str() != Some(w.id.as_str()) {
            return Some(format!("the wheelhouse changed ({})", w.id));
        }
    }
    if let Some(p) = python {
        if was["python"].as_str() != Some(p) {
            return Some(format!("the interpreter changed ({p})"));
        }
    }
    None
}

/// The host's jarvisctl must have the commands below (0.2 and later).
fn supported(s: &Session) -> std::result::Result<(), String> {
    s.sh("jarvisctl venv switch --help >/dev/null 2>&1", SHORT)
        .map(|_| ())
        .map_err(|_| {
            "the host's jarvisctl cannot build environments (jarvisctl venv switch is missing): \
             deploy the package first (--package with the code unchanged), then the new requirements"
                .to_string()
        })
}

/// Sends the wheels (only the ones the host lacks cross the wire), root's
/// and readable by the service user, who builds from them.
pub fn ship(s: &Session, shell: &str, w: &Wheelhouse) -> std::result::Result<(), String> {
    s.sh(
        &format!("mkdir -p -m 755 {WHEELHOUSES} && mkdir -p -m 755 {}", w.remote()),
        SHORT,
    )?;
    let src = format!("{}/", w.dir.display());
    let dest = plan::rsync_dest(&s.host.target.destination, &format!("{}/", w.remote()));
    let mut rsync = Command::new("rsync");
    rsync
        .args(["-rt", "--delete", "--chmod=D755,F644", "-e", shell])
        .arg(&src)
        .arg(&dest);
    let out = crate::ssh::output(rsync, s.name(), None, None)
        .map_err(|e| format!("cannot run rsync: {e} (install rsync)"))?;
    if let Some(why) = out.too_big {
        return Err(why);
    }
    if out.status != Some(0) {
        return Err(format!(
            "sending the wheelhouse failed: {}",
            super::remote::last_line(&out.stderr)
        ));
    }
    Ok(())
}

/// The environment in use on the host (`venvs/ID`, or None: the system's
/// python3); a venv/ made by hand becomes a kept one first, so that there
/// is always something to switch back to.
pub fn in_use(s: &Session) -> std::result::Result<Option<String>, String> {
    supported(s)?;
    let out = s.sh("jarvisctl venv adopt --json", SHORT)?;
    let v: Value = serde_json::from_str(out.lines().last().unwrap_or("")).map_err(|_| {
        format!(
            "jarvisctl venv adopt gave no report: {}",
            super::remote::last_line(&out)
        )
    })?;
    Ok(v["venv"].as_str().map(str::to_string))
}

/// Builds beside the one in use from `requirements` (a root-only file on
/// the host); the new `venvs/ID`, or the reason it failed (the builder's
/// own: the requirement and pip's last error line).
pub fn build(
    s: &Session,
    requirements: &str,
    wheelhouse: Option<&str>,
    python: Option<&str>,
) -> std::result::Result<String, String> {
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
    let out = s.sh(&format!("{cmd}; true"), BUILD)?;
    let v: Value = serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or(Value::Null);
    if v["ok"] == true {
        if let Some(new) = v["venv"].as_str() {
            return Ok(new.to_string());
        }
    }
    let text = |k: &str| crate::output::printable(v[k].as_str().unwrap_or(""));
    Err(match v["requirement"].as_str() {
        Some(_) => format!(
            "the environment build failed: requirement {} failed: {}",
            text("requirement"),
            text("error")
        ),
        None if v.is_object() => format!("the environment build failed: {}", text("error")),
        None => format!("the environment build failed: {}", super::remote::last_line(&out)),
    })
}

/// Points venv/ at `target` (None: no venv, the system's python3).
pub fn switch(s: &Session, target: Option<&str>) -> std::result::Result<(), String> {
    let t = target.unwrap_or("none");
    s.sh(&format!("jarvisctl venv switch --json {}", sh_quote(t)), SHORT)
        .map(|_| ())
        .map_err(|e| format!("switching the environment to {t} failed: {e}"))
}

/// meta.json's record of the environment of a deploy.
pub fn record(
    before: Option<&str>,
    after: Option<&str>,
    wheelhouse: Option<&Wheelhouse>,
    python: Option<&str>,
) -> Value {
    json!({
        "before": before, "after": after,
        "wheelhouse": wheelhouse.map(|w| w.id.clone()),
        "python": python,
    })
}

/// Undo: the environment in use before deploy `meta`, when it changed it.
pub fn restore(s: &Session, meta: &Value) -> std::result::Result<Option<String>, String> {
    let v = &meta["venv"];
    if !v.is_object() || v["before"] == v["after"] {
        return Ok(None);
    }
    let before = v["before"].as_str();
    switch(s, before)?;
    Ok(Some(before.unwrap_or("none (the system's python3)").to_string()))
}

/// `--rollback --to`: the record of the environment to switch to with
/// deploy `target`'s code (`after`: the one it ran with), or None when
/// that is the one in use or the deploy recorded none. One that was
/// removed since is rebuilt now, as the service user, from the target's
/// requirements (and its wheelhouse while kept): a failure changes nothing.
pub fn for_rollback(
    s: &Session,
    code_dir: &str,
    target: &Value,
    requirements: &str,
) -> std::result::Result<Option<Value>, String> {
    let v = &target["venv"];
    if !v.is_object() {
        return Ok(None);
    }
    let want = v["after"].as_str();
    let now = in_use(s)?;
    if now.as_deref() == want {
        return Ok(None);
    }
    let python = v["python"].as_str();
    let wheelhouse = v["wheelhouse"]
        .as_str()
        .filter(|id| is_wheelhouse_id(id))
        .map(|id| format!("{WHEELHOUSES}/{id}"));
    let after = match want {
        None => None,
        // root only tests that it is there; it never runs it.
        Some(w)
            if s.sh(
                &format!("test -x {}", sh_quote(&format!("{code_dir}/{w}/bin/python"))),
                SHORT,
            )
            .is_ok() =>
        {
            Some(w.to_string())
        }
        Some(w) => {
            let wheels = match &wheelhouse {
                Some(d) if s.sh(&format!("test -d {}", sh_quote(d)), SHORT).is_ok() => Some(d.as_str()),
                _ => None,
            };
            super::progress(
                s.name(),
                &format!("{w} is gone: rebuilding that deploy's environment from its requirements.txt"),
            );
            Some(build(s, requirements, wheels, python)?)
        }
    };
    Ok(Some(json!({
        "before": now, "after": after,
        "wheelhouse": v["wheelhouse"], "python": python,
    })))
}

/// The wheelhouses named by the deploys kept, given their metas.
pub fn wheelhouses_named(metas: &[Value]) -> Vec<String> {
    metas
        .iter()
        .filter_map(|m| m["venv"]["wheelhouse"].as_str())
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
        let plan = |put: &[&str], replace: &[&str]| json!({"put": put, "replace": replace});
        let none = json!({});
        assert_eq!(reason(&plan(&["bots/x.py"], &[]), true, &none, None, None), None);
        assert!(reason(&plan(&["requirements.txt"], &[]), true, &none, None, None)
            .unwrap()
            .contains("new"));
        assert!(reason(&plan(&[], &["requirements.txt"]), true, &none, None, None)
            .unwrap()
            .contains("changed"));
        // Not shipped any more: the environment in use stays.
        assert_eq!(
            reason(&plan(&[], &["requirements.txt"]), false, &none, None, None),
            None
        );
        let w = Wheelhouse {
            dir: "/w".into(),
            id: "0123456789abcdef".into(),
        };
        let cur = json!({"venv": {"wheelhouse": "0123456789abcdef", "python": "/usr/bin/python3.11"}});
        assert_eq!(
            reason(&plan(&[], &[]), true, &cur, Some(&w), Some("/usr/bin/python3.11")),
            None
        );
        assert!(reason(&plan(&[], &[]), true, &none, Some(&w), None)
            .unwrap()
            .contains("wheelhouse"));
        assert!(
            reason(&plan(&[], &[]), true, &cur, None, Some("/usr/bin/python3.12"))
                .unwrap()
                .contains("interpreter")
        );
    }

    #[test]
    fn only_well_formed_wheelhouse_ids_are_kept() {
        let metas = vec![
            json!({"venv": {"wheelhouse": "0123456789abcdef"}}),
            json!({"venv": {"wheelhouse": "../../etc"}}),
            json!({}),
        ];
        assert_eq!(wheelhouses_named(&metas), vec!["0123456789abcdef".to_string()]);
    }
}
