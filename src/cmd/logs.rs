//! `jarvisctl logs [-f] [-n N] [--since TIME] [--component NAME]`: the
//! bot's output (the journal under systemd, `jarvisctl run`'s capture
//! otherwise) and the program's own `logs/*.log`, in time order, one
//! command on both engines, with every `.env` value masked as in `status`.
//! `logread` reads them; no line is shown unless `.env` could be read to
//! mask it.

use crate::logread::{self, Entry, LINE_SHOWN};
use crate::secrets;
use jarvis_cli::LogsArgs;
use jarvis_model::error::{exit, Error, Result};
use jarvis_model::instance::Instance;
use jarvis_model::masking::Masker;
use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

pub fn run(paths: &Paths, args: &LogsArgs) -> Result<i32> {
    let instance = Instance::from_arg(args.instance.as_deref())?;
    let unit = Unit::load_named(paths, &instance.unit())?;
    // A named instance's lines are masked with every instance's values:
    // bots that share a tree may log each other's (a shared log file).
    let secrets = match instance {
        Instance::Default => secrets::masker(paths, &unit),
        Instance::Named(_) => {
            let all: Vec<Unit> = std::iter::once(Instance::Default)
                .chain(Instance::installed(paths, false).into_iter().map(Instance::Named))
                .filter_map(|i| Unit::load_named(paths, &i.unit()).ok())
                .collect();
            secrets::masker_of(paths, &all)
        }
    };
    let secrets = secrets.ok_or_else(|| {
        Error::new("cannot read .env to mask its values, so no line is shown")
            .with_note("run it as root: sudo jarvisctl logs")
    })?;
    let since = args
        .since
        .as_deref()
        .map(|v| logread::parse_since(v, jarvis_model::state::now_unix()))
        .transpose()?;
    let show = |e: &Entry| print(e, &secrets, args.json);
    let mut sources = logread::Sources::of(paths, &unit, &instance);
    let (history, spent) = sources.history(since, args.lines, args.component.as_deref());
    for e in &history {
        show(e);
    }
    if spent.anything_left() {
        if args.json {
            println!("{}", serde_json::json!({ "budget": spent }));
        } else {
            eprintln!("{}", spent.describe());
        }
    }
    if !args.follow {
        return Ok(exit::OK);
    }
    let mut follow = sources.follow(args.component.as_deref());
    loop {
        for e in follow.poll() {
            show(&e);
        }
        std::thread::sleep(logread::POLL);
    }
}

fn print(e: &Entry, secrets: &Masker, json: bool) {
    let text = crate::output::printable(&secrets.mask(&e.text));
    if json {
        let e = Entry { text, ..e.clone() };
        println!("{}", serde_json::to_string(&e).unwrap_or_default());
        return;
    }
    let text = shown(&text);
    let when =
        e.t.and_then(|t| chrono::DateTime::from_timestamp_millis((t * 1000.0) as i64))
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_else(|| "-".repeat(19));
    // The file's name is the service user's to choose: defused too.
    println!("{when} {}: {text}", crate::output::printable(&e.source));
}

/// `text` cut at [`LINE_SHOWN`] bytes, saying how much was left out.
fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= LINE_SHOWN {
        return text.into();
    }
    let mut at = LINE_SHOWN;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    format!("{} [... {} more bytes not shown]", &text[..at], text.len() - at).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_shown_cut_saying_how_much_was_left_out() {
        let long = "x".repeat(LINE_SHOWN + 10);
        assert_eq!(
            shown(&long).len(),
            LINE_SHOWN + " [... 10 more bytes not shown]".len()
        );
        assert_eq!(shown("short"), "short");
    }
}
