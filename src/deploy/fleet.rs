//! The order hosts are deployed in: at most `parallel` at once, and with
//! `rolling`, a canary host first, then batches of `parallel`, stopping at
//! the first failure (the hosts after it are skipped, never half-tried).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How hosts are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    /// Hosts in flight at once (at least 1).
    pub parallel: usize,
    /// A canary, then batches; the first failure stops the rest.
    pub rolling: bool,
}

impl Order {
    /// `--serial`: one after the other, stopping at the first failure.
    pub const SERIAL: Order = Order {
        parallel: 1,
        rolling: true,
    };
}

/// Why a job has no result of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRun {
    /// Not tried: an earlier host failed.
    Skipped,
    /// Its run panicked.
    Panicked,
}

/// Runs `one` on every job in `order`; the results in the jobs' order.
/// `ok` says whether a result lets a rolling deploy go on; `not_run` makes
/// the result of a job that has none.
pub fn run<J: Sync, R: Send>(
    jobs: &[J],
    order: Order,
    one: impl Fn(&J) -> R + Sync,
    ok: impl Fn(&R) -> bool,
    not_run: impl Fn(&J, NotRun) -> R,
) -> Vec<R> {
    let parallel = order.parallel.max(1);
    let mut out: Vec<Option<R>> = jobs.iter().map(|_| None).collect();
    if order.rolling {
        // The canary alone, then batches of `parallel`.
        let mut start = 0;
        let mut failed = false;
        while start < jobs.len() {
            let size = if start == 0 { 1 } else { parallel };
            let end = (start + size).min(jobs.len());
            if failed {
                for (i, j) in jobs.iter().enumerate().take(end).skip(start) {
                    out[i] = Some(not_run(j, NotRun::Skipped));
                }
            } else {
                let batch = pool(&jobs[start..end], parallel, &one);
                for (k, r) in batch.into_iter().enumerate() {
                    let r = r.unwrap_or_else(|| not_run(&jobs[start + k], NotRun::Panicked));
                    failed |= !ok(&r);
                    out[start + k] = Some(r);
                }
            }
            start = end;
        }
    } else {
        for (k, r) in pool(jobs, parallel, &one).into_iter().enumerate() {
            out[k] = Some(r.unwrap_or_else(|| not_run(&jobs[k], NotRun::Panicked)));
        }
    }
    out.into_iter()
        .map(|r| r.expect("every job has a result"))
        .collect()
}

/// Every job, at most `parallel` at once, on that many threads taking the
/// next job as they come free; None for a job whose run panicked (the
/// others go on).
fn pool<J: Sync, R: Send>(jobs: &[J], parallel: usize, one: &(impl Fn(&J) -> R + Sync)) -> Vec<Option<R>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(jobs.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..parallel.min(jobs.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(i) else { break };
                if let Ok(r) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one(job))) {
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Runs `n` jobs, job `fail` failing; (the order they started in, the
    /// most in flight at once, the results).
    fn trace(n: usize, order: Order, fail: Option<usize>) -> (Vec<usize>, usize, Vec<String>) {
        let jobs: Vec<usize> = (0..n).collect();
        let started = Mutex::new(Vec::new());
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let out = run(
            &jobs,
            order,
            |&j| {
                started.lock().unwrap().push(j);
                let k = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(k, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                now.fetch_sub(1, Ordering::SeqCst);
                if Some(j) == fail {
                    format!("{j} failed")
                } else {
                    format!("{j} ok")
                }
            },
            |r| r.ends_with("ok"),
            |&j, why| match why {
                NotRun::Skipped => format!("{j} skipped"),
                NotRun::Panicked => format!("{j} panicked"),
            },
        );
        (started.into_inner().unwrap(), most.into_inner(), out)
    }

    #[test]
    fn parallel_is_a_bound_and_every_host_is_deployed_once() {
        let (started, most, out) = trace(
            10,
            Order {
                parallel: 3,
                rolling: false,
            },
            Some(2),
        );
        assert_eq!(most, 3);
        let mut s = started.clone();
        s.sort();
        assert_eq!(s, (0..10).collect::<Vec<_>>());
        // Without rolling, one failure stops nothing.
        assert_eq!(out.iter().filter(|r| r.ends_with("ok")).count(), 9);
        assert_eq!(out[2], "2 failed");
    }

    #[test]
    fn rolling_takes_the_canary_alone_then_batches_and_stops_at_a_failure() {
        let rolling = Order {
            parallel: 2,
            rolling: true,
        };
        let (started, most, out) = trace(6, rolling, None);
        assert_eq!(started[0], 0, "the canary first");
        assert_eq!(most, 2);
        assert!(out.iter().all(|r| r.ends_with("ok")));

        // A failing canary: nothing else is tried.
        let (started, _, out) = trace(6, rolling, Some(0));
        assert_eq!(started, vec![0]);
        assert_eq!(out[1..].iter().filter(|r| r.ends_with("skipped")).count(), 5);

        // A failure in the first batch (hosts 1 and 2): its batch ends,
        // the rest is skipped.
        let (started, _, out) = trace(6, rolling, Some(1));
        assert_eq!(started.len(), 3);
        assert_eq!(out[1], "1 failed");
        assert_eq!(out[2], "2 ok");
        assert!(out[3..].iter().all(|r| r.ends_with("skipped")));
    }

    #[test]
    fn a_host_whose_run_panics_is_failed_and_the_others_go_on() {
        let jobs: Vec<usize> = (0..3).collect();
        let out = run(
            &jobs,
            Order {
                parallel: 2,
                rolling: false,
            },
            |&j| {
                assert!(j != 1, "host 1 panics");
                "ok"
            },
            |r| *r == "ok",
            |_, why| {
                if why == NotRun::Panicked {
                    "panicked"
                } else {
                    "skipped"
                }
            },
        );
        assert_eq!(out, vec!["ok", "panicked", "ok"]);
    }

    #[test]
    fn serial_is_one_at_a_time_stopping_at_the_first_failure() {
        let (started, most, out) = trace(4, Order::SERIAL, Some(1));
        assert_eq!((started, most), (vec![0, 1], 1));
        assert_eq!(out, vec!["0 ok", "1 failed", "2 skipped", "3 skipped"]);
    }
}
