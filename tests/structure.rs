//! Issue 25: the layout the code keeps. A command (src/cmd/NAME.rs and
//! everything under src/cmd/NAME/) parses its arguments and calls the
//! modules beside it in src/; it may use its own pieces, never another
//! command's. What two commands share lives in src/ under the name of what
//! it is (paths, provisioning, the requirements reader...), so that a
//! reader finds it there and a second caller needs no command to reach it.
//!
//! The check reads the source as tokens (comments and strings do not count)
//! and resolves every `crate::`, `super::` and `self::` path, in `use` trees
//! and in expressions, against the module it is written in, inline `mod`
//! blocks included; and every `include_str!`-like file a command embeds.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// `::`
    Sep,
    Sym(char),
}

/// Tokens with their line; comments dropped, string literals kept whole.
fn lex(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if ch == '"'
            || ((ch == 'r' || ch == 'b') && (at(i + 1) == '"' || (at(i + 1) == '#' && raw_start(&c, i + 1))))
            || (ch == 'b' && at(i + 1) == 'r' && (at(i + 2) == '"' || at(i + 2) == '#'))
        {
            // "..", b"..", r"..", r#".."#, br#".."#
            let start_line = line;
            let mut raw = false;
            while c[i] != '"' && c[i] != '#' {
                raw |= c[i] == 'r';
                i += 1;
            }
            let mut hashes = 0;
            while c[i] == '#' {
                hashes += 1;
                i += 1;
            }
            raw |= hashes > 0;
            i += 1; // the opening quote
            let mut text = String::new();
            while let Some(&d) = c.get(i) {
                if d == '\n' {
                    line += 1;
                }
                if !raw && d == '\\' {
                    text.push(at(i + 1));
                    line += usize::from(at(i + 1) == '\n');
                    i += 2;
                    continue;
                }
                if d == '"' && (0..hashes).all(|k| at(i + 1 + k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                text.push(d);
                i += 1;
            }
            out.push((Tok::Str(text), start_line));
        } else if ch == '\'' {
            // A char literal ('x', '\n', '{') or a lifetime ('a).
            if at(i + 1) == '\\' {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[s..i].iter().collect()), line));
        } else if ch.is_ascii_digit() {
            while i < c.len()
                && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.' && at(i + 1).is_ascii_digit())
            {
                i += 1;
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push((Tok::Sep, line));
            i += 2;
        } else {
            out.push((Tok::Sym(ch), line));
            i += 1;
        }
    }
    out
}

/// `r#"` opens a raw string; `r#ident` is a raw identifier.
fn raw_start(c: &[char], mut i: usize) -> bool {
    while c.get(i) == Some(&'#') {
        i += 1;
    }
    c.get(i) == Some(&'"')
}

/// One reach of a command into another's module.
#[derive(Debug, PartialEq)]
struct Reach {
    line: usize,
    /// The path as written (`super::check::X`) or the embedded file.
    written: String,
    /// The other command.
    into: String,
}

/// Paths a `use` tree names, each with the line of its first segment;
/// `i` stands on the tree's first token and ends after it.
fn use_tree(t: &[(Tok, usize)], i: &mut usize, prefix: &[String], out: &mut Vec<(Vec<String>, usize)>) {
    let mut path = prefix.to_vec();
    let mut first_line = t.get(*i).map_or(0, |x| x.1);
    loop {
        match t.get(*i).map(|x| &x.0) {
            Some(Tok::Ident(s)) if s != "as" => {
                if path.len() == prefix.len() {
                    first_line = t[*i].1;
                }
                path.push(s.clone());
                *i += 1;
            }
            Some(Tok::Sep) => *i += 1,
            Some(Tok::Sym('*')) => {
                path.push("*".into());
                *i += 1;
            }
            Some(Tok::Sym('{')) => {
                *i += 1;
                loop {
                    match t.get(*i).map(|x| &x.0) {
                        Some(Tok::Sym('}')) => {
                            *i += 1;
                            return;
                        }
                        Some(Tok::Sym(',')) => *i += 1,
                        None => return,
                        _ => use_tree(t, i, &path, out),
                    }
                }
            }
            _ => break,
        }
    }
    // `as NAME` renames what the path names; the path stays.
    if matches!(t.get(*i).map(|x| &x.0), Some(Tok::Ident(s)) if s == "as") {
        *i += 2;
    }
    out.push((path, first_line));
}

/// The module a path names, absolute from the crate root, or None for a
/// path that does not start at `crate`, `super` or `self`.
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut segs = path.iter().peekable();
    let mut abs: Vec<String> = match segs.peek().map(|s| s.as_str()) {
        Some("crate") => {
            segs.next();
            Vec::new()
        }
        Some("self") => {
            segs.next();
            module.to_vec()
        }
        // Each leading `super` below goes up one.
        Some("super") => module.to_vec(),
        _ => return None,
    };
    while segs.peek().is_some_and(|s| *s == "super") {
        segs.next();
        abs.pop()?;
    }
    abs.extend(segs.cloned());
    Some(abs)
}

/// The reaches into other commands of one file of command `own`, whose
/// module path is `module` (`["cmd", "status", "fallback"]`) and which
/// lives in `dir` relative to src/ (for the files it embeds).
fn reaches(src: &str, own: &str, module: &[String], dir: &Path, commands: &BTreeSet<String>) -> Vec<Reach> {
    let t = lex(src);
    let mut out = Vec::new();
    let other = |abs: &[String]| -> Option<String> {
        if abs.first().map(String::as_str) != Some("cmd") {
            return None;
        }
        match abs.get(1) {
            Some(c) if commands.contains(c) && c != own => Some(c.clone()),
            // `use super::*` from a command's file: every command in scope.
            Some(s) if s == "*" => Some("*".into()),
            _ => None,
        }
    };
    // Inline `mod name {` blocks: (name, brace depth inside it).
    let (mut mods, mut depth) = (Vec::<(String, usize)>::new(), 0usize);
    let mut i = 0;
    while i < t.len() {
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(mods.iter().map(|m| m.0.clone()))
            .collect();
        let prev_sep = i > 0 && t[i - 1].0 == Tok::Sep;
        match &t[i].0 {
            Tok::Sym('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Sym('}') => {
                if mods.last().is_some_and(|m| m.1 == depth) {
                    mods.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Tok::Ident(k) if k == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Sym('{'), _))) = (t.get(i + 1), t.get(i + 2))
                {
                    depth += 1;
                    mods.push((name.clone(), depth));
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(k) if k == "use" && !prev_sep => {
                i += 1;
                let mut paths = Vec::new();
                use_tree(&t, &mut i, &[], &mut paths);
                for (p, line) in paths {
                    if let Some(into) = resolve(&here, &p).as_deref().and_then(other) {
                        out.push(Reach {
                            line,
                            written: p.join("::"),
                            into,
                        });
                    }
                }
            }
            Tok::Ident(k) if (k == "crate" || k == "super" || k == "self") && !prev_sep => {
                let line = t[i].1;
                let mut p = vec![k.clone()];
                i += 1;
                while let (Some((Tok::Sep, _)), Some((Tok::Ident(s), _))) = (t.get(i), t.get(i + 1)) {
                    p.push(s.clone());
                    i += 2;
                }
                if let Some(into) = resolve(&here, &p).as_deref().and_then(other) {
                    out.push(Reach {
                        line,
                        written: p.join("::"),
                        into,
                    });
                }
            }
            Tok::Ident(k) if k.starts_with("include") => {
                // include_str!("check/requirements.py"): relative to this file.
                if let (Some((Tok::Sym('!'), _)), Some((Tok::Sym('('), _)), Some((Tok::Str(f), line))) =
                    (t.get(i + 1), t.get(i + 2), t.get(i + 3))
                {
                    let target = normalize(&dir.join(f));
                    let parts: Vec<String> = target
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    if parts.len() >= 3 && parts[0] == "cmd" && parts[1] != own {
                        out.push(Reach {
                            line: *line,
                            written: format!("{k}!(\"{f}\")"),
                            into: parts[1].clone(),
                        });
                    }
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The commands: src/cmd/NAME.rs and src/cmd/NAME/.
fn commands() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for e in fs::read_dir(src().join("cmd")).expect("src/cmd").flatten() {
        let p = e.path();
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        if p.is_dir() || (p.extension().is_some_and(|x| x == "rs") && stem != "mod") {
            names.insert(stem);
        }
    }
    names
}

/// Every .rs file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
    {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_command_imports_another_command() {
    let commands = commands();
    for c in ["check", "status", "deploy", "setup", "configure"] {
        assert!(
            commands.contains(c),
            "src/cmd/ has no command {c}: this test no longer reads the layout"
        );
    }
    let mut files = Vec::new();
    rust_files(&src().join("cmd"), &mut files);
    files.sort();
    let mut found = Vec::new();
    let mut read = 0;
    for file in &files {
        let rel = file.strip_prefix(src()).unwrap();
        // cmd/NAME.rs, cmd/NAME/x.rs, cmd/NAME/x/mod.rs; cmd/mod.rs dispatches.
        let mut module: Vec<String> = rel
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        let Some(own) = module.get(1).cloned() else {
            continue;
        };
        let text = fs::read_to_string(file).unwrap();
        read += 1;
        for r in reaches(&text, &own, &module, rel.parent().unwrap(), &commands) {
            found.push(format!(
                "src/{}:{}: `{}` reaches from command `{own}` into {}; \
                 fix: move what both need into a module beside them in src/, named for what it is, and call it from both",
                rel.display(),
                r.line,
                r.written,
                if r.into == "*" { "every command (a glob of crate::cmd)".to_string() } else { format!("command `{}`", r.into) },
            ));
        }
    }
    // Every command has its file: fewer read means the reader lost its way
    // (domains move out of src/cmd/, so no fixed count).
    assert!(
        read >= commands.len(),
        "read only {read} command files under src/cmd/ for {} commands",
        commands.len()
    );
    assert!(
        found.is_empty(),
        "{} import(s) of another command's module:\n{}",
        found.len(),
        found.join("\n")
    );
}

/// The reader above, on each form an import can take: a check that finds
/// nothing must be because there is nothing, not because it misread.
#[test]
fn the_import_check_sees_every_form_and_no_false_one() {
    let commands: BTreeSet<String> = ["check", "setup", "status", "logs", "run"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let module = |m: &str| m.split("::").map(String::from).collect::<Vec<_>>();
    let found = |src: &str, own: &str, m: &str, dir: &str| -> Vec<(usize, String)> {
        reaches(src, own, &module(m), Path::new(dir), &commands)
            .into_iter()
            .map(|r| (r.line, r.into))
            .collect()
    };
    let src = r#"use crate::cmd::check::X;
use crate::{paths::Paths, cmd::{setup, logs::y as z}};
fn f() { super::status::logs_dir(); crate::cmd::run::state_dir(); }
const P: &str = include_str!("check/requirements.py");
"#;
    assert_eq!(
        found(src, "venv", "cmd::venv", "cmd"),
        vec![
            (1, "check".into()),
            (2, "setup".into()),
            (2, "logs".into()),
            (3, "status".into()),
            (3, "run".into()),
            (4, "check".into())
        ]
    );
    // From a command's submodule: super is its own command, super::super
    // is crate::cmd.
    let sub =
        "use super::model::Status;\nuse super::super::run::state_dir;\nuse super::{render, super::check};";
    assert_eq!(
        found(sub, "status", "cmd::status::fallback", "cmd/status"),
        vec![(2, "run".into()), (3, "check".into())]
    );
    // Its own pieces, tests' `use super::*`, comments and strings: nothing.
    let own = r#"use super::model::Status;
use crate::cmd::status::render;
// super::check::X in a comment
/* crate::cmd::setup::run() */
const S: &str = "crate::cmd::check::X";
const C: char = '{';
mod tests { use super::*; fn t() { super::render::f(); } }
const H: &str = include_str!("status/x.py");
fn g<'a>(x: &'a str) {}
"#;
    assert_eq!(found(own, "status", "cmd::status", "cmd"), vec![]);
    // After an inline module closes, super is the file's again.
    let after = "mod tests { use super::*; }\nuse super::check::X;";
    assert_eq!(
        found(after, "status", "cmd::status", "cmd"),
        vec![(2, "check".into())]
    );
    // A glob of crate::cmd from a command's top level brings every command in.
    assert_eq!(
        found("use super::*;", "logs", "cmd::logs", "cmd"),
        vec![(1, "*".into())]
    );
}
