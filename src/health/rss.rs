//! The resident memory of the bot's processes, where no cgroup counts it.

/// The resident memory of every process in the unit's cgroup, summed.
pub(super) fn rss_of_cgroup(cg: &str) -> Option<u64> {
    let procs = [
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/systemd",
    ]
    .iter()
    .find_map(|root| std::fs::read_to_string(format!("{root}{cg}/cgroup.procs")).ok())?;
    sum_rss(procs.split_whitespace())
}

/// A process's resident memory in bytes (VmRSS), if it still exists.
fn vm_rss(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// The summed RSS of `pids`; None when none of them could be read.
pub(super) fn sum_rss<'a>(pids: impl Iterator<Item = &'a str>) -> Option<u64> {
    let sizes: Vec<u64> = pids.filter_map(vm_rss).collect();
    (!sizes.is_empty()).then(|| sizes.iter().sum())
}
