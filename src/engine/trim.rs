//! Gives back the code pages that only starting needed. A supervisor lives
//! for months, and most of its binary (argument parsing, the unit parser,
//! the checks) runs once. Once the program is ready, the engine drops its
//! clean read-only mappings (code, constants) from its page tables; the few pages the
//! event loop runs fault back in from the page cache. This is what keeps
//! its resident memory under runit's.
//!
//! Only read-only file mappings without a single private page are dropped
//! (code and constant data): their pages are clean copies of the file, so
//! dropping them loses nothing. Writable data, and read-only data that was
//! relocated (copied) before being made read-only, is never touched.

// The one unsafe call of the binary: madvise() on mappings that Rust does
// not own. Sound because a dropped page of a private read-only executable
// mapping is re-read, unchanged, from its file on the next access.
#![allow(unsafe_code)]

use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{madvise, MmapAdvise};

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

/// Drops this process's resident code pages; returns the bytes advised.
pub fn drop_code_pages() -> usize {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut total = 0;
    for (start, len) in clean_mappings(&smaps) {
        let (Some(ptr), Some(_)) = (
            NonNull::new(start as *mut std::ffi::c_void),
            NonZeroUsize::new(len),
        ) else {
            continue;
        };
        // SAFETY: a whole read-only mapping of a file, from the kernel's own
        // list: page-aligned, mapped, private, and without a single private
        // page (read-only memory cannot gain one). MADV_DONTNEED on it only
        // unmaps clean pages that the next access reads back from the file.
        if unsafe { madvise(ptr, len, MmapAdvise::MADV_DONTNEED) }.is_ok() {
            total += len;
        }
    }
    total
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
    fn dropping_code_pages_keeps_the_process_running() {
        let before = drop_code_pages();
        assert!(before > 0);
        // Code runs on after its pages were dropped: they fault back in.
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 500_500);
        assert!(clean_mappings("").is_empty());
    }
}
