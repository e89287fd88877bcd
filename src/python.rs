//! The Python helpers, kept in `python/` at the repository root and
//! embedded here, so that one module says what jarvisctl runs with Python
//! and how. Their pure parts have `python3 -m unittest` tests beside them
//! (python/tests, run by tests/python_units.rs).
//!
//! - The requirements reader: run by the interpreter that runs the bot and
//!   as the service user, it says which lines of requirements.txt (on its
//!   stdin) are installed there, as one JSON object. `check` runs it to name
//!   what is missing; `venv build` hands it to the new environment, which is
//!   switched to only when the reader passes it.
//! - The venv builder: `venv build`, `switch`, `rollback`, run by the base
//!   interpreter as the service user.
//! - The deploy's host worker: run as root on the host over ssh, sent with
//!   every call ahead of its data (see [`DEPLOY_HOST_LOADER`]).

use std::process::Command;

/// The requirements reader's source (python/requirements.py).
pub const REQUIREMENTS_READER: &str = include_str!("../python/requirements.py");

/// The venv builder's source (python/venv_build.py).
pub const VENV_BUILD: &str = include_str!("../python/venv_build.py");

/// The deploy's host worker's source (python/deploy_host.py).
pub const DEPLOY_HOST: &str = include_str!("../python/deploy_host.py");

/// Run as `python3 -c LOADER LEN ARGS...` with the worker and its data on
/// stdin: reads both, runs the worker's first LEN bytes with the rest as
/// `DATA`.
pub const DEPLOY_HOST_LOADER: &str =
    "import sys;d=sys.stdin.buffer.read();n=int(sys.argv[1]);sys.argv=sys.argv[1:];\
exec(compile(d[:n],'deploy_host.py','exec'),{'__name__':'__main__','DATA':d[n:]})";

/// `cmd` (an interpreter) set to run `source` isolated from the caller's
/// environment and site (`-I`): how the reader and the builder are run.
pub fn isolated<'a>(cmd: &'a mut Command, source: &str) -> &'a mut Command {
    cmd.args(["-I", "-c", source])
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn read(corpus: &str, hide_packaging: bool) -> serde_json::Value {
        let prelude = if hide_packaging {
            "import sys; sys.modules['packaging'] = None; sys.modules['pip'] = None\n"
        } else {
            ""
        };
        let mut child = Command::new("/usr/bin/python3")
            .args(["-I", "-c", &format!("{prelude}{}", super::REQUIREMENTS_READER)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3");
        child.stdin.take().unwrap().write_all(corpus.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The system's python3 on Debian has no packaging: the reader's own
    /// PEP 508 subset must say what packaging says, on what requirement
    /// files hold (markers of every kind, ranges, ~=, wildcards, extras,
    /// comments, continuations, options, a broken line).
    #[test]
    fn the_plain_reader_agrees_with_packaging() {
        let corpus = "# comment\n-r other.txt\npip>=20\npip<1.0\npip==23.*\npip!=23.*\npip~=23.0\npip~=22.0\n\
                      setuptools>=40,<200 ; python_version >= \"3.8\" and (os_name == \"posix\" or os_name == \"nt\")\n\
                      winonly==1.0 ; sys_platform == \"win32\"\nmaconly ; sys_platform == 'darwin'  # desktop\n\
                      linuxonly>=0 ; sys_platform == \"linux\"\nrequests[socks]>=2.0,<3 ; platform_system != \"Windows\"\n\
                      old ; python_version < \"3.0\"\nnot a requirement ==\nwrapped>=1.0 \\\n ; os_name == \"posix\"\n";
        let (full, plain) = (read(corpus, false), read(corpus, true));
        assert_eq!(full["reader"], "packaging", "this test needs python3-pip: {full}");
        assert_eq!(plain["reader"], "pep508-subset");
        let kinds = |v: &serde_json::Value| -> Vec<(u64, String, String)> {
            v["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["line"].as_u64().unwrap(),
                        r["name"].as_str().unwrap_or("").to_string(),
                        r["kind"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        assert_eq!(kinds(&plain), kinds(&full), "{plain}\n{full}");
        assert!(
            kinds(&full).iter().any(|k| k.2 == "skipped") && kinds(&full).iter().any(|k| k.2 == "mismatch")
        );
    }

    /// The loader as deploy runs it on a host: the worker, then its data,
    /// on stdin; the worker sees its own arguments and the data as `DATA`.
    #[test]
    fn the_loader_runs_the_worker_on_the_data_after_it() {
        let root = tempfile::tempdir().unwrap();
        let mut child = Command::new("python3")
            .args([
                "-c",
                super::DEPLOY_HOST_LOADER,
                &super::DEPLOY_HOST.len().to_string(),
                "plan",
            ])
            .arg(root.path())
            .args(["-", "@data"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut input = super::DEPLOY_HOST.as_bytes().to_vec();
        input.extend_from_slice(b"d\t0750\troot:root\t0\t-\tbots\nf\t0640\troot:root\t1\tabc\tbots/x.py\n");
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{v}");
        assert_eq!(v["put"], serde_json::json!(["bots/x.py"]), "{v}");
        assert_eq!(v["mkdir"], serde_json::json!(["bots"]), "{v}");
    }
}
