//! The engine's own `NOTIFY_SOCKET`: a datagram socket at a file system
//! path, with the sender's credentials on every message (SO_PASSCRED), read
//! without blocking so that a flood never stalls the program; its lines
//! parsed as `Notice`s, and what the engine does on each.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    bind, recvmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag,
    SockType, UnixAddr, UnixCredentials,
};

use std::time::{Duration, Instant};

use super::{say, Engine, Role, Timer};
use jarvis_model::error::{Error, Result};
use jarvis_model::service::NotifyAccess;
use jarvis_model::state::{now_unix, RunState};

pub struct NotifySocket {
    fd: OwnedFd,
    pub path: PathBuf,
    buf: Vec<u8>,
}

/// One datagram: the sender's pid (if the kernel told) and its text.
pub struct Message {
    pub pid: Option<i32>,
    pub text: String,
}

impl NotifySocket {
    pub fn bind(path: &Path, owner: Option<(u32, u32)>) -> Result<NotifySocket> {
        let err = |what: &str, e: nix::Error| {
            Error::new(format!("cannot {what} notify socket {}: {e}", path.display()))
                .with_note("check that the state directory is writable by root")
        };
        let _ = std::fs::remove_file(path);
        let fd = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| err("create", e))?;
        setsockopt(&fd, sockopt::PassCred, &true).map_err(|e| err("set SO_PASSCRED on", e))?;
        // Room for a burst: the program never waits on a full queue while we
        // are busy writing a log chunk.
        let _ = setsockopt(&fd, sockopt::RcvBuf, &(4 << 20));
        let addr = UnixAddr::new(path).map_err(|e| err("name", e))?;
        bind(fd.as_raw_fd(), &addr).map_err(|e| err("bind", e))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| Error::io("chown notify socket", path, e))?;
        }
        Ok(NotifySocket {
            fd,
            path: path.to_path_buf(),
            buf: vec![0; 4096],
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The next datagram, or `None` when the queue is empty.
    pub fn recv(&mut self) -> Option<Message> {
        let mut cmsg = nix::cmsg_space!(UnixCredentials);
        let mut iov = [IoSliceMut::new(&mut self.buf)];
        let (len, pid) = {
            let msg = recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .ok()?;
            let mut pid = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmCredentials(cred) = c {
                        pid = Some(cred.pid());
                    }
                }
            }
            (msg.bytes, pid)
        };
        Some(Message {
            pid,
            text: String::from_utf8_lossy(&self.buf[..len]).into_owned(),
        })
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One line of an sd_notify message that the engine acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice<'a> {
    /// READY=1
    Ready,
    /// WATCHDOG=1: a ping.
    Watchdog,
    /// WATCHDOG=trigger: the program asks for the watchdog's action.
    WatchdogTrigger,
    /// WATCHDOG_USEC=N: a new watchdog period (0: none).
    WatchdogUsec(u64),
    /// STATUS=text
    Status(&'a str),
    /// STOPPING=1
    Stopping,
    /// EXTEND_TIMEOUT_USEC=N: more time for the start or the stop.
    ExtendTimeoutUsec(u64),
}

/// A line the engine does not act on is `None`: an unknown or malformed
/// one, and MAINPID= (the engine follows the process it started itself).
pub fn parse(line: &str) -> Option<Notice<'_>> {
    let (key, value) = line.split_once('=')?;
    Some(match (key, value) {
        ("READY", "1") => Notice::Ready,
        ("WATCHDOG", "1") => Notice::Watchdog,
        ("WATCHDOG", "trigger") => Notice::WatchdogTrigger,
        ("WATCHDOG_USEC", v) => Notice::WatchdogUsec(v.parse().ok()?),
        ("STATUS", v) => Notice::Status(v),
        ("STOPPING", "1") => Notice::Stopping,
        ("EXTEND_TIMEOUT_USEC", v) => Notice::ExtendTimeoutUsec(v.parse().ok()?),
        _ => return None,
    })
}

impl Engine {
    pub(super) fn read_notify(&mut self) {
        let mut dirty = false;
        for _ in 0..4096 {
            let Some(msg) = self.notify.as_mut().and_then(|n| n.recv()) else {
                break;
            };
            let main = self
                .child
                .filter(|c| c.role == Role::Main)
                .map(|c| c.pid.as_raw());
            let allowed = match self.svc.notify_access {
                NotifyAccess::None => false,
                NotifyAccess::All => main.is_some(),
                NotifyAccess::Main => main.is_some() && msg.pid == main,
            };
            if !allowed {
                self.ignored_senders += 1;
                if self.ignored_senders.is_power_of_two() {
                    say!(
                        "ignored a notify message from pid {} (NotifyAccess={:?}, main pid {}); {} so far",
                        msg.pid.unwrap_or(0),
                        self.svc.notify_access,
                        main.unwrap_or(0),
                        self.ignored_senders
                    );
                }
                continue;
            }
            for notice in msg.text.lines().filter_map(parse) {
                dirty |= self.notice(notice);
            }
        }
        if dirty {
            self.save_soon();
        }
    }

    /// Acts on one notice; true when state.json should show it.
    pub(super) fn notice(&mut self, notice: Notice<'_>) -> bool {
        match notice {
            Notice::Ready => {
                if self.st.state == RunState::Starting {
                    self.became_ready();
                }
                false
            }
            Notice::Watchdog => {
                self.st.last_watchdog_unix = Some(now_unix());
                self.st.last_watchdog_boot_s = Some(jarvis_model::state::now_boot());
                if self.st.state == RunState::Running {
                    if let Some(d) = self.watchdog {
                        self.timer = Some((Instant::now() + d, Timer::Watchdog));
                    }
                }
                true
            }
            Notice::WatchdogTrigger => {
                if self.st.state == RunState::Running {
                    self.fire(Timer::Watchdog);
                }
                true
            }
            Notice::WatchdogUsec(us) => {
                self.watchdog = (us > 0).then(|| Duration::from_micros(us));
                self.st.watchdog_usec = us;
                if self.st.state == RunState::Running {
                    self.timer = self.watchdog.map(|d| (Instant::now() + d, Timer::Watchdog));
                }
                true
            }
            Notice::Status(v) => {
                self.st.status_text = v.to_string();
                true
            }
            Notice::Stopping => {
                say!("the program reports STOPPING=1");
                self.st.state = RunState::Stopping;
                if self.timer.is_some_and(|(_, t)| t == Timer::Watchdog) {
                    self.timer = None;
                }
                true
            }
            Notice::ExtendTimeoutUsec(us) => {
                if let Some((at, t)) = self.timer {
                    if t == Timer::Start || t == Timer::Kill {
                        let new = Instant::now() + Duration::from_micros(us);
                        self.timer = Some((at.max(new), t));
                    }
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_the_engine_acts_on_are_parsed() {
        assert_eq!(parse("READY=1"), Some(Notice::Ready));
        assert_eq!(parse("WATCHDOG=1"), Some(Notice::Watchdog));
        assert_eq!(parse("WATCHDOG=trigger"), Some(Notice::WatchdogTrigger));
        assert_eq!(
            parse("WATCHDOG_USEC=30000000"),
            Some(Notice::WatchdogUsec(30_000_000))
        );
        assert_eq!(parse("WATCHDOG_USEC=0"), Some(Notice::WatchdogUsec(0)));
        assert_eq!(parse("STOPPING=1"), Some(Notice::Stopping));
        assert_eq!(
            parse("EXTEND_TIMEOUT_USEC=5000000"),
            Some(Notice::ExtendTimeoutUsec(5_000_000))
        );
    }

    #[test]
    fn status_keeps_its_whole_text_even_with_equals_signs() {
        assert_eq!(
            parse("STATUS=trading: 3 positions, pnl=+1.2%"),
            Some(Notice::Status("trading: 3 positions, pnl=+1.2%"))
        );
        assert_eq!(parse("STATUS="), Some(Notice::Status("")));
    }

    #[test]
    fn a_whole_message_is_one_notice_per_line() {
        let msg = "READY=1\nSTATUS=up\nMAINPID=4242\nWATCHDOG=1";
        let got: Vec<Notice> = msg.lines().filter_map(parse).collect();
        assert_eq!(got, [Notice::Ready, Notice::Status("up"), Notice::Watchdog]);
    }

    #[test]
    fn malformed_and_unknown_lines_are_ignored() {
        for line in [
            "",
            "READY",
            "READY=0",
            "READY=yes",
            "ready=1",
            " READY=1",
            "WATCHDOG=2",
            "WATCHDOG_USEC=",
            "WATCHDOG_USEC=-1",
            "WATCHDOG_USEC=1s",
            "EXTEND_TIMEOUT_USEC=abc",
            "EXTEND_TIMEOUT_USEC=99999999999999999999999",
            "STOPPING=0",
            "MAINPID=1",
            "ERRNO=2",
            "=1",
        ] {
            assert_eq!(parse(line), None, "{line:?}");
        }
    }
}
