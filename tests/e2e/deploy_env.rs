//! Issue 14, item 4: `jarvisctl deploy` builds the bot's environment on
//! the host before the swap (as jarvis, beside the one in use, offline
//! from a shipped wheelhouse), swaps it with the code, and rolls it back
//! with the code. A host whose build fails is left exactly as it was.
//! On both engines at once: a systemd host and a sysvinit host.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::container::Container;
use super::deploy::{args, code, diag, fleet, host_name, json_of, pid, row, version};
use super::roots::Suite;
use super::CODE;

const PORTS: [u16; 2] = [2241, 2242];
const NAMES: [&str; 2] = ["systemd", "sysvinit"];

fn live_venv(c: &Container) -> String {
    c.sh(&format!("readlink {CODE}/venv")).stdout.trim().to_string()
}

/// The running bot's interpreter, resolved.
fn exe(c: &Container) -> String {
    let p = pid(c);
    c.ok(&format!("readlink /proc/{p}/exe")).trim().to_string()
}

fn with_requirements(dir: &Path, n: u32, requirements: &str) -> String {
    let d = code(dir, n, false, 0);
    fs::write(d.join("requirements.txt"), requirements).unwrap();
    d.to_string_lossy().into_owned()
}

pub fn environment() {
    let f = fleet(
        "pyenv",
        &[(Suite::Bookworm, PORTS[0]), (Suite::Sysvinit, PORTS[1])],
    );
    let hosts = || f.hosts.iter().zip(NAMES).enumerate();
    let diags = || format!("{}\n{}", diag(f.a()), diag(f.b()));
    // As the program's guide makes it: the code root is jarvis's, who
    // builds the environment there.
    for c in &f.hosts {
        c.ok(&format!("chown jarvis:jarvis {CODE}"));
    }
    let wh = f.tmp.path().join("wheelhouse");
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wheels.py"))
        .arg(&wh)
        .args(["alpha==1.0", "alpha==2.0", "beta==2.1"])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let wh = wh.to_str().unwrap().to_string();
    let host: Vec<String> = PORTS
        .iter()
        .flat_map(|&p| ["--host".to_string(), host_name(p)])
        .collect();
    let timing = ["--settle", "3", "--ready-timeout", "40", "--json"];
    let deploy = |what: &str, extra: &[&str]| {
        let mut a = args(&host, extra);
        a.extend(timing);
        f.deploy(what, &a)
    };

    // v1: requirements.txt is new on the hosts: built before the swap,
    // from the wheelhouse (no index here), and the bot runs it.
    let v1 = with_requirements(f.tmp.path(), 1, "alpha==1.0\nbeta>=2.0\n");
    let (rc, out, err, took) = deploy("v1", &["--code", &v1, "--wheelhouse", &wh]);
    assert_eq!(rc, 0, "v1: {err}{out}\n{}", diags());
    assert!(err.contains("requirements.txt is new on this host"), "{err}");
    let mut venv1 = Vec::new();
    for (_, (c, name)) in hosts() {
        let v = live_venv(c);
        assert!(v.starts_with("venvs/"), "{name} v1: venv is {v:?}");
        assert_eq!(version(c), "1", "{name}");
        assert!(
            exe(c).starts_with(&format!("{CODE}/{v}/")),
            "{name} v1: the bot runs {}",
            exe(c)
        );
        let check = c.sh("jarvisctl check");
        assert!(
            check.stdout.contains("2 requirement(s) of") && !check.stdout.contains("✗ requirements"),
            "{name} v1: {}",
            check.all()
        );
        venv1.push(v);
    }
    println!("figures: deploy to two hosts with a first environment build in {took:.1?}");

    // v2: changed requirements: a new environment, switched with the code.
    let v2 = with_requirements(f.tmp.path(), 2, "alpha==2.0\nbeta>=2.0\n");
    let dry = args(&host, &["--code", &v2, "--wheelhouse", &wh, "--dry-run"]);
    let (_, out, _, _) = f.deploy("v2 dry run", &dry);
    assert_eq!(
        out.matches("environment: would be rebuilt (requirements.txt changed)")
            .count(),
        2,
        "dry run: {out}"
    );
    let (rc, out, err, _) = deploy("v2", &["--code", &v2, "--wheelhouse", &wh]);
    assert_eq!(rc, 0, "v2: {err}{out}\n{}", diags());
    let v2_summary = json_of(&out);
    let mut venv2 = Vec::new();
    let mut pid2 = Vec::new();
    for (i, (c, name)) in hosts() {
        let v = live_venv(c);
        assert_ne!(v, venv1[i], "{name} v2: the environment was not rebuilt");
        assert_eq!(version(c), "2", "{name}");
        assert!(
            exe(c).starts_with(&format!("{CODE}/{v}/")),
            "{name} v2: {}",
            exe(c)
        );
        assert!(
            c.sh(&format!("test -x {CODE}/{}/bin/python", venv1[i])).status == 0,
            "{name} v2: the previous environment was not kept for rollback"
        );
        venv2.push(v);
        pid2.push(pid(c));
    }

    // v3: a requirement no wheel satisfies: each host is left exactly as
    // it was (code, environment, the running bot), and the reason is named.
    let v3 = with_requirements(f.tmp.path(), 3, "alpha==2.0\nbeta>=2.0\ngamma==9.9\n");
    let (rc, out, err, _) = deploy("v3", &["--code", &v3, "--wheelhouse", &wh]);
    assert_ne!(rc, 0, "v3 with an unsatisfiable requirement was deployed");
    let summary: Value = json_of(&out);
    for (i, (c, name)) in hosts() {
        let r = row(&summary, &host_name(PORTS[i]));
        let reason = r["reason"].as_str().unwrap_or("");
        assert!(
            reason.contains("gamma") && reason.contains("nothing on the host was changed"),
            "{name} v3: the reason does not name the requirement: {r}\n{err}"
        );
        assert_eq!(version(c), "2", "{name} v3: the code changed");
        assert_eq!(live_venv(c), venv2[i], "{name} v3: the environment changed");
        assert_eq!(pid(c), pid2[i], "{name} v3: the bot was restarted");
    }

    // --rollback undoes v2: its code and its environment.
    let (rc, out, err, _) = deploy("rollback", &["--rollback"]);
    assert_eq!(rc, 0, "rollback: {err}{out}\n{}", diags());
    for (i, (c, name)) in hosts() {
        assert_eq!(version(c), "1", "{name}");
        assert_eq!(
            live_venv(c),
            venv1[i],
            "{name} rollback: the environment did not follow the code"
        );
        assert!(
            exe(c).starts_with(&format!("{CODE}/{}/", venv1[i])),
            "{name} rollback: {}",
            exe(c)
        );
    }

    // --rollback --to v2: its environment comes back with its code; on the
    // systemd host it was removed meanwhile, so it is rebuilt from v2's
    // requirements before anything changes.
    f.a().ok(&format!("rm -rf {CODE}/{}", venv2[0]));
    for (i, (c, name)) in hosts() {
        let to = row(&v2_summary, &host_name(PORTS[i]))["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no id for v2: {v2_summary}"))
            .to_string();
        let (rc, out, err, _) = f.deploy(
            "rollback --to v2",
            &[
                "--host",
                &host_name(PORTS[i]),
                "--rollback",
                "--to",
                &to,
                "--settle",
                "3",
                "--ready-timeout",
                "40",
                "--json",
            ],
        );
        assert_eq!(rc, 0, "{name} rollback --to: {err}{out}\n{}", diags());
        assert_eq!(version(c), "2", "{name} rollback --to");
        let v = live_venv(c);
        if i == 0 {
            assert!(
                err.contains("is gone: rebuilding") && v.starts_with("venvs/") && v != venv1[0],
                "{name} rollback --to: the removed environment was not rebuilt ({v}):\n{err}"
            );
        } else {
            assert_eq!(v, venv2[i], "{name} rollback --to: the environment");
        }
        assert!(
            exe(c).starts_with(&format!("{CODE}/{v}/")),
            "{name} rollback --to: {}",
            exe(c)
        );
    }
    println!(
        "deploy environment on both engines: v1 {venv1:?}, v2 {venv2:?}, v3 refused (gamma) with the hosts unchanged, rollback to {venv1:?}, rollback --to v2 (rebuilt where removed)"
    );
}
