//! The pure parts of a deploy: rsync's arguments, shell quoting, deploy
//! ids, history pruning, rsync's itemized changes and the dry-run plan.

use std::time::{SystemTime, UNIX_EPOCH};

/// Never shipped, never deleted on the host: secrets, state, logs, caches,
/// and the state files that components of the bot write under `bots/state/`.
pub const EXCLUDES: &[&str] = &[
    ".git",
    "__pycache__",
    "*.pyc",
    ".env",
    "logs/",
    "data/",
    ".lifeos/",
    "/bots/state/",
];

/// Where each host keeps its deploy history, one directory per deploy.
pub const DEPLOYS: &str = "/var/lib/jarvis-supervisor/deploys";
/// Every package a deploy shipped, kept to roll back to.
pub const PACKAGES: &str = "/var/lib/jarvis-supervisor/packages";
/// Held (flock) for the whole remote session of a deploy.
pub const LOCK: &str = "/run/jarvis-deploy.lock";

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

/// The `--exclude` arguments.
pub fn exclude_args() -> Vec<String> {
    EXCLUDES.iter().map(|e| format!("--exclude={e}")).collect()
}

/// Transfer options shared by the push and the dry run: content checks (a
/// same-size file written in the same second is still sent), deletions,
/// and the excludes, which also protect those paths from deletion.
fn common(chown: bool) -> Vec<String> {
    let mut a: Vec<String> = ["-rlpt", "--checksum", "--delete"].map(String::from).into();
    if chown {
        // --chown only acts with -o and -g.
        a.push("-og".into());
        a.push("--chown=jarvis:jarvis".into());
        a.push("--chmod=o-rwx".into());
    }
    a.extend(exclude_args());
    a
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

/// `rsync` arguments that push `local` (a directory) to `dest` on the host.
pub fn push_args(
    local: &str,
    remote_dest: &str,
    shell: &str,
    chown: bool,
    bwlimit: Option<u32>,
) -> Vec<String> {
    let mut a = common(chown);
    if let Some(kb) = bwlimit {
        a.push(format!("--bwlimit={kb}"));
    }
    a.extend(["-e".into(), shell.to_string()]);
    a.push(format!("{}/", local.trim_end_matches('/')));
    a.push(format!("{}/", remote_dest.trim_end_matches('/')));
    a
}

/// `rsync` arguments for `--dry-run`: the itemized list against the live
/// code, nothing written.
pub fn dry_run_args(local: &str, remote_dest: &str, shell: &str, chown: bool) -> Vec<String> {
    let mut a = common(chown);
    a.extend(["-n", "--out-format=%i %n%L"].map(String::from));
    a.extend(["-e".into(), shell.to_string()]);
    a.push(format!("{}/", local.trim_end_matches('/')));
    a.push(format!("{}/", remote_dest.trim_end_matches('/')));
    a
}

/// The shell, on the host, that moves the staged code into place: every
/// file it replaces or deletes goes to `backup`, and the paths it adds are
/// listed in `added` (to delete them on rollback).
pub fn swap_script(staging: &str, code: &str, deploy_dir: &str) -> String {
    let excl = exclude_args()
        .iter()
        .map(|e| sh_quote(e))
        .collect::<Vec<_>>()
        .join(" ");
    let (s, c, d) = (sh_quote(staging), sh_quote(code), sh_quote(deploy_dir));
    format!(
        "set -e; mkdir -p {c}; \
         rsync -rlptog --checksum --delete {excl} --backup --backup-dir={d}/code-backup \
         --out-format='%i|%n' {s}/ {c}/ > {d}/changes.txt; \
         awk -F'|' '$1 ~ /\\+\\+\\+\\+\\+\\+\\+/ {{ sub(/^[^|]*\\|/, \"\"); print }}' {d}/changes.txt > {d}/added.list"
    )
}

/// The shell that undoes a swap: the backup back over the code, then the
/// added paths deleted, deepest first.
pub fn restore_script(code: &str, deploy_dir: &str) -> String {
    let (c, d) = (sh_quote(code), sh_quote(deploy_dir));
    format!(
        "set -e; if [ -d {d}/code-backup ]; then rsync -rlptog -I {d}/code-backup/ {c}/; fi; \
         if [ -f {d}/added.list ]; then tac {d}/added.list | while IFS= read -r f; do \
         [ -n \"$f\" ] && rm -rf -- {c}/\"$f\"; done; fi"
    )
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
    pub itemized: &'a str,
    pub installed: Option<&'a str>,
    pub shipped: Option<&'a str>,
    pub env: Option<&'a EnvSummary>,
}

/// A `.env` as the deploy may show it: names only, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSummary {
    pub names: Vec<String>,
}

impl EnvSummary {
    /// The variable names of a .env text; values are dropped here.
    pub fn of(text: &str) -> EnvSummary {
        let names = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.trim_start_matches("export ").split_once('='))
            .map(|(k, _)| k.trim().to_string())
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

impl DryPlan<'_> {
    pub fn render(&self) -> String {
        let mut out = format!("{}: would deploy to {}\n", self.host, self.code_dir);
        // A leading '.' is an attribute-only change (time, mode): counted,
        // not listed.
        let lines: Vec<&str> = self.itemized.lines().filter(|l| !l.trim().is_empty()).collect();
        let changes: Vec<&str> = lines.iter().copied().filter(|l| !l.starts_with('.')).collect();
        let touched = lines.len() - changes.len();
        if changes.is_empty() {
            out.push_str("  code: no change\n");
        } else {
            out.push_str(&format!("  code: {} change(s)\n", changes.len()));
            for l in changes {
                out.push_str(&format!("    {l}\n"));
            }
        }
        if touched > 0 {
            out.push_str(&format!(
                "  code: {touched} path(s) with only their time or mode to update\n"
            ));
        }
        let pkg = match (self.installed, self.shipped) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn push_excludes_secrets_state_and_caches() {
        let a = push_args(
            "/src/Jarvis/",
            "root@a:/home/jarvis/Jarvis.staging",
            "ssh -p 22",
            true,
            None,
        );
        for e in [
            ".git",
            "__pycache__",
            "*.pyc",
            ".env",
            "logs/",
            "data/",
            ".lifeos/",
        ] {
            assert!(a.contains(&format!("--exclude={e}")), "{e} not excluded: {a:?}");
        }
        assert!(a.contains(&"--delete".to_string()) && a.contains(&"--checksum".to_string()));
        assert!(!a.iter().any(|x| x.contains("delete-excluded")));
        assert_eq!(
            &a[a.len() - 4..],
            [
                "-e",
                "ssh -p 22",
                "/src/Jarvis/",
                "root@a:/home/jarvis/Jarvis.staging/"
            ]
        );
        assert!(a.contains(&"--chown=jarvis:jarvis".to_string()));
        let b = push_args("/src", "/x", "ssh", false, Some(100));
        assert!(b.contains(&"--bwlimit=100".to_string()) && !b.iter().any(|x| x.starts_with("--chown")));
        let d = dry_run_args("/src", "/x", "ssh", false);
        assert!(d.contains(&"-n".to_string()));
    }

    #[test]
    fn swap_keeps_a_backup_and_lists_added_paths() {
        let s = swap_script(
            "/c.staging",
            "/c",
            "/var/lib/jarvis-supervisor/deploys/20260101T000000Z",
        );
        assert!(
            s.contains(
                "--backup --backup-dir=/var/lib/jarvis-supervisor/deploys/20260101T000000Z/code-backup"
            ),
            "{s}"
        );
        assert!(
            s.contains("--exclude=.env") && s.contains("/c.staging/ /c/"),
            "{s}"
        );
        let r = restore_script("/c", "/d");
        assert!(
            r.contains("rsync -rlptog -I /d/code-backup/ /c/") && r.contains("tac /d/added.list"),
            "{r}"
        );
    }

    /// The swap and its undo, run for real on a temporary tree.
    #[test]
    fn swap_then_restore_gives_back_the_tree() {
        let t = tempfile::tempdir().unwrap();
        let p = |r: &str| t.path().join(r);
        let w = |r: &str, text: &str| {
            std::fs::create_dir_all(p(r).parent().unwrap()).unwrap();
            std::fs::write(p(r), text).unwrap();
        };
        w("code/bots/a.py", "v1");
        w("code/old.py", "old");
        w("code/.env", "SECRET=1");
        w("code/data/state.json", "{}");
        w("code/logs/bot.log", "log");
        w("code/bots/state/c.json", "runtime");
        w("stage/bots/a.py", "v2");
        w("stage/new pkg/b.py", "b");
        std::fs::create_dir_all(p("d")).unwrap();
        let (code, stage, d) = (p("code"), p("stage"), p("d"));
        let sh = |script: String| {
            let out = std::process::Command::new("sh")
                .args(["-c", &script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh(swap_script(
            stage.to_str().unwrap(),
            code.to_str().unwrap(),
            d.to_str().unwrap(),
        ));
        let r = |r: &str| std::fs::read_to_string(p(r)).ok();
        assert_eq!(r("code/bots/a.py").as_deref(), Some("v2"));
        assert_eq!(r("code/new pkg/b.py").as_deref(), Some("b"));
        assert_eq!(r("code/old.py"), None);
        assert_eq!(r("code/.env").as_deref(), Some("SECRET=1"));
        assert_eq!(r("code/data/state.json").as_deref(), Some("{}"));
        assert_eq!(r("code/logs/bot.log").as_deref(), Some("log"));
        assert_eq!(r("code/bots/state/c.json").as_deref(), Some("runtime"));
        assert_eq!(r("d/code-backup/bots/a.py").as_deref(), Some("v1"));
        assert_eq!(r("d/code-backup/old.py").as_deref(), Some("old"));
        let added = r("d/added.list").unwrap();
        assert_eq!(
            added.lines().collect::<Vec<_>>(),
            ["new pkg/", "new pkg/b.py"],
            "{added}"
        );
        sh(restore_script(code.to_str().unwrap(), d.to_str().unwrap()));
        assert_eq!(r("code/bots/a.py").as_deref(), Some("v1"));
        assert_eq!(r("code/old.py").as_deref(), Some("old"));
        assert!(!p("code/new pkg").exists());
        assert_eq!(r("code/.env").as_deref(), Some("SECRET=1"));
        assert_eq!(r("code/data/state.json").as_deref(), Some("{}"));
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
    fn dry_run_plan_lists_changes_versions_and_masks_env() {
        let env = EnvSummary::of("# c\nTELEGRAM_BOT_TOKEN=123:secret\nexport ADMIN=42\n\n");
        let p = DryPlan {
            host: "root@a",
            code_dir: "/home/jarvis/Jarvis",
            itemized: ".d..t...... ./\n>fcst...... bots/supervisor.py\n*deleting   old.py\n",
            installed: Some("0.1.0-1"),
            shipped: Some("99.0.0-1"),
            env: Some(&env),
        };
        let text = p.render();
        assert!(text.contains("code: 2 change(s)"), "{text}");
        assert!(text.contains(">fcst...... bots/supervisor.py") && text.contains("*deleting   old.py"));
        assert!(text.contains("0.1.0-1 -> 99.0.0-1: would install"), "{text}");
        assert!(
            text.contains("TELEGRAM_BOT_TOKEN=***") && text.contains("ADMIN=***"),
            "{text}"
        );
        assert!(!text.contains("secret") && !text.contains("42"), "{text}");
        let same = DryPlan {
            itemized: "",
            installed: Some("1"),
            shipped: Some("1"),
            env: None,
            ..p
        };
        let t = same.render();
        assert!(
            t.contains("no change") && t.contains("not reinstalled") && t.contains("not sent"),
            "{t}"
        );
    }
}
