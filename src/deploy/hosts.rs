//! The deploy's hosts file (TOML): one `[[host]]` table per host, with its
//! ssh target, code directory, optional per-host `.env` and package, and
//! the instances it runs (`status --hosts` checks each). Errors name the
//! file and the line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ssh::Target;
use jarvis_model::error::{Error, Result};
use jarvis_model::instance::Instance;

/// The hosts file read when neither --host nor --hosts is given.
pub const DEFAULT_PATH: &str = "/etc/jarvis-supervisor/hosts.toml";

/// One host to deploy to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub target: Target,
    /// Where the hosts file expects the code; the host's own unit decides,
    /// and a deploy refuses a host where the two differ.
    pub code_dir: Option<String>,
    pub env_file: Option<PathBuf>,
    pub package: Option<PathBuf>,
    /// `instances = ["default", "alpha"]`: the bots the host runs, each
    /// checked by `status --hosts`; None: not said (one row, the host's
    /// own worst verdict, as before).
    pub instances: Option<Vec<Instance>>,
}

impl Host {
    pub fn plain(target: Target) -> Host {
        Host {
            target,
            code_dir: None,
            env_file: None,
            package: None,
            instances: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    host: Vec<toml::Spanned<Entry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    ssh: toml::Spanned<String>,
    code_dir: Option<toml::Spanned<String>>,
    env_file: Option<PathBuf>,
    package: Option<PathBuf>,
    instances: Option<toml::Spanned<Vec<toml::Spanned<String>>>>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses the hosts file `text` read from `path`; relative `env_file` and
/// `package` paths are taken from the file's directory.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Host>> {
    const NOTE: &str =
        "each host is a [[host]] table: ssh = \"root@vps1:22\", and optionally code_dir, env_file, package, instances";
    let file: File = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        Error::config(path, line, e.message().trim()).with_note(NOTE)
    })?;
    if file.host.is_empty() {
        return Err(Error::config(path, 1, "no [[host]] entry").with_note(NOTE));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut hosts = Vec::new();
    for entry in file.host {
        let line = line_of(text, entry.span().start);
        let e = entry.into_inner();
        let target = Target::parse(e.ssh.get_ref())
            .map_err(|m| Error::config(path, line_of(text, e.ssh.span().start), m).with_note(NOTE))?;
        let code_dir = match e.code_dir {
            Some(d) if !d.get_ref().starts_with('/') => {
                return Err(Error::config(
                    path,
                    line_of(text, d.span().start),
                    format!("code_dir {:?} is not an absolute path", d.get_ref()),
                ));
            }
            Some(d) => Some(d.into_inner().trim_end_matches('/').to_string()),
            None => None,
        };
        let instances = match e.instances {
            Some(list) => Some(instances(path, text, list)?),
            None => None,
        };
        if hosts.iter().any(|h: &Host| h.target == target) {
            return Err(Error::config(
                path,
                line,
                format!("{} is listed twice", target.name),
            ));
        }
        hosts.push(Host {
            target,
            code_dir,
            env_file: e.env_file.map(|p| base.join(p)),
            package: e.package.map(|p| base.join(p)),
            instances,
        });
    }
    Ok(hosts)
}

/// `instances = [...]`: "default" is the default instance, any other entry
/// a named one's name, checked as `instance add` checks it; each entry once.
fn instances(
    path: &Path,
    text: &str,
    list: toml::Spanned<Vec<toml::Spanned<String>>>,
) -> Result<Vec<Instance>> {
    const NOTE: &str = "instances lists the bots the host runs: \"default\" for jarvis-supervisor.service, \
         NAME for jarvis-supervisor@NAME.service (instances = [\"default\", \"alpha\"])";
    if list.get_ref().is_empty() {
        return Err(
            Error::config(path, line_of(text, list.span().start), "instances is empty").with_note(NOTE),
        );
    }
    let mut out = Vec::new();
    for entry in list.into_inner() {
        let line = line_of(text, entry.span().start);
        let instance = match entry.get_ref().as_str() {
            "default" => Instance::Default,
            name => Instance::Named(
                name.parse()
                    .map_err(|e: Error| Error::config(path, line, e.to_string()).with_note(NOTE))?,
            ),
        };
        if out.contains(&instance) {
            return Err(
                Error::config(path, line, format!("instance {instance} is listed twice")).with_note(NOTE),
            );
        }
        out.push(instance);
    }
    Ok(out)
}

/// A hosts file for `status --hosts`: this TOML file when it has a
/// `[[host]]` table, else the plain list (one `user@host[:port]` a line).
pub fn read_any(path: &Path) -> Result<Vec<Host>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read the hosts file", path, e))?;
    if text.lines().any(|l| l.trim_start().starts_with("[[host]]")) {
        return parse(path, &text);
    }
    Ok(crate::ssh::read_hosts_file(path)?
        .into_iter()
        .map(Host::plain)
        .collect())
}

pub fn read(path: &Path) -> Result<Vec<Host>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::io("read the hosts file", path, e).with_note(format!(
            "give hosts with --host USER@HOST or --hosts FILE (see {DEFAULT_PATH}.example)"
        ))
    })?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
# the fleet
[[host]]
ssh = "root@vps1.example.org"

[[host]]
ssh = "root@10.0.0.2:2222"
code_dir = "/srv/jarvis/"
env_file = "secrets/vps2.env"
package = "/tmp/jarvis-supervisor.rpm"
"#;

    #[test]
    fn reads_hosts_with_defaults_and_relative_paths() {
        let h = parse(Path::new("/etc/js/hosts.toml"), GOOD).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].target.destination, "root@vps1.example.org");
        assert_eq!(h[0].code_dir, None);
        assert_eq!(h[0].env_file, None);
        assert_eq!(h[1].target.port, Some(2222));
        assert_eq!(h[1].code_dir.as_deref(), Some("/srv/jarvis"));
        assert_eq!(
            h[1].env_file.as_deref(),
            Some(Path::new("/etc/js/secrets/vps2.env"))
        );
        assert_eq!(
            h[1].package.as_deref(),
            Some(Path::new("/tmp/jarvis-supervisor.rpm"))
        );
    }

    fn err(text: &str) -> String {
        parse(Path::new("hosts.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = err("[[host]]\nssh = \"root@a\"\n\n[[host]]\nssh = \"root@b:x\"\n");
        assert!(e.starts_with("hosts.toml:5:") && e.contains("not a port"), "{e}");
        let e = err("[[host]]\nssh = \"root@a\"\ncode_dir = 3\n");
        assert!(e.starts_with("hosts.toml:3:"), "{e}");
        let e = err("[[host]]\nssh = \"root@a\"\nsssh = \"x\"\n");
        assert!(e.starts_with("hosts.toml:3:") && e.contains("sssh"), "{e}");
        let e = err("[[host]]\nssh = \"root@a\"\n[[host]]\ncode_dir = \"/x\"\n");
        assert!(e.starts_with("hosts.toml:3:") && e.contains("ssh"), "{e}");
        let e = err("[[host]]\nssh = \"root@a\"\ncode_dir = \"rel\"\n");
        assert!(e.starts_with("hosts.toml:3:") && e.contains("absolute"), "{e}");
        let e = err("[[host]]\nssh = \"root@a\"\n[[host]]\nssh = \"root@a\"\n");
        assert!(e.starts_with("hosts.toml:3:") && e.contains("twice"), "{e}");
        let e = err("[[host]\n");
        assert!(e.starts_with("hosts.toml:1:"), "{e}");
        let e = err("# nothing\n");
        assert!(e.contains("no [[host]]"), "{e}");
    }

    /// Issue 26: a host says which bots it runs; an old file (without the
    /// key) is read as before, and a bad name is named by file and line,
    /// never echoed.
    #[test]
    fn instances_are_typed_and_a_bad_one_is_named_by_its_line() {
        let h = parse(
            Path::new("hosts.toml"),
            "[[host]]\nssh = \"root@a\"\ninstances = [\"default\", \"alpha\"]\n[[host]]\nssh = \"root@b\"\n",
        )
        .unwrap();
        assert_eq!(
            h[0].instances,
            Some(vec![Instance::Default, Instance::Named("alpha".parse().unwrap())])
        );
        assert_eq!(h[1].instances, None);
        let e = err("[[host]]\nssh = \"root@a\"\ninstances = [\n  \"alpha\",\n  \"TOKEN=123:secret\",\n]\n");
        assert!(
            e.starts_with("hosts.toml:5:") && e.contains("instance name"),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
        let e = err("[[host]]\nssh = \"root@a\"\ninstances = [\"alpha\", \"alpha\"]\n");
        assert!(e.starts_with("hosts.toml:3:") && e.contains("twice"), "{e}");
        let e = err("[[host]]\nssh = \"root@a\"\ninstances = \"alpha\"\n");
        assert!(e.starts_with("hosts.toml:3:"), "{e}");
        let e = err("[[host]]\nssh = \"root@a\"\n\ninstances = []\n");
        assert!(e.starts_with("hosts.toml:4:") && e.contains("empty"), "{e}");
    }

    #[test]
    fn status_reads_either_the_toml_file_or_the_plain_list() {
        let d = tempfile::tempdir().unwrap();
        let toml = d.path().join("hosts.toml");
        std::fs::write(&toml, "[[host]]\nssh = \"root@a\"\ninstances = [\"beta\"]\n").unwrap();
        let h = read_any(&toml).unwrap();
        assert_eq!(h[0].target.destination, "root@a");
        assert_eq!(
            h[0].instances,
            Some(vec![Instance::Named("beta".parse().unwrap())])
        );
        let plain = d.path().join("hosts");
        std::fs::write(&plain, "# fleet\nroot@a\nroot@b:2222\n").unwrap();
        let h = read_any(&plain).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].target.port, Some(2222));
        assert_eq!(h[1].instances, None);
    }

    #[test]
    fn the_shipped_example_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/etc/hosts.toml.example");
        let h = read(&p).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[2].instances.as_ref().map(Vec::len), Some(3));
    }
}
