//! The host worker (python/deploy_host.py), run for real with python3 on temporary trees:
//! manifests decide what a deploy may touch, unshipped files are never
//! touched whatever their names, a cut swap is completed or undone exactly,
//! and links planted in the tree lead nowhere.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::reply::{Plan, Verify};
use jarvis_model::manifest::{hash, Manifest};

/// A report as the deploy reads it.
pub(super) fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

/// The name ending of an old file kept aside (deploy_host.py OLD_SUFFIX).
pub(super) const OLD: &str = ".jarvis-deploy-old";

pub(super) const HOST_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/deploy_host.py");

pub(super) fn owner() -> String {
    let u = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap();
    let g = nix::unistd::Group::from_gid(nix::unistd::getgid())
        .unwrap()
        .unwrap();
    format!("{}:{}", u.name, g.name)
}

pub(super) struct Lab {
    t: tempfile::TempDir,
}

impl Lab {
    pub(super) fn new() -> Lab {
        Lab {
            t: tempfile::tempdir().unwrap(),
        }
    }
    pub(super) fn p(&self, rel: &str) -> PathBuf {
        self.t.path().join(rel)
    }
    pub(super) fn write(&self, rel: &str, text: &str) {
        let p = self.p(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    /// A version of the code: files under `vN/`, and its manifest `vN.tsv`.
    pub(super) fn version(&self, name: &str, files: &[(&str, &str)]) -> String {
        for (rel, text) in files {
            self.write(&format!("{name}/{rel}"), text);
        }
        let m = Manifest::build(&self.p(name)).unwrap();
        let path = self.p(&format!("{name}.tsv"));
        fs::write(&path, m.render(&owner())).unwrap();
        path.to_string_lossy().into_owned()
    }
    pub(super) fn live(&self) -> String {
        self.p("live").to_string_lossy().into_owned()
    }
    pub(super) fn run(&self, args: &[&str]) -> (Value, i32) {
        let out = Command::new("python3")
            .arg(HOST_PY)
            .args(args)
            .env("JARVIS_DEPLOY_PAUSE_MARK", self.p("paused"))
            .output()
            .unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "no JSON from deploy_host.py {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (v, out.status.code().unwrap_or(-1))
    }
    pub(super) fn apply(&self, from: &str, to: &str, src: &str, more: &[&str]) -> (Value, i32) {
        let o = owner();
        let src = self.p(src).to_string_lossy().into_owned();
        let live = self.live();
        let mut a = vec![
            "apply", &live, from, to, "--src", &src, "--owner", &o, "--id", "T1",
        ];
        a.extend(more);
        self.run(&a)
    }
    /// Every file below live/: path -> sha256.
    pub(super) fn tree(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        walk(&self.p("live"), "", &mut out);
        out
    }
    /// The tree without the old files a forward swap keeps aside until
    /// its deploy is over (`clean`): what the bot runs.
    pub(super) fn code(&self) -> BTreeMap<String, String> {
        let mut t = self.tree();
        t.retain(|k, _| !k.ends_with(OLD));
        t
    }
    /// The old files kept aside: path -> sha256.
    pub(super) fn asides(&self) -> BTreeMap<String, String> {
        let mut t = self.tree();
        t.retain(|k, _| k.ends_with(OLD));
        t
    }
    /// The worker's `clean` of a deploy from manifest `from` to `to`.
    pub(super) fn clean(&self, from: &str, to: &str) -> u64 {
        let live = self.live();
        let (r, code) = self.run(&["clean", &live, from, to]);
        assert_eq!(code, 0, "{r}");
        r["removed"].as_u64().unwrap_or_else(|| panic!("{r}"))
    }
}

fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            walk(&e.path(), &r, out);
        } else if ft.is_symlink() {
            out.insert(
                r,
                format!("link -> {}", fs::read_link(e.path()).unwrap().display()),
            );
        } else {
            out.insert(r, hash(&e.path()).unwrap().0);
        }
    }
}

/// The files of version `name` as the tree should hold them.
fn shipped(lab: &Lab, name: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(&lab.p(name), "", &mut out);
    out
}

/// Random names, new on each run: no list of excludes can know them.
fn rand_name(tag: &str) -> String {
    let mut b = [0u8; 6];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    format!("{tag}{}", jarvis_model::manifest::hex(&b))
}

/// The bot's state beside its code, at random paths inside shipped
/// directories: returns path -> sha256.
fn plant_state(lab: &Lab) -> BTreeMap<String, String> {
    let comp = "bots/comp";
    let paths = [
        format!("{comp}/.{}/{}.key", rand_name("k"), rand_name("w")),
        format!("{comp}/{}.db", rand_name("d")),
        format!("{comp}/{}.json", rand_name("s")),
        format!("{comp}/.env"),
        format!("{comp}/generated/{}.txt", rand_name("g")),
    ];
    let mut out = BTreeMap::new();
    for p in paths {
        lab.write(&format!("live/{p}"), &rand_name("content"));
        out.insert(p.clone(), hash(&lab.p(&format!("live/{p}"))).unwrap().0);
    }
    out
}

fn assert_state(lab: &Lab, state: &BTreeMap<String, String>) {
    let tree = lab.tree();
    for (p, sha) in state {
        assert_eq!(tree.get(p), Some(sha), "unshipped {p} changed or went: {tree:#?}");
    }
}

/// The live tree is exactly version `name`'s files plus the state.
pub(super) fn assert_exactly(lab: &Lab, name: &str, state: &BTreeMap<String, String>) {
    let mut want = shipped(lab, name);
    want.extend(state.clone());
    assert_eq!(
        lab.code(),
        want,
        "the live tree is not exactly {name} plus the state"
    );
}

fn versions(lab: &Lab) -> (String, String, String) {
    let v1 = lab.version(
        "v1",
        &[
            ("bots/supervisor.py", "v1"),
            ("bots/comp/__init__.py", "c1"),
            ("bots/comp/generated/README", "generated files go here"),
            ("bots/gone/old.py", "old"),
            ("core/__init__.py", "core"),
        ],
    );
    let v2 = lab.version(
        "v2",
        &[
            ("bots/supervisor.py", "v2"),
            ("bots/comp/__init__.py", "c2"),
            ("bots/comp/generated/README", "generated files go here"),
            ("bots/new/n.py", "new"),
            ("core/__init__.py", "core"),
        ],
    );
    let v3 = lab.version(
        "v3",
        &[("bots/supervisor.py", "v3"), ("core/__init__.py", "core3")],
    );
    (v1, v2, v3)
}

#[test]
fn deploys_move_only_shipped_files_and_keep_the_bots_state() {
    let lab = Lab::new();
    let (v1, v2, v3) = versions(&lab);
    let (r, code) = lab.apply("-", &v1, "v1", &[]);
    assert_eq!(code, 0, "{r}");
    let state = plant_state(&lab);
    assert_exactly(&lab, "v1", &state);

    let (r, code) = lab.apply(&v1, &v2, "v2", &[]);
    assert_eq!(code, 0, "{r}");
    assert_exactly(&lab, "v2", &state);
    // The replaced and removed files stay aside until the deploy is over.
    assert_eq!(lab.asides().len(), 3, "{:#?}", lab.asides());
    assert_eq!(lab.clean(&v1, &v2), 3);
    assert_eq!(lab.tree(), lab.code(), "kept-aside files outlived the clean");
    assert!(
        !lab.p("live/bots/gone").exists(),
        "an emptied shipped directory stays"
    );
    assert_eq!(typed::<Plan>(r).delete, ["bots/gone/old.py"]);

    // v3 ships no bots/comp at all: its code goes, its state and the
    // directories holding it stay.
    let (r, code) = lab.apply(&v2, &v3, "v3", &[]);
    assert_eq!(code, 0, "{r}");
    assert_exactly(&lab, "v3", &state);
    assert!(
        r["kept_dirs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "bots/comp"),
        "{r}"
    );

    // Back: v3 -> v1, the sources being v1's store.
    let (r, code) = lab.apply(&v3, &v1, "v1", &[]);
    assert_eq!(code, 0, "{r}");
    assert_exactly(&lab, "v1", &state);
    let mode = fs::metadata(lab.p("live/bots/supervisor.py"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    let want = fs::metadata(lab.p("v1/bots/supervisor.py"))
        .unwrap()
        .permissions()
        .mode()
        & 0o770;
    assert_eq!(mode, want);
}

#[test]
fn a_shipped_path_taken_by_an_unshipped_file_is_refused_and_nothing_changes() {
    let lab = Lab::new();
    let (v1, _, _) = versions(&lab);
    lab.apply("-", &v1, "v1", &[]);
    let state = plant_state(&lab);
    // The next version ships a file where the bot keeps a file of its own.
    let taken = state.keys().find(|p| p.ends_with(".db")).unwrap().clone();
    let v2 = lab.version(
        "v2b",
        &[
            ("bots/supervisor.py", "v2"),
            ("bots/comp/__init__.py", "c1"),
            (&taken, "shipped over the bot's database"),
        ],
    );
    let before = lab.tree();
    let live = lab.live();
    let (plan, code) = lab.run(&["plan", &live, &v1, &v2]);
    assert_eq!(code, 3, "{plan}");
    let plan = typed::<Plan>(plan);
    assert_eq!(plan.conflicts[0].path, taken, "{plan:?}");
    // The other four state files, counted, not listed.
    assert_eq!(plan.unshipped, state.len() as u64 - 1, "{plan:?}");
    assert!(!plan.unshipped_at_least, "{plan:?}");
    // A tree bigger than the count looks at: counted up to there, said so.
    let out = Command::new("python3")
        .arg(HOST_PY)
        .args(["plan", &live, &v1, &v2])
        .env("JARVIS_DEPLOY_PAUSE_MARK", lab.p("paused"))
        .env("JARVIS_DEPLOY_SCAN_MAX", "3")
        .output()
        .unwrap();
    let capped: Plan = serde_json::from_slice(&out.stdout).unwrap();
    assert!(capped.unshipped_at_least, "{capped:?}");
    assert!(capped.unshipped <= 3, "{capped:?}");
    assert_eq!(capped.unshipped_text(), format!("{}+", capped.unshipped));
    let (r, code) = lab.apply(&v1, &v2, "v2b", &[]);
    assert_eq!(code, 3, "{r}");
    assert_eq!(lab.tree(), before, "a refused swap changed the tree");

    // Taken over on purpose: the bot's file is kept beside it.
    let (r, code) = lab.apply(&v1, &v2, "v2b", &["--take-over", &taken]);
    assert_eq!(code, 0, "{r}");
    let tree = lab.tree();
    assert_eq!(tree.get(&format!("{taken}.before-deploy-T1")), state.get(&taken));
    assert_eq!(
        fs::read_to_string(lab.p(&format!("live/{taken}"))).unwrap(),
        "shipped over the bot's database"
    );
}

#[test]
fn a_first_deploy_adopts_identical_files_and_refuses_different_ones() {
    let lab = Lab::new();
    let (v1, _, _) = versions(&lab);
    // Code installed by hand: one file identical, one edited on the host.
    lab.write("live/bots/supervisor.py", "v1");
    lab.write("live/core/__init__.py", "edited by hand");
    lab.write("live/bots/comp/wallet.key", "secret");
    let before = lab.tree();
    let live = lab.live();
    let (plan, code) = lab.run(&["plan", &live, "-", &v1]);
    assert_eq!(code, 3, "{plan}");
    let plan = typed::<Plan>(plan);
    assert_eq!(plan.adopted, ["bots/supervisor.py"], "{plan:?}");
    assert_eq!(plan.conflicts[0].path, "core/__init__.py", "{plan:?}");
    let (_, code) = lab.apply("-", &v1, "v1", &[]);
    assert_eq!(code, 3);
    assert_eq!(lab.tree(), before);
    fs::remove_file(lab.p("live/core/__init__.py")).unwrap();
    let (r, code) = lab.apply("-", &v1, "v1", &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        fs::read_to_string(lab.p("live/bots/comp/wallet.key")).unwrap(),
        "secret"
    );
}

/// A swap killed half-way holds a mix; run again either way, it becomes
/// exactly the old or exactly the new version, the state untouched.
#[test]
fn a_swap_cut_half_way_is_completed_or_undone_exactly() {
    for forward in [true, false] {
        let lab = Lab::new();
        let (v1, _, _) = versions(&lab);
        let mut files: Vec<(String, String)> = (0..40)
            .map(|i| (format!("bots/many/m{i}.py"), format!("x{i}")))
            .collect();
        files.push(("bots/supervisor.py".into(), "v2".into()));
        files.push(("core/__init__.py".into(), "core2".into()));
        let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let v2 = lab.version("v2", &refs);
        lab.apply("-", &v1, "v1", &[]);
        let state = plant_state(&lab);
        let o = owner();
        let live = lab.live();
        let src = lab.p("v2").to_string_lossy().into_owned();
        let mut child = Command::new("python3")
            .arg(HOST_PY)
            .args([
                "apply",
                &live,
                &v1,
                &v2,
                "--src",
                &src,
                "--owner",
                &o,
                "--id",
                "T1",
                "--pause-after",
                "20",
            ])
            .env("JARVIS_DEPLOY_PAUSE_MARK", lab.p("paused"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while !lab.p("paused").exists() {
            assert!(t0.elapsed() < Duration::from_secs(30), "the swap never paused");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let mixed = lab.code();
        assert!(
            mixed.keys().any(|k| k.starts_with("bots/many/")),
            "nothing was swapped before the cut"
        );
        let exactly = |name: &str| {
            let mut want = shipped(&lab, name);
            want.extend(state.clone());
            want
        };
        assert!(
            mixed != exactly("v1") && mixed != exactly("v2"),
            "the cut came too late to leave a mix"
        );
        assert_state(&lab, &state);
        // The files staged but not yet renamed when it was cut.
        let temps = mixed.keys().filter(|k| k.ends_with(".jarvis-deploy-tmp")).count() as u64;
        assert!(temps > 0, "the cut left no staged file: {mixed:#?}");
        let r = if forward {
            let (r, code) = lab.apply(&v1, &v2, "v2", &[]);
            assert_eq!(code, 0, "{r}");
            assert_exactly(&lab, "v2", &state);
            r
        } else {
            let src1 = lab.p("v1").to_string_lossy().into_owned();
            let (r, code) = lab.apply(&v2, &v1, "v2", &["--lenient", "--src", &src1]);
            assert_eq!(code, 0, "{r}");
            assert_exactly(&lab, "v1", &state);
            r
        };
        assert_eq!(typed::<Plan>(r).stale_removed, temps, "forward: {forward}");
    }
}

/// The service user swaps a shipped directory for a link to a directory it
/// must not reach, and a shipped file for a link to a file: the swap writes
/// and deletes nothing there.
#[test]
fn links_planted_in_the_tree_lead_nowhere() {
    let lab = Lab::new();
    let (v1, v2, _) = versions(&lab);
    lab.apply("-", &v1, "v1", &[]);
    lab.write("outside/old.py", "old");
    lab.write("outside/target", "not yours");
    fs::remove_dir_all(lab.p("live/bots/gone")).unwrap();
    std::os::unix::fs::symlink(lab.p("outside"), lab.p("live/bots/gone")).unwrap();
    fs::remove_file(lab.p("live/bots/supervisor.py")).unwrap();
    std::os::unix::fs::symlink(lab.p("outside/target"), lab.p("live/bots/supervisor.py")).unwrap();
    let (r, code) = lab.apply(&v1, &v2, "v2", &[]);
    assert_eq!(code, 3, "{r}");
    assert_eq!(fs::read_to_string(lab.p("outside/old.py")).unwrap(), "old");
    assert_eq!(fs::read_to_string(lab.p("outside/target")).unwrap(), "not yours");
    let (r, code) = lab.apply(&v1, &v2, "v2", &["--lenient"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(fs::read_to_string(lab.p("outside/old.py")).unwrap(), "old");
    assert_eq!(fs::read_to_string(lab.p("outside/target")).unwrap(), "not yours");
    assert!(fs::symlink_metadata(lab.p("live/bots/supervisor.py"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn verify_names_a_store_file_that_differs() {
    let lab = Lab::new();
    let (v1, _, _) = versions(&lab);
    let store = lab.p("v1").to_string_lossy().into_owned();
    let (r, code) = lab.run(&["verify", &store, &v1]);
    assert_eq!(code, 0, "{r}");
    lab.write("v1/core/__init__.py", "tampered");
    let (r, code) = lab.run(&["verify", &store, &v1]);
    assert_eq!(code, 1, "{r}");
    let r = typed::<Verify>(r);
    assert_eq!((r.bad, r.n_bad), (vec!["core/__init__.py".to_string()], 1));
}

/// The worker's hash, called in the worker itself: on a file that grew to
/// a sparse 8 TiB after its size was looked at (the service user's race
/// against the step lock), and on one with no expected size, it reads at
/// most the size expected plus one byte and calls the file different.
#[test]
fn the_hash_reads_no_further_than_the_size_expected_plus_one() {
    let lab = Lab::new();
    lab.write("small", "abc");
    fs::File::create(lab.p("grown"))
        .unwrap()
        .set_len(8 << 40)
        .unwrap();
    let script = format!(
        "import importlib.util, json, os, sys\n\
         spec = importlib.util.spec_from_file_location('host', {host:?})\n\
         host = importlib.util.module_from_spec(spec); spec.loader.exec_module(host)\n\
         host.HASH_MAX = 1 << 20\n\
         out = {{}}\n\
         for name, size in [('small', 3), ('small', 2), ('grown', 3), ('grown', None)]:\n\
         \x20   fd = os.open(os.path.join({dir:?}, name), os.O_RDONLY)\n\
         \x20   sha = host.sha256_of(fd, size)\n\
         \x20   out['%s %s' % (name, size)] = [sha, os.lseek(fd, 0, os.SEEK_CUR)]\n\
         print(json.dumps(out))\n",
        host = HOST_PY,
        dir = lab.t.path().to_string_lossy(),
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("deploy_host.py's hash still read a sparse 8 TiB file after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(v["small 3"], serde_json::json!([abc, 3]), "{v}");
    assert_eq!(v["small 2"], serde_json::json!([null, 3]), "{v}");
    assert_eq!(v["grown 3"], serde_json::json!([null, 4]), "{v}");
    assert_eq!(v["grown None"], serde_json::json!([null, (1 << 20) + 1]), "{v}");
}

/// --env-new is staged with the files and renamed in with them, the .env
/// it replaces kept once; --env-restore puts that back, and writes nothing
/// when the live .env already holds it.
#[test]
fn the_env_goes_in_with_the_swap_and_back_with_its_undo() {
    let lab = Lab::new();
    let (v1, v2, _) = versions(&lab);
    lab.apply("-", &v1, "v1", &[]);
    lab.write("live/.env", "KEY=old\n");
    lab.write("private/env.new", "KEY=new\n");
    let (new, backup) = (lab.p("private/env.new"), lab.p("private/env.before"));
    let (new, backup) = (new.to_string_lossy(), backup.to_string_lossy());
    let (r, code) = lab.apply(&v1, &v2, "v2", &["--env-new", &new, "--env-backup", &backup]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(fs::read_to_string(lab.p("live/.env")).unwrap(), "KEY=new\n");
    assert_eq!(
        fs::read_to_string(lab.p("private/env.before")).unwrap(),
        "KEY=old\n"
    );
    assert!(
        !lab.tree().keys().any(|k| k.ends_with(".jarvis-deploy-tmp")),
        "{:?}",
        lab.tree()
    );
    let src1 = lab.p("v1").to_string_lossy().into_owned();
    let undo = ["--lenient", "--src", &src1, "--env-restore", &backup];
    let (r, code) = lab.apply(&v2, &v1, "v1", &undo);
    assert_eq!(code, 0, "{r}");
    assert_eq!(fs::read_to_string(lab.p("live/.env")).unwrap(), "KEY=old\n");
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    let before = ino(&lab.p("live/.env"));
    let (r, code) = lab.apply(&v2, &v1, "v1", &undo);
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        ino(&lab.p("live/.env")),
        before,
        "an undo rewrote a .env that held what it restores"
    );
}
