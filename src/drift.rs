//! Shipped files that changed on the host since the deploy in effect. The
//! service must be able to write `bots/` (its components keep state there),
//! so it can also rewrite its own code; rather than forbid what the program
//! needs, `status` and `check` compare the live code with the manifest of
//! the deploy in effect (`jarvisctl deploy`'s history) and name what
//! differs. Files are opened through `untrusted`: the code root is the
//! service user's, and these commands run as root.

use std::io::Read;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::manifest::{hex, Kind, Manifest};
use crate::paths::Paths;

/// The deploy history on a host (see `cmd/deploy/plan.rs`).
const DEPLOYS: &str = "/var/lib/jarvis-supervisor/deploys";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub path: String,
    /// "changed", "missing", or "not a regular file".
    pub what: &'static str,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The deploy whose manifest was compared.
    pub deploy: String,
    /// Shipped files checked.
    pub files: usize,
    pub changed: Vec<Changed>,
}

impl Changed {
    pub fn describe(&self) -> String {
        format!("{} ({})", self.path, self.what)
    }
}

/// None when no deploy is in effect (code installed by hand) or its
/// manifest cannot be read (not root).
pub fn check(paths: &Paths, code_root: &Path) -> Option<Drift> {
    let deploys = paths.host(Path::new(DEPLOYS));
    let id = std::fs::read_to_string(deploys.join("current")).ok()?;
    let id = id.trim();
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return None;
    }
    let text = std::fs::read_to_string(deploys.join(id).join("manifest.tsv")).ok()?;
    let manifest = Manifest::parse(&text).ok()?;
    let root = paths.host(code_root);
    let mut out = Drift {
        deploy: id.to_string(),
        ..Drift::default()
    };
    for e in manifest.entries.iter().filter(|e| e.kind == Kind::File) {
        out.files += 1;
        let what = match crate::untrusted::open_read(&root.join(&e.path), None) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Some("missing"),
            Err(_) => Some("not a regular file"),
            Ok(f) => match f.metadata() {
                Ok(m) if m.len() != e.size => Some("changed"),
                Ok(_) if sha256(f).as_deref() != Some(e.sha.as_str()) => Some("changed"),
                Ok(_) => None,
                Err(_) => Some("not a regular file"),
            },
        };
        if let Some(what) = what {
            out.changed.push(Changed {
                path: e.path.clone(),
                what,
            });
        }
    }
    Some(out)
}

fn sha256(mut f: std::fs::File) -> Option<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(hex(&h.finalize()))
}

/// One sentence for a report: how many, from which deploy, the first few.
pub fn summary(d: &Drift) -> String {
    let shown: Vec<String> = d.changed.iter().take(10).map(Changed::describe).collect();
    let more = d.changed.len().saturating_sub(shown.len());
    format!(
        "{} shipped file(s) changed on the host since deploy {}: {}{}",
        d.changed.len(),
        d.deploy,
        shown.join(", "),
        if more > 0 {
            format!(", and {more} more")
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn names_changed_missing_and_linked_files_of_the_deploy_in_effect() {
        let t = tempfile::tempdir().unwrap();
        let p = |r: &str| t.path().join(r);
        let w = |r: &str, text: &str| {
            fs::create_dir_all(p(r).parent().unwrap()).unwrap();
            fs::write(p(r), text).unwrap();
        };
        for (f, text) in [("a.py", "a"), ("b.py", "b"), ("c.py", "c"), ("d/e.py", "e")] {
            w(&format!("src/{f}"), text);
            w(&format!("home/code/{f}"), text);
        }
        let m = Manifest::build(&p("src")).unwrap();
        let d = "var/lib/jarvis-supervisor/deploys";
        w(
            &format!("{d}/20260101T000000Z/manifest.tsv"),
            &m.render("jarvis:jarvis"),
        );
        let paths = Paths::rooted(t.path());
        assert_eq!(
            check(&paths, Path::new("/home/code")),
            None,
            "no deploy in effect"
        );
        w(&format!("{d}/current"), "20260101T000000Z\n");
        let clean = check(&paths, Path::new("/home/code")).unwrap();
        assert_eq!((clean.files, clean.changed.len()), (4, 0));
        w("home/code/a.py", "A");
        fs::remove_file(p("home/code/b.py")).unwrap();
        fs::remove_file(p("home/code/d/e.py")).unwrap();
        std::os::unix::fs::symlink(p("src/d/e.py"), p("home/code/d/e.py")).unwrap();
        w(
            "home/code/bots/state.json",
            "the bot's own state: not shipped, not reported",
        );
        let d = check(&paths, Path::new("/home/code")).unwrap();
        assert_eq!(
            d.changed.iter().map(Changed::describe).collect::<Vec<_>>(),
            ["a.py (changed)", "b.py (missing)", "d/e.py (not a regular file)"]
        );
        assert!(summary(&d)
            .starts_with("3 shipped file(s) changed on the host since deploy 20260101T000000Z: a.py"));
    }
}
