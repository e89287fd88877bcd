//! The commands a finding's fix names, for the instance checked. The
//! default instance's are the ones `check` has always given; a named
//! instance's name its own unit (`jarvis-supervisor@NAME`), `--instance
//! NAME`, and `instance add` where the default's name `setup`, which
//! provisions the default alone.

use std::path::Path;

use jarvis_model::instance::Instance;
use jarvis_model::unit::Unit;

pub(crate) struct Fixes {
    instance: Instance,
    /// A named instance's `instance add`, as it was made: it makes the
    /// instance's user, and writes its drop-in again.
    add: Option<String>,
    /// The same with its code root moved to DIR.
    moved: Option<String>,
}

impl Fixes {
    pub(crate) fn new(instance: &Instance, unit: &Unit) -> Fixes {
        let add = |root: Option<&Path>| match instance {
            Instance::Default => None,
            Instance::Named(n) => Some(crate::instances::add_command(n, unit, root, None)),
        };
        Fixes {
            instance: instance.clone(),
            add: add(None),
            moved: add(Some(Path::new("DIR"))),
        }
    }

    pub(crate) fn instance(&self) -> &Instance {
        &self.instance
    }

    /// The unit as typed to systemctl and journalctl.
    pub(crate) fn unit(&self) -> String {
        self.instance.short_unit()
    }

    /// `sudo jarvisctl venv build` for this instance, then `rest`.
    pub(crate) fn venv_build(&self, rest: &str) -> String {
        format!("sudo jarvisctl venv build{}{rest}", self.instance.flag())
    }

    /// What makes the instance's user.
    pub(crate) fn provision(&self) -> String {
        match &self.add {
            None => "sudo jarvisctl setup".to_string(),
            Some(add) => add.clone(),
        }
    }

    /// `sudo jarvisctl check` of this instance.
    pub(crate) fn check(&self) -> String {
        format!("sudo jarvisctl check{}", self.instance.flag())
    }

    /// What makes the ReadWritePaths= directories of a 226/NAMESPACE.
    pub(crate) fn namespace(&self) -> String {
        match self.instance {
            Instance::Default => "sudo jarvisctl setup".to_string(),
            Instance::Named(_) => format!(
                "{}: it names each missing directory and what makes it",
                self.check()
            ),
        }
    }

    /// What makes a directory the unit needs (ReadWritePaths=), or gives
    /// it to the service user: `setup` for the default; a named instance's
    /// are made by hand (`instance add` makes none).
    pub(crate) fn directory(&self, path: &Path, user: &str, group: &str) -> String {
        match self.instance {
            Instance::Default => "sudo jarvisctl setup".to_string(),
            Instance::Named(_) => format!("sudo install -d -o {user} -g {group} -m 0750 {}", path.display()),
        }
    }

    /// What gives a named instance its missing code root: its code put
    /// there, or the instance pointed at its code.
    pub(crate) fn code_root(&self, root: &Path, user: &str, group: &str) -> String {
        match &self.moved {
            Some(moved) => format!(
                "put the instance's code there (as root: rsync -a --chown={user}:{group} --exclude .env ./CODE/ root@HOST:{}/), \
                 or point the instance at its code: {moved}",
                root.display(),
            ),
            None => "sudo jarvisctl setup, then deploy the code".to_string(),
        }
    }
}
