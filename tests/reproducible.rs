//! Issue 16: a release can be rebuilt by anyone and checked byte for byte.
//! The packages `cargo xtask test` built are compared with a second build of
//! the same sources: another checkout in another directory, with its own
//! target directory, made later (another clock, other file times), in
//! another time zone and under another umask. Ignored by a plain `cargo
//! test`: it needs the first build ($JARVIS_DEB, $JARVIS_RPM) and takes a
//! release build.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pkg(var: &str) -> PathBuf {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("${var} is not set: build the packages and run this through `cargo xtask test`")
    });
    assert!(p.is_file(), "${var} = {} does not exist", p.display());
    p
}

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn sha256(path: &Path) -> String {
    let (code, text) = run(Command::new("sha256sum").arg(path));
    assert_eq!(code, 0, "{text}");
    text.split_whitespace().next().unwrap_or_default().to_string()
}

/// A second checkout of this commit in `dir`, holding the work tree's
/// version of every file git would see (so uncommitted work is compared
/// too), every file dated 2001.
fn checkout(dir: &Path) {
    let (code, text) = run(Command::new("git")
        .args(["clone", "-q", "--no-hardlinks"])
        .arg(repo())
        .arg(dir));
    assert_eq!(code, 0, "git clone:\n{text}");
    let out = Command::new("git")
        .current_dir(repo())
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .output()
        .unwrap();
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let from = repo().join(&name);
        if from.is_file() {
            let to = dir.join(&name);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {name}: {e}"));
            // Older than any commit: a time that SOURCE_DATE_EPOCH's clamp
            // alone would leave in the package (the first build's files are
            // younger: its checkout's time).
            fs::File::options()
                .write(true)
                .open(&to)
                .and_then(|f| {
                    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
                })
                .unwrap_or_else(|e| panic!("set the time of {name}: {e}"));
        }
    }
}

/// What differs between two packages, to say where the bytes went.
fn explain(a: &Path, b: &Path) -> String {
    let list = |p: &Path| {
        if p.extension().is_some_and(|e| e == "deb") {
            run(Command::new("sh")
                .arg("-c")
                .arg(format!("dpkg-deb -I {0} && dpkg-deb -c {0}", p.display())))
            .1
        } else {
            run(Command::new("rpm")
                .args(["-qp", "--nosignature", "--dump", "--info"])
                .arg(p))
            .1
        }
    };
    let (la, lb) = (list(a), list(b));
    let only = |x: &str, y: &str| -> Vec<String> {
        x.lines()
            .filter(|l| !y.lines().any(|m| m == *l))
            .map(|l| format!("  {l}"))
            .collect()
    };
    format!(
        "first build only:\n{}\nsecond build only:\n{}",
        only(&la, &lb).join("\n"),
        only(&lb, &la).join("\n")
    )
}

#[test]
#[ignore = "needs the built packages and a release build: run by cargo xtask test"]
fn two_builds_in_other_directories_at_other_times_are_byte_identical() {
    let first = [pkg("JARVIS_DEB"), pkg("JARVIS_RPM")];
    let work = tempfile::Builder::new()
        .prefix("jarvis-rebuild-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let src = work.path().join("src");
    checkout(&src);
    let t0 = std::time::Instant::now();
    // Nothing of this build may leak in: its target directory, its flags,
    // nor the build date `cargo xtask test` set (the rebuild must find the
    // same one from the commit).
    let mut build = Command::new("sh");
    build
        .args(["-c", "umask 0002 && exec cargo xtask dist"])
        .current_dir(&src)
        .env("TZ", "NZST-12")
        .env("LC_ALL", "C.UTF-8");
    for var in [
        "SOURCE_DATE_EPOCH",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_VERSION",
    ] {
        build.env_remove(var);
    }
    let (code, text) = run(&mut build);
    assert_eq!(code, 0, "the second build failed:\n{text}");
    let took = t0.elapsed();

    let mut report = Vec::new();
    let mut differ = Vec::new();
    for a in &first {
        let name = a.file_name().unwrap();
        let b = src.join("target/dist").join(name);
        assert!(b.is_file(), "the second build made no {}:\n{text}", b.display());
        let (ha, hb) = (sha256(a), sha256(&b));
        report.push(format!("{}: {ha} / {hb}", name.to_string_lossy()));
        if ha != hb {
            differ.push(format!("{}:\n{}", name.to_string_lossy(), explain(a, &b)));
        }
    }
    assert!(
        differ.is_empty(),
        "the two builds differ:\n{}\n\n{}",
        report.join("\n"),
        differ.join("\n\n")
    );
    println!(
        "figures: second build in {} ({:.0} s, sources dated 2001, TZ=NZST-12, umask 0002): byte-identical\n  {}",
        src.display(),
        took.as_secs_f64(),
        report.join("\n  ")
    );
}
