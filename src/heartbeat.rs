//! The external heartbeat: a ping after each check, so that a host that is
//! down, or a timer that stopped, is noticed from outside. Each push monitor
//! gets its own format (see `Kind`): Healthchecks.io takes `URL` when the
//! check is OK and `URL/<exit code>` or `URL/fail` otherwise; Uptime Kuma
//! takes `URL?status=up|down&msg=...&ping=`.
//!
//! A ping is best effort: its failure is reported on stderr and never
//! changes the check's own result. Time is bounded: a few seconds per
//! attempt, two retries. The URL's path is a secret (anyone holding it can
//! ping), so it is never printed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jarvis_model::error::{Error, Result};
use jarvis_model::instance::Instance;
use jarvis_model::paths::Paths;

/// The conffile that holds the URL for the health timer.
pub const CONF: &str = "/etc/jarvis-supervisor/heartbeat.conf";
/// The directory of every instance's heartbeat file (root's).
pub const CONF_DIR: &str = "/etc/jarvis-supervisor";

/// The heartbeat file of `instance`: the default's is [`CONF`], a named
/// one's `heartbeat@NAME.conf` beside it, in the same format. The
/// operator writes a named one's (the package ships only the default's).
pub fn conf_of(instance: &Instance) -> PathBuf {
    match instance {
        Instance::Default => PathBuf::from(CONF),
        Instance::Named(n) => Path::new(CONF_DIR).join(format!("heartbeat@{n}.conf")),
    }
}

/// `instance`'s heartbeat file, every good line and one error per bad
/// line, as [`read_conf_all`]. A named instance's file is the operator's,
/// not a conffile: root runs its `on_failure`, so it is read only when it
/// is a regular file (no link), owned by root (by the caller under
/// `--root`) and writable by its owner alone; else it sets nothing, and
/// the error says how to fix it.
pub fn read_conf_of(paths: &Paths, instance: &Instance) -> Result<(Conf, Vec<Error>)> {
    let path = paths.host(&conf_of(instance));
    if let Instance::Named(_) = instance {
        let owner = if paths.is_system() {
            0
        } else {
            nix::unistd::geteuid().as_raw()
        };
        // Read through the descriptor that was checked, never the path again.
        return match trusted(&path, owner)? {
            Some(bytes) => Ok(parse_conf(&path, &bytes)),
            None => Ok((Conf::default(), Vec::new())),
        };
    }
    read_conf_all(&path)
}

/// The most of a heartbeat file read: a few lines are a few hundred bytes.
const CONF_MAX: u64 = 64 * 1024;

/// The bytes of `path`, when it is a regular file of `owner` that only its
/// owner can write; None when it is missing or this user may not read it;
/// Err, with the fix, when it is anything else.
fn trusted(path: &Path, owner: u32) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
            return Err(Error::new(format!(
                "{}: a symbolic link; refused: root runs its on_failure",
                path.display()
            ))
            .with_note(format!(
                "replace it with the file itself: install -m 0640 -o root -g root FILE {}",
                path.display()
            )))
        }
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let m = file.metadata().map_err(|e| Error::io("read", path, e))?;
    let why = if !m.is_file() {
        Some("not a regular file".to_string())
    } else if m.len() > CONF_MAX {
        Some(format!("larger than {CONF_MAX} bytes"))
    } else if m.uid() != owner {
        Some(format!("owned by uid {}, not root", m.uid()))
    } else if m.mode() & 0o022 != 0 {
        Some(format!(
            "writable by others than its owner (mode {:o})",
            m.mode() & 0o7777
        ))
    } else {
        None
    };
    if let Some(why) = why {
        return Err(Error::new(format!(
            "{}: {why}; refused: root runs its on_failure",
            path.display()
        ))
        .with_note(format!(
            "make it root's: chown root:root {p} && chmod 0640 {p}",
            p = path.display()
        )));
    }
    let mut bytes = Vec::new();
    file.take(CONF_MAX)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(Some(bytes))
}

/// Open without following a link, without blocking on a FIFO.
fn libc_flags() -> i32 {
    (nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits()
}

/// How a ping is tried: `attempts` tries of at most `timeout` each,
/// `pause` apart.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub timeout: Duration,
    pub pause: Duration,
}

/// As documented (docs/monitoring.md): 3 tries of 5 s, 1 s apart.
pub const RETRY: Retry = Retry {
    attempts: 3,
    timeout: Duration::from_secs(5),
    pause: Duration::from_secs(1),
};

/// Which push monitor a URL belongs to, so that it gets the format it
/// understands. `kind =` in heartbeat.conf says it; else a path with
/// `/api/push/` is Uptime Kuma's, and any other URL is Healthchecks'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Healthchecks.io and compatible: `URL`, `URL/<exit code>`, `URL/fail`.
    Healthchecks,
    /// Uptime Kuma's push monitor: `URL?status=up|down&msg=TEXT&ping=`.
    UptimeKuma,
}

impl Kind {
    /// The kind of `url` by the documented rule.
    pub fn of(url: &str) -> Kind {
        let path = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest)
            .split(['?', '#'])
            .next()
            .unwrap_or("");
        if path.contains("/api/push/") {
            Kind::UptimeKuma
        } else {
            Kind::Healthchecks
        }
    }

    fn parse(v: &str) -> Option<Kind> {
        match v {
            "healthchecks" => Some(Kind::Healthchecks),
            "uptime-kuma" => Some(Kind::UptimeKuma),
            _ => None,
        }
    }
}

/// A ping target: the URL (a secret) and the format it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub url: String,
    pub kind: Kind,
}

impl Monitor {
    /// `kind` when given, else the kind of the URL by the rule.
    pub fn new(url: &str, kind: Option<Kind>) -> Monitor {
        Monitor {
            url: url.to_string(),
            kind: kind.unwrap_or_else(|| Kind::of(url)),
        }
    }

    /// The URL for a check that ended with `code` (0 OK, 1 WARNING,
    /// 2 CRITICAL, 3 UNKNOWN).
    pub fn for_code(&self, code: i32) -> String {
        match self.kind {
            Kind::Healthchecks => url_for(&self.url, code),
            Kind::UptimeKuma => kuma(&self.url, code == 0, verdict_word(code)),
        }
    }

    /// The URL that says the service gave up.
    pub fn for_give_up(&self) -> String {
        match self.kind {
            Kind::Healthchecks => fail_url(&self.url),
            Kind::UptimeKuma => kuma(&self.url, false, "gave up"),
        }
    }

    /// What a ping for `code` is, with the secret left out: for the logs.
    pub fn shown(&self, code: Option<i32>) -> String {
        let base = redact(&self.url);
        match (self.kind, code) {
            (Kind::Healthchecks, Some(0)) => base,
            (Kind::Healthchecks, Some(c)) => format!("{base}/{c}"),
            (Kind::Healthchecks, None) => format!("{base}/fail"),
            (Kind::UptimeKuma, Some(0)) => format!("{base} (Uptime Kuma, status=up)"),
            (Kind::UptimeKuma, _) => format!("{base} (Uptime Kuma, status=down)"),
        }
    }
}

fn verdict_word(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "WARNING",
        2 => "CRITICAL",
        _ => "UNKNOWN",
    }
}

/// Uptime Kuma's push: its own `status`, `msg` and `ping` replace any in
/// the URL (its page shows the URL with `?status=up&msg=OK&ping=`); other
/// parameters are kept.
fn kuma(base: &str, up: bool, msg: &str) -> String {
    let base = base.split('#').next().unwrap_or(base);
    let (path, query) = base.split_once('?').unwrap_or((base, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let key = p.split('=').next().unwrap_or("");
            !matches!(key, "status" | "msg" | "ping")
        })
        .map(String::from)
        .collect();
    params.push(format!("status={}", if up { "up" } else { "down" }));
    params.push(format!("msg={}", encode(msg)));
    params.push("ping=".into());
    format!("{path}?{}", params.join("&"))
}

/// Percent-encoding for a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// What `heartbeat.conf` sets.
#[derive(Debug, Default, PartialEq)]
pub struct Conf {
    /// `url = https://...`: pinged by the health timer, and in its give-up
    /// form when the service gives up.
    pub url: Option<String>,
    /// `kind = healthchecks|uptime-kuma`: the URL's format, when the rule
    /// in `Kind::of` would guess wrong.
    pub kind: Option<Kind>,
    /// `on_failure = COMMAND`: run (by `sh -c`, as root) when the service
    /// gives up.
    pub on_failure: Option<String>,
}

impl Conf {
    /// The monitor to ping, when a URL is set.
    pub fn monitor(&self) -> Option<Monitor> {
        self.url.as_deref().map(|u| Monitor::new(u, self.kind))
    }
}

/// The ping target from `heartbeat.conf` (`url = https://...`, `kind =`),
/// or None when the file is missing or sets no URL.
pub fn configured(path: &Path) -> Result<Option<Monitor>> {
    Ok(read_conf(path)?.monitor())
}

/// The whole file, strictly: the first bad line is the error.
pub fn read_conf(path: &Path) -> Result<Conf> {
    let (conf, mut problems) = read_conf_all(path)?;
    match problems.is_empty() {
        true => Ok(conf),
        false => Err(problems.remove(0)),
    }
}

/// Every good line of the file, and one error per bad line (file:line, what
/// to write; a line that could not be parsed is never quoted: it may hold
/// the URL's secret). For `alert`: a typo on one line must not cost the
/// page that the others set up. Err only when the file cannot be read.
pub fn read_conf_all(path: &Path) -> Result<(Conf, Vec<Error>)> {
    let bytes = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Conf::default(), Vec::new())),
        // Only root may read the URL (a secret); pinging is the timer's job.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Ok((Conf::default(), Vec::new()))
        }
        Err(e) => return Err(Error::io("read", path, e)),
    };
    Ok(parse_conf(path, &bytes))
}

/// Every good line of `bytes` (the file `path`), and one error per bad line.
fn parse_conf(path: &Path, bytes: &[u8]) -> (Conf, Vec<Error>) {
    let mut conf = Conf::default();
    let mut problems = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let Ok(line) = std::str::from_utf8(raw) else {
            problems.push(
                Error::config(path, i + 1, "not UTF-8 text (not shown)")
                    .with_note("rewrite the line as plain text: key = value"),
            );
            continue;
        };
        if let Err(e) = read_line(&mut conf, path, i + 1, line) {
            problems.push(e);
        }
    }
    (conf, problems)
}

fn read_line(conf: &mut Conf, path: &Path, n: usize, line: &str) -> Result<()> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(());
    }
    let Some((key, value)) = line.split_once('=') else {
        return Err(Error::config(path, n, "expected key = value")
            .with_note("write: url = https://hc-ping.com/<your-check-uuid>"));
    };
    match key.trim() {
        "url" => {
            let v = value.trim().trim_matches('"');
            check_url(v).map_err(|e| Error::config(path, n, e))?;
            conf.url = Some(v.to_string());
        }
        "kind" => {
            let v = value.trim().trim_matches('"');
            conf.kind = Some(Kind::parse(v).ok_or_else(|| {
                Error::config(path, n, format!("unknown kind {:?}", crate::output::printable(v)))
                    .with_note("write: kind = healthchecks, or kind = uptime-kuma")
            })?);
        }
        "on_failure" => {
            let v = value.trim();
            if v.is_empty() {
                return Err(Error::config(path, n, "on_failure is empty")
                    .with_note("write: on_failure = /usr/local/bin/page-me --unit jarvis-supervisor"));
            }
            conf.on_failure = Some(v.to_string());
        }
        other => {
            // A line that is a URL (or holds a token) is not echoed.
            let shown = if !other.is_empty() && other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                format!("unknown key {other:?}")
            } else {
                "unknown key (not shown: it is not a plain name)".to_string()
            };
            return Err(Error::config(path, n, shown).with_note(
                "the keys are url (url = https://...), kind (healthchecks or uptime-kuma) and on_failure (on_failure = COMMAND)",
            ));
        }
    }
    Ok(())
}

pub fn check_url(url: &str) -> std::result::Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            format!(
                "the ping URL must start with https:// or http:// (got {})",
                redact(url)
            )
        })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("the ping URL has no host".into());
    }
    Ok(())
}

/// The URL for a check that ended with `code`: the code goes at the end
/// of the path, before any query string.
pub fn url_for(base: &str, code: i32) -> String {
    if code == 0 {
        return base.to_string();
    }
    with_suffix(base, &code.to_string())
}

/// Healthchecks.io's fail endpoint: `URL/fail`, before any query string.
pub fn fail_url(base: &str) -> String {
    with_suffix(base, "fail")
}

fn with_suffix(base: &str, suffix: &str) -> String {
    let cut = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find(['?', '#']).map(|j| start + j))
        .unwrap_or(base.len());
    let (path, query) = base.split_at(cut);
    format!("{}/{suffix}{query}", path.trim_end_matches('/'))
}

/// Scheme and host only: the path is the check's secret.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            // The host ends at the path, the query or the fragment.
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            // user:password@host
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{scheme}://{host}/…")
        }
        None => "(not a URL)".into(),
    }
}

/// Sends the ping; Err says why the last attempt failed.
pub fn send(url: &str) -> std::result::Result<(), String> {
    send_with(url, RETRY)
}

/// [`send`], tried as `retry` says.
pub fn send_with(url: &str, retry: Retry) -> std::result::Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(retry.timeout))
        .http_status_as_error(false)
        .user_agent(concat!("jarvisctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut last = String::new();
    for attempt in 1..=retry.attempts {
        if attempt > 1 {
            std::thread::sleep(retry.pause);
        }
        match agent.get(url).call() {
            Ok(r) if r.status().is_success() => return Ok(()),
            // A 4xx will not heal by retrying (wrong URL, unknown check).
            Ok(r) if r.status().is_client_error() => {
                return Err(format!("the server answered {}", r.status()))
            }
            Ok(r) => last = format!("the server answered {}", r.status()),
            Err(e) => last = e.to_string().replace(url, &redact(url)),
        }
    }
    Err(format!("{last} (after {} attempts)", retry.attempts))
}

/// Pings for a check that ended with `code`, reporting only on stderr.
pub fn ping(m: &Monitor, code: i32) {
    ping_of(&Instance::Default, m, code);
}

/// [`ping`] for `instance`'s check: a named one's messages name it.
pub fn ping_of(instance: &Instance, m: &Monitor, code: i32) {
    let who = match instance {
        Instance::Default => String::new(),
        Instance::Named(n) => format!(" of instance {n}"),
    };
    let t0 = Instant::now();
    match send(&m.for_code(code)) {
        Ok(()) => {
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!("heartbeat: sent {}{who}", m.shown(Some(code)));
            }
        }
        Err(e) => eprintln!(
            "heartbeat: ping{who} to {} failed after {:.1} s: {e}; the check's result is unchanged",
            m.shown(Some(code)),
            t0.elapsed().as_secs_f64()
        ),
    }
}

/// The monitor to ping: `--ping` first (its kind by the rule), else the
/// conffile under `root`.
pub fn target(flag: Option<&str>, conf: PathBuf) -> Result<Option<Monitor>> {
    match flag {
        Some(u) => {
            check_url(u).map_err(|e| Error::new(format!("--ping: {e}")))?;
            Ok(Some(Monitor::new(u, None)))
        }
        None => configured(&conf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// Tries short enough for a test; the same loop as [`RETRY`]'s.
    const QUICK: Retry = Retry {
        attempts: 3,
        timeout: Duration::from_millis(300),
        pause: Duration::from_millis(50),
    };

    /// A loopback server that answers each request with `status` (None:
    /// reads it and never answers), and counts the requests.
    fn server(status: Option<u16>) -> (String, std::sync::mpsc::Receiver<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/5a0c-uuid", l.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut s in l.incoming().flatten() {
                let _ = BufReader::new(&s).read_line(&mut String::new());
                let _ = tx.send(());
                match status {
                    Some(c) => {
                        let _ = write!(
                            s,
                            "HTTP/1.1 {c} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                    None => held.push(s),
                }
            }
        });
        (url, rx)
    }

    /// A server that never answers costs each attempt its timeout, no more
    /// (the CLI's worst case is RETRY's: 3 x 5 s + 2 x 1 s).
    #[test]
    fn a_silent_server_costs_attempts_times_the_timeout() {
        let (url, requests) = server(None);
        let t0 = Instant::now();
        let e = send_with(&url, QUICK).unwrap_err();
        let took = t0.elapsed();
        assert_eq!(requests.try_iter().count(), 3, "{e}");
        assert!(e.ends_with("(after 3 attempts)") && !e.contains("5a0c"), "{e}");
        let floor = QUICK.timeout * 3 + QUICK.pause * 2;
        assert!(
            took >= floor && took < floor + Duration::from_secs(2),
            "took {took:?}"
        );
    }

    #[test]
    fn server_errors_are_retried_and_client_errors_are_not() {
        let (url, requests) = server(Some(503));
        let e = send_with(&url, QUICK).unwrap_err();
        assert!(e.contains("503"), "{e}");
        assert_eq!(requests.try_iter().count(), 3, "503 is retried");
        let (url, requests) = server(Some(404));
        let e = send_with(&url, QUICK).unwrap_err();
        assert!(e.contains("404"), "{e}");
        assert_eq!(requests.try_iter().count(), 1, "404 is not retried");
        let (url, requests) = server(Some(200));
        send_with(&url, QUICK).unwrap();
        assert_eq!(requests.try_iter().count(), 1);
    }

    #[test]
    fn paths_for_ok_and_failure() {
        let b = "https://hc-ping.com/5a0c-uuid";
        assert_eq!(url_for(b, 0), b);
        assert_eq!(url_for(b, 2), "https://hc-ping.com/5a0c-uuid/2");
        assert_eq!(url_for("http://h/x/", 3), "http://h/x/3");
        // Issue 13, finding 12: the code goes before the query string.
        assert_eq!(url_for("https://h/p?token=abc", 2), "https://h/p/2?token=abc");
        assert_eq!(url_for("https://h?token=abc", 2), "https://h/2?token=abc");
        assert_eq!(fail_url("https://h/p?token=abc"), "https://h/p/fail?token=abc");
        assert_eq!(
            fail_url("https://hc-ping.com/uuid/"),
            "https://hc-ping.com/uuid/fail"
        );
    }

    #[test]
    fn the_secret_path_is_never_shown() {
        assert_eq!(redact("https://hc-ping.com/5a0c-uuid"), "https://hc-ping.com/…");
        assert_eq!(redact("https://u:pw@h.example/p"), "https://h.example/…");
        assert!(!check_url("ftp://x/5a0c").unwrap_err().contains("5a0c"));
        // Issue 13, finding 12: a token in the query is the secret too.
        assert_eq!(redact("http://h.example?token=SECRET"), "http://h.example/…");
        assert_eq!(redact("http://h.example#SECRET"), "http://h.example/…");
    }

    #[test]
    fn the_conffile_names_the_bad_line() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("heartbeat.conf");
        assert_eq!(configured(&f).unwrap(), None);
        std::fs::write(&f, "# comment\n# url = https://hc-ping.com/x\n").unwrap();
        assert_eq!(configured(&f).unwrap(), None);
        std::fs::write(&f, "url = \"https://hc-ping.com/abc\"\n").unwrap();
        assert_eq!(
            configured(&f).unwrap().map(|m| m.url).as_deref(),
            Some("https://hc-ping.com/abc")
        );
        std::fs::write(&f, "\nurl: https://hc-ping.com/abc\n").unwrap();
        let e = configured(&f).unwrap_err().to_string();
        assert!(
            e.contains("heartbeat.conf:2:") && e.contains("key = value"),
            "{e}"
        );
        std::fs::write(&f, "uri = https://hc-ping.com/abc\n").unwrap();
        let e = configured(&f).unwrap_err().to_string();
        assert!(e.contains(":1:") && e.contains("unknown key"), "{e}");
        // Issue 13, finding 12: a line that is only a URL is not echoed.
        std::fs::write(&f, "https://hc-ping.com/SECRET-uuid?x=1\n").unwrap();
        let e = configured(&f).unwrap_err().to_string();
        assert!(e.contains(":1:") && !e.contains("SECRET"), "{e}");
    }

    #[test]
    fn on_failure_is_read_beside_the_url_and_an_empty_one_is_named() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("heartbeat.conf");
        std::fs::write(
            &f,
            "url = https://hc-ping.com/abc\non_failure = /usr/local/bin/page-me \"$JARVIS_ALERT_REASON\"\n",
        )
        .unwrap();
        let c = read_conf(&f).unwrap();
        assert_eq!(c.url.as_deref(), Some("https://hc-ping.com/abc"));
        assert_eq!(
            c.on_failure.as_deref(),
            Some("/usr/local/bin/page-me \"$JARVIS_ALERT_REASON\"")
        );
        std::fs::write(&f, "on_failure =\n").unwrap();
        let e = read_conf(&f).unwrap_err().to_string();
        assert!(e.contains(":1:") && e.contains("on_failure is empty"), "{e}");
    }

    /// Issue 26: a named instance's file sits beside the default's, in the
    /// same format; root runs its on_failure, so a link, a file others can
    /// write or another owner's is refused with the fix, and a missing one
    /// sets nothing.
    #[test]
    fn a_named_instances_file_is_its_own_and_read_only_when_only_root_can_write_it() {
        use std::os::unix::fs::PermissionsExt;
        let alpha = Instance::Named("alpha".parse().unwrap());
        assert_eq!(conf_of(&Instance::Default), PathBuf::from(CONF));
        assert_eq!(
            conf_of(&alpha),
            PathBuf::from("/etc/jarvis-supervisor/heartbeat@alpha.conf")
        );
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::rooted(root.path());
        assert_eq!(read_conf_of(&paths, &alpha).unwrap().0, Conf::default());
        let dir = root.path().join("etc/jarvis-supervisor");
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("heartbeat@alpha.conf");
        std::fs::write(&f, "url = https://hc-ping.com/alpha\nbad line\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let (conf, problems) = read_conf_of(&paths, &alpha).unwrap();
        assert_eq!(conf.url.as_deref(), Some("https://hc-ping.com/alpha"));
        assert!(
            problems[0].to_string().contains("heartbeat@alpha.conf:2:"),
            "{}",
            problems[0]
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o660)).unwrap();
        let e = read_conf_of(&paths, &alpha).unwrap_err();
        assert!(
            e.to_string().contains("writable by others") && format!("{e:?}").contains("chmod 0640"),
            "{e:?}"
        );
        std::fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink(dir.join("heartbeat.conf"), &f).unwrap();
        let e = read_conf_of(&paths, &alpha).unwrap_err().to_string();
        assert!(e.contains("a symbolic link"), "{e}");
    }

    #[test]
    fn the_kind_follows_the_documented_rule_or_the_conffile() {
        assert_eq!(Kind::of("https://hc-ping.com/uuid"), Kind::Healthchecks);
        assert_eq!(
            Kind::of("https://kuma.example/api/push/Tok3n?status=up&msg=OK&ping="),
            Kind::UptimeKuma
        );
        assert_eq!(Kind::of("https://h/x?next=/api/push/y"), Kind::Healthchecks);
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("heartbeat.conf");
        std::fs::write(&f, "url = https://status.example/p/Tok3n\nkind = uptime-kuma\n").unwrap();
        assert_eq!(configured(&f).unwrap().unwrap().kind, Kind::UptimeKuma);
        std::fs::write(&f, "url = https://h/api/push/x\nkind = healthchecks\n").unwrap();
        assert_eq!(configured(&f).unwrap().unwrap().kind, Kind::Healthchecks);
        std::fs::write(&f, "url = https://h/x\nkind = pagerduty\n").unwrap();
        let e = configured(&f).unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("uptime-kuma"), "{e}");
    }

    #[test]
    fn uptime_kuma_gets_status_msg_and_ping_never_a_path_suffix() {
        // As Uptime Kuma's page shows it, query included.
        let m = Monitor::new("https://kuma.example/api/push/Tok3n?status=up&msg=OK&ping=", None);
        assert_eq!(
            m.for_code(0),
            "https://kuma.example/api/push/Tok3n?status=up&msg=OK&ping="
        );
        assert_eq!(
            m.for_code(2),
            "https://kuma.example/api/push/Tok3n?status=down&msg=CRITICAL&ping="
        );
        assert_eq!(
            m.for_give_up(),
            "https://kuma.example/api/push/Tok3n?status=down&msg=gave%20up&ping="
        );
        // Bare, and with a parameter of its own that is kept.
        let m = Monitor::new("http://127.0.0.1:3001/api/push/Tok3n", None);
        assert_eq!(
            m.for_code(1),
            "http://127.0.0.1:3001/api/push/Tok3n?status=down&msg=WARNING&ping="
        );
        let m = Monitor::new("https://k/api/push/T?x=1&status=down#frag", None);
        assert_eq!(m.for_code(0), "https://k/api/push/T?x=1&status=up&msg=OK&ping=");
        assert_eq!(m.shown(Some(0)), "https://k/… (Uptime Kuma, status=up)");
        // Healthchecks: unchanged.
        let h = Monitor::new("https://hc-ping.com/uuid", None);
        assert_eq!(h.for_code(3), "https://hc-ping.com/uuid/3");
        assert_eq!(h.for_give_up(), "https://hc-ping.com/uuid/fail");
        assert_eq!(h.shown(Some(3)), "https://hc-ping.com/…/3");
    }
}
