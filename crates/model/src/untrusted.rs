//! Opening paths that the service user can write, from code that runs as
//! root (docs/design.md, "Root never trusts the service user's files").
//!
//! The path is walked from `/` one component at a time, each directory
//! opened from its parent's descriptor with `O_NOFOLLOW`: a symbolic link
//! on the way is refused unless root owns it and it sits in a directory
//! only root can write (`/lib` on a merged-/usr system). The file itself is
//! opened with `O_NOFOLLOW | O_NONBLOCK` (a FIFO never hangs the caller),
//! then checked with `fstat`: a regular file, one link (a hard link to
//! `/etc/shadow` is refused), reads bounded. Owners and modes change
//! through the descriptor. Every root-run path that touches such a file
//! goes through here, never through `std::fs` by path.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};

const DIR: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

fn err(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: {what}", path.display()),
    )
}

/// The directory holding `path`, opened safely, and the file's name in it.
fn parent(path: &Path) -> io::Result<(OwnedFd, std::ffi::OsString)> {
    if !path.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not an absolute path", path.display()),
        ));
    }
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::RootDir => {}
            _ => return Err(err(path, "'..' or '.' in the path")),
        }
    }
    let name = parts
        .pop()
        .ok_or_else(|| err(path, "no file name"))?
        .to_os_string();
    let mut fd: OwnedFd = nix::fcntl::open("/", DIR, Mode::empty()).map_err(io::Error::from)?;
    for part in parts {
        fd = match openat(&fd, part, DIR, Mode::empty()) {
            Ok(next) => next,
            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) if is_link(&fd, part) => {
                if !trusted_link(&fd, part) {
                    return Err(err(
                        path,
                        format!(
                            "{} is a symbolic link that a user other than root could have made; refused",
                            part.to_string_lossy()
                        ),
                    ));
                }
                openat(&fd, part, DIR.difference(OFlag::O_NOFOLLOW), Mode::empty())
                    .map_err(io::Error::from)?
            }
            Err(e) => return Err(io::Error::from(e)),
        };
    }
    Ok((fd, name))
}

fn is_link(dir: &OwnedFd, name: &std::ffi::OsStr) -> bool {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits())
}

/// A link that only root could have placed: owned by root, in a directory
/// that only root can write.
fn trusted_link(dir: &OwnedFd, name: &std::ffi::OsStr) -> bool {
    let Ok(d) = nix::sys::stat::fstat(dir.as_fd()) else {
        return false;
    };
    let Ok(link) = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
        return false;
    };
    link.st_uid == 0 && d.st_uid == 0 && d.st_mode & 0o022 == 0
}

/// Checks an opened file: regular, one link, owned by root or `owner`.
fn check(path: &Path, file: &File, owner: Option<u32>) -> io::Result<()> {
    let m = file.metadata()?;
    if !m.file_type().is_file() {
        return Err(err(
            path,
            "not a regular file (a FIFO, device or directory); refused",
        ));
    }
    if m.nlink() != 1 {
        return Err(err(
            path,
            format!("has {} hard links; refused (it may be another file's)", m.nlink()),
        ));
    }
    if let Some(uid) = owner {
        if m.uid() != uid && m.uid() != 0 {
            return Err(err(
                path,
                format!("owned by uid {}, not the service user; refused", m.uid()),
            ));
        }
    }
    Ok(())
}

/// Opens `path` for reading. `owner`: the service user's uid, when the
/// file must be that user's or root's.
pub fn open_read(path: &Path, owner: Option<u32>) -> io::Result<File> {
    let (dir, name) = parent(path)?;
    open_read_at(&dir, name.as_os_str(), path, owner)
}

/// Opens `name` in `dir` for reading, with `open_read`'s checks; `shown`
/// names it in errors.
fn open_read_at(dir: &OwnedFd, name: &std::ffi::OsStr, shown: &Path, owner: Option<u32>) -> io::Result<File> {
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ELOOP => err(
            shown,
            "a symbolic link; refused (replace it with the file itself)",
        ),
        e => io::Error::from(e),
    })?;
    let file = File::from(fd);
    check(shown, &file, owner)?;
    Ok(file)
}

/// Files below one directory opened once through [`open_dir`]: each
/// directory under it is opened from its parent's descriptor with
/// `O_NOFOLLOW` and kept, so that many files of one tree cost one `openat`
/// each rather than a walk from `/` each (on overlayfs, a tree of 5,000
/// files took 0.7 s of system time that way).
pub struct Below {
    root: std::path::PathBuf,
    dirs: std::collections::HashMap<String, OwnedFd>,
}

/// Directory descriptors kept at most; more, and all but the root's go.
const BELOW_DIRS: usize = 512;

impl Below {
    pub fn new(root: &Path) -> io::Result<Below> {
        let fd = OwnedFd::from(open_dir(root)?);
        let mut dirs = std::collections::HashMap::new();
        dirs.insert(String::new(), fd);
        Ok(Below {
            root: root.to_path_buf(),
            dirs,
        })
    }

    /// The descriptor of directory `rel` (`a/b`, "" for the root); a link
    /// or a non-directory on the way is refused.
    fn dir(&mut self, rel: &str) -> io::Result<&OwnedFd> {
        if !self.dirs.contains_key(rel) {
            let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
            if name.is_empty() || name == "." || name == ".." {
                return Err(err(&self.root.join(rel), "'..' or '.' in the path"));
            }
            let fd = openat(self.dir(parent)?, name, DIR, Mode::empty()).map_err(|e| match e {
                Errno::ELOOP | Errno::ENOTDIR => err(
                    &self.root.join(rel),
                    "not a directory (or a symbolic link); refused",
                ),
                e => io::Error::from(e),
            })?;
            if self.dirs.len() >= BELOW_DIRS {
                self.dirs.retain(|k, _| k.is_empty());
            }
            self.dirs.insert(rel.to_string(), fd);
        }
        Ok(&self.dirs[rel])
    }

    /// Opens `rel` below the root for reading, as [`open_read`] opens a
    /// path.
    pub fn open_read(&mut self, rel: &str, owner: Option<u32>) -> io::Result<File> {
        let shown = self.root.join(rel);
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        if name.is_empty() || name == "." || name == ".." {
            return Err(err(&shown, "no file name"));
        }
        open_read_at(self.dir(parent)?, std::ffi::OsStr::new(name), &shown, owner)
    }
}

/// Reads all of `path`, at most `max` bytes (more is an error, never a
/// truncated read).
pub fn read(path: &Path, owner: Option<u32>, max: u64) -> io::Result<Vec<u8>> {
    let file = open_read(path, owner)?;
    if file.metadata()?.len() > max {
        return Err(err(path, format!("larger than {max} bytes; refused")));
    }
    let mut out = Vec::new();
    file.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(err(path, format!("larger than {max} bytes; refused")));
    }
    Ok(out)
}

/// Opens `path` for appending, creating it with `mode` and `owner` when
/// missing; an existing file must be a regular file with one link, owned
/// by root or `owner`'s uid.
pub fn open_append(path: &Path, mode: u32, owner: Option<(u32, u32)>) -> io::Result<File> {
    let (dir, name) = parent(path)?;
    let flags = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let (fd, created) = match openat(&dir, name.as_os_str(), flags, Mode::empty()) {
        Ok(fd) => (fd, false),
        Err(Errno::ENOENT) => {
            let fd = openat(
                &dir,
                name.as_os_str(),
                flags | OFlag::O_CREAT | OFlag::O_EXCL,
                Mode::from_bits_truncate(mode),
            )
            .map_err(io::Error::from)?;
            (fd, true)
        }
        Err(Errno::ELOOP) => {
            return Err(err(
                path,
                "a symbolic link; refused (remove it: the file is made anew)",
            ))
        }
        Err(e) => return Err(io::Error::from(e)),
    };
    let file = File::from(fd);
    if created {
        nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(mode)).map_err(io::Error::from)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
    }
    check(path, &file, owner.map(|o| o.0))?;
    // The O_NONBLOCK was for the open; writes to a regular file ignore it.
    Ok(file)
}

/// Opens directory `path` (to change its owner or mode through the
/// descriptor): a link there, or anywhere on the way, is refused.
pub fn open_dir(path: &Path) -> io::Result<File> {
    let (dir, name) = parent(path)?;
    openat(&dir, name.as_os_str(), DIR, Mode::empty())
        .map(File::from)
        .map_err(|e| match e {
            Errno::ELOOP | Errno::ENOTDIR => err(path, "not a directory (or a symbolic link); refused"),
            e => io::Error::from(e),
        })
}

/// Makes directory `path` if missing (its parent must exist), owned by
/// `owner`, with `mode` whatever the umask; an existing one must be a
/// directory, not a link. Returns whether it was made.
pub fn ensure_dir(path: &Path, mode: u32, owner: Option<(u32, u32)>) -> io::Result<bool> {
    let (dir, name) = parent(path)?;
    match nix::sys::stat::mkdirat(&dir, name.as_os_str(), Mode::from_bits_truncate(0o700)) {
        Ok(()) => {
            let fd = openat(&dir, name.as_os_str(), DIR, Mode::empty()).map_err(io::Error::from)?;
            if let Some((uid, gid)) = owner {
                nix::unistd::fchown(&fd, Some(uid.into()), Some(gid.into())).map_err(io::Error::from)?;
            }
            nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(io::Error::from)?;
            Ok(true)
        }
        Err(Errno::EEXIST) => openat(&dir, name.as_os_str(), DIR, Mode::empty())
            .map(|_| false)
            .map_err(|e| match e {
                Errno::ELOOP | Errno::ENOTDIR => err(path, "not a directory (or a symbolic link); refused"),
                e => io::Error::from(e),
            }),
        Err(e) => Err(io::Error::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn links_fifos_hard_links_and_big_files_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = |n: &str| t.path().join(n);
        fs::write(p("ok"), "A=1\n").unwrap();
        assert_eq!(read(&p("ok"), None, 100).unwrap(), b"A=1\n");
        std::os::unix::fs::symlink(p("ok"), p("link")).unwrap();
        let e = read(&p("link"), None, 100).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        nix::unistd::mkfifo(&p("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let e = read(&p("fifo"), None, 100).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        fs::hard_link(p("ok"), p("hard")).unwrap();
        let e = read(&p("hard"), None, 100).unwrap_err().to_string();
        assert!(e.contains("hard links"), "{e}");
        fs::remove_file(p("hard")).unwrap();
        fs::write(p("big"), vec![b'x'; 101]).unwrap();
        let e = read(&p("big"), None, 100).unwrap_err().to_string();
        assert!(e.contains("larger than 100"), "{e}");
        // A link higher up the path is refused too.
        fs::create_dir(p("real")).unwrap();
        fs::write(p("real/f"), "x").unwrap();
        std::os::unix::fs::symlink(p("real"), p("dirlink")).unwrap();
        // Made by the service user (when these tests run as root, a link of
        // root's in a root-only directory is trusted, as /lib is).
        let _ = std::os::unix::fs::lchown(p("dirlink"), Some(65534), Some(65534));
        let e = read(&p("dirlink/f"), None, 100).unwrap_err().to_string();
        assert!(e.contains("dirlink") && e.contains("symbolic link"), "{e}");
    }

    /// Below a root opened once, a file is read through directories
    /// opened from their parents: a linked directory or file on the way, a
    /// hard link, a FIFO and '..' are refused as `open_read` refuses them.
    #[test]
    fn below_a_root_links_on_the_way_hard_links_fifos_and_dots_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = |n: &str| t.path().join(n);
        fs::create_dir_all(p("tree/bots/pkg")).unwrap();
        fs::create_dir_all(p("elsewhere")).unwrap();
        fs::write(p("tree/bots/pkg/a.py"), "a").unwrap();
        fs::write(p("elsewhere/secret"), "s").unwrap();
        std::os::unix::fs::symlink(p("elsewhere"), p("tree/bots/linked")).unwrap();
        std::os::unix::fs::symlink(p("elsewhere/secret"), p("tree/bots/file-link")).unwrap();
        fs::hard_link(p("elsewhere/secret"), p("tree/bots/hard")).unwrap();
        nix::unistd::mkfifo(&p("tree/bots/fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let mut b = Below::new(&p("tree")).unwrap();
        let mut text = String::new();
        b.open_read("bots/pkg/a.py", None)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "a");
        for (rel, says) in [
            ("bots/linked/secret", "symbolic link"),
            ("bots/file-link", "symbolic link"),
            ("bots/hard", "hard links"),
            ("bots/fifo", "not a regular file"),
            ("bots/../bots/pkg/a.py", "'..'"),
        ] {
            let e = b.open_read(rel, None).unwrap_err().to_string();
            assert!(e.contains(says), "{rel}: {e}");
        }
        // The same again, from the kept descriptors.
        assert!(b.open_read("bots/pkg/a.py", None).is_ok());
        assert_eq!(
            b.open_read("bots/none.py", None).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn append_creates_once_and_refuses_links() {
        let t = tempfile::tempdir().unwrap();
        let p = |n: &str| t.path().join(n);
        {
            use std::io::Write;
            let mut f = open_append(&p("log"), 0o640, None).unwrap();
            f.write_all(b"one\n").unwrap();
            let mut f = open_append(&p("log"), 0o640, None).unwrap();
            f.write_all(b"two\n").unwrap();
        }
        assert_eq!(fs::read_to_string(p("log")).unwrap(), "one\ntwo\n");
        assert_eq!(fs::metadata(p("log")).unwrap().mode() & 0o777, 0o640);
        fs::write(p("target"), "keep").unwrap();
        std::os::unix::fs::symlink(p("target"), p("evil")).unwrap();
        assert!(open_append(&p("evil"), 0o640, None).is_err());
        std::os::unix::fs::symlink(p("nowhere/x"), p("dangling")).unwrap();
        assert!(open_append(&p("dangling"), 0o640, None).is_err());
        assert!(!p("nowhere").exists());
        assert_eq!(fs::read_to_string(p("target")).unwrap(), "keep");
        ensure_dir(&p("d"), 0o750, None).unwrap();
        ensure_dir(&p("d"), 0o750, None).unwrap();
        std::os::unix::fs::symlink(p("d"), p("dl")).unwrap();
        assert!(ensure_dir(&p("dl"), 0o750, None).is_err());
    }
}
