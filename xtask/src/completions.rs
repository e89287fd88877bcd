//! Shell completions for bash, zsh and fish, generated from the same clap
//! definition as the binary and the man page (`crates/cli`), so they can
//! never drift from `jarvisctl --help`. Both packages ship them at the
//! paths each shell's own package loads from.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::run::Result;
use jarvis_cli as cli;

/// Each shell, with the file name its vendor directory expects.
pub const SHELLS: &[(Shell, &str)] = &[
    (Shell::Bash, "jarvisctl"),
    (Shell::Zsh, "_jarvisctl"),
    (Shell::Fish, "jarvisctl.fish"),
];

/// Write `dir/jarvisctl` (bash), `dir/_jarvisctl` (zsh) and
/// `dir/jarvisctl.fish` (fish).
pub fn render(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (shell, file) in SHELLS {
        let mut cmd = cli::Cli::command();
        let mut text = Vec::new();
        clap_complete::generate(*shell, &mut cmd, "jarvisctl", &mut text);
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
