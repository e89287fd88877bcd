//! The pure parts of a deploy: rsync's arguments, shell quoting, deploy
//! ids, history pruning, rsync's itemized changes and the dry-run plan.

use std::time::{SystemTime, UNIX_EPOCH};

/// Where each host keeps its deploy history, one directory per deploy:
/// `meta.json`, `manifest.tsv` (what it shipped), `before.tsv` (the
/// manifest it replaced), `code/` (a copy of the shipped files, to roll
/// back to) and `private/` (the .env it replaced, when it sent one).
pub const DEPLOYS: &str = "/var/lib/jarvis-supervisor/deploys";
/// The id of the deploy whose manifest the live code matches.
pub const CURRENT: &str = "/var/lib/jarvis-supervisor/deploys/current";
/// Every package a deploy shipped, kept to roll back to.
pub const PACKAGES: &str = "/var/lib/jarvis-supervisor/packages";
/// The wheelhouses deploy --wheelhouse shipped, by content digest: root's,
/// readable by the service user, who builds from them.
pub const WHEELHOUSES: &str = "/var/lib/jarvis-supervisor/wheelhouses";
/// Held (flock) for the whole remote session of a deploy.
pub const LOCK: &str = "/run/jarvis-deploy.lock";
/// Held by each step that changes the host (swap, install, restart), so
/// that a step whose client was cut off finishes before the next begins.
pub const STEP_LOCK: &str = "/run/jarvis-deploy-step.lock";

/// Quotes `s` for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// rsync's `-e`: the ssh command line, each word quoted for rsync's own
/// splitting.
pub fn rsync_shell(ssh_args: &[String]) -> String {
    std::iter::once("ssh".to_string())
        .chain(ssh_args.iter().map(|a| sh_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// rsync's `[user@]host:path`; an IPv6 address goes in brackets.
pub fn rsync_dest(destination: &str, path: &str) -> String {
    let (user, host) = match destination.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), destination),
    };
    if host.contains(':') {
        format!("{user}[{host}]:{path}")
    } else {
        format!("{user}{host}:{path}")
    }
}

/// `rsync` arguments that copy the files listed in `files_from` (a local
/// file, one path a line) from `local` into the deploy's store on the host.
/// Unchanged files are hard-linked from the previous store (`link_dest`),
/// so only changes cross the wire.
pub fn push_args(
    local: &str,
    remote_dest: &str,
    shell: &str,
    files_from: &str,
    link_dest: Option<&str>,
    bwlimit: Option<u32>,
) -> Vec<String> {
    let mut a: Vec<String> = ["-lpt", "--checksum", "--chmod=o-rwx"].map(String::from).into();
    a.push(format!("--files-from={files_from}"));
    if let Some(d) = link_dest {
        a.push(format!("--link-dest={d}"));
    }
    if let Some(kb) = bwlimit {
        a.push(format!("--bwlimit={kb}"));
    }
    a.extend(["-e".into(), shell.to_string()]);
    a.push(format!("{}/", local.trim_end_matches('/')));
    a.push(format!("{}/", remote_dest.trim_end_matches('/')));
    a
}

/// A deploy id: the UTC time, `YYYYmmddTHHMMSSZ`, sortable as text.
pub fn deploy_id(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Whether `id` looks like one of ours (it becomes a path on the host).
pub fn valid_id(id: &str) -> bool {
    let (ts, suffix) = id.split_once('-').unwrap_or((id, "0"));
    ts.len() == 16
        && ts.as_bytes()[8] == b'T'
        && ts.ends_with('Z')
        && ts[..8]
            .bytes()
            .chain(ts[9..15].bytes())
            .all(|b| b.is_ascii_digit())
        && !suffix.is_empty()
        && suffix.bytes().all(|b| b.is_ascii_digit())
}

/// Sort key: the time, then the same-second counter as a number.
pub fn order(id: &str) -> (String, u64) {
    match id.split_once('-') {
        Some((t, n)) => (t.to_string(), n.parse().unwrap_or(0)),
        None => (id.to_string(), 0),
    }
}

/// The ids to delete so that only the newest `keep` remain (never fewer
/// than one).
pub fn prune(ids: &[String], keep: usize) -> Vec<String> {
    let mut sorted: Vec<&String> = ids.iter().filter(|i| valid_id(i)).collect();
    sorted.sort_by_key(|i| order(i));
    let keep = keep.max(1);
    let n = sorted.len().saturating_sub(keep);
    sorted[..n].iter().map(|s| s.to_string()).collect()
}

/// What a dry run prints for one host.
pub struct DryPlan<'a> {
    pub host: &'a str,
    pub code_dir: &'a str,
    /// The host worker's plan (deploy_host.py `plan`).
    pub plan: &'a serde_json::Value,
    pub installed: Option<&'a str>,
    pub shipped: Option<&'a str>,
    pub env: Option<&'a EnvSummary>,
    /// Why the environment would be rebuilt on this host, if it would.
    pub environment: Option<&'a str>,
}

/// A `.env` as the deploy may show it: names only, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSummary {
    pub names: Vec<String>,
}

impl EnvSummary {
    /// The variable names of a .env text, read with systemd's rules (a
    /// multi-line quoted value is one value, not lines to name); values
    /// are dropped here.
    pub fn of(text: &str) -> EnvSummary {
        let names = jarvis_model::envfile::parse(text.as_bytes())
            .vars
            .into_iter()
            .map(|v| v.key)
            .collect();
        EnvSummary { names }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} variables ({}), values not shown",
            self.names.len(),
            self.names
                .iter()
                .map(|n| format!("{n}=***"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }
}

/// The paths of one list of a worker's plan.
pub fn plan_list<'a>(plan: &'a serde_json::Value, key: &str) -> Vec<&'a str> {
    plan[key]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default()
}

/// The conflicts of a worker's plan: (path, why).
pub fn conflicts(plan: &serde_json::Value) -> Vec<(String, String)> {
    plan["conflicts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["path"].as_str().unwrap_or("?").to_string(),
                        c["why"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One line per conflict, with the way out.
pub fn conflict_lines(plan: &serde_json::Value) -> Vec<String> {
    conflicts(plan)
        .into_iter()
        .map(|(p, why)| {
            format!(
                "{p}: {why}; move it away, or take it over with --take-over {}",
                sh_quote(&p)
            )
        })
        .collect()
}

impl DryPlan<'_> {
    /// The plan for a terminal: every string from the host defused.
    pub fn render(&self) -> String {
        use crate::output::printable;
        let p = self.plan;
        let n = |k: &str| plan_list(p, k).len();
        let mut out = format!(
            "{}: would deploy to {}\n",
            printable(self.host),
            printable(self.code_dir)
        );
        let (add, replace, delete) = (
            plan_list(p, "put"),
            plan_list(p, "replace"),
            plan_list(p, "delete"),
        );
        let taken = plan_list(p, "taken_over");
        if add.is_empty() && replace.is_empty() && delete.is_empty() && taken.is_empty() {
            out.push_str("  code: no change\n");
        } else {
            out.push_str(&format!(
                "  code: {} change(s): {} new, {} replaced, {} removed\n",
                add.len() + replace.len() + delete.len() + taken.len(),
                add.len(),
                replace.len(),
                delete.len()
            ));
            for (mark, list) in [("+", &add), ("~", &replace), ("-", &delete)] {
                for path in list.iter() {
                    out.push_str(&format!("    {mark} {}\n", printable(path)));
                }
            }
            for path in &taken {
                out.push_str(&format!(
                    "    ! {} (taken over; the file there now is kept beside it)\n",
                    printable(path)
                ));
            }
        }
        if n("adopted") > 0 {
            out.push_str(&format!(
                "  code: {} file(s) already there with the shipped content: adopted\n",
                n("adopted")
            ));
        }
        out.push_str(&format!(
            "  kept: {} unshipped file(s) (the bot's state, the operator's files): never touched\n",
            unshipped(p)
        ));
        if n("kept_changed") > 0 {
            out.push_str(&format!(
                "  kept: {} file(s) an earlier deploy shipped but that changed on the host: left as they are\n",
                n("kept_changed")
            ));
        }
        for line in conflict_lines(p) {
            out.push_str(&format!("  CONFLICT {}\n", printable(&line)));
        }
        match self.environment {
            Some(why) => out.push_str(&format!(
                "  environment: would be rebuilt ({}), beside the one in use, and switched with the code\n",
                printable(why)
            )),
            None => out.push_str("  environment: no change\n"),
        }
        if !conflicts(p).is_empty() {
            out.push_str("  the deploy would refuse this host and change nothing\n");
        }
        let installed = self.installed.map(printable);
        let pkg = match (installed.as_deref(), self.shipped) {
            (_, None) => "none given".to_string(),
            (Some(a), Some(b)) if a == b => format!("{a} installed, same as given: not reinstalled"),
            (a, Some(b)) => format!("{} -> {b}: would install", a.unwrap_or("not installed")),
        };
        out.push_str(&format!("  package: {pkg}\n"));
        out.push_str(&format!(
            "  .env: {}\n",
            self.env.map_or_else(
                || "not sent (no --env)".to_string(),
                |e| format!("would send {}", e.describe())
            )
        ));
        out
    }
}

/// The plan's count of unshipped files; "N+" when the host stopped counting.
pub fn unshipped(plan: &serde_json::Value) -> String {
    let n = plan["unshipped"].as_u64().unwrap_or(0);
    if plan["unshipped_at_least"].as_bool() == Some(true) {
        format!("{n}+")
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn push_sends_the_listed_files_into_the_store() {
        let a = push_args(
            "/src/Jarvis/",
            "root@a:/var/lib/jarvis-supervisor/deploys/X/code",
            "ssh -p 22",
            "/tmp/list",
            Some("/var/lib/jarvis-supervisor/deploys/W/code"),
            None,
        );
        assert!(a.contains(&"--files-from=/tmp/list".to_string()), "{a:?}");
        assert!(a.contains(&"--link-dest=/var/lib/jarvis-supervisor/deploys/W/code".to_string()));
        assert!(a.contains(&"--checksum".to_string()));
        assert!(
            !a.iter().any(|x| x.contains("delete")),
            "the store is new: nothing to delete"
        );
        assert_eq!(
            &a[a.len() - 4..],
            [
                "-e",
                "ssh -p 22",
                "/src/Jarvis/",
                "root@a:/var/lib/jarvis-supervisor/deploys/X/code/"
            ]
        );
        let b = push_args("/src", "/x", "ssh", "/l", None, Some(100));
        assert!(b.contains(&"--bwlimit=100".to_string()) && !b.iter().any(|x| x.starts_with("--link-dest")));
    }

    /// Issue 13, finding 5: a multi-line quoted key is one value; none of
    /// its lines is shown as a name.
    #[test]
    fn env_summary_names_only_real_keys() {
        let pem = "TOKEN=abc\nWALLET_KEY=\"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC=\nc2VjcmV0LWtleS1ib2R5\n-----END PRIVATE KEY-----\"\n";
        let e = EnvSummary::of(pem);
        assert_eq!(e.names, ["TOKEN", "WALLET_KEY"]);
        let d = e.describe();
        assert!(
            !d.contains("MIIE") && !d.contains("c2Vj") && !d.contains("abc"),
            "{d}"
        );
    }

    #[test]
    fn rsync_destinations() {
        assert_eq!(rsync_dest("root@vps1", "/x"), "root@vps1:/x");
        assert_eq!(rsync_dest("vps1", "/x"), "vps1:/x");
        assert_eq!(rsync_dest("me@::1", "/x"), "me@[::1]:/x");
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/home/jarvis/Jarvis"), "/home/jarvis/Jarvis");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(
            rsync_shell(&["-o".into(), "UserKnownHostsFile=/my dir/kh".into()]),
            "ssh -o 'UserKnownHostsFile=/my dir/kh'"
        );
    }

    #[test]
    fn ids_are_utc_timestamps_and_sort() {
        assert_eq!(deploy_id(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_999_999);
        assert_eq!(deploy_id(t), "20261130T005319Z");
        assert_eq!(
            deploy_id(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
        assert!(valid_id("20261202T184639Z") && valid_id("20261202T184639Z-12"));
        for bad in [
            "",
            "../../etc",
            "20261202T184639",
            "20261202X184639Z",
            "20261202T184639Z-",
            "2026120T184639Z",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn prune_keeps_the_newest() {
        let ids: Vec<String> = [
            "20260103T000000Z",
            "20260101T000000Z",
            "20260103T000000Z-2",
            "20260103T000000Z-10",
            "junk",
            "20260102T000000Z",
        ]
        .map(String::from)
        .into();
        assert_eq!(prune(&ids, 3), ["20260101T000000Z", "20260102T000000Z"]);
        assert_eq!(
            prune(&ids, 2),
            ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"]
        );
        assert_eq!(prune(&ids, 10), Vec::<String>::new());
        assert_eq!(prune(&ids, 0).len(), 4, "keeps at least one");
    }

    #[test]
    fn dry_run_plan_lists_changes_kept_files_conflicts_versions_and_masks_env() {
        let env = EnvSummary::of("# c\nTELEGRAM_BOT_TOKEN=123:secret\nADMIN=42\n\n");
        let plan = serde_json::json!({
            "put": ["bots/new.py"], "replace": ["bots/supervisor.py"], "delete": ["old.py"],
            "adopted": [], "unshipped": 7, "kept_changed": [],
            "conflicts": [{"path": "bots/x y/key.json", "why": "a file that no deploy shipped is there"}],
        });
        let p = DryPlan {
            host: "root@a",
            code_dir: "/home/jarvis/Jarvis",
            plan: &plan,
            installed: Some("0.1.0-1"),
            shipped: Some("99.0.0-1"),
            env: Some(&env),
            environment: Some("requirements.txt changed"),
        };
        let text = p.render();
        assert!(
            text.contains("code: 3 change(s): 1 new, 1 replaced, 1 removed"),
            "{text}"
        );
        assert!(
            text.contains("+ bots/new.py")
                && text.contains("~ bots/supervisor.py")
                && text.contains("- old.py")
        );
        assert!(text.contains("kept: 7 unshipped file(s)"), "{text}");
        assert!(
            text.contains("CONFLICT bots/x y/key.json: a file that no deploy shipped is there; move it away, or take it over with --take-over 'bots/x y/key.json'"),
            "{text}"
        );
        assert!(text.contains("would refuse"), "{text}");
        assert!(
            text.contains("environment: would be rebuilt (requirements.txt changed)"),
            "{text}"
        );
        assert!(text.contains("0.1.0-1 -> 99.0.0-1: would install"), "{text}");
        assert!(
            text.contains("TELEGRAM_BOT_TOKEN=***") && text.contains("ADMIN=***"),
            "{text}"
        );
        assert!(!text.contains("secret") && !text.contains("42"), "{text}");
        let empty = serde_json::json!({"unshipped": 0});
        let same = DryPlan {
            plan: &empty,
            installed: Some("1"),
            shipped: Some("1"),
            env: None,
            environment: None,
            ..p
        };
        let t = same.render();
        assert!(
            t.contains("no change")
                && t.contains("not reinstalled")
                && t.contains("not sent")
                && t.contains("environment: no change")
                && !t.contains("CONFLICT"),
            "{t}"
        );
    }
}
