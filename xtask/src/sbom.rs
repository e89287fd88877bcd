//! A CycloneDX SBOM (JSON, spec 1.5) beside each package in target/dist:
//! `<package file>.cdx.json`, listing the crates compiled into
//! /usr/bin/jarvisctl (and the engine it execs) with their exact versions, purls and the sha256 that
//! Cargo.lock records for each `.crate`.
//!
//! Written here rather than by cargo-cyclonedx: its 0.5.9 release lists
//! optional dependencies that no enabled feature turns on (upstream #766,
//! fixed after 0.5.9): five crates that are not in the binary here, and its
//! `cargo install` takes over 4 minutes on 2 cores. The set of crates comes
//! from cargo's own resolver, as the release build sees it: `cargo tree -e
//! normal -p jarvis-supervisor --target HOST` (no dev-dependencies, no
//! build-dependencies; features resolved like `cargo build`). The details
//! come from `cargo metadata` and Cargo.lock.
//!
//! No hash of the package file itself: the release signs the .rpm after
//! this is written. The document is deterministic: a timestamp only from
//! `SOURCE_DATE_EPOCH`, and a serial number derived from the content.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::run::{self, Result};

const CRATE: &str = "jarvis-supervisor";
/// crates.io, as Cargo.lock and `cargo metadata` name it (git and sparse index).
const CRATES_IO: &[&str] = &[
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
];

/// (name, version) of a crate.
type Crate = (String, String);
/// Each crate's direct dependencies.
type Edges = BTreeMap<Crate, BTreeSet<Crate>>;

/// Write `<package>.cdx.json` into `dist_dir` for each of `packages`.
pub fn write(dist_dir: &Path, packages: &[&Path]) -> Result<()> {
    let root = run::root();
    let host = host_triple()?;
    let details = metadata(&root)?;
    // The workspace's own crates (jarvis-model, jarvis-engine, ...) are the
    // application itself, not components: no source, no purl of crates.io.
    let local: BTreeSet<String> = details
        .iter()
        .filter(|(_, m)| m["source"].is_null())
        .map(|((n, _), _)| n.clone())
        .collect();
    let (linked, edges) = linked_crates(&root, &host, &local)?;
    let sums = lock_checksums(&root.join("Cargo.lock"))?;

    let mut components = Vec::new();
    for (name, version) in &linked {
        let meta = details
            .get(&(name.clone(), version.clone()))
            .ok_or_else(|| format!("{name} {version} is not in cargo metadata"))?;
        let source = meta["source"].as_str().unwrap_or_default();
        if !CRATES_IO.contains(&source) {
            return Err(format!(
                "{name} {version} comes from {source:?}, not crates.io: give it a purl in xtask/src/sbom.rs"
            ));
        }
        let purl = purl(name, version);
        let mut c = json!({
            "type": "library",
            "bom-ref": purl,
            "name": name,
            "version": version,
            "scope": "required",
            "purl": purl,
        });
        if let Some(d) = meta["description"].as_str() {
            c["description"] = json!(d.trim());
        }
        if let Some(l) = meta["license"].as_str() {
            // The SPDX expression Cargo.toml gives; old crates write "/" for OR.
            c["licenses"] = json!([{ "expression": l.replace('/', " OR ") }]);
        }
        if let Some(sum) = sums.get(&(name.clone(), version.clone())) {
            c["hashes"] = json!([{ "alg": "SHA-256", "content": sum }]);
        }
        if let Some(r) = meta["repository"].as_str() {
            c["externalReferences"] = json!([{ "type": "vcs", "url": r }]);
        }
        components.push(c);
    }

    for package in packages {
        let file = package
            .file_name()
            .ok_or_else(|| format!("{}: no file name", package.display()))?
            .to_string_lossy()
            .into_owned();
        let (kind, version, arch) = describe(&file)?;
        let self_ref = format!("pkg:{kind}/{CRATE}@{version}?arch={arch}");
        let crate_version = &details
            .iter()
            .find(|((n, _), m)| n == CRATE && m["source"].is_null())
            .map(|((_, v), _)| v.clone())
            .ok_or("jarvis-supervisor is not in cargo metadata")?;
        let dependencies: Vec<Value> = std::iter::once((
            self_ref.clone(),
            edges.get(&(CRATE.to_string(), crate_version.clone())),
        ))
        .chain(linked.iter().map(|c| (purl(&c.0, &c.1), edges.get(c))))
        .map(|(r, deps)| {
            let on: Vec<String> = deps.into_iter().flatten().map(|(n, v)| purl(n, v)).collect();
            json!({ "ref": r, "dependsOn": on })
        })
        .collect();
        let mut metadata = json!({
            "component": {
                "type": "application",
                "bom-ref": self_ref,
                "name": CRATE,
                "version": version,
                "description": format!("the {kind} package {file}, whose /usr/bin/jarvisctl and /usr/libexec/jarvis-supervisor/jarvis-engine are built from these crates"),
                "purl": self_ref,
                "licenses": [{ "expression": "MIT" }],
            },
            "tools": [{ "name": "cargo xtask dist (xtask/src/sbom.rs)" }],
            "properties": [
                { "name": "cdx:rustc:sbom:target:triple", "value": host },
                { "name": "jarvis-supervisor:crate-version", "value": crate_version },
            ],
        });
        if let Some(ts) = source_date_epoch()? {
            metadata["timestamp"] = json!(ts);
        }
        let mut doc = json!({
            "bomFormat": "CycloneDX",
            "specVersion": "1.5",
            "version": 1,
            "metadata": metadata,
            "components": components,
            "dependencies": dependencies,
        });
        doc["serialNumber"] = json!(serial(&doc));
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())? + "\n";
        let out = dist_dir.join(format!("{file}.cdx.json"));
        fs::write(&out, text).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        println!("sbom: {} ({} crates)", out.display(), linked.len());
    }
    Ok(())
}

/// Crate names are `[A-Za-z0-9_-]`; a version's `+build` stays as it is
/// (as cargo-cyclonedx writes it; percent-decoding leaves it unchanged).
fn purl(name: &str, version: &str) -> String {
    format!("pkg:cargo/{name}@{version}")
}

fn host_triple() -> Result<String> {
    let out = run::output(std::process::Command::new("rustc").arg("-vV"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .ok_or_else(|| "rustc -vV names no host".to_string())
}

/// The crates of the release build of jarvis-supervisor for `host`
/// (itself and the workspace's other crates, named in `local`, left out),
/// and who depends on whom, from `cargo tree`. A local crate's dependencies
/// are the application's.
fn linked_crates(root: &Path, host: &str, local: &BTreeSet<String>) -> Result<(BTreeSet<Crate>, Edges)> {
    let out = run::output(
        run::cargo()
            .current_dir(root)
            .args(["tree", "--locked", "-e", "normal", "-p", CRATE, "--target", host])
            .args(["--prefix", "depth", "--format", "{p}", "--charset", "ascii"]),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut set = BTreeSet::new();
    let mut edges = Edges::new();
    // The last crate seen at each depth: the parent of the next deeper line.
    let mut stack: Vec<Crate> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        let depth: usize = line[..digits]
            .parse()
            .map_err(|_| format!("cargo tree: no depth in {line:?}"))?;
        let mut words = line[digits..].split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next().and_then(|v| v.strip_prefix('v')))
        else {
            return Err(format!("cargo tree: cannot read {line:?}"));
        };
        let this = (name.to_string(), version.to_string());
        stack.truncate(depth);
        if depth == 0 && name != CRATE {
            return Err(format!("cargo tree starts at {line:?}, not {CRATE}"));
        }
        if depth > 0 && local.contains(name) {
            // Stands for the application: its children hang from its parent.
            let parent = stack.last().cloned().unwrap_or_else(|| this.clone());
            stack.push(parent);
            continue;
        }
        if let Some(parent) = stack.last() {
            edges.entry(parent.clone()).or_default().insert(this.clone());
        }
        if depth > 0 {
            set.insert(this.clone());
        }
        stack.push(this);
    }
    if set.is_empty() {
        return Err(format!("cargo tree -p {CRATE} listed no dependency:\n{text}"));
    }
    Ok((set, edges))
}

/// `cargo metadata`'s package entries by (name, version).
fn metadata(root: &Path) -> Result<BTreeMap<Crate, Value>> {
    let out =
        run::output(
            run::cargo()
                .current_dir(root)
                .args(["metadata", "--format-version", "1", "--locked"]),
        )?;
    let doc: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    Ok(doc["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?
        .iter()
        .filter_map(|p| {
            let key = (
                p["name"].as_str()?.to_string(),
                p["version"].as_str()?.to_string(),
            );
            Some((key, p.clone()))
        })
        .collect())
}

/// The sha256 of each `.crate`, as Cargo.lock records it.
fn lock_checksums(lock: &Path) -> Result<BTreeMap<Crate, String>> {
    let text = fs::read_to_string(lock).map_err(|e| format!("cannot read {}: {e}", lock.display()))?;
    let value = |block: &str, key: &str| -> Option<String> {
        block.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
    };
    Ok(text
        .split("[[package]]")
        .skip(1)
        .filter_map(|b| Some(((value(b, "name")?, value(b, "version")?), value(b, "checksum")?)))
        .collect())
}

/// ("deb" or "rpm", version-revision, architecture) from the file names
/// cargo-deb (`NAME_VERSION_ARCH.deb`) and cargo-generate-rpm
/// (`NAME-VERSION-RELEASE.ARCH.rpm`) write.
fn describe(file: &str) -> Result<(&'static str, String, String)> {
    let bad = || format!("cannot read the package name, version and architecture of {file}");
    if let Some(stem) = file.strip_suffix(".deb") {
        let rest = stem.strip_prefix(&format!("{CRATE}_")).ok_or_else(bad)?;
        let (version, arch) = rest.rsplit_once('_').ok_or_else(bad)?;
        Ok(("deb", version.to_string(), arch.to_string()))
    } else if let Some(stem) = file.strip_suffix(".rpm") {
        let rest = stem.strip_prefix(&format!("{CRATE}-")).ok_or_else(bad)?;
        let (version, arch) = rest.rsplit_once('.').ok_or_else(bad)?;
        Ok(("rpm", version.to_string(), arch.to_string()))
    } else {
        Err(bad())
    }
}

/// `SOURCE_DATE_EPOCH` as an RFC 3339 UTC time, if it is set.
fn source_date_epoch() -> Result<Option<String>> {
    let Ok(raw) = std::env::var("SOURCE_DATE_EPOCH") else {
        return Ok(None);
    };
    let secs: i64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("SOURCE_DATE_EPOCH={raw:?} is not a number of seconds"))?;
    let time = chrono::DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| format!("SOURCE_DATE_EPOCH={raw:?} is out of range"))?;
    Ok(Some(time.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

/// A urn:uuid made from the document's own content: the same inputs give
/// the same SBOM, different ones a different serial number.
fn serial(doc: &Value) -> String {
    let digest = Sha256::digest(doc.to_string().as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8: custom (RFC 9562)
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_packages() {
        assert_eq!(
            describe("jarvis-supervisor_0.1.0-1_amd64.deb").unwrap(),
            ("deb", "0.1.0-1".into(), "amd64".into())
        );
        assert_eq!(
            describe("jarvis-supervisor-0.1.0-1.x86_64.rpm").unwrap(),
            ("rpm", "0.1.0-1".into(), "x86_64".into())
        );
        assert!(describe("other_1_amd64.deb").is_err());
    }

    #[test]
    fn source_date_epoch_is_utc() {
        std::env::set_var("SOURCE_DATE_EPOCH", "1700000000");
        assert_eq!(
            source_date_epoch().unwrap().as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        std::env::set_var("SOURCE_DATE_EPOCH", "951782400");
        assert_eq!(
            source_date_epoch().unwrap().as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        std::env::remove_var("SOURCE_DATE_EPOCH");
    }
}
