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

use serde_yaml::Value;

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
    let doc: Value = serde_yaml::from_str(&fs::read_to_string(path).unwrap())
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
        let doc: Value = serde_yaml::from_str(&fs::read_to_string(&wf).unwrap()).unwrap();
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
