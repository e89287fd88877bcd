//! What a host has, read in one ssh call: its package format, init,
//! installed version and tools, and from its installed unit and drop-ins,
//! who runs the bot and where its code lives.

use super::error::{DeployError, Result};

/// What the host has: its package format, init, installed version, tools,
/// and, from its installed unit and drop-ins, who runs the bot and where
/// its code lives.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    pub pm: PackageManager,
    pub init: Init,
    pub version: Option<String>,
    pub rsync: bool,
    pub flock: bool,
    pub python: bool,
    /// The unit that runs the code, e.g. `jarvis-supervisor.service`.
    pub unit: String,
    /// The service user and group (`User=`, `Group=`), as `user:group`.
    pub owner: String,
    /// The code root (`WorkingDirectory=`).
    pub code_dir: String,
    /// The unit's `ExecStart=`, in words: which interpreter and entry point
    /// the deploy's compile check uses.
    pub exec_start: Vec<String>,
    /// Why `/tmp` cannot take a small write (full, read-only), if it cannot.
    pub tmp_problem: Option<String>,
}

/// The host's package manager, as the probe names it (`pm=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PackageManager {
    Dpkg,
    Rpm,
    /// Neither dpkg nor rpm: the deploy refuses the host.
    #[default]
    None,
}

impl PackageManager {
    fn from_probe(word: &str) -> Self {
        match word {
            "dpkg" => Self::Dpkg,
            "rpm" => Self::Rpm,
            _ => Self::None,
        }
    }

    /// The extension of its package files.
    pub fn package_ext(self) -> &'static str {
        match self {
            Self::Rpm => "rpm",
            Self::Dpkg | Self::None => "deb",
        }
    }
}

impl std::fmt::Display for PackageManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Dpkg => "dpkg",
            Self::Rpm => "rpm",
            Self::None => "none",
        })
    }
}

/// What runs the bot on the host (`init=`): systemd, or the package's
/// fallback engine behind the init script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Init {
    Systemd,
    #[default]
    Sysvinit,
}

impl std::fmt::Display for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Systemd => "systemd",
            Self::Sysvinit => "sysvinit",
        })
    }
}

/// Marks the start of a unit file in the probe's output.
const FILE_MARK: &str = "@@jarvis-deploy-file ";

pub const PROBE: &str = r#"if command -v dpkg-query >/dev/null 2>&1; then pm=dpkg; v=$(dpkg-query -W -f='${Status} ${Version}' jarvis-supervisor 2>/dev/null | awk '$3=="installed"{print $4}'); l=$(dpkg-query -L jarvis-supervisor 2>/dev/null);
elif command -v rpm >/dev/null 2>&1; then pm=rpm; v=$(rpm -q --qf '%{VERSION}-%{RELEASE}' jarvis-supervisor 2>/dev/null) || v=; l=$(rpm -ql jarvis-supervisor 2>/dev/null);
else pm=none; v=; l=; fi
echo "pm=$pm"
echo "version=$v"
if [ -d /run/systemd/system ]; then echo init=systemd; else echo init=sysvinit; fi
command -v rsync >/dev/null 2>&1 && echo rsync=yes
command -v flock >/dev/null 2>&1 && echo flock=yes
command -v python3 >/dev/null 2>&1 && echo python=yes
if t=$(mktemp /tmp/jarvis-deploy-probe.XXXXXX 2>&1); then
  if e=$(head -c 65536 /dev/zero 2>&1 > "$t"); then echo tmp=ok; else echo "tmp=$e"; fi; rm -f "$t"
else echo "tmp=$t"; fi
for n in $( (echo jarvis-supervisor.service; printf '%s
' "$l" | sed -n 's|.*/systemd/system/\([^/]*\.service\)$||p') | sort -u); do
  for d in /lib/systemd/system /usr/lib/systemd/system /run/systemd/system /etc/systemd/system; do
    for f in "$d/$n" "$d/$n.d"/*.conf; do
      [ -f "$f" ] || continue
      echo "@@jarvis-deploy-file $f"; cat "$f"; echo
    done
  done
done
exit 0"#;

/// Parses the probe's output: the facts, then the unit chosen from the
/// files it printed.
pub fn parse_probe(out: &str) -> Result<Facts> {
    let mut f = Facts::default();
    let mut files: Vec<(String, String)> = Vec::new();
    let mut tmp: Option<String> = None;
    for line in out.lines() {
        if let Some(path) = line.strip_prefix(FILE_MARK) {
            files.push((path.to_string(), String::new()));
            continue;
        }
        if let Some((_, body)) = files.last_mut() {
            body.push_str(line);
            body.push('\n');
            continue;
        }
        match line.split_once('=') {
            Some(("pm", v)) => f.pm = PackageManager::from_probe(v),
            Some(("init", v)) => {
                f.init = if v == "systemd" {
                    Init::Systemd
                } else {
                    Init::Sysvinit
                }
            }
            Some(("version", v)) if !v.is_empty() => f.version = Some(v.into()),
            Some(("rsync", _)) => f.rsync = true,
            Some(("flock", _)) => f.flock = true,
            Some(("python", _)) => f.python = true,
            Some(("tmp", v)) => tmp = Some(v.to_string()),
            _ => {}
        }
    }
    // A probe that printed no tmp= line could not run the check at all.
    f.tmp_problem = match tmp.as_deref() {
        Some("ok") => None,
        Some(why) => Some(why.rsplit(": ").next().unwrap_or(why).trim().to_string()),
        None => Some("the probe could not try it".into()),
    };
    let (unit, owner, code, exec) = host_unit(&files)?;
    f.unit = unit;
    f.owner = owner;
    f.code_dir = code;
    f.exec_start = exec;
    Ok(f)
}

/// The unit among `files` that runs the code (it has a
/// `WorkingDirectory=`), read with the same parser and precedence as
/// `check` and `run`: (name, "user:group", code root, ExecStart= words).
fn host_unit(files: &[(String, String)]) -> Result<(String, String, String, Vec<String>)> {
    let tmp = tempfile::tempdir()
        .map_err(|e| DeployError::TempFile(format!("cannot make a temporary directory: {e}")))?;
    let mut names: Vec<String> = Vec::new();
    for (path, body) in files {
        let rel = path.trim_start_matches('/');
        if rel.contains("..") {
            continue;
        }
        let dest = tmp.path().join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| DeployError::TempFile(e.to_string()))?;
        }
        std::fs::write(&dest, body).map_err(|e| DeployError::TempFile(e.to_string()))?;
        let name = rel.rsplit('/').next().unwrap_or("");
        if name.ends_with(".service") && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    let paths = jarvis_model::paths::Paths::rooted(tmp.path());
    let mut found = Vec::new();
    for name in &names {
        let unit = jarvis_model::unit::Unit::load_named(&paths, name)?;
        if let Some(wd) = unit.working_directory() {
            let owner = format!("{}:{}", unit.user(), unit.group().unwrap_or_default());
            found.push((
                name.clone(),
                owner,
                wd.path.to_string_lossy().trim_end_matches('/').to_string(),
                unit.exec_start(),
            ));
        }
    }
    match found.len() {
        0 => Err(DeployError::NoUnit(if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        })),
        1 => Ok(found.remove(0)),
        _ => found
            .iter()
            .position(|(n, _, _, _)| n == jarvis_model::paths::UNIT)
            .map(|i| found.remove(i))
            .ok_or_else(|| {
                DeployError::SeveralUnits(found.iter().map(|f| f.0.as_str()).collect::<Vec<_>>().join(", "))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "[Service]\nUser=jarvis\nGroup=jarvis\nWorkingDirectory=/home/jarvis/Jarvis\nExecStart=/usr/bin/python3 bots/supervisor.py\n";

    fn probe_output(files: &[(&str, &str)]) -> String {
        let mut out = String::from(
            "pm=dpkg\nversion=0.1.0-1\ninit=systemd\nrsync=yes\nflock=yes\npython=yes\ntmp=ok\n",
        );
        for (path, body) in files {
            out.push_str(&format!("{FILE_MARK}{path}\n{body}\n"));
        }
        out
    }

    #[test]
    fn the_code_root_user_and_unit_come_from_the_hosts_unit_and_drop_ins() {
        let out = probe_output(&[
            (
                "/usr/lib/systemd/system/jarvis-supervisor-health.service",
                "[Service]\nExecStart=/usr/bin/jarvisctl status\n",
            ),
            ("/usr/lib/systemd/system/jarvis-supervisor.service", MAIN),
            (
                "/etc/systemd/system/jarvis-supervisor.service.d/10-root.conf",
                "[Service]\nWorkingDirectory=/srv/bot/\nUser=trader\n",
            ),
        ]);
        let f = parse_probe(&out).unwrap();
        assert_eq!(
            (f.pm, f.init, f.version.as_deref()),
            (PackageManager::Dpkg, Init::Systemd, Some("0.1.0-1"))
        );
        assert!(f.rsync && f.flock && f.python);
        assert_eq!(f.unit, "jarvis-supervisor.service");
        assert_eq!(f.code_dir, "/srv/bot");
        assert_eq!(f.owner, "trader:jarvis");
        assert_eq!(f.tmp_problem, None);
        assert_eq!(f.exec_start, ["/usr/bin/python3", "bots/supervisor.py"]);
    }

    /// The probe's /tmp check, run by a real sh: a /tmp that takes the
    /// write is fine; the error of one that does not is kept, for the
    /// refusal to name.
    #[test]
    fn a_tmp_that_cannot_take_a_write_is_named() {
        let run = |script: &str| {
            let out = std::process::Command::new("sh")
                .args(["-c", script])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let check: String = PROBE
            .lines()
            .skip_while(|l| !l.starts_with("if t=$(mktemp"))
            .take(4)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(check.contains("tmp=ok"), "{check}");
        assert!(run(&check).contains("tmp=ok"), "this machine's /tmp takes 64 KiB");
        let out = run(&check.replace("/tmp/jarvis-deploy-probe", "/nonexistent/jarvis-deploy-probe"));
        let mut with = probe_output(&[("/usr/lib/systemd/system/jarvis-supervisor.service", MAIN)]);
        with = with.replace("tmp=ok\n", &out);
        let f = parse_probe(&with).unwrap();
        let why = f
            .tmp_problem
            .expect("a /tmp that cannot take a file is a problem");
        assert!(why.contains("No such file or directory"), "{why}");
    }

    #[test]
    fn a_host_without_the_unit_is_told_to_install_the_package() {
        let e = parse_probe(&probe_output(&[])).unwrap_err().to_string();
        assert!(e.contains("install the package first"), "{e}");
        // A unit file in /etc overrides the packaged one, as in systemd.
        let f = parse_probe(&probe_output(&[
            ("/usr/lib/systemd/system/jarvis-supervisor.service", MAIN),
            (
                "/etc/systemd/system/jarvis-supervisor.service",
                "[Service]\nUser=bot\nWorkingDirectory=/opt/code\n",
            ),
        ]))
        .unwrap();
        assert_eq!((f.code_dir.as_str(), f.owner.as_str()), ("/opt/code", "bot:"));
    }
}
