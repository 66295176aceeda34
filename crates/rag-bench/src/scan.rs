//! `rag-bench scan`: the two-bit code scan alone (`top_k_bits`), in memory,
//! on one thread and on every core: what a vector query's first stage costs
//! per slot once its codes are in memory, without the disk, SQLite or the
//! process start around it.

use std::time::Instant;

use anyhow::Result;
use rag_backend_local::{bits_stride, encode_bits, top_k_bits};
use rag_core::store::Metric;

use crate::median;
use crate::query::Vectors;

/// Scans `slots` random codes of each of `dims` dimensions `runs` times for
/// the best 500, and prints the median time and nanoseconds a slot.
pub(crate) fn bench_scan(slots: usize, dims: &[usize], runs: usize) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("| dims | slots | threads | scan ms (median of {runs}) | ns a slot | GB/s |");
    println!("|---|---|---|---|---|---|");
    for &dim in dims {
        let stride = bits_stride(dim);
        let mut codes = Vec::with_capacity(slots * stride);
        let mut vectors = Vectors(0x5eed_0000 + dim as u64);
        let mut buffer = Vec::new();
        for _ in 0..slots {
            encode_bits(&vectors.next_unit(dim), &mut buffer);
            codes.extend_from_slice(&buffer);
        }
        // A copy from a `Vec<u64>`, so the scan reads aligned words as it does from a mapping.
        let words: Vec<u64> =
            codes.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default())).collect();
        drop(codes);
        // SAFETY: any initialised u64 is eight valid bytes.
        let bytes = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) };
        for threads in [1, cores] {
            let mut times = Vec::with_capacity(runs);
            for run in 0..runs {
                let query = Vectors(0x9e37 + run as u64).next_unit(dim);
                let started = Instant::now();
                let best = top_k_bits(bytes, dim, &query, Metric::Cosine, 500, threads, None);
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(best.len() == 500, "expected 500 candidates, got {}", best.len());
            }
            let ms = median(times);
            println!(
                "| {dim} | {slots} | {threads} | {ms:.2} | {:.2} | {:.1} |",
                ms * 1e6 / slots as f64,
                bytes.len() as f64 / ms / 1e6
            );
        }
    }
    Ok(())
}
