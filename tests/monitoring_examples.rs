//! The monitoring examples the package ships (monitoring/): the
//! sudoers drop-in, the Icinga 2 CheckCommand and the Nagios command, read
//! by their grammar's rules, and held to each other: the command a monitor
//! runs is one the sudoers file allows, word for word, and one jarvisctl
//! accepts. The sudoers file goes through the real visudo and sudo in the
//! booted test (tests/e2e/monitoring.rs).

use std::path::Path;
use std::process::Command;

fn example(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("monitoring")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The sudoers lines without comments, continuation lines joined.
fn sudoers_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in text.lines() {
        let l = l.trim();
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        match l.strip_suffix('\\') {
            Some(part) => cur.push_str(part),
            None => {
                cur.push_str(l);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    assert!(cur.is_empty(), "a continuation line ends the file");
    out
}

/// An alias definition: `KIND NAME = a, b`.
fn alias(lines: &[String], kind: &str, name: &str) -> Vec<String> {
    let line = lines
        .iter()
        .find(|l| l.starts_with(&format!("{kind} {name} =")))
        .unwrap_or_else(|| panic!("no {kind} {name} in {lines:?}"));
    line.split_once('=')
        .unwrap()
        .1
        .split(',')
        .map(|s| s.trim().to_string())
        .collect()
}

/// The commands (argv) the sudoers example lets the monitors run as root.
fn allowed() -> Vec<Vec<String>> {
    let lines = sudoers_lines(&example("sudoers.d-jarvis-status"));
    // Alias names: upper case, digits and underscores, as sudoers wants.
    for l in &lines {
        if let Some(rest) = l
            .strip_prefix("User_Alias ")
            .or_else(|| l.strip_prefix("Cmnd_Alias "))
        {
            let name = rest.split_whitespace().next().unwrap();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                    && name.as_bytes()[0].is_ascii_uppercase(),
                "bad alias name {name}"
            );
        }
    }
    let users = alias(&lines, "User_Alias", "JARVIS_MONITORS");
    assert_eq!(users, ["nagios", "icinga"], "the agents' users");
    let rule = lines
        .iter()
        .find(|l| l.starts_with("JARVIS_MONITORS "))
        .expect("a rule for JARVIS_MONITORS");
    assert_eq!(
        rule.split_whitespace().collect::<Vec<_>>(),
        [
            "JARVIS_MONITORS",
            "ALL",
            "=",
            "(root)",
            "NOPASSWD:",
            "JARVIS_STATUS"
        ],
        "exactly: as root, no password, only the status commands"
    );
    let cmds: Vec<Vec<String>> = alias(&lines, "Cmnd_Alias", "JARVIS_STATUS")
        .iter()
        .map(|c| c.split_whitespace().map(String::from).collect())
        .collect();
    for c in &cmds {
        // A fully qualified path and fixed arguments: no wildcard, no
        // escape that would widen it.
        assert_eq!(c[0], "/usr/bin/jarvisctl", "{c:?}");
        assert!(
            c.iter()
                .all(|w| !w.contains(['*', '?', '[', '\\', '"', ':', '='])),
            "{c:?}"
        );
    }
    cmds
}

/// The argv after `/usr/bin/sudo -n`, which must be an allowed command.
fn through_sudo(argv: &[String], allowed: &[Vec<String>], what: &str) {
    assert!(
        argv.len() > 2 && argv[0] == "/usr/bin/sudo" && argv[1] == "-n",
        "{what}: not run through sudo -n: {argv:?}"
    );
    assert!(
        allowed.iter().any(|a| a[..] == argv[2..]),
        "{what}: {argv:?} is not one of the sudoers commands {allowed:?}"
    );
}

#[test]
fn the_sudoers_example_allows_exactly_the_status_commands_and_jarvisctl_takes_them() {
    let allowed = allowed();
    assert!(allowed.iter().any(|a| a == &["/usr/bin/jarvisctl", "status"]));
    for argv in &allowed {
        // The same arguments, parsed by this jarvisctl (--help after them:
        // a parse error would say so; nothing is checked on this host).
        let out = Command::new(env!("CARGO_BIN_EXE_jarvisctl"))
            .args(&argv[1..])
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Icinga 2's config DSL, as far as the example uses it: `/* */` and `//`
/// and `#` comments, strings, brackets; tokens out.
fn icinga_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = text.chars().peekable();
    let mut depth: Vec<char> = Vec::new();
    while let Some(c) = it.next() {
        match c {
            '/' if it.peek() == Some(&'*') => {
                it.next();
                let mut prev = ' ';
                loop {
                    let c = it.next().expect("an unclosed /* comment");
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '/' if it.peek() == Some(&'/') => while it.next().is_some_and(|c| c != '\n') {},
            '#' => while it.next().is_some_and(|c| c != '\n') {},
            '"' => {
                let mut s = String::from('"');
                loop {
                    match it.next().expect("an unclosed string") {
                        '"' => break,
                        '\\' => s.push(it.next().expect("an escape at the end")),
                        '\n' => panic!("a newline in a string"),
                        c => s.push(c),
                    }
                }
                out.push(s);
            }
            '{' | '[' | '(' => {
                depth.push(c);
                out.push(c.to_string());
            }
            '}' | ']' | ')' => {
                let open = depth.pop().unwrap_or_else(|| panic!("an unopened {c}"));
                let want = match c {
                    '}' => '{',
                    ']' => '[',
                    _ => '(',
                };
                assert_eq!(open, want, "{open} closed by {c}");
                out.push(c.to_string());
            }
            ',' | '=' => out.push(c.to_string()),
            c if c.is_whitespace() => {}
            c => {
                let mut w = String::from(c);
                while let Some(&n) = it.peek() {
                    if n.is_whitespace() || "{}[](),=\"".contains(n) {
                        break;
                    }
                    w.push(n);
                    it.next();
                }
                out.push(w);
            }
        }
    }
    assert!(depth.is_empty(), "unclosed {depth:?}");
    out
}

#[test]
fn the_icinga2_checkcommand_parses_and_runs_an_allowed_command() {
    let t = icinga_tokens(&example("jarvis-supervisor.icinga2.conf"));
    assert_eq!(
        t[..4],
        ["object", "CheckCommand", "\"jarvis-supervisor", "{"],
        "{t:?}"
    );
    assert_eq!(t.last().map(String::as_str), Some("}"), "one object: {t:?}");
    // Its attributes: NAME = VALUE, each value a string array or a duration.
    let body = &t[4..t.len() - 1];
    let mut i = 0;
    let mut command = None;
    while i < body.len() {
        let name = &body[i];
        assert_eq!(
            body.get(i + 1).map(String::as_str),
            Some("="),
            "after {name}: {body:?}"
        );
        match name.as_str() {
            "command" => {
                assert_eq!(body[i + 2], "[");
                let end = i + 2 + body[i + 2..].iter().position(|x| x == "]").expect("]");
                let items: Vec<String> = body[i + 3..end]
                    .iter()
                    .filter(|x| *x != ",")
                    .map(|x| x.strip_prefix('"').expect("a string in command").to_string())
                    .collect();
                command = Some(items);
                i = end + 1;
            }
            "timeout" => {
                let v = &body[i + 2];
                assert!(
                    v.strip_suffix('s')
                        .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n > 0 && n <= 60)),
                    "timeout {v}: a duration in seconds, within Icinga's 60 s default"
                );
                i += 3;
            }
            other => panic!("unexpected attribute {other}"),
        }
    }
    through_sudo(&command.expect("a command attribute"), &allowed(), "Icinga 2");
}

#[test]
fn the_nagios_command_definition_parses_and_runs_an_allowed_command() {
    let text = example("jarvis-supervisor.nagios.cfg");
    let mut defs = Vec::new();
    let mut cur: Option<Vec<(String, String)>> = None;
    let mut nrpe = None;
    for l in text.lines() {
        let l = l.trim();
        if let Some(c) = l.strip_prefix('#') {
            if let Some(cmd) = c
                .trim()
                .strip_prefix("nrpe.cfg: command[check_jarvis_supervisor]=")
            {
                nrpe = Some(cmd.to_string());
            }
            continue;
        }
        if l.is_empty() {
            continue;
        }
        match (&mut cur, l) {
            (None, "define command {") => cur = Some(Vec::new()),
            (Some(_), "}") => defs.push(cur.take().unwrap()),
            (Some(d), l) => {
                let (k, v) = l
                    .split_once(char::is_whitespace)
                    .unwrap_or_else(|| panic!("no value: {l}"));
                d.push((k.to_string(), v.trim().to_string()));
            }
            (None, l) => panic!("outside a definition: {l}"),
        }
    }
    assert!(cur.is_none(), "an unclosed definition");
    assert_eq!(defs.len(), 1, "{defs:?}");
    let get = |k: &str| {
        defs[0]
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k}"))
    };
    assert_eq!(defs[0].len(), 2, "command_name and command_line only: {defs:?}");
    assert_eq!(get("command_name"), "check_jarvis_supervisor");
    let line = get("command_line");
    // Nagios macros ($...$) and shell quoting would change the argv.
    assert!(!line.contains(['$', '\'', '"', ';', '|']), "{line}");
    let argv: Vec<String> = line.split_whitespace().map(String::from).collect();
    through_sudo(&argv, &allowed(), "Nagios");
    assert_eq!(
        nrpe.as_deref(),
        Some(line.as_str()),
        "the NRPE line runs the same command"
    );
}
