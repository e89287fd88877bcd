//! The `.env` parser against systemd itself: each file of
//! `tests/fixtures/envfiles` is loaded through a real unit's
//! `EnvironmentFile=` in a booted container, and the environment the process
//! receives must be what `envfile::parse` says systemd sets.

use std::collections::BTreeMap;
use std::path::Path;

use jarvis_model::envfile;

use super::container::Container;
use super::roots::Suite;

fn env_of(bytes: &[u8]) -> BTreeMap<String, String> {
    bytes
        .split(|&b| b == 0)
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let s = String::from_utf8_lossy(kv);
            s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

pub fn compare(suite: Suite) {
    let c = Container::boot(suite);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/envfiles");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    c.write("/var/tmp/corpus/baseline.env", "");
    for f in &files {
        c.put(
            f,
            &format!("/var/tmp/corpus/{}", f.file_name().unwrap().to_string_lossy()),
        );
    }
    c.write(
        "/etc/systemd/system/envprobe@.service",
        "[Service]\nType=oneshot\nEnvironmentFile=/var/tmp/corpus/%i.env\nExecStart=/usr/bin/env -0\nStandardOutput=file:/var/tmp/out/%i\n",
    );
    c.ok("mkdir -p /var/tmp/out && systemctl daemon-reload && systemctl start envprobe@baseline");
    // What systemd sets by itself (INVOCATION_ID, ...): not from the file.
    let baseline = env_of(&std::fs::read(c.root.join("var/tmp/out/baseline")).unwrap());
    let version: u32 = c
        .ok("systemctl --version | head -1")
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("systemd version");
    let mut mismatches = Vec::new();
    for f in &files {
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        let started = c.sh(&format!("systemctl start envprobe@{name} 2>&1"));
        let parsed = envfile::parse_for(&std::fs::read(f).unwrap(), version);
        let got: BTreeMap<String, String> = match std::fs::read(c.root.join(format!("var/tmp/out/{name}"))) {
            Ok(b) if started.status == 0 => env_of(&b)
                .into_iter()
                .filter(|(k, _)| !baseline.contains_key(k))
                .collect(),
            _ => {
                if !parsed.refused {
                    mismatches.push(format!(
                        "{name}: systemd refused the file, the parser did not: {}",
                        started.all().trim()
                    ));
                }
                continue;
            }
        };
        if parsed.refused {
            mismatches.push(format!("{name}: the parser refused the file, systemd did not"));
            continue;
        }
        let mut want = BTreeMap::new();
        for v in &parsed.vars {
            want.insert(v.key.clone(), v.value.clone());
        }
        if got != want {
            mismatches.push(format!("{name}:\n  systemd: {got:?}\n  parser:  {want:?}"));
        }
    }
    println!(
        "{}: {} corpus files compared with systemd {version}",
        suite.name(),
        files.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} files differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
