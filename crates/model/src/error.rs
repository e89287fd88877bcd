//! The one error type of `jarvisctl`: what failed, on which path, and a
//! `note:` that says what to do about it.

use std::fmt;
use std::path::Path;

/// Exit codes shared by every subcommand.
pub mod exit {
    /// Success, or every check passed.
    pub const OK: i32 = 0;
    /// A check failed, or the command could not do its job.
    pub const FAILURE: i32 = 1;
    /// The command line or a configuration file is wrong.
    pub const USAGE: i32 = 2;
}

#[derive(Debug)]
pub struct Error {
    message: String,
    note: Option<String>,
    code: i32,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            note: None,
            code: exit::FAILURE,
        }
    }

    /// An I/O error on `path`, e.g. `Error::io("create directory", path, err)`.
    pub fn io(action: &str, path: &Path, err: std::io::Error) -> Self {
        // The kernel's EACCES/EPERM only: a refusal of ours (a link a user
        // planted, in `untrusted`) says its own fix, and root cannot get by it.
        let note = match (err.kind(), err.raw_os_error()) {
            (std::io::ErrorKind::PermissionDenied, Some(_)) => {
                Some("run it as root (sudo jarvisctl ...)".to_string())
            }
            _ => None,
        };
        Error {
            message: format!("cannot {action} {}: {err}", path.display()),
            note,
            code: exit::FAILURE,
        }
    }

    /// Bad input in a file: names the file and the line.
    pub fn config(path: &Path, line: usize, message: impl fmt::Display) -> Self {
        Error {
            message: format!("{}:{line}: {message}", path.display()),
            note: None,
            code: exit::USAGE,
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    pub fn with_code(mut self, code: i32) -> Self {
        self.code = code;
        self
    }

    pub fn exit_code(&self) -> i32 {
        self.code
    }

    /// To stderr, defused: a message may quote a file's name or a host's
    /// answer.
    pub fn print(&self) {
        use crate::defuse::printable;
        eprintln!("jarvisctl: error: {}", printable(&self.message));
        if let Some(note) = &self.note {
            eprintln!("note: {}", printable(note));
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(note) = &self.note {
            write!(f, " (note: {note})")?;
        }
        Ok(())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
