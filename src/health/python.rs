//! The interpreter the next start uses, and the one the bot runs as.

use super::model::Python;
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

pub(super) fn of_unit(paths: &Paths, unit: &Unit, main_pid: Option<u32>) -> Python {
    let mut out = Python::default();
    if let Some((chosen, _)) = crate::interpreter::of_unit(paths, unit) {
        match chosen {
            Ok(i) => {
                out.path = Some(i.path.display().to_string());
                out.source = serde_json::to_value(i.source)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from));
            }
            Err(why) => out.problem = Some(why),
        }
    }
    if let Some(pid) = main_pid {
        // The bot's own argv: its text, so shown defused.
        out.running_as = std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .and_then(|b| {
                b.split(|&c| c == 0)
                    .next()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
            })
            .filter(|a| !a.is_empty());
        out.running_exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.display().to_string());
    }
    out
}
