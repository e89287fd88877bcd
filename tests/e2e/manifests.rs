//! Issue 12: a deploy never deletes what it did not create. The stand-in's
//! components keep state beside their own code at paths drawn at random on
//! each run (so no list of excludes can pass), on a systemd host and on a
//! sysvinit host whose drop-in moves the code root; and a fault matrix: ssh
//! cut or client killed during the transfer, the swap, the package step and
//! the verification, each followed by the recovery.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::container::Container;
use super::deploy::{
    args, children, code, diag, fleet, healthy, host_name, json_of, kill_transfer_ssh, row, tree, Fleet,
    PORT_A, PORT_B,
};
use super::roots::Suite;
use super::{pkg, CODE};

/// Where the sysvinit host's drop-in moves the code root.
const MOVED: &str = "/srv/jarvis-code";
pub(crate) const DEPLOYS: &str = "/var/lib/jarvis-supervisor/deploys";

pub(crate) fn rand_name(tag: &str) -> String {
    let mut b = [0u8; 5];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    format!(
        "{tag}{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// The component's state files, relative to the code root, at random
/// names: a hidden key store, a database, JSON state, the component's own
/// .env, and a file in its generated/ folder (which the code also ships).
pub(crate) fn state_paths(comp: &str) -> Vec<String> {
    vec![
        format!("bots/{comp}/.{}/{}.key", rand_name("ks"), rand_name("w")),
        format!("bots/{comp}/{}.db", rand_name("db")),
        format!("bots/{comp}/{}.json", rand_name("st")),
        format!("bots/{comp}/.env"),
        format!("bots/{comp}/generated/{}.json", rand_name("gen")),
    ]
}

/// The stand-in writes the state at its next start (STANDIN_COMPONENT_STATE
/// in the host's .env, which a deploy never reads).
pub(crate) fn ask_for_state(c: &Container, root: &str, paths: &[String]) {
    c.ok(&format!(
        "echo STANDIN_COMPONENT_STATE={} >> {root}/.env",
        paths.join(",")
    ));
}

pub(crate) fn sums(c: &Container, root: &str, paths: &[String]) -> String {
    c.ok(&format!("cd {root} && sha256sum {}", paths.join(" ")))
}

/// A version of the code with the component: its `__init__.py` says the
/// version, and `generated/README` sits where its state goes.
pub(crate) fn version_with(dir: &Path, n: u32, comp: Option<&str>, extra: &[(&str, &str)]) -> String {
    let d = code(dir, n, false, 0);
    if let Some(comp) = comp {
        fs::create_dir_all(d.join(format!("bots/{comp}/generated"))).unwrap();
        fs::write(
            d.join(format!("bots/{comp}/__init__.py")),
            format!("VERSION = {n}\n"),
        )
        .unwrap();
        fs::write(
            d.join(format!("bots/{comp}/generated/README")),
            "generated files\n",
        )
        .unwrap();
    }
    for (rel, text) in extra {
        let p = d.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    d.to_string_lossy().into_owned()
}

/// Checks the live code against the manifest in effect: every file it
/// lists there with its content, mode and owner, no temporary file of a
/// swap nor an old file kept aside for its undo left anywhere (the deploy
/// is over). Returns (current id, files checked).
const CHECK_PY: &str = r##"
import hashlib, json, os, pwd, grp, stat, sys
code = sys.argv[1]; d = "/var/lib/jarvis-supervisor/deploys"
cur = open(d + "/current").read().strip()
bad = []; n = 0
for line in open("%s/%s/manifest.tsv" % (d, cur)):
    if line.startswith("#") or not line.strip():
        continue
    k, mode, owner, size, sha, p = line.rstrip("\n").split("\t")
    full = os.path.join(code, p)
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        bad.append(p + ": missing"); continue
    if k == "d":
        if not stat.S_ISDIR(st.st_mode): bad.append(p + ": not a directory")
        continue
    n += 1
    u, _, g = owner.partition(":")
    if not stat.S_ISREG(st.st_mode): bad.append(p + ": not a file"); continue
    if (st.st_uid, st.st_gid) != (pwd.getpwnam(u).pw_uid, grp.getgrnam(g).gr_gid): bad.append(p + ": owner")
    if st.st_mode & 0o7777 != int(mode, 8): bad.append(p + ": mode")
    if hashlib.sha256(open(full, "rb").read()).hexdigest() != sha: bad.append(p + ": content")
stray = [os.path.join(r, f) for r, _, fs in os.walk(code) for f in fs if f.endswith((".jarvis-deploy-tmp", ".jarvis-deploy-old"))]
print(json.dumps({"current": cur, "files": n, "bad": bad, "stray": stray}))
"##;

pub(crate) fn check_shipped(c: &Container, root: &str) -> (String, u64) {
    let out = c.ok(&format!("python3 - {root} <<'EOF'\n{CHECK_PY}\nEOF"));
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        v["bad"],
        serde_json::json!([]),
        "shipped files differ from the manifest in effect: {v}"
    );
    assert_eq!(
        v["stray"],
        serde_json::json!([]),
        "a swap left a temporary or kept-aside file: {v}"
    );
    (
        v["current"].as_str().unwrap().to_string(),
        v["files"].as_u64().unwrap(),
    )
}

/// Which of the manifests `ids` the live code is exactly: every file of it
/// there with its content, and no file that only the others ship.
const EXACT_PY: &str = r##"
import hashlib, json, os, sys
code = sys.argv[1]; d = "/var/lib/jarvis-supervisor/deploys"
def load(i):
    m = {}
    for line in open("%s/%s/manifest.tsv" % (d, i)):
        if line.startswith("#") or not line.strip(): continue
        k, mode, owner, size, sha, p = line.rstrip("\n").split("\t")
        if k == "f": m[p] = sha
    return m
ms = {i: load(i) for i in sys.argv[2:]}
union = set().union(*ms.values())
def live(p):
    try:
        return hashlib.sha256(open(os.path.join(code, p), "rb").read()).hexdigest()
    except FileNotFoundError:
        return None
now = {p: live(p) for p in union}
print(json.dumps([i for i, m in ms.items() if all(now[p] == m.get(p) for p in union)]))
"##;

pub(crate) fn exactly_one_of(c: &Container, root: &str, ids: &[&str]) -> String {
    let out = c.ok(&format!(
        "python3 - {root} {} <<'EOF'\n{EXACT_PY}\nEOF",
        ids.join(" ")
    ));
    let v: Vec<String> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v.len(),
        1,
        "the live code is not exactly one of {ids:?} (matches {v:?})\n{}",
        diag(c)
    );
    v[0].clone()
}

fn history_ids(c: &Container) -> Vec<String> {
    c.ok(&format!("ls {DEPLOYS} | grep -v current || true"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// The operator moves the code root with a drop-in: the unit, `run` and
/// `check` take it from there, and so must deploy.
fn move_code_root(c: &Container) {
    c.ok(&format!(
        "service jarvis-supervisor stop; mkdir -p {MOVED}; cp -a {CODE}/. {MOVED}/; \
         mkdir -p /etc/systemd/system/jarvis-supervisor.service.d; \
         printf '%s\\n' '[Service]' 'WorkingDirectory={MOVED}' 'EnvironmentFile=' 'EnvironmentFile=-{MOVED}/.env' \
         'Environment=PYTHONPATH={MOVED}' 'ExecStart=' 'ExecStart=/usr/bin/python3 {MOVED}/bots/supervisor.py' \
         'ReadWritePaths=' 'ReadWritePaths={MOVED}/logs {MOVED}/data {MOVED}/bots /home/jarvis/.lifeos /home/jarvis/.local/state/jarvis /tmp' \
         > /etc/systemd/system/jarvis-supervisor.service.d/10-code-root.conf; \
         jarvisctl setup; service jarvis-supervisor start"
    ));
    c.wait_for(
        "the bot healthy from the moved code root",
        Duration::from_secs(90),
        healthy,
    );
    let st = c.ok("jarvisctl status --json");
    assert!(st.contains("\"OK\""), "{st}");
}

pub(crate) fn version_at(c: &Container, root: &str) -> String {
    c.ok(&format!("cat {root}/bots/version.txt")).trim().to_string()
}

/// Acceptance 1 and 4: v1 -> v2 -> v3, a conflict, --rollback, --rollback
/// --to v1, --keep 1, on a systemd host and on a sysvinit host whose code
/// root a drop-in moved.
pub fn random_state_paths() {
    let t_all = Instant::now();
    let f = fleet("state", &[(Suite::Bookworm, PORT_A), (Suite::Sysvinit, PORT_B)]);
    move_code_root(f.b());
    let old_code_b = f.b().ok(&format!(
        "cd {CODE} && find . -type f | LC_ALL=C sort | xargs sha256sum"
    ));
    let roots = [CODE, MOVED];
    let comp = rand_name("comp");
    let paths = state_paths(&comp);
    println!("state paths this run (component {comp}): {paths:?}");
    for (c, root) in f.hosts.iter().zip(roots) {
        ask_for_state(c, root, &paths);
    }
    let both = vec![
        "--host".to_string(),
        host_name(PORT_A),
        "--host".into(),
        host_name(PORT_B),
    ];
    let timing = ["--settle", "3", "--ready-timeout", "40", "--json"];
    let step = |what: &str, extra: &[&str]| -> Value {
        let mut a = args(&both, extra);
        a.extend(timing);
        let (rc, out, err, took) = f.deploy(what, &a);
        assert_eq!(rc, 0, "{what}: {err}{out}\n{}\n{}", diag(f.a()), diag(f.b()));
        println!("figures: {what} on both hosts in {took:.1?}");
        json_of(&out)
    };

    let v1 = version_with(f.tmp.path(), 1, Some(&comp), &[]);
    let s1 = step("v1", &["--code", &v1]);
    // The bot wrote its state at its start after the deploy.
    let want: Vec<String> = f
        .hosts
        .iter()
        .zip(roots)
        .map(|(c, r)| sums(c, r, &paths))
        .collect();
    let check = |what: &str, id: Option<&[String; 2]>, version: &str| {
        for (i, (c, root)) in f.hosts.iter().zip(roots).enumerate() {
            assert_eq!(
                sums(c, root, &paths),
                want[i],
                "{what}: the component's state changed"
            );
            let (cur, n) = check_shipped(c, root);
            if let Some(ids) = id {
                assert_eq!(cur, ids[i], "{what}: the manifest in effect");
            }
            assert_eq!(version_at(c, root), version, "{what}");
            assert!(healthy(c), "{what}: {}", diag(c));
            println!(
                "{what}: host {i}: {n} shipped files match manifest {cur}; {} state files byte-identical",
                paths.len()
            );
        }
    };
    let ids = |s: &Value| -> [String; 2] {
        [PORT_A, PORT_B].map(|p| row(s, &host_name(p))["id"].as_str().unwrap().to_string())
    };
    let id1 = ids(&s1);
    check("after v1", Some(&id1), "1");
    // The moved root got the code; the old place was left alone.
    assert_eq!(
        f.b().ok(&format!(
            "cd {CODE} && find . -type f | LC_ALL=C sort | xargs sha256sum"
        )),
        old_code_b,
        "deploy wrote into the unit's old code root"
    );

    let v2 = version_with(
        f.tmp.path(),
        2,
        Some(&comp),
        &[(&format!("bots/{comp}/helper.py"), "X = 2\n")],
    );
    let id2 = ids(&step("v2", &["--code", &v2]));
    check("after v2", Some(&id2), "2");

    // v3 ships no component at all: its code goes, its state stays.
    let v3 = version_with(f.tmp.path(), 3, None, &[]);
    let id3 = ids(&step("v3", &["--code", &v3]));
    check("after v3", Some(&id3), "3");
    for (c, root) in f.hosts.iter().zip(roots) {
        assert_eq!(c.sh(&format!("test -e {root}/bots/{comp}/__init__.py")).status, 1);
    }

    // A version that ships a file where the component keeps its database.
    let db = paths.iter().find(|p| p.ends_with(".db")).unwrap();
    let v4 = version_with(
        f.tmp.path(),
        4,
        Some(&comp),
        &[(db.as_str(), "shipped over the bot's database\n")],
    );
    let before: Vec<String> = f.hosts.iter().map(tree).collect();
    let mut a = args(&both, &["--code", &v4]);
    a.extend(timing);
    let (rc, out, err, _) = f.deploy("a version that ships over the bot's state", &a);
    assert_eq!(rc, 1, "{err}{out}");
    let summary = json_of(&out);
    for (i, port) in [PORT_A, PORT_B].into_iter().enumerate() {
        let r = row(&summary, &host_name(port));
        assert_eq!(r["result"], "refused", "{r}");
        assert!(
            r["reason"].as_str().unwrap().contains(db.as_str()),
            "the conflict is not named: {r}"
        );
        assert!(
            err.contains(&format!("--take-over {db}")),
            "no way out shown: {err}"
        );
        assert_eq!(tree(&f.hosts[i]), before[i], "a refused deploy changed the host");
    }
    check("after the refused conflict", Some(&id3), "3");
    // The dry run says the same, and counts what it keeps.
    let (rc, out, _, _) = f.deploy(
        "dry run of the conflict",
        &args(&both, &["--code", &v4, "--dry-run"]),
    );
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains(&format!("CONFLICT {db}")) && out.contains("unshipped file(s)"),
        "{out}"
    );

    let s = step("--rollback", &["--rollback"]);
    for port in [PORT_A, PORT_B] {
        assert_eq!(row(&s, &host_name(port))["result"], "restored");
    }
    check("after --rollback", Some(&id2), "2");

    let mut to_v1: Vec<String> = Vec::new();
    for (i, port) in [PORT_A, PORT_B].into_iter().enumerate() {
        let mut a = vec![
            "--host".to_string(),
            host_name(port),
            "--rollback".into(),
            "--to".into(),
            id1[i].clone(),
        ];
        a.extend(timing.map(String::from));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (rc, out, err, took) = f.deploy("--rollback --to v1", &a);
        assert_eq!(rc, 0, "{err}{out}");
        println!("figures: --rollback --to v1 on host {i} in {took:.1?}");
        to_v1.push(
            row(&json_of(&out), &host_name(port))["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    check(
        "after --rollback --to v1",
        Some(&[to_v1[0].clone(), to_v1[1].clone()]),
        "1",
    );
    for (c, root) in f.hosts.iter().zip(roots) {
        assert_eq!(
            c.ok(&format!("cat {root}/bots/{comp}/__init__.py")).trim(),
            "VERSION = 1"
        );
    }

    let (rc, out, _, _) = f.deploy("--keep 1", &args(&both, &["--list", "--keep", "1"]));
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("1 deploy(s) kept"), "{out}");
    for (i, c) in f.hosts.iter().enumerate() {
        assert_eq!(
            history_ids(c),
            [to_v1[i].clone()],
            "--keep 1 keeps the deploy in effect only"
        );
    }
    check("after --keep 1", Some(&[to_v1[0].clone(), to_v1[1].clone()]), "1");

    // Issue 13, finding 9: the service user rewrites a shipped file (it may
    // write bots/); status and check name it, in both output forms.
    let edited = format!("bots/{comp}/__init__.py");
    for (i, (c, root)) in f.hosts.iter().zip(roots).enumerate() {
        c.ok(&format!(
            "su -s /bin/sh jarvis -c 'echo \"VERSION = 666\" > {root}/{edited}'"
        ));
        let st: Value = serde_json::from_str(&c.sh("jarvisctl status --json").stdout).unwrap();
        assert_eq!(st["code_deploy"], to_v1[i].as_str(), "{st}");
        assert_eq!(
            st["code_changed"],
            serde_json::json!([format!("{edited} (changed)")]),
            "{st}"
        );
        assert_eq!(st["verdict"], "WARNING", "{st}");
        let human = c.sh("jarvisctl status").stdout;
        assert!(human.contains(&format!("{edited} (changed)")), "{human}");
        let chk = c.sh("jarvisctl check --json").stdout;
        assert!(
            chk.contains(&format!("{root}/{edited} changed since deploy {}", to_v1[i])),
            "{chk}"
        );
        let chk = c.sh("NO_COLOR=1 jarvisctl check").stdout;
        assert!(
            chk.contains(&format!("{root}/{edited} changed since deploy")),
            "{chk}"
        );
        println!(
            "host {i}: status and check name {edited} as changed since deploy {}",
            to_v1[i]
        );
    }
    println!(
        "figures: the random-path state test on both hosts in {:.1?}",
        t_all.elapsed()
    );
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// The ssh connection of the step under way is cut (its ssh killed);
    /// the client goes on and handles the failure.
    Cut,
    /// The deploy client gets SIGKILL; the next command recovers.
    Kill,
}

/// The live ssh children of `pid` (not exited, not yet reaped), oldest
/// first.
fn ssh_children(pid: u32) -> Vec<u32> {
    children(pid)
        .into_iter()
        .filter(|(p, c)| {
            let state = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let state = state.rsplit_once(')').map_or("", |r| r.1).trim_start();
            c == "ssh" && !state.starts_with('Z')
        })
        .map(|(p, _)| p)
        .collect()
}

fn kill(pid: u32) {
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
}

/// Cuts the connection of the step under way: the newest ssh of the
/// client that is not its lock session (the oldest).
fn cut_step_ssh(client: u32) -> u32 {
    let t0 = Instant::now();
    loop {
        let v = ssh_children(client);
        if v.len() >= 2 {
            let p = *v.last().unwrap();
            kill(p);
            return p;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no step ssh under the client"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_output(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ),
    )
}

/// Acceptance 2: every cell of the fault matrix, on a systemd host.
pub fn fault_matrix() {
    let f: Fleet = fleet("faults", &[(Suite::Bookworm, PORT_A)]);
    let c = f.a();
    let host = host_name(PORT_A);
    let deb = pkg("JARVIS_DEB");
    let higher = pkg("JARVIS_DEB_HIGHER");
    let comp = rand_name("comp");
    let paths = state_paths(&comp);
    ask_for_state(c, CODE, &paths);
    // Some 25 restarts follow: past 15 a day the bot's own loop guard would
    // hold each READY back 60 s, which tells nothing about the deploy.
    c.ok(&format!("echo STANDIN_LOOP_GUARD_SLEEP=1 >> {CODE}/.env"));
    let base = ["--host", host.as_str(), "--settle", "3", "--ready-timeout", "40"];
    let v1 = version_with(f.tmp.path(), 1, Some(&comp), &[]);
    let mut a = base.to_vec();
    a.extend(["--code", v1.as_str(), "--package", deb.to_str().unwrap()]);
    let (rc, out, err, _) = f.deploy("v1, with the installed package kept", &a);
    assert_eq!(rc, 0, "{err}{out}");
    let state = sums(c, CODE, &paths);
    let mut figures = Vec::new();
    let cells = [
        ("transfer", Fault::Cut),
        ("transfer", Fault::Kill),
        ("swap", Fault::Cut),
        ("swap", Fault::Kill),
        ("package", Fault::Cut),
        ("package", Fault::Kill),
        ("verification", Fault::Cut),
        ("verification", Fault::Kill),
    ];
    for (n, (phase, fault)) in cells.into_iter().enumerate() {
        let n = n as u32 + 2;
        let what = format!("{fault:?} during the {phase}");
        let (prev, _) = check_shipped(c, CODE);
        let prev_version = version_at(c, CODE);
        // Enough changed files that the swap can be caught half-way.
        let many: Vec<(String, String)> = (0..30)
            .map(|i| (format!("bots/{comp}/m{i}.py"), format!("V = {n}\n")))
            .collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let dir = version_with(f.tmp.path(), n, Some(&comp), &refs);
        if phase == "transfer" {
            // New content each time: an unchanged file would be hard-linked
            // from the store in effect, and never cross the wire.
            fs::write(Path::new(&dir).join("big.bin"), vec![n as u8; 8 << 20]).unwrap();
        }
        let mut a = base.to_vec();
        a.extend(["--code", dir.as_str()]);
        match phase {
            "transfer" => a.extend(["--bwlimit", "1024"]),
            "swap" => a.extend(["--pause-swap-after", "5"]),
            "package" => a.extend(["--package", higher.to_str().unwrap()]),
            _ => {}
        }
        let child = f
            .command(&a)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let client = child.id();
        let trigger = match phase {
            "transfer" => "ls -a /var/lib/jarvis-supervisor/deploys/*/code | grep -q '^.big.bin'".to_string(),
            "swap" => "test -f /run/jarvis-deploy-paused".to_string(),
            // dpkg itself under way, not only the phase written.
            "package" => "pgrep -x dpkg >/dev/null".to_string(),
            _ => format!("test \"$(cd {DEPLOYS} && grep -l '\"phase\": \"verifying\"' 2*/meta.json)\""),
        };
        c.wait_for(&format!("the {phase} to start"), Duration::from_secs(120), |c| {
            c.sh(&trigger).status == 0
        });
        let t_fault = Instant::now();
        match (fault, phase) {
            (Fault::Cut, "transfer") => {
                kill_transfer_ssh(client);
            }
            (Fault::Cut, _) => {
                cut_step_ssh(client);
            }
            (Fault::Kill, _) => kill(client),
        }
        if phase == "swap" {
            // The host's half of the step goes on by itself.
            c.ok("rm -f /run/jarvis-deploy-paused");
        }
        let (fault_rc, text) = wait_output(child);
        let to_exit = t_fault.elapsed();
        println!("== {what} -> {fault_rc:?} {to_exit:.1?} after the fault\n{text}");
        // Whatever the host's step was doing finishes first.
        c.ok("flock -w 300 /run/jarvis-deploy-step.lock true");
        let newest = c
            .ok(&format!("cd {DEPLOYS} && ls -d 2* | sort -V | tail -1"))
            .trim()
            .to_string();
        let ids: Vec<&str> = if newest == prev {
            vec![prev.as_str()]
        } else {
            vec![prev.as_str(), newest.as_str()]
        };
        let held = if c.sh(&format!("test -f {DEPLOYS}/{newest}/manifest.tsv")).status == 0 {
            exactly_one_of(c, CODE, &ids)
        } else {
            exactly_one_of(c, CODE, &[prev.as_str()])
        };
        assert_eq!(
            sums(c, CODE, &paths),
            state,
            "{what}: the component's state changed"
        );
        println!(
            "{what}: the host held exactly {} ({})",
            held,
            if held == prev { "old" } else { "new" }
        );

        // Recovery: --rollback after a killed transfer or swap, the next
        // deploy otherwise.
        let rollback = fault == Fault::Kill && (phase == "transfer" || phase == "swap");
        let mut a = base.to_vec();
        if rollback {
            a.push("--rollback");
        } else {
            a.extend(["--code", dir.as_str()]);
        }
        let (rc, out, err, took) = f.deploy(&format!("recovery after {what}"), &a);
        assert_eq!(rc, 0, "{what}: recovery failed: {err}{out}\n{}", diag(c));
        let (cur, files) = check_shipped(c, CODE);
        assert!(healthy(c), "{what}: {}", diag(c));
        assert_eq!(
            sums(c, CODE, &paths),
            state,
            "{what}: the state changed in the recovery"
        );
        let v = version_at(c, CODE);
        if rollback {
            assert_eq!(
                v, prev_version,
                "{what}: --rollback did not bring back the version before"
            );
        } else {
            assert_eq!(v, n.to_string(), "{what}");
        }
        let pkg_now = c.ok("dpkg-query -W -f '${Version}' jarvis-supervisor");
        assert!(
            pkg_now.starts_with("0.1.0"),
            "{what}: package {pkg_now} after the recovery"
        );
        figures.push(format!(
            "{what}: client exit {fault_rc:?} {to_exit:.1?} after the fault; held {}; recovery ({}) {took:.1?}; now {cur} ({files} files, version {v})",
            if held == prev { "old" } else { "new" },
            if rollback { "deploy --rollback" } else { "next deploy" },
        ));
    }
    for l in &figures {
        println!("figures: {l}");
    }
}
