//! Issue 14 in booted containers, on both engines at once: a systemd
//! Debian 12 and a sysvinit Debian 12 (`jarvisctl run`), with no network.
//! The wheels are made by the test (tests/fixtures/wheels.py) and carried
//! in. Before the build the install's check and `check` name the missing
//! requirements, and the bot is not started; `venv build` builds as jarvis;
//! then the bot runs the venv's interpreter (its /proc/PID/exe) and `status`
//! names it; /etc/default/jarvis-supervisor reaches the bot, and .env wins
//! on a clash.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::container::Container;
use super::roots::Suite;
use super::{apt_install, deploy_standin, on_suites, pkg, CODE, UNIT};

/// The bot's main pid as the engine in charge reports it.
fn main_pid(c: &Container, suite: Suite) -> Option<u32> {
    if suite.has_systemd() {
        let active = c.prop(UNIT, "SubState") == "running";
        return c.prop(UNIT, "MainPID").parse().ok().filter(|&p| active && p > 0);
    }
    let st: Value = serde_json::from_str(&c.sh("cat /run/jarvis-supervisor-run/state.json").stdout)
        .unwrap_or(Value::Null);
    (st["state"] == "running")
        .then(|| st["main_pid"].as_u64())
        .flatten()
        .map(|p| p as u32)
}

fn wait_running(c: &Container, suite: Suite, not: Option<u32>) -> u32 {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(pid) = main_pid(c, suite).filter(|p| Some(*p) != not) {
            return pid;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let why = c.sh(
                "jarvisctl status; journalctl -u jarvis-supervisor -n 40 --no-pager -o cat 2>/dev/null; \
                 tail -n 40 /run/jarvis-supervisor-run/engine.log /home/jarvis/Jarvis/logs/supervisor.stdout 2>/dev/null",
            );
            panic!(
                "{}: the bot did not run within 60 s:\n{}",
                suite.name(),
                why.all()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn exe(c: &Container, pid: u32) -> String {
    c.ok(&format!("readlink /proc/{pid}/exe")).trim().to_string()
}

fn scenario(suite: Suite, wheelhouse: &Path) {
    let c = Container::boot(suite);
    let name = suite.name();
    deploy_standin(&c);
    c.put(wheelhouse, "/var/tmp/wheelhouse");
    c.ok("chmod -R a+rX /var/tmp/wheelhouse");
    c.write(
        &format!("{CODE}/requirements.txt"),
        "alpha==1.0\nbeta>=2.0  # a comment\nwinonly==1.0 ; sys_platform == \"win32\"\n",
    );
    c.write(
        "/etc/default/jarvis-supervisor",
        "JARVIS_SERVER_WIDE=from-default\nJARVIS_SHARED=from-default\n",
    );
    c.ok(&format!("echo JARVIS_SHARED=from-env >> {CODE}/.env"));
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "{name}: apt install:\n{}", out.all());

    // Before the build: the postinst's check names the missing
    // requirements and does not start the bot; check says the same, exit 1.
    let install = out.all();
    assert!(
        install.contains("requirements: alpha==1.0 (") && install.contains("not started"),
        "{name}: the install does not say why the bot is not started:\n{install}"
    );
    assert_eq!(
        main_pid(&c, suite),
        None,
        "{name}: the bot was started without its requirements"
    );
    let check = c.sh("jarvisctl check");
    assert_eq!(
        check.status,
        1,
        "{name}: check passed with missing requirements:\n{}",
        check.all()
    );
    for req in ["alpha==1.0", "beta>=2.0"] {
        assert!(
            check
                .stdout
                .contains(&format!("✗ requirements: {req} ({CODE}/requirements.txt line"))
                && check.stdout.contains("is not installed in /usr/bin/python3"),
            "{name}: check does not name {req}:\n{}",
            check.all()
        );
    }
    assert!(
        check.stdout.contains("markers exclude this host: winonly"),
        "{name}: {}",
        check.all()
    );

    // The build, as jarvis, offline, in a code root that is jarvis's (as the
    // program's guide makes it; a root-owned one is refused with that fix).
    let refused = c.sh("jarvisctl venv build --wheelhouse /var/tmp/wheelhouse 2>&1");
    assert!(
        refused.status != 0 && refused.stdout.contains("cannot write the code root"),
        "{name}: {}",
        refused.all()
    );
    c.ok(&format!("chown jarvis:jarvis {CODE}"));
    let build = c.sh("jarvisctl venv build --wheelhouse /var/tmp/wheelhouse --installer pip 2>&1");
    assert_eq!(build.status, 0, "{name}: venv build:\n{}", build.all());
    assert!(
        build.stdout.contains("skipped: winonly"),
        "{name}: {}",
        build.all()
    );
    assert_eq!(
        c.ok(&format!("stat -c %U {CODE}/venv/bin/python")).trim(),
        "jarvis"
    );
    let start = if suite.has_systemd() {
        "systemctl start jarvis-supervisor"
    } else {
        "service jarvis-supervisor start"
    };
    c.ok(start);
    let pid = wait_running(&c, suite, None);
    let exe2 = exe(&c, pid);
    assert!(
        exe2.starts_with(&format!("{CODE}/venvs/")),
        "{name}: the bot does not run the venv's interpreter: {exe2}"
    );
    // /etc/default reaches the bot; .env wins on a clash.
    let environ = c.ok(&format!("tr '\\0' '\\n' < /proc/{pid}/environ"));
    assert!(
        environ.contains("JARVIS_SERVER_WIDE=from-default"),
        "{name}: {environ}"
    );
    assert!(
        environ.contains("JARVIS_SHARED=from-env") && !environ.contains("JARVIS_SHARED=from-default"),
        "{name}: .env does not win: {environ}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let st: Value = serde_json::from_str(&c.sh("jarvisctl status --json").stdout).unwrap_or(Value::Null);
    assert_eq!(st["python"]["source"], "venv", "{name}: {st}");
    assert_eq!(st["python"]["running_exe"], exe2.as_str(), "{name}: {st}");
    let human = c.sh("jarvisctl status").stdout;
    assert!(
        human.contains(&format!("python: running {CODE}/venv/bin/python")),
        "{name}: {human}"
    );
    let check = c.sh("jarvisctl check");
    assert!(
        !check.stdout.contains("✗ requirements") && !check.stdout.contains("✗ python"),
        "{name}: {}",
        check.all()
    );
    assert!(
        check.stdout.contains(&format!(
            "2 requirement(s) of {CODE}/requirements.txt installed in {CODE}/venv/bin/python"
        )),
        "{name}: {}",
        check.all()
    );
    println!("{name}: not started before the build (check named 2 missing requirements); after it the bot runs {exe2}");

    // A requirement that cannot be satisfied: named with pip's last error
    // line, and the environment in use, and the running bot, stay as they were.
    let live = c.ok(&format!("readlink {CODE}/venv")).trim().to_string();
    c.ok(&format!("cp {CODE}/requirements.txt /var/tmp/requirements.good"));
    c.ok(&format!("echo 'gamma==9.9' >> {CODE}/requirements.txt"));
    let bad = c.sh("jarvisctl venv build --wheelhouse /var/tmp/wheelhouse --installer pip 2>&1");
    assert_eq!(bad.status, 1, "{name}: {}", bad.all());
    assert!(
        bad.stdout.contains("requirement gamma failed: ")
            && bad.stdout.contains("gamma==9.9")
            && bad.stdout.contains("the environment in use is unchanged"),
        "{name}: the failed build does not name gamma and pip's error:\n{}",
        bad.all()
    );
    assert_eq!(
        c.ok(&format!("readlink {CODE}/venv")).trim(),
        live,
        "{name}: venv moved"
    );
    assert_eq!(
        main_pid(&c, suite),
        Some(pid),
        "{name}: the failed build touched the bot"
    );
    let check = c.sh("jarvisctl check");
    assert!(
        check.status == 1 && check.stdout.contains("✗ requirements: gamma==9.9 ("),
        "{name}: check does not name the unsatisfied requirement:\n{}",
        check.all()
    );
    c.ok(&format!("cp /var/tmp/requirements.good {CODE}/requirements.txt"));

    // A second good build keeps the first for rollback; rollback goes back.
    c.ok("jarvisctl venv build --wheelhouse /var/tmp/wheelhouse --installer pip");
    let second = c.ok(&format!("readlink {CODE}/venv")).trim().to_string();
    assert_ne!(second, live, "{name}: the rebuild did not make a new environment");
    let back = c.ok("jarvisctl venv rollback");
    assert!(back.contains(&format!("venv -> {live}")), "{name}: {back}");
    assert_eq!(
        c.ok(&format!("readlink {CODE}/venv")).trim(),
        live,
        "{name}: rollback"
    );

    // The code moves to another root: configure rewrites every setting that
    // depends on it; the bot runs from there with a venv built there, and
    // the log rotation follows it.
    const MOVED: &str = "/srv/jarvis-moved";
    c.ok(&format!(
        "mkdir -p {MOVED} && tar -C {CODE} --exclude=./venv --exclude=./venvs --exclude=./logs -cf - . | tar -C {MOVED} -xf - && chown -R jarvis:jarvis {MOVED}"
    ));
    let conf = c.sh(&format!("jarvisctl configure --code-root {MOVED} 2>&1"));
    assert_eq!(conf.status, 0, "{name}: configure:\n{}", conf.all());
    let show = c.ok("jarvisctl configure --show");
    assert!(
        show.contains(&format!("WorkingDirectory={MOVED}  ("))
            && show.contains("60-jarvisctl-code-root.conf"),
        "{name}: configure --show:\n{show}"
    );
    c.ok("jarvisctl venv build --wheelhouse /var/tmp/wheelhouse --installer pip");
    let restart = if suite.has_systemd() {
        "systemctl restart jarvis-supervisor"
    } else {
        "service jarvis-supervisor restart"
    };
    c.ok(restart);
    let moved_pid = wait_running(&c, suite, Some(pid));
    let moved_exe = exe(&c, moved_pid);
    assert!(
        moved_exe.starts_with(&format!("{MOVED}/venvs/")),
        "{name}: after the move the bot runs {moved_exe}"
    );
    assert_eq!(
        c.ok(&format!("readlink /proc/{moved_pid}/cwd")).trim(),
        MOVED,
        "{name}: the bot's working directory"
    );
    c.wait_for("the bot's log in the moved root", Duration::from_secs(30), |c| {
        c.sh(&format!("test -s {MOVED}/logs/supervisor.log")).status == 0
    });
    let rotate = c.sh("logrotate -f /etc/logrotate.d/jarvis-code-root 2>&1");
    assert_eq!(rotate.status, 0, "{name}: logrotate:\n{}", rotate.all());
    let rotated = c.ok(&format!("ls {MOVED}/logs"));
    assert!(
        rotated.lines().any(|l| l.starts_with("supervisor.log.1")),
        "{name}: log rotation did not follow the code root: {rotated}"
    );
    assert_eq!(
        main_pid(&c, suite),
        Some(moved_pid),
        "{name}: rotation restarted the bot"
    );
    println!(
        "{name}: moved to {MOVED}: the bot runs {moved_exe} there; rotated {MOVED}/logs: {}",
        rotated.replace('\n', " ")
    );
}

pub fn both_engines() {
    let wh = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wheels.py"))
        .arg(wh.path())
        .args(["alpha==1.0", "beta==2.1"])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    on_suites(&[Suite::Bookworm, Suite::Sysvinit], |suite| {
        scenario(suite, wh.path())
    });
}
