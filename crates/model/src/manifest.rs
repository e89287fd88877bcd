//! What a deploy ships, as a manifest: every file and directory of the
//! local code with its mode, size and sha256, and the owner it gets on the
//! host. The host keeps one per deploy; a deploy touches only paths that
//! the manifest in effect lists (docs/design.md, "Who owns a file"), and
//! `status` and `check` compare the live code with it.
//!
//! Excludes only keep things off the wire that were never code: caches,
//! the workstation's own `.env`, runtime data and virtual environments.
//! They protect nothing on the host; the manifests do.

use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Names never shipped, at any depth.
const SKIP_ANYWHERE: &[&str] = &[".git", "__pycache__", ".env"];
/// Top-level directories never shipped: the workstation's runtime state
/// and virtual environments.
pub const SKIP_TOP: &[&str] = &["logs", "data", ".lifeos", "venv", ".venv", "venvs"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits as shipped: the local ones without "other" access
    /// and without set-id bits.
    pub mode: u32,
    pub size: u64,
    /// Hex sha256; "-" for a directory.
    pub sha: String,
    /// Relative, '/'-separated.
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Sorted by path.
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// Walks `dir` (never following a link) and hashes every file.
    pub fn build(dir: &Path) -> Result<Manifest> {
        let mut entries = Vec::new();
        walk(dir, "", &mut entries)?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Manifest { entries })
    }

    pub fn files(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.kind == Kind::File)
    }

    /// The manifest text, every entry owned by `owner` ("user:group").
    pub fn render(&self, owner: &str) -> String {
        let mut out =
            String::from("# jarvis-supervisor deploy manifest 1: kind mode owner size sha256 path\n");
        for e in &self.entries {
            let kind = match e.kind {
                Kind::File => 'f',
                Kind::Dir => 'd',
            };
            let _ = writeln!(
                out,
                "{kind}\t{:04o}\t{owner}\t{}\t{}\t{}",
                e.mode, e.size, e.sha, e.path
            );
        }
        out
    }

    /// Parses a manifest written by `render` (the owner column is dropped).
    pub fn parse(text: &str) -> std::result::Result<Manifest, String> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.splitn(6, '\t').collect();
            let bad = || format!("line {}: not a manifest line", n + 1);
            if f.len() != 6 {
                return Err(bad());
            }
            let kind = match f[0] {
                "f" => Kind::File,
                "d" => Kind::Dir,
                _ => return Err(bad()),
            };
            entries.push(Entry {
                kind,
                mode: u32::from_str_radix(f[1], 8).map_err(|_| bad())?,
                size: f[3].parse().map_err(|_| bad())?,
                sha: f[4].to_string(),
                path: f[5].to_string(),
            });
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Manifest { entries })
    }

    /// The entries of `self` whose paths are in `paths` (an adopted set).
    pub fn subset(&self, paths: &[String]) -> Manifest {
        let want: std::collections::HashSet<&str> = paths.iter().map(String::as_str).collect();
        Manifest {
            entries: self
                .entries
                .iter()
                .filter(|e| want.contains(e.path.as_str()))
                .cloned()
                .collect(),
        }
    }
}

fn skipped(rel_parent: &str, name: &str) -> bool {
    SKIP_ANYWHERE.contains(&name)
        || name.ends_with(".pyc")
        || (rel_parent.is_empty() && SKIP_TOP.contains(&name))
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<Entry>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read the code directory", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("read the code directory", dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(
                Error::new(format!("{}: the file name is not UTF-8", path.display()))
                    .with_note("rename it, or move it out of the code directory"),
            );
        };
        if skipped(rel, &name) {
            continue;
        }
        if name.contains(['\n', '\t', '\r']) {
            return Err(Error::new(format!(
                "{}: the file name holds a tab or a line break",
                path.display()
            ))
            .with_note("rename it: the deploy manifest is one line a path"));
        }
        let r = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("read", &path, e))?;
        let mode = meta.permissions().mode() & 0o770;
        let ft = meta.file_type();
        if ft.is_dir() {
            out.push(Entry {
                kind: Kind::Dir,
                mode,
                size: 0,
                sha: "-".into(),
                path: r.clone(),
            });
            walk(&path, &r, out)?;
        } else if ft.is_file() {
            let (sha, size) = hash(&path)?;
            if size != meta.size() {
                return Err(
                    Error::new(format!("{}: changed while it was read", path.display()))
                        .with_note("deploy again when nothing writes into the code directory"),
                );
            }
            out.push(Entry {
                kind: Kind::File,
                mode,
                size,
                sha,
                path: r,
            });
        } else {
            return Err(Error::new(format!(
                "{}: a symbolic link or special file; deploy ships regular files and directories only",
                path.display()
            ))
            .with_note("replace it with the file it stands for, or move it out of the code directory"));
        }
    }
    Ok(())
}

/// Hex sha256 and length of a file.
pub fn hash(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("read", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex(&h.finalize()), size))
}

/// Hex sha256 of what `r` holds when that is at most `limit` bytes; None
/// when it holds more. Reads at most `limit + 1` bytes: a file of the
/// service user's that grows (to a sparse 8 TiB, say) after its size was
/// checked costs one byte more, not a read to its end.
pub fn hash_at_most(r: impl Read, limit: u64) -> std::io::Result<Option<String>> {
    let mut r = r.take(limit.saturating_add(1));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size <= limit).then(|| hex(&h.finalize())))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// sha256sum of "print(1)\n".
    const SHA_PRINT1: &str = "cc42155088fca5730758db72b2a5bca33112a941dfaa2d43098ec422ce4ea213";

    #[test]
    fn walks_hashes_and_skips_caches_secrets_and_runtime_data() {
        let t = tempfile::tempdir().unwrap();
        let w = |r: &str, text: &str| {
            let p = t.path().join(r);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        };
        w("bots/supervisor.py", "print(1)\n");
        w("bots/x/.env", "SECRET=1");
        w("bots/x/__pycache__/a.cpython-311.pyc", "");
        w("bots/y.pyc", "");
        w(".env", "SECRET=1");
        w("data/state.json", "{}");
        w("logs/a.log", "");
        w("venv/bin/python", "");
        w("bots/data/kept.py", "# a component's own data/ dir is code\n");
        w(".git/HEAD", "ref");
        fs::set_permissions(
            t.path().join("bots/supervisor.py"),
            fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        let m = Manifest::build(t.path()).unwrap();
        let paths: Vec<&str> = m.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "bots",
                "bots/data",
                "bots/data/kept.py",
                "bots/supervisor.py",
                "bots/x"
            ]
        );
        let e = &m.entries[3];
        assert_eq!(e.mode, 0o750, "o-rwx and no set-id bit");
        assert_eq!(e.size, 9);
        assert_eq!(e.sha, SHA_PRINT1);
        let text = m.render("jarvis:jarvis");
        assert!(text.contains("f\t0750\tjarvis:jarvis\t9\t"), "{text}");
        assert_eq!(Manifest::parse(&text).unwrap(), m);
    }

    #[test]
    fn the_hash_is_sha256() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("a"), "abc").unwrap();
        assert_eq!(
            hash(&t.path().join("a")).unwrap().0,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_bounded_hash_reads_one_byte_past_the_limit_at_most() {
        assert_eq!(
            hash_at_most(&b"abc"[..], 3).unwrap().as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(hash_at_most(&b"abcd"[..], 3).unwrap(), None);
        // A reader that never ends: only limit + 1 bytes are taken from it.
        let mut endless = std::io::repeat(0).take(u64::MAX);
        assert_eq!(hash_at_most(&mut endless, 1 << 20).unwrap(), None);
        assert_eq!(endless.limit(), u64::MAX - (1 << 20) - 1);
    }

    #[test]
    fn links_and_odd_names_are_refused_with_the_path() {
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("link")).unwrap();
        let e = Manifest::build(t.path()).unwrap_err().to_string();
        assert!(e.contains("link") && e.contains("symbolic link"), "{e}");
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("a\tb"), "").unwrap();
        let e = Manifest::build(t.path()).unwrap_err().to_string();
        assert!(e.contains("tab"), "{e}");
    }
}
