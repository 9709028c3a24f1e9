//! Ground-truth workload (Rust) for the agent's tests: the twin of
//! `workload.c`. Two threads alternate between `fw_rust_hot` (about 3 ms of
//! thread CPU time) and `fw_rust_cold` (about 1 ms, sorting), each measuring
//! its own thread CPU time; the totals are printed at exit as
//! "hot_seconds cold_seconds".
//!
//! Usage: workload SECONDS

use std::hint::black_box;
use std::time::{Duration, Instant};

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

fn thread_cpu() -> f64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

#[inline(never)]
fn fw_rust_hot(budget: f64) -> f64 {
    let t0 = thread_cpu();
    let mut x = (t0 * 1e9) as u64 | 1;
    loop {
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x ^= x >> 29;
        }
        black_box(x);
        let t = thread_cpu();
        if t - t0 >= budget {
            return t - t0;
        }
    }
}

#[inline(never)]
fn fw_rust_cold(budget: f64, data: &mut [u32]) -> f64 {
    let t0 = thread_cpu();
    let mut x: u32 = 12345;
    loop {
        for v in data.iter_mut() {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            *v = x;
        }
        data.sort_unstable();
        black_box(data[0]);
        let t = thread_cpu();
        if t - t0 >= budget {
            return t - t0;
        }
    }
}

#[inline(never)]
fn fw_rust_worker(until: Instant) -> (f64, f64) {
    let mut data = vec![0u32; 2048];
    let (mut hot, mut cold) = (0.0, 0.0);
    while Instant::now() < until {
        hot += fw_rust_hot(0.003);
        cold += fw_rust_cold(0.001, &mut data);
    }
    (hot, cold)
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let other = std::thread::spawn(move || fw_rust_worker(until));
    let (h1, c1) = fw_rust_worker(until);
    let (h2, c2) = other.join().unwrap_or((0.0, 0.0));
    println!("{:.6} {:.6}", h1 + h2, c1 + c2);
}
