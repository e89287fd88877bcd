//! `cargo xtask dist`: release build, man page, .deb (cargo-deb), .rpm
//! (cargo-generate-rpm) and SHA256SUMS in target/dist/. The man page and the
//! shell completions are generated from the clap definition first.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::completions;
use crate::deps;
use crate::man;
use crate::run::{self, Result};

pub struct Dist {
    pub deb: PathBuf,
    pub rpm: PathBuf,
}

pub fn dist() -> Result<Dist> {
    // cargo-deb computes the libc dependency with dpkg-shlibdeps.
    if deps::is_root() {
        deps::apt(&["dpkg-dev"])?;
    }
    deps::cargo_tool(deps::CARGO_DEB)?;
    deps::cargo_tool(deps::CARGO_GENERATE_RPM)?;
    let root = run::root();
    // Reproducible packages: cargo-deb and cargo-generate-rpm take every
    // file time and the build date from it, and every tool below inherits it.
    let epoch = source_date_epoch(&root)?;
    std::env::set_var("SOURCE_DATE_EPOCH", &epoch);
    println!("SOURCE_DATE_EPOCH={epoch}");
    let out = root.join("target/dist");
    // Start clean: SHA256SUMS must list exactly this build.
    if out.exists() {
        fs::remove_dir_all(&out).map_err(|e| format!("cannot clear {}: {e}", out.display()))?;
    }
    fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;

    build_release()?;
    man::render(&root.join("target/man"))?;
    completions::render(&root.join("target/completions"))?;

    let deb = build_deb(None, &out)?;
    build_rpm(&root, &out, &epoch)?;
    let rpm = only_file(&out, ".rpm")?;
    crate::sbom::write(&out, &[&deb, &rpm])?;
    write_sums(&out, &[&deb, &rpm])?;
    println!(
        "built:\n  {}\n  {}\n  {}",
        deb.display(),
        rpm.display(),
        out.join("SHA256SUMS").display()
    );
    Ok(Dist { deb, rpm })
}

/// The .rpm, from copies of its assets whose times are all the build's date.
/// cargo-generate-rpm only clamps file times to SOURCE_DATE_EPOCH: a file of
/// the work tree older than the last commit (one a pull did not touch) would
/// keep its own time, and two checkouts of one commit would differ.
fn build_rpm(root: &Path, out: &Path, epoch: &str) -> Result<()> {
    let meta = run::output(run::cargo().current_dir(root).args([
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
        "--locked",
    ]))?;
    let meta: serde_json::Value =
        serde_json::from_slice(&meta.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let assets = meta["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "jarvis-supervisor"))
        .and_then(|p| p["metadata"]["generate-rpm"]["assets"].as_array())
        .ok_or("Cargo.toml has no [package.metadata.generate-rpm] assets")?;
    let stage = root.join("target/rpm-stage");
    if stage.exists() {
        fs::remove_dir_all(&stage).map_err(|e| format!("cannot clear {}: {e}", stage.display()))?;
    }
    let time = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(epoch.parse().map_err(|_| "SOURCE_DATE_EPOCH is not a number")?);
    // The overwrite file: the same assets, each from its staged copy.
    let mut toml = String::from("assets = [\n");
    for (i, asset) in assets.iter().enumerate() {
        let source = asset["source"].as_str().ok_or("an .rpm asset without a source")?;
        let name = Path::new(source)
            .file_name()
            .ok_or("an .rpm asset source without a file name")?;
        let staged = stage.join(i.to_string()).join(name);
        fs::create_dir_all(staged.parent().unwrap_or(&stage))
            .map_err(|e| format!("cannot create {}: {e}", stage.display()))?;
        fs::copy(root.join(source), &staged).map_err(|e| format!("cannot copy {source}: {e}"))?;
        fs::File::options()
            .write(true)
            .open(&staged)
            .and_then(|f| f.set_modified(time))
            .map_err(|e| format!("cannot set the time of {}: {e}", staged.display()))?;
        let mut fields = Vec::new();
        for (k, v) in asset.as_object().ok_or("an .rpm asset that is not a table")? {
            let v = if k == "source" {
                serde_json::Value::String(staged.strip_prefix(root).unwrap_or(&staged).display().to_string())
            } else {
                v.clone()
            };
            // A JSON string, number or boolean is also a TOML one.
            fields.push(format!("{k} = {v}"));
        }
        toml.push_str(&format!("    {{ {} }},\n", fields.join(", ")));
    }
    toml.push_str("]\n");
    let overwrite = stage.join("assets.toml");
    fs::write(&overwrite, toml).map_err(|e| format!("cannot write {}: {e}", overwrite.display()))?;
    run::status(
        run::cargo()
            .current_dir(root)
            .args(["generate-rpm", "-p", ".", "-o"])
            .arg(out)
            .arg("--metadata-overwrite")
            .arg(&overwrite),
    )
}

/// `$SOURCE_DATE_EPOCH` when set, else the time of the last commit: two
/// builds of one commit then make the same bytes, whenever and wherever
/// they run.
pub fn source_date_epoch(root: &Path) -> Result<String> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(v);
        }
        return Err(format!(
            "SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970; unset it to take the last commit's time"
        ));
    }
    let out = std::process::Command::new("git")
        .current_dir(root)
        .args(["log", "-1", "--format=%ct"])
        .output()
        .map_err(|e| format!("cannot run git in {}: {e}", root.display()))?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "cannot tell the build date: {} is not a git checkout with a commit ({})\nnote: set SOURCE_DATE_EPOCH to the release's time, in seconds since 1970",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(v)
}

/// `cargo build --release` of the helper: what `dist` packages and `bench` times.
pub fn build_release() -> Result<PathBuf> {
    build_release_of(&[])?;
    Ok(run::root().join("target/release/jarvisctl"))
}

/// `cargo build --release` of the package's two binaries, jarvisctl and
/// jarvis-engine (a crate of its own), with `extra` arguments (an
/// `--example` to build).
pub fn build_release_of(extra: &[&str]) -> Result<()> {
    run::status(
        run::cargo()
            .current_dir(run::root())
            .args([
                "build",
                "--release",
                "--locked",
                "-p",
                "jarvis-supervisor",
                "-p",
                "jarvis-engine",
            ])
            .args(extra),
    )
}

/// Package the already built binary as a .deb, optionally under another
/// version (the upgrade and downgrade tests need a higher and a lower one).
pub fn build_deb(version: Option<&str>, out: &Path) -> Result<PathBuf> {
    fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut cmd = run::cargo();
    cmd.current_dir(run::root())
        .args(["deb", "--no-build", "--no-strip", "-p", "jarvis-supervisor", "-o"])
        .arg(out);
    if let Some(v) = version {
        cmd.args(["--deb-version", v]);
    }
    let output = run::output(&mut cmd)?;
    let path = String::from_utf8_lossy(&output.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(format!(
            "cargo deb did not report the package it wrote (got {:?})",
            path
        ));
    }
    finish_deb(&path)?;
    Ok(path)
}

/// What cargo-deb cannot do right. It writes no `md5sums`, and without it
/// `dpkg --verify` cannot tell a replaced file. And for a sysusers.d file
/// among its assets it adds an unguarded `systemd-sysusers` call to the
/// postinst, which fails on a host without systemd; so that file is added
/// here and the postinst calls systemd-sysusers only where it exists.
/// Unpack the package, add the file and one md5sums line per regular file,
/// and pack it again with dpkg-deb (its times from SOURCE_DATE_EPOCH, so
/// the result stays reproducible).
fn finish_deb(deb: &Path) -> Result<()> {
    let work = deb.with_extension("unpacked");
    if work.exists() {
        fs::remove_dir_all(&work).map_err(|e| format!("cannot clear {}: {e}", work.display()))?;
    }
    run::status(
        std::process::Command::new("dpkg-deb")
            .arg("-R")
            .arg(deb)
            .arg(&work),
    )?;
    let dir = work.join("usr/lib/sysusers.d");
    let sysusers = dir.join("jarvis-supervisor.conf");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    fs::copy(
        run::root().join("packaging/sysusers/jarvis-supervisor.conf"),
        &sysusers,
    )
    .map_err(|e| format!("cannot copy packaging/sysusers/jarvis-supervisor.conf: {e}"))?;
    run::status(std::process::Command::new("chmod").arg("644").arg(&sysusers))?;
    run::status(std::process::Command::new("chmod").arg("755").arg(&dir))?;
    // The times cargo-deb gives its own files: the build's date.
    let epoch: u64 = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or("SOURCE_DATE_EPOCH is not set: dist sets it before packaging")?;
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    for p in [&sysusers, &dir] {
        let f = fs::File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?;
        f.set_modified(time)
            .map_err(|e| format!("cannot set the time of {}: {e}", p.display()))?;
    }
    let mut files = Vec::new();
    collect_files(&work, &work, &mut files)?;
    files.sort();
    // coreutils' md5sum, as dh_md5sums uses: "SUM  path/relative/to/root".
    let sums = run::output(
        std::process::Command::new("md5sum")
            .current_dir(&work)
            .arg("--")
            .args(&files),
    )?
    .stdout;
    let control = work.join("DEBIAN/md5sums");
    fs::write(&control, sums).map_err(|e| format!("cannot write {}: {e}", control.display()))?;
    run::output(
        std::process::Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&work)
            .arg(deb),
    )?;
    fs::remove_dir_all(&work).map_err(|e| format!("cannot remove {}: {e}", work.display()))
}

/// Regular files under `dir`, relative to `root`, DEBIAN/ left out.
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let rel = path.strip_prefix(root).map_err(|e| e.to_string())?.to_path_buf();
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
        if rel == Path::new("DEBIAN") {
            continue;
        }
        if meta.is_dir() {
            collect_files(root, &path, out)?;
        } else if meta.is_file() {
            out.push(rel);
        }
    }
    Ok(())
}

pub fn only_file(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(format!("expected one *{suffix} in {}, found {n}", dir.display())),
    }
}

fn write_sums(dir: &Path, files: &[&Path]) -> Result<()> {
    let mut text = String::new();
    for f in files {
        let bytes = fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        let digest = Sha256::digest(&bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let name = f.file_name().unwrap_or_default().to_string_lossy();
        text.push_str(&format!("{hex}  {name}\n"));
    }
    fs::write(dir.join("SHA256SUMS"), text).map_err(|e| format!("cannot write SHA256SUMS: {e}"))
}
