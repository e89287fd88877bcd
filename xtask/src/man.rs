//! The man page, rendered from the same clap definition as the binary, so
//! it can never drift from `jarvisctl --help`. One page, jarvisctl(1): every
//! subcommand with its options and examples is in COMMANDS, and the
//! sections clap knows nothing of (exit status, environment, files) are
//! written here.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::run::{self, Result};

use jarvis_cli as cli;

/// The package the page documents; its version is the page's.
const PACKAGE: &str = "jarvis-supervisor";

/// A section of `.TP` entries, then a paragraph.
struct Section {
    name: &'static str,
    items: &'static [(&'static str, &'static str)],
    outro: &'static str,
}

/// From crates/model/src/error.rs (`exit`), src/main.rs and the exit codes of docs/monitoring.md and docs/commands.md.
const EXIT_STATUS: Section = Section {
    name: "EXIT STATUS",
    items: &[
        ("0", "Success: the command did its job, or every check passed."),
        (
            "1",
            "A check failed, or the command could not do its job; the message says why and what to run. \
             deploy: not every host was deployed. venv build: the build failed and the environment in \
             use is unchanged.",
        ),
        (
            "2",
            "A usage error: a wrong command line, or a configuration file that is wrong (named with its line).",
        ),
        (
            "141",
            "The reader of the output went away (as with head): the status a shell gives a process \
             killed by SIGPIPE.",
        ),
    ],
    outro: "status follows the monitoring-plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN \
            (systemd cannot be asked, or a bad argument, so that a typo in a Nagios or Icinga command is \
            UNKNOWN). With --host or --hosts it is the worst of all hosts, in the order OK, WARNING, \
            UNKNOWN, CRITICAL. status --trend exits 1 when the memory would reach MemoryMax within 7 days, \
            3 with fewer than 3 samples.\n\n\
            venv exec becomes the interpreter, so its status is the script's.",
};

/// Only what jarvisctl itself reads (src/: env::var_os, and chrono's local time).
const ENVIRONMENT: Section = Section {
    name: "ENVIRONMENT",
    items: &[
        (
            "NO_COLOR",
            "When set and not empty, human output is never colored (it is colored only on a terminal anyway).",
        ),
        (
            "JARVIS_TEXTFILE_DIR",
            "The directory where status --record writes jarvis_supervisor.prom for node_exporter's textfile \
             collector; set it in a drop-in of jarvis-supervisor-health.service. Default: \
             /var/lib/prometheus/node-exporter, when it exists.",
        ),
        (
            "RUNTIME_DIRECTORY",
            "Set by systemd (RuntimeDirectory=): where backoff keeps its state unless --state is given, and \
             where check --preflight leaves its failures for the next start's backoff to repeat.",
        ),
        (
            "TZ",
            "The time zone of the times logs prints and --since reads, and of the bot's own log stamps \
             (else /etc/localtime).",
        ),
    ],
    outro: "",
};

/// From the package's asset lists (Cargo.toml) and docs/.
const FILES: Section = Section {
    name: "FILES",
    items: &[
        (
            "/usr/lib/systemd/system/jarvis-supervisor.service",
            "The service: runs backoff and check --preflight before each start, and the bot with venv exec. \
             Change it with a drop-in (systemctl edit jarvis-supervisor), not by editing the file.",
        ),
        (
            "/usr/lib/systemd/system/jarvis-supervisor@.service",
            "The template of every other instance, jarvis-supervisor@NAME.service, made by instance add \
             (its drop-in: /etc/systemd/system/jarvis-supervisor@NAME.service.d/50-jarvisctl-instance.conf).",
        ),
        (
            "/usr/lib/systemd/system/jarvis-supervisor.target",
            "The group: starts, stops and restarts every instance, the default one included.",
        ),
        (
            "/usr/lib/systemd/system/jarvis-supervisor-health.timer",
            "Every 5 minutes starts jarvis-supervisor-health.service, which runs status --record.",
        ),
        (
            "/usr/lib/systemd/system/jarvis-supervisor-alert.service",
            "Runs alert when the service gives up (OnFailure=).",
        ),
        (
            "/usr/lib/systemd/system/jarvis-supervisor-alert@.service",
            "Runs alert --instance NAME when instance NAME gives up (the template's OnFailure=).",
        ),
        (
            "/usr/lib/systemd/system/jarvis-supervisor-restart.timer",
            "The weekly restart (jarvis-supervisor-restart.service), off until configure --weekly-restart.",
        ),
        (
            "/etc/systemd/system/jarvis-supervisor.service.d/",
            "Drop-ins; configure --code-root writes 60-jarvisctl-code-root.conf here.",
        ),
        (
            "/etc/systemd/system/jarvis-supervisor-restart.timer.d/50-jarvisctl.conf",
            "The schedule of configure --weekly-restart.",
        ),
        (
            "/etc/default/jarvis-supervisor",
            "Optional server-wide variables, read before .env.",
        ),
        (
            "/home/jarvis/Jarvis",
            "The code root: bots/supervisor.py, requirements.txt, data/, logs/, and the environments venv \
             (in use) and venvs/. configure --code-root moves it.",
        ),
        (
            "/home/jarvis/Jarvis/.env",
            "The bot's variables, owner jarvis, mode 0600; never printed.",
        ),
        (
            "/etc/jarvis-supervisor/env-rules.conf",
            "The required variables that check and env lint hold .env to.",
        ),
        (
            "/etc/jarvis-supervisor/heartbeat.conf",
            "The heartbeat URL and the on_failure command (mode 0640: the URL is a secret).",
        ),
        (
            "/etc/jarvis-supervisor/hosts.toml",
            "deploy's hosts file when no --host is given; not shipped, see \
             /usr/share/doc/jarvis-supervisor/examples/hosts.toml.",
        ),
        (
            "/etc/logrotate.d/jarvis",
            "Rotates the bot's logs/*.log daily, by copy and truncate.",
        ),
        (
            "/etc/logrotate.d/jarvis-fallback",
            "Rotates logs/supervisor.stdout, the bot's output under jarvisctl run.",
        ),
        (
            "/etc/logrotate.d/jarvis-instances",
            "Written by jarvisctl instance add: rotates each named instance's logs/*.log (one \
             stanza per code tree) and its output file under jarvisctl run.",
        ),
        (
            "/etc/init.d/jarvis-supervisor",
            "Hosts without systemd (.deb only): runs the bot under jarvisctl run --daemon.",
        ),
        (
            "/usr/lib/sysusers.d/jarvis-supervisor.conf",
            "The jarvis user and group, for systemd-sysusers.",
        ),
        (
            "/usr/lib/systemd/system-preset/50-jarvis-supervisor.preset",
            "(.rpm only) Enables the service and the health timer at install.",
        ),
        (
            "/usr/lib/tmpfiles.d/jarvis-supervisor.conf",
            "Keeps the bot's single-instance lock, /tmp/jarvis-supervisor.lock.",
        ),
        (
            "/var/lib/jarvis-supervisor/samples.jsonl",
            "The memory history of status --record and --trend.",
        ),
        (
            "/var/lib/jarvis-supervisor/pause.json",
            "Who paused the bot with jarvisctl pause, when and why; removed by resume.",
        ),
        (
            "/var/lib/jarvis-supervisor/deploy-hashes.json",
            "On each host, the digests of the live code's files that deploy's worker and status keep, with each \
             file's inode, size and times: a file unchanged since is not read again.",
        ),
        (
            "/var/lib/jarvis-supervisor/deploys/",
            "On each host, deploy's history; the packages and wheelhouses it installed are kept beside it, \
             in packages/ and wheelhouses/.",
        ),
        (
            "/run/jarvis-supervisor/",
            "The backoff's state; kept across restarts, not across a stop.",
        ),
        (
            "/run/jarvis-supervisor-run/",
            "jarvisctl run's state, pid file, notify socket and engine.log.",
        ),
        (
            "/var/lib/prometheus/node-exporter/jarvis_supervisor.prom",
            "The status as metrics (see JARVIS_TEXTFILE_DIR).",
        ),
    ],
    outro: "",
};

/// Real pages only: systemd's, and those of the packages this one depends on.
const SEE_ALSO: &[(&str, &str)] = &[
    ("systemctl", "1"),
    ("journalctl", "1"),
    ("systemd.exec", "5"),
    ("systemd.service", "5"),
    ("systemd.timer", "5"),
    ("systemd.time", "7"),
    ("systemd.preset", "5"),
    ("sysusers.d", "5"),
    ("tmpfiles.d", "5"),
    ("logrotate", "8"),
    ("ssh", "1"),
];

/// Write `dir/jarvisctl.1.gz` (gzip with no timestamp, as lintian wants).
pub fn render(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let roff = page(&package_version()?).map_err(|e| e.to_string())?;
    let path = dir.join("jarvisctl.1.gz");
    let file = std::fs::File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(file, flate2::Compression::best());
    gz.write_all(&roff).map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())?;
    Ok(())
}

/// The version of the package, as cargo reads Cargo.toml: xtask's own
/// CARGO_PKG_VERSION is xtask's.
fn package_version() -> Result<String> {
    let out = run::output(
        run::cargo()
            .args([
                "metadata",
                "--no-deps",
                "--offline",
                "--format-version",
                "1",
                "--manifest-path",
            ])
            .arg(run::root().join("Cargo.toml")),
    )?;
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cannot read cargo metadata: {e}"))?;
    meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == PACKAGE)
        .and_then(|p| p["version"].as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("cargo metadata lists no package {PACKAGE}"))
}

fn page(version: &str) -> std::io::Result<Vec<u8>> {
    let cmd = cli::Cli::command();
    let mut man = clap_mangen::Man::new(cmd.clone()).source(format!("{PACKAGE} {version}"));
    // The date of the release's commit (dist sets SOURCE_DATE_EPOCH), never
    // the build day: the page is part of a reproducible package.
    if let Some(date) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
    {
        man = man.date(date.format("%Y-%m-%d").to_string());
    }
    let mut roff = Vec::new();
    man.render_title(&mut roff)?;
    // Left-aligned and unhyphenated, as systemd's pages: paths and unit
    // names must stay whole to be copied.
    writeln!(roff, ".ad l\n.nh")?;
    man.render_name_section(&mut roff)?;
    man.render_synopsis_section(&mut roff)?;
    man.render_description_section(&mut roff)?;
    man.render_options_section(&mut roff)?;
    // Not clap_mangen's SUBCOMMANDS section: it points to a page per
    // subcommand (jarvisctl-setup(1)), and there is only this one.
    commands(&mut roff, &cmd)?;
    for section in [&EXIT_STATUS, &ENVIRONMENT, &FILES] {
        writeln!(roff, ".SH \"{}\"", section.name)?;
        for (term, text) in section.items {
            writeln!(roff, ".TP\n\\fB{}\\fR", escape(term))?;
            paragraphs(&mut roff, text)?;
        }
        if !section.outro.is_empty() {
            writeln!(roff, ".PP")?;
            paragraphs(&mut roff, section.outro)?;
        }
    }
    writeln!(roff, ".SH \"SEE ALSO\"")?;
    let refs: Vec<String> = SEE_ALSO
        .iter()
        .map(|(name, sec)| format!("\\fB{}\\fR({sec})", escape(name)))
        .collect();
    writeln!(roff, "{}", refs.join(",\n"))?;
    Ok(roff)
}

/// Every visible subcommand (nested ones by their full name), its options
/// and its examples.
fn commands(roff: &mut Vec<u8>, cmd: &clap::Command) -> std::io::Result<()> {
    writeln!(roff, ".SH COMMANDS")?;
    for (name, sub) in leaves(cmd) {
        writeln!(roff, ".SS \"jarvisctl {name}\"")?;
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        paragraphs(roff, &about)?;
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_id() != "help")
        {
            let mut flag = String::new();
            if let Some(short) = arg.get_short() {
                flag.push_str(&format!("\\-{}, ", escape(&short.to_string())));
            }
            if let Some(long) = arg.get_long() {
                flag.push_str(&format!("\\-\\-{}", escape(long)));
            }
            match arg.get_value_names() {
                Some(names) if arg.get_action().takes_values() => {
                    let names = escape(&names.join(" "));
                    if flag.is_empty() {
                        flag = names;
                    } else {
                        flag.push_str(&format!(" \\fI{names}\\fR"));
                    }
                }
                _ if flag.is_empty() => flag = arg.get_id().to_string().to_uppercase(),
                _ => {}
            }
            let mut help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if arg.get_action().takes_values() && !defaults.is_empty() {
                help.push_str(&format!(" [default: {}]", defaults.join(", ")));
            }
            writeln!(roff, ".TP\n\\fB{flag}\\fR")?;
            paragraphs(roff, &help)?;
        }
        if let Some(after) = sub.get_after_help() {
            examples(roff, &after.to_string())?;
        }
    }
    Ok(())
}

/// The subcommands a user runs, with their full names ("env lint"): a group
/// (env, venv) is listed by its members.
fn leaves(cmd: &clap::Command) -> Vec<(String, clap::Command)> {
    let visible = |c: &&clap::Command| c.get_name() != "help" && !c.is_hide_set();
    let mut subs = Vec::new();
    for sub in cmd.get_subcommands().filter(visible) {
        if sub.has_subcommands() {
            for inner in sub.get_subcommands().filter(visible) {
                subs.push((format!("{} {}", sub.get_name(), inner.get_name()), inner.clone()));
            }
        } else {
            subs.push((sub.get_name().to_string(), sub.clone()));
        }
    }
    subs
}

/// The `Examples:` block of `--help`: its heading, then the invocations as
/// they are typed (no filling, no hyphenation).
fn examples(roff: &mut Vec<u8>, text: &str) -> std::io::Result<()> {
    let mut lines = text.lines();
    if let Some(heading) = lines.next() {
        writeln!(roff, ".PP\n{}\n.RS 4\n.nf", escape(heading))?;
        for line in lines {
            writeln!(roff, "{}", escape(line.trim()))?;
        }
        writeln!(roff, ".fi\n.RE")?;
    }
    Ok(())
}

/// Text lines; an empty line starts a new paragraph.
fn paragraphs(roff: &mut Vec<u8>, text: &str) -> std::io::Result<()> {
    for line in text.lines() {
        if line.trim().is_empty() {
            writeln!(roff, ".PP")?;
        } else {
            writeln!(roff, "{}", escape(line))?;
        }
    }
    Ok(())
}

/// Plain text as roff: a backslash is printed, a hyphen stays a minus sign
/// (so that copied flags work), and a line that starts with a dot or a
/// quote is text, not a request.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e")
        .replace('-', "\\-")
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// The [package] version, read from Cargo.toml's text apart from cargo
    /// metadata, so that a wrong reading in `render` shows.
    fn cargo_toml_version() -> String {
        let text = std::fs::read_to_string(run::root().join("Cargo.toml")).unwrap();
        let mut in_package = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_package = line == "[package]";
            } else if let Some(rest) = line.strip_prefix("version").filter(|_| in_package) {
                if let Some(v) = rest.trim_start().strip_prefix('=') {
                    return v.trim().trim_matches('"').to_string();
                }
            }
        }
        panic!("no version in the [package] of Cargo.toml");
    }

    /// The page as shipped: rendered into a temporary directory, gunzipped.
    fn rendered() -> String {
        let dir = tempfile::tempdir().unwrap();
        render(dir.path()).unwrap();
        let gz = std::fs::File::open(dir.path().join("jarvisctl.1.gz")).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    /// The text as read: roff's minus signs and font changes undone.
    fn plain(roff: &str) -> String {
        roff.replace("\\-", "-")
            .replace("\\fB", "")
            .replace("\\fI", "")
            .replace("\\fR", "")
    }

    #[test]
    fn man_page_has_the_package_version_the_name_and_every_section() {
        let page = rendered();
        let version = cargo_toml_version();
        let th = page.lines().find(|l| l.starts_with(".TH ")).expect("a .TH line");
        assert!(
            plain(th).contains(&format!("{PACKAGE} {version}")),
            "the .TH line does not carry {PACKAGE} {version}: {th}"
        );
        let lines: Vec<&str> = page.lines().collect();
        let name = lines.iter().position(|l| *l == ".SH NAME").expect(".SH NAME");
        let name_line = lines[name + 1];
        assert!(
            name_line.starts_with("jarvisctl \\- ") && name_line.contains("Jarvis bot service"),
            "NAME: {name_line}"
        );
        let mut at = 0;
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "COMMANDS",
            "EXIT STATUS",
            "ENVIRONMENT",
            "FILES",
            "SEE ALSO",
        ] {
            let found = lines
                .iter()
                .position(|l| *l == format!(".SH {section}") || *l == format!(".SH \"{section}\""))
                .unwrap_or_else(|| panic!("no section {section}:\n{page}"));
            assert!(found >= at, "{section} is out of order:\n{page}");
            at = found;
        }
        let exit = section(&page, "EXIT STATUS");
        for code in ["0", "1", "2", "141"] {
            assert!(
                exit.contains(&format!(".TP\n\\fB{code}\\fR\n")),
                "EXIT STATUS lacks {code}:\n{exit}"
            );
        }
        assert!(
            exit.contains("3 UNKNOWN"),
            "EXIT STATUS lacks status's 3:\n{exit}"
        );
        for var in ["NO_COLOR", "JARVIS_TEXTFILE_DIR", "RUNTIME_DIRECTORY"] {
            assert!(
                page.contains(&format!("\\fB{var}\\fR")),
                "ENVIRONMENT lacks {var}"
            );
        }
    }

    /// One section's text, from its .SH line to the next.
    fn section<'a>(page: &'a str, name: &str) -> &'a str {
        let start = page
            .find(&format!(".SH \"{name}\"\n"))
            .or_else(|| page.find(&format!(".SH {name}\n")))
            .unwrap_or_else(|| panic!("no section {name}"));
        let end = page[start + 4..]
            .find("\n.SH ")
            .map_or(page.len(), |e| start + 4 + e);
        &page[start..end]
    }

    /// Every configuration file and unit the packages install (Cargo.toml's
    /// asset lists) is named in FILES, so a file added there shows here.
    #[test]
    fn man_page_files_name_every_installed_configuration_file() {
        let files = plain(section(&rendered(), "FILES"));
        let manifest = std::fs::read_to_string(run::root().join("Cargo.toml")).unwrap();
        let mut installed = Vec::new();
        for line in manifest.lines().map(str::trim) {
            // .rpm: { source = "...", dest = "/...", ... }; .deb: ["source", "dest", "mode"].
            let dest = match line.split_once("dest = \"") {
                Some((_, rest)) => rest.split('"').next(),
                None if line.starts_with("[\"") => line.split('"').nth(3),
                None => None,
            };
            if let Some(dest) = dest {
                installed.push(format!("/{}", dest.trim_start_matches('/')));
            }
        }
        let config: Vec<&String> = installed
            .iter()
            .filter(|d| d.starts_with("/etc/") || d.starts_with("/usr/lib/"))
            .collect();
        assert!(config.len() >= 10, "the asset lists were not read: {installed:?}");
        for path in config {
            // A timer's service is named in the timer's entry.
            let unit = path.strip_prefix("/usr/lib/systemd/system/");
            let named = files.contains(&format!("\n{path}\n")) || unit.is_some_and(|u| files.contains(u));
            assert!(named, "FILES does not name {path}:\n{files}");
        }
    }

    #[test]
    fn man_page_refers_only_to_pages_that_exist() {
        let page = plain(&rendered());
        let see_also = &page[page.find(".SH \"SEE ALSO\"").expect("SEE ALSO")..];
        for must in ["systemctl(1)", "journalctl(1)", "systemd.exec(5)"] {
            assert!(see_also.contains(must), "SEE ALSO lacks {must}:\n{see_also}");
        }
        // Every NAME(N) in the page: this page, or one of SEE ALSO.
        let known: Vec<String> = SEE_ALSO
            .iter()
            .map(|(n, s)| format!("{n}({s})"))
            .chain(["jarvisctl(1)".to_string()])
            .collect();
        let bytes = page.as_bytes();
        for (i, _) in page.match_indices('(') {
            let digit = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !digit || bytes.get(i + 2) != Some(&b')') {
                continue;
            }
            let start = page[..i]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
                .map_or(0, |p| p + 1);
            let reference = &page[start..i + 3];
            if start < i {
                assert!(
                    known.contains(&reference.to_string()),
                    "a reference to a page not shipped: {reference}"
                );
            }
        }
    }

    #[test]
    fn man_page_commands_show_every_subcommand_with_its_examples() {
        let page = rendered();
        for (name, sub) in leaves(&cli::Cli::command()) {
            assert!(
                page.contains(&format!(".SS \"jarvisctl {name}\"")),
                "no entry for {name}"
            );
            let after = sub.get_after_help().map(|a| a.to_string()).unwrap_or_default();
            let examples: Vec<&str> = after.lines().skip(1).map(str::trim).collect();
            assert!(!examples.is_empty(), "{name} has no examples");
            for ex in examples {
                assert!(
                    page.contains(&format!("\n{}\n", escape(ex))),
                    "{name}: {ex} is not in the page"
                );
            }
        }
    }

    /// A text line that roff would take for a request vanishes from the page.
    #[test]
    fn man_page_control_lines_are_requests_roff_knows() {
        let known = [
            "TH", "SH", "SS", "TP", "PP", "RS", "RE", "nf", "fi", "ie", "el", "ad", "nh",
        ];
        for line in rendered().lines() {
            if let Some(request) = line.strip_prefix('.').or_else(|| line.strip_prefix('\'')) {
                let name = request.split_whitespace().next().unwrap_or("");
                assert!(known.contains(&name), "an unknown request: {line}");
            }
        }
    }
}
