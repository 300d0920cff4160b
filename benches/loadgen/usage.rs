//! The generator's own CPU during a run, from `/proc/self/stat` (the whole process, exited
//! threads included) and `/proc/self/task/*/stat` (each thread), so that a run where the
//! generator rather than the server was the limit shows as such.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Clock ticks per second of /proc stat times (`getconf CLK_TCK`).
const TICKS_PER_SECOND: f64 = 100.0;

/// How often the threads are sampled.
const PERIOD: Duration = Duration::from_millis(20);

/// A busiest thread at or above this share of a core was the limit of the run: a publisher
/// that the server keeps up with never waits, so it spins at 100% of its core.
pub const BOUND: f64 = 0.9;

/// What the generator used during a run.
pub struct Usage {
    /// User plus system CPU seconds of the whole generator (all threads).
    pub cpu_seconds: f64,
    /// The busiest thread's CPU over the time it was busy (its first to its last sample
    /// that showed progress), as a share of one core.
    pub busiest: f64,
}

/// Samples this process's threads until `finish`.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<f64>,
    start_ticks: f64,
}

/// utime + stime, in ticks, of a `stat` file's text.
fn ticks(stat: &str) -> f64 {
    // Fields after the parenthesised name from field 3 (state) on; utime and stime are
    // fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let mut fields = after.split_whitespace().skip(11);
    let mut next = || {
        fields
            .next()
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    next() + next()
}

fn process_ticks() -> f64 {
    ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// This thread's id, from `/proc/thread-self` (a link to `PID/task/TID`).
fn own_tid() -> Option<String> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

impl Sampler {
    pub fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let start_ticks = process_ticks();
        let handle = std::thread::spawn(move || {
            let me = own_tid();
            // Per thread: first sample (time, ticks) and the last one that showed progress.
            let mut seen = Seen::new();
            while !stopping.load(Ordering::Relaxed) {
                sample(&mut seen, me.as_deref());
                std::thread::sleep(PERIOD);
            }
            sample(&mut seen, me.as_deref());
            seen.values()
                .map(|((t0, c0), (t1, c1))| {
                    let busy = t1.duration_since(*t0).as_secs_f64();
                    if busy < PERIOD.as_secs_f64() * 2.0 {
                        0.0
                    } else {
                        ((c1 - c0) / TICKS_PER_SECOND / busy).min(1.0)
                    }
                })
                .fold(0.0, f64::max)
        });
        Sampler {
            stop,
            handle,
            start_ticks,
        }
    }

    pub fn finish(self) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        let busiest = self.handle.join().unwrap_or(0.0);
        Usage {
            cpu_seconds: (process_ticks() - self.start_ticks) / TICKS_PER_SECOND,
            busiest,
        }
    }
}

type Seen = HashMap<String, ((Instant, f64), (Instant, f64))>;

fn sample(seen: &mut Seen, me: Option<&str>) {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    let now = Instant::now();
    for entry in dir.flatten() {
        let tid = entry.file_name().to_string_lossy().into_owned();
        if Some(tid.as_str()) == me {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let t = ticks(&stat);
        let slot = seen.entry(tid).or_insert(((now, t), (now, t)));
        if t > slot.1 .1 {
            slot.1 = (now, t);
        }
    }
}
