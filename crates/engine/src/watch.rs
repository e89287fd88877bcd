//! The engine's own files in its state directory, watched: when anyone
//! else truncates, empties or rewrites `state.json` or `run.pid` (a tool, a
//! hand, a half write), the engine writes them again from its live state at
//! once, so that `status` and `stop` read the truth (issue 27, item 9).
//! inotify on the directory: no wakeup unless a file there is written,
//! moved or removed (the engine's own log only grows: not watched).

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use jarvis_model::error::{Error, Result};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// Which of the engine's files a batch of events touched.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Touched {
    pub state: bool,
    pub pid: bool,
}

pub struct Watch {
    fd: Inotify,
}

impl Watch {
    /// None when this kernel or its limits give no inotify (the engine then
    /// rewrites the files at its next change only): the reason is said.
    pub fn new(dir: &Path) -> Result<Watch> {
        let cannot = |e: nix::Error| Error::new(format!("cannot watch {}: {e}", dir.display()));
        let fd = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(cannot)?;
        fd.add_watch(
            dir,
            AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_DELETE,
        )
        .map_err(cannot)?;
        Ok(Watch { fd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads every pending event: which of `state_name` and `pid_name` they named.
    pub fn touched(&self, state_name: &str, pid_name: &str) -> Touched {
        let mut t = Touched::default();
        while let Ok(events) = self.fd.read_events() {
            if events.is_empty() {
                break;
            }
            for e in events {
                match e.name.as_ref().and_then(|n| n.to_str()) {
                    Some(n) if n == state_name => t.state = true,
                    Some(n) if n == pid_name => t.pid = true,
                    _ => {}
                }
            }
        }
        t
    }
}
