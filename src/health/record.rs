//! `status --record`, the timer's run: the heartbeat ping, one sample into
//! the history (what `--trend` draws), and the Prometheus textfile. The
//! ping goes first, before any file is written: a full disk must not
//! silence the heartbeat (issue 27, item 8).

use std::path::Path;

use super::{instances, raise_host, textfile, Status, Verdict};
use crate::samples::{self, Sample};
use jarvis_model::error::Result;
use jarvis_model::instance::{Instance, InstanceName};
use jarvis_model::paths::Paths;

/// Under this much free space, the package's own records (the samples, the
/// textfile) are about to fail: named as a full filesystem. A sample is
/// about 64 bytes, the textfile a few KiB.
pub const STORE_LOW: u64 = 1 << 20;

/// `--record`: the status of the default instance and of each `named`
/// one, the pings (`ping` gets each instance and its verdict's exit code;
/// all at once, so that one silent monitor does not hold the others),
/// then the default's sample and the textfile with every instance's
/// series. The bots' state never fails the timer; a sample that could not
/// be stored does, after the pings and the textfile, which say it too.
pub fn record(
    paths: &Paths,
    history: &Path,
    named: &[InstanceName],
    ping: impl Fn(&Instance, i32) + Sync,
) -> Result<i32> {
    let mut st = super::collect(paths);
    if let Some(dir) = history.parent() {
        if dir != paths.host(Path::new(samples::PATH)).parent().unwrap_or(dir) {
            store_space(dir, &mut st);
        }
    }
    st.exit_code = st.verdict as i32;
    let lines: Vec<instances::Line> = named.iter().map(|n| instances::of_named(paths, n)).collect();
    std::thread::scope(|s| {
        let ping = &ping;
        for (name, line) in named.iter().zip(&lines) {
            let instance = Instance::Named(name.clone());
            let code = line.verdict as i32;
            s.spawn(move || ping(&instance, code));
        }
        ping(&Instance::Default, st.exit_code);
    });
    let s = Sample {
        t: super::now_s(),
        rss: st.memory.current_bytes,
        restarts: st.n_restarts,
        state: st.state.clone(),
    };
    let stored = samples::append(history, &s).map_err(|e| {
        let dir = history.parent().unwrap_or(history);
        let free = super::logs_dir::free_bytes(dir);
        let note = match free {
            Some(f) if f < STORE_LOW => format!(
                "the filesystem of {} is full ({} KiB free): free space there (what is big: du -xh --max-depth=2 {} | sort -h | tail); the heartbeat was pinged and the textfile says sample_stored 0",
                dir.display(),
                f / 1024,
                dir.display()
            ),
            _ => "the heartbeat was pinged and the textfile says sample_stored 0".into(),
        };
        e.with_note(note)
    });
    // Prometheus (node_exporter's textfile collector), when a directory is
    // set or the default one exists. A failure is said, never fatal.
    if let Some(dir) = textfile::dir() {
        let written = textfile::write(&dir, &st, &lines, stored.is_ok())
            .and_then(|f| textfile::remember(&paths.host(Path::new(textfile::WHERE)), &f));
        if let Err(e) = written {
            e.print();
        }
    }
    stored.map(|()| st.exit_code)
}

/// A WARNING when the filesystem of `dir` (the package's records) is full:
/// named with the path and what to free. A missing `dir` is judged by the
/// nearest directory above it that exists.
pub(super) fn store_space(dir: &Path, st: &mut Status) {
    if let Some(why) = super::logs_dir::free_bytes(dir).and_then(|free| store_full(dir, free)) {
        raise_host(st, Verdict::Warning, why);
    }
}

/// The finding for `free` bytes left on the filesystem of `dir`, if full.
fn store_full(dir: &Path, free: u64) -> Option<String> {
    (free < STORE_LOW).then(|| format!(
        "the filesystem of {} is full ({} KiB free): the health samples and the metrics cannot be stored; free space there (what is big: du -xh --max-depth=2 {} | sort -h | tail)",
        dir.display(),
        free / 1024,
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_store_is_named_with_its_path_and_what_to_free() {
        let dir = Path::new("/var/lib/jarvis-supervisor");
        let why = store_full(dir, 12 * 1024).expect("12 KiB free is full");
        assert!(
            why.starts_with("the filesystem of /var/lib/jarvis-supervisor is full (12 KiB free)"),
            "{why}"
        );
        assert!(
            why.contains("du -xh --max-depth=2 /var/lib/jarvis-supervisor"),
            "{why}"
        );
        assert_eq!(store_full(dir, STORE_LOW), None);
    }
}
