//! `rag-bench scan`: a vector query's first stage alone, in memory, on one
//! thread and on every core: the two-bit code scan (`top_k_bits`), the sign
//! code scan (`top_k_signs`), and the sign code scan whose candidates are
//! ranked again on the two-bit codes (`top_k_bits_among`), as a store of
//! 500,000 slots or more runs it.
//! What the stage costs per slot once its codes are in memory, without the
//! disk, SQLite or the process start around it.

use std::time::Instant;

use anyhow::Result;
use rag_backend_local::{
    BitCodes, bits_stride, encode_bits, encode_signs, sign_candidates, top_k_bits, top_k_bits_among, top_k_signs,
};
use rag_core::store::Metric;

use crate::median;
use crate::query::Vectors;

/// Candidates the first stage hands on, as a top-10 query asks.
const CANDIDATES: usize = 500;

/// A first stage: its name, the bytes it scans, and a run of it for a
/// query, which returns how many candidates it found.
type Stage<'a> = (&'static str, usize, &'a dyn Fn(&[f32]) -> usize);

/// Scans `slots` random codes of each of `dims` dimensions `runs` times for
/// the best 500, each way, and prints the median time, nanoseconds a slot
/// and the bytes a second the scan read.
pub(crate) fn bench_scan(slots: usize, dims: &[usize], runs: usize) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("| dims | slots | stage | threads | ms (median of {runs}) | ns a slot | GB/s scanned |");
    println!("|---|---|---|---|---|---|---|");
    for &dim in dims {
        let (mut bits, mut signs) = (Vec::with_capacity(slots * bits_stride(dim)), Vec::new());
        let mut vectors = Vectors(0x5eed_0000 + dim as u64);
        let mut buffer = Vec::new();
        for _ in 0..slots {
            let vector = vectors.next_unit(dim);
            encode_bits(&vector, &mut buffer);
            bits.extend_from_slice(&buffer);
            encode_signs(&vector, &mut buffer);
            signs.extend_from_slice(&buffer);
        }
        let (bits, signs) = (aligned(bits), aligned(signs));
        let (bits, signs) = (as_bytes(&bits), as_bytes(&signs));
        let first = sign_candidates(CANDIDATES, slots);
        for threads in [1, cores] {
            let stages: [Stage; 3] = [
                ("signs", signs.len(), &|query| {
                    top_k_signs(signs, dim, query, first, threads, None).len().min(CANDIDATES)
                }),
                ("two-bit", bits.len(), &|query| {
                    top_k_bits(bits, dim, query, Metric::Cosine, CANDIDATES, threads, None).len()
                }),
                ("signs, two-bit", signs.len(), &|query| {
                    let candidates = top_k_signs(signs, dim, query, first, threads, None);
                    top_k_bits_among(
                        BitCodes::InMemory(bits),
                        dim,
                        query,
                        Metric::Cosine,
                        &candidates,
                        CANDIDATES,
                        threads,
                    )
                    .len()
                }),
            ];
            for (stage, scanned, run_stage) in stages {
                let mut times = Vec::with_capacity(runs);
                for run in 0..runs {
                    let query = Vectors(0x9e37 + run as u64).next_unit(dim);
                    let started = Instant::now();
                    let found = run_stage(&query);
                    times.push(started.elapsed().as_secs_f64() * 1000.0);
                    anyhow::ensure!(found == CANDIDATES, "{stage}: expected {CANDIDATES} candidates, got {found}");
                }
                let ms = median(times);
                println!(
                    "| {dim} | {slots} | {stage} | {threads} | {ms:.2} | {:.2} | {:.1} |",
                    ms * 1e6 / slots as f64,
                    scanned as f64 / ms / 1e6
                );
            }
        }
    }
    Ok(())
}

/// The bytes as words, so a scan reads aligned words as it does from a mapping.
fn aligned(bytes: Vec<u8>) -> Vec<u64> {
    bytes.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default())).collect()
}

fn as_bytes(words: &[u64]) -> &[u8] {
    // SAFETY: any initialised u64 is eight valid bytes.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) }
}
