//! `cargo xtask repo`: target/dist/ made into two package repositories that
//! hosts install and upgrade from.
//!
//! - target/repo/apt: `pool/`, `dists/stable/main/binary-ARCH/Packages`,
//!   `Release`, `InRelease` and `Release.gpg` (apt-ftparchive, gpg), and the
//!   public keyring for `signed-by` (`jarvis-supervisor.gpg`, armored copy
//!   `jarvis-supervisor.asc`).
//! - target/repo/yum: `Packages/` (the .rpm files signed with `rpmsign`) and
//!   `repodata/` (createrepo_c), with `repomd.xml.asc` and
//!   `RPM-GPG-KEY-jarvis-supervisor`.
//!
//! The signing key is the armored secret key in `JARVIS_REPO_GPG_KEY`; without
//! it, a test key made once in target/repo/test-key, with a loud notice.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::deps;
use crate::run::{self, Result};

/// Debian packages `repo` runs (`rpm` brings `rpmsign`).
pub const PACKAGES: &[&str] = &["apt-utils", "createrepo-c", "gnupg", "rpm"];

pub const SUITE: &str = "stable";
pub const COMPONENT: &str = "main";
const KEY_ENV: &str = "JARVIS_REPO_GPG_KEY";
const TEST_UID: &str =
    "jarvis-supervisor TEST repository key (not for production) <jarvis-supervisor@example.org>";

/// `cargo xtask repo`: target/dist -> target/repo.
pub fn repo(from: Option<PathBuf>, out: Option<PathBuf>) -> Result<()> {
    let root = run::root();
    let out = out.unwrap_or_else(|| root.join("target/repo"));
    build(&from.unwrap_or_else(|| root.join("target/dist")), &out)?;
    println!(
        "built:\n  {}  (deb [signed-by=/usr/share/keyrings/jarvis-supervisor.gpg] URL {SUITE} {COMPONENT})\n  {}",
        out.join("apt").display(),
        out.join("yum").display()
    );
    Ok(())
}

/// Make `out/apt` and `out/yum` from the .deb and .rpm files in `dist`
/// (replacing what was there), signed with the release key or the test key.
pub fn build(dist: &Path, out: &Path) -> Result<()> {
    deps::apt(PACKAGES)?;
    let files = |suffix: &str| -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = fs::read_dir(dist)
            .map_err(|e| format!("cannot read {}: {e}; run cargo xtask dist first", dist.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        v.sort();
        Ok(v)
    };
    let debs = files(".deb")?;
    let rpms = files(".rpm")?;
    if debs.is_empty() {
        return Err(format!(
            "no .deb in {}; run cargo xtask dist first",
            dist.display()
        ));
    }
    let key = Signer::new(&secret_key()?)?;
    fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    apt_repo(&debs, &out.join("apt"), &key)?;
    if rpms.is_empty() {
        eprintln!("repo: no .rpm in {}: no YUM repository", dist.display());
    } else {
        yum_repo(&rpms, &out.join("yum"), &key)?;
    }
    Ok(())
}

fn fresh(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn copy_into(files: &[PathBuf], dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for f in files {
        let to = dir.join(f.file_name().unwrap_or_default());
        fs::copy(f, &to).map_err(|e| format!("cannot copy {} to {}: {e}", f.display(), to.display()))?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn apt_repo(debs: &[PathBuf], apt: &Path, key: &Signer) -> Result<()> {
    fresh(apt)?;
    copy_into(debs, &apt.join(format!("pool/{COMPONENT}/j/jarvis-supervisor")))?;
    // The architectures come from the packages: jarvis-supervisor_V_ARCH.deb.
    let mut arches: Vec<String> = debs
        .iter()
        .filter_map(|d| {
            let name = d.file_stem()?.to_string_lossy().into_owned();
            name.rsplit('_').next().map(str::to_string)
        })
        .collect();
    arches.sort();
    arches.dedup();
    let dists = apt.join(format!("dists/{SUITE}"));
    for arch in &arches {
        let dir = dists.join(format!("{COMPONENT}/binary-{arch}"));
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let packages = run::output(
            Command::new("apt-ftparchive")
                .current_dir(apt)
                .args(["--arch", arch, "packages", "pool"]),
        )?
        .stdout;
        write(&dir.join("Packages"), &packages)?;
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &packages).map_err(|e| e.to_string())?;
        write(&dir.join("Packages.gz"), &gz.finish().map_err(|e| e.to_string())?)?;
    }
    let conf = |k: &str, v: &str| format!("-oAPT::FTPArchive::Release::{k}={v}");
    let release = run::output(
        Command::new("apt-ftparchive")
            .current_dir(apt)
            .arg(conf("Origin", "jarvis-supervisor"))
            .arg(conf("Label", "jarvis-supervisor"))
            .arg(conf("Suite", SUITE))
            .arg(conf("Codename", SUITE))
            .arg(conf("Architectures", &arches.join(" ")))
            .arg(conf("Components", COMPONENT))
            .arg(conf("Description", "jarvis-supervisor packages"))
            .args(["release", &format!("dists/{SUITE}")]),
    )?
    .stdout;
    write(&dists.join("Release"), &release)?;
    key.sign(
        &["--clearsign", "-o"],
        &dists.join("InRelease"),
        &dists.join("Release"),
    )?;
    key.sign(
        &["--armor", "--detach-sign", "-o"],
        &dists.join("Release.gpg"),
        &dists.join("Release"),
    )?;
    // apt's signed-by wants a binary keyring (.gpg) or an armored .asc.
    key.export(&[], &apt.join("jarvis-supervisor.gpg"))?;
    key.export(&["--armor"], &apt.join("jarvis-supervisor.asc"))?;
    Ok(())
}

fn yum_repo(rpms: &[PathBuf], yum: &Path, key: &Signer) -> Result<()> {
    fresh(yum)?;
    let packages = yum.join("Packages");
    copy_into(rpms, &packages)?;
    // The copies are signed (the originals in dist stay as built), before
    // createrepo_c records their checksums: hosts use gpgcheck=1.
    for rpm in rpms {
        key.rpmsign(&packages.join(rpm.file_name().unwrap_or_default()))?;
    }
    run::output(Command::new("createrepo_c").args(["--quiet"]).arg(yum))?;
    let repomd = yum.join("repodata/repomd.xml");
    key.sign(
        &["--armor", "--detach-sign", "-o"],
        &yum.join("repodata/repomd.xml.asc"),
        &repomd,
    )?;
    key.export(&["--armor"], &yum.join("RPM-GPG-KEY-jarvis-supervisor"))?;
    Ok(())
}

/// The armored secret key: `$JARVIS_REPO_GPG_KEY`, or the test key (made
/// once in target/repo/test-key).
fn secret_key() -> Result<String> {
    if let Ok(k) = std::env::var(KEY_ENV) {
        if !k.trim().is_empty() {
            return Ok(k);
        }
    }
    let dir = run::root().join("target/repo/test-key");
    let file = dir.join("secret.asc");
    eprintln!(
        "\n*** NOTICE: ${KEY_ENV} is not set: signing with the TEST key in {} ***\n*** Hosts must not trust this key. Set {KEY_ENV} to the release key (armored secret key). ***\n",
        dir.display()
    );
    if let Ok(k) = fs::read_to_string(&file) {
        return Ok(k);
    }
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let home = GpgHome::new()?;
    run::output(home.gpg().args([
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--quick-gen-key",
        TEST_UID,
        "ed25519",
        "sign",
        "never",
    ]))?;
    let armored = run::output(home.gpg().args(["--armor", "--export-secret-keys"]))?.stdout;
    write(&file, &armored)?;
    Ok(String::from_utf8_lossy(&armored).into_owned())
}

/// A throwaway GNUPGHOME (short path: gpg-agent's socket lives there); its
/// agent is stopped and the directory removed on drop.
struct GpgHome {
    dir: tempfile::TempDir,
}

impl GpgHome {
    fn new() -> Result<GpgHome> {
        let dir = tempfile::Builder::new()
            .prefix("jarvis-gpg-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("cannot make a GNUPGHOME: {e}"))?;
        Ok(GpgHome { dir })
    }

    fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.dir.path())
            .args(["--batch", "--yes", "--quiet"]);
        c
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.dir.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// A key imported into its own GNUPGHOME.
struct Signer {
    home: GpgHome,
    fingerprint: String,
}

impl Signer {
    fn new(armored: &str) -> Result<Signer> {
        let home = GpgHome::new()?;
        let mut import = home.gpg();
        import.args(["--import"]);
        let mut child = import
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run gpg: {e}"))?;
        std::io::Write::write_all(child.stdin.as_mut().expect("piped"), armored.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "gpg --import of the signing key failed: {}\nnote: {KEY_ENV} must hold an armored secret key without a passphrase",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let list = run::output(home.gpg().args(["--with-colons", "--list-secret-keys"]))?.stdout;
        let fingerprint = String::from_utf8_lossy(&list)
            .lines()
            .find_map(|l| l.strip_prefix("fpr:").map(|r| r.trim_matches(':').to_string()))
            .ok_or_else(|| format!("no secret key in {KEY_ENV}"))?;
        Ok(Signer { home, fingerprint })
    }

    fn sign(&self, how: &[&str], output: &Path, input: &Path) -> Result<()> {
        run::output(
            self.home
                .gpg()
                .args([
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    "",
                    "--local-user",
                    &self.fingerprint,
                ])
                .args(["--digest-algo", "SHA512"])
                .args(how)
                .arg(output)
                .arg(input),
        )?;
        Ok(())
    }

    /// Sign an .rpm in place (`rpmsign --addsign`) with this key.
    fn rpmsign(&self, rpm: &Path) -> Result<()> {
        // rpm execs %__gpg by path, and Debian's rpm names /usr/bin/gpg2,
        // which Debian's gnupg does not ship.
        let gpg = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join("gpg"))
            .find(|p| p.is_file())
            .ok_or("gpg is not on PATH")?;
        run::output(
            Command::new("rpmsign")
                .env("GNUPGHOME", self.home.dir.path())
                .arg("--define")
                .arg(format!("__gpg {}", gpg.display()))
                .arg("--define")
                .arg(format!("_gpg_name {}", self.fingerprint))
                .arg("--define")
                .arg(format!("_gpg_path {}", self.home.dir.path().display()))
                // No passphrase, no terminal: gpg must not ask.
                .args([
                    "--define",
                    "_gpg_sign_cmd_extra_args --batch --pinentry-mode loopback",
                ])
                .arg("--addsign")
                .arg(rpm),
        )?;
        Ok(())
    }

    fn export(&self, how: &[&str], output: &Path) -> Result<()> {
        let bytes = run::output(self.home.gpg().arg("--export").args(how).arg(&self.fingerprint))?.stdout;
        write(output, &bytes)
    }
}
