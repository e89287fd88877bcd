//! Log rotation of the named instances (issue 26), in one generated file,
//! /etc/logrotate.d/jarvis-instances, rewritten whole from the installed
//! instances at each `instance add`, `remove`, `restore` and `import`:
//! - one stanza per code root for the program's own `logs/*.log` (the
//!   shipped /etc/logrotate.d/jarvis covers the default instance's root);
//! - one per instance for the output file its fallback engine writes
//!   (`logs/jarvis-supervisor@NAME.stdout`; absent under systemd).
//!
//! One file, so that a tree several instances share gets one stanza:
//! logrotate refuses a log named twice. logrotate runs as root, so every
//! path and name written here is checked to be plain first, and rotation
//! runs as the user that owns the logs (`su`), never as root.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::provision::{self, Change};
use jarvis_model::error::Result;
use jarvis_model::instance::Instance;
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

pub const FILE: &str = "/etc/logrotate.d/jarvis-instances";

/// What `refresh` did: the file's new text (None: removed, no named
/// instance), and one note per instance or tree it could not cover.
pub struct Refreshed {
    pub text: Option<String>,
    pub notes: Vec<String>,
}

/// A user or group name logrotate's `su` can take as it is.
fn plain_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && !n.starts_with('-')
}

/// Who rotates the files in `logs`: whoever owns it now (the program's
/// user, when its engine or program made it), root only where no one else
/// can write, never as root where a bot writes; `user`/`group` (the
/// instance's) while it does not exist yet. Err: why it is not rotated.
fn rotator(
    paths: &Paths,
    logs: &Path,
    user: &str,
    group: &str,
) -> std::result::Result<(String, String), String> {
    let m = match std::fs::symlink_metadata(paths.host(logs)) {
        Err(_) => return Ok((user.to_string(), group.to_string())),
        Ok(m) => m,
    };
    if !m.is_dir() {
        return Err(format!(
            "{}: not rotated: it is not a directory (a link?)",
            logs.display()
        ));
    }
    if m.uid() == 0 && m.mode() & 0o022 != 0 {
        return Err(format!(
            "{}: not rotated: root owns it and others can write it, and logrotate never rotates as root where a bot writes; give it to the bot's user: sudo chown {user}:{group} {}",
            logs.display(),
            logs.display()
        ));
    }
    match (provision::user_name(m.uid()), provision::group_name(m.gid())) {
        (Some(u), Some(g)) if plain_name(&u) && plain_name(&g) => Ok((u, g)),
        _ => Err(format!(
            "{}: not rotated: its owner {}:{} has no plain user and group name",
            logs.display(),
            m.uid(),
            m.gid()
        )),
    }
}

/// The text of the file for the instances installed in `paths`.
pub fn render(paths: &Paths) -> Refreshed {
    let default_root = Unit::load(paths)
        .ok()
        .and_then(|u| u.working_directory())
        .map(|w| w.path);
    let mut notes = Vec::new();
    // Code root -> the (user, group) of its first instance, and its
    // instances.
    let mut roots: BTreeMap<PathBuf, ((String, String), Vec<Instance>)> = BTreeMap::new();
    for name in Instance::installed(paths, false) {
        let instance = Instance::Named(name.clone());
        let unit = match Unit::load_named(paths, &instance.unit()) {
            Ok(u) => u,
            Err(e) => {
                notes.push(format!("{name}: its logs are not rotated: {e}"));
                continue;
            }
        };
        let Some(root) = unit.working_directory().map(|w| w.path) else {
            notes.push(format!(
                "{name}: its logs are not rotated: it has no WorkingDirectory="
            ));
            continue;
        };
        let root = match crate::dropin::plain_path("WorkingDirectory", &root.to_string_lossy()) {
            Ok(r) => r,
            Err(e) => {
                notes.push(format!("{name}: its logs are not rotated: {e}"));
                continue;
            }
        };
        let user = unit.user();
        let group = unit.group().unwrap_or_else(|| user.clone());
        if !plain_name(&user) || !plain_name(&group) {
            notes.push(format!(
                "{name}: its logs are not rotated: User={user:?}/Group={group:?} is not a plain name"
            ));
            continue;
        }
        roots
            .entry(root)
            .or_insert(((user, group), Vec::new()))
            .1
            .push(instance);
    }
    let mut out = String::new();
    for (root, ((user, group), instances)) in &roots {
        let logs = root.join("logs");
        let (u, g) = match rotator(paths, &logs, user, group) {
            Ok(ug) => ug,
            Err(note) => {
                notes.push(note);
                continue;
            }
        };
        if Some(root) != default_root.as_ref() {
            out.push_str(&tree_stanza(&logs, &u, &g));
        }
        for i in instances {
            out.push_str(&capture_stanza(i, &logs, &u, &g));
        }
    }
    if out.is_empty() {
        return Refreshed { text: None, notes };
    }
    let text = format!(
        "# Written by jarvisctl (instance add, remove, restore; import) from the\n\
         # named instances: do not edit, it is rewritten. The default instance's\n\
         # logs are in /etc/logrotate.d/jarvis and jarvis-fallback.\n{out}"
    );
    Refreshed {
        text: Some(text),
        notes,
    }
}

/// The program's own log files of a tree: copied then truncated, as the
/// shipped stanza does (the program holds them open, with no SIGHUP).
fn tree_stanza(logs: &Path, user: &str, group: &str) -> String {
    format!(
        "{}/*.log {{\n    su {user} {group}\n    daily\n    rotate 7\n    compress\n    delaycompress\n    missingok\n    notifempty\n    copytruncate\n}}\n",
        logs.display()
    )
}

/// The fallback engine's output file of one instance: renamed, then its
/// engine told to reopen it (SIGHUP to its pid file's pid, only if that
/// pid is jarvisctl), as the shipped jarvis-fallback does for the default.
/// The engine makes the new file itself, with the instance's owner.
fn capture_stanza(instance: &Instance, logs: &Path, user: &str, group: &str) -> String {
    let file = logs.join(jarvis_engine::logsink::output_file(instance));
    let pidfile = instance.engine_dir().join(jarvis_engine::PID_FILE);
    format!(
        "{} {{\n    su {user} {group}\n    daily\n    rotate 7\n    compress\n    delaycompress\n    missingok\n    notifempty\n    postrotate\n        pid=$(cat {} 2>/dev/null) || exit 0\n        [ \"$(cat /proc/\"$pid\"/comm 2>/dev/null)\" = jarvisctl ] && kill -HUP \"$pid\" || true\n    endscript\n}}\n",
        file.display(),
        pidfile.display()
    )
}

/// Rewrites (or removes) the file for the instances installed now, and
/// says so as changes: the file, then each instance or tree not covered.
pub fn refresh(paths: &Paths) -> Result<Vec<Change>> {
    let path = paths.host(Path::new(FILE));
    if !path.parent().is_some_and(Path::is_dir) {
        // No logrotate (the package depends on it): nothing would read it.
        return Ok(vec![Change {
            target: FILE.to_string(),
            action: "warning: /etc/logrotate.d is missing (is logrotate installed?): the named instances' logs are not rotated".to_string(),
        }]);
    }
    let r = render(paths);
    let now = std::fs::read_to_string(&path).ok();
    let mut changes = Vec::new();
    match &r.text {
        Some(t) if now.as_deref() != Some(t.as_str()) => {
            crate::dropin::write(&path, t)?;
            changes.push(Change {
                target: FILE.to_string(),
                action: format!("wrote {FILE}: log rotation of the named instances"),
            });
        }
        None if now.is_some() => {
            std::fs::remove_file(&path).map_err(|e| jarvis_model::error::Error::io("remove", &path, e))?;
            changes.push(Change {
                target: FILE.to_string(),
                action: format!("removed {FILE}: no named instance left"),
            });
        }
        _ => {}
    }
    changes.extend(r.notes.into_iter().map(|n| Change {
        target: FILE.to_string(),
        action: format!("warning: {n}"),
    }));
    Ok(changes)
}
