//! Issues 8 and 16: the release pipeline. The workflows call one script,
//! `ci/steps.sh`, for every command; these tests hold them to it, run the
//! script's local steps exactly as the workflows run them (the CI artifact's
//! name, the tested-bytes check, signing and publishing with a fake `gh`),
//! check what the workflows promise (both architectures uploaded on every
//! run, no release without the full test run, no cache and least
//! permissions in the release, Dependabot for actions and cargo), and lint
//! the workflows (actionlint, zizmor) and the fleet playbook
//! (ansible-playbook --syntax-check, ansible-lint). The linters live in a
//! venv under target/ that `cargo xtask test` installs, and signing a real
//! .rpm needs the one it builds, so those tests are ignored by a plain
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
    run_in(line, &repo(), |c| {
        c.envs(env.iter().copied());
    })
}

/// `line` under bash as the runner starts it, in `dir`; `setup` adds the
/// environment. Exit code and all output.
fn run_in(line: &str, dir: &Path, setup: impl FnOnce(&mut Command)) -> (i32, String) {
    let mut cmd = Command::new("bash");
    cmd.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", line])
        .current_dir(dir);
    setup(&mut cmd);
    let out = cmd.output().expect("bash");
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

/// A workflow file, parsed.
fn workflow(name: &str) -> Value {
    let path = repo().join(".github/workflows").join(name);
    serde_norway::from_str(&fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// The write permissions the publishing job needs, and no other job has:
/// the release itself, the OIDC token for the attestation's certificate,
/// and the attestation store.
const PUBLISH_WRITES: [&str; 3] = ["attestations", "contents", "id-token"];

#[test]
fn every_job_has_least_permissions_and_only_ci_caches() {
    let mut writers = Vec::new();
    for wf in workflows() {
        let name = wf.file_name().unwrap().to_string_lossy().into_owned();
        let doc: Value = serde_norway::from_str(&fs::read_to_string(&wf).unwrap()).unwrap();
        assert_eq!(
            doc["permissions"]["contents"].as_str(),
            Some("read"),
            "{name}: the workflow's default must be contents: read"
        );
        assert_eq!(
            doc["permissions"].as_mapping().map(|m| m.len()),
            Some(1),
            "{name}: the workflow's default is contents: read and nothing else"
        );
        for (job, body) in doc["jobs"].as_mapping().unwrap() {
            let job = job.as_str().unwrap();
            let p = &body["permissions"];
            assert!(
                p.is_null() || p.is_mapping(),
                "{name}: job {job} has `permissions: {p:?}`: list them one by one"
            );
            let mut writes: Vec<&str> = p
                .as_mapping()
                .into_iter()
                .flatten()
                .filter(|(_, v)| v.as_str() == Some("write"))
                .map(|(k, _)| k.as_str().unwrap())
                .collect();
            writes.sort();
            if (name.as_str(), job) == ("release.yml", "publish") {
                assert_eq!(
                    writes, PUBLISH_WRITES,
                    "{name}: the publishing job writes exactly {PUBLISH_WRITES:?}"
                );
                writers.push(job.to_string());
            } else {
                assert!(writes.is_empty(), "{name}: job {job} asks to write {writes:?}");
            }
        }
        let text = fs::read_to_string(&wf).unwrap();
        if name == "release.yml" {
            // zizmor's cache-poisoning: a tag build must not restore what a
            // branch's run could have written.
            assert!(
                !text.contains("actions/cache") && !text.contains("cache:"),
                "{name}: the release workflow restores no cache"
            );
        } else if text.contains("ci/steps.sh test") {
            assert!(text.contains("actions/cache@"), "{name}: cargo is not cached");
        }
    }
    assert_eq!(writers, ["publish"], "release.yml has a publish job");
    println!(
        "figures: one job writes ({PUBLISH_WRITES:?}): release.yml's publish; release.yml caches nothing"
    );
}

/// A copy of what the script reads (ci/steps.sh, Cargo.toml,
/// debian/changelog) in a temporary directory, with `gh` replaced by a
/// recorder of its arguments (in gh-args) and of the notes file (in notes).
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        for f in ["ci/steps.sh", "debian/changelog", "Cargo.toml"] {
            fs::create_dir_all(t.join(f).parent().unwrap()).unwrap();
            fs::copy(repo().join(f), t.join(f)).unwrap();
        }
        fs::create_dir_all(t.join("bin")).unwrap();
        let gh = t.join("bin/gh");
        fs::write(
            &gh,
            format!(
                "#!/bin/sh\necho \"$@\" > {0}/gh-args\ncp NOTES.md {0}/notes\n",
                t.display()
            ),
        )
        .unwrap();
        assert!(Command::new("chmod")
            .arg("755")
            .arg(&gh)
            .status()
            .unwrap()
            .success());
        Tree { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Run a workflow's `run:` line here as the runner does, with the fake
    /// `gh` first in PATH, `env` set and JARVIS_SIGNING_KEY only when given.
    fn run(&self, line: &str, env: &[(&str, &str)]) -> (i32, String) {
        let path = format!(
            "{}:{}",
            self.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        run_in(line, self.path(), |c| {
            c.env("PATH", &path)
                .env_remove("JARVIS_SIGNING_KEY")
                .env_remove("GITHUB_OUTPUT")
                .envs(env.iter().copied());
        })
    }

    fn gh_called(&self) -> bool {
        self.path().join("gh-args").exists()
    }
}

fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA256SUMS of `files` in `dir`, as sha256sum writes it.
fn write_sums(dir: &Path, files: &[&str]) {
    let text: String = files
        .iter()
        .map(|f| format!("{}  {f}\n", sha256(&dir.join(f))))
        .collect();
    fs::write(dir.join("SHA256SUMS"), text).unwrap();
}

fn cargo_version() -> String {
    let cargo = fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    cargo
        .split("[package]")
        .nth(1)
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .and_then(|v| v.strip_suffix('"'))
        .expect("package version")
        .to_string()
}

/// The job of `doc` one of whose steps runs `ci/steps.sh STEP`.
fn job_running<'a>(doc: &'a Value, step: &str) -> (&'a str, &'a Value) {
    doc["jobs"]
        .as_mapping()
        .unwrap()
        .iter()
        .find(|(_, body)| {
            body["steps"].as_sequence().unwrap().iter().any(|s| {
                s["run"]
                    .as_str()
                    .is_some_and(|r| r.split_whitespace().nth(1) == Some(step))
            })
        })
        .map(|(k, v)| (k.as_str().unwrap(), v))
        .unwrap_or_else(|| panic!("no job runs `ci/steps.sh {step}`"))
}

/// The index of the first step of `job` whose run is `ci/steps.sh STEP` or
/// whose uses starts with `action`.
fn step_index(job: &Value, what: &str) -> usize {
    job["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .position(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.split_whitespace().nth(1) == Some(what))
                || s["uses"].as_str().is_some_and(|u| u.starts_with(what))
        })
        .unwrap_or_else(|| panic!("no step `{what}`"))
}

fn lines(v: &Value) -> Vec<String> {
    v.as_str()
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn ci_uploads_both_architectures_named_with_version_and_commit() {
    let doc = workflow("ci.yml");
    let (name, job) = job_running(&doc, "package-checks");
    let runners: Vec<&str> = job["strategy"]["matrix"]["runner"]
        .as_sequence()
        .unwrap_or_else(|| panic!("ci.yml job {name} has no runner matrix"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(runners, ["ubuntu-24.04", "ubuntu-24.04-arm"], "ci.yml job {name}");
    assert_eq!(job["runs-on"].as_str(), Some("${{ matrix.runner }}"));

    let steps = job["steps"].as_sequence().unwrap();
    let checks = step_index(job, "package-checks");
    let naming = step_index(job, "artifact-name");
    let upload = step_index(job, "actions/upload-artifact@");
    assert!(
        checks < naming && naming < upload,
        "ci.yml job {name}: package-checks, artifact-name, upload in that order"
    );
    let id = steps[naming]["id"]
        .as_str()
        .expect("the artifact-name step has an id");
    let with = &steps[upload]["with"];
    assert_eq!(
        with["name"].as_str(),
        Some(format!("${{{{ steps.{id}.outputs.name }}}}").as_str()),
        "the artifact is named by the artifact-name step"
    );
    let paths = lines(&with["path"]);
    for p in [
        "target/dist/*.deb",
        "target/dist/*.rpm",
        "target/dist/*.cdx.json",
        "target/dist/SHA256SUMS",
    ] {
        assert!(paths.iter().any(|x| x == p), "ci.yml uploads no {p}: {paths:?}");
    }
    assert_eq!(with["if-no-files-found"].as_str(), Some("error"));

    // The step as the workflow runs it, on a build of each architecture.
    let line = steps[naming]["run"].as_str().unwrap();
    let dist = line.split_whitespace().nth(2).expect("artifact-name DIR");
    let version = cargo_version();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let mut names = Vec::new();
    for (deb, rpm) in [
        (
            "jarvis-supervisor_0.1.0-1_amd64.deb",
            "jarvis-supervisor-0.1.0-1.x86_64.rpm",
        ),
        (
            "jarvis-supervisor_0.1.0-1_arm64.deb",
            "jarvis-supervisor-0.1.0-1.aarch64.rpm",
        ),
    ] {
        let tree = Tree::new();
        let d = tree.path().join(dist);
        fs::create_dir_all(&d).unwrap();
        let sbom = format!("{deb}.cdx.json");
        for f in [deb, rpm, sbom.as_str()] {
            fs::write(d.join(f), f).unwrap();
        }
        write_sums(&d, &[deb, rpm, &sbom]);
        let output = tree.path().join("github-output");
        fs::write(&output, "earlier=1\n").unwrap();
        let out = output.to_str().unwrap();
        let (code, text) = tree.run(line, &[("GITHUB_SHA", sha), ("GITHUB_OUTPUT", out)]);
        assert_eq!(code, 0, "`{line}`:\n{text}");
        let arch = if deb.ends_with("_amd64.deb") {
            "amd64"
        } else {
            "arm64"
        };
        let want = format!("jarvis-supervisor-{version}-{}-{arch}", &sha[..7]);
        assert_eq!(
            fs::read_to_string(&output).unwrap(),
            format!("earlier=1\nname={want}\n"),
            "GITHUB_OUTPUT gets name=... appended"
        );
        names.push(want);

        // Refused: no SBOM, a SHA256SUMS that does not match, no commit.
        let (code, text) = tree.run(line, &[("GITHUB_SHA", "main"), ("GITHUB_OUTPUT", out)]);
        assert_ne!(code, 0, "GITHUB_SHA=main accepted:\n{text}");
        assert!(text.contains("GITHUB_SHA"), "{text}");
        fs::write(d.join(rpm), "rebuilt").unwrap();
        let (code, text) = tree.run(line, &[("GITHUB_SHA", sha), ("GITHUB_OUTPUT", out)]);
        assert_ne!(code, 0, "a stale SHA256SUMS accepted:\n{text}");
        assert!(text.contains("SHA256SUMS"), "{text}");
        fs::remove_file(d.join(&sbom)).unwrap();
        write_sums(&d, &[deb, rpm]);
        let (code, text) = tree.run(line, &[("GITHUB_SHA", sha), ("GITHUB_OUTPUT", out)]);
        assert_ne!(code, 0, "no SBOM accepted:\n{text}");
        assert!(text.contains("cdx.json"), "{text}");
        assert_eq!(
            fs::read_to_string(&output).unwrap().lines().count(),
            2,
            "a refused run writes no name"
        );
    }
    println!(
        "figures: runners {runners:?}; artifacts {names:?}; refused: no SBOM, stale SHA256SUMS, GITHUB_SHA=main"
    );
}

#[test]
fn release_publishes_only_the_tested_commit_and_bytes() {
    let doc = workflow("release.yml");
    let (e2e, e2e_job) = job_running(&doc, "e2e");
    let (build, build_job) = job_running(&doc, "package-checks");
    let (publish, job) = job_running(&doc, "publish");
    assert_eq!(
        e2e_job["runs-on"].as_str(),
        Some("ubuntu-24.04"),
        "the e2e job runs on x86_64"
    );
    let needs: Vec<&str> = match &job["needs"] {
        Value::String(s) => vec![s.as_str()],
        v => v
            .as_sequence()
            .expect("publish needs")
            .iter()
            .filter_map(Value::as_str)
            .collect(),
    };
    assert!(
        needs.contains(&e2e) && needs.contains(&build),
        "release.yml: {publish} needs {needs:?}, not both {e2e} (ci/steps.sh e2e) and {build}"
    );
    // The e2e job hands its SHA256SUMS to publish, which checks the bytes.
    let up = &e2e_job["steps"][step_index(e2e_job, "actions/upload-artifact@")]["with"];
    assert_eq!(lines(&up["path"]), ["target/dist/SHA256SUMS"]);
    let tested_name = up["name"].as_str().unwrap();
    let built = lines(&build_job["steps"][step_index(build_job, "actions/upload-artifact@")]["with"]["path"]);
    assert!(
        built.iter().any(|p| p == "target/dist/*.cdx.json"),
        "the SBOMs are published: {built:?}"
    );

    let steps = job["steps"].as_sequence().unwrap();
    let down = steps
        .iter()
        .find(|s| s["with"]["name"].as_str() == Some(tested_name))
        .expect("publish downloads the e2e job's SHA256SUMS");
    let same = step_index(job, "same-as-tested");
    let sign = step_index(job, "sign");
    let attest = step_index(job, "actions/attest-build-provenance@");
    let pubi = step_index(job, "publish");
    assert!(
        same < sign && sign < attest && attest < pubi,
        "publish job: same-as-tested, sign, attest, publish in that order"
    );
    let same_line = steps[same]["run"].as_str().unwrap();
    let words: Vec<&str> = same_line.split_whitespace().collect();
    let (dir, sums) = (words[2], words[3]);
    assert_eq!(
        Path::new(down["with"]["path"].as_str().unwrap()).join("SHA256SUMS"),
        Path::new(sums)
    );
    let sign_dir = steps[sign]["run"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap();
    assert_eq!(sign_dir, dir);
    let subjects = lines(&steps[attest]["with"]["subject-path"]);
    for f in ["*.deb", "*.rpm", "*.cdx.json", "SHA256SUMS", "SHA256SUMS.asc"] {
        let want = format!("{dir}/{f}");
        assert!(subjects.contains(&want), "no provenance for {want}: {subjects:?}");
    }

    // The check as the workflow runs it: the tested amd64 packages pass,
    // one rebuilt differently does not.
    let tree = Tree::new();
    let t = tree.path();
    fs::create_dir_all(t.join(dir)).unwrap();
    fs::create_dir_all(t.join(sums).parent().unwrap()).unwrap();
    let files = [
        "jarvis-supervisor_0.1.0-1_amd64.deb",
        "jarvis-supervisor-0.1.0-1.x86_64.rpm",
        "jarvis-supervisor_0.1.0-1_amd64.deb.cdx.json",
    ];
    for f in files {
        fs::write(t.join(dir).join(f), f).unwrap();
    }
    for f in [
        "jarvis-supervisor_0.1.0-1_arm64.deb",
        "jarvis-supervisor-0.1.0-1.aarch64.rpm",
    ] {
        fs::write(t.join(dir).join(f), f).unwrap();
    }
    write_sums(&t.join(dir), &files);
    fs::rename(t.join(dir).join("SHA256SUMS"), t.join(sums)).unwrap();
    // An SBOM's timestamp may differ: only the packages count.
    fs::write(t.join(dir).join(files[2]), "another timestamp").unwrap();
    let (code, text) = tree.run(same_line, &[]);
    assert_eq!(code, 0, "`{same_line}`:\n{text}");
    fs::write(t.join(dir).join(files[1]), "built elsewhere").unwrap();
    let (code, text) = tree.run(same_line, &[]);
    assert_ne!(code, 0, "a package that was not tested passed:\n{text}");
    assert!(
        text.contains(files[1]) && text.contains("not the build that was tested"),
        "{text}"
    );
    println!(
        "figures: {publish} needs {needs:?}; steps same-as-tested < sign < attest < publish; a rebuilt .rpm refused"
    );
}

#[test]
fn publish_refuses_without_a_signing_key() {
    // The sign and publish steps as the workflow runs them, without the
    // secret: the release fails, says how to set the key, and nothing
    // reaches `gh`.
    let sign = run_line("release.yml", "sign");
    let publish = run_line("release.yml", "publish");
    let tree = Tree::new();
    let dir = sign.split_whitespace().nth(2).expect("sign DIR");
    fs::create_dir_all(tree.path().join(dir)).unwrap();
    for f in [
        "jarvis-supervisor_0.1.0-1_amd64.deb",
        "jarvis-supervisor-0.1.0-1.x86_64.rpm",
        "jarvis-supervisor_0.1.0-1_amd64.deb.cdx.json",
    ] {
        fs::write(tree.path().join(dir).join(f), f).unwrap();
    }
    let (code, text) = tree.run(&sign, &[("JARVIS_SIGNING_KEY", "")]);
    assert_eq!(code, 1, "`{sign}` without a key:\n{text}");
    assert!(
        text.contains("JARVIS_SIGNING_KEY") && text.contains("gh secret set JARVIS_SIGNING_KEY"),
        "the error names the secret and how to set it:\n{text}"
    );
    assert!(!tree.path().join(dir).join("SHA256SUMS.asc").exists());
    // Had the workflow gone on regardless, publish refuses too.
    let (code2, text2) = tree.run(&publish, &[("GITHUB_REF_NAME", "v0.1.0")]);
    assert_ne!(code2, 0, "`{publish}` published unsigned:\n{text2}");
    assert!(text2.contains("SHA256SUMS.asc"), "{text2}");
    assert!(!tree.gh_called(), "gh was called");
    println!(
        "figures: sign exit {code}, publish exit {code2}, gh not called; {}",
        text.lines().next().unwrap_or_default()
    );
}

#[test]
fn dependabot_updates_actions_and_cargo_weekly() {
    let path = repo().join(".github/dependabot.yml");
    let doc: Value = serde_norway::from_str(
        &fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    assert_eq!(doc["version"].as_u64(), Some(2), "dependabot.yml version 2");
    let updates = doc["updates"].as_sequence().expect("updates");
    let mut seen = Vec::new();
    for u in updates {
        let eco = u["package-ecosystem"].as_str().expect("package-ecosystem");
        let dir = u["directory"].as_str().expect("directory");
        assert_eq!(u["schedule"]["interval"].as_str(), Some("weekly"), "{eco}");
        let days = u["cooldown"]["default-days"].as_u64().unwrap_or(0);
        assert!(days >= 7, "{eco}: a cooldown of a week, not {days} days");
        let root = repo().join(dir.trim_start_matches('/'));
        match eco {
            "github-actions" => assert!(root.join(".github/workflows").is_dir(), "{eco}: {dir}"),
            "cargo" => assert!(
                root.join("Cargo.lock").is_file(),
                "{eco}: {dir} has no Cargo.lock"
            ),
            _ => {}
        }
        seen.push(eco);
    }
    seen.sort();
    assert_eq!(seen, ["cargo", "github-actions"], "one entry each");
    println!("figures: dependabot: {seen:?}, weekly, 7-day cooldown");
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

/// zizmor's JSON findings on `dir`'s .github/, offline, no config file (an
/// ignore has to be an inline comment that says why), counted by severity:
/// [informational, low, medium, high]. Panics unless every input was
/// audited.
fn zizmor(zizmor: &Path, dir: &Path, inputs: &[&str]) -> ([usize; 4], String) {
    let out = Command::new(zizmor)
        .args([
            "--offline",
            "--no-config",
            "--strict-collection",
            "--no-progress",
            "--format",
            "json",
            ".github/",
        ])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("zizmor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 0: no findings; 10 + the highest severity otherwise; else it failed.
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || (10..=14).contains(&code),
        "zizmor exit {code}:\n{stderr}"
    );
    for i in inputs {
        assert!(
            stderr.contains(&format!("completed {i}")),
            "zizmor did not audit {i}:\n{stderr}"
        );
    }
    let findings: Vec<serde_json::Value> =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("zizmor JSON: {e}\n{stdout}"));
    let mut counts = [0; 4];
    let mut listing = String::new();
    for f in &findings {
        let severity = f["determinations"]["severity"].as_str().unwrap_or_default();
        let i = ["Informational", "Low", "Medium", "High"]
            .iter()
            .position(|s| *s == severity)
            .unwrap_or_else(|| panic!("unknown severity {severity:?}"));
        counts[i] += 1;
        let at = &f["locations"][0];
        listing.push_str(&format!(
            "{severity} {} in {} at line {}\n",
            f["ident"].as_str().unwrap_or_default(),
            at["symbolic"]["key"]["Local"]["verbatim_path"]
                .as_str()
                .unwrap_or_default(),
            at["concrete"]["location"]["start_point"]["row"]
                .as_u64()
                .unwrap_or(0)
                + 1
        ));
    }
    (counts, listing)
}

#[test]
#[ignore = "needs the linters that cargo xtask test installs under target/"]
fn zizmor_finds_nothing_at_medium_or_above() {
    let bin = tool("JARVIS_ZIZMOR");
    let version = Command::new(&bin).arg("--version").output().expect("zizmor");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let inputs = [
        ".github/dependabot.yml",
        ".github/workflows/ci.yml",
        ".github/workflows/release.yml",
    ];
    let (counts, listing) = zizmor(&bin, &repo(), &inputs);
    println!(
        "figures: {version} --offline on .github/: {} informational, {} low, {} medium, {} high\n{listing}",
        counts[0], counts[1], counts[2], counts[3]
    );
    assert_eq!(
        counts[2] + counts[3],
        0,
        "zizmor findings at medium or above:\n{listing}"
    );

    // The same run sees what it is there for: the release workflow with a
    // cargo cache put back is cache poisoning, high.
    let copy = tempfile::tempdir().unwrap();
    fs::create_dir_all(copy.path().join(".github/workflows")).unwrap();
    let release = fs::read_to_string(repo().join(".github/workflows/release.yml")).unwrap();
    let cache = "      - uses: actions/cache@5a3ec84eff668545956fd18022155c47e93e2684 # v4.2.3\n        with:\n          path: ~/.cargo/bin/\n          key: cargo-${{ runner.os }}\n      - run: ci/steps.sh toolchain\n";
    let poisoned = release.replacen("      - run: ci/steps.sh toolchain\n", cache, 1);
    assert_ne!(poisoned, release);
    fs::write(copy.path().join(".github/workflows/release.yml"), poisoned).unwrap();
    let (counts, listing) = zizmor(&bin, copy.path(), &[".github/workflows/release.yml"]);
    assert!(
        counts[3] > 0 && listing.contains("cache-poisoning"),
        "zizmor missed the cache in the release workflow:\n{listing}"
    );
    println!("figures: with a cache put back into release.yml: {listing}");
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

/// Where an .rpm's payload starts: after the 96-byte lead, the signature
/// header (padded to 8 bytes) and the main header, each a magic, an index
/// of 16-byte entries and a data store.
fn rpm_payload_offset(b: &[u8]) -> usize {
    let end_of_header = |at: usize| -> usize {
        assert_eq!(b[at..at + 3], [0x8e, 0xad, 0xe8], "no rpm header at byte {at}");
        let be = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap()) as usize;
        at + 16 + 16 * be(at + 8) + be(at + 12)
    };
    let main = end_of_header(96).div_ceil(8) * 8;
    end_of_header(main)
}

/// `rpm -K` against a throwaway rpm database holding `keys`.
fn rpm_k(rpm: &Path, keys: &[&Path]) -> (bool, String) {
    let db = tempfile::tempdir().unwrap();
    for key in keys {
        let out = Command::new("rpm")
            .arg("--dbpath")
            .arg(db.path())
            .arg("--import")
            .arg(key)
            .output()
            .expect("rpm");
        assert!(
            out.status.success(),
            "rpm --import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new("rpm")
        .arg("--dbpath")
        .arg(db.path())
        .arg("-Kv")
        .arg(rpm)
        .output()
        .expect("rpm");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn have(cmd: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{cmd} is missing: apt-get install {package} (cargo xtask test installs it)"
    );
}

#[test]
#[ignore = "needs the .rpm that cargo xtask test builds (JARVIS_RPM), rpm and gpg"]
fn publish_signs_the_rpms_and_sha256sums_and_takes_the_changelog_section_as_notes() {
    // The sign and publish steps as the workflow runs them, in a copy of the
    // files they read, with `gh` replaced by a recorder, on the real .rpm
    // (as both architectures' file) and a signing key made here.
    let built = std::env::var_os("JARVIS_RPM").map(PathBuf::from).unwrap_or_else(|| {
        panic!("$JARVIS_RPM is not set: run this through `cargo xtask test`, which sets it to the .rpm it builds (or JARVIS_RPM=target/dist/X.rpm after `cargo xtask dist`)")
    });
    assert!(built.is_file(), "$JARVIS_RPM = {} is not a file", built.display());
    for (cmd, package) in [
        ("rpm", "rpm"),
        ("rpmsign", "rpm"),
        ("gpg", "gnupg"),
        ("gpgv", "gpgv"),
    ] {
        have(cmd, package);
    }
    let sign = run_line("release.yml", "sign");
    let publish = run_line("release.yml", "publish");
    let tree = Tree::new();
    let t = tree.path();
    let dir = sign.split_whitespace().nth(2).expect("sign DIR");
    assert_eq!(
        publish.split_whitespace().nth(2),
        Some(dir),
        "publish DIR is sign DIR"
    );
    let d = t.join(dir);
    fs::create_dir_all(&d).unwrap();
    let rpms = [
        "jarvis-supervisor-0.1.0-1.x86_64.rpm",
        "jarvis-supervisor-0.1.0-1.aarch64.rpm",
    ];
    let debs = [
        "jarvis-supervisor_0.1.0-1_amd64.deb",
        "jarvis-supervisor_0.1.0-1_arm64.deb",
    ];
    for r in rpms {
        fs::copy(&built, d.join(r)).unwrap();
    }
    let mut sboms = Vec::new();
    for p in debs.iter().chain(&rpms) {
        if p.ends_with(".deb") {
            fs::write(d.join(p), p).unwrap();
        }
        let sbom = format!("{p}.cdx.json");
        fs::write(
            d.join(&sbom),
            format!("{{\"bomFormat\": \"CycloneDX\", \"for\": \"{p}\"}}\n"),
        )
        .unwrap();
        sboms.push(sbom);
    }
    let unsigned = sha256(&built);

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
    let public_asc = t.join("public.asc");
    fs::write(&public_asc, key.run(&["--armor", "--export"]).stdout).unwrap();

    let (code, text) = tree.run(&sign, &[("JARVIS_SIGNING_KEY", &secret)]);
    assert_eq!(code, 0, "`{sign}`:\n{text}");
    assert!(!tree.gh_called(), "sign called gh");
    let (code, text) = tree.run(&publish, &[("GITHUB_REF_NAME", "v0.1.0"), ("GH_TOKEN", "unused")]);
    assert_eq!(code, 0, "`{publish}`:\n{text}");

    // rpm -K: the signed .rpm passes with the public key, is refused without
    // it (so a signature is what is checked), and a copy with one payload
    // byte flipped is refused.
    let signed = d.join(rpms[0]);
    assert_ne!(sha256(&signed), unsigned, "the .rpm was not changed by signing");
    let (ok, k) = rpm_k(&signed, &[&public_asc]);
    assert!(
        ok && k.contains("Signature, key ID") && k.contains(": OK"),
        "rpm -K refused the signed .rpm:\n{k}"
    );
    let (ok, nokey) = rpm_k(&signed, &[]);
    assert!(!ok && nokey.contains("NOKEY"), "rpm -K without the key:\n{nokey}");
    let mut bytes = fs::read(&signed).unwrap();
    let payload = rpm_payload_offset(&bytes);
    let magic = &bytes[payload..payload + 4];
    assert!(
        [
            &[0x28, 0xb5, 0x2f, 0xfd][..],
            &[0xfd, 0x37, 0x7a, 0x58],
            &[0x1f, 0x8b, 0x08, 0x00]
        ]
        .iter()
        .any(|m| magic.starts_with(&m[..3])),
        "no zstd, xz or gzip payload at byte {payload}: {magic:02x?}"
    );
    let flip = payload + (bytes.len() - payload) / 2;
    bytes[flip] ^= 0xff;
    let tampered = t.join("tampered.rpm");
    fs::write(&tampered, &bytes).unwrap();
    let (ok, bad) = rpm_k(&tampered, &[&public_asc]);
    assert!(
        !ok && bad.contains("BAD"),
        "rpm -K accepted a tampered payload:\n{bad}"
    );

    // SHA256SUMS: signed (gpgv), and the sums of the files as published.
    let verify = Command::new("gpgv")
        .arg("--keyring")
        .arg(&public)
        .arg(d.join("SHA256SUMS.asc"))
        .arg(d.join("SHA256SUMS"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "gpgv: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let sums = fs::read_to_string(d.join("SHA256SUMS")).unwrap();
    let mut listed: Vec<&str> = sums
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, f)| f))
        .collect();
    listed.sort();
    let mut want: Vec<String> = debs
        .iter()
        .chain(&rpms)
        .map(|s| s.to_string())
        .chain(sboms.clone())
        .collect();
    want.sort();
    assert_eq!(listed, want, "SHA256SUMS lists the packages and SBOMs:\n{sums}");
    for line in sums.lines() {
        let (sum, f) = line.split_once("  ").unwrap();
        assert_eq!(
            sha256(&d.join(f)),
            sum,
            "SHA256SUMS does not match {f} as published"
        );
    }

    let args = fs::read_to_string(t.join("gh-args")).unwrap();
    assert!(args.starts_with("release create v0.1.0 "), "{args}");
    for f in want
        .iter()
        .map(String::as_str)
        .chain(["SHA256SUMS", "SHA256SUMS.asc"])
    {
        assert!(
            args.split_whitespace().any(|a| a == f),
            "{f} not published: {args}"
        );
    }
    let notes = fs::read_to_string(t.join("notes")).unwrap();
    assert!(notes.starts_with("* Initial release"), "{notes}");

    // Published files must be the signed ones: a file changed after
    // signing is refused, and gh is not called.
    fs::remove_file(t.join("gh-args")).unwrap();
    fs::write(d.join(debs[0]), "changed after signing").unwrap();
    let (code, text) = tree.run(&publish, &[("GITHUB_REF_NAME", "v0.1.0")]);
    assert_ne!(code, 0, "published a file changed after signing:\n{text}");
    assert!(!tree.gh_called(), "gh was called");
    println!(
        "figures: {} signed as both architectures' .rpm (rpm -K: {}); NOKEY without the key; byte {flip} of {} flipped (payload at {payload}): {}; {} files in SHA256SUMS, gpgv OK; notes: {}",
        built.display(),
        k.lines()
            .find(|l| l.contains("Signature"))
            .unwrap_or_default()
            .trim(),
        bytes.len(),
        bad.lines().find(|l| l.contains("BAD")).unwrap_or_default().trim(),
        listed.len(),
        notes.lines().next().unwrap_or_default()
    );
}
