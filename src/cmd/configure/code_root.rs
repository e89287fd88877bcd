//! `configure --code-root DIR` / `--python PATH` / `--show`: a host whose
//! code lives elsewhere. Every setting that depends on the code root is
//! rewritten in one drop-in of ours, computed from the unit without it, and
//! the shipped logrotate stanzas are copied with the new path into a
//! generated file; the shipped conffiles are never edited. Everything that
//! reads the unit (setup, check, status, run, deploy's probe) follows.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::systemctl;
use crate::dropin::plain_path;
use crate::dropin::write as write_atomic;
use crate::interpreter;
use jarvis_model::error::{Error, Result};
use jarvis_model::instance::Instance;
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

pub const DROPIN: &str = "/etc/systemd/system/jarvis-supervisor.service.d/60-jarvisctl-code-root.conf";
const LOGROTATE: &str = "/etc/logrotate.d/jarvis-code-root";
const SHIPPED_LOGROTATE: [&str; 2] = ["/etc/logrotate.d/jarvis", "/etc/logrotate.d/jarvis-fallback"];

/// `value` with the `old` root replaced by `new` where it starts with it
/// (after an optional `-` prefix), else unchanged.
fn moved(value: &str, old: &Path, new: &Path) -> String {
    let (dash, rest) = value.strip_prefix('-').map_or(("", value), |r| ("-", r));
    match Path::new(rest).strip_prefix(old) {
        Ok(tail) if tail.as_os_str().is_empty() => format!("{dash}{}", new.display()),
        Ok(tail) => format!("{dash}{}", new.join(tail).display()),
        Err(_) => value.to_string(),
    }
}

/// The drop-in for `new` (and `python`), from the unit without our drop-in.
fn dropin(base: &Unit, old: &Path, new: &Path, python: Option<&Path>) -> String {
    let mut out = String::from(
        "# Written by jarvisctl configure --code-root/--python: every setting that\n\
         # depends on them. Change it with jarvisctl configure, not by hand.\n[Service]\n",
    );
    out += &format!("WorkingDirectory={}\n", new.display());
    for env in base.values("Service", "Environment") {
        if env.contains(&*old.to_string_lossy()) {
            let words: Vec<String> = jarvis_model::unit::split_words(&env)
                .iter()
                .map(|w| match w.split_once('=') {
                    Some((k, v)) => format!("{k}={}", moved(v, old, new)),
                    None => w.clone(),
                })
                .collect();
            out += &format!("Environment={}\n", words.join(" "));
        }
    }
    for key in ["EnvironmentFile", "ReadWritePaths"] {
        out += &format!("{key}=\n");
        for v in base.values("Service", key) {
            let words: Vec<String> = jarvis_model::unit::split_words(&v)
                .iter()
                .map(|w| moved(w, old, new))
                .collect();
            out += &format!("{key}={}\n", words.join(" "));
        }
    }
    let exec = base.exec_start();
    let args: Vec<String> = match interpreter::launcher_args(&exec) {
        Some(a) => a.to_vec(),
        None => exec.iter().skip(1).cloned().collect(),
    };
    let args: Vec<String> = args.iter().map(|a| moved(a, old, new)).collect();
    let start = match python {
        Some(p) => format!("{} {}", p.display(), args.join(" ")),
        None if interpreter::launcher_args(&exec).is_some() => {
            format!("{} venv exec -- {}", exec[0], args.join(" "))
        }
        None => format!("{} {}", exec.first().map_or("", String::as_str), args.join(" ")),
    };
    out += &format!("ExecStart=\nExecStart={start}\n");
    out
}

/// The python named by our drop-in now, if any (kept unless changed).
fn current_python(paths: &Paths, with_ours: &Unit) -> Option<PathBuf> {
    if !paths.host(Path::new(DROPIN)).exists() {
        return None;
    }
    let exec = with_ours.exec_start();
    interpreter::launcher_args(&exec)
        .is_none()
        .then(|| exec.first().map(PathBuf::from))
        .flatten()
}

pub fn set(paths: &Paths, code_root: Option<&Path>, python: Option<&str>) -> Result<()> {
    let new_root = code_root
        .map(|p| plain_path("--code-root", &p.to_string_lossy()))
        .transpose()?;
    let python = match python {
        None => None,
        Some("auto") => Some(None),
        Some(p) => Some(Some(plain_path("--python", p)?)),
    };
    let ours = paths.host(Path::new(DROPIN));
    let with_ours = Unit::load(paths)?;
    let kept = std::fs::read_to_string(&ours).ok();
    // The unit as it is without our drop-in: the base to rewrite.
    if kept.is_some() {
        std::fs::remove_file(&ours).map_err(|e| Error::io("remove", &ours, e))?;
    }
    let base = Unit::load(paths);
    let restore = |e: Error| {
        if let Some(text) = &kept {
            let _ = write_atomic(&ours, text);
        }
        e
    };
    let base = base.map_err(restore)?;
    let old = base.working_directory().map(|w| w.path).ok_or_else(|| {
        restore(Error::new(
            "the unit has no WorkingDirectory=: no code root to move",
        ))
    })?;
    let current_root = with_ours
        .working_directory()
        .map(|w| w.path)
        .unwrap_or_else(|| old.clone());
    let new = new_root.unwrap_or(current_root);
    let python = match python {
        Some(p) => p,
        None => current_python(paths, &with_ours),
    };
    let logrotate = paths.host(Path::new(LOGROTATE));
    if new == old && python.is_none() {
        if logrotate.exists() {
            std::fs::remove_file(&logrotate).map_err(|e| Error::io("remove", &logrotate, e))?;
        }
        println!(
            "code root {} and the interpreter rule are the unit's own: {DROPIN} removed",
            new.display()
        );
    } else {
        write_atomic(&ours, &dropin(&base, &old, &new, python.as_deref())).map_err(restore)?;
        println!(
            "wrote {DROPIN}: code root {}{}",
            new.display(),
            match &python {
                Some(p) => format!(", interpreter {}", p.display()),
                None => String::new(),
            }
        );
        if new == old {
            let _ = std::fs::remove_file(&logrotate);
        } else {
            write_logrotate(paths, &old, &new)?;
        }
    }
    // Without a running systemd (sysvinit: jarvisctl run reads the unit
    // and its drop-ins at each start) there is nothing to reload.
    if crate::systemd::running() {
        systemctl(paths, &["daemon-reload"])?;
    }
    // The new root's directories, owned by the service user, one line per
    // change as `setup` prints them.
    for c in crate::provision::for_unit(paths)? {
        println!("{}", c.action);
    }
    let restart = if crate::systemd::running() {
        "sudo systemctl restart jarvis-supervisor"
    } else {
        "sudo service jarvis-supervisor restart"
    };
    println!(
        "the running bot is unchanged: restart to apply ({restart}); check it first: sudo jarvisctl check"
    );
    Ok(())
}

/// The shipped stanzas, with the old logs path moved to the new one.
fn write_logrotate(paths: &Paths, old: &Path, new: &Path) -> Result<()> {
    let mut out = format!(
        "# Written by jarvisctl configure --code-root: the shipped stanzas for {}.\n",
        new.display()
    );
    let (from, to) = (old.join("logs"), new.join("logs"));
    for f in SHIPPED_LOGROTATE {
        let text = std::fs::read_to_string(paths.host(Path::new(f))).unwrap_or_default();
        if text.is_empty() {
            continue;
        }
        out += &format!("# from {f}\n");
        out += &text.replace(&*from.to_string_lossy(), &to.to_string_lossy());
    }
    let path = paths.host(Path::new(LOGROTATE));
    write_atomic(&path, &out)?;
    println!("wrote {LOGROTATE}: log rotation for {}", to.display());
    Ok(())
}

#[derive(Serialize)]
struct Setting {
    key: String,
    value: String,
    from: String,
}

/// The settings in effect for `instance` and the file and line of each: a
/// named instance's come from the template and its drop-ins, and also say
/// its group and readiness type, which it chooses itself.
pub fn show(paths: &Paths, instance: &Instance, json: bool) -> Result<i32> {
    let unit = Unit::load_named(paths, &instance.unit())?;
    let named = *instance != Instance::Default;
    let mut out = Vec::new();
    let keys: &[&str] = if named {
        &[
            "Type",
            "User",
            "Group",
            "WorkingDirectory",
            "Environment",
            "EnvironmentFile",
            "ReadWritePaths",
            "ExecStart",
        ]
    } else {
        &[
            "User",
            "WorkingDirectory",
            "Environment",
            "EnvironmentFile",
            "ReadWritePaths",
            "ExecStart",
        ]
    };
    for &key in keys {
        let all = unit.origins("Service", key);
        // Single-valued settings: the last one wins.
        let shown = if matches!(key, "Type" | "User" | "Group" | "WorkingDirectory" | "ExecStart") {
            all.into_iter().last().into_iter().collect()
        } else {
            all
        };
        out.extend(shown.into_iter().map(|(value, from)| Setting {
            key: key.into(),
            value,
            from,
        }));
    }
    if let Some((chosen, _)) = interpreter::of_unit(paths, &unit) {
        out.push(Setting {
            key: "interpreter".into(),
            value: match chosen {
                Ok(i) => format!("{} ({})", i.path.display(), i.source.describe()),
                Err(why) => why,
            },
            from: "jarvisctl venv exec, at each start".into(),
        });
    }
    // The package's log rotation is the default's.
    for f in [LOGROTATE]
        .iter()
        .chain(SHIPPED_LOGROTATE.iter())
        .filter(|_| !named)
    {
        if paths.host(Path::new(f)).exists() {
            out.push(Setting {
                key: "logrotate".into(),
                value: f.to_string(),
                from: f.to_string(),
            });
        }
    }
    if json {
        println!("{}", serde_json::to_string(&out).unwrap_or_default());
    } else {
        println!("{}, as in effect:", instance.unit());
        for s in &out {
            println!("{}={}  ({})", s.key, crate::output::printable(&s.value), s.from);
        }
    }
    Ok(0)
}
