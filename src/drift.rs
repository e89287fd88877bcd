//! Shipped files that changed on the host since the deploy in effect, and
//! importable code that no deploy shipped. The service must be able to
//! write `bots/` (its components keep state there), so it can also rewrite
//! its own code or add to it; rather than forbid what the program needs,
//! `status` and `check` compare the live code with the manifest of the
//! deploy in effect (`jarvisctl deploy`'s history) and name what differs.
//! Files are opened through `untrusted` and read no further than the
//! manifest's size plus one byte: the code root is the service user's, and
//! these commands run as root.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::dir::{Dir, Type};
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use serde::Serialize;

use jarvis_model::manifest::{hash_at_most, Kind, Manifest, SKIP_TOP};
use jarvis_model::paths::Paths;

/// The deploy history on a host, and the digests its worker keeps (see
/// `deploy/host_paths.rs`).
const DEPLOYS: &str = "/var/lib/jarvis-supervisor/deploys";
const HASHES: &str = "/var/lib/jarvis-supervisor/deploy-hashes.json";

/// What Python imports: source, byte code (also from `__pycache__`), the
/// path files that `site` runs, and extension modules.
const IMPORTABLE: &[&str] = &[".py", ".pyc", ".pth", ".so"];
/// The search for unshipped code stops here, and says so: a tree of the
/// service user's can be made as large or as deep as it likes.
const WALK_MAX_ENTRIES: usize = 100_000;
const WALK_MAX_DEPTH: usize = 32;
/// Unshipped files named one by one; the rest are counted.
const LISTED_MAX: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    /// A shipped file whose content differs.
    Changed,
    Missing,
    NotRegular,
    /// Importable code (or a link an import can follow) that no deploy shipped.
    Unshipped,
    /// A directory the search for unshipped code did not finish.
    Unsearched,
}

impl What {
    pub fn as_str(self) -> &'static str {
        match self {
            What::Changed => "changed",
            What::Missing => "missing",
            What::NotRegular => "not a regular file",
            What::Unshipped => "importable, no deploy shipped it",
            What::Unsearched => "not searched to the end: too many entries or too deep",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub path: String,
    pub what: What,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The deploy whose manifest was compared.
    pub deploy: String,
    /// Shipped files checked.
    pub files: usize,
    /// Shipped files that differ, then unshipped code (the first
    /// `LISTED_MAX`), then where the search stopped.
    pub changed: Vec<Changed>,
    /// Unshipped code found beyond the listed.
    pub unshipped_more: usize,
}

impl Changed {
    pub fn describe(&self) -> String {
        format!("{} ({})", self.path, self.what.as_str())
    }
}

/// None when no deploy is in effect (code installed by hand) or its
/// manifest cannot be read (not root).
pub fn check(paths: &Paths, code_root: &Path) -> Option<Drift> {
    let deploys = paths.host(Path::new(DEPLOYS));
    let id = std::fs::read_to_string(deploys.join("current")).ok()?;
    let id = id.trim();
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return None;
    }
    let text = std::fs::read_to_string(deploys.join(id).join("manifest.tsv")).ok()?;
    let manifest = Manifest::parse(&text).ok()?;
    let root = paths.host(code_root);
    let kept = kept_digests(&paths.host(Path::new(HASHES)), code_root);
    let mut out = Drift {
        deploy: id.to_string(),
        ..Drift::default()
    };
    // The tree's directories opened once each, not a walk from / per file.
    let mut below = jarvis_model::untrusted::Below::new(&root);
    for e in manifest.entries.iter().filter(|e| e.kind == Kind::File) {
        out.files += 1;
        let opened = match below.as_mut() {
            Ok(b) => b.open_read(&e.path, None),
            Err(err) => Err(std::io::Error::new(err.kind(), err.to_string())),
        };
        let what = match opened {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Some(What::Missing),
            Err(_) => Some(What::NotRegular),
            Ok(f) => match f.metadata() {
                Ok(m) if m.len() != e.size => Some(What::Changed),
                Ok(m) if kept.get(&e.path).is_some_and(|k| k.matches(&m)) => {
                    (kept[&e.path].sha != e.sha).then_some(What::Changed)
                }
                // It may grow after that look: bigger than shipped is changed.
                Ok(_) => match hash_at_most(f, e.size) {
                    Ok(Some(sha)) if sha == e.sha => None,
                    Ok(_) => Some(What::Changed),
                    Err(_) => Some(What::NotRegular),
                },
                Err(_) => Some(What::NotRegular),
            },
        };
        if let Some(what) = what {
            out.changed.push(Changed {
                path: e.path.clone(),
                what,
            });
        }
    }
    let shipped: HashSet<&str> = manifest.files().map(|e| e.path.as_str()).collect();
    let walk = Walk::search(&root, &shipped, WALK_MAX_ENTRIES, WALK_MAX_DEPTH);
    out.changed.extend(walk.found.into_iter().map(|path| Changed {
        path,
        what: What::Unshipped,
    }));
    out.unshipped_more = walk.more;
    out.changed.extend(walk.stopped.into_iter().map(|path| Changed {
        path: if path.is_empty() { ".".into() } else { path },
        what: What::Unsearched,
    }));
    Some(out)
}

/// A live file's digest as the deploy's worker kept it, with the inode's
/// identity and times when it was read (python/deploy_host.py `Tree`).
struct Kept {
    key: [i64; 5],
    sha: String,
}

impl Kept {
    /// The file is the one read then, unchanged: same inode, size, mtime and
    /// ctime (which its owner cannot set back).
    fn matches(&self, m: &std::fs::Metadata) -> bool {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        [
            m.dev() as i64,
            m.ino() as i64,
            m.len() as i64,
            ns(m.mtime(), m.mtime_nsec()),
            ns(m.ctime(), m.ctime_nsec()),
        ] == self.key
    }
}

/// The digests the deploy's worker kept for `code_root`, read only from a
/// root-owned file no one else can write (root's own record: a forged one
/// would hide a change); none otherwise, and every file is read.
fn kept_digests(path: &Path, code_root: &Path) -> HashMap<String, Kept> {
    let Ok(f) = jarvis_model::untrusted::open_read(path, None) else {
        return HashMap::new();
    };
    match f.metadata() {
        Ok(m) if m.uid() == 0 && m.permissions().mode() & 0o022 == 0 => {}
        _ => return HashMap::new(),
    }
    // Read whole, then parsed: serde_json reads an unbuffered file a byte
    // per read(2), and this file is ~160 bytes per shipped file.
    let mut text = Vec::new();
    if std::io::Read::read_to_end(&mut std::io::Read::take(f, 64 << 20), &mut text).is_err() {
        return HashMap::new();
    }
    let Ok(all) = serde_json::from_slice::<HashMap<String, HashMap<String, serde_json::Value>>>(&text) else {
        return HashMap::new();
    };
    let root = code_root.to_string_lossy();
    let Some(files) = all
        .get(root.trim_end_matches('/'))
        .or_else(|| all.get(root.as_ref()))
    else {
        return HashMap::new();
    };
    files
        .iter()
        .filter_map(|(rel, v)| {
            let v = v.as_array().filter(|v| v.len() == 6)?;
            let mut key = [0i64; 5];
            for (k, x) in key.iter_mut().zip(v) {
                *k = x.as_i64()?;
            }
            let sha = v[5].as_str()?.to_string();
            Some((rel.clone(), Kept { key, sha }))
        })
        .collect()
}

/// The search for importable code that no deploy shipped, in the code
/// directories: the code root but its runtime data (`logs/`, `data/`,
/// `.lifeos/`) and its virtual environments (`venv/` and the like: the
/// service user builds them, so everything in them is the user's, `.pth`
/// files included). Directories are opened from their parent's descriptor
/// with `O_NOFOLLOW`; links are named, never followed; nothing is read.
struct Walk<'a> {
    shipped: &'a HashSet<&'a str>,
    max_entries: usize,
    max_depth: usize,
    entries: usize,
    found: Vec<String>,
    more: usize,
    /// Directories not searched to the end.
    stopped: Vec<String>,
}

impl<'a> Walk<'a> {
    fn search(root: &Path, shipped: &'a HashSet<&'a str>, max_entries: usize, max_depth: usize) -> Walk<'a> {
        let mut walk = Walk {
            shipped,
            max_entries,
            max_depth,
            entries: 0,
            found: Vec::new(),
            more: 0,
            stopped: Vec::new(),
        };
        match jarvis_model::untrusted::open_dir(root) {
            Ok(dir) => walk.dir(OwnedFd::from(dir), "", 0),
            Err(_) => walk.stopped.push(String::new()),
        }
        walk
    }

    fn dir(&mut self, fd: OwnedFd, rel: &str, depth: usize) {
        let Some(mut list) = fd.try_clone().ok().and_then(|f| Dir::from_fd(f).ok()) else {
            self.stop(rel.to_string());
            return;
        };
        for entry in list.iter() {
            let Ok(entry) = entry else {
                self.stop(rel.to_string());
                return;
            };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            self.entries += 1;
            if self.entries > self.max_entries {
                self.stop(rel.to_string());
                return;
            }
            let name = String::from_utf8_lossy(name);
            if name == ".git" || (rel.is_empty() && SKIP_TOP.contains(&name.as_ref())) {
                continue;
            }
            let path = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type().or_else(|| kind_at(&fd, entry.file_name()));
            match kind {
                Some(Type::Directory) if depth + 1 > self.max_depth => self.stop(path),
                Some(Type::Directory) => {
                    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                    // Gone or swapped for a link since the listing: nothing to search.
                    if let Ok(sub) = openat(fd.as_fd(), entry.file_name(), flags, Mode::empty()) {
                        self.dir(sub, &path, depth + 1);
                        if self.entries > self.max_entries {
                            return;
                        }
                    }
                }
                // A shipped path that is not a regular file is named already.
                _ if self.shipped.contains(path.as_str()) => {}
                // Python follows links on import; a deploy never ships one.
                Some(Type::Symlink) => self.note(path),
                _ if IMPORTABLE.iter().any(|x| name.ends_with(x)) => self.note(path),
                _ => {}
            }
        }
    }

    /// The first few places where the search stopped: enough to say so.
    fn stop(&mut self, path: String) {
        if self.stopped.len() < 10 {
            self.stopped.push(crate::output::printable(&path));
        }
    }

    fn note(&mut self, path: String) {
        if self.found.len() < LISTED_MAX {
            // A name is the service user's choice: no escape sequence in it
            // reaches a terminal.
            self.found.push(crate::output::printable(&path));
        } else {
            self.more += 1;
        }
    }
}

/// The kind of `name` in `dir`, for a file system whose listing does not say.
fn kind_at(dir: &OwnedFd, name: &std::ffi::CStr) -> Option<Type> {
    use nix::sys::stat::{fstatat, SFlag};
    let st = fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    Some(
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => Type::Directory,
            SFlag::S_IFLNK => Type::Symlink,
            _ => Type::File,
        },
    )
}

/// One sentence for a report: how many of each, from which deploy, the
/// first few.
pub fn summary(d: &Drift) -> String {
    let count = |w: What| d.changed.iter().filter(|c| c.what == w).count();
    let unshipped = count(What::Unshipped) + d.unshipped_more;
    let unsearched = count(What::Unsearched);
    let shipped = d.changed.len() - count(What::Unshipped) - unsearched;
    let mut parts = Vec::new();
    if shipped > 0 {
        parts.push(format!("{shipped} shipped file(s) changed on the host"));
    }
    if unshipped > 0 {
        parts.push(format!(
            "{unshipped} importable file(s) that no deploy shipped found in the code"
        ));
    }
    if unsearched > 0 {
        parts.push(format!(
            "{unsearched} code director(ies) too large or deep to search"
        ));
    }
    let shown: Vec<String> = d.changed.iter().take(10).map(Changed::describe).collect();
    let more = d.changed.len() + d.unshipped_more - shown.len();
    format!(
        "{} since deploy {}: {}{}",
        parts.join(", "),
        d.deploy,
        shown.join(", "),
        if more > 0 {
            format!(", and {more} more")
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn names_changed_missing_and_linked_files_of_the_deploy_in_effect() {
        let t = tempfile::tempdir().unwrap();
        let p = |r: &str| t.path().join(r);
        let w = |r: &str, text: &str| {
            fs::create_dir_all(p(r).parent().unwrap()).unwrap();
            fs::write(p(r), text).unwrap();
        };
        for (f, text) in [("a.py", "a"), ("b.py", "b"), ("c.py", "c"), ("d/e.py", "e")] {
            w(&format!("src/{f}"), text);
            w(&format!("home/code/{f}"), text);
        }
        let m = Manifest::build(&p("src")).unwrap();
        let d = "var/lib/jarvis-supervisor/deploys";
        w(
            &format!("{d}/20260101T000000Z/manifest.tsv"),
            &m.render("jarvis:jarvis"),
        );
        let paths = Paths::rooted(t.path());
        assert_eq!(
            check(&paths, Path::new("/home/code")),
            None,
            "no deploy in effect"
        );
        w(&format!("{d}/current"), "20260101T000000Z\n");
        let clean = check(&paths, Path::new("/home/code")).unwrap();
        assert_eq!((clean.files, clean.changed.len()), (4, 0));
        w("home/code/a.py", "A");
        fs::remove_file(p("home/code/b.py")).unwrap();
        fs::remove_file(p("home/code/d/e.py")).unwrap();
        std::os::unix::fs::symlink(p("src/d/e.py"), p("home/code/d/e.py")).unwrap();
        w(
            "home/code/bots/state.json",
            "the bot's own state: not shipped, not reported",
        );
        let d = check(&paths, Path::new("/home/code")).unwrap();
        assert_eq!(
            d.changed.iter().map(Changed::describe).collect::<Vec<_>>(),
            ["a.py (changed)", "b.py (missing)", "d/e.py (not a regular file)"]
        );
        assert!(summary(&d)
            .starts_with("3 shipped file(s) changed on the host since deploy 20260101T000000Z: a.py"));
    }

    /// The worker's kept digests stand for a read only while the file is
    /// the one it read (inode, size, mtime, ctime), and only from root's
    /// own record.
    #[test]
    fn kept_digests_stand_for_a_read_only_while_the_file_is_unchanged() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let t = tempfile::tempdir().unwrap();
        let p = |r: &str| t.path().join(r);
        for d in ["src", "home/code"] {
            fs::create_dir_all(p(d)).unwrap();
            fs::write(p(&format!("{d}/a.py")), "a").unwrap();
        }
        let m = Manifest::build(&p("src")).unwrap();
        let d = p("var/lib/jarvis-supervisor/deploys");
        fs::create_dir_all(d.join("20260101T000000Z")).unwrap();
        fs::write(d.join("20260101T000000Z/manifest.tsv"), m.render("jarvis:jarvis")).unwrap();
        fs::write(d.join("current"), "20260101T000000Z\n").unwrap();
        // A record that says a.py holds other content than it does: used,
        // the file is "changed" without being read.
        // A record of a.py as it is now, with another digest than its own.
        let record = || {
            let md = fs::metadata(p("home/code/a.py")).unwrap();
            let ns = |s: i64, n: i64| s * 1_000_000_000 + n;
            let record = serde_json::json!({"/home/code": {"a.py": [
                md.dev(), md.ino(), md.len(), ns(md.mtime(), md.mtime_nsec()), ns(md.ctime(), md.ctime_nsec()), "0".repeat(64)
            ]}});
            fs::write(
                p("var/lib/jarvis-supervisor/deploy-hashes.json"),
                record.to_string(),
            )
            .unwrap();
        };
        record();
        fs::set_permissions(
            p("var/lib/jarvis-supervisor/deploy-hashes.json"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let paths = Paths::rooted(t.path());
        let changed = |paths: &Paths| check(paths, Path::new("/home/code")).unwrap().changed.len();
        let root = nix::unistd::geteuid().is_root();
        // Only root's own record counts (the plain layer runs as root in CI).
        assert_eq!(changed(&paths), usize::from(root));
        // A chmod moves ctime: the file is read again, and is as shipped.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::set_permissions(p("home/code/a.py"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(changed(&paths), 0);
        // Writable by another than root: not trusted.
        fs::set_permissions(p("home/code/a.py"), fs::Permissions::from_mode(0o644)).unwrap();
        record();
        assert_eq!(changed(&paths), usize::from(root));
        fs::set_permissions(
            p("var/lib/jarvis-supervisor/deploy-hashes.json"),
            fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        assert_eq!(changed(&paths), 0);
    }

    /// Shipped files that grow past their manifest size between the size
    /// check and the read are read no further than that size plus one.
    #[test]
    fn a_shipped_file_bigger_than_shipped_is_changed() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("src")).unwrap();
        fs::write(t.path().join("src/a.py"), "a").unwrap();
        let m = Manifest::build(&t.path().join("src")).unwrap();
        let d = t.path().join("var/lib/jarvis-supervisor/deploys");
        fs::create_dir_all(d.join("1")).unwrap();
        fs::write(d.join("1/manifest.tsv"), m.render("jarvis:jarvis")).unwrap();
        fs::write(d.join("current"), "1\n").unwrap();
        fs::create_dir_all(t.path().join("code")).unwrap();
        // As a file seen at its shipped size and read after it grew.
        let grown = fs::File::create(t.path().join("code/a.py")).unwrap();
        grown.set_len(8 << 40).unwrap();
        let e = &m.entries[0];
        assert_eq!(
            hash_at_most(fs::File::open(t.path().join("code/a.py")).unwrap(), e.size).unwrap(),
            None
        );
        let d = check(&Paths::rooted(t.path()), Path::new("/code")).unwrap();
        assert_eq!(
            d.changed.iter().map(Changed::describe).collect::<Vec<_>>(),
            ["a.py (changed)"]
        );
    }

    #[test]
    fn the_search_names_unshipped_code_and_links_and_stops_where_it_must() {
        let t = tempfile::tempdir().unwrap();
        let w = |r: &str| {
            let p = t.path().join(r);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "x").unwrap();
        };
        for r in [
            "bots/supervisor.py",
            "bots/__pycache__/helper.cpython-311.pyc",
            "bots/json.py",
            "bots/x/evil.pth",
            "bots/x/_fast.cpython-311-x86_64-linux-gnu.so",
            "bots/x/state.json",
            "bots/x/wallet/.key",
            "core/__init__.py",
            "venv/lib/python3.11/site-packages/dist.pth",
            "venv/lib/python3.11/site-packages/aiohttp/__init__.py",
            "data/x.py",
            "logs/y.py",
            ".lifeos/z.py",
            ".git/hooks/h.py",
            "bots/venv/nested.py",
        ] {
            w(r);
        }
        std::os::unix::fs::symlink("/tmp", t.path().join("bots/aiohttp")).unwrap();
        let shipped: HashSet<&str> = ["bots/supervisor.py", "core/__init__.py"].into();
        let s = Walk::search(t.path(), &shipped, 1000, 8);
        let mut found = s.found.clone();
        found.sort();
        assert_eq!(
            found,
            [
                "bots/__pycache__/helper.cpython-311.pyc",
                "bots/aiohttp",
                "bots/json.py",
                "bots/venv/nested.py",
                "bots/x/_fast.cpython-311-x86_64-linux-gnu.so",
                "bots/x/evil.pth",
            ]
        );
        assert!(s.stopped.is_empty(), "{:?}", s.stopped);
        // Too deep, and too many: named, not searched further.
        w("bots/1/2/3/4/5/6/7/8/9/deep.py");
        let s = Walk::search(t.path(), &shipped, 1000, 4);
        assert_eq!(s.stopped, ["bots/1/2/3/4"]);
        assert!(!s.found.iter().any(|f| f.ends_with("deep.py")));
        for i in 0..20 {
            fs::create_dir_all(t.path().join(format!("bots/1/2/3/w{i}/deeper"))).unwrap();
        }
        let s = Walk::search(t.path(), &shipped, 1000, 4);
        assert_eq!(s.stopped.len(), 10, "the first few named, no more");
        for i in 0..20 {
            fs::remove_dir_all(t.path().join(format!("bots/1/2/3/w{i}"))).unwrap();
        }
        let s = Walk::search(t.path(), &shipped, 5, 32);
        assert_eq!(s.stopped.len(), 1, "{:?}", s.stopped);
        assert!(s.entries <= 6);
        // A name with an escape sequence is shown defused.
        w("bots/\x1b]0;pwned\x07.py");
        let s = Walk::search(t.path(), &shipped, 100_000, 32);
        assert!(
            s.found.contains(&"bots/\\x1b]0;pwned\\x07.py".to_string()),
            "{:?}",
            s.found
        );
        // The listed ones are capped, the rest counted.
        for i in 0..(LISTED_MAX + 7) {
            w(&format!("bots/many/m{i}.py"));
        }
        let s = Walk::search(t.path(), &shipped, 100_000, 32);
        assert_eq!((s.found.len(), s.more), (LISTED_MAX, 6 + 2 + 7));
    }
}
