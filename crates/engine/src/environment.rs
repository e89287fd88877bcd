//! The environment a process of the program starts with, as systemd gives
//! it: the manager's own variables, then the unit's `Environment=`, then
//! each `EnvironmentFile=` in order; a later assignment of a name wins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::Account;
use jarvis_model::error::{Error, Result};
use jarvis_model::service::Service;

/// PATH as systemd sets it for a service.
pub(super) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The largest EnvironmentFile= read (a link to /dev/zero must not make
/// root read gigabytes); far above any real .env.
const ENV_MAX: u64 = 64 << 20;

/// What the engine knows at a start, beside the unit.
pub struct Start<'a> {
    /// systemd's INVOCATION_ID of this start.
    pub invocation_id: &'a str,
    pub account: Option<&'a Account>,
    pub runtime_dirs: &'a [PathBuf],
    /// The notify socket, for the main process only.
    pub notify_socket: Option<&'a Path>,
    /// The command, as an error names it ("ExecStart=", "ExecStartPre= #1").
    pub what: &'a str,
}

/// The variables, in order of first assignment, each with its last value.
pub fn assemble(svc: &Service, start: &Start<'_>) -> Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("INVOCATION_ID".into(), start.invocation_id.to_string()),
    ];
    if let Some(a) = start.account {
        env.push(("HOME".into(), a.home.display().to_string()));
        env.push(("USER".into(), a.name.clone()));
        env.push(("LOGNAME".into(), a.name.clone()));
        env.push(("SHELL".into(), a.shell.display().to_string()));
    }
    if !start.runtime_dirs.is_empty() {
        let dirs: Vec<String> = start
            .runtime_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        env.push(("RUNTIME_DIRECTORY".into(), dirs.join(":")));
    }
    if let Some(n) = start.notify_socket {
        env.push(("NOTIFY_SOCKET".into(), n.display().to_string()));
    }
    env.extend(svc.environment.iter().cloned());
    for f in &svc.environment_files {
        // Read as root from a directory the service user may write: a
        // link to a root-only KEY=VALUE file must not hand its values to
        // the bot (systemd follows it; the preflight, as the service
        // user, then refuses the start).
        match jarvis_model::untrusted::read(&f.path, start.account.map(|a| a.uid), ENV_MAX) {
            Ok(bytes) => {
                let parsed = jarvis_model::envfile::parse(&bytes);
                if parsed.refused {
                    return Err(Error::new(format!(
                        "EnvironmentFile={} is not valid UTF-8; systemd refuses it too",
                        f.path.display()
                    ))
                    .with_note("check it with: jarvisctl env lint FILE"));
                }
                env.extend(parsed.vars.into_iter().map(|v| (v.key, v.value)));
            }
            Err(e) if f.optional && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("read EnvironmentFile", &f.path, e)),
        }
    }
    let out = last_wins(env);
    if let Some(why) = jarvis_model::envfile::exec_refusal(out.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        return Err(Error::new(format!(
            "cannot start {}: the environment is too large: {why}",
            start.what
        ))
        .with_note("keep large data in a file under data/ and put its path in the .env; check it with: jarvisctl check"));
    }
    Ok(out)
}

/// Later assignments win, as in systemd; keep the last of each name at the
/// place of its first (an index, not a scan per name: a huge .env stays
/// linear).
fn last_wins(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for (k, v) in env {
        match at.get(&k) {
            Some(&i) => out[i].1 = v,
            None => {
                at.insert(k.clone(), out.len());
                out.push((k, v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jarvis_model::unit::ServicePath;

    fn service(unit: &str) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("test.service");
        std::fs::write(&file, unit).unwrap();
        let u = jarvis_model::unit::Unit::load_file(&file).unwrap();
        Service::from_unit(&u).unwrap()
    }

    fn start<'a>(notify: Option<&'a Path>, account: Option<&'a Account>, dirs: &'a [PathBuf]) -> Start<'a> {
        Start {
            invocation_id: "0123456789abcdef0123456789abcdef",
            account,
            runtime_dirs: dirs,
            notify_socket: notify,
            what: "ExecStart=",
        }
    }

    fn keys(env: &[(String, String)]) -> Vec<&str> {
        env.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_managers_variables_come_first_then_the_units_then_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let envfile = dir.path().join(".env");
        std::fs::write(&envfile, "API_KEY=secret\nPYTHONUNBUFFERED=0\nEXTRA=1\n").unwrap();
        let mut svc = service(
            "[Service]\nExecStart=/usr/bin/python3 supervisor.py\nEnvironment=PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1\n",
        );
        svc.environment_files = vec![ServicePath {
            path: envfile,
            optional: false,
        }];
        let account = Account {
            name: "jarvis".into(),
            uid: 999,
            gid: 999,
            home: "/var/lib/jarvis".into(),
            shell: "/usr/sbin/nologin".into(),
        };
        let dirs = [PathBuf::from("/run/jarvis-supervisor")];
        let sock = Path::new("/run/jarvis-supervisor-run/notify");
        // No owner check in a unit test (the account's uid is not ours).
        let mut s = start(Some(sock), None, &dirs);
        let env = assemble(&svc, &s).unwrap();
        assert_eq!(
            keys(&env),
            [
                "PATH",
                "INVOCATION_ID",
                "RUNTIME_DIRECTORY",
                "NOTIFY_SOCKET",
                "PYTHONUNBUFFERED",
                "PYTHONDONTWRITEBYTECODE",
                "API_KEY",
                "EXTRA"
            ]
        );
        // The file's value wins over the unit's, at the unit's place.
        assert_eq!(get(&env, "PYTHONUNBUFFERED"), Some("0"));
        assert_eq!(
            get(&env, "NOTIFY_SOCKET"),
            Some("/run/jarvis-supervisor-run/notify")
        );
        assert_eq!(
            get(&env, "INVOCATION_ID"),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(get(&env, "PATH"), Some(DEFAULT_PATH));

        // With a service user: its HOME, USER, LOGNAME, SHELL after the
        // invocation id; a start command gets no NOTIFY_SOCKET.
        svc.environment_files.clear();
        s = start(None, Some(&account), &[]);
        let env = assemble(&svc, &s);
        // The account is only read for its names here (no file to open).
        let env = env.unwrap();
        assert_eq!(
            keys(&env),
            [
                "PATH",
                "INVOCATION_ID",
                "HOME",
                "USER",
                "LOGNAME",
                "SHELL",
                "PYTHONUNBUFFERED",
                "PYTHONDONTWRITEBYTECODE"
            ]
        );
        assert_eq!(get(&env, "HOME"), Some("/var/lib/jarvis"));
        assert_eq!(get(&env, "NOTIFY_SOCKET"), None);
    }

    #[test]
    fn the_unit_can_override_the_managers_path() {
        let svc = service("[Service]\nExecStart=/bin/true\nEnvironment=PATH=/opt/bot/bin\n");
        let env = assemble(&svc, &start(None, None, &[])).unwrap();
        assert_eq!(keys(&env), ["PATH", "INVOCATION_ID"]);
        assert_eq!(get(&env, "PATH"), Some("/opt/bot/bin"));
    }

    #[test]
    fn a_missing_optional_file_is_skipped_and_a_required_one_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.env");
        let mut svc = service("[Service]\nExecStart=/bin/true\n");
        svc.environment_files = vec![ServicePath {
            path: missing.clone(),
            optional: true,
        }];
        assert!(assemble(&svc, &start(None, None, &[])).is_ok());
        svc.environment_files[0].optional = false;
        let e = assemble(&svc, &start(None, None, &[])).unwrap_err().to_string();
        assert!(e.starts_with("cannot read EnvironmentFile"), "{e}");
        assert!(e.contains(&missing.display().to_string()), "{e}");
    }

    #[test]
    fn a_file_that_is_not_utf8_is_refused_as_systemd_does() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(".env");
        std::fs::write(&f, b"KEY=\xff\xfe\n").unwrap();
        let mut svc = service("[Service]\nExecStart=/bin/true\n");
        svc.environment_files = vec![ServicePath {
            path: f.clone(),
            optional: false,
        }];
        let e = assemble(&svc, &start(None, None, &[])).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "EnvironmentFile={} is not valid UTF-8; systemd refuses it too (note: check it with: jarvisctl env lint FILE)",
                f.display()
            )
        );
    }

    #[test]
    fn an_environment_too_large_to_exec_names_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(".env");
        // One value over the kernel's 128 KiB per string.
        std::fs::write(&f, format!("BIG={}\n", "x".repeat(200 * 1024))).unwrap();
        let mut svc = service("[Service]\nExecStart=/bin/true\n");
        svc.environment_files = vec![ServicePath {
            path: f,
            optional: false,
        }];
        let mut s = start(None, None, &[]);
        s.what = "ExecStartPre= #2";
        let e = assemble(&svc, &s).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot start ExecStartPre= #2: the environment is too large"),
            "{e}"
        );
        assert!(!e.contains("xxxx"), "the value is never shown: {e}");
    }
}
