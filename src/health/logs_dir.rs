//! The logs directory the unit names: its size, its newest rotated file,
//! and the free space on its file system.

use std::path::Path;

use super::model::Logs;
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

pub(super) fn of_unit(paths: &Paths, unit: &Unit) -> Logs {
    let Some(dir) = unit.logs_dir() else {
        return Logs::default();
    };
    let mut size = 0u64;
    let mut newest: Option<std::time::SystemTime> = None;
    if let Ok(rd) = std::fs::read_dir(paths.host(&dir)) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            size += m.len();
            let name = e.file_name().to_string_lossy().into_owned();
            let rotated =
                name.ends_with(".gz") || name.rsplit('.').next().is_some_and(|s| s.parse::<u32>().is_ok());
            if rotated {
                if let Ok(t) = m.modified() {
                    newest = Some(newest.map_or(t, |n| n.max(t)));
                }
            }
        }
    }
    Logs {
        dir: Some(dir.display().to_string()),
        size_bytes: Some(size),
        newest_rotated_age_s: newest.and_then(|t| t.elapsed().ok()).map(|d| d.as_secs()),
    }
}

pub(super) fn free_bytes(path: &Path) -> Option<u64> {
    let mut probe = path.to_path_buf();
    while !probe.exists() && probe.pop() {}
    let st = nix::sys::statvfs::statvfs(&probe).ok()?;
    Some(st.blocks_available() * st.fragment_size())
}
