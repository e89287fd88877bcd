//! The old files a forward swap keeps aside (`.NAME.jarvis-deploy-old`)
//! so that its undo needs no space: the undo renames one back only when it
//! holds exactly the content it puts back, read through a descriptor that
//! follows no link. The code root is the service user's: what it plants
//! under those names is never used, never followed, and never kept.

use std::fs;
use std::os::unix::fs::MetadataExt;

use super::host_tests::{assert_exactly, typed, Lab, OLD};
use super::reply::Plan;

#[test]
fn an_undo_renames_back_only_its_own_old_files_and_never_follows_a_planted_link() {
    let lab = Lab::new();
    let v1 = lab.version(
        "v1",
        &[
            ("bots/supervisor.py", "sup v1"),
            ("bots/a.py", "a1"),
            ("bots/b.py", "b1"),
            ("bots/gone.py", "gone"),
        ],
    );
    let v2 = lab.version(
        "v2",
        &[
            ("bots/supervisor.py", "sup v2"),
            ("bots/a.py", "a2"),
            ("bots/b.py", "b2"),
        ],
    );
    let (r, code) = lab.apply("-", &v1, "v1", &[]);
    assert_eq!(code, 0, "{r}");
    // Outside the tree, with exactly the content the undo wants: a
    // followed link or an adopted hard link would pass the hash.
    lab.write("outside/sup", "sup v1");
    lab.write("outside/b", "b1");
    let aside = |rel: &str| {
        let (dir, name) = rel.rsplit_once('/').unwrap();
        lab.p(&format!("live/{dir}/.{name}{OLD}"))
    };
    // Planted before the swap: the swap keeps no aside onto it.
    std::os::unix::fs::symlink(lab.p("outside/sup"), aside("bots/supervisor.py")).unwrap();
    let (r, code) = lab.apply(&v1, &v2, "v2", &[]);
    assert_eq!(code, 0, "{r}");
    assert_exactly(&lab, "v2", &Default::default());
    let kept = lab.asides();
    assert_eq!(kept.len(), 4, "{kept:#?}");
    assert!(
        kept.values().filter(|v| v.starts_with("link -> ")).count() == 1,
        "{kept:#?}"
    );
    // Planted after it: another content of the same size, and a hard link
    // to a file outside the tree.
    fs::remove_file(aside("bots/a.py")).unwrap();
    fs::write(aside("bots/a.py"), "a9").unwrap();
    fs::remove_file(aside("bots/b.py")).unwrap();
    fs::hard_link(lab.p("outside/b"), aside("bots/b.py")).unwrap();

    let src1 = lab.p("v1").to_string_lossy().into_owned();
    let (r, code) = lab.apply(&v2, &v1, "v2", &["--lenient", "--src", &src1]);
    assert_eq!(code, 0, "{r}");
    let p = typed::<Plan>(r.clone());
    // Only the file the swap itself kept aside came back from there; the
    // three others were copied from the store.
    assert_eq!(p.from_aside, ["bots/gone.py"], "{r}");
    assert_eq!(p.put.len() + p.replace.len(), 4, "{r}");
    assert_exactly(&lab, "v1", &Default::default());
    let live = |rel: &str| fs::symlink_metadata(lab.p(&format!("live/{rel}"))).unwrap();
    assert!(live("bots/supervisor.py").file_type().is_file());
    assert_ne!(
        live("bots/b.py").ino(),
        fs::metadata(lab.p("outside/b")).unwrap().ino()
    );
    assert_eq!(fs::read_to_string(lab.p("outside/sup")).unwrap(), "sup v1");
    assert_eq!(fs::read_to_string(lab.p("outside/b")).unwrap(), "b1");
    assert_eq!(fs::metadata(lab.p("outside/b")).unwrap().nlink(), 2);

    // The deploy is over: the regular files under those names go (the
    // planted one and the link's name, not what it links to); the symbolic
    // link is not the worker's and stays, its target untouched.
    assert_eq!(lab.clean(&v2, &v1), 2);
    let left: Vec<String> = lab.asides().into_keys().collect();
    assert_eq!(left, ["bots/.supervisor.py.jarvis-deploy-old"]);
    assert_eq!(fs::read_to_string(lab.p("outside/sup")).unwrap(), "sup v1");
    assert_eq!(fs::read_to_string(lab.p("outside/b")).unwrap(), "b1");
    assert_exactly(&lab, "v1", &Default::default());
}

/// The .env a deploy replaces is kept aside with the files, and its undo
/// renames that one back (the same inode: nothing written); a deploy whose
/// clean never ran (a power cut after `current`) has its kept files,
/// those of the paths it removed too, removed by the next forward swap.
#[test]
fn the_env_comes_back_by_rename_and_a_deploy_never_cleaned_is_cleaned_by_the_next() {
    let lab = Lab::new();
    let v1 = lab.version("v1", &[("bots/a.py", "a1"), ("bots/old/x.py", "x")]);
    let v2 = lab.version("v2", &[("bots/a.py", "a2")]);
    let v3 = lab.version("v3", &[("bots/a.py", "a3")]);
    lab.apply("-", &v1, "v1", &[]);
    lab.write("live/.env", "KEY=old\n");
    lab.write("d2/private/env.new", "KEY=new\n");
    // Deploy d2's directory as the history keeps it.
    fs::copy(&v2, lab.p("d2/manifest.tsv")).unwrap();
    fs::copy(&v1, lab.p("d2/before.tsv")).unwrap();
    let (m2, b2) = (lab.p("d2/manifest.tsv"), lab.p("d2/private/env.before"));
    let (m2, new, b2) = (
        m2.to_string_lossy().into_owned(),
        lab.p("d2/private/env.new").to_string_lossy().into_owned(),
        b2.to_string_lossy().into_owned(),
    );
    let (r, code) = lab.apply(&v1, &m2, "v2", &["--env-new", &new, "--env-backup", &b2]);
    assert_eq!(code, 0, "{r}");
    let kept: Vec<String> = lab.asides().into_keys().collect();
    assert_eq!(
        kept,
        [
            "..env.jarvis-deploy-old",
            "bots/.a.py.jarvis-deploy-old",
            "bots/old/.x.py.jarvis-deploy-old"
        ]
    );
    let ino = |rel: &str| fs::symlink_metadata(lab.p(&format!("live/{rel}"))).unwrap().ino();
    let env_kept = ino("..env.jarvis-deploy-old");
    let src1 = lab.p("v1").to_string_lossy().into_owned();
    let (r, code) = lab.apply(
        &m2,
        &v1,
        "v2",
        &["--lenient", "--src", &src1, "--env-restore", &b2],
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(fs::read_to_string(lab.p("live/.env")).unwrap(), "KEY=old\n");
    assert_eq!(
        ino(".env"),
        env_kept,
        "the .env was written again, not renamed back"
    );
    assert_eq!(typed::<Plan>(r).from_aside, ["bots/a.py", "bots/old/x.py"]);
    assert!(lab.asides().is_empty(), "{:?}", lab.asides());

    // Deployed again, never cleaned; the next deploy goes from it to v3
    // (which, like v2, ships no bots/old/x.py).
    let (r, code) = lab.apply(&v1, &m2, "v2", &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(lab.asides().len(), 2, "{:?}", lab.asides());
    let (r, code) = lab.apply(&m2, &v3, "v3", &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["stale_old_removed"], 2, "{r}");
    let kept: Vec<String> = lab.asides().into_keys().collect();
    assert_eq!(kept, ["bots/.a.py.jarvis-deploy-old"], "only v3's own");
    assert_eq!(lab.clean(&m2, &v3), 1);
    assert!(
        lab.asides().is_empty() && !lab.p("live/bots/old").exists(),
        "{:?}",
        lab.tree()
    );
    assert_exactly(
        &lab,
        "v3",
        &[(
            ".env".to_string(),
            jarvis_model::manifest::hash(&lab.p("live/.env")).unwrap().0,
        )]
        .into(),
    );
}
