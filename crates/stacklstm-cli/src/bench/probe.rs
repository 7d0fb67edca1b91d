//! What the harness reads from the machine: other processes' CPU share during a timed
//! block (so contended repeats can be re-run, as the peers' harness does), peak resident
//! memory, and a description of the CPU.
//!
//! Everything comes from `/proc`; where it is not available the values are `None`.

use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc` CPU times (`USER_HZ`, 100 on every Linux target).
const CLK_TCK: f64 = 100.0;

/// Machine-wide busy seconds (all CPUs, all but idle and iowait).
fn machine_busy_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|s| s.parse().ok())
        .collect();
    if v.len() < 8 {
        return None;
    }
    Some((v.iter().sum::<f64>() - v[3] - v[4]) / CLK_TCK)
}

/// CPU seconds (user + system) used by this process so far.
fn self_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / CLK_TCK)
}

fn cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// Measures the share of the machine's CPUs that other processes used over a block.
pub struct OthersCpu {
    t0: Instant,
    busy0: Option<f64>,
    self0: Option<f64>,
}

impl OthersCpu {
    /// Starts measuring.
    pub fn start() -> Self {
        OthersCpu {
            t0: Instant::now(),
            busy0: machine_busy_s(),
            self0: self_cpu_s(),
        }
    }

    /// The share since `start`, in `[0, 1]`.
    pub fn finish(self) -> Option<f64> {
        let wall = self.t0.elapsed().as_secs_f64();
        let (b0, s0) = (self.busy0?, self.self0?);
        let (b1, s1) = (machine_busy_s()?, self_cpu_s()?);
        if wall <= 0.0 {
            return None;
        }
        Some((((b1 - b0) - (s1 - s0)) / (wall * cpus())).max(0.0))
    }
}

/// The peers' contention policy, with the same environment knobs and defaults.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Policy {
    /// A window is quiet when others use less than this share.
    pub quiet_frac: f64,
    /// Length of the quiet window, seconds.
    pub quiet_window_s: f64,
    /// Longest wait for a quiet window, seconds.
    pub quiet_max_wait_s: f64,
    /// A repeat is re-run when others took more than this share.
    pub contended_frac: f64,
    /// At most this many extra runs per measurement.
    pub max_extra_repeats: usize,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Policy {
    /// From `BENCH_QUIET_FRAC`, `BENCH_QUIET_WINDOW_S`, `BENCH_QUIET_MAX_WAIT_S`,
    /// `BENCH_CONTENDED_FRAC`, `BENCH_MAX_EXTRA_REPEATS`.
    pub fn from_env() -> Self {
        Policy {
            quiet_frac: env_or("BENCH_QUIET_FRAC", 0.10),
            quiet_window_s: env_or("BENCH_QUIET_WINDOW_S", 2.0),
            quiet_max_wait_s: env_or("BENCH_QUIET_MAX_WAIT_S", 600.0),
            contended_frac: env_or("BENCH_CONTENDED_FRAC", 0.15),
            max_extra_repeats: env_or("BENCH_MAX_EXTRA_REPEATS", 2),
        }
    }

    /// Sleeps until other processes leave the machine quiet for one window (or the wait
    /// runs out).
    pub fn wait_for_quiet(&self) {
        let deadline = Instant::now() + Duration::from_secs_f64(self.quiet_max_wait_s);
        let mut announced = false;
        loop {
            let o = OthersCpu::start();
            std::thread::sleep(Duration::from_secs_f64(self.quiet_window_s));
            match o.finish() {
                Some(f) if f >= self.quiet_frac && Instant::now() < deadline => {
                    if !announced {
                        eprintln!(
                            "  (machine busy: other processes use {:.0}% of the CPUs; waiting up to {:.0}s for quiet)",
                            100.0 * f,
                            self.quiet_max_wait_s
                        );
                        announced = true;
                    }
                }
                _ => return,
            }
        }
    }

    /// Runs `f` (one repeat, one number) `repeats` times, each after a quiet window;
    /// re-runs contended repeats. Returns the kept values with their others' share, in run
    /// order, and every run made.
    pub fn repeat<F: FnMut() -> f64>(&self, repeats: usize, mut f: F) -> Repeats {
        let mut runs: Vec<(f64, Option<f64>)> = Vec::new();
        let mut extra = 0;
        loop {
            self.wait_for_quiet();
            let o = OthersCpu::start();
            let v = f();
            runs.push((v, o.finish()));
            let clean = runs
                .iter()
                .filter(|r| r.1.is_none_or(|x| x <= self.contended_frac))
                .count();
            if clean >= repeats {
                break;
            }
            if runs.len() >= repeats {
                if extra >= self.max_extra_repeats {
                    break;
                }
                extra += 1;
            }
        }
        // Keep the `repeats` least contended runs, in run order.
        let mut idx: Vec<usize> = (0..runs.len()).collect();
        idx.sort_by(|&a, &b| {
            runs[a]
                .1
                .unwrap_or(0.0)
                .total_cmp(&runs[b].1.unwrap_or(0.0))
        });
        let mut kept: Vec<usize> = idx.into_iter().take(repeats).collect();
        kept.sort_unstable();
        Repeats {
            values: kept.iter().map(|&i| runs[i].0).collect(),
            others: kept.iter().map(|&i| runs[i].1).collect(),
            all: runs,
        }
    }
}

/// Result of [`Policy::repeat`].
pub struct Repeats {
    /// Kept values.
    pub values: Vec<f64>,
    /// Others' CPU share during each kept value.
    pub others: Vec<Option<f64>>,
    /// Every run: value and share.
    pub all: Vec<(f64, Option<f64>)>,
}

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Current resident set size, bytes.
pub fn rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

/// Peak resident set size since start or the last [`reset_peak_rss`], bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// Resets the peak RSS to the current RSS (Linux `clear_refs` 5). Returns whether it worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU model and features, as the peers' `machine_info` (subset).
pub fn machine_info() -> serde_json::Value {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let first = info.split("\n\n").next().unwrap_or("");
    let field = |k: &str| {
        first
            .lines()
            .find(|l| l.split(':').next().is_some_and(|n| n.trim() == k))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let flags = format!(" {} ", field("flags").unwrap_or_default());
    serde_json::json!({
        "cpu_model": field("model name"),
        "cpu_family_model_stepping": [field("cpu family"), field("model"), field("stepping")],
        "bogomips": field("bogomips"),
        "logical_cpus": cpus() as usize,
        "avx512f": flags.contains(" avx512f "),
        "avx512_bf16": flags.contains(" avx512_bf16 "),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}
