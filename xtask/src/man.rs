//! The man page, rendered from the same clap definition as the binary, so
//! it can never drift from `jarvisctl --help`.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::run::Result;

#[allow(dead_code)] // xtask only needs the definitions, not every field
#[path = "../../src/cli.rs"]
pub mod cli;

/// Write `dir/jarvisctl.1.gz` (gzip with no timestamp, as lintian wants).
pub fn render(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cmd = cli::Cli::command();
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut roff)
        .map_err(|e| e.to_string())?;
    // One page: each subcommand with its options follows the main page.
    writeln!(roff, ".SH COMMANDS").map_err(|e| e.to_string())?;
    let mut subs: Vec<(String, clap::Command)> = Vec::new();
    for sub in cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help" && !s.is_hide_set())
    {
        if sub.has_subcommands() {
            for inner in sub.get_subcommands().filter(|s| s.get_name() != "help") {
                subs.push((format!("{} {}", sub.get_name(), inner.get_name()), inner.clone()));
            }
        } else {
            subs.push((sub.get_name().to_string(), sub.clone()));
        }
    }
    for (name, sub) in &subs {
        writeln!(roff, ".SS \"jarvisctl {name}\"").map_err(|e| e.to_string())?;
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        writeln!(roff, "{}", escape(&about)).map_err(|e| e.to_string())?;
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_id() != "help")
        {
            let mut flag = String::new();
            if let Some(short) = arg.get_short() {
                flag.push_str(&format!("\\-{short}, "));
            }
            if let Some(long) = arg.get_long() {
                flag.push_str(&format!("\\-\\-{long}"));
            }
            match arg.get_value_names() {
                Some(names) if arg.get_action().takes_values() => {
                    let names = names.join(" ");
                    if flag.is_empty() {
                        flag = names;
                    } else {
                        flag.push_str(&format!(" \\fI{names}\\fR"));
                    }
                }
                _ if flag.is_empty() => flag = arg.get_id().to_string().to_uppercase(),
                _ => {}
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            writeln!(roff, ".TP\n\\fB{flag}\\fR\n{}", escape(&help)).map_err(|e| e.to_string())?;
        }
    }
    let path = dir.join("jarvisctl.1.gz");
    let file = std::fs::File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(file, flate2::Compression::best());
    gz.write_all(&roff).map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())?;
    Ok(())
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\e")
        .replace('-', "\\-")
        .lines()
        .map(|l| l.trim_start_matches('.'))
        .collect::<Vec<_>>()
        .join("\n")
}
