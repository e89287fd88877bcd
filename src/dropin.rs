//! Writing the unit drop-ins jarvisctl owns (`configure`, `instance add`):
//! values checked to be plain before they go into a unit file, and each
//! file replaced in one rename.

use std::path::{Path, PathBuf};

use jarvis_model::error::{Error, Result};

/// `p` as a path a unit file or a logrotate stanza can hold unquoted (a
/// path with a space or a quote is refused, not escaped): absolute, of letters,
/// digits and `/ . _ - + @`, with no `..`. `what` names the flag.
pub fn plain_path(what: &str, p: &str) -> Result<PathBuf> {
    let ok = p.starts_with('/')
        && p.len() > 1
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+@".contains(c))
        && !p.split('/').any(|c| c == "..");
    if !ok {
        return Err(Error::new(format!(
            "{what} {p:?} must be an absolute path of letters, digits and / . _ - + @ (no spaces, quotes or ..)"
        ))
        .with_note("move the code to such a path, or link one to it")
        .with_code(jarvis_model::error::exit::USAGE));
    }
    Ok(PathBuf::from(p.trim_end_matches('/')))
}

/// Replace `path` with `text` (mode 644) in one rename, making its
/// directory when missing.
pub fn write(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("create a file in", dir, e))?;
    tmp.write_all(text.as_bytes())
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    let _ = tmp
        .as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    tmp.persist(path)
        .map_err(|e| Error::io("replace", path, e.error))?;
    Ok(())
}
