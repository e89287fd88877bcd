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
    /// its drop-ins, as systemd would. An instance (`p@i.service`) with no
    /// file of its own is made from its template (`p@.service`), with the
    /// template's drop-ins and then its own, and its specifiers (`%i`, `%n`,
    /// ...) filled in.
    pub fn load_named(paths: &Paths, name: &str) -> Result<Unit> {
        let dirs = paths.unit_dirs();
        let template = template_of(name);
        // A link to /dev/null in a unit directory masks the unit.
        let masked = dirs.iter().rev().map(|d| d.join(name)).find(|p| {
            fs::read_link(p).is_ok_and(|t| t == Path::new("/dev/null"))
                || fs::metadata(p).is_ok_and(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_char_device()
                })
        });
        let find = |n: &str| dirs.iter().rev().map(|d| d.join(n)).find(|p| p.is_file());
        let main = find(name)
            .or_else(|| template.as_deref().and_then(find))
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
        // earlier one (and in one directory, the instance's own overriding
        // its template's), applied in file-name order.
        let mut dropins: BTreeMap<String, PathBuf> = BTreeMap::new();
        for dir in &dirs {
            for n in template.iter().map(String::as_str).chain([name]) {
                let d = dir.join(format!("{n}.d"));
                let Ok(read) = fs::read_dir(&d) else { continue };
                for entry in read.flatten() {
                    let file = entry.file_name().to_string_lossy().into_owned();
                    if file.ends_with(".conf") {
                        dropins.insert(file, entry.path());
                    }
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
        unit.expand_specifiers(name);
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
        if let Some(name) = file.file_name().and_then(|n| n.to_str()) {
            unit.expand_specifiers(name);
        }
        Ok(unit)
    }

    /// Fills in the specifiers systemd fills in for the unit `name` (the
    /// instance's, the unit's names, the system manager's directories),
    /// in every setting. One it does not know here is left as written and
    /// named by `FILE:LINE` among the warnings, never with its value (an
    /// `Environment=` value may be a secret). A `%` with nothing known after
    /// it (`CPUQuota=90%`) is kept.
    fn expand_specifiers(&mut self, name: &str) {
        let s = Specifiers::of(name);
        for e in &mut self.entries {
            if !e.value.contains('%') {
                continue;
            }
            let (value, unknown) = s.expand(&e.value);
            e.value = value;
            for c in unknown {
                self.warnings.push(format!(
                    "{}: the specifier %{c} is not filled in without systemd: it is left as written",
                    e.origin
                ));
            }
        }
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

/// The template an instance is made from: `p@i.service` gives
/// `p@.service`; a unit that is no instance, none.
pub fn template_of(name: &str) -> Option<String> {
    let (prefix, rest) = name.split_once('@')?;
    let (instance, suffix) = rest.rsplit_once('.')?;
    (!instance.is_empty()).then(|| format!("{prefix}@.{suffix}"))
}

/// The values of systemd's unit-name specifiers for one unit
/// (systemd.unit(5), "Specifiers").
struct Specifiers {
    /// %n: the full name.
    full: String,
    /// %N: the name without its type suffix.
    bare: String,
    /// %p: the prefix (before `@`, or the bare name).
    prefix: String,
    /// %i: the instance (after `@`), empty when none.
    instance: String,
}

impl Specifiers {
    fn of(name: &str) -> Specifiers {
        let bare = name.rsplit_once('.').map_or(name, |(b, _)| b).to_string();
        let (prefix, instance) = match bare.split_once('@') {
            Some((p, i)) => (p.to_string(), i.to_string()),
            None => (bare.clone(), String::new()),
        };
        Specifiers {
            full: name.to_string(),
            bare,
            prefix,
            instance,
        }
    }

    /// `value` with every known specifier filled in; the letters of the
    /// ones not known here, in order.
    fn expand(&self, value: &str) -> (String, Vec<char>) {
        let mut out = String::with_capacity(value.len());
        let mut unknown = Vec::new();
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(&k) = chars.peek() else {
                out.push('%');
                continue;
            };
            let with = match k {
                '%' => "%".to_string(),
                'n' => self.full.clone(),
                'N' => self.bare.clone(),
                'p' => self.prefix.clone(),
                'P' => unescape(&self.prefix),
                'i' => self.instance.clone(),
                'I' => unescape(&self.instance),
                'j' => last_dash(&self.prefix).to_string(),
                'J' => unescape(last_dash(&self.prefix)),
                // The system manager's directories.
                't' => "/run".to_string(),
                'S' => "/var/lib".to_string(),
                'C' => "/var/cache".to_string(),
                'L' => "/var/log".to_string(),
                'E' => "/etc".to_string(),
                'T' => "/tmp".to_string(),
                'V' => "/var/tmp".to_string(),
                _ => {
                    if k.is_ascii_alphabetic() {
                        unknown.push(k);
                    }
                    out.push('%');
                    continue;
                }
            };
            chars.next();
            out.push_str(&with);
        }
        (out, unknown)
    }
}

/// The part after the prefix's last `-` (`%j`).
fn last_dash(prefix: &str) -> &str {
    prefix.rsplit_once('-').map_or(prefix, |(_, j)| j)
}

/// systemd's unit-name unescaping: `-` is `/`, `\xNN` a byte.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            out.push(b'/');
        } else if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            if let Some(n) = s.get(i + 2..i + 4).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(n);
                i += 4;
                continue;
            }
            out.push(b[i]);
        } else {
            out.push(b[i]);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

    #[test]
    fn an_instance_is_made_from_its_template_with_its_own_dropins_over_the_templates() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::rooted(root.path());
        let lib = root.path().join("usr/lib/systemd/system");
        let etc = root.path().join("etc/systemd/system");
        for d in [
            lib.clone(),
            lib.join("jarvis-supervisor@.service.d"),
            etc.join("jarvis-supervisor@.service.d"),
            etc.join("jarvis-supervisor@alpha.service.d"),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(
            lib.join("jarvis-supervisor@.service"),
            "[Unit]\nDescription=bot %i (%n, %N, %p)\n[Service]\nUser=jarvis-%i\n\
             RuntimeDirectory=jarvis-supervisor@%i\nLogsDirectory=%p/%i\nCPUQuota=50%\n\
             Environment=A=100%% B=%h\n",
        )
        .unwrap();
        fs::write(
            lib.join("jarvis-supervisor@.service.d/10-type.conf"),
            "[Service]\nType=notify\n",
        )
        .unwrap();
        // The same file name: the admin's directory wins, and in it the
        // instance's own over the template's.
        fs::write(
            etc.join("jarvis-supervisor@.service.d/20-x.conf"),
            "[Service]\nMemoryMax=1G\n",
        )
        .unwrap();
        fs::write(
            etc.join("jarvis-supervisor@alpha.service.d/20-x.conf"),
            "[Service]\nMemoryMax=512M\n",
        )
        .unwrap();
        fs::write(
            etc.join("jarvis-supervisor@alpha.service.d/30-code.conf"),
            "[Service]\nWorkingDirectory=/srv/%i\nExecStart=/usr/bin/python3 bots/%i/%i_telegram_bot.py\n",
        )
        .unwrap();

        let u = Unit::load_named(&paths, "jarvis-supervisor@alpha.service").unwrap();
        assert_eq!(
            u.last("Unit", "Description").unwrap(),
            "bot alpha (jarvis-supervisor@alpha.service, jarvis-supervisor@alpha, jarvis-supervisor)"
        );
        assert_eq!(u.user(), "jarvis-alpha");
        assert_eq!(
            u.last("Service", "RuntimeDirectory").unwrap(),
            "jarvis-supervisor@alpha"
        );
        assert_eq!(
            u.last("Service", "LogsDirectory").unwrap(),
            "jarvis-supervisor/alpha"
        );
        assert_eq!(u.last("Service", "Type").unwrap(), "notify");
        assert_eq!(u.last("Service", "MemoryMax").unwrap(), "512M");
        assert_eq!(u.last("Service", "CPUQuota").unwrap(), "50%");
        assert_eq!(u.working_directory().unwrap().path, Path::new("/srv/alpha"));
        assert_eq!(
            u.exec_start(),
            vec!["/usr/bin/python3", "bots/alpha/alpha_telegram_bot.py"]
        );
        // %h is the user's home, known only to systemd: kept, and named by
        // where it is, without the value around it.
        assert_eq!(u.last("Service", "Environment").unwrap(), "A=100% B=%h");
        assert_eq!(u.warnings.len(), 1, "{:?}", u.warnings);
        assert!(
            u.warnings[0].contains("jarvis-supervisor@.service:") && u.warnings[0].contains("%h"),
            "{:?}",
            u.warnings
        );
        assert!(!u.warnings[0].contains("A=100"), "{:?}", u.warnings);

        // Another instance shares the template, not alpha's drop-ins.
        let b = Unit::load_named(&paths, "jarvis-supervisor@beta.service").unwrap();
        assert_eq!(b.user(), "jarvis-beta");
        assert_eq!(b.last("Service", "MemoryMax").unwrap(), "1G");
        assert!(b.working_directory().is_none());
        // The template alone is no unit to run, and a unit of its own
        // name wins over the template.
        assert!(Unit::load_named(&paths, "jarvis-supervisor@.service").is_ok());
        fs::write(etc.join("jarvis-supervisor@gamma.service"), "[Service]\nUser=g\n").unwrap();
        assert_eq!(
            Unit::load_named(&paths, "jarvis-supervisor@gamma.service")
                .unwrap()
                .user(),
            "g"
        );
    }

    #[test]
    fn specifiers_unescape_and_a_plain_unit_keeps_its_percent_values() {
        let s = Specifiers::of("jarvis-bot@srv-a\\x2db.service");
        assert_eq!(
            s.expand("%i|%I|%p|%P|%j|%J|%t|%%i"),
            (
                "srv-a\\x2db|srv/a-b|jarvis-bot|jarvis/bot|bot|bot|/run|%i".to_string(),
                vec![]
            )
        );
        assert_eq!(s.expand("50% %u %"), ("50% %u %".to_string(), vec!['u']));
        assert_eq!(
            template_of("jarvis-supervisor@x.service").as_deref(),
            Some("jarvis-supervisor@.service")
        );
        assert_eq!(template_of("jarvis-supervisor@.service"), None);
        assert_eq!(template_of("jarvis-supervisor.service"), None);
    }
}
