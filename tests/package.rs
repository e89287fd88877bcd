//! Package checks (layer 2): lintian, rpmlint, the files each package
//! carries, and SHA256SUMS. They need the packages from `cargo xtask dist`
//! and the linters; `cargo xtask test` runs them with `--ignored`.

use std::path::PathBuf;
use std::process::Command;

fn pkg(var: &str) -> PathBuf {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("${var} is not set: build the packages and run these through `cargo xtask test`")
    });
    assert!(p.is_file(), "${var} = {} does not exist", p.display());
    p
}

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (cargo xtask test installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
#[ignore = "needs the built packages: run by cargo xtask test"]
fn lintian_reports_no_errors_and_no_warnings() {
    let deb = pkg("JARVIS_DEB");
    let (code, text) = run(Command::new("lintian")
        .args(["--fail-on", "error,warning"])
        .arg(&deb));
    let findings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    println!("lintian: {} errors/warnings", findings.len());
    assert!(findings.is_empty() && code == 0, "lintian (exit {code}):\n{text}");
}

#[test]
#[ignore = "needs the built packages: run by cargo xtask test"]
fn rpmlint_reports_no_errors() {
    let rpm = pkg("JARVIS_RPM");
    let rc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/rpm/jarvis-supervisor.rpmlintrc");
    let (_, text) = run(Command::new("rpmlint").arg("-r").arg(&rc).arg(&rpm));
    let summary = text
        .lines()
        .find(|l| l.contains("errors,"))
        .unwrap_or_else(|| panic!("no rpmlint summary:\n{text}"));
    println!("rpmlint: {summary}");
    assert!(summary.contains(" 0 errors"), "rpmlint:\n{text}");
}

const SHIPPED: &[&str] = &[
    "/usr/bin/jarvisctl",
    "/usr/libexec/jarvis-supervisor/jarvis-engine",
    "/usr/lib/systemd/system/jarvis-supervisor.service",
    "/usr/lib/systemd/system/jarvis-supervisor@.service",
    "/usr/lib/systemd/system/jarvis-supervisor.target",
    "/usr/lib/systemd/system/jarvis-supervisor-health.service",
    "/usr/lib/systemd/system/jarvis-supervisor-health.timer",
    "/usr/lib/systemd/system/jarvis-supervisor-alert.service",
    "/usr/lib/systemd/system/jarvis-supervisor-alert@.service",
    "/usr/lib/systemd/system/jarvis-supervisor-restart.service",
    "/usr/lib/systemd/system/jarvis-supervisor-restart.timer",
    "/etc/logrotate.d/jarvis",
    "/etc/jarvis-supervisor/heartbeat.conf",
    "/etc/logrotate.d/jarvis-fallback",
    "/usr/lib/tmpfiles.d/jarvis-supervisor.conf",
    "/usr/lib/sysusers.d/jarvis-supervisor.conf",
    "/usr/share/man/man1/jarvisctl.1.gz",
    "/usr/share/bash-completion/completions/jarvisctl",
    "/usr/share/zsh/vendor-completions/_jarvisctl",
    "/usr/share/fish/vendor_completions.d/jarvisctl.fish",
    // The operator's documentation; the developers' (docs/design.md,
    // docs/benchmarks.md, CONTRIBUTING.md) is not shipped: see NOT_SHIPPED.
    "/usr/share/doc/jarvis-supervisor/README.md",
    "/usr/share/doc/jarvis-supervisor/docs/install.md",
    "/usr/share/doc/jarvis-supervisor/docs/commands.md",
    "/usr/share/doc/jarvis-supervisor/docs/service.md",
    "/usr/share/doc/jarvis-supervisor/docs/monitoring.md",
    "/usr/share/doc/jarvis-supervisor/docs/pausing.md",
    "/usr/share/doc/jarvis-supervisor/docs/logs.md",
    "/usr/share/doc/jarvis-supervisor/docs/deploy.md",
    "/usr/share/doc/jarvis-supervisor/docs/fallback-engine.md",
    "/usr/share/doc/jarvis-supervisor/docs/repositories.md",
    "/usr/share/doc/jarvis-supervisor/docs/supervised-program.md",
    "/usr/share/doc/jarvis-supervisor/examples/sudoers.d-jarvis-status",
    "/usr/share/doc/jarvis-supervisor/examples/jarvis-supervisor.icinga2.conf",
    "/usr/share/doc/jarvis-supervisor/examples/jarvis-supervisor.nagios.cfg",
    "/usr/share/jarvis-supervisor/monitoring/jarvis-supervisor.rules.yml",
    "/usr/share/jarvis-supervisor/monitoring/jarvis-supervisor.rules.test.yml",
    "/usr/share/jarvis-supervisor/monitoring/grafana-dashboard.json",
];

/// The developers' documents stay in the source tree: a server needs the
/// operator's guides, not the bench tables, CI notes or the code's rules.
const NOT_SHIPPED: &[&str] = &["docs/design.md", "docs/benchmarks.md", "CONTRIBUTING.md"];

#[test]
#[ignore = "needs the built packages: run by cargo xtask test"]
fn deb_carries_helper_unit_logrotate_man_copyright_changelog_and_conffile() {
    let deb = pkg("JARVIS_DEB");
    let (code, list) = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    assert_eq!(code, 0, "{list}");
    for f in SHIPPED.iter().chain(&[
        "/usr/share/doc/jarvis-supervisor/copyright",
        "/usr/share/doc/jarvis-supervisor/changelog.Debian.gz",
        "/etc/init.d/jarvis-supervisor",
    ]) {
        assert!(list.contains(&format!(".{f}")), "{f} not in the .deb:\n{list}");
    }
    for f in NOT_SHIPPED {
        assert!(!list.contains(f), "the developers' {f} is in the .deb:\n{list}");
    }
    // The heartbeat URL is a secret: root only.
    assert!(
        list.lines().any(
            |l| (l.starts_with("-rw-r----- 0/0") || l.starts_with("-rw-r----- root/root"))
                && l.ends_with("./etc/jarvis-supervisor/heartbeat.conf")
        ),
        "heartbeat.conf is not 0640 owned by 0:0:\n{list}"
    );
    let (_, conffiles) = run(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("conffiles"));
    let mut conffiles: Vec<&str> = conffiles
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    conffiles.sort_unstable();
    assert_eq!(
        conffiles,
        [
            "/etc/init.d/jarvis-supervisor",
            "/etc/jarvis-supervisor/env-rules.conf",
            "/etc/jarvis-supervisor/heartbeat.conf",
            "/etc/logrotate.d/jarvis",
            "/etc/logrotate.d/jarvis-fallback"
        ]
    );
    let (_, control) = run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends"));
    for dep in ["adduser", "python3", "logrotate", "procps"] {
        assert!(control.contains(dep), "Depends lacks {dep}: {control}");
    }
    // Issue 14: no version on python3, so a host whose system python3 is
    // older than the bot needs (Ubuntu 22.04, EL9) can install it and run
    // the bot from a venv made with a newer Python; check enforces 3.11+
    // on the interpreter that runs the bot.
    assert!(
        !control.contains("python3 ("),
        "python3 must not be versioned: {control}"
    );
    let (_, recommends) = run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Recommends"));
    assert!(recommends.contains("python3-venv"), "Recommends: {recommends}");

    // md5sums (what dpkg --verify checks): one line per regular file of the
    // data archive, and every sum right.
    let (code, sums) = run(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("md5sums"));
    assert_eq!(code, 0, "the .deb has no md5sums control file:\n{sums}");
    let files: Vec<&str> = list
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches("./"))
        .collect();
    let listed: Vec<&str> = sums
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, p)| p))
        .collect();
    for f in &files {
        assert!(listed.contains(f), "{f} has no line in md5sums:\n{sums}");
    }
    let tree = tempfile::tempdir().unwrap();
    let (code, text) = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(tree.path()));
    assert_eq!(code, 0, "{text}");
    let sums_file = tree.path().join("md5sums");
    std::fs::write(&sums_file, &sums).unwrap();
    let (code, text) = run(Command::new("md5sum")
        .arg("--quiet")
        .arg("-c")
        .arg(&sums_file)
        .current_dir(tree.path()));
    assert_eq!(code, 0, "md5sums do not match the files:\n{text}");
    println!(
        "figures: md5sums lists all {} files of the .deb, every sum right",
        files.len()
    );

    // systemd-sysusers runs only where it exists: a host without systemd
    // must install the package (cargo-deb's own snippet would not check).
    let (_, postinst) = run(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("postinst"));
    let lines: Vec<&str> = postinst.lines().map(str::trim).collect();
    let calls: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("systemd-sysusers"))
        .collect();
    assert!(
        !calls.is_empty(),
        "the postinst never applies the sysusers.d file:\n{postinst}"
    );
    for i in calls {
        assert!(
            i > 0 && lines[i - 1].contains("command -v systemd-sysusers"),
            "an unguarded systemd-sysusers call in the postinst: {:?}",
            lines[i]
        );
    }
}

#[test]
#[ignore = "needs the built packages: run by cargo xtask test"]
fn rpm_carries_the_same_files_and_its_scriptlets() {
    let rpm = pkg("JARVIS_RPM");
    let (code, list) = run(Command::new("rpm").args(["-qlp", "--nosignature"]).arg(&rpm));
    assert_eq!(code, 0, "{list}");
    for f in SHIPPED {
        assert!(list.lines().any(|l| l == *f), "{f} not in the .rpm:\n{list}");
    }
    for f in NOT_SHIPPED {
        assert!(!list.contains(f), "the developers' {f} is in the .rpm:\n{list}");
    }
    let (_, scripts) = run(Command::new("rpm")
        .args(["-qp", "--scripts", "--nosignature"])
        .arg(&rpm));
    for s in ["preinstall", "postinstall", "preuninstall", "postuninstall"] {
        assert!(scripts.contains(s), "no {s} scriptlet:\n{scripts}");
    }
    // Fedora's policy: enabling at install goes through a preset file (an
    // administrator's preset can then say otherwise).
    assert!(
        list.lines()
            .any(|l| l == "/usr/lib/systemd/system-preset/50-jarvis-supervisor.preset"),
        "no preset file in the .rpm:\n{list}"
    );
    assert!(
        scripts.contains("systemctl --no-reload preset"),
        "%post must apply the preset:\n{scripts}"
    );
    // EL9's python3 is 3.9: the bot runs from a venv made with python3.11.
    let (_, requires) = run(Command::new("rpm")
        .args(["-qp", "--requires", "--nosignature"])
        .arg(&rpm));
    assert!(
        requires.lines().any(|l| l.trim() == "python3"),
        "python3 must be required, unversioned:\n{requires}"
    );
    let (_, cfg) = run(Command::new("rpm").args(["-qcp", "--nosignature"]).arg(&rpm));
    for f in ["/etc/logrotate.d/jarvis", "/etc/jarvis-supervisor/heartbeat.conf"] {
        assert!(cfg.lines().any(|l| l == f), "{f} is not %config: {cfg}");
    }
}

#[test]
#[ignore = "needs the built packages: run by cargo xtask test"]
fn sha256sums_match_the_packages() {
    let deb = pkg("JARVIS_DEB");
    let dir = deb.parent().unwrap();
    let (code, text) = run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(dir));
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.lines().filter(|l| l.ends_with(": OK")).count(), 2, "{text}");
}

/// The host's target triple (`rustc -vV`): the packages are built for it.
fn host_triple() -> String {
    let (code, text) = run(Command::new("rustc").arg("-vV"));
    assert_eq!(code, 0, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or_else(|| panic!("no host in rustc -vV:\n{text}"))
        .trim()
        .to_string()
}

/// `name version` of every crate `cargo tree` reaches from `package` over
/// normal dependencies (no dev-, no build-dependencies) on `target`,
/// the package itself and the workspace's own crates (a path source,
/// `name vX (/dir)`: jarvis-model, jarvis-engine, ...) left out.
fn normal_tree(package: &str, target: &str) -> std::collections::BTreeSet<(String, String)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let (code, text) = run(Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--locked", "-e", "normal", "--prefix", "none"])
        .args(["-p", package, "--target", target, "--format", "{p}"]));
    assert_eq!(code, 0, "cargo tree -p {package}:\n{text}");
    let set: std::collections::BTreeSet<(String, String)> = text
        .lines()
        .filter(|l| !l.contains(" (/"))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?;
            let version = w.next()?.strip_prefix('v')?;
            Some((name.to_string(), version.to_string()))
        })
        .filter(|(name, _)| name != package)
        .collect();
    assert!(!set.is_empty(), "cargo tree -p {package} listed nothing:\n{text}");
    set
}

/// Every (name, version) that Cargo.lock records.
fn lockfile() -> std::collections::BTreeSet<(String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock");
    let lock: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    lock["package"]
        .as_array()
        .expect("[[package]] in Cargo.lock")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The components of a CycloneDX document, nested ones included.
fn components(list: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    for c in list.as_array().into_iter().flatten() {
        out.push(c.clone());
        components(&c["components"], out);
    }
}

#[test]
#[ignore = "needs the built packages: run by cargo xtask test"]
fn sbom_beside_each_package_lists_the_crates_linked_into_jarvisctl() {
    let host = host_triple();
    let expected = normal_tree("jarvis-supervisor", &host);
    let lock = lockfile();
    for (name, version) in &expected {
        assert!(
            lock.contains(&(name.clone(), version.clone())),
            "{name} {version} from cargo tree is not in Cargo.lock"
        );
    }
    // Crates the SBOM must not name: a dev-dependency, and what only the
    // build tooling (xtask) links.
    let xtask_only: Vec<(String, String)> = normal_tree("xtask", &host)
        .into_iter()
        .filter(|(name, _)| !expected.iter().any(|(n, _)| n == name))
        .collect();
    assert!(
        xtask_only.iter().any(|(n, _)| n == "clap_mangen"),
        "xtask-only crates: {xtask_only:?}"
    );

    for var in ["JARVIS_DEB", "JARVIS_RPM"] {
        let package = pkg(var);
        let mut sbom_name = package.file_name().unwrap().to_os_string();
        sbom_name.push(".cdx.json");
        let path = package.with_file_name(&sbom_name);
        assert!(
            path.is_file(),
            "no SBOM beside {}: {} is missing",
            package.display(),
            path.display()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        assert_eq!(doc["bomFormat"], "CycloneDX", "{}", path.display());
        let spec = doc["specVersion"].as_str().unwrap_or_default();
        assert!(
            ["1.3", "1.4", "1.5", "1.6"].contains(&spec),
            "specVersion {spec:?} in {}",
            path.display()
        );
        let meta = &doc["metadata"]["component"];
        assert_eq!(meta["name"], "jarvis-supervisor", "{meta}");
        // The package's version (VERSION-REVISION), as in its file name.
        let version = meta["version"].as_str().unwrap_or_default();
        assert!(
            version.starts_with(&format!("{}-", env!("CARGO_PKG_VERSION")))
                && package.file_name().unwrap().to_string_lossy().contains(version),
            "metadata.component.version {version:?} is not the package's: {meta}"
        );

        let mut all = Vec::new();
        components(&doc["components"], &mut all);
        let mut listed = std::collections::BTreeSet::new();
        for c in &all {
            let name = c["name"]
                .as_str()
                .unwrap_or_else(|| panic!("component without a name: {c}"));
            let version = c["version"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no version: {c}"));
            assert_eq!(
                c["purl"].as_str(),
                Some(format!("pkg:cargo/{name}@{version}").as_str()),
                "purl of {name}: {c}"
            );
            assert!(
                lock.contains(&(name.to_string(), version.to_string())),
                "{name} {version} is not what Cargo.lock records"
            );
            assert!(
                listed.insert((name.to_string(), version.to_string())),
                "{name} {version} listed twice"
            );
        }
        let missing: Vec<_> = expected.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&expected).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: missing {missing:?}, not linked {extra:?}",
            path.display()
        );
        for (name, _) in xtask_only
            .iter()
            .chain(&[("proptest".to_string(), String::new())])
        {
            assert!(
                !all.iter().any(|c| c["name"] == name.as_str()),
                "{name} (not linked into jarvisctl) is in {}",
                path.display()
            );
        }
        // The release signs the .rpm after this was written: no hash of
        // the package file belongs here.
        let (_, sum) = run(Command::new("sha256sum").arg(&package));
        let sum = sum.split_whitespace().next().unwrap_or_default().to_string();
        assert!(
            sum.len() == 64 && !text.contains(&sum),
            "{} holds the package's own hash",
            path.display()
        );
        println!(
            "figures: {} lists {} crates ({} expected from cargo tree), spec {spec}",
            path.file_name().unwrap().to_string_lossy(),
            listed.len(),
            expected.len()
        );
    }
}

/// The .rpm's %pre feeds systemd-sysusers the sysusers.d line on stdin (the
/// file is not on disk yet): the two must be the same line, or the account
/// would depend on which package made it.
#[test]
fn rpm_pre_carries_the_sysusers_d_line() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let conf = std::fs::read_to_string(root.join("packaging/sysusers/jarvis-supervisor.conf")).unwrap();
    let entries: Vec<&str> = conf
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(entries.len(), 1, "one account expected: {entries:?}");
    let pre = std::fs::read_to_string(root.join("packaging/rpm/pre.sh")).unwrap();
    let block: Vec<&str> = pre
        .split("<<'SYSUSERS'")
        .nth(1)
        .and_then(|b| b.split("\nSYSUSERS").next())
        .expect("pre.sh has no SYSUSERS here-document")
        .lines()
        .skip(1) // the rest of the line that opens it
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(block, entries, "pre.sh and the sysusers.d file disagree");
    let fields: Vec<&str> = entries[0].split_whitespace().collect();
    assert_eq!(fields.last(), Some(&"/usr/sbin/nologin"), "{}", entries[0]);
    // Where systemd-sysusers is absent, useradd makes the same account.
    assert!(pre.contains("--shell /usr/sbin/nologin jarvis"), "{pre}");
}

/// `promtool` from Debian's `prometheus` package; a missing one fails.
fn promtool() -> &'static str {
    let found = Command::new("promtool").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "promtool is missing: apt-get install prometheus (cargo xtask test installs it)"
    );
    "promtool"
}

/// The alert rules and the dashboard as the .deb installs them, checked by
/// Prometheus' own tool: the rules load, their unit tests (a crash loop, a
/// stale file, ...) pass, every dashboard query parses as PromQL, and a
/// textfile written by the packaged jarvisctl passes `promtool check metrics`
/// (Prometheus' naming lint: counters end in _total, and so on).
#[test]
#[ignore = "needs the built packages and promtool: run by cargo xtask test"]
fn promtool_checks_and_tests_the_shipped_rules_dashboard_and_textfile() {
    let promtool = promtool();
    let deb = pkg("JARVIS_DEB");
    let tree = tempfile::tempdir().unwrap();
    let (code, text) = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(tree.path()));
    assert_eq!(code, 0, "{text}");
    let dir = tree.path().join("usr/share/jarvis-supervisor/monitoring");

    let (code, text) = run(Command::new(promtool)
        .args(["check", "rules", "jarvis-supervisor.rules.yml"])
        .current_dir(&dir));
    println!("promtool check rules: {}", text.trim().replace('\n', " / "));
    assert!(
        code == 0 && text.contains("SUCCESS"),
        "promtool check rules (exit {code}):\n{text}"
    );
    let (code, text) = run(Command::new(promtool)
        .args(["test", "rules", "jarvis-supervisor.rules.test.yml"])
        .current_dir(&dir));
    println!("promtool test rules: {}", text.trim().replace('\n', " / "));
    assert!(
        code == 0 && text.contains("SUCCESS"),
        "promtool test rules (exit {code}):\n{text}"
    );

    // Each dashboard query as a recording rule: promtool parses it.
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap()).unwrap();
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| match x {
                serde_json::Value::String(s) if k == "expr" => out.push(s.clone()),
                x => walk(x, out),
            }),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&dash, &mut exprs);
    assert!(exprs.len() >= 10, "{} queries in the dashboard", exprs.len());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        // A Grafana variable is not PromQL: give it a value.
        let e = e.replace("$instance", "host:9100");
        rules.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    let qfile = tree.path().join("dashboard-queries.yml");
    std::fs::write(&qfile, rules).unwrap();
    let (code, text) = run(Command::new(promtool).args(["check", "rules"]).arg(&qfile));
    println!("promtool: {} dashboard queries parse", exprs.len());
    assert!(
        code == 0,
        "a dashboard query is not PromQL (exit {code}):\n{text}"
    );

    // A textfile from the packaged jarvisctl, in a scratch root.
    let root = tempfile::tempdir().unwrap();
    let out_dir = root.path().join("textfile");
    std::fs::create_dir_all(&out_dir).unwrap();
    let (code, text) = run(Command::new(tree.path().join("usr/bin/jarvisctl"))
        .arg("--root")
        .arg(root.path())
        .args(["status", "--record", "--samples"])
        .arg(root.path().join("samples.jsonl"))
        .env("JARVIS_TEXTFILE_DIR", &out_dir));
    assert_eq!(code, 0, "status --record:\n{text}");
    let metrics = std::fs::read(out_dir.join("jarvis_supervisor.prom")).unwrap();
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &metrics).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "promtool check metrics found problems in the textfile:\n{text}\n{}",
        String::from_utf8_lossy(&metrics)
    );
    println!(
        "promtool check metrics: no problem in {} lines",
        String::from_utf8_lossy(&metrics).lines().count()
    );
}
