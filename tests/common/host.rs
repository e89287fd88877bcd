//! A temporary root for the tests that run the built binary as root: the
//! shipped unit with `nobody` as the service user, set up once, and a
//! root-only file outside the service's tree (what an attack must not
//! reach). Root only.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// The shipped unit with `nobody` as the service user, under a temporary
/// root, set up once; a root-only file outside the service's tree.
pub struct Host {
    pub dir: tempfile::TempDir,
}

impl Host {
    pub fn new() -> Host {
        require_root("it runs jarvisctl as root and the attacker as nobody");
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let h = Host { dir };
        h.write(
            "usr/lib/systemd/system/jarvis-supervisor.service",
            &fs::read_to_string(repo("systemd/jarvis-supervisor.service")).unwrap(),
        );
        h.write(
            "etc/systemd/system/jarvis-supervisor.service.d/10-test.conf",
            "[Service]\nUser=nobody\nGroup=nogroup\n",
        );
        fs::create_dir_all(h.path("home/jarvis")).unwrap();
        std::os::unix::fs::chown(h.path("home/jarvis"), Some(65534), Some(65534)).unwrap();
        let out = h.setup();
        assert!(out.status.success(), "{}", text(&out));
        fs::create_dir_all(h.path("root-only")).unwrap();
        fs::set_permissions(h.path("root-only"), fs::Permissions::from_mode(0o755)).unwrap();
        h.write("root-only/shadow", "root:$6$hash:19000:0:99999:7:::\n");
        fs::set_permissions(h.path("root-only/shadow"), fs::Permissions::from_mode(0o600)).unwrap();
        h
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    pub fn setup(&self) -> Output {
        Command::new(BIN)
            .arg("--root")
            .arg(self.dir.path())
            .arg("setup")
            .output()
            .unwrap()
    }

    /// Owner, group and mode of the root-only file: what must not change.
    pub fn target(&self) -> (u32, u32, u32) {
        let m = fs::metadata(self.path("root-only/shadow")).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    }
}

/// The end of a long output, for a failure message.
pub fn tail(s: &str) -> &str {
    let mut at = s.len().saturating_sub(3000);
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}

/// How a root command ended: its output, or that it had to be killed.
pub struct Ran {
    pub out: Output,
    pub secs: f64,
}

impl Ran {
    pub fn all(&self) -> String {
        text(&self.out)
    }

    /// No panic, whatever the input: a panic exits 101 and says "panicked".
    pub fn no_panic(&self, what: &str) {
        let all = self.all();
        assert!(
            self.out.status.code() != Some(101) && !all.contains("panicked"),
            "{what} panicked:\n{}",
            tail(&all)
        );
    }
}

impl Host {
    /// Writes `rel` under the code root as the service user would: the
    /// bytes go through a file only root can see into the service user's
    /// own copy, mode 0600.
    pub fn write_as_service_user(&self, rel: &str, bytes: &[u8]) {
        let staged = tempfile::NamedTempFile::new().unwrap();
        fs::write(staged.path(), bytes).unwrap();
        fs::set_permissions(staged.path(), fs::Permissions::from_mode(0o644)).unwrap();
        as_nobody(&format!(
            "cp {} {to} && chmod 600 {to}",
            staged.path().display(),
            to = self.code(rel).display()
        ));
    }

    pub fn code(&self, rel: &str) -> PathBuf {
        self.path("home/jarvis/Jarvis").join(rel)
    }

    /// `jarvisctl --root TREE ARGS` as root. `closed_stdout`: its stdout is
    /// a pipe whose reader is gone, as in `jarvisctl status | head -0`. A
    /// run still going after 60 s is killed and fails the test: a FIFO or
    /// /dev/zero must never hold root's commands.
    pub fn run(&self, args: &[&str], closed_stdout: bool) -> Ran {
        self.run_with(args, closed_stdout, &[], None)
    }

    /// `run`, from the working directory `cwd` when given.
    pub fn run_in(&self, cwd: Option<&Path>, args: &[&str], closed_stdout: bool) -> Ran {
        self.run_with(args, closed_stdout, &[], cwd)
    }

    /// As `run`, with variables added to root's environment and in `cwd`.
    pub fn run_with(
        &self,
        args: &[&str],
        closed_stdout: bool,
        env: &[(&str, &str)],
        cwd: Option<&Path>,
    ) -> Ran {
        self.run_limited(args, closed_stdout, env, cwd, Duration::from_secs(60))
            .unwrap_or_else(|said| {
                panic!(
                    "jarvisctl {args:?} still ran after 60 s; it said:\n{}",
                    tail(&said)
                )
            })
    }

    /// `run_in`, killed after `limit`: Err holds what it said until then.
    pub fn run_within(
        &self,
        cwd: Option<&Path>,
        args: &[&str],
        closed_stdout: bool,
        limit: Duration,
    ) -> Result<Ran, String> {
        self.run_limited(args, closed_stdout, &[], cwd, limit)
    }

    fn run_limited(
        &self,
        args: &[&str],
        closed_stdout: bool,
        env: &[(&str, &str)],
        cwd: Option<&Path>,
        limit: Duration,
    ) -> Result<Ran, String> {
        let mut cmd = Command::new(super::bin_under_attack().0);
        cmd.arg("--root")
            .arg(self.dir.path())
            .args(args)
            .envs(env.iter().copied());
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        cmd.stdin(Stdio::null()).stderr(Stdio::piped());
        if closed_stdout {
            let (reader, writer) = std::io::pipe().unwrap();
            drop(reader);
            cmd.stdout(writer);
        } else {
            cmd.stdout(Stdio::piped());
        }
        let t0 = Instant::now();
        let mut child = cmd.spawn().unwrap();
        // Drained while it runs: a full pipe must not stall it.
        let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                buf
            })
        };
        let stdout = drain(child.stdout.take().map(|r| Box::new(r) as _));
        let stderr = drain(child.stderr.take().map(|r| Box::new(r) as _));
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if t0.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                let err = stderr.join().unwrap();
                return Err(String::from_utf8_lossy(&err).into_owned());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = Output {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        };
        Ok(Ran {
            out,
            secs: t0.elapsed().as_secs_f64(),
        })
    }
}
