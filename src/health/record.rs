//! `status --record`, the timer's run: one sample into the history (what
//! `--trend` draws), and the Prometheus textfile.

use std::path::Path;

use super::textfile;
use crate::samples::{self, Sample};
use jarvis_model::error::Result;
use jarvis_model::paths::Paths;

/// `--record`: one sample, quietly; the bot's state never fails the timer.
pub fn record(paths: &Paths, history: &Path) -> Result<i32> {
    let st = super::collect(paths);
    let s = Sample {
        t: super::now_s(),
        rss: st.memory.current_bytes,
        restarts: st.n_restarts,
        state: st.state.clone(),
    };
    samples::append(history, &s)?;
    // Prometheus (node_exporter's textfile collector), when a directory is
    // set or the default one exists. A failure is said, never fatal: the
    // sample and the ping matter more.
    if let Some(dir) = textfile::dir() {
        let written = textfile::write(&dir, &st)
            .and_then(|f| textfile::remember(&paths.host(Path::new(textfile::WHERE)), &f));
        if let Err(e) = written {
            e.print();
        }
    }
    Ok(st.exit_code)
}
