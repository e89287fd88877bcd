//! Instances (issue 26): several supervised programs on one host, each a
//! unit of its own. The default instance is today's
//! `jarvis-supervisor.service`, unchanged; a named one is an instance of the
//! template, `jarvis-supervisor@NAME.service`.
//!
//! A name is checked once, here, because it becomes three things at once:
//! a unit instance (so it needs no systemd escaping), a path component of
//! the instance's runtime and state directories, and, with `jarvis-` in
//! front, the instance's own service user (so it is a valid user name for
//! `useradd` and `adduser` on every supported distribution, within 32
//! characters).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::paths::{Paths, UNIT};

/// The unit names' common part: `jarvis-supervisor.service` and the
/// template `jarvis-supervisor@.service`.
pub const PREFIX: &str = "jarvis-supervisor";
/// The target that starts, stops and restarts every instance together.
pub const TARGET: &str = "jarvis-supervisor.target";
/// The template every named instance is made from.
pub const TEMPLATE: &str = "jarvis-supervisor@.service";
/// The default instance's service user; a named one's is `jarvis-NAME`.
pub const DEFAULT_USER: &str = "jarvis";
/// What `--instance` and `instance list` call the default instance: no
/// named instance may have it.
pub const DEFAULT_NAME: &str = "default";
/// The longest name: `jarvis-` plus it fits a 32-character user name.
pub const MAX_NAME: usize = 32 - "jarvis-".len();
/// Where named instances' drop-ins live (the admin's unit directory).
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// The drop-in that makes a named instance, written by `jarvisctl instance
/// add`: its presence is the record that the instance exists.
pub const DROPIN: &str = "50-jarvisctl-instance.conf";
/// A removed instance's drop-in, kept under this name (systemd reads only
/// `*.conf`), so that `instance restore` brings it back as it was.
pub const REMOVED: &str = "50-jarvisctl-instance.conf.removed";

/// A checked instance name: a lowercase letter, then lowercase letters,
/// digits, `-` and `_`, at most [`MAX_NAME`] characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceName(String);

impl InstanceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for InstanceName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            // The name as typed may hold anything (a pasted secret, control
            // characters): named by its length and the first bad character's
            // position, never echoed.
            Error::new(format!(
                "the instance name ({} characters) {why}",
                s.chars().count()
            ))
            .with_note(
                "an instance name is a lowercase letter, then lowercase letters, digits, - or _, \
                 at most 25 characters (for example: alpha, treasury, buy_tracker)",
            )
        };
        if s.is_empty() {
            return Err(bad("is empty"));
        }
        if s == DEFAULT_NAME {
            return Err(
                Error::new("\"default\" names the default instance (jarvis-supervisor.service)")
                    .with_note("give a named instance another name"),
            );
        }
        if s.len() > MAX_NAME {
            return Err(bad(&format!("is longer than {MAX_NAME} characters")));
        }
        if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(bad("does not start with a lowercase letter"));
        }
        if let Some(at) = s
            .chars()
            .position(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'))
        {
            return Err(bad(&format!(
                "has a character that is not a lowercase letter, digit, - or _ at position {}",
                at + 1
            )));
        }
        Ok(InstanceName(s.to_string()))
    }
}

/// Which supervised program: the default one, or a named instance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Instance {
    #[default]
    Default,
    Named(InstanceName),
}

impl Instance {
    /// The instance of a command's `--instance NAME`: the default without
    /// one, or with `default` (the name `instance list` gives it); a bad
    /// name is refused, never echoed.
    pub fn from_arg(name: Option<&str>) -> Result<Instance> {
        match name {
            None | Some(DEFAULT_NAME) => Ok(Instance::Default),
            Some(n) => Ok(Instance::Named(n.parse()?)),
        }
    }

    /// The instance a unit name stands for: `jarvis-supervisor.service` is
    /// the default, `jarvis-supervisor@NAME.service` a named one; any other
    /// unit (the template itself, another program's) is none.
    pub fn from_unit(unit: &str) -> Option<Instance> {
        if unit == UNIT {
            return Some(Instance::Default);
        }
        let name = unit
            .strip_prefix(PREFIX)?
            .strip_prefix('@')?
            .strip_suffix(".service")?;
        name.parse().ok().map(Instance::Named)
    }

    /// Its unit's name.
    pub fn unit(&self) -> String {
        match self {
            Instance::Default => UNIT.to_string(),
            Instance::Named(n) => format!("{PREFIX}@{n}.service"),
        }
    }

    /// Its unit's name as an operator types it to systemctl and
    /// journalctl: `jarvis-supervisor`, `jarvis-supervisor@NAME`.
    pub fn short_unit(&self) -> String {
        let unit = self.unit();
        unit.strip_suffix(".service").unwrap_or(&unit).to_string()
    }

    /// What a `jarvisctl` command needs to act on it: nothing for the
    /// default, ` --instance NAME` for a named one (with its leading space).
    pub fn flag(&self) -> String {
        match self {
            Instance::Default => String::new(),
            Instance::Named(n) => format!(" --instance {n}"),
        }
    }

    /// Its own service user, when it is given none: `jarvis` for the
    /// default, `jarvis-NAME` for a named one (isolation is the default).
    pub fn default_user(&self) -> String {
        match self {
            Instance::Default => DEFAULT_USER.to_string(),
            Instance::Named(n) => format!("{DEFAULT_USER}-{n}"),
        }
    }

    /// The unit's `RuntimeDirectory=` below /run (the backoff's state):
    /// `@` keeps a named one apart from the default's and the engine's.
    pub fn runtime_dir(&self) -> PathBuf {
        PathBuf::from("/run").join(self.suffixed(PREFIX))
    }

    /// The fallback engine's state directory (state.json, its lock).
    pub fn engine_dir(&self) -> PathBuf {
        PathBuf::from("/run").join(self.suffixed(&format!("{PREFIX}-run")))
    }

    /// The name for messages: "the default instance" or "instance NAME".
    pub fn describe(&self) -> String {
        match self {
            Instance::Default => format!("the default instance ({UNIT})"),
            Instance::Named(n) => format!("instance {n} ({})", self.unit()),
        }
    }

    /// Its drop-in directory in the admin's unit directory.
    pub fn dropin_dir(&self) -> PathBuf {
        PathBuf::from(UNIT_DIR).join(format!("{}.d", self.unit()))
    }

    /// Every named instance made on this host (those with the drop-in of
    /// `instance add`), by name; with `removed`, those removed instead.
    pub fn installed(paths: &Paths, removed: bool) -> Vec<InstanceName> {
        let file = if removed { REMOVED } else { DROPIN };
        let Ok(read) = std::fs::read_dir(paths.host(Path::new(UNIT_DIR))) else {
            return Vec::new();
        };
        let mut out: Vec<InstanceName> = read
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.strip_suffix(".d")?.to_string();
                match Instance::from_unit(&name)? {
                    Instance::Named(n) if e.path().join(file).is_file() => Some(n),
                    _ => None,
                }
            })
            .collect();
        out.sort();
        out
    }

    /// The instance, when it is made on this host: the default always
    /// (its unit is the package's), a named one when `instance add` made
    /// it. Else the error names the instances there are.
    pub fn made(self, paths: &Paths) -> Result<Instance> {
        let Instance::Named(n) = &self else {
            return Ok(self);
        };
        let known = Instance::installed(paths, false);
        if known.contains(n) {
            return Ok(self);
        }
        let names: Vec<String> = std::iter::once(DEFAULT_NAME.to_string())
            .chain(known.iter().map(|k| k.to_string()))
            .collect();
        Err(Error::new(format!(
            "no instance {n} on this host ({} has no {DROPIN})",
            self.dropin_dir().display()
        ))
        .with_note(format!(
            "the instances are: {}; make it with sudo jarvisctl instance add {n} --code-root DIR --script PATH",
            names.join(", ")
        )))
    }

    fn suffixed(&self, base: &str) -> String {
        match self {
            Instance::Default => base.to_string(),
            Instance::Named(n) => format!("{base}@{n}"),
        }
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instance::Default => f.write_str("default"),
            Instance::Named(n) => n.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_a_unit_instance_a_path_component_and_a_user_name() {
        for good in ["alpha", "buy_tracker", "bot-2", "a", "abcdefghijklmnopqrstuvwxy"] {
            let n: InstanceName = good.parse().unwrap();
            let i = Instance::Named(n);
            assert_eq!(i.unit(), format!("jarvis-supervisor@{good}.service"));
            assert!(i.default_user().len() <= 32, "{}", i.default_user());
            assert_eq!(Instance::from_unit(&i.unit()), Some(i.clone()));
        }
        for bad in [
            "",
            "Alpha",
            "1bot",
            "-x",
            "_x",
            "a b",
            "a/b",
            "a@b",
            "a.b",
            "..",
            "a\\x2db",
            "abcdefghijklmnopqrstuvwxyz",
            "é",
            "a\n",
        ] {
            assert!(bad.parse::<InstanceName>().is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn a_bad_name_is_never_echoed() {
        let e = "TOKEN=123:secret"
            .parse::<InstanceName>()
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret") && !e.contains("TOKEN"), "{e}");
        assert!(e.contains("16 characters"), "{e}");
    }

    #[test]
    fn the_default_instance_is_todays_unit_and_directories() {
        let d = Instance::Default;
        assert_eq!(d.unit(), "jarvis-supervisor.service");
        assert_eq!(d.short_unit(), "jarvis-supervisor");
        assert_eq!(d.flag(), "");
        assert_eq!(Instance::from_arg(None).unwrap(), d);
        assert_eq!(Instance::from_arg(Some("default")).unwrap(), d);
        assert!("default".parse::<InstanceName>().is_err());
        let a = Instance::from_arg(Some("alpha")).unwrap();
        assert_eq!(a.short_unit(), "jarvis-supervisor@alpha");
        assert_eq!(a.flag(), " --instance alpha");
        assert_eq!(d.default_user(), "jarvis");
        assert_eq!(d.runtime_dir(), PathBuf::from("/run/jarvis-supervisor"));
        assert_eq!(d.engine_dir(), PathBuf::from("/run/jarvis-supervisor-run"));
        assert_eq!(
            Instance::from_unit("jarvis-supervisor.service"),
            Some(Instance::Default)
        );
        // An instance named "run" never shares the engine's directory.
        let run = Instance::Named("run".parse().unwrap());
        assert_eq!(run.runtime_dir(), PathBuf::from("/run/jarvis-supervisor@run"));
        assert_ne!(run.runtime_dir(), d.engine_dir());
        assert_eq!(run.engine_dir(), PathBuf::from("/run/jarvis-supervisor-run@run"));
        for other in [
            "jarvis-supervisor@.service",
            "jarvis-supervisor-health.service",
            "x@a.service",
        ] {
            assert_eq!(Instance::from_unit(other), None, "{other}");
        }
    }

    #[test]
    fn the_installed_instances_are_those_with_the_drop_in_of_instance_add() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::rooted(root.path());
        let etc = root.path().join("etc/systemd/system");
        for (dir, file) in [
            ("jarvis-supervisor@beta.service.d", DROPIN),
            ("jarvis-supervisor@alpha.service.d", DROPIN),
            ("jarvis-supervisor@gone.service.d", REMOVED),
            // The admin's own drop-in for an instance never made: not one.
            ("jarvis-supervisor@hand.service.d", "10-x.conf"),
            ("jarvis-supervisor.service.d", DROPIN),
            ("jarvis-supervisor@Bad.service.d", DROPIN),
        ] {
            std::fs::create_dir_all(etc.join(dir)).unwrap();
            std::fs::write(etc.join(dir).join(file), "").unwrap();
        }
        let names = |removed| -> Vec<String> {
            Instance::installed(&paths, removed)
                .iter()
                .map(|n| n.to_string())
                .collect()
        };
        assert_eq!(names(false), ["alpha", "beta"]);
        let made = |n: &str| Instance::from_arg(Some(n)).unwrap().made(&paths);
        assert!(made("alpha").is_ok() && made("default").is_ok());
        let e = made("gone").unwrap_err().to_string();
        assert!(
            e.contains("no instance gone") && e.contains("default, alpha, beta"),
            "{e}"
        );
        assert_eq!(names(true), ["gone"]);
        let a = Instance::Named("alpha".parse().unwrap());
        assert_eq!(
            a.dropin_dir(),
            PathBuf::from("/etc/systemd/system/jarvis-supervisor@alpha.service.d")
        );
    }
}
