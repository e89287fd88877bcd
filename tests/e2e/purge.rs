//! Issue 12, point 4: purge (and `rpm -e`) removes only what the package or
//! `jarvisctl` wrote. The operator's hosts file, the `.env` files beside it, a
//! `secrets/` folder, the deploy history and the kept packages stay
//! byte-identical and are listed (paths only) with the command that deletes
//! each; the drop-ins, the memory history and the conffiles go.

use std::time::Duration;

use super::container::{Container, Run};
use super::roots::Suite;
use super::{active, apt_install, deploy_standin, pkg, put_pkg, user_state, UNIT};

/// In every file the user wrote that holds a secret; never in any output.
const SECRET: &str = "purge-test-secret-5b7e0c1d";
const DEPLOY: &str = "/var/lib/jarvis-supervisor/deploys/20260101T000000Z";
const KEPT_PACKAGE: &str = "/var/lib/jarvis-supervisor/packages/jarvis-supervisor_0.0.9-1_amd64.deb";
/// A drop-in the operator wrote (`systemctl edit`): theirs, kept.
const USER_DROPIN: &str = "/etc/systemd/system/jarvis-supervisor.service.d/override.conf";
const TIMER_DROPIN: &str = "/etc/systemd/system/jarvis-supervisor-restart.timer.d/50-jarvisctl.conf";
/// The service drop-in name reserved for `jarvisctl configure`.
const SERVICE_DROPIN: &str = "/etc/systemd/system/jarvis-supervisor.service.d/50-jarvisctl.conf";
/// Written by `jarvisctl configure --code-root/--python`.
const CODE_ROOT_DROPIN: &str = "/etc/systemd/system/jarvis-supervisor.service.d/60-jarvisctl-code-root.conf";
const CODE_ROOT_LOGROTATE: &str = "/etc/logrotate.d/jarvis-code-root";
const SAMPLES: &str = "/var/lib/jarvis-supervisor/samples.jsonl";
/// The metrics for node_exporter, and where the last record wrote them.
const TEXTFILE: &str = "/var/lib/prometheus/node-exporter/jarvis_supervisor.prom";
const TEXTFILE_WHERE: &str = "/var/lib/jarvis-supervisor/textfile.path";
/// `jarvisctl deploy`'s host lock and step lock.
const DEPLOY_LOCKS: [&str; 2] = ["/run/jarvis-deploy.lock", "/run/jarvis-deploy-step.lock"];
/// Where `jarvisctl run` keeps its state (hosts without systemd).
const RUN_DIR: &str = "/run/jarvis-supervisor-run";

/// Every file the user wrote, with its content and mode.
fn user_files() -> Vec<(String, String, &'static str)> {
    let env = |host: &str| {
        format!("TELEGRAM_BOT_TOKEN=123456789:{SECRET}\nTELEGRAM_ADMIN_IDS=123456789\n# {host}\n")
    };
    vec![
        (
            "/etc/jarvis-supervisor/hosts.toml".into(),
            "[[host]]\nssh = \"root@vps1.example.org\"\nenv_file = \"vps1.env\"\n\n[[host]]\nssh = \"root@vps2.example.org\"\nenv_file = \"vps 2.env\"\n".into(),
            "644",
        ),
        ("/etc/jarvis-supervisor/vps1.env".into(), env("vps1"), "600"),
        // A space in the name: listed and quoted as it is.
        ("/etc/jarvis-supervisor/vps 2.env".into(), env("vps2"), "600"),
        (
            "/etc/jarvis-supervisor/secrets/wallet.key".into(),
            format!("{SECRET}\n"),
            "600",
        ),
        (
            format!("{DEPLOY}/meta.json"),
            "{\"status\": \"deployed\", \"reason\": \"e2e\"}\n".into(),
            "600",
        ),
        (
            format!("{DEPLOY}/manifest.tsv"),
            "bots/x.py\t0000000000000000000000000000000000000000000000000000000000000000\t644\tjarvis:jarvis\n".into(),
            "600",
        ),
        (format!("{DEPLOY}/code/bots/x.py"), "print('x')\n".into(), "644"),
        // The deploy in effect, whose manifest `jarvisctl status` reads.
        (
            "/var/lib/jarvis-supervisor/deploys/current".into(),
            "20260101T000000Z\n".into(),
            "644",
        ),
        (format!("{DEPLOY}/code/.env"), env("deploy copy"), "600"),
        (
            KEPT_PACKAGE.into(),
            "not really a package, but the user's file\n".into(),
            "644",
        ),
        (
            USER_DROPIN.into(),
            "[Service]\nEnvironment=OPERATOR_NOTE=kept\n".into(),
            "644",
        ),
    ]
}

/// What the postrm lists (one entry per path directly in a kept directory),
/// and whether it is a directory.
const LISTED: [(&str, bool); 7] = [
    ("/etc/jarvis-supervisor/hosts.toml", false),
    ("/etc/jarvis-supervisor/vps1.env", false),
    ("/etc/jarvis-supervisor/vps 2.env", false),
    ("/etc/jarvis-supervisor/secrets", true),
    ("/var/lib/jarvis-supervisor/deploys", true),
    ("/var/lib/jarvis-supervisor/packages", true),
    (USER_DROPIN, false),
];

fn q(path: &str) -> String {
    format!("'{}'", path.replace('\'', "'\\''"))
}

fn write_user_files(c: &Container) {
    for (path, text, mode) in user_files() {
        c.write(&path, &text);
        c.ok(&format!("chmod {mode} {}", q(&path)));
    }
    // As jarvisctl deploy makes them.
    c.ok(&format!(
        "chmod 700 /var/lib/jarvis-supervisor/deploys /var/lib/jarvis-supervisor/packages {DEPLOY}"
    ));
}

/// sha256, mode and owner of every user file: must not change.
fn user_hashes(c: &Container) -> String {
    let list: Vec<String> = user_files().iter().map(|(p, _, _)| q(p)).collect();
    let list = list.join(" ");
    c.ok(&format!("sha256sum -- {list}; stat -c '%a %U:%G %n' -- {list}"))
}

fn home_hashes(c: &Container) -> String {
    c.ok("cd /home/jarvis && find . -type f | sort | xargs -d '\\n' sha256sum")
}

fn exists(c: &Container, path: &str) -> bool {
    c.sh(&format!("test -e {} || test -L {}", q(path), q(path)))
        .status
        == 0
}

/// The output with the secret masked, for a failure message.
fn shown(out: &Run) -> String {
    out.all().replace(SECRET, "<SECRET>")
}

/// What a deploy leaves in /run: its locks, made as it makes them.
fn make_deploy_locks(c: &Container) {
    for f in DEPLOY_LOCKS {
        c.ok(&format!("flock -n {f} true"));
        assert!(exists(c, f), "{f} was not made");
    }
}

/// The files `jarvisctl` itself writes on a systemd host.
fn make_generated(c: &Container) {
    let out = c.ok("jarvisctl configure --weekly-restart 'Sun 04:00'");
    assert!(out.contains(TIMER_DROPIN), "{out}");
    c.write(
        SERVICE_DROPIN,
        "# Written by jarvisctl configure.\n[Service]\nEnvironment=JARVISCTL_TEST=1\n",
    );
    c.ok("systemctl daemon-reload");
    let out = c.ok("jarvisctl configure --code-root /home/jarvis/Jarvis-moved --python /usr/bin/python3");
    assert!(out.contains(CODE_ROOT_DROPIN), "{out}");
    c.ok("mkdir -p /var/lib/prometheus/node-exporter && jarvisctl status --record >/dev/null || true");
    make_deploy_locks(c);
    for f in [
        TIMER_DROPIN,
        SERVICE_DROPIN,
        CODE_ROOT_DROPIN,
        CODE_ROOT_LOGROTATE,
        SAMPLES,
        TEXTFILE,
        TEXTFILE_WHERE,
    ] {
        assert!(exists(c, f), "{f} was not made");
    }
}

/// The checks shared by apt purge and rpm -e, on the output `out` of the
/// removal: the user's files are byte-identical, listed (paths only) with a
/// command that deletes each, and the secret is never printed.
fn assert_kept_and_listed(c: &Container, out: &Run, hashes: &str, also_listed: &[&str]) {
    let text = shown(out);
    assert!(
        !out.all().contains(SECRET),
        "the removal printed a secret:\n{text}"
    );
    assert_eq!(user_hashes(c), hashes, "a user file changed:\n{text}");
    assert!(
        out.stdout.contains("kept the user jarvis"),
        "no word on the bot's files:\n{text}"
    );
    let listed: Vec<(String, bool)> = LISTED
        .iter()
        .map(|(p, d)| (p.to_string(), *d))
        .chain(also_listed.iter().map(|p| (p.to_string(), false)))
        .collect();
    for (path, dir) in &listed {
        let line = if *dir {
            format!("  {path}/")
        } else {
            format!("  {path}")
        };
        assert!(
            out.stdout
                .lines()
                .any(|l| l == line || l.starts_with(&format!("{line} ("))),
            "{path} is not listed as kept:\n{text}"
        );
        let rm = format!("  rm -rf -- {}", q(path));
        assert!(
            out.stdout.lines().any(|l| l == rm),
            "no `rm -rf` line for {path}:\n{text}"
        );
    }
    let count = format!("kept {} paths", listed.len());
    assert!(out.stdout.contains(&count), "expected {count:?}:\n{text}");
    for gone in [
        "samples.jsonl",
        "50-jarvisctl.conf",
        "60-jarvisctl-code-root.conf",
        "env-rules.conf",
    ] {
        assert!(!out.stdout.contains(gone), "{gone} is listed as kept:\n{text}");
    }
    // The printed commands are right: run them, and only the directories remain.
    let script: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("  rm -rf -- "))
        .collect();
    assert_eq!(script.len(), listed.len(), "{text}");
    c.ok(&script.join("\n"));
    let left = c.ok(
        "find /etc/jarvis-supervisor /var/lib/jarvis-supervisor /etc/systemd/system/jarvis-supervisor.service.d -mindepth 1",
    );
    assert_eq!(left, "", "the printed commands left these behind");
}

/// Whatever jarvisctl made that the removal must have taken.
fn assert_generated_gone(c: &Container) {
    for f in [
        TIMER_DROPIN,
        SERVICE_DROPIN,
        CODE_ROOT_DROPIN,
        CODE_ROOT_LOGROTATE,
        SAMPLES,
        TEXTFILE,
        TEXTFILE_WHERE,
        DEPLOY_LOCKS[0],
        DEPLOY_LOCKS[1],
        "/etc/systemd/system/jarvis-supervisor-restart.timer.d",
        "/etc/jarvis-supervisor/env-rules.conf",
        "/etc/jarvis-supervisor/heartbeat.conf",
        "/etc/logrotate.d/jarvis",
        "/etc/logrotate.d/jarvis-fallback",
    ] {
        assert!(!exists(c, f), "{f} is left after the removal");
    }
    // Nothing else of the package's, anywhere in its directories: only
    // what the user wrote is left.
    let left = c.ok(
        "find /etc/jarvis-supervisor /var/lib/jarvis-supervisor /etc/systemd/system/jarvis-supervisor*.d /run/jarvis-supervisor* 2>/dev/null | sort || true",
    );
    let mut want: Vec<String> = vec![
        "/etc/jarvis-supervisor".into(),
        "/var/lib/jarvis-supervisor".into(),
        "/etc/jarvis-supervisor/secrets".into(),
        "/var/lib/jarvis-supervisor/deploys".into(),
        "/var/lib/jarvis-supervisor/packages".into(),
        DEPLOY.into(),
        format!("{DEPLOY}/code"),
        format!("{DEPLOY}/code/bots"),
        "/etc/systemd/system/jarvis-supervisor.service.d".into(),
    ];
    want.extend(user_files().into_iter().map(|(p, _, _)| p));
    let mut got: Vec<String> = left.lines().map(str::to_string).collect();
    got.retain(|p| !p.ends_with(".rpmsave"));
    want.sort();
    got.sort();
    assert_eq!(got, want, "the removal left other files, or took user files");
}

/// A booted Debian 12 with the stand-in running from `install`, the user's
/// files and jarvisctl's own files in place; returns the hashes to compare.
fn prepared(c: &Container) -> (String, String, String) {
    c.wait_for("active", Duration::from_secs(60), active);
    make_generated(c);
    write_user_files(c);
    c.ok("systemctl daemon-reload");
    // The operator's heartbeat URL: a secret in a conffile.
    c.ok(&format!(
        "printf 'url = http://127.0.0.1:9/{SECRET}\\n' > /etc/jarvis-supervisor/heartbeat.conf"
    ));
    // The bot stops writing its logs: /home/jarvis can be compared.
    c.ok(&format!("systemctl stop {UNIT}"));
    (user_hashes(c), home_hashes(c), user_state(c))
}

/// `apt purge` on a systemd host.
pub fn apt_purge() {
    let c = Container::boot(Suite::Bookworm);
    deploy_standin(&c);
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "apt install:\n{}", out.all());
    let (hashes, home, user) = prepared(&c);
    assert!(exists(&c, "/etc/init.d/jarvis-supervisor"));

    let out = c.sh("apt-get purge -y -q jarvis-supervisor 2>&1");
    println!("apt purge:\n{}", shown(&out));
    assert_eq!(out.status, 0, "apt purge:\n{}", shown(&out));
    assert!(
        c.sh("dpkg -s jarvis-supervisor").status != 0,
        "still known to dpkg after purge"
    );
    assert!(!exists(&c, "/etc/init.d/jarvis-supervisor"), "init script left");
    assert_generated_gone(&c);
    assert_eq!(home_hashes(&c), home, "purge touched /home/jarvis");
    assert_eq!(user_state(&c), user, "purge changed the user or the bot's files");
    assert_kept_and_listed(&c, &out, &hashes, &[]);
}

/// `rpm -e` on a systemd host (the rpm installed with --nodeps in Debian 12,
/// as the other rpm test does). The changed heartbeat.conf, a
/// %config(noreplace) file, is kept by rpm as .rpmsave and listed.
pub fn rpm_erase() {
    let c = Container::boot(Suite::Bookworm);
    let rpm = put_pkg(&c, &pkg("JARVIS_RPM"));
    deploy_standin(&c);
    let out = c.sh(&format!("rpm -i --nodeps {rpm} 2>&1"));
    assert_eq!(out.status, 0, "rpm -i:\n{}", out.all());
    assert!(
        !out.all().contains("scriptlet failed") && !out.all().contains("error:"),
        "rpm -i reported an error:\n{}",
        out.all()
    );
    let (hashes, home, user) = prepared(&c);

    let out = c.sh("rpm -e --nodeps jarvis-supervisor 2>&1");
    println!("rpm -e:\n{}", shown(&out));
    assert_eq!(out.status, 0, "rpm -e:\n{}", shown(&out));
    assert!(
        !out.all().contains("scriptlet failed") && !out.all().contains("error:"),
        "rpm -e reported an error:\n{}",
        shown(&out)
    );
    assert!(c.sh("rpm -q jarvis-supervisor").status != 0, "still installed");
    let saved = "/etc/jarvis-supervisor/heartbeat.conf.rpmsave";
    assert!(
        exists(&c, saved),
        "rpm did not keep the changed config as .rpmsave"
    );
    assert_generated_gone(&c);
    assert_eq!(home_hashes(&c), home, "rpm -e touched /home/jarvis");
    assert_eq!(user_state(&c), user, "rpm -e changed the user or the bot's files");
    assert_kept_and_listed(&c, &out, &hashes, &[saved]);
}

/// `apt purge` on a host without systemd, where `jarvisctl run` keeps its
/// lock, pid file, state and log in /run/jarvis-supervisor-run: they go too.
pub fn apt_purge_sysvinit() {
    let c = Container::boot(Suite::Sysvinit);
    deploy_standin(&c);
    let out = apt_install(&c, &pkg("JARVIS_DEB"), "");
    assert_eq!(out.status, 0, "apt install:\n{}", out.all());
    c.wait_for("the engine running the bot", Duration::from_secs(60), |c| {
        c.sh(&format!("grep -q '\"state\": \"running\"' {RUN_DIR}/state.json"))
            .status
            == 0
    });
    c.ok("mkdir -p /var/lib/prometheus/node-exporter && jarvisctl status --record >/dev/null || true");
    make_deploy_locks(&c);
    for f in [
        SAMPLES,
        TEXTFILE,
        "/run/jarvis-supervisor-run/engine.log",
        "/run/jarvis-supervisor-run/state.json",
    ] {
        assert!(exists(&c, f), "{f} was not made");
    }
    write_user_files(&c);
    c.ok(&format!(
        "printf 'url = http://127.0.0.1:9/{SECRET}\\n' > /etc/jarvis-supervisor/heartbeat.conf"
    ));
    c.ok("service jarvis-supervisor stop");
    let (hashes, home, user) = (user_hashes(&c), home_hashes(&c), user_state(&c));

    let out = c.sh("apt-get purge -y -q jarvis-supervisor 2>&1");
    println!("apt purge (sysvinit):\n{}", shown(&out));
    assert_eq!(out.status, 0, "apt purge:\n{}", shown(&out));
    assert!(!exists(&c, RUN_DIR), "{RUN_DIR} is left after purge");
    assert!(!exists(&c, "/etc/init.d/jarvis-supervisor"), "init script left");
    assert_eq!(
        c.ok("ls /etc/rc2.d /etc/rc0.d | grep jarvis || true"),
        "",
        "rc links left"
    );
    assert_generated_gone(&c);
    assert_eq!(home_hashes(&c), home, "purge touched /home/jarvis");
    assert_eq!(user_state(&c), user, "purge changed the user or the bot's files");
    assert_kept_and_listed(&c, &out, &hashes, &[]);
}

/// The block of shell shared by both scripts must not drift apart.
pub fn scripts_share_the_block() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let block = |rel: &str| {
        let text = std::fs::read_to_string(root.join(rel)).unwrap();
        let a = text
            .find("# >>> generated files")
            .unwrap_or_else(|| panic!("{rel}: no '# >>> generated files'"));
        let b = text
            .find("# <<< generated files")
            .unwrap_or_else(|| panic!("{rel}: no '# <<< generated files'"));
        text[a..b].to_string()
    };
    assert_eq!(
        block("debian/postrm"),
        block("packaging/rpm/postun.sh"),
        "the generated-files block differs between debian/postrm and packaging/rpm/postun.sh"
    );
}
