//! What the benchmark reads from /proc: process trees, CPU time, context
//! switches, RSS and PSS.

use std::collections::HashMap;
use std::path::Path;

/// The fields of /proc/PID/stat that the benchmark uses.
#[derive(Debug, PartialEq)]
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub start_time: u64,
}

/// Parse /proc/PID/stat. The command name may hold spaces and parentheses,
/// so the fields are counted from the last ')'.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let f: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // f[0] is field 3 (state): field N is f[N - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        comm,
        state: f.first()?.chars().next()?,
        ppid: num(4)? as u32,
        cpu_ticks: num(14)? + num(15)?,
        start_time: num(22)?,
    })
}

pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// A "Key: value kB" (or plain number) field of /proc status-like files.
pub fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Voluntary + involuntary context switches of every thread of `pid`.
pub fn context_switches(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut sum = 0;
    for t in tasks.flatten() {
        let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        sum += field(&s, "voluntary_ctxt_switches").unwrap_or(0)
            + field(&s, "nonvoluntary_ctxt_switches").unwrap_or(0);
    }
    Some(sum)
}

/// (RSS, PSS) in kB.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some((field(&status, "VmRSS")?, field(&rollup, "Pss")?))
}

/// Parent of every live process.
pub fn parents() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(s) = stat(pid) {
            map.insert(pid, s.ppid);
        }
    }
    map
}

/// `roots` and all their descendants, roots first.
pub fn tree(roots: &[u32], parents: &HashMap<u32, u32>) -> Vec<u32> {
    let mut out: Vec<u32> = roots
        .iter()
        .copied()
        .filter(|p| parents.contains_key(p))
        .collect();
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        let mut kids: Vec<u32> = parents
            .iter()
            .filter(|(k, pp)| **pp == p && !out.contains(k))
            .map(|(k, _)| *k)
            .collect();
        kids.sort_unstable();
        out.extend(kids);
        i += 1;
    }
    out
}

/// The executable of a process, if it can be read.
pub fn exe(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

pub fn alive(pid: u32, start_time: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && stat(pid).is_some_and(|s| s.start_time == start_time && s.state != 'Z')
}

/// Clock ticks per second (USER_HZ); 100 on every Linux the bench runs on.
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_strange_name() {
        let text = "42 (a) b (c) S 7 42 42 0 -1 4194560 100 0 0 0 12 30 0 0 20 0 1 0 5555 1000 200";
        let s = parse_stat(text).unwrap();
        assert_eq!(
            s,
            Stat {
                comm: "a) b (c".into(),
                state: 'S',
                ppid: 7,
                cpu_ticks: 42,
                start_time: 5555
            }
        );
    }

    #[test]
    fn status_fields() {
        let text =
            "Name:\tx\nVmRSS:\t    1336 kB\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(field(text, "VmRSS"), Some(1336));
        assert_eq!(field(text, "voluntary_ctxt_switches"), Some(12));
        assert_eq!(field(text, "nonvoluntary_ctxt_switches"), Some(3));
        assert_eq!(field(text, "Pss"), None);
    }

    #[test]
    fn a_tree_from_parents() {
        let parents = HashMap::from([(1, 0), (10, 1), (11, 10), (12, 11), (20, 1), (13, 10)]);
        assert_eq!(tree(&[10], &parents), [10, 11, 13, 12]);
        assert_eq!(tree(&[99], &parents), Vec::<u32>::new());
    }

    #[test]
    fn this_process_is_visible() {
        let me = std::process::id();
        assert!(stat(me).is_some());
        assert!(memory(me).unwrap().0 > 0);
        assert!(context_switches(me).is_some());
    }
}
