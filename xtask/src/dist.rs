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
    run::status(
        run::cargo()
            .current_dir(&root)
            .args(["generate-rpm", "-p", ".", "-o"])
            .arg(&out),
    )?;
    let rpm = only_file(&out, ".rpm")?;
    write_sums(&out, &[&deb, &rpm])?;
    println!(
        "built:\n  {}\n  {}\n  {}",
        deb.display(),
        rpm.display(),
        out.join("SHA256SUMS").display()
    );
    Ok(Dist { deb, rpm })
}

/// `cargo build --release` of the helper: what `dist` packages and `bench` times.
pub fn build_release() -> Result<PathBuf> {
    let root = run::root();
    run::status(run::cargo().current_dir(&root).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "jarvis-supervisor",
    ]))?;
    Ok(root.join("target/release/jarvisctl"))
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
    Ok(path)
}

fn only_file(dir: &Path, suffix: &str) -> Result<PathBuf> {
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
