//! Issue 25, docs by audience: the README stays short (what it is, install,
//! first start, daily commands, links), every document a comment cites
//! exists, and every relative link in the README, CONTRIBUTING.md and
//! docs/ reaches a file, and a heading when it names one.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown files a reader of the source tree is sent to.
fn markdown_docs() -> Vec<PathBuf> {
    let mut v = vec![repo().join("README.md"), repo().join("CONTRIBUTING.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    v.extend(docs);
    v
}

/// Every file of the repository that may cite a document (the code,
/// packaging, CI, docs, a crate added later): the whole tree, without
/// build output, caches and hidden folders. One list for the checks below,
/// so that none of them skips a folder another reads.
fn repo_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    files_under(&repo(), &mut files);
    files
}

/// Every file under `dir` (recursively), skipping build output and caches.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name == "target" || name.starts_with('.') || name == "__pycache__" {
            continue;
        }
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// GitHub's anchor of a heading: lower case, punctuation dropped but `-`
/// and `_`, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fence = false;
    let mut set = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fence = !fence;
        } else if !fence && line.starts_with('#') {
            set.insert(anchor(line.trim_start_matches('#')));
        }
    }
    set
}

/// The targets of `[text](target)` links, outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut fence = false;
    let mut v = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            if let Some(j) = rest.find(')') {
                v.push(rest[..j].to_string());
                rest = &rest[j..];
            }
        }
    }
    v
}

#[test]
fn readme_is_short_and_keeps_the_two_commands_and_its_sections() {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let n = readme.lines().count();
    println!("figures: README.md has {n} lines");
    assert!(
        n <= 300,
        "README.md has {n} lines; the operator's details go to docs/"
    );
    for want in [
        "cargo xtask dist",
        "cargo xtask test",
        "## Install",
        "## First start",
        "## Daily commands",
        "## Documentation",
    ] {
        assert!(readme.contains(want), "README.md lacks {want:?}");
    }
}

#[test]
fn every_relative_link_in_the_docs_reaches_its_file_and_heading() {
    let mut checked = 0;
    for doc in markdown_docs() {
        let text = fs::read_to_string(&doc).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, frag) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(file)
            };
            assert!(
                target.exists(),
                "{}: the link {link:?} leads to {}, which does not exist",
                doc.display(),
                target.display()
            );
            if !frag.is_empty() {
                let heads = anchors(&fs::read_to_string(&target).unwrap());
                assert!(
                    heads.contains(frag),
                    "{}: the link {link:?}: {} has no heading #{frag} (it has {heads:?})",
                    doc.display(),
                    target.display()
                );
            }
            checked += 1;
        }
    }
    println!("figures: {checked} relative links checked");
    assert!(
        checked >= 20,
        "only {checked} links found: is the link parser broken?"
    );
}

/// A path to one of our documents named in a file: `docs/NAME.md`,
/// `README.md`, `CONTRIBUTING.md`, or a bare `DESIGN.md`-like name.
fn cited_documents(text: &str) -> Vec<String> {
    let mut v = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(".md") {
        let end = from + i + 3;
        let mut start = from + i;
        while start > 0 {
            let c = bytes[start - 1] as char;
            if c.is_ascii_alphanumeric() || "-_/.".contains(c) {
                start -= 1;
            } else {
                break;
            }
        }
        let after = bytes.get(end).map(|&b| b as char).unwrap_or(' ');
        if !after.is_ascii_alphanumeric() && start < from + i {
            v.push(text[start..end].to_string());
        }
        from = end;
    }
    v
}

#[test]
fn every_document_a_comment_or_a_doc_cites_exists() {
    let mut cited = 0;
    let mut missing = Vec::new();
    for f in repo_files() {
        // This file names missing documents on purpose.
        if f.ends_with("tests/docs.rs") {
            continue;
        }
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        for doc in cited_documents(&text) {
            // Files that the code writes or reads at run time, not ours.
            if ["NOTES.md"].contains(&doc.as_str()) {
                continue;
            }
            let doc = doc.trim_start_matches("./").trim_start_matches("../");
            // Where the package installs it, from the repository root, or
            // relative to the citing file.
            let in_tree = doc
                .trim_start_matches('/')
                .strip_prefix("usr/share/doc/jarvis-supervisor/")
                .unwrap_or(doc);
            let found = repo().join(in_tree).exists() || f.parent().unwrap().join(doc).exists();
            if !found {
                missing.push(format!("{}: {doc}", f.strip_prefix(repo()).unwrap().display()));
            }
            cited += 1;
        }
    }
    println!("figures: {cited} citations of a .md document checked");
    assert!(
        missing.is_empty(),
        "cited documents that do not exist:\n{}",
        missing.join("\n")
    );
    assert!(cited >= 10, "only {cited} citations found: is the scan broken?");
}

#[test]
fn the_rules_comments_cite_by_heading_are_headings_of_the_cited_document() {
    // `(docs/design.md, "Who owns a file")`: the heading must be there.
    let mut checked = 0;
    for f in repo_files() {
        if f.ends_with("tests/docs.rs") {
            continue;
        }
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        // Comments wrap lines: join them to find a citation cut in two.
        let joined: String = text
            .lines()
            .map(|l| l.trim_start().trim_start_matches(['/', '#', '!', '*']).trim())
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = joined.as_str();
        while let Some(i) = rest.find("docs/") {
            rest = &rest[i..];
            let Some(md) = rest.find(".md") else { break };
            let doc = &rest[..md + 3];
            let after = &rest[md + 3..];
            rest = after;
            if doc.contains(' ') {
                continue;
            }
            let Some(quoted) = after.strip_prefix(", \"") else {
                continue;
            };
            let Some(end) = quoted.find('"') else { continue };
            let heading = &quoted[..end];
            let target = fs::read_to_string(repo().join(doc))
                .unwrap_or_else(|_| panic!("{}: cites {doc}, which does not exist", f.display()));
            assert!(
                anchors(&target).contains(&anchor(heading)),
                "{}: cites {doc}, \"{heading}\", which is no heading there",
                f.display()
            );
            checked += 1;
        }
    }
    println!("figures: {checked} citations of a heading checked");
    assert!(
        checked >= 5,
        "only {checked} heading citations found: is the scan broken?"
    );
}
