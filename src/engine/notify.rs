//! The engine's own `NOTIFY_SOCKET`: a datagram socket at a file system
//! path, with the sender's credentials on every message (SO_PASSCRED), read
//! without blocking so that a flood never stalls the program.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    bind, recvmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag,
    SockType, UnixAddr, UnixCredentials,
};

use crate::error::{Error, Result};

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
