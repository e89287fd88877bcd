//! The unit's `[Service]` and start-limit settings, read into the values
//! the engine acts on. Bad values are errors that name the setting.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{exit, Error, Result};
use crate::unit::{split_words, ServicePath, Unit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Simple,
    Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyAccess {
    None,
    Main,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    No,
    Always,
    OnSuccess,
    OnFailure,
    OnAbnormal,
    OnWatchdog,
    OnAbort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preserve {
    No,
    Yes,
    Restart,
}

/// One command line of `ExecStartPre=`/`ExecStart=`.
#[derive(Debug, Clone)]
pub struct ExecLine {
    pub argv: Vec<String>,
    /// `-` prefix: a failure is tolerated.
    pub ignore_failure: bool,
    /// `+` prefix: run with full privileges (as root, not as User=).
    pub privileged: bool,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub description: Option<String>,
    pub kind: Kind,
    pub notify_access: NotifyAccess,
    /// `ExecCondition=`: exit 1-254 skips the start (not a failure).
    pub exec_condition: Vec<ExecLine>,
    pub exec_start_pre: Vec<ExecLine>,
    pub exec_start: ExecLine,
    pub working_directory: Option<ServicePath>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub environment: Vec<(String, String)>,
    pub environment_files: Vec<ServicePath>,
    pub restart: Restart,
    pub restart_sec: Duration,
    pub timeout_start: Option<Duration>,
    pub timeout_stop: Option<Duration>,
    pub timeout_abort: Option<Duration>,
    pub watchdog: Option<Duration>,
    pub start_limit_interval: Duration,
    pub start_limit_burst: u32,
    pub memory_max: Option<u64>,
    pub runtime_directory: Vec<String>,
    pub runtime_preserve: Preserve,
    pub umask: u32,
    /// `NoNewPrivileges=`: PR_SET_NO_NEW_PRIVS before the exec.
    pub no_new_privileges: bool,
}

fn bad(key: &str, value: &str, what: &str) -> Error {
    let mut e = Error::new(format!("unit setting {key}={value}: {what}"))
        .with_note("fix the unit or its drop-in; systemd-analyze verify shows the same mistake");
    e = e.with_code(exit::USAGE);
    e
}

/// A systemd time span ("300s", "1min 30s", "0.2s", "150"); `None` for
/// "infinity" or 0 where 0 means "no timeout".
pub fn timespan(key: &str, v: &str) -> Result<Option<Duration>> {
    let Some(total) = crate::timespan::parse(v).map_err(|what| bad(key, v, what))? else {
        return Ok(None);
    };
    // Past about 31 years a span is "forever": a bigger one would overflow
    // Duration or a deadline (issue 13, finding 13: it panicked).
    Ok(Some(Duration::from_secs_f64(if total.is_finite() {
        total.min(FOREVER)
    } else {
        FOREVER
    })))
}

/// The longest span kept as given, in seconds.
const FOREVER: f64 = 1e9;

/// A byte size ("4G", "512M", "1073741824", "infinity").
pub fn bytes(key: &str, v: &str) -> Result<Option<u64>> {
    let v = v.trim();
    if v == "infinity" {
        return Ok(None);
    }
    if v.ends_with('%') {
        return Err(bad(
            key,
            v,
            "a percentage of RAM is not supported by jarvisctl run",
        ));
    }
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().map_err(|_| bad(key, v, "not a size"))?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(bad(key, v, "unknown size unit (use K, M, G or T)")),
    };
    Ok(Some((n * mult as f64) as u64))
}

fn exec_line(key: &str, v: &str) -> Result<ExecLine> {
    let mut words = split_words(v);
    let Some(first) = words.first_mut() else {
        return Err(bad(key, v, "empty command"));
    };
    let prefix_len = first.len() - first.trim_start_matches(['-', '@', ':', '+', '!']).len();
    let prefix = first[..prefix_len].to_string();
    *first = first[prefix_len..].to_string();
    Ok(ExecLine {
        argv: words,
        ignore_failure: prefix.contains('-'),
        privileged: prefix.contains('+'),
    })
}

fn boolish<T>(key: &str, v: &str, table: &[(&str, T)]) -> Result<T>
where
    T: Copy,
{
    table
        .iter()
        .find(|(name, _)| *name == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| bad(key, v, "unknown value"))
}

impl Service {
    pub fn from_unit(unit: &Unit) -> Result<Service> {
        let get = |k: &str| unit.last("Service", k);
        let kind = match get("Type").as_deref() {
            None | Some("simple") | Some("exec") => Kind::Simple,
            Some("notify") | Some("notify-reload") => Kind::Notify,
            Some(v) => return Err(bad("Type", v, "jarvisctl run supports simple, exec and notify")),
        };
        let notify_access = match get("NotifyAccess").as_deref() {
            None if kind == Kind::Notify => NotifyAccess::Main,
            None => NotifyAccess::None,
            Some(v) => boolish(
                "NotifyAccess",
                v,
                &[
                    ("none", NotifyAccess::None),
                    ("main", NotifyAccess::Main),
                    ("exec", NotifyAccess::Main),
                    ("all", NotifyAccess::All),
                ],
            )?,
        };
        let Some(start) = get("ExecStart") else {
            return Err(Error::new("the unit has no ExecStart=")
                .with_note("reinstall the package, or check the drop-ins for an empty ExecStart=")
                .with_code(exit::USAGE));
        };
        let exec_start = exec_line("ExecStart", &start)?;
        let exec_condition = unit
            .values("Service", "ExecCondition")
            .iter()
            .map(|v| exec_line("ExecCondition", v))
            .collect::<Result<Vec<_>>>()?;
        let exec_start_pre = unit
            .values("Service", "ExecStartPre")
            .iter()
            .map(|v| exec_line("ExecStartPre", v))
            .collect::<Result<Vec<_>>>()?;
        let mut environment = Vec::new();
        for v in unit.values("Service", "Environment") {
            for word in split_words(&v) {
                match word.split_once('=') {
                    Some((k, val)) => environment.push((k.to_string(), val.to_string())),
                    None => return Err(bad("Environment", &v, "expected VAR=VALUE")),
                }
            }
        }
        let restart = match get("Restart").as_deref() {
            None => Restart::No,
            Some(v) => boolish(
                "Restart",
                v,
                &[
                    ("no", Restart::No),
                    ("always", Restart::Always),
                    ("on-success", Restart::OnSuccess),
                    ("on-failure", Restart::OnFailure),
                    ("on-abnormal", Restart::OnAbnormal),
                    ("on-watchdog", Restart::OnWatchdog),
                    ("on-abort", Restart::OnAbort),
                ],
            )?,
        };
        let span = |k: &str, default: Option<Duration>| -> Result<Option<Duration>> {
            match get(k) {
                None => Ok(default),
                Some(v) => Ok(timespan(k, &v)?.filter(|d| !d.is_zero())),
            }
        };
        let default_timeout = Some(Duration::from_secs(90));
        let timeout_both = span("TimeoutSec", default_timeout)?;
        let timeout_stop = span("TimeoutStopSec", timeout_both)?;
        let start_limit_interval = match unit.last("Unit", "StartLimitIntervalSec") {
            None => Duration::from_secs(10),
            Some(v) => timespan("StartLimitIntervalSec", &v)?.unwrap_or(Duration::ZERO),
        };
        let start_limit_burst = match unit.last("Unit", "StartLimitBurst") {
            None => 5,
            Some(v) => v
                .parse()
                .map_err(|_| bad("StartLimitBurst", &v, "not a number"))?,
        };
        let memory_max = match get("MemoryMax") {
            None => None,
            Some(v) => bytes("MemoryMax", &v)?,
        };
        let runtime_preserve = match get("RuntimeDirectoryPreserve").as_deref() {
            None => Preserve::No,
            Some(v) => boolish(
                "RuntimeDirectoryPreserve",
                v,
                &[
                    ("no", Preserve::No),
                    ("false", Preserve::No),
                    ("yes", Preserve::Yes),
                    ("true", Preserve::Yes),
                    ("restart", Preserve::Restart),
                ],
            )?,
        };
        let no_new_privileges = match get("NoNewPrivileges").as_deref() {
            None => false,
            Some(v) => boolish(
                "NoNewPrivileges",
                v,
                &[
                    ("yes", true),
                    ("true", true),
                    ("on", true),
                    ("1", true),
                    ("no", false),
                    ("false", false),
                    ("off", false),
                    ("0", false),
                ],
            )?,
        };
        let umask = match get("UMask") {
            None => 0o022,
            Some(v) => u32::from_str_radix(&v, 8).map_err(|_| bad("UMask", &v, "not an octal mode"))?,
        };
        let runtime_directory = unit.words("Service", "RuntimeDirectory");
        for d in &runtime_directory {
            if d.starts_with('/') || d.split('/').any(|c| c == "..") {
                return Err(bad("RuntimeDirectory", d, "must be a relative path below /run"));
            }
        }
        Ok(Service {
            description: unit.last("Unit", "Description"),
            kind,
            notify_access,
            exec_condition,
            exec_start_pre,
            exec_start,
            working_directory: unit.working_directory(),
            user: get("User"),
            group: get("Group"),
            environment,
            environment_files: unit.environment_files(),
            restart,
            restart_sec: span("RestartSec", Some(Duration::from_millis(100)))?.unwrap_or_default(),
            timeout_start: span("TimeoutStartSec", timeout_both)?,
            timeout_stop,
            timeout_abort: span("TimeoutAbortSec", timeout_stop)?,
            watchdog: span("WatchdogSec", None)?,
            start_limit_interval,
            start_limit_burst,
            memory_max,
            runtime_directory,
            runtime_preserve,
            umask,
            no_new_privileges,
        })
    }

    /// The working directory as a plain path (the `-` prefix only makes a
    /// missing one tolerated).
    pub fn workdir(&self) -> Option<PathBuf> {
        self.working_directory.as_ref().map(|w| w.path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_spans_like_systemd() {
        let s = |v| timespan("X", v).unwrap();
        assert_eq!(s("300s"), Some(Duration::from_secs(300)));
        assert_eq!(s("3h"), Some(Duration::from_secs(10800)));
        assert_eq!(s("1min 30s"), Some(Duration::from_secs(90)));
        assert_eq!(s("1min30s"), Some(Duration::from_secs(90)));
        assert_eq!(s("0.2s"), Some(Duration::from_millis(200)));
        assert_eq!(s("150"), Some(Duration::from_secs(150)));
        assert_eq!(s("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(s("infinity"), None);
        assert!(timespan("X", "3 parsecs").is_err());
        // Issue 13, finding 13: huge spans are "forever", never a panic,
        // and a deadline made from one does not overflow.
        for huge in [
            "99999999999999999999999999",
            "1e400w",
            "18446744073709551616s",
            "9999999999999999999w",
        ] {
            let d = timespan("TimeoutStopSec", huge)
                .map(|d| d.unwrap_or_default())
                .unwrap_or_default();
            assert!(d <= Duration::from_secs(1_000_000_000), "{huge}: {d:?}");
            let _ = std::time::Instant::now() + d;
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes("M", "4G").unwrap(), Some(4 << 30));
        assert_eq!(bytes("M", "512M").unwrap(), Some(512 << 20));
        assert_eq!(bytes("M", "infinity").unwrap(), None);
    }

    #[test]
    fn a_plus_line_keeps_root_and_a_minus_line_may_fail() {
        let l = exec_line("ExecStartPre", "+/usr/bin/jarvisctl settle --by start").unwrap();
        assert_eq!(l.argv, ["/usr/bin/jarvisctl", "settle", "--by", "start"]);
        assert!(l.privileged && !l.ignore_failure);
        let l = exec_line("ExecStartPre", "-/usr/bin/true").unwrap();
        assert!(!l.privileged && l.ignore_failure);
        let l = exec_line("ExecStartPre", "/usr/bin/jarvisctl backoff").unwrap();
        assert!(!l.privileged && !l.ignore_failure);
    }
}
