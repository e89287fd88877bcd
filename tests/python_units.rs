//! The Python helpers' own unit tests (python/tests, `python3 -m unittest`),
//! in the plain layer: their pure parts (the requirements reader's PEP 508
//! subset, the host worker's manifest, hash bound, plan and count, the venv
//! builder's reading of the installer and its pruning) fail `cargo test`
//! when they break. python3 is a dependency of the package and of every
//! test layer: without it this fails, it never skips.

use std::path::Path;
use std::process::Command;

#[test]
fn the_python_helpers_pass_their_unit_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/tests");
    let out = Command::new("python3")
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(&dir)
        .arg("-t")
        .arg(&dir)
        // No __pycache__ left in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): install python3, these tests need it"));
    // unittest reports on stderr.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "python3 -m unittest failed in {}:\n{text}",
        dir.display()
    );
    // Discovery that finds nothing passes too: each helper's tests must have run.
    for module in ["test_requirements", "test_deploy_host", "test_venv_build"] {
        assert!(
            text.contains(&format!("({module}.")),
            "no test of {module} ran in {}:\n{text}",
            dir.display()
        );
    }
}
