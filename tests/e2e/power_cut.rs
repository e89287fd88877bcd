//! Issue 27, items 1 and 3, acceptance 1 and 2: the host fails in the
//! middle of a deploy's swap. The power is cut (the container's init
//! killed, no shutdown) at several points of a swap and the host booted
//! again; and `dpkg -i` of the package runs while a swap is half done. On
//! a systemd host and a sysvinit host at once. The stand-in records, at
//! each start, the hash of every module of a component whose 30 modules
//! each deploy changes: every start must see exactly one version.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::container::Container;
use super::deploy::{diag, fleet, healthy, host_name, Fleet, PORT_A, PORT_B};
use super::manifests::{
    ask_for_state, exactly_one_of, rand_name, state_paths, sums, version_at, version_with, DEPLOYS,
};
use super::roots::Suite;
use super::{pkg, CODE};

const MODULES: u32 = 30;
const SNAPSHOT: &str = "data/code-at-start.jsonl";

/// Module text of version `n`; `big` pads it to 8 KiB (a comment).
fn module(n: u32, big: bool) -> String {
    let text = format!("V = {n}\n");
    if big {
        format!("{text}# {}\n", "x".repeat(8192 - text.len() - 3))
    } else {
        text
    }
}

/// The version `n` of the component: its `__init__.py` and 30 modules.
fn version(tmp: &Path, n: u32, comp: &str) -> String {
    version_sized(tmp, n, comp, false)
}

fn version_sized(tmp: &Path, n: u32, comp: &str, big: bool) -> String {
    let many: Vec<(String, String)> = (0..MODULES)
        .map(|i| (format!("bots/{comp}/m{i}.py"), module(n, big)))
        .collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    version_with(tmp, n, Some(comp), &refs)
}

/// Which version each start recorded since line `from` of the snapshot
/// log saw: one per start, or a panic naming the mix.
fn versions_seen(c: &Container, from: usize) -> Vec<u32> {
    let text = c.ok(&format!("cat {CODE}/{SNAPSHOT} 2>/dev/null || true"));
    let sha = |t: String| format!("{:x}", Sha256::digest(t.as_bytes()));
    text.lines()
        .skip(from)
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let files: BTreeMap<String, String> = serde_json::from_value(v["files"].clone()).unwrap();
            let mut seen: Vec<u32> = files
                .iter()
                .map(|(name, h)| {
                    (1..100)
                        .find(|n| {
                            if name == "__init__.py" {
                                *h == sha(format!("VERSION = {n}\n"))
                            } else {
                                *h == sha(module(*n, false)) || *h == sha(module(*n, true))
                            }
                        })
                        .unwrap_or(0)
                })
                .collect();
            assert_eq!(
                files.len() as u32,
                MODULES + 1,
                "a start saw a module missing: {l}"
            );
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), 1, "a start ran a mix of versions {seen:?}: {l}");
            seen[0]
        })
        .collect()
}

fn lines_of(c: &Container) -> usize {
    c.ok(&format!("cat {CODE}/{SNAPSHOT} 2>/dev/null | wc -l"))
        .trim()
        .parse()
        .unwrap()
}

fn deploy_cmd(f: &Fleet, host: &str, args: &[&str]) -> Command {
    let mut cmd = f.ns.command(f.bin.to_str().unwrap());
    cmd.arg("deploy");
    for o in f.key.options() {
        cmd.args(["--ssh-option", &o]);
    }
    cmd.args(["--host", host, "--ready-timeout", "60"]);
    cmd.args(args);
    cmd
}

fn newest(c: &Container) -> String {
    c.ok(&format!("cd {DEPLOYS} && ls -d 2* | sort -V | tail -1"))
        .trim()
        .to_string()
}

/// Every cell on one host; its figures.
fn cells(f: &Fleet, c: &mut Container, port: u16, suite: Suite) -> Vec<String> {
    let host = host_name(port);
    let tag = suite.name();
    let comp = rand_name("comp");
    let paths = state_paths(&comp);
    ask_for_state(c, CODE, &paths);
    c.ok(&format!(
        "echo STANDIN_LOOP_GUARD_SLEEP=1 >> {CODE}/.env; echo STANDIN_CODE_SNAPSHOT={SNAPSHOT},bots/{comp} >> {CODE}/.env"
    ));
    let tmp = f.tmp.path().join(tag);
    std::fs::create_dir_all(&tmp).unwrap();
    let v1 = version(&tmp, 1, &comp);
    let out = deploy_cmd(f, &host, &["--code", &v1, "--settle", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tag}: v1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = sums(c, CODE, &paths);
    let prev = newest(c);
    let prev_n = 1;
    let mut figures = Vec::new();

    // Acceptance 2: the power cut at several points of a swap.
    let points: [(&str, Option<u32>); 3] = [
        ("after the swap's first change", Some(1)),
        ("half-way through the swap", Some(MODULES / 2)),
        ("in the verification, after the swap", None),
    ];
    for (i, (point, pause)) in points.into_iter().enumerate() {
        let n = i as u32 + 2;
        let dir = version(&tmp, n, &comp);
        let mut args = vec!["--code", dir.as_str()];
        let pause_s = pause.map(|p| p.to_string());
        match &pause_s {
            Some(p) => args.extend(["--pause-swap-after", p.as_str(), "--settle", "2"]),
            // Long enough to be caught in it: the new bot's components stay
            // "starting" (no evidence that it is up), so the deploy waits out
            // its settle window.
            None => {
                args.extend(["--settle", "60"]);
                c.ok(&format!("echo STANDIN_COMPONENTS_START_DELAY=600 >> {CODE}/.env"));
            }
        }
        let log = tmp.join(format!("deploy-{n}.log"));
        let before = lines_of(c);
        let mut client = deploy_cmd(f, &host, &args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let trigger = match pause {
            Some(_) => "test -f /run/jarvis-deploy-paused".to_string(),
            None => format!("grep -l '\"phase\": \"verifying\"' {DEPLOYS}/2*/meta.json"),
        };
        c.wait_for(
            &format!("{tag}: the deploy {point}"),
            Duration::from_secs(120),
            |c| {
                // A deploy that ended before the point is a failure to show.
                if let Ok(Some(st)) = client.try_wait() {
                    panic!(
                        "{tag}: the deploy ended ({st}) before {point}:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                // In the verification: once the bot the deploy restarted
                // on the new code has recorded its start, or that start,
                // the deploy's own, would count as one after the cut.
                c.sh(&trigger).status == 0 && (pause.is_some() || versions_seen(c, before).contains(&n))
            },
        );
        let from = lines_of(c);
        let id = newest(c);
        let _ = client.kill();
        let _ = client.wait();
        if pause.is_none() {
            // Written in place: the .env keeps its owner and mode.
            c.ok(&format!(
                "grep -v '^STANDIN_COMPONENTS_START_DELAY=' {CODE}/.env > /tmp/env.new; cat /tmp/env.new > {CODE}/.env; rm /tmp/env.new"
            ));
        }
        let mut said = String::new();
        {
            // First the deploy alone is cut, the host up (a swap's worker
            // killed, as an OOM kill would): status and check name an
            // interrupted deploy, and how to settle it.
            if pause.is_some() {
                c.ok("kill -9 $(cat /run/jarvis-deploy-paused)");
            }
            c.wait_for(
                &format!("{tag}: the deploy lock freed"),
                Duration::from_secs(30),
                |c| c.sh("flock -n /run/jarvis-deploy.lock true").status == 0,
            );
            let st = c.sh("jarvisctl status; jarvisctl check");
            let meta = c.ok(&format!("cat {DEPLOYS}/{id}/meta.json"));
            // Unless the health timer's status --record settled it first.
            if !meta.contains("undone by the health check") {
                let want = match pause {
                    Some(_) => format!(
                        "deploy {id} was interrupted while swapping: the code may be part old, part new"
                    ),
                    None => format!(
                        "deploy {id} was interrupted while verifying, after its swap: the bot may run its unverified code"
                    ),
                };
                assert!(
                    st.stdout.matches(&want).count() >= 2,
                    "{tag}: status and check said:\n{}",
                    st.all()
                );
                assert!(
                    !st.stdout.contains("changed on the host since deploy"),
                    "{tag}: {}",
                    st.all()
                );
                said = st
                    .stdout
                    .lines()
                    .find(|l| l.contains(&want))
                    .unwrap_or_default()
                    .trim()
                    .to_string();
            }
        }
        c.power_cut();
        let t0 = Instant::now();
        c.start();
        c.ok("rm -f /run/jarvis-deploy-paused");
        // sshd up again too: the next cell's deploy comes over ssh.
        c.wait_for(
            &format!("{tag}: sshd after the boot"),
            Duration::from_secs(60),
            |c| {
                c.sh(&format!("timeout 2 bash -c '</dev/tcp/127.0.0.1/{port}'"))
                    .status
                    == 0
            },
        );
        c.wait_for(
            &format!("{tag}: a healthy bot after the cut {point}"),
            Duration::from_secs(120),
            healthy,
        );
        let up = t0.elapsed();
        // The swap was never verified: undone before the first start.
        let held = exactly_one_of(c, CODE, &[prev.as_str(), id.as_str()]);
        assert_eq!(
            held,
            prev,
            "{tag}, cut {point}: the host holds deploy {held}\n{}",
            diag(c)
        );
        let seen = versions_seen(c, from);
        assert!(
            !seen.is_empty(),
            "{tag}, cut {point}: no start recorded since the boot"
        );
        assert!(
            seen.iter().all(|v| *v == prev_n),
            "{tag}, cut {point}: the starts since the boot ran versions {seen:?}, not {prev_n} alone"
        );
        assert_eq!(
            sums(c, CODE, &paths),
            state,
            "{tag}, cut {point}: the bot's state changed"
        );
        let meta = c.ok(&format!("cat {DEPLOYS}/{id}/meta.json"));
        assert!(
            meta.contains("\"interrupted-rolled-back\"")
                && (meta.contains("undone by the host before the bot's start")
                    || meta.contains("undone by the health check")),
            "{tag}, cut {point}: {meta}"
        );
        let st = c.ok("jarvisctl status 2>&1 || true");
        assert!(!st.contains("changed on the host since deploy"), "{tag}: {st}");
        figures.push(format!(
            "{tag}: power cut {point}: booted to a healthy bot in {up:.1?}, {} start(s) since, all on version {prev_n} (deploy {prev}); deploy {id} undone; status said before the cut: {said:?}",
            seen.len()
        ));
    }

    // Item 3: dpkg -i of the package while a swap is half done.
    let n = 10;
    let dir = version(&tmp, n, &comp);
    let from = lines_of(c);
    let client = deploy_cmd(
        f,
        &host,
        &["--code", &dir, "--pause-swap-after", "10", "--settle", "2"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    c.wait_for(
        &format!("{tag}: the swap to pause"),
        Duration::from_secs(120),
        |c| c.sh("test -f /run/jarvis-deploy-paused").status == 0,
    );
    let deb = pkg("JARVIS_DEB");
    c.put(&deb, "/var/tmp/pkgs/again.deb");
    // Its own output and no other: c.ok waits for the pipes it hands out.
    c.ok("(dpkg -i /var/tmp/pkgs/again.deb > /var/tmp/dpkg.log 2>&1; echo $? > /var/tmp/dpkg.rc) </dev/null >/dev/null 2>&1 &");
    // The package's settle waits for the swap's end.
    c.wait_for(
        &format!("{tag}: the postinst's settle"),
        Duration::from_secs(60),
        |c| c.sh("pgrep -f 'jarvisctl [s]ettle --by install'").status == 0,
    );
    let t0 = Instant::now();
    c.ok("rm -f /run/jarvis-deploy-paused");
    c.wait_for(&format!("{tag}: dpkg to finish"), Duration::from_secs(200), |c| {
        c.sh("test -s /var/tmp/dpkg.rc").status == 0
    });
    let dpkg_took = t0.elapsed();
    let out = client.wait_with_output().unwrap();
    let dpkg = c.ok("cat /var/tmp/dpkg.rc /var/tmp/dpkg.log");
    assert!(
        dpkg.starts_with("0\n"),
        "{tag}: dpkg -i during the swap failed:\n{dpkg}"
    );
    c.wait_for(
        &format!("{tag}: a healthy bot after dpkg"),
        Duration::from_secs(90),
        healthy,
    );
    let held = exactly_one_of(c, CODE, &[prev.as_str(), newest(c).as_str()]);
    let seen = versions_seen(c, from);
    assert!(
        seen.iter().all(|v| *v == prev_n || *v == n),
        "{tag}: a start during dpkg ran version(s) {seen:?}"
    );
    assert_eq!(
        sums(c, CODE, &paths),
        state,
        "{tag}: dpkg during the swap changed the state"
    );
    let rc = out.status.code();
    if dpkg_took > Duration::from_secs(30) {
        // What held dpkg: its own output, and the engine's (sysvinit) or
        // the unit's journal lines.
        println!(
            "{tag}: dpkg took {dpkg_took:.1?}:\n{dpkg}\n{}",
            c.sh("tail -n 40 /run/jarvis-supervisor-run/engine.log 2>/dev/null; journalctl -u jarvis-supervisor --since -5min --no-pager 2>/dev/null | tail -n 40").all()
        );
    }
    figures.push(format!(
        "{tag}: dpkg -i mid-swap: finished {dpkg_took:.1?} after the swap went on; the deploy exited {rc:?}; starts since ran versions {seen:?}; the host holds {} (version {})",
        held,
        version_at(c, CODE)
    ));
    let prev = held;

    // Item 4: a garbage deploys/current is named, and the next deploy
    // rebuilds it from the live code rather than refusing with conflicts.
    c.ok(&format!("printf 'garbage\\0\\n' > {DEPLOYS}/current"));
    let st = c.sh("jarvisctl status; jarvisctl check");
    assert!(
        st.stdout
            .contains("deploys/current is damaged (it holds no deploy id: 9 byte(s))"),
        "{tag}: {}",
        st.all()
    );
    // With a shipped file changed by hand too, the live code matches no
    // deploy and current cannot be rebuilt: bookkeeping, so a restart still
    // starts the bot (its settle says why), and status goes on naming it.
    c.ok(&format!(
        "cp -p {CODE}/bots/version.txt /var/tmp/version.keep && echo '# by hand' >> {CODE}/bots/version.txt"
    ));
    let r = c.sh("jarvisctl restart");
    assert_eq!(
        r.status,
        0,
        "{tag}: a damaged current stopped the start: {}",
        r.all()
    );
    c.wait_for(&format!("{tag}: the bot up"), Duration::from_secs(60), |c| {
        super::deploy::status(c)["state"] == "active"
    });
    let st = c.sh("jarvisctl status");
    assert!(
        st.stdout.contains("deploys/current is damaged"),
        "{tag}: {}",
        st.all()
    );
    c.ok(&format!("cp -p /var/tmp/version.keep {CODE}/bots/version.txt"));
    let n = 11;
    let dir = version(&tmp, n, &comp);
    let t0 = Instant::now();
    let out = deploy_cmd(f, &host, &["--code", &dir, "--settle", "2"])
        .output()
        .unwrap();
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{tag}: the deploy after a garbage current: {err}"
    );
    assert!(
        err.contains(&format!("rebuilt: the live code is deploy {prev}'s")),
        "{tag}: {err}"
    );
    assert_eq!(version_at(c, CODE), n.to_string());
    figures.push(format!(
        "{tag}: garbage deploys/current: named by status and check; the next deploy rebuilt it (deploy {prev}) and succeeded in {took:.1?}"
    ));
    let prev = newest(c);

    // Item 4: a deploy cut mid-swap whose meta.json is then truncated: named
    // as an interrupted deploy, and undone by the next deploy.
    let client = deploy_cmd(
        f,
        &host,
        &["--code", &version(&tmp, 12, &comp), "--pause-swap-after", "7"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    c.wait_for(
        &format!("{tag}: the swap to pause"),
        Duration::from_secs(120),
        |c| c.sh("test -f /run/jarvis-deploy-paused").status == 0,
    );
    let cut = newest(c);
    let mut client = client;
    let _ = client.kill();
    let _ = client.wait();
    c.ok("kill -9 $(cat /run/jarvis-deploy-paused); rm -f /run/jarvis-deploy-paused");
    c.wait_for(
        &format!("{tag}: the deploy lock freed"),
        Duration::from_secs(30),
        |c| c.sh("flock -n /run/jarvis-deploy.lock true").status == 0,
    );
    c.ok(&format!(
        "f={DEPLOYS}/{cut}/meta.json; head -c 60 $f > $f.cut && mv $f.cut $f"
    ));
    let st = c.sh("jarvisctl status; jarvisctl check");
    let want = format!("deploy {cut} was interrupted while an unknown step (meta.json is not a deploy journal (it ends early");
    let meta = c.ok(&format!("cat {DEPLOYS}/{cut}/meta.json"));
    assert!(
        st.stdout.contains(&want) || meta.contains("undone by the health check"),
        "{tag}: {}",
        st.all()
    );
    let n = 13;
    let dir = version(&tmp, n, &comp);
    let t0 = Instant::now();
    let out = deploy_cmd(f, &host, &["--code", &dir, "--settle", "2"])
        .output()
        .unwrap();
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{tag}: the deploy after a corrupt journal: {err}"
    );
    assert_eq!(version_at(c, CODE), n.to_string());
    let meta = c.ok(&format!("cat {DEPLOYS}/{cut}/meta.json"));
    assert!(meta.contains("\"interrupted-rolled-back\""), "{tag}: {meta}");
    assert_eq!(sums(c, CODE, &paths), state, "{tag}: the state changed");
    assert!(versions_seen(c, 0).iter().all(|v| *v > 0));
    figures.push(format!(
        "{tag}: a cut swap with a truncated meta.json (deploy {cut}, after {prev}): named by status; the next deploy undid it and succeeded in {took:.1?}"
    ));
    let prev = newest(c);
    let prev_v = version_at(c, CODE);

    // Item 2, acceptance 3: the component's filesystem fills during the
    // swap's staging (a 256 KiB tmpfs over its directory, with its files
    // and state copied in, then filled to 48 KiB free; the swap writes 30
    // files of 8 KiB). The deploy fails with the live code untouched, the
    // bot not restarted, and no ROLLBACK FAILED; once freed it deploys.
    let d = format!("{CODE}/bots/{comp}");
    c.ok(&format!(
        "cp -a {d} /var/tmp/comp-before && mount -t tmpfs -o size=1m,mode=0755 tmpfs {d} && cp -a /var/tmp/comp-before/. {d}/ \
         && chown jarvis:jarvis {d} && free=$(df -k --output=avail {d} | tail -1) && fallocate -l $(( (free - 48) * 1024 )) {d}/.filler"
    ));
    let pid_before = super::deploy::pid(c);
    let big = version_sized(&tmp, 14, &comp, true);
    let t0 = Instant::now();
    let out = deploy_cmd(f, &host, &["--code", &big, "--settle", "2"])
        .output()
        .unwrap();
    let took = t0.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !out.status.success(),
        "{tag}: a deploy onto a full disk succeeded:\n{text}"
    );
    assert!(!text.contains("ROLLBACK FAILED"), "{tag}: {text}");
    assert!(text.contains("No space left on device"), "{tag}: {text}");
    // The hint names the filesystem that filled, the one mounted there.
    assert!(text.contains(&format!("on {d} (tmpfs)")), "{tag}: {text}");
    let held = exactly_one_of(c, CODE, &[prev.as_str(), newest(c).as_str()]);
    assert_eq!(held, prev, "{tag}: the live code changed");
    assert_eq!(version_at(c, CODE), prev_v);
    assert_eq!(super::deploy::pid(c), pid_before, "{tag}: the bot was restarted");
    let stray = c.ok(&format!("find {CODE} -name '*.jarvis-deploy-tmp' | head"));
    assert!(stray.trim().is_empty(), "{tag}: temp files left: {stray}");
    let line = text
        .lines()
        .find(|l| l.contains("No space left on device"))
        .unwrap_or_default()
        .trim()
        .to_string();
    c.ok(&format!("rm -f {d}/.filler"));
    let out = deploy_cmd(f, &host, &["--code", &big, "--settle", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(version_at(c, CODE), "14");
    // The tmpfs's content back onto the directory below it.
    c.ok(&format!(
        "mkdir -p /var/tmp/comp-after && cp -a {d}/. /var/tmp/comp-after/ && (umount {d} || umount -l {d}) && cp -a /var/tmp/comp-after/. {d}/ && rm -rf /var/tmp/comp-before /var/tmp/comp-after"
    ));
    assert_eq!(
        sums(c, CODE, &paths),
        state,
        "{tag}: the full disk changed the state"
    );
    figures.push(format!(
        "{tag}: the disk filled during staging: the deploy failed in {took:.1?} with the live code and the bot untouched, no temp file left ({line:?}); after freeing, it deployed"
    ));

    // Item 5: /tmp full refuses the deploy before anything changes.
    let prev = newest(c);
    c.ok("mount -t tmpfs -o size=64k tmpfs /tmp && (dd if=/dev/zero of=/tmp/.filler bs=4k 2>/dev/null || true)");
    let out = deploy_cmd(f, &host, &["--code", &version(&tmp, 15, &comp), "--settle", "2"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    c.ok("umount /tmp");
    assert!(
        !out.status.success(),
        "{tag}: a deploy with /tmp full went on:\n{text}"
    );
    assert!(
        text.contains("/tmp on the host cannot take a small write")
            && text.contains("nothing on the host was changed"),
        "{tag}: {text}"
    );
    assert_eq!(
        newest(c),
        prev,
        "{tag}: the refused deploy made a deploy directory"
    );
    assert_eq!(version_at(c, CODE), "14");
    figures.push(format!(
        "{tag}: /tmp full: the deploy was refused up front, the host untouched"
    ));
    figures
}

/// Both engines at once, each host its own thread.
pub fn power_cut_and_dpkg_mid_swap() {
    let mut f = fleet(
        "powercut",
        &[(Suite::Bookworm, PORT_A), (Suite::Sysvinit, PORT_B)],
    );
    let mut hosts = std::mem::take(&mut f.hosts);
    let figures: Vec<String> = std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = hosts
            .iter_mut()
            .zip([(PORT_A, Suite::Bookworm), (PORT_B, Suite::Sysvinit)])
            .map(|(c, (port, suite))| s.spawn(move || cells(f, c, port, suite)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a host's cells failed"))
            .collect()
    });
    f.hosts = hosts;
    for l in figures {
        println!("figures: {l}");
    }
}
