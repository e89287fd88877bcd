//! Issue 8, acceptance 3-5 in booted Debian 12 containers: the APT
//! repository that `cargo xtask repo` makes ($JARVIS_REPO, and
//! $JARVIS_REPO_HIGHER after a higher version was published), added over
//! file:// with its keyring (signed-by); the shipped completions and man
//! page; and the Ansible playbook run over ssh, twice.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::container::Container;
use super::remote::{sshd_host, Key, Netns};
use super::roots::Suite;
use super::{active, deploy_standin, CODE, UNIT};

const REPO_IN: &str = "/var/tmp/jarvis-repo";
const KEYRING: &str = "/usr/share/keyrings/jarvis-supervisor.gpg";

fn dir(var: &str) -> PathBuf {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("${var} is not set: build the repositories and run these through `cargo xtask test`")
    });
    assert!(
        p.join("apt/dists/stable/InRelease").is_file(),
        "${var} = {} holds no APT repository",
        p.display()
    );
    p
}

/// The container's only package source: this repository. (The root's
/// Debian mirror is switched off: the container has no network, and its
/// packages are already there.)
fn publish(c: &Container, repo: &std::path::Path) {
    c.ok(&format!("rm -rf {REPO_IN}"));
    c.put(&repo.join("apt"), REPO_IN);
}

fn add_source(c: &Container) {
    c.ok("mv /etc/apt/sources.list /etc/apt/sources.list.off 2>/dev/null || true");
    c.ok(&format!(
        "install -m 644 {REPO_IN}/jarvis-supervisor.gpg {KEYRING}"
    ));
    c.write(
        "/etc/apt/sources.list.d/jarvis-supervisor.list",
        &format!("deb [signed-by={KEYRING}] file://{REPO_IN} stable main\n"),
    );
}

/// How many times the bot has started, from its own record: PID 1's
/// "Starting" lines in the journal are dropped when journald is slow.
fn starts(c: &Container) -> usize {
    c.ok(&format!("cat {CODE}/data/starts.log 2>/dev/null || true"))
        .lines()
        .count()
}

pub fn apt_repository() {
    let t0 = Instant::now();
    let c = Container::boot(Suite::Bookworm);
    deploy_standin(&c);
    c.ok(&format!("echo STANDIN_START_LOG=data/starts.log >> {CODE}/.env"));
    publish(&c, &dir("JARVIS_REPO"));
    add_source(&c);

    // Install from the repository.
    let out = c.sh("apt-get update 2>&1 && apt-get install -y -q jarvis-supervisor 2>&1");
    assert_eq!(out.status, 0, "install from the repository:\n{}", out.all());
    let installed = c.ok("dpkg-query -W -f='${Version}' jarvis-supervisor");
    let policy = c.ok("apt-cache policy jarvis-supervisor");
    assert!(
        policy.contains(&format!("file:{REPO_IN} stable/main")),
        "{policy}"
    );
    c.wait_for("active after install", Duration::from_secs(60), active);
    println!("installed {installed} from file://{REPO_IN}");

    // Completions and man page, as shipped.
    let complete =
        c.ok("bash -c 'source /usr/share/bash-completion/completions/jarvisctl; complete -p jarvisctl'");
    assert!(complete.contains("jarvisctl"), "{complete}");
    assert!(complete.starts_with("complete "), "{complete}");
    let words = c.ok(
        "bash -c 'source /usr/share/bash-completion/completions/jarvisctl; COMP_WORDS=(jarvisctl ch); COMP_CWORD=1; COMP_LINE=\"jarvisctl ch\"; COMP_POINT=12; _jarvisctl jarvisctl ch jarvisctl; echo ${COMPREPLY[@]}'",
    );
    assert!(
        words.split_whitespace().any(|w| w == "check"),
        "bash completes `jarvisctl ch` to: {words}"
    );
    for f in [
        "/usr/share/zsh/vendor-completions/_jarvisctl",
        "/usr/share/fish/vendor_completions.d/jarvisctl.fish",
    ] {
        c.ok(&format!("grep -q jarvisctl {f}"));
    }
    let man = c.ok("MANWIDTH=80 man -P cat jarvisctl 2>&1");
    assert!(
        man.contains("NAME") && man.contains("jarvisctl check"),
        "man jarvisctl:\n{man}"
    );
    println!(
        "completion: {}; man jarvisctl: {} lines",
        complete.trim(),
        man.lines().count()
    );

    // Publish a higher version; `apt upgrade` restarts the running bot once.
    let n0 = starts(&c);
    let pid = c.prop(UNIT, "MainPID");
    publish(&c, &dir("JARVIS_REPO_HIGHER"));
    let out = c.sh("apt-get update 2>&1 && apt-get upgrade -y -q 2>&1");
    assert_eq!(out.status, 0, "apt upgrade:\n{}", out.all());
    assert_eq!(
        c.ok("dpkg-query -W -f='${Version}' jarvis-supervisor"),
        "99.0.0-1",
        "{}",
        out.all()
    );
    c.wait_for("active after upgrade", Duration::from_secs(60), active);
    std::thread::sleep(Duration::from_secs(2));
    let n1 = starts(&c);
    assert_eq!(n1, n0 + 1, "the upgrade must restart the service exactly once");
    assert_ne!(c.prop(UNIT, "MainPID"), pid);
    println!("apt upgrade {installed} -> 99.0.0-1: starts {n0} -> {n1}");

    // A tampered InRelease (body changed, signature kept) is rejected, and
    // so is a tampered Release checked against Release.gpg.
    c.ok(&format!(
        "sed -i 's/^Label: jarvis-supervisor/Label: jarvis-supervisorX/' {REPO_IN}/dists/stable/InRelease"
    ));
    let out = c.sh("rm -rf /var/lib/apt/lists/*; apt-get update 2>&1");
    let text = out.all();
    assert!(
        out.status != 0 && text.contains("is not signed"),
        "a tampered InRelease must fail apt-get update (exit {}):\n{text}",
        out.status
    );
    assert!(text.contains("BADSIG") || text.contains("invalid"), "{text}");
    println!(
        "tampered InRelease: exit {}: {}",
        out.status,
        text.lines()
            .find(|l| l.contains("BADSIG") || l.starts_with("E:"))
            .unwrap_or_default()
    );
    c.ok(&format!(
        "rm {REPO_IN}/dists/stable/InRelease; sed -i 's/^Label: jarvis-supervisor/Label: jarvis-supervisorX/' {REPO_IN}/dists/stable/Release"
    ));
    let out = c.sh("rm -rf /var/lib/apt/lists/*; apt-get update 2>&1");
    let text = out.all();
    assert!(
        out.status != 0 && text.contains("is not signed"),
        "a tampered Release must fail apt-get update (exit {}):\n{text}",
        out.status
    );
    println!("tampered Release: exit {}", out.status);
    println!("figures: apt repository test in {:?}", t0.elapsed());
}

/// The YUM repository beside it: createrepo_c metadata listing the .rpm,
/// and repomd.xml signed by the same key (checked here with gpgv); the
/// docs/repositories.md's repo file with gpgcheck=1, and every .rpm signed with the
/// repository key (rpm -K, a tampered copy, an install that requires a
/// signature).
pub fn yum_repository() {
    let repo = dir("JARVIS_REPO").join("yum");
    let repomd = fs::read_to_string(repo.join("repodata/repomd.xml")).expect("repodata/repomd.xml");
    let primary = repomd
        .split("<location href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|h| h.ends_with("primary.xml.gz"))
        .unwrap_or_else(|| panic!("no primary.xml.gz in repomd.xml:\n{repomd}"));
    let out = std::process::Command::new("zcat")
        .arg(repo.join(primary))
        .output()
        .unwrap();
    let primary = String::from_utf8_lossy(&out.stdout);
    assert!(primary.contains("<name>jarvis-supervisor</name>"), "{primary}");
    assert!(primary.contains("Packages/jarvis-supervisor-"), "{primary}");
    let keyring = dir("JARVIS_REPO").join("apt/jarvis-supervisor.gpg");
    let v = std::process::Command::new("gpgv")
        .arg("--keyring")
        .arg(&keyring)
        .arg(repo.join("repodata/repomd.xml.asc"))
        .arg(repo.join("repodata/repomd.xml"))
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    assert!(repo.join("RPM-GPG-KEY-jarvis-supervisor").is_file());
    println!("figures: yum repodata lists jarvis-supervisor; repomd.xml signature good");

    // The documented repo file turns both checks on, with a key the
    // repository holds.
    let doc =
        fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/repositories.md")).unwrap();
    let conf = repo_file_of(&doc);
    assert_eq!(
        conf.get("gpgcheck").map(String::as_str),
        Some("1"),
        "docs/repositories.md's .repo: {conf:?}"
    );
    assert_eq!(
        conf.get("repo_gpgcheck").map(String::as_str),
        Some("1"),
        "docs/repositories.md's .repo: {conf:?}"
    );
    let baseurl = conf
        .get("baseurl")
        .expect("baseurl in docs/repositories.md's .repo");
    let gpgkey = conf
        .get("gpgkey")
        .expect("gpgkey in docs/repositories.md's .repo");
    let key_file = gpgkey
        .strip_prefix(&format!("{}/", baseurl.trim_end_matches('/')))
        .unwrap_or_else(|| panic!("gpgkey {gpgkey} is not under baseurl {baseurl}"));
    let key = repo.join(key_file);
    assert!(
        key.is_file(),
        "docs/repositories.md's gpgkey {key_file} is not in {}",
        repo.display()
    );

    // Every published .rpm is signed with that key: rpm -K with a
    // throwaway database that trusts only it.
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    fs::create_dir_all(&db).unwrap();
    let rpm_cmd = || {
        let mut c = std::process::Command::new("rpm");
        c.arg("--dbpath").arg(&db);
        c
    };
    let (code, text) = run(rpm_cmd().arg("--import").arg(&key));
    assert_eq!(code, 0, "rpm --import {}: {text}", key.display());
    let (code, key_id) = run(rpm_cmd().args(["-q", "gpg-pubkey", "--qf", "%{VERSION}\n"]));
    assert_eq!(code, 0, "{key_id}");
    let key_id = key_id.trim().to_lowercase();
    assert_eq!(key_id.len(), 8, "one key imported, got {key_id:?}");
    let mut signed: Vec<PathBuf> = fs::read_dir(repo.join("Packages"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rpm"))
        .collect();
    signed.sort();
    assert!(!signed.is_empty(), "no .rpm in {}/Packages", repo.display());
    for p in &signed {
        let (code, text) = run(rpm_cmd().arg("-Kv").arg(p));
        let sig_ok = text
            .lines()
            .any(|l| l.contains("Signature, key ID ") && l.contains(&format!("key ID {key_id}: OK")));
        assert!(
            code == 0 && sig_ok && !text.contains("NOT OK"),
            "{} is not signed with {key_id} (exit {code}):\n{text}",
            p.display()
        );
        println!(
            "rpm -K {}: {}",
            p.file_name().unwrap().to_string_lossy(),
            text.lines()
                .find(|l| l.contains("Signature, key ID"))
                .unwrap()
                .trim()
        );
    }

    // One byte flipped in the payload: refused.
    let mut bytes = fs::read(&signed[0]).unwrap();
    let payload = payload_offset(&bytes);
    assert!(payload < bytes.len(), "no payload in {}", signed[0].display());
    let at = payload + (bytes.len() - payload) / 2;
    bytes[at] ^= 0x01;
    let tampered = tmp.path().join("tampered.rpm");
    fs::write(&tampered, &bytes).unwrap();
    let (code, text) = run(rpm_cmd().arg("-Kv").arg(&tampered));
    assert!(
        code != 0 && text.contains("BAD"),
        "a tampered .rpm (byte {at} of {}, payload from {payload}) must fail rpm -K (exit {code}):\n{text}",
        bytes.len()
    );
    println!(
        "tampered .rpm: rpm -K exit {code}: {}",
        text.lines()
            .find(|l| l.contains("BAD"))
            .unwrap_or_default()
            .trim()
    );

    // An install that requires a signature: the signed package goes in,
    // the unsigned original (from dist) does not.
    let unsigned = std::env::var_os("JARVIS_RPM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let dist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dist");
            fs::read_dir(&dist)
                .unwrap_or_else(|e| {
                    panic!("{}: {e}; set $JARVIS_RPM or run cargo xtask dist", dist.display())
                })
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "rpm"))
                .unwrap_or_else(|| panic!("no .rpm in {}", dist.display()))
        });
    let (_, text) = run(rpm_cmd().arg("-Kv").arg(&unsigned));
    assert!(
        !text.contains("Signature, key ID"),
        "{} is signed already:\n{text}",
        unsigned.display()
    );
    let install = |pkg: &std::path::Path, name: &str| {
        let root = tmp.path().join(name);
        fs::create_dir_all(&root).unwrap();
        let root_rpm = || {
            let mut c = std::process::Command::new("rpm");
            c.arg("--root").arg(&root);
            c
        };
        let (code, text) = run(root_rpm().arg("--initdb"));
        assert_eq!(code, 0, "rpm --initdb: {text}");
        let (code, text) = run(root_rpm().arg("--import").arg(&key));
        assert_eq!(code, 0, "rpm --import: {text}");
        run(root_rpm()
            .args(["--define", "_pkgverify_level signature"])
            .args(["-i", "--nodeps", "--justdb", "--noscripts", "--ignorearch"])
            .arg(pkg))
    };
    let (code, text) = install(&signed[0], "signed");
    assert_eq!(code, 0, "signed install with _pkgverify_level signature:\n{text}");
    let (code, text) = run(std::process::Command::new("rpm")
        .arg("--root")
        .arg(tmp.path().join("signed"))
        .args(["-q", "jarvis-supervisor"]));
    assert!(
        code == 0 && text.starts_with("jarvis-supervisor-"),
        "not installed: {text}"
    );
    let (code, text) = install(&unsigned, "unsigned");
    // rpm 4.18: "package NAME does not verify: no signature".
    assert!(
        code != 0 && text.contains("does not verify: no signature"),
        "the unsigned {} must be refused with _pkgverify_level signature (exit {code}):\n{text}",
        unsigned.display()
    );
    println!(
        "figures: {} signed .rpm (key {key_id}) pass rpm -K; tampered refused; unsigned install refused: {}",
        signed.len(),
        text.lines()
            .find(|l| l.contains("does not verify"))
            .unwrap_or_default()
            .trim()
    );

    /// The `key=value` lines of docs/repositories.md's `/etc/yum.repos.d/jarvis-supervisor.repo`
    /// snippet.
    fn repo_file_of(doc: &str) -> std::collections::HashMap<String, String> {
        let block = doc
            .split("```ini\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .find(|b| b.contains("/etc/yum.repos.d/jarvis-supervisor.repo"))
            .expect("docs/repositories.md has an ```ini block for /etc/yum.repos.d/jarvis-supervisor.repo");
        block
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with('['))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    /// Where the payload of an .rpm starts: after the 96-byte lead, the
    /// signature header (padded to 8 bytes) and the header.
    fn payload_offset(rpm: &[u8]) -> usize {
        let header_end = |at: usize| -> usize {
            assert_eq!(&rpm[at..at + 3], &[0x8e, 0xad, 0xe8], "no rpm header at {at}");
            let n = |i: usize| u32::from_be_bytes(rpm[i..i + 4].try_into().unwrap()) as usize;
            at + 16 + 16 * n(at + 8) + n(at + 12)
        };
        let sig_end = header_end(96);
        header_end(sig_end.div_ceil(8) * 8)
    }

    fn run(cmd: &mut std::process::Command) -> (i32, String) {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (cargo xtask deps installs rpm)"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }
}

/// The fleet playbook, run by ansible-playbook on this machine in a network
/// namespace of the test's own, over ssh to the container's sshd on
/// loopback; then once more, which must change nothing.
pub fn ansible_playbook() {
    let t0 = Instant::now();
    let bin = std::env::var_os("JARVIS_PY_BIN").map(PathBuf::from).expect(
        "$JARVIS_PY_BIN is not set: run through `cargo xtask test`, which installs ansible under target/",
    );
    let repo = dir("JARVIS_REPO");
    let ns = Netns::new("ansible");
    let key = Key::new();
    let port = 2230;
    let c = sshd_host(Suite::Bookworm, &ns, &key, port);
    // The bot's code, deployed separately; the playbook brings the rest.
    deploy_standin(&c);
    c.ok("rm /home/jarvis/Jarvis/.env");
    publish(&c, &repo);
    c.ok("mv /etc/apt/sources.list /etc/apt/sources.list.off");

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let opts: Vec<String> = key.options().iter().map(|o| format!("-o {o}")).collect();
    fs::write(
        w.join("inventory.ini"),
        format!(
            "[jarvis]\ne2e ansible_host=127.0.0.1 ansible_port={port} ansible_user=root ansible_ssh_common_args='{}'\n",
            opts.join(" ")
        ),
    )
    .unwrap();
    let token = "123456789:AAFakeTokenForTestsOnly_abcdefghijklmn";
    fs::write(
        w.join("vault.yml"),
        format!("jarvis_env: |\n  TELEGRAM_BOT_TOKEN={token}\n  TELEGRAM_ADMIN_IDS=123456789\n  STANDIN_READY_DELAY=1\n"),
    )
    .unwrap();
    fs::write(w.join("vault-pass"), "e2e-vault-password\n").unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let ansible = |program: &str| {
        let mut cmd = ns.command("env");
        cmd.arg(format!("PATH={path}"))
            .arg(format!("ANSIBLE_HOME={}", w.join("home").display()))
            .arg(format!("ANSIBLE_LOCAL_TEMP={}", w.join("tmp").display()))
            // No ssh master left behind after the test.
            .arg("ANSIBLE_SSH_ARGS=-o ControlMaster=no")
            .arg("ANSIBLE_PIPELINING=True")
            .arg("ANSIBLE_NOCOLOR=1")
            .arg(bin.join(program))
            .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/ansible"));
        cmd
    };
    let st = ansible("ansible-vault")
        .args(["encrypt", "--vault-password-file"])
        .arg(w.join("vault-pass"))
        .arg(w.join("vault.yml"))
        .status()
        .unwrap();
    assert!(st.success(), "ansible-vault encrypt");
    assert!(fs::read_to_string(w.join("vault.yml"))
        .unwrap()
        .starts_with("$ANSIBLE_VAULT"));

    let play = || {
        let out = ansible("ansible-playbook")
            .arg("-i")
            .arg(w.join("inventory.ini"))
            .arg("--vault-password-file")
            .arg(w.join("vault-pass"))
            .arg("-e")
            .arg(format!("@{}", w.join("vault.yml").display()))
            .args(["-e", &format!("jarvis_repo_url=file://{REPO_IN}")])
            .args([
                "-e",
                &format!(
                    "jarvis_repo_keyring={}",
                    repo.join("apt/jarvis-supervisor.gpg").display()
                ),
            ])
            .arg("site.yml")
            .output()
            .expect("ansible-playbook");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    };
    let (code, first) = play();
    println!("{first}");
    assert_eq!(code, 0, "first run failed:\n{first}");
    assert!(
        !first.contains("AAFakeToken"),
        "a secret from the vault was printed"
    );
    let recap = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("e2e "))
            .unwrap_or_default()
            .to_string()
    };
    assert!(recap(&first).contains("failed=0"), "{}", recap(&first));
    assert_eq!(
        c.ok("stat -c '%U:%G %a' /home/jarvis/Jarvis/.env").trim(),
        "jarvis:jarvis 600"
    );
    assert!(active(&c), "the service runs after the playbook");
    assert_eq!(
        c.ok("dpkg-query -W -f='${Status}' jarvis-supervisor"),
        "install ok installed"
    );

    let (code, second) = play();
    println!("{second}");
    assert_eq!(code, 0, "second run failed:\n{second}");
    assert!(
        recap(&second).contains("changed=0") && recap(&second).contains("failed=0"),
        "the second run must change nothing: {}",
        recap(&second)
    );
    println!(
        "figures: first run `{}`; second run `{}`; both in {:?}",
        recap(&first).split_whitespace().collect::<Vec<_>>().join(" "),
        recap(&second).split_whitespace().collect::<Vec<_>>().join(" "),
        t0.elapsed()
    );
}
