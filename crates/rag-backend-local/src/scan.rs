//! Exact nearest-neighbour search over a flat array of vectors.
//!
//! Vectors are stored back to back as little-endian `f32`; a free slot has NaN
//! as its first element, which makes its score NaN, and NaN never enters the
//! top-k. The scan splits the slots across threads and keeps a small heap per
//! thread, so its cost is one pass over memory.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rag_core::Metric;

/// A scored slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Score on the common scale (higher is better).
    pub score: f32,
    /// Slot number in the vector file.
    pub slot: u64,
}

impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    /// Reversed, so `BinaryHeap<Scored>` is a min-heap on score (ties: lower slot wins).
    fn cmp(&self, other: &Self) -> Ordering {
        other.score.total_cmp(&self.score).then_with(|| self.slot.cmp(&other.slot))
    }
}

/// The `k` best slots of `data` (a multiple of `dim` floats) for `query`, best first.
///
/// For cosine, `query` and the stored vectors must be unit length (the store
/// normalises on write), so the score is the dot product.
pub fn top_k(data: &[f32], dim: usize, query: &[f32], metric: Metric, k: usize, threads: usize) -> Vec<Scored> {
    if dim == 0 || k == 0 || query.len() != dim {
        return Vec::new();
    }
    let slots = data.len() / dim;
    let threads = threads.clamp(1, 16).min(slots.div_ceil(4096).max(1));
    let per_thread = slots.div_ceil(threads);
    let kernel = Kernel::detect();
    let mut merged: BinaryHeap<Scored> = BinaryHeap::with_capacity(k + 1);
    let partials: Vec<Vec<Scored>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = t * per_thread;
                let end = ((t + 1) * per_thread).min(slots);
                let part = &data[start * dim..end * dim];
                scope.spawn(move || scan_range(part, dim, start as u64, query, metric, k, kernel))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for scored in partials.into_iter().flatten() {
        push_bounded(&mut merged, scored, k);
    }
    let mut best = merged.into_vec();
    best.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.slot.cmp(&b.slot)));
    best
}

fn scan_range(
    part: &[f32],
    dim: usize,
    first_slot: u64,
    query: &[f32],
    metric: Metric,
    k: usize,
    kernel: Kernel,
) -> Vec<Scored> {
    let mut heap: BinaryHeap<Scored> = BinaryHeap::with_capacity(k + 1);
    for (i, vector) in part.chunks_exact(dim).enumerate() {
        let score = match metric {
            Metric::Cosine => kernel.dot(query, vector),
            Metric::Euclidean => 1.0 / (1.0 + kernel.squared_distance(query, vector).sqrt()),
        };
        if score.is_nan() {
            continue;
        }
        push_bounded(&mut heap, Scored { score, slot: first_slot + i as u64 }, k);
    }
    heap.into_vec()
}

fn push_bounded(heap: &mut BinaryHeap<Scored>, scored: Scored, k: usize) {
    if heap.len() < k {
        heap.push(scored);
    } else if let Some(worst) = heap.peek()
        && scored.cmp(worst) == Ordering::Less
    {
        heap.pop();
        heap.push(scored);
    }
}

/// Which implementation of the inner loops this CPU runs.
#[derive(Debug, Clone, Copy)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Kernel::Avx2Fma;
        }
        Kernel::Portable
    }

    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Kernel::Portable => dot_portable(a, b),
            // SAFETY: detect() chose this variant only after checking the CPU has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => unsafe { dot_avx2(a, b) },
        }
    }

    fn squared_distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Kernel::Portable => squared_distance_portable(a, b),
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => unsafe { squared_distance_avx2(a, b) },
        }
    }
}

const LANES: usize = 16;

/// Dot product with independent accumulators, which the compiler turns into
/// SIMD lanes.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32], fma: bool) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] = if fma { x[i].mul_add(y[i], acc[i]) } else { acc[i] + x[i] * y[i] };
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn squared_distance_lanes(a: &[f32], b: &[f32], fma: bool) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| (x - y) * (x - y)).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] = if fma { d.mul_add(d, acc[i]) } else { acc[i] + d * d };
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b, false)
}

fn squared_distance_portable(a: &[f32], b: &[f32]) -> f32 {
    squared_distance_lanes(a, b, false)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b, true)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn squared_distance_avx2(a: &[f32], b: &[f32]) -> f32 {
    squared_distance_lanes(a, b, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &[f32], dim: usize, q: &[f32], metric: Metric, k: usize) -> Vec<u64> {
        let mut all: Vec<(f32, u64)> = data
            .chunks_exact(dim)
            .enumerate()
            .filter(|(_, v)| !v[0].is_nan())
            .map(|(i, v)| (rag_core::score(metric, q, v), i as u64))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|(_, slot)| slot).collect()
    }

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.into_iter().map(|a| a / norm).collect()
    }

    #[test]
    fn matches_a_naive_search_on_both_metrics_and_skips_free_slots() {
        let dim = 37; // not a multiple of the lane count: exercises the tail
        let mut data: Vec<f32> = (0..20_000).flat_map(|i| unit(i, dim)).collect();
        for free in [3usize, 500, 19_999] {
            data[free * dim] = f32::NAN;
        }
        let query = unit(7_777_777, dim);
        for metric in [Metric::Cosine, Metric::Euclidean] {
            for threads in [1, 2, 3] {
                let got: Vec<u64> = top_k(&data, dim, &query, metric, 10, threads).iter().map(|s| s.slot).collect();
                assert_eq!(got, naive(&data, dim, &query, metric, 10), "{metric} with {threads} threads");
            }
        }
        let itself = top_k(&data, dim, &data[42 * dim..43 * dim], Metric::Cosine, 1, 2);
        assert_eq!(itself[0].slot, 42);
        assert!((itself[0].score - 1.0).abs() < 1e-5);
    }

    #[test]
    fn fewer_slots_than_k_returns_them_all() {
        let data = [unit(1, 4), unit(2, 4)].concat();
        assert_eq!(top_k(&data, 4, &unit(1, 4), Metric::Cosine, 10, 2).len(), 2);
        assert!(top_k(&[], 4, &unit(1, 4), Metric::Cosine, 10, 2).is_empty());
    }
}
