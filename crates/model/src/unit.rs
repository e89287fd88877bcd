//! Reads the installed unit and its drop-ins the way systemd does, so that
//! `setup` and `check` take paths and the user from the one source of truth
//! instead of hardcoding them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::paths::{Paths, UNIT};

#[derive(Debug, Clone)]
struct Entry {
    section: String,
    key: String,
    value: String,
    /// Where it was set: `FILE:LINE`.
    origin: String,
}

/// One unit: the main file followed by its drop-ins, in the order systemd
/// applies them.
#[derive(Debug, Default)]
pub struct Unit {
    entries: Vec<Entry>,
    /// Lines systemd ignores with a warning (no '=', outside a section):
    /// ignored here too, and reported by `check`, never fatal.
    pub warnings: Vec<String>,
    /// The unit file that masks the unit (a link to /dev/null), if any:
    /// systemd then refuses every start.
    pub masked: Option<PathBuf>,
}

impl Unit {
    /// Load `jarvis-supervisor.service` and its drop-ins from the unit
    /// directories of `paths`.
    pub fn load(paths: &Paths) -> Result<Unit> {
        Self::load_named(paths, UNIT)
    }

    /// Load the unit `name` (for example `jarvis-supervisor.service`) and
    /// its drop-ins, as systemd would.
    pub fn load_named(paths: &Paths, name: &str) -> Result<Unit> {
        let dirs = paths.unit_dirs();
        // A link to /dev/null in a unit directory masks the unit.
        let masked = dirs.iter().rev().map(|d| d.join(name)).find(|p| {
            fs::read_link(p).is_ok_and(|t| t == Path::new("/dev/null"))
                || fs::metadata(p).is_ok_and(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_char_device()
                })
        });
        let main = dirs
            .iter()
            .rev()
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::new(format!(
                    "the unit {name} is not installed (looked in {})",
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .with_note("reinstall the package: apt install --reinstall jarvis-supervisor")
            })?;
        // Drop-ins: one per file name, a later directory overriding an
        // earlier one, applied in file-name order.
        let mut dropins: BTreeMap<String, PathBuf> = BTreeMap::new();
        for dir in &dirs {
            let d = dir.join(format!("{name}.d"));
            let Ok(read) = fs::read_dir(&d) else { continue };
            for entry in read.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".conf") {
                    dropins.insert(name, entry.path());
                }
            }
        }
        let mut unit = Unit {
            masked,
            ..Unit::default()
        };
        unit.add_file(&main)?;
        for path in dropins.values() {
            unit.add_file(path)?;
        }
        Ok(unit)
    }

    /// Load `file` and its drop-ins `file.d/*.conf` (in name order): what
    /// `jarvisctl run --unit FILE` reads instead of the installed unit.
    pub fn load_file(file: &Path) -> Result<Unit> {
        let mut unit = Unit::default();
        unit.add_file(file)?;
        let mut dir = file.as_os_str().to_owned();
        dir.push(".d");
        if let Ok(read) = fs::read_dir(PathBuf::from(dir)) {
            let mut dropins: Vec<PathBuf> = read
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect();
            dropins.sort();
            for path in dropins {
                unit.add_file(&path)?;
            }
        }
        Ok(unit)
    }

    /// Every `(section, key)` set anywhere, first occurrence order, once each.
    pub fn keys(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for e in &self.entries {
            if !out.iter().any(|(s, k)| *s == e.section && *k == e.key) {
                out.push((e.section.clone(), e.key.clone()));
            }
        }
        out
    }

    /// Parse one file and append its settings.
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let text = fs::read_to_string(path).map_err(|e| Error::io("read unit file", path, e))?;
        self.add_text(path, &text)
    }

    fn add_text(&mut self, path: &Path, text: &str) -> Result<()> {
        let mut section = String::new();
        let mut pending: Option<(usize, String)> = None;
        for (idx, raw) in text.lines().enumerate() {
            let lineno = idx + 1;
            let line = raw.trim();
            if let Some((start, mut acc)) = pending.take() {
                // Comment lines inside a continuation are skipped, as systemd does.
                if line.starts_with('#') || line.starts_with(';') {
                    pending = Some((start, acc));
                    continue;
                }
                if let Some(cont) = line.strip_suffix('\\') {
                    acc.push(' ');
                    acc.push_str(cont.trim());
                    pending = Some((start, acc));
                    continue;
                }
                acc.push(' ');
                acc.push_str(line);
                self.push(path, start, &section, &acc)?;
                continue;
            }
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                if !line.ends_with(']') {
                    return Err(Error::config(
                        path,
                        lineno,
                        "section header without a closing ']'",
                    ));
                }
                section = line[1..line.len() - 1].to_string();
                continue;
            }
            if let Some(cont) = line.strip_suffix('\\') {
                pending = Some((lineno, cont.trim().to_string()));
                continue;
            }
            self.push(path, lineno, &section, line)?;
        }
        if let Some((start, acc)) = pending {
            self.push(path, start, &section, &acc)?;
        }
        Ok(())
    }

    fn push(&mut self, path: &Path, lineno: usize, section: &str, line: &str) -> Result<()> {
        // As systemd: warn and ignore the line (the line itself is not
        // shown: it may be a value pasted without its key).
        let Some((key, value)) = line.split_once('=') else {
            self.warnings.push(format!(
                "{}:{lineno}: a line without '=' (systemd ignores it too)",
                path.display()
            ));
            return Ok(());
        };
        if section.is_empty() {
            self.warnings.push(format!(
                "{}:{lineno}: a setting outside of a [Section] (systemd ignores it too)",
                path.display()
            ));
            return Ok(());
        }
        self.entries.push(Entry {
            section: section.to_string(),
            key: key.trim().to_string(),
            value: value.trim().to_string(),
            origin: format!("{}:{lineno}", path.display()),
        });
        Ok(())
    }

    /// Every assignment of a list setting, an empty one resetting the list.
    pub fn values(&self, section: &str, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self
            .entries
            .iter()
            .filter(|e| e.section == section && e.key == key)
        {
            if e.value.is_empty() {
                out.clear();
            } else {
                out.push(e.value.clone());
            }
        }
        out
    }

    /// Each value of a setting that is in effect, with the `FILE:LINE`
    /// that set it (an empty assignment resets a list, as in systemd).
    pub fn origins(&self, section: &str, key: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for e in self
            .entries
            .iter()
            .filter(|e| e.section == section && e.key == key)
        {
            if e.value.is_empty() {
                out.clear();
            } else {
                out.push((e.value.clone(), e.origin.clone()));
            }
        }
        out
    }

    /// The value that wins for a single-valued setting.
    pub fn last(&self, section: &str, key: &str) -> Option<String> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.section == section && e.key == key)
            .map(|e| e.value.clone())
            .filter(|v| !v.is_empty())
    }

    /// A space-separated list setting (ReadWritePaths=, ...), split into words.
    pub fn words(&self, section: &str, key: &str) -> Vec<String> {
        self.values(section, key)
            .iter()
            .flat_map(|v| split_words(v))
            .collect()
    }

    /// The service user (`User=`), root when unset.
    pub fn user(&self) -> String {
        self.last("Service", "User").unwrap_or_else(|| "root".to_string())
    }

    pub fn group(&self) -> Option<String> {
        self.last("Service", "Group")
    }

    /// `ReadWritePaths=` entries; `optional` is true for a `-` prefix.
    pub fn read_write_paths(&self) -> Vec<ServicePath> {
        self.words("Service", "ReadWritePaths")
            .iter()
            .map(|w| ServicePath::parse(w))
            .collect()
    }

    /// The bot's logs directory: the `ReadWritePaths=` entry named logs
    /// (`status` sizes it, `logs` reads it).
    pub fn logs_dir(&self) -> Option<PathBuf> {
        self.read_write_paths()
            .into_iter()
            .map(|p| p.path)
            .find(|p| p.ends_with("logs"))
    }

    pub fn working_directory(&self) -> Option<ServicePath> {
        self.last("Service", "WorkingDirectory")
            .map(|w| ServicePath::parse(&w))
    }

    pub fn environment_files(&self) -> Vec<ServicePath> {
        self.values("Service", "EnvironmentFile")
            .iter()
            .map(|w| ServicePath::parse(w))
            .collect()
    }

    /// The argv of `ExecStart=`, without systemd's prefix characters.
    pub fn exec_start(&self) -> Vec<String> {
        let Some(v) = self.last("Service", "ExecStart") else {
            return Vec::new();
        };
        let mut words = split_words(&v);
        if let Some(first) = words.first_mut() {
            *first = first.trim_start_matches(['-', '@', ':', '+', '!']).to_string();
        }
        words
    }
}

/// A path setting with systemd's `-` (ignore if missing) prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePath {
    pub path: PathBuf,
    pub optional: bool,
}

impl ServicePath {
    fn parse(word: &str) -> Self {
        let mut w = word;
        let mut optional = false;
        // `-` = optional, `+` = relative to RootDirectory (none here), `~` = home.
        while let Some(rest) = w.strip_prefix(['-', '+']) {
            optional |= w.starts_with('-');
            w = rest;
        }
        ServicePath {
            path: PathBuf::from(w),
            optional,
        }
    }
}

/// Split on whitespace, honouring double and single quotes.
pub fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(texts: &[&str]) -> Unit {
        let mut u = Unit::default();
        for (i, t) in texts.iter().enumerate() {
            u.add_text(Path::new(&format!("file{i}")), t).unwrap();
        }
        u
    }

    #[test]
    fn dropin_overrides_and_empty_assignment_resets_lists() {
        let u = unit(&[
            "[Service]\nUser=jarvis\nReadWritePaths=/a /b\nReadWritePaths=-/c\n",
            "[Service]\nUser=other\nReadWritePaths=\nReadWritePaths=/d \"/e f\"\n",
        ]);
        assert_eq!(u.user(), "other");
        let paths: Vec<_> = u.read_write_paths().into_iter().map(|p| p.path).collect();
        assert_eq!(paths, vec![PathBuf::from("/d"), PathBuf::from("/e f")]);
    }

    #[test]
    fn optional_prefix_and_continuation_lines() {
        let u = unit(&["[Service]\nReadWritePaths=/a \\\n# note\n  -/b\nExecStart=-/usr/bin/python3 x.py\n"]);
        let rw = u.read_write_paths();
        assert_eq!(rw.len(), 2);
        assert!(!rw[0].optional);
        assert!(rw[1].optional && rw[1].path == Path::new("/b"));
        assert_eq!(u.exec_start(), vec!["/usr/bin/python3", "x.py"]);
    }

    #[test]
    fn a_bad_line_is_ignored_with_a_warning_naming_file_and_line() {
        let mut u = Unit::default();
        u.add_text(
            Path::new("/etc/x.conf"),
            "User=z\n[Service]\nUser=a\nbogus-secret\n",
        )
        .unwrap();
        assert_eq!(u.user(), "a");
        assert_eq!(u.warnings.len(), 2, "{:?}", u.warnings);
        assert!(u.warnings[0].starts_with("/etc/x.conf:1:"), "{:?}", u.warnings);
        assert!(u.warnings[1].starts_with("/etc/x.conf:4:"), "{:?}", u.warnings);
        assert!(!u.warnings.concat().contains("bogus"), "the line is echoed");
        // An unclosed section header still stops: systemd rejects the file.
        assert!(u
            .add_text(Path::new("/etc/y.conf"), "[Service\n")
            .unwrap_err()
            .to_string()
            .contains("/etc/y.conf:1"));
    }
}
