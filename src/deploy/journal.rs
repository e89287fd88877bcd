//! A deploy's journal: the `meta.json` in its directory on the host. Its
//! phase says how far the deploy got, so that the next deploy (or
//! `--rollback`) finishes one that was cut off: before the swap its store
//! is dropped, from the swap on it is undone.
//!
//! Hosts keep these files across upgrades of jarvisctl: the fields are
//! written in the order and form they always had (keys sorted, `null` for
//! an absent version), and a value this version does not know is kept as
//! it was read.

use serde::{Deserialize, Serialize};

/// What made the deploy directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Deploy,
    /// `--rollback --to ID`: a new deploy of an older one's code.
    Rollback,
    #[serde(untagged)]
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    InProgress,
    Deployed,
    Refused,
    Failed,
    RolledBack,
    RollbackFailed,
    /// Cut off before its swap; its store dropped by the next deploy.
    Interrupted,
    /// Cut off from its swap on; undone by the next deploy.
    InterruptedRolledBack,
    #[serde(untagged)]
    Other(String),
}

/// How far a deploy in progress got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The code goes into the deploy's store: nothing live changed.
    Staging,
    /// From here on a deploy that never finished is undone.
    Swapping,
    Package,
    Restarting,
    Verifying,
    Done,
    #[serde(untagged)]
    Other(String),
}

impl Phase {
    pub fn as_str(&self) -> &str {
        match self {
            Phase::Staging => "staging",
            Phase::Swapping => "swapping",
            Phase::Package => "package",
            Phase::Restarting => "restarting",
            Phase::Verifying => "verifying",
            Phase::Done => "done",
            Phase::Other(s) => s,
        }
    }
}

impl Status {
    pub fn as_str(&self) -> &str {
        match self {
            Status::InProgress => "in-progress",
            Status::Deployed => "deployed",
            Status::Refused => "refused",
            Status::Failed => "failed",
            Status::RolledBack => "rolled-back",
            Status::RollbackFailed => "rollback-failed",
            Status::Interrupted => "interrupted",
            Status::InterruptedRolledBack => "interrupted-rolled-back",
            Status::Other(s) => s,
        }
    }
}

impl Kind {
    pub fn as_str(&self) -> &str {
        match self {
            Kind::Deploy => "deploy",
            Kind::Rollback => "rollback",
            Kind::Other(s) => s,
        }
    }
}

/// The environment in use before and after a deploy (issue 14), and what
/// built the one after.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Venv {
    /// `venvs/ID`; None: the system's python3.
    pub after: Option<String>,
    pub before: Option<String>,
    pub python: Option<String>,
    /// The digest that names the wheelhouse on the host.
    pub wheelhouse: Option<String>,
}

/// `meta.json`. The fields are in the order the file has them (sorted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    /// The deploy the swap replaced (None: the files before the first one).
    pub before: Option<String>,
    pub code_dir: String,
    /// Whether the deploy sent a .env (its `private/env.before` restores).
    pub env_sent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    pub host: String,
    pub id: String,
    pub kind: Option<Kind>,
    pub owner: String,
    pub package_after: Option<String>,
    pub package_before: Option<String>,
    pub phase: Option<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered_in_s: Option<f64>,
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken_over: Option<Vec<String>>,
    /// `--rollback --to`: the deploy whose code this one restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venv: Option<Venv>,
    /// Why the file could not be read as a journal (never written back:
    /// a damaged file is named, and rebuilt only from what the host shows).
    #[serde(skip)]
    pub damaged: Option<String>,
}

impl Meta {
    /// A file that cannot be read as a journal reads as an empty one with
    /// the reason in `damaged`: it shows as "-" in the list, and is never
    /// taken for one in progress by its fields (see `recovery::interrupted`).
    /// The reason names where the file breaks, never what it holds.
    pub fn parse(text: &str) -> Meta {
        serde_json::from_str(text).unwrap_or_else(|e: serde_json::Error| Meta {
            damaged: Some(format!(
                "meta.json is not a deploy journal ({} at line {} column {}, {} bytes)",
                match e.classify() {
                    serde_json::error::Category::Eof => "it ends early",
                    serde_json::error::Category::Syntax => "not JSON",
                    serde_json::error::Category::Data => "a field of the wrong type",
                    serde_json::error::Category::Io => "unreadable",
                },
                e.line(),
                e.column(),
                text.len()
            )),
            ..Meta::default()
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn in_progress(&self) -> bool {
        self.status == Some(Status::InProgress)
    }

    pub fn set(&mut self, status: Status, phase: Phase) {
        self.status = Some(status);
        self.phase = Some(phase);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deploy's meta.json as jarvisctl has written it (serde_json's
    /// pretty printing of its keys in sorted order).
    const DEPLOYED: &str = r#"{
  "before": "20261201T101010Z",
  "code_dir": "/home/jarvis/Jarvis",
  "env_sent": true,
  "files": 12,
  "host": "root@vps1",
  "id": "20261202T184639Z-2",
  "kind": "deploy",
  "owner": "jarvis:jarvis",
  "package_after": "0.2.0-1",
  "package_before": "0.1.0-1",
  "phase": "done",
  "status": "deployed",
  "taken_over": [
    "bots/x.py"
  ],
  "unit": "jarvis-supervisor.service",
  "venv": {
    "after": "venvs/20261202T184639Z",
    "before": null,
    "python": null,
    "wheelhouse": "0123456789abcdef"
  }
}"#;

    const RECOVERED_ROLLBACK: &str = r#"{
  "before": null,
  "code_dir": "/srv/bot",
  "env_sent": false,
  "host": "vps2",
  "id": "20261203T000000Z",
  "kind": "rollback",
  "owner": "trader:",
  "package_after": null,
  "package_before": "0.1.0-1",
  "phase": "done",
  "reason": "cut off while swapping; undone by the next deploy",
  "recovered_in_s": 3.2,
  "status": "interrupted-rolled-back",
  "to": "20261201T101010Z",
  "unit": "jarvis-supervisor.service"
}"#;

    #[test]
    fn todays_files_read_and_write_back_byte_for_byte() {
        for text in [DEPLOYED, RECOVERED_ROLLBACK] {
            let m = Meta::parse(text);
            assert_eq!(String::from_utf8(m.to_bytes()).unwrap(), text);
        }
        let m = Meta::parse(DEPLOYED);
        assert_eq!(
            (m.kind, m.status, m.phase),
            (Some(Kind::Deploy), Some(Status::Deployed), Some(Phase::Done))
        );
        let r = Meta::parse(RECOVERED_ROLLBACK);
        assert_eq!(r.status, Some(Status::InterruptedRolledBack));
        assert_eq!(r.to.as_deref(), Some("20261201T101010Z"));
    }

    #[test]
    fn a_value_this_version_does_not_know_is_kept_and_junk_reads_as_empty() {
        let m = Meta::parse(r#"{"status": "archived", "phase": "zapping", "kind": "import"}"#);
        assert_eq!(m.status, Some(Status::Other("archived".into())));
        assert_eq!(m.phase.as_ref().map(Phase::as_str), Some("zapping"));
        assert!(!m.in_progress());
        let text = String::from_utf8(m.to_bytes()).unwrap();
        assert!(text.contains(r#""status": "archived""#), "{text}");
        let junk = Meta::parse("{not json");
        assert_eq!(
            Meta {
                damaged: None,
                ..junk.clone()
            },
            Meta::default()
        );
        let why = junk.damaged.unwrap();
        assert!(
            why.contains("not JSON at line 1") && !why.contains("not json"),
            "{why}"
        );
        let cut = Meta::parse(&DEPLOYED[..40]).damaged.unwrap();
        assert!(cut.contains("it ends early") && cut.contains("40 bytes"), "{cut}");
        assert_eq!(Meta::parse("{}").damaged, None);
        assert!(Meta::parse(r#"{"status": "in-progress"}"#).in_progress());
    }
}
