//! Who listens on a local TCP port: the kernel's socket tables
//! (`/proc/net/tcp` and `/proc/net/tcp6`), read for the LISTEN sockets that
//! would take a connection to an address, with the uid that owns each.
//! `status` asks before it trusts an answer on the bot's health port: any
//! local user can listen there while the bot does not.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The kernel's TCP_LISTEN state, as `/proc/net/tcp` prints it.
const LISTEN: u8 = 0x0A;

/// One socket of the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub local: SocketAddr,
    pub state: u8,
    pub uid: u32,
    pub inode: u64,
}

/// The sockets of one table's text (`/proc/net/tcp` or `tcp6`); a line
/// that does not parse is skipped (the header, a truncated last line).
pub fn parse(text: &str) -> Vec<Socket> {
    text.lines().filter_map(parse_line).collect()
}

/// `   0: 0100007F:1F90 00000000:0000 0A ... 00000000  1001  0 12345 ...`:
/// sl, local, remote, st, tx:rx, tr:when, retrnsmt, uid, timeout, inode.
fn parse_line(line: &str) -> Option<Socket> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 || !f[0].ends_with(':') {
        return None;
    }
    let (addr, port) = f[1].split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(Socket {
        local: SocketAddr::new(address(addr)?, port),
        state: u8::from_str_radix(f[3], 16).ok()?,
        uid: f[7].parse().ok()?,
        inode: f[9].parse().ok()?,
    })
}

/// The kernel prints an address as 32-bit words in the host's byte order:
/// 8 hex digits for IPv4, 32 for IPv6.
fn address(hex: &str) -> Option<IpAddr> {
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(hex)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(hex.get(i * 8..i * 8 + 8)?)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// Whether a socket listening on `local` could take a connection to `dest`:
/// the same address or a wildcard, on the same port (an IPv6 wildcard takes
/// IPv4 too unless it is v6-only, which the table does not say: counted).
fn takes(local: SocketAddr, dest: SocketAddr) -> bool {
    if local.port() != dest.port() {
        return false;
    }
    match (local.ip(), dest.ip()) {
        (IpAddr::V4(l), IpAddr::V4(d)) => l == d || l.is_unspecified(),
        (IpAddr::V6(l), IpAddr::V4(d)) => l.is_unspecified() || l.to_ipv4_mapped() == Some(d),
        (IpAddr::V6(l), IpAddr::V6(d)) => l == d || l.is_unspecified(),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

/// The LISTEN sockets among `sockets` that could answer `dest`.
pub fn listening_for(sockets: &[Socket], dest: SocketAddr) -> Vec<Socket> {
    sockets
        .iter()
        .filter(|s| s.state == LISTEN && takes(s.local, dest))
        .cloned()
        .collect()
}

/// This network namespace's LISTEN sockets that could answer `dest`, from
/// both tables (a missing table, IPv6 off, counts as empty).
pub fn listeners(dest: SocketAddr) -> Vec<Socket> {
    let mut all = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            all.extend(parse(&text));
        }
    }
    listening_for(&all, dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read on an x86_64 host (little-endian words): a root listener on
    /// 0.0.0.0:2024, established connections, uid 1001 on 127.0.0.1:8080.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1047 1 00000000d62f625d 100 0 0 10 0
   1: 020200C0:9AB8 507100CB:01BB 01 00000000:00000000 00:00000000 00000000     0        0 20443 1 00000000ba050dd9 20 4 1 83 -1
   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 23952 1 00000000e9ff09a1 100 0 0 10 0
   3: 0100007F:1F90 0100007F:D4F2 06 00000000:00000000 03:000016E3 00000000     0        0 0 3 00000000aa6e2b0c
";
    /// The same host's tcp6: uid 998 on [::1]:38947, root on [::]:8080,
    /// and a v4-mapped ::ffff:127.0.0.1:9090 of uid 998.
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:9823 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 23950 1 00000000d791a634 100 0 0 10 0
   1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23951 1 00000000a1952336 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:2382 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 23960 1 00000000a1952337 100 0 0 10 0
";

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_kernels_tables_word_for_word() {
        let v4 = parse(TCP);
        assert_eq!(v4.len(), 4, "{v4:?}");
        assert_eq!(
            v4[2],
            Socket {
                local: at("127.0.0.1:8080"),
                state: LISTEN,
                uid: 1001,
                inode: 23952
            }
        );
        assert_eq!(v4[0].local, at("0.0.0.0:2024"));
        assert_eq!(v4[1].local, at("192.0.2.2:39608"));
        let v6 = parse(TCP6);
        assert_eq!(v6.len(), 3, "{v6:?}");
        assert_eq!((v6[0].local, v6[0].uid), (at("[::1]:38947"), 998));
        assert_eq!(v6[1].local, at("[::]:8080"));
        assert_eq!(v6[2].local, at("[::ffff:127.0.0.1]:9090"));
    }

    #[test]
    fn every_listener_that_could_answer_is_found_and_no_other() {
        let mut all = parse(TCP);
        all.extend(parse(TCP6));
        let who = |dest: &str| -> Vec<(String, u32)> {
            listening_for(&all, at(dest))
                .iter()
                .map(|s| (s.local.to_string(), s.uid))
                .collect()
        };
        // The foreign uid on the address, and root's dual-stack wildcard;
        // the TIME_WAIT entry on the same port is no listener.
        assert_eq!(
            who("127.0.0.1:8080"),
            [("127.0.0.1:8080".into(), 1001), ("[::]:8080".into(), 0)]
        );
        assert_eq!(who("[::1]:8080"), [("[::]:8080".into(), 0)]);
        assert_eq!(who("127.0.0.1:9090"), [("[::ffff:127.0.0.1]:9090".into(), 998)]);
        assert_eq!(who("127.0.0.1:2024"), [("0.0.0.0:2024".into(), 0)]);
        assert_eq!(who("[::1]:38947"), [("[::1]:38947".into(), 998)]);
        assert!(who("127.0.0.1:38947").is_empty());
        assert!(who("127.0.0.1:1").is_empty());
    }

    #[test]
    fn garbage_and_truncated_lines_are_skipped() {
        let text = "junk\n   0: 0100007F:1F90 00000000:0000 0A\n   1: XYZ:1F90 0 0A 0 0 0 0 0 0\n";
        assert!(parse(text).is_empty());
    }

    #[test]
    fn this_hosts_own_listener_is_seen_with_its_uid() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let found = listeners(l.local_addr().unwrap());
        let me = nix::unistd::geteuid().as_raw();
        assert!(
            found
                .iter()
                .any(|s| s.local == l.local_addr().unwrap() && s.uid == me),
            "{found:?}"
        );
    }
}
