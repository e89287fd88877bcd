//! `jarvisctl instance`: add, list, remove and restore named instances
//! (issue 26). The work is in `instances`; this prints it.

use crate::control::{self, Target};
use crate::instances::{self, Spec};
use crate::output::{printable, table};
use crate::provision::Change;
use jarvis_cli::{InstanceAddArgs, InstanceCommand, InstanceListArgs, InstanceNameArgs, TargetArgs};
use jarvis_model::error::{exit, Result};
use jarvis_model::instance::InstanceName;
use jarvis_model::paths::Paths;

pub fn run(paths: &Paths, cmd: &InstanceCommand) -> Result<i32> {
    match cmd {
        InstanceCommand::Add(a) => add(paths, a),
        InstanceCommand::List(a) => list(paths, a),
        InstanceCommand::Remove(a) => set_aside(paths, a, false),
        InstanceCommand::Restore(a) => set_aside(paths, a, true),
    }
}

fn report(changes: &[Change], json: bool, dry_run: bool, none: &str) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "dry_run": dry_run, "changes": changes })
        );
    } else {
        // A warning (logs left unrotated) is said, but is no change.
        if changes.iter().all(|c| c.action.starts_with("warning: ")) {
            println!("{none}");
        }
        for c in changes {
            println!("{}", printable(&c.action));
        }
    }
}

fn add(paths: &Paths, a: &InstanceAddArgs) -> Result<i32> {
    let spec = Spec::from_args(a)?;
    let changes = instances::add(paths, &spec, a.dry_run)?;
    let none = format!("instance {}: nothing to change ({})", spec.name, spec.unit);
    report(&changes, a.json, a.dry_run, &none);
    if !a.json && !a.dry_run {
        println!("start it: jarvisctl start --instance {}", spec.name);
    }
    Ok(exit::OK)
}

fn list(paths: &Paths, a: &InstanceListArgs) -> Result<i32> {
    let mut all = instances::list(paths);
    if let Some(root) = &a.code_root {
        let root = root.components().collect::<std::path::PathBuf>();
        all.retain(|i| i.name != "default" && i.code_root.as_deref() == Some(root.as_path()));
    }
    if a.names {
        for i in &all {
            println!("{}", i.name);
        }
        return Ok(exit::OK);
    }
    if a.json {
        println!("{}", serde_json::json!({ "instances": all }));
        return Ok(exit::OK);
    }
    let mut rows = vec![["NAME", "UNIT", "USER", "TYPE", "CODE ROOT", "START"].map(String::from)];
    for i in &all {
        rows.push([
            i.name.clone(),
            i.unit.clone(),
            i.user.clone(),
            i.readiness.clone(),
            i.code_root
                .as_ref()
                .map_or("-".into(), |p| p.display().to_string()),
            i.exec_start.join(" "),
        ]);
    }
    print!("{}", table(&rows));
    Ok(exit::OK)
}

fn set_aside(paths: &Paths, a: &InstanceNameArgs, restore: bool) -> Result<i32> {
    let name: InstanceName = a.name.parse()?;
    if !restore && !a.dry_run {
        // Stopped before its drop-in goes: without it, the unit is only
        // the template, with no program to stop gracefully.
        let on = TargetArgs {
            unit: None,
            instance: Some(name.to_string()),
        };
        let t = Target::new(paths, &on)?;
        let out = control::stop(&t, control::stop_bound(&t, None));
        if !out.ok {
            out.report(a.json);
            return Ok(exit::FAILURE);
        }
    }
    let changes = instances::set_aside(paths, &name, restore, a.dry_run)?;
    report(&changes, a.json, a.dry_run, "");
    if !a.json && !a.dry_run {
        if restore {
            println!("start it: jarvisctl start --instance {name}");
        } else {
            println!("its user, code, environment files and state are kept; bring it back: jarvisctl instance restore {name}");
        }
    }
    Ok(exit::OK)
}
