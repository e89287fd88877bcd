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
    // Each command's own file at least: the domains live beside them in src/.
    assert!(
        read >= commands.len() && read > 15,
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

/// The workspace's Rust sources: the product, the tests, xtask, examples.
fn workspace_rust_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "crates", "tests", "xtask", "examples"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "only {} Rust files found", files.len());
    files
}

/// `#[path = ...]` and `allow(dead_code)`, as tokens (comments and strings
/// do not count), with their lines.
fn path_includes_and_dead_code(src: &str) -> Vec<(usize, &'static str)> {
    let toks = lex(src);
    let mut found = Vec::new();
    for (i, (t, line)) in toks.iter().enumerate() {
        let ident = |k: usize, name: &str| matches!(toks.get(k), Some((Tok::Ident(n), _)) if n == name);
        let sym = |k: usize, s: char| matches!(toks.get(k), Some((Tok::Sym(c), _)) if *c == s);
        if *t == Tok::Sym('#') && (sym(i + 1, '[') || (sym(i + 1, '!') && sym(i + 2, '['))) {
            let at = if sym(i + 1, '[') { i + 2 } else { i + 3 };
            if ident(at, "path") && sym(at + 1, '=') {
                found.push((*line, "#[path]"));
            }
        }
        if ident(i, "allow") && sym(i + 1, '(') {
            let list = toks[i + 2..].iter().take_while(|(t, _)| *t != Tok::Sym(')'));
            if list.clone().any(|(t, _)| *t == Tok::Ident("dead_code".into())) {
                found.push((*line, "allow(dead_code)"));
            }
        }
    }
    found
}

/// Issue 25, acceptance 1: each module is compiled in one crate only. A
/// module used by two binaries lives in a library crate (crates/), not in a
/// `mod` list of each, and nothing is pulled in by `#[path]`; so no
/// `dead_code` allowance hides what one of its users leaves uncalled. The
/// one allowance kept is tests/common/mod.rs, cargo's way for integration
/// tests to share helpers: each test binary compiles it and uses a part.
#[test]
fn every_module_is_compiled_once_with_no_path_include_and_no_dead_code_allowance() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut offences = Vec::new();
    for file in workspace_rust_files() {
        let rel = file.strip_prefix(root).unwrap().to_path_buf();
        if rel == Path::new("tests/structure.rs") {
            continue; // its own test sources below name both forms
        }
        let text = fs::read_to_string(&file).unwrap();
        for (line, what) in path_includes_and_dead_code(&text) {
            if what == "allow(dead_code)" && rel == Path::new("tests/common/mod.rs") {
                continue;
            }
            offences.push(format!("{}:{line}: {what}", rel.display()));
        }
    }
    assert!(offences.is_empty(), "{}", offences.join("\n"));
}

#[test]
fn the_crate_boundary_check_sees_both_forms() {
    let src = "#[allow(dead_code)]\n#[path = \"../x.rs\"]\nmod x;\n#![allow(unused, dead_code)]\n// #[path = \"y\"]\nconst S: &str = \"#[path = z]\";\n";
    assert_eq!(
        path_includes_and_dead_code(src),
        vec![(1, "allow(dead_code)"), (2, "#[path]"), (4, "allow(dead_code)")],
    );
}

/// Lines of every .rs file under `dir`.
fn lines_under(dir: &Path) -> usize {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    files
        .iter()
        .map(|f| fs::read_to_string(f).unwrap().lines().count())
        .sum()
}

/// Issue 25, acceptance 3: commands are thin. A command parses its
/// arguments and calls a domain module (deploy, health, the engine,
/// provisioning); the behaviour lives under the domain's name, where a
/// reader looks for it and a second front end can call it. The command
/// modules (src/cmd/) hold under a fifth of the product's code (src/ and
/// the crates' src/; tests and xtask not counted).
#[test]
fn the_command_modules_hold_under_a_fifth_of_the_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let commands = lines_under(&root.join("src/cmd"));
    let mut product = lines_under(&root.join("src"));
    for e in fs::read_dir(root.join("crates")).unwrap().flatten() {
        let src = e.path().join("src");
        if src.is_dir() && e.file_name() != "test-support" {
            product += lines_under(&src);
        }
    }
    println!(
        "figures: src/cmd/ {commands} of {product} lines ({:.1} %)",
        commands as f64 * 100.0 / product as f64
    );
    assert!(
        commands * 5 < product,
        "src/cmd/ holds {commands} of {product} lines: move the behaviour into its domain module"
    );
}

/// `Result<T, String>` as tokens: `Result <` ... `, String >` at depth one.
fn string_errors(src: &str) -> Vec<usize> {
    let toks = lex(src);
    let mut found = Vec::new();
    for (i, (t, line)) in toks.iter().enumerate() {
        if *t != Tok::Ident("Result".into()) || toks.get(i + 1).map(|t| &t.0) != Some(&Tok::Sym('<')) {
            continue;
        }
        let mut depth = 0;
        for (k, (t, _)) in toks.iter().enumerate().skip(i + 1) {
            match t {
                Tok::Sym('<') => depth += 1,
                Tok::Sym('>') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Tok::Sym(',') if depth == 1 => {
                    let next = toks.get(k + 1).map(|t| &t.0);
                    let after = toks.get(k + 2).map(|t| &t.0);
                    if next == Some(&Tok::Ident("String".into())) && after == Some(&Tok::Sym('>')) {
                        found.push(*line);
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    found
}

/// Issue 25, acceptance 2: deploy and the engine are read in pieces a
/// newcomer can hold: no file over about 600 lines, errors typed (no
/// `Result<_, String>`), and deploy's arguments read in one function only
/// (the command's `settings`, which turns them into one validated value).
#[test]
fn deploy_and_the_engine_have_small_files_typed_errors_and_one_reader_of_the_arguments() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/deploy"), &mut files);
    rust_files(&root.join("crates/engine/src"), &mut files);
    files.push(root.join("src/cmd/deploy.rs"));
    assert!(files.len() > 15, "only {} files", files.len());
    let mut offences = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap();
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        let lines = text.lines().count();
        if lines > 600 {
            offences.push(format!("{rel}: {lines} lines"));
        }
        for line in string_errors(&text) {
            offences.push(format!("{rel}:{line}: Result<_, String>"));
        }
    }
    // The deploy arguments' type, by every file of the package that names it.
    let mut all = Vec::new();
    rust_files(&root.join("src"), &mut all);
    for f in &all {
        let toks = lex(&fs::read_to_string(f).unwrap());
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        let named: Vec<usize> = toks
            .iter()
            .filter(|(t, _)| *t == Tok::Ident("DeployArgs".into()))
            .map(|(_, l)| *l)
            .collect();
        let fns: Vec<&str> = toks
            .windows(2)
            .filter_map(|w| match (&w[0].0, &w[1].0) {
                (Tok::Ident(k), Tok::Ident(name)) if k == "fn" => Some(name.as_str()),
                _ => None,
            })
            .collect();
        if !named.is_empty() && rel != "src/cmd/deploy.rs" {
            offences.push(format!(
                "{rel}: names DeployArgs (lines {named:?}): only the command reads them"
            ));
        }
        if rel == "src/cmd/deploy.rs" {
            // `run` receives them and hands them straight to `settings`.
            let text = fs::read_to_string(f).unwrap();
            let reads = text.matches("args.").count();
            let in_settings = text
                .split("fn settings(")
                .nth(1)
                .map(|body| body.matches("args.").count())
                .unwrap_or(0);
            assert!(fns.contains(&"settings"), "src/cmd/deploy.rs has no fn settings");
            if reads != in_settings {
                offences.push(format!(
                    "src/cmd/deploy.rs: {} of its {reads} `args.` reads are outside settings()",
                    reads - in_settings
                ));
            }
        }
    }
    assert!(offences.is_empty(), "{}", offences.join("\n"));
}

#[test]
fn the_string_error_check_sees_it_at_any_depth_and_no_false_one() {
    let src = "fn a() -> Result<(), String> {}\nfn b() -> Result<Vec<String>, Error> {}\nfn c() -> io::Result<HashMap<String, String>> {}\nfn d() -> Result<Option<u8>, String> {}\n";
    assert_eq!(string_errors(src), vec![1, 4]);
}
