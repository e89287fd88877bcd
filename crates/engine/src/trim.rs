//! Gives back the pages that only starting needed. A supervisor lives
//! for months, and most of its binary (the unit parser, the checks) runs
//! once. Once the program is ready, the engine drops its clean read-only
//! mappings (code, constants) from its page tables, the unused stack and
//! the C library's free heap, just before it blocks; the few pages the
//! event loop runs fault back in from the page cache.
//!
//! Only read-only file mappings without a single private page are dropped
//! (code and constant data): their pages are clean copies of the file, so
//! dropping them loses nothing. Writable data, and read-only data that was
//! relocated (copied) before being made read-only, is never touched.

// madvise() on mappings that Rust does not own, then poll() on raw
// pollfds. Sound because a dropped page of a private read-only file
// mapping is re-read, unchanged, from its file on the next access, and a
// dropped stack page below the live frames comes back zeroed.
#![allow(unsafe_code)]

use nix::libc;
use nix::poll::{PollFd, PollTimeout};

/// The read-only file mappings in /proc/self/smaps that hold no private
/// (copied-on-write) page, as (start, length): code, and constant data
/// that was never relocated.
fn clean_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // (start, length, eligible so far)
    let mut cur: Option<(usize, usize, bool)> = None;
    let finish = |cur: Option<(usize, usize, bool)>, out: &mut Vec<(usize, usize)>| {
        if let Some((a, len, true)) = cur {
            out.push((a, len));
        }
    };
    for l in smaps.lines() {
        let mut f = l.split_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            finish(cur.take(), &mut out);
            let perms = f.next().unwrap_or("");
            let path = l.split_whitespace().nth(5);
            let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
                continue;
            };
            // File-backed only: not [vdso]/[vsyscall], not anonymous memory.
            let ok =
                (perms == "r-xp" || perms == "r--p") && path.is_some_and(|p| p.starts_with('/')) && b > a;
            cur = Some((a, b.saturating_sub(a), ok));
        } else if first == "Anonymous:" {
            // A private copy (relocated data made read-only) would be lost.
            if f.next() != Some("0") {
                if let Some(c) = cur.as_mut() {
                    c.2 = false;
                }
            }
        }
    }
    finish(cur.take(), &mut out);
    out
}

/// The `[stack]` mapping that holds `sp`, as (start, end).
fn stack_mapping(smaps: &str, sp: usize) -> Option<(usize, usize)> {
    smaps.lines().filter(|l| l.ends_with("[stack]")).find_map(|l| {
        let (a, b) = l.split_whitespace().next()?.split_once('-')?;
        let (a, b) = (
            usize::from_str_radix(a, 16).ok()?,
            usize::from_str_radix(b, 16).ok()?,
        );
        (a <= sp && sp < b).then_some((a, b))
    })
}

/// Below the current frame, this much of the stack stays: the calls made
/// from here (poll, a page of headroom).
const STACK_KEPT: usize = 16 << 10;

/// At most this many mappings are dropped (the engine maps a handful of
/// files: itself, the C library, the loader).
const MAX_MAPPINGS: usize = 64;

/// Drops what a waiting engine does not use, then waits in poll(2): the
/// resident code pages, the free memory of the C library's heap, and the
/// stack below this frame (touched once, by starting). Straight into
/// poll: any of our own code run between the drop and the wait would fault
/// its pages back in, 64 kB around each.
///
/// `scratch`: whole pages of a buffer whose contents nobody needs (the
/// log's read buffer between two drains); they come back zeroed.
pub fn drop_pages_then_poll(
    fds: &mut [PollFd],
    timeout: PollTimeout,
    scratch: (usize, usize),
) -> nix::Result<libc::c_int> {
    let ms = i32::from(timeout);
    let here = 0u8;
    let sp = std::ptr::addr_of!(here) as usize;
    // The ranges on the stack: the heap they came from is trimmed below.
    let mut ranges = [(0usize, 0usize); MAX_MAPPINGS];
    ranges[0] = scratch;
    let mut n = 1;
    if let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") {
        if let Some((start, _)) = stack_mapping(&smaps, sp) {
            let end = sp.saturating_sub(STACK_KEPT) & !0xfff;
            ranges[n] = (start, end.saturating_sub(start));
            n += 1;
        }
        for r in clean_mappings(&smaps).into_iter().take(MAX_MAPPINGS - n) {
            ranges[n] = r;
            n += 1;
        }
    }
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    for &(start, len) in &ranges[..n] {
        if len > 0 {
            // SAFETY: the caller's scratch pages (contents nobody needs;
            // zeroed on the next touch), the stack below this frame and its
            // headroom, which holds no live data (one thread, signals
            // blocked: no handler runs on it; a dropped page comes back
            // zeroed), or a whole read-only file mapping without a private
            // page (see `clean_mappings`), whose pages come back from the
            // file.
            unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        }
    }
    // SAFETY: PollFd is repr(transparent) over libc::pollfd.
    let r = unsafe { libc::poll(fds.as_mut_ptr().cast(), fds.len() as libc::nfds_t, ms) };
    nix::errno::Errno::result(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings_are_chosen() {
        let smaps = "\
55d13b96000-55d13b97000 r--p 00000000 08:01 123 /usr/bin/jarvisctl
Size:                  4 kB
Anonymous:             0 kB
55d13b97000-55d13c00000 r-xp 00001000 08:01 123 /usr/bin/jarvisctl
Anonymous:             0 kB
55d13c00000-55d13c10000 r--p 0006a000 08:01 123 /usr/bin/jarvisctl
Anonymous:            16 kB
55d13c10000-55d13c11000 rw-p 0007a000 08:01 123 /usr/bin/jarvisctl
Anonymous:             4 kB
7f0000000000-7f0000010000 r-xp 00000000 00:00 0
Anonymous:             0 kB
7ffc76500000-7ffc76502000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
7f1000000000-7f1000100000 r-xp 00028000 08:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 512 kB
Anonymous:             0 kB
";
        assert_eq!(
            clean_mappings(smaps),
            [
                (0x55d13b96000, 0x1000),
                (0x55d13b97000, 0x69000),
                (0x7f1000000000, 0x100000)
            ]
        );
    }

    #[test]
    fn the_stack_mapping_is_the_one_that_holds_the_frame() {
        let smaps = "\
7ffc76400000-7ffc76421000 rw-p 00000000 00:00 0                          [stack]
Rss:                  52 kB
7ffc76500000-7ffc76502000 r-xp 00000000 00:00 0 [vdso]
";
        assert_eq!(
            stack_mapping(smaps, 0x7ffc76410000),
            Some((0x7ffc76400000, 0x7ffc76421000))
        );
        assert_eq!(stack_mapping(smaps, 0x7ffc76500000), None);
    }

    #[test]
    fn dropping_pages_keeps_the_process_running() {
        // A pipe with a byte in it: poll returns at once, after the drop.
        let (r, w) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&w, b"x").unwrap();
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&r),
            nix::poll::PollFlags::POLLIN,
        )];
        let mut scratch = vec![7u8; 64 << 10];
        let start = scratch.as_mut_ptr() as usize;
        let first = (start + 0xfff) & !0xfff;
        let pages = (first, 32 << 10);
        let polled = drop_pages_then_poll(&mut fds, PollTimeout::from(5000u16), pages);
        assert_eq!(polled, Ok(1));
        // The scratch pages came back zeroed; the rest of the buffer kept.
        let off = first - start;
        assert!(scratch[off..off + (32 << 10)].iter().all(|&b| b == 0));
        assert!(scratch[..off].iter().all(|&b| b == 7));
        assert!(scratch[off + (32 << 10)..].iter().all(|&b| b == 7));
        // Code runs on after its pages were dropped: they fault back in.
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 500_500);
        assert!(clean_mappings("").is_empty());
    }
}
