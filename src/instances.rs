//! Named instances (issue 26): what `jarvisctl instance add` makes of its
//! flags, the drop-in that is the instance, and the host changes around it
//! (the instance's user, its environment files' owner and mode, enabling).
//! The default instance is the package's own unit, never touched here.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::dropin::plain_path;
use crate::provision::{self, Change};
use jarvis_cli::{InstanceAddArgs, Readiness};
use jarvis_model::error::{exit, Error, Result};
use jarvis_model::instance::{Instance, InstanceName, DROPIN, REMOVED};
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

/// How the instance's program is started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Entry {
    /// A script, relative to the code root.
    Script(PathBuf),
    /// A module, run with `python -m`.
    Module(String),
}

/// `instance add`'s flags, checked: every value here goes into a unit file
/// as it is, so none holds a space, a quote, a `%` or a line break.
#[derive(Debug, Clone, Serialize)]
pub struct Spec {
    pub name: String,
    pub unit: String,
    pub code_root: PathBuf,
    pub entry: Entry,
    pub python: Option<PathBuf>,
    pub notify: bool,
    pub env_files: Vec<PathBuf>,
    pub user: String,
    /// The user's primary group (its own, for a user made here).
    pub group: String,
    pub memory_max: Option<String>,
    pub cpu_quota: Option<String>,
    pub restart_sec: Option<String>,
    pub watchdog_sec: Option<String>,
    /// More [Service] settings of plain values, written as they are after
    /// the limits (`jarvisctl import` carries a unit's Restart=, TasksMax=,
    /// ... over with them).
    pub extra: Vec<(String, String)>,
}

fn usage(e: Error) -> Error {
    e.with_code(exit::USAGE)
}

/// A setting's value of letters, digits and `. % _ -` (512M, 50%, 10s).
pub fn plain_value(flag: &str, v: &str) -> Result<String> {
    if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || "._%-".contains(c)) {
        return Err(usage(
            Error::new(format!("{flag} must be a plain value such as 512M, 50% or 10s")).with_note(format!(
                "see systemd.resource-control(5) and systemd.service(5) for {flag}'s forms"
            )),
        ));
    }
    Ok(v.to_string())
}

impl Spec {
    pub fn from_args(a: &InstanceAddArgs) -> Result<Spec> {
        let name: InstanceName = a.name.parse()?;
        let instance = Instance::Named(name.clone());
        let code_root = plain_path("--code-root", &a.code_root.to_string_lossy())?;
        let entry = match (&a.script, &a.module) {
            (Some(s), _) => {
                let s = s.to_string_lossy();
                // Checked as a path under the code root, then kept relative:
                // the program starts from its code root, as the gateway's do.
                let full = plain_path("--script", &format!("/{}", s.trim_start_matches('/')))?;
                if s.starts_with('/') {
                    let rel = Path::new(&*s).strip_prefix(&code_root).map_err(|_| {
                        usage(Error::new(format!("--script {s} is not under --code-root {}", code_root.display()))
                            .with_note("give the script's path in the code root, for example bots/alpha/alpha_telegram_bot.py"))
                    })?;
                    Entry::Script(rel.to_path_buf())
                } else {
                    Entry::Script(full.strip_prefix("/").unwrap_or(&full).to_path_buf())
                }
            }
            (None, Some(m)) => {
                let ok = !m.is_empty()
                    && m.split('.').all(|p| {
                        p.chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    });
                if !ok {
                    return Err(usage(
                        Error::new("--module must be a dotted module name (for example bots.treasury)")
                            .with_note("or give the entry point as --script PATH"),
                    ));
                }
                Entry::Module(m.clone())
            }
            (None, None) => {
                return Err(usage(
                    Error::new("no entry point").with_note("give --script PATH or --module NAME"),
                ))
            }
        };
        let python = a
            .python
            .as_ref()
            .map(|p| plain_path("--python", &p.to_string_lossy()))
            .transpose()?;
        let env_files = a
            .env_files
            .iter()
            .map(|p| plain_path("--env-file", &p.to_string_lossy()))
            .collect::<Result<Vec<_>>>()?;
        let user = match &a.user {
            Some(u) => {
                let ok = u.len() <= 32
                    && u.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && u.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c));
                if !ok || u == "root" {
                    return Err(usage(
                        Error::new(
                            "--user must be a user name other than root (lowercase letters, digits, _ and -)",
                        )
                        .with_note(format!(
                            "leave it out for a user of the instance's own, {}",
                            instance.default_user()
                        )),
                    ));
                }
                u.clone()
            }
            None => instance.default_user(),
        };
        // An existing user keeps its primary group (nobody's is nogroup on
        // Debian); one made here gets a group of its own name.
        let group = nix::unistd::User::from_name(&user)
            .ok()
            .flatten()
            .and_then(|u| nix::unistd::Group::from_gid(u.gid).ok().flatten())
            .map_or_else(|| user.clone(), |g| g.name);
        let opt = |flag: &str, v: &Option<String>| v.as_deref().map(|v| plain_value(flag, v)).transpose();
        Ok(Spec {
            name: name.to_string(),
            unit: instance.unit(),
            code_root,
            entry,
            python,
            notify: a.readiness == Readiness::Notify,
            env_files,
            user,
            group,
            memory_max: opt("--memory-max", &a.memory_max)?,
            cpu_quota: opt("--cpu-quota", &a.cpu_quota)?,
            restart_sec: opt("--restart-sec", &a.restart_sec)?,
            watchdog_sec: opt("--watchdog-sec", &a.watchdog_sec)?,
            extra: Vec::new(),
        })
    }

    fn instance(&self) -> Instance {
        Instance::Named(self.name.parse().expect("checked in from_args"))
    }

    /// The drop-in that makes the instance: what the template leaves to it.
    pub fn dropin(&self) -> String {
        let mut s = format!(
            "# Written by jarvisctl instance add {name}: change it with that command\n\
             # (jarvisctl instance add {name} ... again), not by hand.\n[Service]\n",
            name = self.name
        );
        if self.notify {
            s.push_str("Type=notify\nNotifyAccess=main\n");
            if let Some(w) = &self.watchdog_sec {
                s.push_str(&format!("WatchdogSec={w}\n"));
            }
        } else {
            // No sd_notify: running is ready, and no watchdog would be fed.
            s.push_str("Type=simple\nNotifyAccess=none\nWatchdogSec=0\n");
        }
        s.push_str(&format!("User={}\nGroup={}\n", self.user, self.group));
        let root = self.code_root.display();
        s.push_str(&format!(
            "WorkingDirectory={root}\nEnvironment=PYTHONPATH={root}\n"
        ));
        for f in &self.env_files {
            s.push_str(&format!("EnvironmentFile={}\n", f.display()));
        }
        let args = match &self.entry {
            Entry::Script(p) => p.display().to_string(),
            Entry::Module(m) => format!("-m {m}"),
        };
        // The interpreter named, or the code root's venv when it has one
        // (else /usr/bin/python3), decided at each start as for the default.
        let exec = match &self.python {
            Some(p) => format!("{} -B {args}", p.display()),
            None => format!("/usr/bin/jarvisctl venv exec -- {args}"),
        };
        s.push_str(&format!("ExecStart=\nExecStart={exec}\n"));
        s.push_str(&format!("ReadWritePaths={root}\n"));
        for (k, v) in [
            ("MemoryMax", &self.memory_max),
            ("CPUQuota", &self.cpu_quota),
            ("RestartSec", &self.restart_sec),
        ] {
            if let Some(v) = v {
                s.push_str(&format!("{k}={v}\n"));
            }
        }
        for (k, v) in &self.extra {
            s.push_str(&format!("{k}={v}\n"));
        }
        s
    }
}

/// An environment file given to one instance alone: root's, mode 600. The
/// engine (systemd, or `jarvisctl run`) reads it as root before the
/// program starts, so no instance's user can read another's. Its directory
/// must be root's alone: one another user can write could have the file
/// swapped for a link to any root file, read into the bot's environment.
fn secure_env_file(path: &Path, dry_run: bool) -> Result<Vec<Change>> {
    let mut dir = path.parent();
    while let Some(d) = dir {
        let m = std::fs::metadata(d).map_err(|e| Error::io("inspect", d, e))?;
        if m.uid() != 0 || m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
            return Err(Error::new(format!(
                "{} is in {}, which a user other than root can write",
                path.display(),
                d.display()
            ))
            .with_note("keep an instance's environment file in a directory of root's, for example /etc/jarvis-supervisor/"));
        }
        dir = d.parent();
    }
    let file = jarvis_model::untrusted::open_read(path, None).map_err(|e| {
        Error::io("open", path, e).with_note("give a plain KEY=VALUE file (links are not followed)")
    })?;
    let m = file.metadata().map_err(|e| Error::io("inspect", path, e))?;
    if !m.is_file() {
        return Err(Error::new(format!("{} is not a regular file", path.display())));
    }
    let mut changes = Vec::new();
    if m.uid() != 0 || m.gid() != 0 {
        if !dry_run {
            std::os::unix::fs::fchown(&file, Some(0), Some(0))
                .map_err(|e| Error::io("change the owner of", path, e))?;
        }
        changes.push(Change {
            target: path.display().to_string(),
            action: format!(
                "changed owner of {} to root:root (the engine reads it as root)",
                path.display()
            ),
        });
    }
    if m.mode() & 0o7777 != 0o600 {
        if !dry_run {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io("change the mode of", path, e))?;
        }
        changes.push(Change {
            target: path.display().to_string(),
            action: format!(
                "changed mode of {} from {:04o} to 0600",
                path.display(),
                m.mode() & 0o7777
            ),
        });
    }
    Ok(changes)
}

/// Makes (or changes) the instance: its user, its drop-in, its environment
/// files' owner and mode; then enables it with the group. With `dry_run`,
/// only says what it would change.
pub fn add(paths: &Paths, spec: &Spec, dry_run: bool) -> Result<Vec<Change>> {
    let instance = spec.instance();
    let mut changes = Vec::new();
    if paths.is_system() {
        if provision::Account::lookup(&spec.user, &spec.group).is_none() {
            if dry_run {
                changes.push(Change {
                    target: format!("user {}", spec.user),
                    action: format!("would create system user {} (group {})", spec.user, spec.group),
                });
            } else {
                let home = PathBuf::from("/home").join(&spec.user);
                changes.extend(provision::ensure_user(&spec.user, &spec.group, &home)?.1);
            }
        }
    } else if provision::Account::lookup(&spec.user, &spec.group).is_none() {
        return Err(
            Error::new(format!("user {} does not exist on this host", spec.user))
                .with_note("a rooted tree does not create users; give an existing one with --user"),
        );
    }
    for f in &spec.env_files {
        changes.extend(secure_env_file(&paths.host(f), dry_run)?);
    }
    let file = paths.host(&instance.dropin_dir().join(DROPIN));
    let text = spec.dropin();
    if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
        if !dry_run {
            crate::dropin::write(&file, &text)?;
        }
        changes.push(Change {
            target: file.display().to_string(),
            action: format!(
                "{} {} ({} as {}, from {})",
                if dry_run { "would write" } else { "wrote" },
                instance.dropin_dir().join(DROPIN).display(),
                spec.unit,
                spec.user,
                spec.code_root.display()
            ),
        });
    }
    // The unit as systemd will read it: the template and this drop-in.
    if !dry_run {
        Unit::load_named(paths, &spec.unit)?;
        changes.extend(crate::logrotate::refresh(paths)?);
        enable(paths, &spec.unit, true)?;
    }
    Ok(changes)
}

pub fn enable(paths: &Paths, unit: &str, on: bool) -> Result<()> {
    if !paths.is_system() || !paths.host(Path::new("/run/systemd/system")).is_dir() {
        // Without systemd, the init script starts every instance that has
        // its drop-in; a rooted tree is files only.
        return Ok(());
    }
    let run = |args: &[&str]| {
        crate::systemd::systemctl(args)
            .map_err(|e| Error::new(e).with_note("run it as root, on a host with systemd"))
    };
    run(&["daemon-reload"])?;
    run(&[if on { "enable" } else { "disable" }, unit])
}

/// One instance, as `instance list` shows it.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub name: String,
    pub unit: String,
    pub user: String,
    pub code_root: Option<PathBuf>,
    pub exec_start: Vec<String>,
    #[serde(rename = "type")]
    pub readiness: String,
}

/// Every instance on this host: the default one when its unit is installed,
/// then each named one.
pub fn list(paths: &Paths) -> Vec<Listed> {
    let mut all = Vec::new();
    let named = Instance::installed(paths, false).into_iter().map(Instance::Named);
    for i in std::iter::once(Instance::Default).chain(named) {
        let Ok(u) = Unit::load_named(paths, &i.unit()) else {
            continue;
        };
        all.push(Listed {
            name: i.to_string(),
            unit: i.unit(),
            user: u.user(),
            code_root: u.working_directory().map(|w| w.path),
            exec_start: u.exec_start(),
            readiness: u.last("Service", "Type").unwrap_or_else(|| "simple".into()),
        });
    }
    all
}

/// The `instance add` command that writes `name`'s drop-in again as it is,
/// with `code_root` or `python` (`auto`: none) changed when given: what
/// `check` and `configure` tell an operator to run for a named instance.
/// Read from the instance's own drop-in, so a template's default is never
/// pinned; a setting that `instance add` has no flag for (one `import`
/// carried over) is named after it, to be set again by hand.
pub fn add_command(
    name: &InstanceName,
    unit: &Unit,
    code_root: Option<&Path>,
    python: Option<&str>,
) -> String {
    let own = |key: &str| -> Vec<String> {
        unit.origins("Service", key)
            .into_iter()
            .filter(|(_, from)| from.contains(&format!("/{DROPIN}:")))
            .map(|(v, _)| v)
            .collect()
    };
    let mut cmd = format!("sudo jarvisctl instance add {name}");
    let root = code_root
        .map(Path::to_path_buf)
        .or_else(|| unit.working_directory().map(|w| w.path));
    if let Some(r) = root {
        cmd.push_str(&format!(" --code-root {}", r.display()));
    }
    let exec = unit.exec_start();
    let (interp, args): (Option<&str>, &[String]) = match crate::interpreter::launcher_args(&exec) {
        Some(a) => (None, a),
        None => match exec.split_first() {
            Some((p, rest)) => (
                Some(p.as_str()),
                rest.strip_prefix(&["-B".to_string()][..]).unwrap_or(rest),
            ),
            None => (None, &[]),
        },
    };
    match args {
        [m, module, ..] if m == "-m" => cmd.push_str(&format!(" --module {module}")),
        [script, ..] => cmd.push_str(&format!(" --script {script}")),
        [] => cmd.push_str(" --script PATH"),
    }
    match python {
        Some("auto") => {}
        Some(p) => cmd.push_str(&format!(" --python {p}")),
        None => {
            if let Some(p) = interp {
                cmd.push_str(&format!(" --python {p}"));
            }
        }
    }
    if unit.last("Service", "Type").as_deref() == Some("simple") {
        cmd.push_str(" --type simple");
    }
    let instance = Instance::Named(name.clone());
    let user = unit.user();
    if user != instance.default_user() {
        cmd.push_str(&format!(" --user {user}"));
    }
    for f in own("EnvironmentFile") {
        cmd.push_str(&format!(" --env-file {f}"));
    }
    for (key, flag) in [
        ("MemoryMax", "--memory-max"),
        ("CPUQuota", "--cpu-quota"),
        ("RestartSec", "--restart-sec"),
        ("WatchdogSec", "--watchdog-sec"),
    ] {
        if let Some(v) = own(key).pop().filter(|v| !(key == "WatchdogSec" && v == "0")) {
            cmd.push_str(&format!(" {flag} {v}"));
        }
    }
    let known = [
        "Type",
        "NotifyAccess",
        "WatchdogSec",
        "User",
        "Group",
        "WorkingDirectory",
        "Environment",
        "EnvironmentFile",
        "ExecStart",
        "ReadWritePaths",
        "MemoryMax",
        "CPUQuota",
        "RestartSec",
    ];
    let extra: Vec<String> = unit
        .keys()
        .into_iter()
        .filter(|(section, k)| section == "Service" && !known.contains(&k.as_str()))
        .filter_map(|(_, k)| own(&k).pop().map(|v| format!("{k}={v}")))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !extra.is_empty() {
        cmd.push_str(&format!(
            " (it has no flag for {}: set them again in a drop-in of your own, sudo systemctl edit {})",
            extra.join(", "),
            instance.short_unit()
        ));
    }
    cmd
}

/// Sets the instance's drop-in aside (`remove`) or back (`restore`), and
/// disables or enables it. Its user, code, environment files and state are
/// never touched. The caller stops it first.
pub fn set_aside(paths: &Paths, name: &InstanceName, restore: bool, dry_run: bool) -> Result<Vec<Change>> {
    let instance = Instance::Named(name.clone());
    let dir = paths.host(&instance.dropin_dir());
    let (from, to) = if restore {
        (REMOVED, DROPIN)
    } else {
        (DROPIN, REMOVED)
    };
    let (src, dst) = (dir.join(from), dir.join(to));
    if !src.is_file() {
        let what = if restore {
            "has no removed instance to restore"
        } else {
            "is not an instance made by jarvisctl instance add"
        };
        let known: Vec<String> = Instance::installed(paths, restore)
            .iter()
            .map(|n| n.to_string())
            .collect();
        return Err(
            Error::new(format!("{name} {what} ({} is missing)", src.display())).with_note(
                if known.is_empty() {
                    "jarvisctl instance list shows the instances".to_string()
                } else {
                    format!(
                        "{}: {}",
                        if restore { "removed instances" } else { "instances" },
                        known.join(", ")
                    )
                },
            ),
        );
    }
    if dst.exists() {
        return Err(Error::new(format!(
            "{} is in the way: both it and {} exist",
            dst.display(),
            src.display()
        ))
        .with_note("keep the one you mean and delete the other, then try again"));
    }
    if !dry_run {
        if !restore {
            enable(paths, &instance.unit(), false)?;
        }
        std::fs::rename(&src, &dst).map_err(|e| Error::io("rename", &src, e))?;
        if restore {
            enable(paths, &instance.unit(), true)?;
        } else if paths.is_system() && paths.host(Path::new("/run/systemd/system")).is_dir() {
            let _ = crate::systemd::systemctl(&["daemon-reload"]);
        }
    }
    let rotation = if dry_run {
        Vec::new()
    } else {
        crate::logrotate::refresh(paths)?
    };
    Ok(std::iter::once(Change {
        target: dst.display().to_string(),
        action: format!(
            "{}{} {} to {}",
            if dry_run { "would " } else { "" },
            if restore { "restore" } else { "set aside" },
            src.display(),
            dst.display()
        ),
    })
    .chain(rotation)
    .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn spec(args: &[&str]) -> Result<Spec> {
        let mut argv = vec!["jarvisctl", "instance", "add"];
        argv.extend_from_slice(args);
        let cli = jarvis_cli::Cli::try_parse_from(argv).map_err(|e| Error::new(e.to_string()))?;
        match cli.command {
            jarvis_cli::Command::Instance(jarvis_cli::InstanceCommand::Add(a)) => Spec::from_args(&a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_simple_bot_gets_its_own_user_no_watchdog_and_its_limits() {
        let s = spec(&[
            "alpha",
            "--code-root",
            "/srv/gateway/",
            "--script",
            "/srv/gateway/bots/alpha/alpha_telegram_bot.py",
            "--type",
            "simple",
            "--env-file",
            "/etc/jarvis-supervisor/alpha.env",
            "--memory-max",
            "512M",
            "--cpu-quota",
            "50%",
            "--restart-sec",
            "10s",
        ])
        .unwrap();
        let d = s.dropin();
        for line in [
            "Type=simple\n",
            "WatchdogSec=0\n",
            "User=jarvis-alpha\nGroup=jarvis-alpha\n",
            "WorkingDirectory=/srv/gateway\n",
            "EnvironmentFile=/etc/jarvis-supervisor/alpha.env\n",
            "ExecStart=\nExecStart=/usr/bin/jarvisctl venv exec -- bots/alpha/alpha_telegram_bot.py\n",
            "ReadWritePaths=/srv/gateway\n",
            "MemoryMax=512M\nCPUQuota=50%\nRestartSec=10s\n",
        ] {
            assert!(d.contains(line), "{line:?} missing in:\n{d}");
        }
        // The same drop-in, read back through the template, as systemd would.
        let u = through_template(&d, "alpha");
        assert_eq!(u.user(), "jarvis-alpha");
        assert_eq!(u.last("Service", "Type").as_deref(), Some("simple"));
        assert_eq!(u.last("Service", "CPUQuota").as_deref(), Some("50%"));
        assert_eq!(
            u.last("Service", "RuntimeDirectory").as_deref(),
            Some("jarvis-supervisor@alpha")
        );
        assert_eq!(
            u.exec_start(),
            [
                "/usr/bin/jarvisctl",
                "venv",
                "exec",
                "--",
                "bots/alpha/alpha_telegram_bot.py"
            ]
        );
        assert!(u.warnings.is_empty(), "{:?}", u.warnings);
    }

    #[test]
    fn a_notify_module_with_its_python_and_watchdog() {
        let s = spec(&[
            "treasury",
            "--code-root",
            "/home/jarvis/Jarvis",
            "--module",
            "bots.treasury.main",
            "--python",
            "/opt/py/bin/python3.12",
            "--watchdog-sec",
            "60s",
        ])
        .unwrap();
        let d = s.dropin();
        assert!(
            d.contains("Type=notify\nNotifyAccess=main\nWatchdogSec=60s\n"),
            "{d}"
        );
        assert!(
            d.contains("ExecStart=/opt/py/bin/python3.12 -B -m bots.treasury.main\n"),
            "{d}"
        );
    }

    /// `d` as systemd reads it: instance `name`'s drop-in, through the
    /// shipped template.
    fn through_template(d: &str, name: &str) -> Unit {
        let root = tempfile::tempdir().unwrap();
        let lib = root.path().join("usr/lib/systemd/system");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/systemd/group/jarvis-supervisor@.service"
            ),
            lib.join("jarvis-supervisor@.service"),
        )
        .unwrap();
        let dir = root
            .path()
            .join(format!("etc/systemd/system/jarvis-supervisor@{name}.service.d"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(DROPIN), d).unwrap();
        Unit::load_named(
            &Paths::rooted(root.path()),
            &format!("jarvis-supervisor@{name}.service"),
        )
        .unwrap()
    }

    #[test]
    fn the_add_command_that_check_and_configure_give_writes_the_same_drop_in_again() {
        let x: InstanceName = "x".parse().unwrap();
        for args in [
            &[
                "x",
                "--code-root",
                "/srv/gateway",
                "--script",
                "bots/a.py",
                "--type",
                "simple",
            ][..],
            &[
                "x",
                "--code-root",
                "/srv/g",
                "--module",
                "bots.t",
                "--python",
                "/opt/py/bin/python3",
                "--user",
                "nobody",
                "--env-file",
                "/etc/jarvis-supervisor/x.env",
                "--env-file",
                "/etc/jarvis-supervisor/shared.env",
                "--memory-max",
                "512M",
                "--cpu-quota",
                "50%",
                "--restart-sec",
                "10s",
                "--watchdog-sec",
                "60s",
            ][..],
        ] {
            let s = spec(args).unwrap();
            let cmd = add_command(&x, &through_template(&s.dropin(), "x"), None, None);
            let words: Vec<&str> = cmd.split_whitespace().collect();
            assert_eq!(words[..4], ["sudo", "jarvisctl", "instance", "add"], "{cmd}");
            let again = spec(&words[4..]).unwrap();
            assert_eq!(again.dropin(), s.dropin(), "{cmd}");
        }
        // A new code root, and back to the venv or the system's python3.
        let s = spec(&[
            "x",
            "--code-root",
            "/srv/g",
            "--script",
            "a.py",
            "--python",
            "/opt/py",
        ])
        .unwrap();
        let cmd = add_command(
            &x,
            &through_template(&s.dropin(), "x"),
            Some(Path::new("/srv/new")),
            Some("auto"),
        );
        assert!(
            cmd.ends_with("instance add x --code-root /srv/new --script a.py"),
            "{cmd}"
        );
        // A setting instance add has no flag for is named, not dropped unsaid.
        let mut s = spec(&["x", "--code-root", "/srv/g", "--script", "a.py"]).unwrap();
        s.extra.push(("TasksMax".into(), "64".into()));
        let cmd = add_command(&x, &through_template(&s.dropin(), "x"), None, None);
        assert!(cmd.contains("it has no flag for TasksMax=64"), "{cmd}");
    }

    #[test]
    fn every_value_that_would_break_the_unit_file_is_refused_by_its_flag() {
        for (args, flag) in [
            (
                vec!["Bad", "--code-root", "/srv/x", "--script", "a.py"],
                "instance name",
            ),
            (
                vec!["a", "--code-root", "srv/x", "--script", "a.py"],
                "--code-root",
            ),
            (
                vec!["a", "--code-root", "/srv/x y", "--script", "a.py"],
                "--code-root",
            ),
            (
                vec!["a", "--code-root", "/srv/x", "--script", "../etc/a.py"],
                "--script",
            ),
            (
                vec!["a", "--code-root", "/srv/x", "--script", "/srv/other/a.py"],
                "--script",
            ),
            (
                vec!["a", "--code-root", "/srv/x", "--module", "os;rm"],
                "--module",
            ),
            (
                vec![
                    "a",
                    "--code-root",
                    "/srv/x",
                    "--script",
                    "a.py",
                    "--memory-max",
                    "1G\nUser=root",
                ],
                "--memory-max",
            ),
            (
                vec!["a", "--code-root", "/srv/x", "--script", "a.py", "--user", "root"],
                "--user",
            ),
            (
                vec![
                    "a",
                    "--code-root",
                    "/srv/x",
                    "--script",
                    "a.py",
                    "--env-file",
                    "rel.env",
                ],
                "--env-file",
            ),
        ] {
            let e = spec(&args).unwrap_err().to_string();
            assert!(e.contains(flag), "{args:?}: {e}");
        }
        // A script and a module at once, or neither: clap refuses.
        assert!(spec(&["a", "--code-root", "/srv/x"]).is_err());
        assert!(spec(&["a", "--code-root", "/srv/x", "--script", "a.py", "--module", "m"]).is_err());
    }
}
