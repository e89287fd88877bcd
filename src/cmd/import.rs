//! `jarvisctl import`: hand-written units turned into named instances, and
//! `--undo`. The work is in `import`; this prints the plan, then makes it.

use crate::import;
use crate::output::printable;
use crate::provision::Change;
use jarvis_cli::ImportArgs;
use jarvis_model::error::{exit, Result};
use jarvis_model::paths::Paths;

fn print(changes: &[Change], notes: &[String], bots: &[import::Bot], json: bool, dry_run: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "dry_run": dry_run, "changes": changes, "notes": notes, "instances": bots })
        );
        return;
    }
    for c in changes {
        let lead = if dry_run { "would " } else { "" };
        println!("{lead}{}", printable(&c.action));
    }
    for n in notes {
        println!("note: {}", printable(n));
    }
}

pub fn run(paths: &Paths, a: &ImportArgs) -> Result<i32> {
    if a.undo {
        let undo = import::plan_undo(paths)?;
        print(&undo.changes, &[], &[], a.json, a.dry_run);
        if !a.dry_run {
            import::apply_undo(paths, &undo)?;
            if !a.json {
                println!("import undone: the old units are back");
            }
        }
        return Ok(exit::OK);
    }
    let plan = import::plan(paths, &a.units, a.tree_to.as_deref(), &a.share)?;
    print(&plan.changes, &plan.notes, &plan.bots, a.json, a.dry_run);
    if !a.dry_run {
        import::apply(paths, &plan).map_err(|e| {
            jarvis_model::error::Error::new(format!("the import stopped half-way: {e}"))
                .with_note("jarvisctl import --undo puts back what it changed, from the copies it kept first")
        })?;
        if !a.json {
            println!(
                "imported {} bots; undo it with: jarvisctl import --undo",
                plan.bots.len()
            );
        }
    }
    Ok(exit::OK)
}
