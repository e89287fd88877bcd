//! Running commands, with the command line in every error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub type Result<T> = std::result::Result<T, String>;

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
        .to_path_buf()
}

fn shown(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run with inherited output; fail unless it exits 0.
pub fn status(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {}", shown(cmd));
    let st = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", shown(cmd)))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {st}", shown(cmd)))
    }
}

/// Run and capture; fail unless it exits 0.
pub fn output(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", shown(cmd)))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{} failed: {}\n{}",
            shown(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}
