//! Which filesystem a path is on, and how full it is: a write that failed
//! for lack of space names the filesystem to free (`/run`, `/var/lib`, the
//! bot's `logs/`), not only the file.

use std::path::{Path, PathBuf};

/// Where the filesystem holding `path` is mounted, and its type, from
/// /proc/self/mountinfo (the longest mount point that contains the path).
pub fn mount_of(path: &Path) -> Option<(PathBuf, String)> {
    let path = std::fs::canonicalize(path)
        .or_else(|_| {
            path.parent()
                .map_or(Err(std::io::ErrorKind::NotFound.into()), std::fs::canonicalize)
        })
        .ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    best_mount(&info, &path)
}

/// The longest mount point in `mountinfo` text that contains `path`.
fn best_mount(mountinfo: &str, path: &Path) -> Option<(PathBuf, String)> {
    let mut best: Option<(PathBuf, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(mp) = fields.get(4) else { continue };
        // The filesystem type follows the " - " separator.
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let fstype = fields.get(sep + 1).copied().unwrap_or("?");
        let mp = PathBuf::from(unescape(mp));
        if path.starts_with(&mp)
            && best
                .as_ref()
                .is_none_or(|(b, _)| mp.as_os_str().len() >= b.as_os_str().len())
        {
            best = Some((mp, fstype.to_string()));
        }
    }
    best
}

/// mountinfo writes a space, tab, newline and backslash as octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes free to an unprivileged writer, and the size, of the filesystem
/// holding `path`.
pub fn space(path: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let unit = st.fragment_size();
    Some((st.blocks_available() * unit, st.blocks() * unit))
}

fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// "the filesystem /run (tmpfs) has 0 B of 4.0 MiB free", for a message
/// about a write under `path` that failed; what is known, at least the path.
pub fn describe(path: &Path) -> String {
    let probe = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    let at = match mount_of(probe) {
        Some((mp, fstype)) => format!("the filesystem {} ({fstype})", mp.display()),
        None => format!("the filesystem of {}", probe.display()),
    };
    match space(probe) {
        Some((free, size)) => format!("{at} has {} of {} free", human(free), human(size)),
        None => at,
    }
}

/// True for the errors that say "no room": free space or quota.
pub fn is_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(n) if n == nix::libc::ENOSPC || n == nix::libc::EDQUOT)
}

/// How [`rewrite_in_place`] covers what is left of a longer old text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Spaces before the final newline (JSON allows them at the end): the
    /// file keeps its length, with no truncation.
    Spaces,
    /// The file is cut to the new length (that frees blocks, needs none).
    Cut,
}

/// Rewrites the package's own file `path` with `text` (ending in a
/// newline) through the blocks it already has: one write from offset 0, no
/// new file, inode or block, so that it works on a full filesystem (issue
/// 27). Only a regular file of this user with one link, never followed.
/// Returns the bytes the file now holds.
pub fn rewrite_in_place(path: &Path, text: &[u8], tail: Tail) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() || m.nlink() != 1 || m.uid() != nix::unistd::geteuid().as_raw() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not a file of ours (a regular file of this user with one link)",
        ));
    }
    let old = m.len() as usize;
    if text.len() > old.max((m.blocks() * 512) as usize) {
        return Err(std::io::ErrorKind::StorageFull.into());
    }
    let mut text = text.to_vec();
    if tail == Tail::Spaces && text.len() < old {
        text.pop();
        text.resize(old - 1, b' ');
        text.push(b'\n');
    }
    f.write_all_at(&text, 0)?;
    if text.len() < old {
        f.set_len(text.len() as u64)?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_in_place_covers_the_old_text_and_never_grows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("state.json");
        let old = format!("{{\"a\": 12345}}\n{}", " ".repeat(300));
        std::fs::write(&f, &old).unwrap();
        let held = rewrite_in_place(&f, b"{\"a\": 1}\n", Tail::Spaces).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), held);
        assert_eq!(held.len(), old.len(), "the old tail is covered");
        assert!(held.starts_with(b"{\"a\": 1} ") && held.ends_with(b" \n"));
        let held = rewrite_in_place(&f, b"up 1\n", Tail::Cut).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"up 1\n");
        assert_eq!(held, b"up 1\n");
        // More than the file's blocks hold: refused, the old text stays.
        let blocks = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&f).unwrap()) as usize * 512;
        let huge = vec![b' '; blocks.max(5) + 1];
        assert!(rewrite_in_place(&f, &huge, Tail::Spaces).is_err());
        assert_eq!(std::fs::read(&f).unwrap(), b"up 1\n");
        // Never through a link, nor into a file with a second name.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(rewrite_in_place(&link, b"x\n", Tail::Cut).is_err());
        std::fs::hard_link(&f, dir.path().join("second")).unwrap();
        assert!(rewrite_in_place(&f, b"x\n", Tail::Cut).is_err());
        assert_eq!(std::fs::read(&f).unwrap(), b"up 1\n");
    }

    #[test]
    fn the_longest_containing_mount_point_wins() {
        let info = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
25 22 0:21 / /run rw - tmpfs tmpfs rw
26 25 0:22 / /run/lock rw - tmpfs tmpfs rw
27 22 0:23 / /srv/a\\040b rw - xfs /dev/sdb rw
";
        let m = |p: &str| best_mount(info, Path::new(p)).map(|(p, t)| (p.display().to_string(), t));
        assert_eq!(
            m("/run/jarvis-supervisor/backoff.json"),
            Some(("/run".into(), "tmpfs".into()))
        );
        assert_eq!(m("/run/lockx"), Some(("/run".into(), "tmpfs".into())));
        assert_eq!(m("/run/lock/x"), Some(("/run/lock".into(), "tmpfs".into())));
        assert_eq!(m("/srv/a b/logs"), Some(("/srv/a b".into(), "xfs".into())));
        assert_eq!(m("/home/jarvis"), Some(("/".into(), "ext4".into())));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(4 << 20), "4.0 MiB");
        assert_eq!(human(1536), "1.5 KiB");
    }
}
