//! What `deploy --dry-run` prints for one host: the worker's plan, the
//! package and the .env (names only), every string from the host defused.

use super::reply::Plan;

/// What a dry run prints for one host.
pub struct DryPlan<'a> {
    pub host: &'a str,
    pub code_dir: &'a str,
    /// The host worker's plan (deploy_host.py `plan`).
    pub plan: &'a Plan,
    pub installed: Option<&'a str>,
    pub shipped: Option<&'a str>,
    pub env: Option<&'a EnvSummary>,
    /// Why the environment would be rebuilt on this host, if it would.
    pub environment: Option<&'a str>,
    /// What the deploy would refuse this host for besides conflicts (no
    /// room on a filesystem, a /tmp that takes no write).
    pub refusals: &'a [String],
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

impl DryPlan<'_> {
    /// The plan for a terminal: every string from the host defused.
    pub fn render(&self) -> String {
        use crate::output::printable;
        let p = self.plan;
        let mut out = format!(
            "{}: would deploy to {}\n",
            printable(self.host),
            printable(self.code_dir)
        );
        let (add, replace, delete, taken) = (&p.put, &p.replace, &p.delete, &p.taken_over);
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
            for (mark, list) in [("+", add), ("~", replace), ("-", delete)] {
                for path in list {
                    out.push_str(&format!("    {mark} {}\n", printable(path)));
                }
            }
            for path in taken {
                out.push_str(&format!(
                    "    ! {} (taken over; the file there now is kept beside it)\n",
                    printable(path)
                ));
            }
        }
        if !p.adopted.is_empty() {
            out.push_str(&format!(
                "  code: {} file(s) already there with the shipped content: adopted\n",
                p.adopted.len()
            ));
        }
        out.push_str(&format!(
            "  kept: {} unshipped file(s) (the bot's state, the operator's files): never touched\n",
            p.unshipped_text()
        ));
        if !p.kept_changed.is_empty() {
            out.push_str(&format!(
                "  kept: {} file(s) an earlier deploy shipped but that changed on the host: left as they are\n",
                p.kept_changed.len()
            ));
        }
        for line in p.conflict_lines() {
            out.push_str(&format!("  CONFLICT {}\n", printable(&line)));
        }
        match self.environment {
            Some(why) => out.push_str(&format!(
                "  environment: would be rebuilt ({}), beside the one in use, and switched with the code\n",
                printable(why)
            )),
            None => out.push_str("  environment: no change\n"),
        }
        for why in self.refusals {
            out.push_str(&format!("  REFUSED {}\n", printable(why)));
        }
        if !p.conflicts.is_empty() || !self.refusals.is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn dry_run_plan_lists_changes_kept_files_conflicts_versions_and_masks_env() {
        let env = EnvSummary::of("# c\nTELEGRAM_BOT_TOKEN=123:secret\nADMIN=42\n\n");
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "put": ["bots/new.py"], "replace": ["bots/supervisor.py"], "delete": ["old.py"],
            "adopted": [], "unshipped": 7, "kept_changed": [],
            "conflicts": [{"path": "bots/x y/key.json", "why": "a file that no deploy shipped is there"}],
        }))
        .unwrap();
        let p = DryPlan {
            host: "root@a",
            code_dir: "/home/jarvis/Jarvis",
            plan: &plan,
            installed: Some("0.1.0-1"),
            shipped: Some("99.0.0-1"),
            env: Some(&env),
            environment: Some("requirements.txt changed"),
            refusals: &[],
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
        let empty = Plan::default();
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
                && !t.contains("CONFLICT")
                && !t.contains("would refuse"),
            "{t}"
        );
        let full = ["not enough space for the code root (/srv/bot) on /srv (ext4)".to_string()];
        let t = DryPlan {
            refusals: &full,
            ..same
        }
        .render();
        assert!(
            t.contains("  REFUSED not enough space for the code root (/srv/bot) on /srv (ext4)\n")
                && t.contains("would refuse this host and change nothing"),
            "{t}"
        );
    }
}
