//! The package as it was before instances (issue 26), built from git
//! history, for the upgrade test that starts from it
//! (`tests/e2e/upgrade_instances.rs`, `$JARVIS_DEB_BEFORE_INSTANCES`).
//!
//! Why from history: the hosts that run the bot today run that package,
//! without the template unit, the target or the maintainer scripts that
//! enable it. Only the real old package proves that an upgrade from it
//! keeps the default bot running with no operator step; a copy of today's
//! build under a lower version would carry the new scripts into the "old"
//! side and prove nothing.
//!
//! The commit is extracted (`git archive`) under
//! `target/before-instances/HASH/` and built by its own `cargo xtask dist`,
//! in its own `target/` there: never this tree's, whose binaries of the
//! same names it would overwrite. That dist cannot be told a version, and
//! its package says 0.1.0-1 as today's does, so the result is repacked under
//! [`VERSION`], which sorts lower: apt then sees today's package as the
//! upgrade. Nothing else in it changes. The result is kept as
//! `target/before-instances/HASH.deb`, so that only a fresh checkout builds
//! it (about 1.5 to 2 minutes on 2 cores).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::run::{self, Result};

/// The last commit before issue 26's work started ("stop under jarvisctl
/// run returns only once the engine has exited"): the package a host runs
/// today, before instances. The whole hash, so that the cache's name is
/// the commit's.
pub const COMMIT: &str = "b676ab971dcd80b43bde7ed0ffb1ef2211067ad0";

/// The old package's version once repacked: below today's 0.1.0-1.
pub const VERSION: &str = "0.1.0-0.before26";

/// The .deb of [`COMMIT`], under [`VERSION`]; built unless already cached.
/// `current` is today's .deb: the old one must sort below it, or apt would
/// not see an upgrade.
pub fn build(current: &Path) -> Result<PathBuf> {
    let root = run::root();
    let dir = root.join("target/before-instances");
    let deb = dir.join(format!("{COMMIT}.deb"));
    if !deb.is_file() {
        let t0 = Instant::now();
        build_uncached(&root, &dir, &deb)?;
        println!(
            "before-instances: built the package of {} in {:.0} s: {}",
            &COMMIT[..7],
            t0.elapsed().as_secs_f64(),
            deb.display()
        );
    } else {
        println!(
            "before-instances: reusing {} (remove it to build the package of {} again)",
            deb.display(),
            &COMMIT[..7]
        );
    }
    let version = field(&deb, "Version")?;
    let today = field(current, "Version")?;
    let lower = Command::new("dpkg")
        .args(["--compare-versions", &version, "lt", &today])
        .status()
        .map_err(|e| format!("cannot run dpkg --compare-versions: {e}"))?;
    if !lower.success() {
        return Err(format!(
            "the package before instances ({version}) does not sort below today's ({today}): apt would not upgrade it"
        ));
    }
    Ok(deb)
}

fn build_uncached(root: &Path, dir: &Path, deb: &Path) -> Result<()> {
    // git and the commit, or a loud stop: the upgrade test never skips.
    let have = Command::new("git")
        .current_dir(root)
        .args(["cat-file", "-e", &format!("{COMMIT}^{{commit}}")])
        .stderr(Stdio::null())
        .status()
        .map_err(|e| {
            format!(
                "cannot build the package before instances: git is needed to extract commit {COMMIT} ({e}); install git"
            )
        })?;
    if !have.success() {
        return Err(format!(
            "cannot build the package before instances: commit {COMMIT} is not in the git history of {} \
             (a shallow clone? fetch the whole history: git fetch --unshallow)",
            root.display()
        ));
    }
    let epoch =
        run::output(
            Command::new("git")
                .current_dir(root)
                .args(["log", "-1", "--format=%ct", COMMIT]),
        )?;
    let epoch = String::from_utf8_lossy(&epoch.stdout).trim().to_string();

    // The tree of the commit; its target/ from an earlier run is kept, so a
    // rerun after a failure compiles only what changed.
    let src = dir.join(COMMIT);
    fs::create_dir_all(&src).map_err(|e| format!("cannot create {}: {e}", src.display()))?;
    extract(root, &src)?;

    // Its own dist, as it was: a tree outside git takes its build date
    // from SOURCE_DATE_EPOCH (the commit's time). The target directory is
    // the old tree's own, whatever this shell says.
    let old_target = src.join("target");
    run::status(
        run::cargo()
            .current_dir(&src)
            .args(["xtask", "dist"])
            .env("SOURCE_DATE_EPOCH", &epoch)
            .env("CARGO_TARGET_DIR", &old_target)
            .env_remove("CARGO_BUILD_TARGET_DIR"),
    )?;
    let built = only_deb(&old_target.join("dist"))?;
    reversion(&built, deb, &epoch)
}

/// `git archive COMMIT | tar -x -C src`.
fn extract(root: &Path, src: &Path) -> Result<()> {
    eprintln!("+ git archive {COMMIT} | tar -x -C {}", src.display());
    let mut archive = Command::new("git")
        .current_dir(root)
        .args(["archive", "--format=tar", COMMIT])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git archive: {e}"))?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(src)
        .stdin(archive.stdout.take().expect("piped"))
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let git = archive.wait().map_err(|e| e.to_string())?;
    if !git.success() || !tar.success() {
        return Err(format!(
            "git archive {COMMIT} | tar -x -C {} failed (git: {git}, tar: {tar})",
            src.display()
        ));
    }
    Ok(())
}

/// The same package under [`VERSION`]: unpacked, its control file's
/// `Version:` line replaced, packed again as dist packs (times from the
/// commit's date).
fn reversion(built: &Path, deb: &Path, epoch: &str) -> Result<()> {
    let work = deb.with_extension("unpacked");
    if work.exists() {
        fs::remove_dir_all(&work).map_err(|e| format!("cannot clear {}: {e}", work.display()))?;
    }
    run::status(Command::new("dpkg-deb").arg("-R").arg(built).arg(&work))?;
    let control = work.join("DEBIAN/control");
    let text = fs::read_to_string(&control).map_err(|e| format!("cannot read {}: {e}", control.display()))?;
    let mut replaced = 0;
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Version:") {
                replaced += 1;
                format!("Version: {VERSION}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    if replaced != 1 {
        return Err(format!(
            "{} has {replaced} Version: lines, not one",
            control.display()
        ));
    }
    fs::write(&control, text).map_err(|e| format!("cannot write {}: {e}", control.display()))?;
    // Written under a temporary name: a cut-off run leaves no cached
    // package that is not whole.
    let partial = deb.with_extension("deb.partial");
    run::output(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&work)
            .arg(&partial)
            .env("SOURCE_DATE_EPOCH", epoch),
    )?;
    fs::rename(&partial, deb).map_err(|e| format!("cannot rename {}: {e}", partial.display()))?;
    fs::remove_dir_all(&work).map_err(|e| format!("cannot remove {}: {e}", work.display()))
}

fn only_deb(dir: &Path) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(format!("expected one .deb in {}, found {n}", dir.display())),
    }
}

/// One field of a .deb's control file (`dpkg-deb -f`).
fn field(deb: &Path, name: &str) -> Result<String> {
    let out = run::output(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
