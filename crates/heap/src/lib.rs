//! Memory that glibc's allocator holds free, handed back to the system once a burst of work is
//! over.
//!
//! glibc returns freed memory on its own only from the top of its heap (the image's
//! `trim_threshold`); pages freed below a block that is still live stay resident until they are
//! reused. After the catalog-publisher's full sync of 100,000 products that was ~7.5 MB of its
//! ~63 MB, enough to put it over its 64 MB budget in half of the runs (BENCHMARKS.md, "Freed
//! memory handed back after a burst"). `malloc_trim(0)` gives those pages back; it walks the
//! allocator's free lists under its lock, so it is called when the process has just gone quiet
//! after real work, not on a fixed beat.

use std::time::{Duration, Instant};

/// Gives the pages glibc's allocator holds free back to the system (`malloc_trim(0)`). Returns
/// whether anything was released. Elsewhere than Linux with glibc it does nothing.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers and only rearranges glibc's own free lists,
        // which it locks while it runs.
        #[allow(unsafe_code)]
        let released = unsafe { libc::malloc_trim(0) };
        released == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// CPU time the process has used so far, all threads together; `None` where the clock is
/// unavailable.
pub fn process_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        (rc == 0).then(|| {
            Duration::new(
                u64::try_from(ts.tv_sec).unwrap_or(0),
                u32::try_from(ts.tv_nsec).unwrap_or(0),
            )
        })
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// When a trim is worth it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// How often the process's CPU use is looked at.
    pub tick: Duration,
    /// CPU the process must have used in busy (not quiet) ticks since the last trim: an idle
    /// service has nothing to give back, and the ticks of its timers never count.
    pub min_work: Duration,
    /// A tick is quiet when the process used at most this share of one core in it (percent).
    pub quiet_percent: u32,
    /// Under load that never pauses, a trim once the work has been waiting this long.
    pub max_wait: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            tick: Duration::from_secs(1),
            min_work: Duration::from_millis(500),
            quiet_percent: 10,
            max_wait: Duration::from_secs(300),
        }
    }
}

/// The decision, apart from the clocks: fed each tick's length and the CPU used in it.
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    /// CPU used in busy ticks since the last trim (quiet ticks are timers and heartbeats).
    work: Duration,
    /// How long the trim has been due (enough work done) without a quiet tick.
    due_for: Duration,
}

impl Tracker {
    /// Records one tick; whether to trim now (the tracker then starts over).
    pub fn tick(&mut self, policy: &Policy, elapsed: Duration, cpu: Duration) -> bool {
        let quiet = cpu.as_nanos() * 100 <= elapsed.as_nanos() * u128::from(policy.quiet_percent);
        let trim = if quiet {
            self.work >= policy.min_work
        } else {
            self.work = self.work.saturating_add(cpu);
            if self.work >= policy.min_work {
                self.due_for = self.due_for.saturating_add(elapsed);
            }
            self.due_for >= policy.max_wait
        };
        if trim {
            *self = Tracker::default();
        }
        trim
    }
}

/// Watches the process's CPU use and trims the allocator each time a burst of work has ended
/// (`policy`). Runs until the runtime shuts down; spawn it once per process.
pub async fn trim_after_bursts(policy: Policy) {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let Some(mut last_cpu) = process_cpu_time() else {
        return;
    };
    let mut last = Instant::now();
    let mut tracker = Tracker::default();
    let mut ticker = tokio::time::interval(policy.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(cpu) = process_cpu_time() else {
            return;
        };
        let now = Instant::now();
        let trim = tracker.tick(
            &policy,
            now.duration_since(last),
            cpu.saturating_sub(last_cpu),
        );
        (last, last_cpu) = (now, cpu);
        if trim {
            let started = Instant::now();
            // It holds the allocator's lock for the walk: off the async workers.
            let released = tokio::task::spawn_blocking(release_free_memory)
                .await
                .unwrap_or(false);
            tracing::debug!(
                released,
                took_us = started.elapsed().as_micros() as u64,
                "freed memory handed back to the system"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const TICK: Duration = Duration::from_secs(1);

    #[test]
    fn an_idle_process_is_never_trimmed() {
        let p = Policy::default();
        let mut t = Tracker::default();
        // Timers and heartbeats: 2 ms a second, for two hours.
        assert!((0..7200).all(|_| !t.tick(&p, TICK, 2 * MS)));
    }

    #[test]
    fn a_burst_is_trimmed_on_the_first_quiet_tick_and_only_once() {
        let p = Policy::default();
        let mut t = Tracker::default();
        for _ in 0..30 {
            assert!(!t.tick(&p, TICK, 900 * MS), "not while busy");
        }
        assert!(t.tick(&p, TICK, 5 * MS), "trimmed once quiet");
        assert!(
            (0..600).all(|_| !t.tick(&p, TICK, 5 * MS)),
            "then left alone"
        );
    }

    #[test]
    fn a_short_burst_below_the_minimum_waits_for_more_work() {
        let p = Policy::default();
        let mut t = Tracker::default();
        assert!(!t.tick(&p, TICK, 300 * MS));
        assert!(
            !t.tick(&p, TICK, MS),
            "300 ms of work is not worth a trim yet"
        );
        assert!(!t.tick(&p, TICK, 300 * MS));
        assert!(t.tick(&p, TICK, MS), "600 ms in all is");
    }

    #[test]
    fn load_that_never_pauses_is_trimmed_every_max_wait() {
        let p = Policy::default();
        let mut t = Tracker::default();
        let trims: Vec<usize> = (0..1000).filter(|_| t.tick(&p, TICK, 600 * MS)).collect();
        // Every 300 busy ticks (`max_wait`).
        assert_eq!(trims, vec![299, 599, 899]);
    }

    #[test]
    fn quiet_is_a_share_of_the_tick_really_elapsed() {
        let p = Policy::default();
        let mut t = Tracker::default();
        assert!(!t.tick(&p, TICK, 800 * MS));
        // A late tick (the runtime was busy) with 150 ms over 2 s is quiet; over 1 s it is not.
        let mut late = t.clone();
        assert!(!t.tick(&p, TICK, 150 * MS));
        assert!(late.tick(&p, 2 * TICK, 150 * MS));
    }

    #[test]
    fn the_process_clock_advances_with_work() {
        let before = process_cpu_time().expect("a process CPU clock on this platform");
        let mut x = 0u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        let after = process_cpu_time().unwrap();
        assert!(after > before, "{before:?} → {after:?}");
    }

    fn rss_kb() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn pages_freed_below_live_blocks_go_back_to_the_system() {
        // 64 MiB in 2 KiB blocks (from the heap, not mmap), every 16th kept alive: the freed
        // runs between them are whole pages glibc does not return on its own.
        let mut blocks: Vec<Vec<u8>> = (0..32 * 1024).map(|i| vec![i as u8 | 1; 2048]).collect();
        let mut i = 0;
        blocks.retain(|_| {
            i += 1;
            i % 16 == 0
        });
        let before = rss_kb();
        assert!(release_free_memory(), "something to release");
        let after = rss_kb();
        assert!(
            before.saturating_sub(after) > 32 * 1024,
            "RSS {before} kB → {after} kB"
        );
        std::hint::black_box(&blocks);
    }
}
