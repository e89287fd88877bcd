//! A host in memory, for the tests of the deploy's decisions: its history
//! and journal, the deploy in effect, the installed version, and the
//! replies its worker gives. Every action is logged; an action named in
//! `failures` fails once per mention.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use super::environment::Wheelhouse;
use super::error::{DeployError, Result};
use super::host_paths::PACKAGES;
use super::journal::Meta;
use super::probe::{Facts, Init, PackageManager};
use super::reply::{Compiled, Plan, Verify};
use super::session::{
    Apply, Before, BotPython, Compare, CompileRequest, EnvStep, LockGuard, PlanRequest, Session, Target,
};
use super::settings::Package;
use super::watch::Healthy;

pub struct FakeHost {
    pub facts: RefCell<Facts>,
    pub history: RefCell<BTreeMap<String, Meta>>,
    pub current: RefCell<Option<String>>,
    /// A damaged `current` file's text (then `current` is None).
    pub current_text: RefCell<Option<String>>,
    /// Replies of the worker's `plan`, in order; then an empty plan.
    pub plans: RefCell<VecDeque<Plan>>,
    /// Replies of `apply`, in order; then an empty result.
    pub applies: RefCell<VecDeque<Plan>>,
    /// The files `prepare_store` leaves to push.
    pub send: RefCell<Vec<String>>,
    /// Replies of `verify`, in order; then a store that matches.
    pub verify: RefCell<VecDeque<Verify>>,
    /// The reply of the worker's `compile` (its request is logged).
    pub compiled: RefCell<Compiled>,
    /// Versions whose package file the host keeps.
    pub kept: RefCell<Vec<String>>,
    pub venv: RefCell<Option<String>>,
    pub failures: RefCell<Vec<&'static str>>,
    /// What was done, one line an action.
    pub log: RefCell<Vec<String>>,
    /// Every meta.json written: (id, status, phase).
    pub journal: RefCell<Vec<(String, String, String)>>,
}

impl FakeHost {
    /// A host with the package `version` installed, no deploy yet.
    pub fn new(version: &str) -> FakeHost {
        FakeHost {
            facts: RefCell::new(Facts {
                pm: PackageManager::Dpkg,
                init: Init::Systemd,
                version: Some(version.into()),
                rsync: true,
                flock: true,
                python: true,
                unit: "jarvis-supervisor.service".into(),
                owner: "jarvis:jarvis".into(),
                code_dir: "/home/jarvis/Jarvis".into(),
                exec_start: [
                    "/usr/bin/jarvisctl",
                    "venv",
                    "exec",
                    "--",
                    "/home/jarvis/Jarvis/bots/supervisor.py",
                ]
                .map(String::from)
                .to_vec(),
                tmp_problem: None,
            }),
            history: RefCell::default(),
            current: RefCell::default(),
            current_text: RefCell::default(),
            plans: RefCell::default(),
            applies: RefCell::default(),
            send: RefCell::new(vec!["bots/supervisor.py".into()]),
            verify: RefCell::default(),
            compiled: RefCell::default(),
            kept: RefCell::new(vec![version.to_string()]),
            venv: RefCell::default(),
            failures: RefCell::default(),
            log: RefCell::default(),
            journal: RefCell::default(),
        }
    }

    fn did(&self, what: impl Into<String>) {
        self.log.borrow_mut().push(what.into());
    }

    /// Err when `action` is due to fail.
    fn check(&self, action: &'static str) -> Result<()> {
        let mut f = self.failures.borrow_mut();
        match f.iter().position(|a| *a == action) {
            Some(i) => {
                f.remove(i);
                self.did(format!("{action} FAILED"));
                Err(DeployError::Exited {
                    code: 1,
                    last: format!("{action} broke on the fake host"),
                })
            }
            None => Ok(()),
        }
    }

    pub fn did_any(&self, prefix: &str) -> bool {
        self.log.borrow().iter().any(|l| l.starts_with(prefix))
    }

    pub fn meta(&self, id: &str) -> Meta {
        self.history.borrow().get(id).cloned().unwrap_or_default()
    }
}

impl Session for FakeHost {
    fn name(&self) -> &str {
        "root@fake"
    }

    fn probe(&self) -> Result<Facts> {
        self.check("probe")?;
        Ok(self.facts.borrow().clone())
    }

    fn lock(&self) -> Result<LockGuard> {
        self.check("lock")?;
        self.did("lock");
        Ok(Box::new(()))
    }

    fn current(&self) -> Result<Option<String>> {
        Ok(self.current.borrow().clone())
    }

    fn current_raw(&self) -> Result<Option<String>> {
        Ok(self
            .current_text
            .borrow()
            .clone()
            .or_else(|| self.current.borrow().as_ref().map(|id| format!("{id}\n"))))
    }

    fn set_current(&self, id: Option<&str>) -> Result<()> {
        self.did(format!("current {}", id.unwrap_or("-")));
        *self.current.borrow_mut() = id.map(str::to_string);
        *self.current_text.borrow_mut() = None;
        Ok(())
    }

    fn history(&self) -> Result<Vec<(String, Meta)>> {
        Ok(self
            .history
            .borrow()
            .iter()
            .map(|(i, m)| (i.clone(), m.clone()))
            .collect())
    }

    fn write_meta(&self, id: &str, meta: &Meta) -> Result<()> {
        self.check("write_meta")?;
        let word = |s: Option<&str>| s.unwrap_or("-").to_string();
        self.journal.borrow_mut().push((
            id.to_string(),
            word(meta.status.as_ref().map(|s| s.as_str())),
            word(meta.phase.as_ref().map(|p| p.as_str())),
        ));
        self.history.borrow_mut().insert(id.to_string(), meta.clone());
        Ok(())
    }

    fn new_deploy_dir(&self, base: &str) -> Result<String> {
        let mut id = base.to_string();
        let mut n = 0;
        while self.history.borrow().contains_key(&id) {
            n += 1;
            id = format!("{base}-{n}");
        }
        self.did(format!("new {id}"));
        self.history.borrow_mut().insert(id.clone(), Meta::default());
        Ok(id)
    }

    fn remove_deploys(&self, ids: &[String], _wheelhouses: &[String]) -> Result<()> {
        for id in ids {
            self.did(format!("remove {id}"));
            self.history.borrow_mut().remove(id);
        }
        Ok(())
    }

    fn prepare_store(&self, id: &str, _manifest: &[u8], link: Option<&str>) -> Result<Vec<String>> {
        self.did(format!("prepare {id} linked to {}", link.unwrap_or("-")));
        Ok(self.send.borrow().clone())
    }

    fn push_code(
        &self,
        id: &str,
        _local: &Path,
        _files_from: &Path,
        link: Option<&str>,
        compare: Compare,
    ) -> Result<()> {
        self.check("push_code")?;
        self.did(format!(
            "push {id} linked to {} by {compare:?}",
            link.unwrap_or("-")
        ));
        Ok(())
    }

    fn verify(&self, _id: &str, _linked: Option<&str>) -> Result<Verify> {
        Ok(self.verify.borrow_mut().pop_front().unwrap_or_default())
    }

    fn store_env(&self, id: &str, _env: &[u8]) -> Result<()> {
        self.did(format!("store env {id}"));
        Ok(())
    }

    fn send_package(&self, p: &Package) -> Result<()> {
        self.did(format!("send package {}", p.version));
        self.kept.borrow_mut().push(p.version.clone());
        Ok(())
    }

    fn store_before(&self, id: &str, before: Before) -> Result<()> {
        let from = match before {
            Before::Deploy(cur) => cur.to_string(),
            Before::Adopted(_) => "adopted".into(),
        };
        self.did(format!("before {id} from {from}"));
        Ok(())
    }

    fn has_before(&self, id: &str) -> Result<bool> {
        Ok(self
            .log
            .borrow()
            .iter()
            .any(|l| l.starts_with(&format!("before {id} "))))
    }

    fn drop_code(&self, id: &str) -> Result<()> {
        self.did(format!("drop code {id}"));
        Ok(())
    }

    fn copy_deploy(&self, from: &str, id: &str, before: Option<&str>) -> Result<()> {
        self.did(format!("copy {from} into {id}"));
        self.did(format!("before {id} from {}", before.unwrap_or("-")));
        Ok(())
    }

    fn plan(&self, req: &PlanRequest) -> Result<Plan> {
        self.check("plan")?;
        let to = match req.to {
            Target::Sent(_) => "sent".to_string(),
            Target::Stored(id) => id.to_string(),
        };
        self.did(format!("plan to {to}"));
        Ok(self.plans.borrow_mut().pop_front().unwrap_or_default())
    }

    fn compile(&self, req: &CompileRequest) -> Result<Compiled> {
        self.check("compile")?;
        let python = match &req.python {
            BotPython::Launcher => "the launcher's".to_string(),
            BotPython::Path(p) => p.clone(),
        };
        self.did(format!(
            "compile {} with {python} as {}: {}",
            req.id,
            req.owner,
            req.files.join(" ")
        ));
        Ok(self.compiled.borrow().clone())
    }

    fn apply(&self, req: &Apply) -> Result<Plan> {
        self.check("apply")?;
        if self.check("apply-no-space").is_err() {
            // The worker's staging hit a full disk and removed what it wrote.
            return Err(DeployError::WorkerUntouched(
                "staging the new files in /home/jarvis/Jarvis failed after 3 of 9: No space left on device; \
                 every staged file was removed, nothing live changed"
                    .into(),
            ));
        }
        self.did(format!(
            "apply {} {} -> {}{}{}",
            req.id,
            req.from,
            req.to,
            if req.lenient { " lenient" } else { "" },
            match req.env {
                EnvStep::Keep => "",
                EnvStep::Send => " env-new",
                EnvStep::Restore => " env-restore",
            }
        ));
        Ok(self.applies.borrow_mut().pop_front().unwrap_or_default())
    }

    /// Logged with what the journal and `current` said when it ran: it
    /// must come once the deploy is over.
    fn clean(&self, _code_dir: &str, id: &str, undone: bool) -> Result<u64> {
        self.check("clean")?;
        let m = self.meta(id);
        self.did(format!(
            "clean {id}{} after {}/{}, current {}",
            if undone { " undone" } else { "" },
            m.status.as_ref().map_or("-", |s| s.as_str()),
            m.phase.as_ref().map_or("-", |p| p.as_str()),
            self.current.borrow().as_deref().unwrap_or("-")
        ));
        Ok(0)
    }

    fn kept_package(&self, name: &str, version: &str, ext: &str) -> Result<Option<String>> {
        Ok(self
            .kept
            .borrow()
            .iter()
            .any(|v| v == version)
            .then(|| format!("{PACKAGES}/{name}_{version}.{ext}")))
    }

    fn install(&self, _pm: PackageManager, file: &str) -> Result<()> {
        self.check("install")?;
        self.did(format!("install {file}"));
        let version = file
            .rsplit_once('_')
            .and_then(|(_, v)| v.rsplit_once('.'))
            .map(|(v, _)| v.to_string());
        self.facts.borrow_mut().version = version;
        Ok(())
    }

    fn restart(&self, _f: &Facts) -> Result<()> {
        self.check("restart")?;
        self.did("restart");
        Ok(())
    }

    fn wait_healthy(&self, _ready: Duration, _settle: Duration) -> Result<Healthy> {
        self.check("wait_healthy")?;
        self.did("healthy");
        Ok(Healthy {
            pid: 4242,
            how: "its /health says healthy, 0.1 s after the restart".into(),
        })
    }

    fn venv_in_use(&self) -> Result<Option<String>> {
        Ok(self.venv.borrow().clone())
    }

    fn ship_wheelhouse(&self, w: &Wheelhouse) -> Result<()> {
        self.did(format!("ship wheelhouse {}", w.id));
        Ok(())
    }

    fn venv_build(
        &self,
        _requirements: &str,
        _wheelhouse: Option<&str>,
        _python: Option<&str>,
    ) -> Result<String> {
        self.check("venv_build")?;
        self.did("build venvs/new");
        Ok("venvs/new".into())
    }

    fn venv_switch(&self, target: Option<&str>) -> Result<()> {
        self.did(format!("switch venv {}", target.unwrap_or("none")));
        *self.venv.borrow_mut() = target.map(str::to_string);
        Ok(())
    }

    fn venv_exists(&self, _code_dir: &str, _venv: &str) -> bool {
        true
    }

    fn wheelhouse_kept(&self, _dir: &str) -> bool {
        true
    }
}
