//! What a deploy tells: one outcome per host, printed as a table or as
//! the `--json` summary, and the `--list` of a host's history.

use serde::Serialize;
use serde_json::json;

use super::journal::Meta;
use super::reply::Plan;
use crate::output::printable;

/// How one host's deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostResult {
    Deployed,
    RolledBack,
    Failed,
    Refused,
    Skipped,
    DryRun,
    Restored,
    Listed,
}

impl HostResult {
    pub fn word(self) -> &'static str {
        match self {
            HostResult::Deployed => "deployed",
            HostResult::RolledBack => "ROLLED BACK",
            HostResult::Failed => "FAILED",
            HostResult::Refused => "REFUSED",
            HostResult::Skipped => "skipped",
            HostResult::DryRun => "dry-run",
            HostResult::Restored => "restored",
            HostResult::Listed => "listed",
        }
    }

    pub fn ok(self) -> bool {
        matches!(
            self,
            HostResult::Deployed | HostResult::DryRun | HostResult::Restored | HostResult::Listed
        )
    }
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub host: String,
    pub result: HostResult,
    pub id: Option<String>,
    pub package_before: Option<String>,
    pub package_after: Option<String>,
    pub elapsed_s: f64,
    /// Why it failed or was rolled back; what was done.
    pub reason: Option<String>,
    /// The host's plan (dry runs and refusals): paths to add, replace and
    /// remove, unshipped files kept, conflicts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// How the bot was judged healthy after its restart: its pid and the
    /// evidence ("pid 812: its /health says healthy, 0.4 s after the
    /// restart").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
    /// What did not stop the deploy but needs a look: a file that does not
    /// compile and that nothing runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Outcome {
    /// Not begun yet: it fails unless a step says otherwise.
    pub fn new(host: &str) -> Outcome {
        Outcome {
            host: host.to_string(),
            result: HostResult::Failed,
            id: None,
            package_before: None,
            package_after: None,
            elapsed_s: 0.0,
            reason: None,
            plan: None,
            verified: None,
            warnings: Vec::new(),
        }
    }

    pub fn skipped(host: &str) -> Outcome {
        Outcome {
            result: HostResult::Skipped,
            reason: Some("not tried: an earlier host failed (--serial or --rolling)".into()),
            ..Outcome::new(host)
        }
    }
}

/// `--list`: a host's history, one deploy a line, `*` marking the one in
/// effect; every record from the host defused.
pub fn history(host: &str, rows: &[(String, Meta)], current: Option<&str>, pruned: usize) -> String {
    let mut out = format!("{}: {} deploy(s) kept", printable(host), rows.len());
    if pruned > 0 {
        out.push_str(&format!(", {pruned} pruned"));
    }
    out.push('\n');
    for (id, m) in rows {
        let s = |v: Option<&str>| printable(v.unwrap_or("-"));
        let mark = if current == Some(id.as_str()) { "*" } else { " " };
        out.push_str(&format!(
            " {mark}{id:<20} {:<24} {:<9} package {} -> {}  {} file(s){}\n",
            s(m.status.as_ref().map(|x| x.as_str())),
            s(m.kind.as_ref().map(|x| x.as_str())),
            s(m.package_before.as_deref()),
            s(m.package_after.as_deref()),
            m.files.map_or_else(|| "-".to_string(), |n| n.to_string()),
            m.reason
                .as_deref()
                .map(|r| format!("  ({})", printable(r)))
                .unwrap_or_default()
        ));
    }
    out
}

pub fn print_summary(rows: &[Outcome], json: bool) {
    if json {
        let ok = rows.iter().all(|o| o.result.ok());
        println!("{}", json!({"schema": 1, "ok": ok, "hosts": rows}));
        return;
    }
    let mut table: Vec<[String; 6]> =
        vec![["HOST", "RESULT", "ID", "PACKAGE", "TIME", "NOTE"].map(String::from)];
    for o in rows {
        let pkg = match (&o.package_before, &o.package_after) {
            (a, b) if a == b => a.clone().unwrap_or_else(|| "-".into()),
            (a, b) => format!(
                "{} -> {}",
                a.as_deref().unwrap_or("-"),
                b.as_deref().unwrap_or("-")
            ),
        };
        table.push([
            o.host.clone(),
            o.result.word().into(),
            o.id.clone().unwrap_or_else(|| "-".into()),
            pkg,
            format!("{:.1}s", o.elapsed_s),
            o.reason.clone().unwrap_or_else(|| match o.warnings.len() {
                0 => String::new(),
                n => format!("{n} warning(s): see the WARNING lines above"),
            }),
        ]);
    }
    print!("{}", crate::output::table(&table));
}
