//! What the host answers, as types: the host worker's reports
//! (python/deploy_host.py `plan`, `apply`, `verify`, `compile`, and its error), and
//! the reports of the host's own jarvisctl that deploy reads (`status
//! --json`, `venv adopt --json`, `venv build --json`). Every field has a
//! default: a host that leaves one out (an older worker, no code root
//! yet) reads as "none".

use serde::{Deserialize, Serialize};

use super::shell::sh_quote;

/// The worker's plan (and `apply`'s result, which has the same lists):
/// what moving the live code from one manifest to another does. Its
/// fields are in the order the `--json` summary has always printed them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Plan {
    /// Files already there with the shipped content, shipped by no deploy.
    pub adopted: Vec<String>,
    pub conflicts: Vec<Conflict>,
    pub delete: Vec<String>,
    /// Files with the right content but the wrong mode or owner.
    pub fix: Vec<String>,
    /// Files an earlier deploy shipped that changed on the host since.
    pub kept_changed: Vec<String>,
    pub mkdir: Vec<String>,
    pub put: Vec<String>,
    pub replace: Vec<String>,
    pub rmdir: Vec<String>,
    pub same: Vec<String>,
    pub taken_over: Vec<String>,
    /// Files no manifest lists: never touched.
    pub unshipped: u64,
    /// The host stopped counting them.
    pub unshipped_at_least: bool,
    /// Temporary files that a swap cut off earlier had left, removed by
    /// `apply` before it began.
    #[serde(skip_serializing_if = "is_zero")]
    pub stale_removed: u64,
    /// An undo's files renamed back from the old files its deploy's swap
    /// kept aside (no copy, no space).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_aside: Vec<String>,
    /// The space the swap and the deploy's store need, and what is free.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub space: Option<Space>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The plan's space report, per filesystem a deploy writes to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Space {
    /// The code root's: the files the swap writes.
    pub code: Option<Room>,
    /// The deploy history's: the files whose content no kept store holds.
    pub store: Option<Room>,
}

/// One filesystem: what is free there (to root), and what is needed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Room {
    /// The directory asked about (or its nearest existing parent).
    pub path: String,
    pub mount: String,
    pub fstype: Option<String>,
    pub free: u64,
    /// Bytes written, in whole blocks.
    pub needed: u64,
    /// Kept spare beyond `needed`.
    pub margin: u64,
    pub free_inodes: u64,
    pub needed_inodes: u64,
}

impl Room {
    /// Whether `extra` more bytes (written there besides) and the margin
    /// do not fit. Writing nothing needs nothing.
    pub fn short(&self, extra: u64) -> bool {
        let needed = self.needed + extra;
        if needed == 0 && self.needed_inodes == 0 {
            return false;
        }
        self.free < needed + self.margin.max(if extra > 0 { MARGIN } else { 0 })
            || self.free_inodes < self.needed_inodes
    }

    /// "/home (ext4)".
    pub fn place(&self) -> String {
        match &self.fstype {
            Some(t) => format!("{} ({t})", self.mount),
            None => self.mount.clone(),
        }
    }
}

/// The space a deploy leaves spare on a filesystem it writes to (the
/// worker's own is in its report; this one covers the package and .env
/// when the worker writes no file there).
pub const MARGIN: u64 = 8 << 20;

/// A shipped path that something else holds on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conflict {
    pub path: String,
    pub why: String,
}

impl Plan {
    /// One line per conflict, with the way out.
    pub fn conflict_lines(&self) -> Vec<String> {
        self.conflicts
            .iter()
            .map(|c| {
                format!(
                    "{}: {}; move it away, or take it over with --take-over {}",
                    c.path,
                    c.why,
                    sh_quote(&c.path)
                )
            })
            .collect()
    }

    /// The count of unshipped files; "N+" when the host stopped counting.
    pub fn unshipped_text(&self) -> String {
        if self.unshipped_at_least {
            format!("{}+", self.unshipped)
        } else {
            self.unshipped.to_string()
        }
    }
}

/// The worker's `clean`: the kept-aside and temporary files removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Cleaned {
    pub removed: u64,
}

/// The worker's `prepare` of a deploy's store: the files it could not link
/// from the deploy in effect's store, which the push sends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Prepared {
    pub send: Vec<String>,
}

/// The worker's `verify` of a deploy's store against its manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Verify {
    /// The first 50 paths that differ.
    pub bad: Vec<String>,
    pub n_bad: u64,
}

/// The worker's `compile`: the changed files compiled by the bot's
/// interpreter on the host, and the ones that did not compile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Compiled {
    /// The interpreter that compiled them.
    pub python: String,
    /// Its version, e.g. `3.13.5`.
    pub version: Option<String>,
    pub checked: u64,
    pub broken: Vec<Broken>,
    /// Why another interpreter than the bot's did it, if one did.
    pub note: Option<String>,
}

/// A file that does not compile, judged run (the unit starts it, or the
/// tree imports it) or not run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Broken {
    pub path: String,
    pub line: Option<u64>,
    /// The interpreter's error, e.g. `SyntaxError: invalid syntax`.
    pub error: String,
    pub run: bool,
    /// Why it is judged so.
    pub why: String,
}

/// The worker's report when it failed (exit 2).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WorkerError {
    pub error: Option<String>,
    /// It failed before it changed anything live (a swap whose staging
    /// failed, or that did not fit): nothing to undo.
    pub untouched: bool,
}

/// The part of the host's `jarvisctl status --json` the health wait reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Status {
    pub verdict: Option<String>,
    /// The verdict on the bot alone, without the host's own findings
    /// (free disk space, the package's records); absent from an older
    /// jarvisctl, whose `verdict` is judged then.
    pub bot_verdict: Option<String>,
    pub state: Option<String>,
    pub main_pid: Option<u64>,
    pub reasons: Vec<String>,
    pub errors: Vec<String>,
    /// How long the bot's process has run.
    pub uptime_s: Option<f64>,
    /// What the program says of its own components.
    pub components: Option<crate::components::Components>,
}

impl Status {
    pub fn is(&self, state: &str) -> bool {
        self.state.as_deref() == Some(state)
    }

    /// The bot runs and nothing is wrong with it. A deploy cannot change
    /// the host's disk space: a WARNING about it alone is not the bot's.
    pub fn healthy(&self) -> bool {
        self.bot_verdict.as_deref().or(self.verdict.as_deref()) == Some("OK") && self.is("active")
    }

    /// The program's own word that it is up, from the process that runs
    /// now: its `/health` says healthy, or its newest component record,
    /// younger than the process, has every component running. None for a
    /// program that gives neither (it is judged by the settle window).
    pub fn evidence(&self) -> Option<String> {
        if !self.healthy() {
            return None;
        }
        let c = self.components.as_ref()?;
        match c.source.as_str() {
            "health" if c.health.as_deref() == Some("healthy") => Some("its /health says healthy".into()),
            "journal" | "output"
                if c.total > 0
                    && c.running == c.total
                    && c.age_s.zip(self.uptime_s).is_some_and(|(age, up)| age <= up) =>
            {
                Some(format!("its component record has all {} running", c.total))
            }
            _ => None,
        }
    }

    /// "state S, verdict V (reasons)".
    pub fn describe(&self) -> String {
        let mut s = format!(
            "state {}, verdict {}",
            self.state.as_deref().unwrap_or("?"),
            self.verdict.as_deref().unwrap_or("?")
        );
        if !self.reasons.is_empty() {
            s.push_str(&format!(" ({})", self.reasons.join("; ")));
        }
        s
    }

    /// The last error line that status found (values of .env masked by
    /// status itself), as "; last error: ...".
    pub fn last_error(&self) -> String {
        self.errors
            .last()
            .map(|l| format!("; last error: {}", l.trim()))
            .unwrap_or_default()
    }
}

/// `jarvisctl venv adopt --json`: the environment in use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Adopted {
    pub venv: Option<String>,
}

/// `jarvisctl venv build --json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Built {
    pub ok: bool,
    pub venv: Option<String>,
    /// The requirement that failed, if one did.
    pub requirement: Option<String>,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_without_a_code_root_reads_with_empty_lists() {
        let p: Plan =
            serde_json::from_str(r#"{"put": ["a.py"], "mkdir": ["bots"], "conflicts": [], "unshipped": 0}"#)
                .unwrap();
        assert_eq!(p.put, ["a.py"]);
        assert!(p.replace.is_empty() && !p.unshipped_at_least);
        let c: Plan = serde_json::from_str(
            r#"{"conflicts": [{"path": "x y", "why": "a file that no deploy shipped is there"}], "unshipped": 3, "unshipped_at_least": true}"#,
        )
        .unwrap();
        assert_eq!(
            c.conflict_lines(),
            ["x y: a file that no deploy shipped is there; move it away, or take it over with --take-over 'x y'"]
        );
        assert_eq!(c.unshipped_text(), "3+");
    }

    #[test]
    fn a_status_report_says_state_verdict_reasons_and_last_error() {
        let s: Status = serde_json::from_str(
            r#"{"verdict": "CRITICAL", "state": "failed", "main_pid": null, "reasons": ["a", "b"], "errors": ["x", " boom "]}"#,
        )
        .unwrap();
        assert!(!s.healthy() && s.is("failed"));
        assert_eq!(s.describe(), "state failed, verdict CRITICAL (a; b)");
        assert_eq!(s.last_error(), "; last error: boom");
    }

    /// Under 1 GiB free, status says WARNING for the host's disk: the
    /// deploy's verification judges the bot, which is fine; a problem of
    /// the bot's own still fails it. An older jarvisctl gives no
    /// bot_verdict: its verdict is judged.
    #[test]
    fn verification_judges_the_bot_not_the_hosts_disk() {
        let st = |j: &str| serde_json::from_str::<Status>(j).unwrap();
        let disk_low = st(
            r#"{"verdict": "WARNING", "bot_verdict": "OK", "state": "active", "main_pid": 7,
            "reasons": ["disk space low for the logs (under 1 GiB)"]}"#,
        );
        assert!(disk_low.healthy(), "{disk_low:?}");
        let bot = st(
            r#"{"verdict": "CRITICAL", "bot_verdict": "CRITICAL", "state": "active",
            "reasons": ["disk space low for the logs (under 1 GiB)", "component feed: down"]}"#,
        );
        assert!(!bot.healthy());
        let warned = st(r#"{"verdict": "WARNING", "bot_verdict": "WARNING", "state": "active"}"#);
        assert!(
            !warned.healthy(),
            "a bot's own WARNING still fails the verification"
        );
        assert!(!st(r#"{"verdict": "OK", "bot_verdict": "OK", "state": "restarting"}"#).healthy());
        assert!(!st(r#"{"verdict": "WARNING", "state": "active"}"#).healthy());
        assert!(st(r#"{"verdict": "OK", "state": "active"}"#).healthy());
    }

    #[test]
    fn a_room_is_short_when_the_writes_and_the_margin_do_not_fit() {
        let r = Room {
            free: 20 << 20,
            needed: 10 << 20,
            margin: MARGIN,
            free_inodes: 100,
            needed_inodes: 10,
            ..Room::default()
        };
        assert!(!r.short(0));
        assert!(
            r.short(3 << 20),
            "10 MiB + 3 MiB of package + 8 MiB spare > 20 MiB"
        );
        assert!(Room {
            free_inodes: 5,
            ..r.clone()
        }
        .short(0));
        let nothing = Room {
            free: 0,
            margin: 0,
            ..Room::default()
        };
        assert!(
            !nothing.short(0),
            "an undo that writes nothing fits on a full disk"
        );
        assert!(nothing.short(1), "a package alone does not");
    }
}
