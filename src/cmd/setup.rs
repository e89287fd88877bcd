//! `jarvisctl setup`: idempotent provisioning, run by the package's
//! postinst and by hand. Everything it creates comes from the installed
//! unit: the user, every `ReadWritePaths=` entry, the working directory and
//! the `EnvironmentFile=`.

use crate::provision;
use jarvis_cli::SetupArgs;
use jarvis_model::error::{exit, Result};
use jarvis_model::paths::Paths;

pub fn run(paths: &Paths, args: &SetupArgs) -> Result<i32> {
    let changes = provision::for_unit(paths)?;
    if args.json {
        let doc = serde_json::json!({ "changes": changes });
        println!("{doc}");
    } else {
        for c in &changes {
            println!("{}", c.action);
        }
    }
    Ok(exit::OK)
}
