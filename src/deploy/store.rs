//! A deploy's store on the host, filled: what the store in effect holds is
//! linked there by the worker, only the rest crosses the wire, and the
//! whole is checked against the manifest before anything live changes.

use std::path::Path;

use super::error::{DeployError, Result};
use super::progress;
use super::session::{Compare, Session};
use super::settings::files_from;

/// Deploy `id`'s store made to hold `manifest` (its text) from `local`,
/// linked from deploy `current`'s where the content is the same, and
/// verified file by file.
pub(super) fn fill(
    s: &dyn Session,
    id: &str,
    manifest: &[u8],
    local: &Path,
    current: Option<&str>,
) -> Result<()> {
    // None at all is pushed for a deploy with no change.
    let send = s.prepare_store(id, manifest, current)?;
    let push = |paths: &[String], compare| -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        let list = files_from(paths)?;
        s.push_code(id, local, list.path(), current, compare)
    };
    push(&send, Compare::SizeAndTime)?;
    let mut v = s.verify(id, current)?;
    if v.n_bad > 0 {
        // rsync's --link-dest took a changed file for its old version by
        // size and time (rare: a tool that restores mtimes): pushed again,
        // by content, before anything is called wrong.
        progress(
            s.name(),
            &format!(
                "{} file(s) in the store differ from the manifest after the quick check ({}); sending again, comparing content",
                v.n_bad,
                v.bad.first().map(String::as_str).unwrap_or("")
            ),
        );
        let mut again = send.clone();
        again.extend(v.bad.iter().filter(|b| !send.contains(b)).cloned());
        push(&again, Compare::Content)?;
        v = s.verify(id, current)?;
    }
    if v.n_bad > 0 {
        return Err(DeployError::StoreDiffers {
            n: v.n_bad,
            paths: v.bad,
        });
    }
    Ok(())
}
