//! Issue 8: the release pipeline. The workflows call one script,
//! `ci/steps.sh`, for every command; these tests hold them to it, run the
//! script's local steps exactly as the workflows run them, and lint the
//! workflows (actionlint) and the fleet playbook (ansible-playbook
//! --syntax-check, ansible-lint). The linters live in a venv under target/
//! that `cargo xtask test` installs, so those tests are ignored by a plain
//! `cargo test`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn workflows() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(repo().join(".github/workflows"))
        .expect(".github/workflows")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    v.sort();
    assert!(v.len() >= 2, "expected ci.yml and release.yml, found {v:?}");
    v
}

/// Every step of every job: (workflow, job, step).
fn steps(path: &Path) -> Vec<(String, Value)> {
    let doc: Value = serde_norway::from_str(&fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    let jobs = doc["jobs"].as_mapping().expect("jobs");
    let mut out = Vec::new();
    for (name, job) in jobs {
        let name = name.as_str().unwrap().to_string();
        for step in job["steps"].as_sequence().expect("steps") {
            out.push((name.clone(), step.clone()));
        }
    }
    out
}

/// The `run:` of the first step in `workflow` whose command is
/// `ci/steps.sh STEP ...`.
fn run_line(workflow: &str, step: &str) -> String {
    let path = repo().join(".github/workflows").join(workflow);
    steps(&path)
        .into_iter()
        .filter_map(|(_, s)| s["run"].as_str().map(str::to_string))
        .find(|r| r.split_whitespace().nth(1) == Some(step))
        .unwrap_or_else(|| panic!("no `ci/steps.sh {step}` step in {workflow}"))
}

/// Run a workflow's `run:` line as the runner does (bash -e, repository
/// root as the working directory) with the given environment.
fn run_as_workflow(line: &str, env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", line])
        .current_dir(repo())
        .envs(env.iter().copied())
        .output()
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn every_run_step_calls_the_shared_script_and_every_action_is_pinned() {
    let script = fs::read_to_string(repo().join("ci/steps.sh")).expect("ci/steps.sh");
    let (mut runs, mut uses) = (0, 0);
    for wf in workflows() {
        let name = wf.file_name().unwrap().to_string_lossy().into_owned();
        for (job, step) in steps(&wf) {
            if let Some(run) = step["run"].as_str() {
                runs += 1;
                // One line, the script and a step name it knows, with only
                // quoted variables or plain words as arguments: no inline
                // commands, pipes, redirections or substitutions.
                let words: Vec<&str> = run.split_whitespace().collect();
                let plain = |w: &&str| {
                    let var = w.strip_prefix("\"$").and_then(|w| w.strip_suffix('"'));
                    var.is_some_and(|v| v.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                        || w.chars().all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
                };
                assert!(
                    run.trim().lines().count() == 1
                        && words[0] == "ci/steps.sh"
                        && words.len() >= 2
                        && words[1..].iter().all(plain),
                    "{name} job {job}: `run: {run}` must be `ci/steps.sh STEP [WORD|\"$VAR\"...]`"
                );
                assert!(
                    script.contains(&format!("\n{})\n", words[1])),
                    "{name} job {job}: ci/steps.sh has no step {}",
                    words[1]
                );
            }
            if let Some(action) = step["uses"].as_str() {
                uses += 1;
                let (_, reference) = action
                    .split_once('@')
                    .unwrap_or_else(|| panic!("{name} job {job}: `uses: {action}` has no version"));
                assert!(
                    reference.len() == 40 && reference.chars().all(|c| c.is_ascii_hexdigit()),
                    "{name} job {job}: `uses: {action}` is not pinned to a full commit SHA"
                );
                // The version it stands for, as a comment on the same line.
                let text = fs::read_to_string(&wf).unwrap();
                let line = text.lines().find(|l| l.contains(action)).unwrap();
                assert!(
                    line.split_once('#')
                        .is_some_and(|(_, c)| c.trim().starts_with('v')),
                    "{name}: `{line}` needs a `# vX.Y.Z` comment"
                );
            }
            assert!(
                step["run"].is_string() || step["uses"].is_string(),
                "{name} job {job}: a step without run or uses"
            );
        }
    }
    println!("figures: {runs} run steps, all ci/steps.sh; {uses} actions, all pinned by SHA");
    assert!(runs > 0 && uses > 0);
}

#[test]
fn every_job_has_least_permissions_and_cargo_is_cached() {
    for wf in workflows() {
        let name = wf.file_name().unwrap().to_string_lossy().into_owned();
        let doc: Value = serde_norway::from_str(&fs::read_to_string(&wf).unwrap()).unwrap();
        assert_eq!(
            doc["permissions"]["contents"].as_str(),
            Some("read"),
            "{name}: the workflow's default must be contents: read"
        );
        for (job, body) in doc["jobs"].as_mapping().unwrap() {
            if let Some(p) = body["permissions"].as_mapping() {
                // Only the publishing job writes, and only contents.
                for (k, v) in p {
                    if v.as_str() == Some("write") {
                        assert_eq!(
                            (k.as_str(), job.as_str()),
                            (Some("contents"), Some("publish")),
                            "{name}: job {job:?} asks for {k:?}: write"
                        );
                    }
                }
            }
        }
        let text = fs::read_to_string(&wf).unwrap();
        if text.contains("cargo") || text.contains("ci/steps.sh test") {
            assert!(text.contains("actions/cache@"), "{name}: cargo is not cached");
        }
    }
}

#[test]
fn fmt_step_runs_as_the_workflow_runs_it() {
    let line = run_line("ci.yml", "fmt");
    let (code, text) = run_as_workflow(&line, &[]);
    assert_eq!(code, 0, "`{line}` failed:\n{text}");
}

#[test]
fn tag_check_accepts_the_matching_tag_and_rejects_another() {
    let line = run_line("release.yml", "tag-check");
    assert!(line.contains("$GITHUB_REF_NAME"), "{line}");
    let cargo = fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let version = cargo
        .split("[package]")
        .nth(1)
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .and_then(|v| v.strip_suffix('"'))
        .expect("package version");
    let good = format!("v{version}");
    let (code, text) = run_as_workflow(&line, &[("GITHUB_REF_NAME", &good)]);
    assert_eq!(code, 0, "{good} must pass:\n{text}");
    let (code, text) = run_as_workflow(&line, &[("GITHUB_REF_NAME", "v99.0.0")]);
    assert_eq!(code, 1, "v99.0.0 must fail:\n{text}");
    assert!(
        text.contains("Cargo.toml") && text.contains("debian/changelog"),
        "{text}"
    );
    println!("figures: {good} accepted; v99.0.0 rejected with: {}", text.trim());
}

#[test]
fn release_notes_are_the_changelog_section() {
    let (code, text) = run_as_workflow("ci/steps.sh notes \"$V\"", &[("V", "0.1.0")]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("* "), "{text}");
    assert!(
        !text.contains(" -- "),
        "the trailer is not part of the notes:\n{text}"
    );
}

fn tool(var: &str) -> PathBuf {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("${var} is not set: run these through `cargo xtask test`, which installs the linters under target/")
    });
    assert!(p.exists(), "${var} = {} does not exist", p.display());
    p
}

#[test]
#[ignore = "needs the linters that cargo xtask test installs under target/"]
fn actionlint_passes_on_every_workflow() {
    let actionlint = tool("JARVIS_ACTIONLINT");
    let files = workflows();
    let out = Command::new(&actionlint)
        .args(&files)
        .current_dir(repo())
        .output()
        .expect("actionlint");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "actionlint:\n{text}");
    println!("figures: actionlint passed on {} workflows\n{text}", files.len());
}

#[test]
#[ignore = "needs the linters that cargo xtask test installs under target/"]
fn ansible_playbook_passes_syntax_check_and_ansible_lint() {
    let bin = tool("JARVIS_PY_BIN");
    let dir = repo().join("packaging/ansible");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let syntax = Command::new(bin.join("ansible-playbook"))
        .args(["--syntax-check", "-i", "inventory.example.ini", "site.yml"])
        .current_dir(&dir)
        .env("PATH", &path)
        .output()
        .expect("ansible-playbook");
    assert!(
        syntax.status.success(),
        "--syntax-check:\n{}{}",
        String::from_utf8_lossy(&syntax.stdout),
        String::from_utf8_lossy(&syntax.stderr)
    );
    let lint = Command::new(bin.join("ansible-lint"))
        .current_dir(&dir)
        .env("PATH", &path)
        .env("NO_COLOR", "1")
        .output()
        .expect("ansible-lint");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    assert!(lint.status.success(), "ansible-lint:\n{text}");
    println!("figures: {}", text.lines().last().unwrap_or_default());
}

/// A throwaway GNUPGHOME; its agent is stopped on drop.
struct Gpg(tempfile::TempDir);

impl Gpg {
    fn new() -> Gpg {
        Gpg(tempfile::Builder::new()
            .prefix("jarvis-gpg-")
            .tempdir_in("/tmp")
            .unwrap())
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.0.path())
            .args([
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .expect("gpg");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.0.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

#[test]
#[ignore = "needs gpg: run by cargo xtask test"]
fn publish_signs_sha256sums_and_takes_the_changelog_section_as_notes() {
    // The publish step as the workflow runs it, in a copy of the files it
    // reads, with `gh` replaced by a recorder and a signing key made here.
    let line = run_line("release.yml", "publish");
    let tree = tempfile::tempdir().unwrap();
    let t = tree.path();
    for f in ["ci/steps.sh", "debian/changelog", "Cargo.toml"] {
        fs::create_dir_all(t.join(f).parent().unwrap()).unwrap();
        fs::copy(repo().join(f), t.join(f)).unwrap();
    }
    let dir = line.split_whitespace().nth(2).expect("publish DIR TAG");
    fs::create_dir_all(t.join(dir)).unwrap();
    for p in [
        "jarvis-supervisor_0.1.0-1_amd64.deb",
        "jarvis-supervisor_0.1.0-1_arm64.deb",
        "jarvis-supervisor-0.1.0-1.x86_64.rpm",
        "jarvis-supervisor-0.1.0-1.aarch64.rpm",
    ] {
        fs::write(t.join(dir).join(p), p).unwrap();
    }
    let bin = t.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::write(
        bin.join("gh"),
        format!(
            "#!/bin/sh\necho \"$@\" > {0}/gh-args\ncp NOTES.md {0}/notes\n",
            t.display()
        ),
    )
    .unwrap();
    assert!(Command::new("chmod")
        .arg("755")
        .arg(bin.join("gh"))
        .status()
        .unwrap()
        .success());

    let key = Gpg::new();
    key.run(&[
        "--quick-gen-key",
        "jarvis release test <test@example.org>",
        "ed25519",
        "sign",
        "never",
    ]);
    let secret = String::from_utf8(key.run(&["--armor", "--export-secret-keys"]).stdout).unwrap();
    let public = t.join("public.gpg");
    fs::write(&public, key.run(&["--export"]).stdout).unwrap();

    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &line])
        .current_dir(t)
        .env("PATH", &path)
        .env("GITHUB_REF_NAME", "v0.1.0")
        .env("GH_TOKEN", "unused")
        .env("JARVIS_SIGNING_KEY", &secret)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "`{line}`:\n{text}");

    let sums = fs::read_to_string(t.join(dir).join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 4, "{sums}");
    let verify = Command::new("gpgv")
        .arg("--keyring")
        .arg(&public)
        .arg(t.join(dir).join("SHA256SUMS.asc"))
        .arg(t.join(dir).join("SHA256SUMS"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let args = fs::read_to_string(t.join("gh-args")).unwrap();
    assert!(args.starts_with("release create v0.1.0 "), "{args}");
    for f in [
        "SHA256SUMS",
        "SHA256SUMS.asc",
        "_arm64.deb",
        ".aarch64.rpm",
        "_amd64.deb",
        ".x86_64.rpm",
    ] {
        assert!(args.contains(f), "{f} not published: {args}");
    }
    let notes = fs::read_to_string(t.join("notes")).unwrap();
    assert!(notes.starts_with("* Initial release"), "{notes}");

    // Without a key: published unsigned, and said so.
    fs::remove_file(t.join(dir).join("SHA256SUMS.asc")).unwrap();
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &line])
        .current_dir(t)
        .env("PATH", &path)
        .env("GITHUB_REF_NAME", "v0.1.0")
        .env_remove("JARVIS_SIGNING_KEY")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsigned"));
    assert!(!fs::read_to_string(t.join("gh-args"))
        .unwrap()
        .contains("SHA256SUMS.asc"));
    println!(
        "figures: 4 packages, SHA256SUMS signed and verified with gpgv; notes: {}",
        notes.lines().next().unwrap_or_default()
    );
}
