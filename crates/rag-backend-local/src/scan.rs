//! Exact nearest-neighbour search over a flat array of vectors.
//!
//! Vectors are stored back to back as little-endian `f32`; a free slot has NaN
//! as its first element, which makes its score NaN, and NaN never enters the
//! top-k. The scan splits the slots across threads and keeps a small heap per
//! thread, so its cost is one pass over memory.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use rag_core::store::Metric;

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
///
/// `allowed`, when given, says per slot whether it may be returned (a filter).
pub fn top_k(
    data: &[f32],
    dim: usize,
    query: &[f32],
    metric: Metric,
    k: usize,
    threads: usize,
    allowed: Option<&[bool]>,
) -> Vec<Scored> {
    if dim == 0 || k == 0 || query.len() != dim {
        return Vec::new();
    }
    let kernel = Kernel::detect();
    parallel_top_k(data.len() / dim, k, threads, |start, end, heap| {
        for (i, vector) in data[start * dim..end * dim].chunks_exact(dim).enumerate() {
            let slot = start + i;
            if !is_allowed(allowed, slot) {
                continue;
            }
            let score = exact_with(kernel, query, vector, metric);
            if !score.is_nan() {
                push_bounded(heap, Scored { score, slot: slot as u64 }, k);
            }
        }
    })
}

/// The fewest slots a scan gives a thread of its own: starting one costs
/// about what scanning 16,384 two-bit codes of 384 dimensions does (tens
/// of microseconds), so a small store is scanned on the calling thread.
pub(crate) const MIN_SLOTS_A_THREAD: usize = 16_384;

/// The slots a scan's thread takes from [`Blocks`] at a time: a few tens
/// of microseconds of work for the sign codes at 768 dimensions, so a
/// thread that starts late leaves little for the others to wait on, and
/// taking one (an atomic add) costs nothing beside it.
pub(crate) const BLOCK_SLOTS: usize = 8_192;

/// The ranges of `0..len`, `block` long, handed out in order to whichever
/// thread asks next ([`in_blocks`]).
pub(crate) struct Blocks {
    next: AtomicUsize,
    len: usize,
    block: usize,
}

impl Blocks {
    fn new(len: usize, block: usize) -> Self {
        Self { next: AtomicUsize::new(0), len, block: block.max(1) }
    }

    /// The next range no thread has taken, or `None` when all are taken.
    pub(crate) fn take(&self) -> Option<Range<usize>> {
        let start = self.next.fetch_add(self.block, AtomicOrdering::Relaxed);
        (start < self.len).then(|| start..(start + self.block).min(self.len))
    }
}

/// Runs `part` on up to `threads` threads (at most 16, none given fewer
/// than about `min_len` of `0..len`), the calling thread among them, each
/// taking ranges of `0..len`, `block` long, from one shared [`Blocks`]
/// until none are left; returns what each part returned, this thread's
/// first. A range goes to whichever thread is free, so a thread that
/// starts late, or a core the machine takes away for a while, holds up
/// nothing: in a virtual machine here, a new thread on an idle core
/// started 1 to 3 ms late in about a third of queries, and with a range
/// fixed per thread the query waited for it. A part's panic is resumed
/// here, so no range is silently left out.
pub(crate) fn in_blocks<T: Send>(
    len: usize,
    threads: usize,
    min_len: usize,
    block: usize,
    part: impl Fn(&Blocks) -> T + Sync,
) -> Vec<T> {
    let threads = threads.clamp(1, 16).min(len.div_ceil(min_len.max(1)).max(1));
    let blocks = Blocks::new(len, if threads == 1 { len } else { block });
    if threads == 1 {
        return vec![part(&blocks)];
    }
    let (part, blocks) = (&part, &blocks);
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads).map(|_| scope.spawn(move || part(blocks))).collect();
        let mut results = Vec::with_capacity(threads);
        results.push(part(blocks));
        results.extend(others.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
        results
    })
}

/// Splits `slots` among threads in blocks ([`in_blocks`]); each thread
/// keeps a heap of its best `k`, into which `scan` scores the slots
/// `start..end` of each block it takes; merges: the best `k` overall,
/// best first.
pub(crate) fn parallel_top_k(
    slots: usize,
    k: usize,
    threads: usize,
    scan: impl Fn(usize, usize, &mut BinaryHeap<Scored>) + Sync,
) -> Vec<Scored> {
    let per_thread = in_blocks(slots, threads, MIN_SLOTS_A_THREAD, BLOCK_SLOTS, |blocks| {
        let mut heap = BinaryHeap::with_capacity(k + 1);
        while let Some(range) = blocks.take() {
            scan(range.start, range.end, &mut heap);
        }
        heap.into_vec()
    });
    let mut merged: BinaryHeap<Scored> = BinaryHeap::with_capacity(k + 1);
    for scored in per_thread.into_iter().flatten() {
        push_bounded(&mut merged, scored, k);
    }
    let mut best = merged.into_vec();
    best.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.slot.cmp(&b.slot)));
    best
}

/// Bytes of one slot of the compact (int8) vector file for `dim` dimensions:
/// the scale and the squared norm as `f32`, then one signed byte per dimension.
pub fn compact_stride(dim: usize) -> usize {
    dim + 8
}

/// Encodes a vector for the compact file: `value ≈ code * scale`, codes in
/// -127..=127, plus the exact squared norm (for euclidean estimates).
pub fn quantize(vector: &[f32], out: &mut Vec<u8>) {
    let max = vector.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let norm2: f32 = vector.iter().map(|x| x * x).sum();
    out.clear();
    out.extend(scale.to_le_bytes());
    out.extend(norm2.to_le_bytes());
    // Round half away from zero without a libm call, so the loop vectorises.
    let inverse = 1.0 / scale;
    out.extend(vector.iter().map(|x| {
        let v = x * inverse;
        (v + 0.5f32.copysign(v)).clamp(-127.0, 127.0) as i8 as u8
    }));
}

/// The `k` best slots of the compact file `data` by estimated score, best
/// first. Free slots (NaN scale) are skipped. Estimates are within about 1%
/// of the exact score; callers re-score the candidates exactly.
pub fn top_k_compact(
    data: &[u8],
    dim: usize,
    query: &[f32],
    metric: Metric,
    k: usize,
    threads: usize,
    allowed: Option<&[bool]>,
) -> Vec<Scored> {
    let stride = compact_stride(dim);
    if dim == 0 || k == 0 || query.len() != dim {
        return Vec::new();
    }
    let query = CompactQuery::new(query, metric);
    parallel_top_k(data.len() / stride, k, threads, |start, end, heap| {
        compact_range(&data[start * stride..end * stride], stride, start, &query, k, allowed, heap)
    })
}

/// The query as the compact scan needs it.
pub(crate) struct CompactQuery {
    codes: Vec<i8>,
    scale: f32,
    norm2: f32,
    metric: Metric,
    kernel: Kernel,
}

impl CompactQuery {
    /// `query` prepared as the store's vectors are (unit length on cosine stores).
    pub(crate) fn new(query: &[f32], metric: Metric) -> Self {
        let mut encoded = Vec::with_capacity(compact_stride(query.len()));
        quantize(query, &mut encoded);
        let (scale, norm2) = header(&encoded);
        let codes = encoded[8..].iter().map(|&b| b as i8).collect();
        Self { codes, scale, norm2, metric, kernel: Kernel::detect() }
    }

    /// The estimated score of one slot of the compact file (`None` when free).
    pub(crate) fn estimate(&self, slot: &[u8]) -> Option<f32> {
        let (scale, norm2) = header(slot);
        if scale.is_nan() || slot.len() < 8 + self.codes.len() {
            return None;
        }
        let dot = self.kernel.dot_i8(&self.codes, &slot[8..]) as f32 * scale * self.scale;
        Some(match self.metric {
            Metric::Cosine => dot,
            Metric::Euclidean => 1.0 / (1.0 + (self.norm2 + norm2 - 2.0 * dot).max(0.0).sqrt()),
        })
    }
}

impl CompactQuery {
    /// How far the cosine estimate of one slot of the compact file can be
    /// from the exact dot product: six standard deviations of the rounding
    /// of both sides, √((s_q² ‖v‖² + s_v² ‖q‖²) / 12), each rounding error
    /// uniform within half a step. (The worst case, half a step on every
    /// component at once, is some fifty times wider and never happens.)
    pub(crate) fn error_bound(&self, slot: &[u8]) -> f32 {
        let (scale, norm2) = header(slot);
        6.0 * ((self.scale * self.scale * norm2 + scale * scale * self.norm2) / 12.0).sqrt()
    }
}

/// The best `k` of one range of the compact file, whose first slot is `first`.
fn compact_range(
    part: &[u8],
    stride: usize,
    first: usize,
    query: &CompactQuery,
    k: usize,
    allowed: Option<&[bool]>,
    heap: &mut BinaryHeap<Scored>,
) {
    for (i, slot) in part.chunks_exact(stride).enumerate() {
        if !is_allowed(allowed, first + i) {
            continue;
        }
        if let Some(score) = query.estimate(slot) {
            push_bounded(heap, Scored { score, slot: (first + i) as u64 }, k);
        }
    }
}

pub(crate) fn is_allowed(allowed: Option<&[bool]>, slot: usize) -> bool {
    allowed.is_none_or(|a| a.get(slot).copied().unwrap_or(false))
}

fn header(slot: &[u8]) -> (f32, f32) {
    let word = |i: usize| f32::from_le_bytes([slot[i], slot[i + 1], slot[i + 2], slot[i + 3]]);
    (word(0), word(4))
}

/// The exact score of a stored vector (unit length on cosine stores) for a
/// query prepared the same way.
pub fn exact_score(query: &[f32], vector: &[f32], metric: Metric) -> f32 {
    exact_with(Kernel::detect(), query, vector, metric)
}

fn exact_with(kernel: Kernel, query: &[f32], vector: &[f32], metric: Metric) -> f32 {
    match metric {
        Metric::Cosine => kernel.dot(query, vector),
        Metric::Euclidean => 1.0 / (1.0 + kernel.squared_distance(query, vector).sqrt()),
    }
}

pub(crate) fn push_bounded(heap: &mut BinaryHeap<Scored>, scored: Scored, k: usize) {
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

    fn dot_i8(self, a: &[i8], b: &[u8]) -> i32 {
        match self {
            Kernel::Portable => dot_i8_lanes(a, b),
            // SAFETY: detect() chose this variant only after checking the CPU has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => unsafe { dot_i8_avx2(a, b) },
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

/// Dot product of int8 codes (`b` holds them as bytes) in i32 lanes.
#[inline(always)]
fn dot_i8_lanes(a: &[i8], b: &[u8]) -> i32 {
    const I8_LANES: usize = 32;
    let mut acc = [0i32; I8_LANES];
    let (ca, cb) = (a.chunks_exact(I8_LANES), b.chunks_exact(I8_LANES));
    let tail: i32 = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| i32::from(x) * i32::from(y as i8)).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..I8_LANES {
            acc[i] += i32::from(x[i]) * i32::from(y[i] as i8);
        }
    }
    acc.iter().sum::<i32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_i8_avx2(a: &[i8], b: &[u8]) -> i32 {
    dot_i8_lanes(a, b)
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

/// Pseudo-random unit vectors for the tests of this crate.
#[cfg(test)]
pub(crate) mod test_vectors {
    /// Components uniform in [-1, 1), then unit length.
    pub(crate) fn unit(seed: u64, dim: usize) -> Vec<f32> {
        shifted(seed, dim, 0.0)
    }

    /// The codes of `vectors` by `encode`, back to back, as a code file holds them.
    pub(crate) fn encode_each(vectors: &[Vec<f32>], encode: fn(&[f32], &mut Vec<u8>)) -> Vec<u8> {
        let mut data = Vec::new();
        let mut code = Vec::new();
        for v in vectors {
            encode(v, &mut code);
            data.extend_from_slice(&code);
        }
        data
    }

    /// As [`unit`], with every seventh component raised by 0.8 first: a
    /// direction all the vectors share, as real embeddings have.
    pub(crate) fn real_like(seed: u64, dim: usize) -> Vec<f32> {
        shifted(seed, dim, 0.8)
    }

    fn shifted(seed: u64, dim: usize, shared: f32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..dim)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2000) as f32 / 1000.0 - 1.0 + if i % 7 == 0 { shared } else { 0.0 }
            })
            .collect();
        let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.into_iter().map(|a| a / norm).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_vectors::unit;
    use super::*;

    fn naive(data: &[f32], dim: usize, q: &[f32], metric: Metric, k: usize) -> Vec<u64> {
        let mut all: Vec<(f32, u64)> = data
            .chunks_exact(dim)
            .enumerate()
            .filter(|(_, v)| !v[0].is_nan())
            .map(|(i, v)| (rag_core::backend::score(metric, q, v), i as u64))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|(_, slot)| slot).collect()
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
                let got: Vec<u64> =
                    top_k(&data, dim, &query, metric, 10, threads, None).iter().map(|s| s.slot).collect();
                assert_eq!(got, naive(&data, dim, &query, metric, 10), "{metric} with {threads} threads");
            }
        }
        let itself = top_k(&data, dim, &data[42 * dim..43 * dim], Metric::Cosine, 1, 2, None);
        assert_eq!(itself[0].slot, 42);
        assert!((itself[0].score - 1.0).abs() < 1e-5);
    }

    #[test]
    fn compact_scan_candidates_contain_the_exact_top_k() {
        let dim = 96;
        let vectors: Vec<Vec<f32>> = (0..20_000).map(|i| unit(i, dim)).collect();
        let mut compact = Vec::new();
        let mut buf = Vec::new();
        for v in &vectors {
            quantize(v, &mut buf);
            compact.extend_from_slice(&buf);
        }
        // A free slot: NaN scale.
        compact[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        let flat: Vec<f32> = vectors.concat();
        for seed in 0..20 {
            let query = unit(1_000_000 + seed, dim);
            for metric in [Metric::Cosine, Metric::Euclidean] {
                let candidates: Vec<u64> =
                    top_k_compact(&compact, dim, &query, metric, 10 * 8 + 64, 2, None).iter().map(|s| s.slot).collect();
                assert!(!candidates.contains(&0), "free slot returned");
                let mut exact = flat.clone();
                exact[0] = f32::NAN;
                for slot in naive(&exact, dim, &query, metric, 10) {
                    assert!(candidates.contains(&slot), "{metric}: exact hit {slot} missing from candidates");
                }
            }
        }
    }

    #[test]
    fn quantized_scores_are_close_to_exact() {
        let (a, b) = (unit(1, 768), unit(2, 768));
        let mut buf = Vec::new();
        quantize(&b, &mut buf);
        let got = top_k_compact(&buf, 768, &a, Metric::Cosine, 1, 1, None)[0].score;
        assert!((got - exact_score(&a, &b, Metric::Cosine)).abs() < 0.01, "{got}");
    }

    /// The ranges each part of [`in_blocks`] took, the calling thread's
    /// first; each part calls `before` and `after` (told whether it runs on
    /// the calling thread) around taking its ranges.
    fn taken_by_each(
        len: usize,
        threads: usize,
        block: usize,
        before: impl Fn(bool) + Sync,
        after: impl Fn(bool) + Sync,
    ) -> Vec<Vec<Range<usize>>> {
        let caller = std::thread::current().id();
        in_blocks(len, threads, 1, block, |blocks| {
            let here = std::thread::current().id() == caller;
            before(here);
            let mut taken = Vec::new();
            while let Some(range) = blocks.take() {
                taken.push(range);
            }
            after(here);
            taken
        })
    }

    #[test]
    fn blocks_cover_every_slot_once_whichever_thread_takes_them() {
        let none = |_: bool| {};
        for (len, threads, block) in
            [(0, 3, 4), (1, 2, 4), (10, 1, 3), (10, 3, 3), (64, 4, 8), (1000, 16, 7), (5, 40, 1)]
        {
            let parts = taken_by_each(len, threads, block, none, none);
            assert_eq!(parts.len(), threads.clamp(1, 16).min(len.max(1)), "{len} slots, {threads} threads");
            let mut covered: Vec<usize> = parts.iter().flatten().flat_map(|r| r.clone()).collect();
            covered.sort_unstable();
            assert_eq!(covered, (0..len).collect::<Vec<_>>(), "{len} slots, {threads} threads, blocks of {block}");
            let alone = taken_by_each(len, 1, block, none, none);
            let whole: Vec<Range<usize>> = std::iter::once(0..len).filter(|r| !r.is_empty()).collect();
            assert_eq!(alone, [whole], "one thread takes the whole range at once");
        }
    }

    #[test]
    fn a_thread_that_starts_late_leaves_its_blocks_to_the_others() {
        // The spawned threads start taking only once the calling thread has
        // taken every block: it does all the work, they return empty-handed,
        // and nothing waits for them but the join.
        let done = (std::sync::Mutex::new(false), std::sync::Condvar::new());
        let wait_for_the_caller = |here: bool| {
            if !here {
                let mut finished = done.0.lock().unwrap();
                while !*finished {
                    finished = done.1.wait(finished).unwrap();
                }
            }
        };
        let caller_finished = |here: bool| {
            if here {
                *done.0.lock().unwrap() = true;
                done.1.notify_all();
            }
        };
        let parts = taken_by_each(100, 3, 10, wait_for_the_caller, caller_finished);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], (0..10).map(|b| b * 10..b * 10 + 10).collect::<Vec<_>>(), "the caller took all, in order");
        assert!(parts[1..].iter().all(Vec::is_empty), "{parts:?}");
    }

    #[test]
    fn a_part_that_panics_on_another_thread_is_not_left_out_silently() {
        let caller = std::thread::current().id();
        let outcome = std::panic::catch_unwind(|| {
            in_blocks(100, 2, 1, 10, |blocks| {
                while blocks.take().is_some() {}
                assert_eq!(std::thread::current().id(), caller, "a scan thread failed");
            })
        });
        assert!(outcome.is_err(), "the spawned part's panic reached the caller");
    }

    #[test]
    fn fewer_slots_than_k_returns_them_all() {
        let data = [unit(1, 4), unit(2, 4)].concat();
        assert_eq!(top_k(&data, 4, &unit(1, 4), Metric::Cosine, 10, 2, None).len(), 2);
        assert!(top_k(&[], 4, &unit(1, 4), Metric::Cosine, 10, 2, None).is_empty());
    }
}
