//! Two-bit codes: every dimension of a stored vector rounded to one of four
//! levels, and what it takes to turn them into a score estimate. A query
//! scans these (about 1/15 of the float vectors' bytes) with popcount, then
//! re-scores the best candidates on the int8 codes and the best of those
//! exactly.
//!
//! A slot is a 16-byte header and then two bit planes of one bit a
//! dimension, in little-endian `u64` words: `factor` (`f32`, NaN when the
//! slot is free), `norm2` (`f32`, the vector's squared length), `levels`
//! (`u32`, the sum of the codes), four spare bytes, then the low plane and
//! the high plane: bit `i % 64` of word `i / 64` of a plane is that bit of
//! dimension `i`'s code `u_i` in 0..=3.
//!
//! The code stands for the level `c_i = u_i − 1.5` on a grid whose step is
//! chosen per vector (the one whose levels point closest to the vector), so
//! the high plane is the sign. ⟨q, v⟩ is estimated as ⟨q, c⟩ · factor, where
//! factor = ‖v‖² / ⟨v, c⟩, exact for q = v: extended RaBitQ's estimator
//! ⟨q, ō⟩ / ⟨v, ō⟩ with two bits a dimension and without its random rotation.
//! Its error is about a third of sign bits' (on random vectors of 200
//! dimensions, 0.019 of cosine against 0.053), which cuts the candidates a
//! query must re-score by an order of magnitude (`rag-bench codes`).
//!
//! The query stays in floats but is quantised to four bits a dimension
//! (`q_i ≈ low + step · w_i`) and split into four bit planes, so with
//! popcounts of ANDed words:
//! ⟨q, c⟩ = low · Σu + step · Σ_b 2^b Σ_j 2^j popcount(plane_b & query_j) − 1.5 Σq.

use std::collections::BinaryHeap;

use rag_core::store::Metric;

use crate::scan::{Scored, is_allowed, parallel_top_k, push_bounded};

/// Bytes of the header of a slot.
const HEADER_BYTES: usize = 16;
/// Bits of the query's quantisation: four planes.
const QUERY_BITS: usize = 4;
/// Bits of a stored vector's code: two planes.
const CODE_BITS: usize = 2;
/// The largest code, `2^CODE_BITS − 1`; level `u` stands for `u − MAX_CODE / 2`.
const MAX_CODE: u32 = (1 << CODE_BITS) - 1;
const _: () = assert!(CODE_BITS == 2, "the encoder writes a sign plane and a magnitude plane");
/// Thresholds tried per vector (see [`encode_bits`]): from a quarter of its
/// root mean square, each [`GRID_RATIO`] times the last.
const GRID_STEPS: usize = 16;
/// See [`GRID_STEPS`]: 2^(1/4), so the last is 0.25 · 2^(15/4) ≈ 3.4.
const GRID_RATIO: f32 = 1.189_207_1;

/// Bytes of one slot of the code file for `dim` dimensions.
pub fn bits_stride(dim: usize) -> usize {
    HEADER_BYTES + CODE_BITS * dim.div_ceil(64) * 8
}

/// Encodes a vector (as the store keeps it: unit length on cosine stores)
/// into `out`, [`bits_stride`] bytes.
///
/// A component x gets the level sign(x) · 1.5 when |x| ≥ T and sign(x) · 0.5
/// below (sign(0) = +), on the grid of step T: the high plane is the sign
/// and the low plane says the level's magnitude agrees with it. T is the
/// one, of 16 tried from a quarter of the vector's root mean square to 3.4
/// times it, whose levels have the highest cosine with the vector: the code
/// that loses least of its direction. Only sums and comparisons run per
/// trial, so the search vectorises.
pub fn encode_bits(vector: &[f32], out: &mut Vec<u8>) {
    let norm2 = sum_lanes(vector, |x| x * x);
    let (norm1, _) = magnitudes_at_least(vector, 0.0);
    let rms = (norm2 / vector.len().max(1) as f32).sqrt();
    // With `big` components at ±1.5 and the rest at ±0.5:
    // ⟨v, c⟩ = ‖v‖₁ / 2 + Σ_big |x| and ‖c‖² = D / 4 + 2 · #big.
    let mut best = (f32::NEG_INFINITY, f32::INFINITY, 0.0f32);
    if rms > 0.0 && rms.is_finite() {
        for step in 0..GRID_STEPS {
            let threshold = rms * (0.25 * GRID_RATIO.powi(step as i32));
            let (big_sum, big_count) = magnitudes_at_least(vector, threshold);
            let along = 0.5 * norm1 + big_sum;
            let cosine = along / (0.25 * vector.len() as f32 + 2.0 * big_count).sqrt();
            if cosine > best.0 {
                best = (cosine, threshold, along);
            }
        }
    }
    let (_, threshold, along) = best;
    let words = vector.len().div_ceil(64);
    let mut planes = vec![0u64; CODE_BITS * words];
    let (low, high) = planes.split_at_mut(words);
    for ((part, low), high) in vector.chunks(64).zip(low.iter_mut()).zip(high.iter_mut()) {
        for (i, &x) in part.iter().enumerate() {
            // Codes 3 and 2 for x ≥ 0 (high bit set), 0 and 1 below; the
            // low bit is set where the magnitude agrees with the sign.
            let (positive, big) = (x >= 0.0 || x.is_nan(), x.abs() >= threshold);
            *high |= u64::from(positive) << i;
            *low |= u64::from(positive == big) << i;
        }
    }
    let levels = 2 * high.iter().map(|w| w.count_ones()).sum::<u32>() + low.iter().map(|w| w.count_ones()).sum::<u32>();
    let factor = if along > 0.0 { norm2 / along } else { 0.0 };
    out.clear();
    out.extend(factor.to_le_bytes());
    out.extend(norm2.to_le_bytes());
    out.extend(levels.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend(planes.iter().flat_map(|w| w.to_le_bytes()));
}

/// Lanes of the encoder's sums: independent accumulators, so the compiler
/// can vectorise a sum of floats (it may not reorder one accumulator's).
const SUM_LANES: usize = 8;

/// Σ f(x) over `vector`, in [`SUM_LANES`] lanes.
#[inline(always)]
fn sum_lanes(vector: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; SUM_LANES];
    let chunks = vector.chunks_exact(SUM_LANES);
    let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += f(x);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The sum and the count of the magnitudes |x| ≥ `threshold`.
#[inline(always)]
fn magnitudes_at_least(vector: &[f32], threshold: f32) -> (f32, f32) {
    let big = |x: f32| if x.abs() >= threshold { 1.0 } else { 0.0 };
    (sum_lanes(vector, |x| big(x) * x.abs()), sum_lanes(vector, big))
}

/// The `k` best slots of the code file `data` by estimated score, best
/// first; free slots (NaN factor) are skipped. The estimates are rough
/// (about ±0.03 of cosine): callers take several times the slots they need
/// and re-score them.
pub fn top_k_bits(
    data: &[u8],
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
    let stride = bits_stride(dim) / 8;
    // SAFETY: any bit pattern is a valid u64. A mapped file is page-aligned,
    // so the prefix is empty; any other buffer is copied into words.
    let (prefix, aligned, _) = unsafe { data.align_to::<u64>() };
    let copied: Vec<u64>;
    let words: &[u64] = if prefix.is_empty() {
        aligned
    } else {
        copied = data
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
            .collect();
        &copied
    };
    let query = BitQuery::new(query, metric);
    parallel_top_k(words.len() / stride, k, threads, |start, end| {
        let mut heap = BinaryHeap::with_capacity(k + 1);
        let mut counts = vec![0u32; BATCH];
        let mut scores = vec![0f32; BATCH];
        // The k-th best estimate so far: a slot under it cannot enter the
        // heap, so most slots cost one comparison.
        let mut floor = f32::NEG_INFINITY;
        // The popcounts of a batch of slots in one call of the CPU's kernel,
        // their estimates in a loop without branches, then the few that
        // can rank pushed on the heap.
        for batch_start in (start..end).step_by(BATCH) {
            let batch_end = (batch_start + BATCH).min(end);
            let slots = &words[batch_start * stride..batch_end * stride];
            query.kernel.weighted_counts(slots, stride, &query.planes, &mut counts);
            query.estimates(slots, stride, &counts, &mut scores);
            for (i, &score) in scores[..batch_end - batch_start].iter().enumerate() {
                // NaN (a free slot) is never at or above the floor.
                if score.is_nan() || score < floor {
                    continue;
                }
                let number = batch_start + i;
                if !is_allowed(allowed, number) {
                    continue;
                }
                push_bounded(&mut heap, Scored { score, slot: number as u64 }, k);
                if heap.len() == k {
                    floor = heap.peek().map_or(floor, |worst| worst.score);
                }
            }
        }
        heap.into_vec()
    })
}

/// Slots whose popcounts one kernel call computes.
const BATCH: usize = 1024;

/// The query as the bit scan needs it: four bit planes of its 4-bit codes
/// (plane-major, one word a 64 dimensions each) and what turns their counts
/// back into sums of floats.
struct BitQuery {
    planes: Vec<u64>,
    /// The smallest component, the value of code 0.
    low: f32,
    /// The value of one step of the 4-bit code.
    step: f32,
    /// Σ q_i, exact.
    sum: f32,
    norm2: f32,
    metric: Metric,
    kernel: PopcountKernel,
}

impl BitQuery {
    fn new(query: &[f32], metric: Metric) -> Self {
        let words = query.len().div_ceil(64);
        let low = query.iter().copied().fold(f32::INFINITY, f32::min);
        let high = query.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let levels = ((1 << QUERY_BITS) - 1) as f32;
        let step = if high > low { (high - low) / levels } else { 1.0 };
        let mut planes = vec![0u64; QUERY_BITS * words];
        for (i, x) in query.iter().enumerate() {
            let code = ((x - low) / step + 0.5).clamp(0.0, levels) as u32;
            for (plane, bit) in (0..QUERY_BITS).map(|j| (j, (code >> j) & 1)) {
                planes[plane * words + i / 64] |= u64::from(bit) << (i % 64);
            }
        }
        Self {
            planes,
            low,
            step,
            sum: query.iter().sum(),
            norm2: query.iter().map(|x| x * x).sum(),
            metric,
            kernel: PopcountKernel::detect(),
        }
    }

    /// The estimated scores of `slots` (`stride` words each) into `out`,
    /// given their weighted counts against the query's planes: NaN for a
    /// free slot (its factor is NaN) and for any estimate that is not a
    /// number, which then never ranks.
    fn estimates(&self, slots: &[u64], stride: usize, counts: &[u32], out: &mut [f32]) {
        let offset = MAX_CODE as f32 / 2.0 * self.sum;
        let dot = |slot: &[u64], weighted: u32| {
            let factor = f32::from_bits(slot[0] as u32);
            let levels = slot[1] as u32;
            (self.low * levels as f32 + self.step * weighted as f32 - offset) * factor
        };
        let each = slots.chunks_exact(stride).zip(counts).zip(out.iter_mut());
        match self.metric {
            Metric::Cosine => each.for_each(|((slot, &weighted), out)| *out = dot(slot, weighted)),
            Metric::Euclidean => each.for_each(|((slot, &weighted), out)| {
                let norm2 = f32::from_bits((slot[0] >> 32) as u32);
                let distance2 = self.norm2 + norm2 - 2.0 * dot(slot, weighted);
                // `max` would turn a free slot's NaN into 0, the best score.
                *out = if distance2.is_nan() { f32::NAN } else { 1.0 / (1.0 + distance2.max(0.0).sqrt()) };
            }),
        }
    }
}

/// Which implementation of the popcount loop this CPU runs.
#[derive(Debug, Clone, Copy)]
enum PopcountKernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Popcnt,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl PopcountKernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("popcnt") {
                return Self::Popcnt;
            }
        }
        Self::Portable
    }

    /// For each slot of `slots` (`stride` words each: two of header, then
    /// the code planes), Σ_b 2^b Σ_j 2^j · popcount(code_b & plane_j), into `out`.
    fn weighted_counts(self, slots: &[u64], stride: usize, planes: &[u64], out: &mut [u32]) {
        match self {
            Self::Portable => weighted_counts_lanes(slots, stride, planes, out),
            // SAFETY: detect() chose these only after checking the CPU has the features.
            #[cfg(target_arch = "x86_64")]
            Self::Popcnt => unsafe { weighted_counts_popcnt(slots, stride, planes, out) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => unsafe { weighted_counts_avx512(slots, stride, planes, out) },
        }
    }

    /// The weighted count of one slot's code planes (`CODE_BITS` planes of
    /// `planes.len() / QUERY_BITS` words, back to back).
    #[cfg(test)]
    fn weighted_count(self, code: &[u64], planes: &[u64]) -> u32 {
        let slot: Vec<u64> = [0, 0].iter().chain(code).copied().collect();
        let mut out = [0u32];
        self.weighted_counts(&slot, slot.len(), planes, &mut out);
        out[0]
    }
}

/// The loop every kernel compiles: over the words of each code plane of a
/// slot, each AND-ed with the query's four planes and counted (the compiler
/// vectorises it across words where the CPU has vector popcount).
#[inline(always)]
fn weighted_counts_lanes(slots: &[u64], stride: usize, planes: &[u64], out: &mut [u32]) {
    let words = planes.len() / QUERY_BITS;
    let (p0, rest) = planes.split_at(words);
    let (p1, rest) = rest.split_at(words);
    let (p2, p3) = rest.split_at(words);
    let plane_count = |code: &[u64]| {
        let mut total = 0u32;
        for ((((b, a), c), d), e) in code.iter().zip(p0).zip(p1).zip(p2).zip(p3) {
            total += (b & a).count_ones()
                + ((b & c).count_ones() << 1)
                + ((b & d).count_ones() << 2)
                + ((b & e).count_ones() << 3);
        }
        total
    };
    for (slot, count) in slots.chunks_exact(stride).zip(out.iter_mut()) {
        *count = (0..CODE_BITS).map(|b| plane_count(&slot[2 + b * words..2 + (b + 1) * words]) << b).sum();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn weighted_counts_popcnt(slots: &[u64], stride: usize, planes: &[u64], out: &mut [u32]) {
    weighted_counts_lanes(slots, stride, planes, out)
}

/// Eight words at a time in 512-bit registers, the last few masked; both
/// code planes against each query plane. Codes of up to 1,024 dimensions
/// (two registers a plane) run [`weighted_counts_avx512_held`]; wider ones
/// the general loop here.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
fn weighted_counts_avx512(slots: &[u64], stride: usize, planes: &[u64], out: &mut [u32]) {
    use std::arch::x86_64::{_mm512_add_epi64, _mm512_reduce_add_epi64, _mm512_setzero_si512};
    const _: () = assert!(CODE_BITS == 2, "the AVX-512 kernel reads two code planes");
    let words = planes.len() / QUERY_BITS;
    if stride < 2 + CODE_BITS * words {
        return weighted_counts_lanes(slots, stride, planes, out);
    }
    match words.div_ceil(8) {
        1 => return weighted_counts_avx512_held::<1>(slots, stride, planes, out),
        2 => return weighted_counts_avx512_held::<2>(slots, stride, planes, out),
        _ => {}
    }
    for (slot, count) in slots.chunks_exact(stride).zip(out.iter_mut()) {
        let (low_plane, high_plane) = (&slot[2..2 + words], &slot[2 + words..2 + 2 * words]);
        let mut weighted = _mm512_setzero_si512();
        let mut at = 0;
        while at < words {
            let mask = words_mask(words - at);
            // SAFETY: every plane holds `words` words, and `mask` selects
            // those from `at` to the end, at most eight.
            let load = |plane: &[u64]| unsafe { avx512::load(plane, at, mask) };
            let query: [_; QUERY_BITS] = std::array::from_fn(|j| load(&planes[j * words..(j + 1) * words]));
            let (low, high) = (load(low_plane), load(high_plane));
            weighted = _mm512_add_epi64(weighted, avx512::weighted(low, high, &query));
            at += 8;
        }
        *count = _mm512_reduce_add_epi64(weighted) as u32;
    }
}

/// The mask of a register's worth of words, `left` of them still to read.
#[cfg(target_arch = "x86_64")]
fn words_mask(left: usize) -> u8 {
    if left >= 8 { u8::MAX } else { (1u8 << left) - 1 }
}

/// [`weighted_counts_avx512`] for codes of `CHUNKS` registers a plane: the
/// query's planes are loaded once, and four slots' counts are summed
/// across lanes together, where one slot's sum alone was about half the
/// kernel's time at 384 dimensions (`perf annotate`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
fn weighted_counts_avx512_held<const CHUNKS: usize>(slots: &[u64], stride: usize, planes: &[u64], out: &mut [u32]) {
    use std::arch::x86_64::{__m512i, _mm512_add_epi64, _mm512_reduce_add_epi64, _mm512_setzero_si512};
    let words = planes.len() / QUERY_BITS;
    debug_assert_eq!(words.div_ceil(8), CHUNKS);
    let masks: [u8; CHUNKS] = std::array::from_fn(|c| words_mask(words.saturating_sub(8 * c)));
    // SAFETY: every plane holds `words` words, and chunk c's mask selects
    // those from 8c to the end, at most eight (8c < words, as CHUNKS is
    // the words in registers rounded up).
    let load = |plane: &[u64], c: usize| unsafe { avx512::load(plane, 8 * c, masks[c]) };
    let query: [[__m512i; QUERY_BITS]; CHUNKS] =
        std::array::from_fn(|c| std::array::from_fn(|j| load(&planes[j * words..(j + 1) * words], c)));
    let weighted = |slot: &[u64]| {
        let (low_plane, high_plane) = (&slot[2..2 + words], &slot[2 + words..2 + 2 * words]);
        let mut sum = _mm512_setzero_si512();
        for (c, query) in query.iter().enumerate() {
            sum = _mm512_add_epi64(sum, avx512::weighted(load(low_plane, c), load(high_plane, c), query));
        }
        sum
    };
    // As many counts as slots, so the two remainders below agree.
    let count = out.len().min(slots.len() / stride);
    let mut groups = slots[..count * stride].chunks_exact(4 * stride);
    let mut outs = out[..count].chunks_exact_mut(4);
    for (group, out) in groups.by_ref().zip(outs.by_ref()) {
        let sums = avx512::sum_four(
            weighted(&group[..stride]),
            weighted(&group[stride..2 * stride]),
            weighted(&group[2 * stride..3 * stride]),
            weighted(&group[3 * stride..]),
        );
        out.copy_from_slice(&sums);
    }
    for (slot, count) in groups.remainder().chunks_exact(stride).zip(outs.into_remainder()) {
        *count = _mm512_reduce_add_epi64(weighted(slot)) as u32;
    }
}

/// The AVX-512 kernels' building blocks.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi64, _mm512_and_si512, _mm512_maskz_loadu_epi64, _mm512_popcnt_epi64,
        _mm512_shuffle_i64x2, _mm512_slli_epi64, _mm512_unpackhi_epi64, _mm512_unpacklo_epi64,
    };

    /// The eight words of `words` from `at` that `mask` selects (the rest 0).
    ///
    /// # Safety
    /// `mask` selects only words from `at` to the end of `words`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn load(words: &[u64], at: usize, mask: u8) -> __m512i {
        debug_assert!(at + (8 - mask.leading_zeros() as usize) <= words.len(), "the mask reads past the words");
        // SAFETY: masked-off lanes are not read; the caller vouches for the rest.
        unsafe { _mm512_maskz_loadu_epi64(mask, words.as_ptr().add(at).cast()) }
    }

    /// Per lane, Σ_j 2^j (popcount(low & query_j) + 2 · popcount(high & query_j)).
    #[inline]
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub(super) fn weighted(low: __m512i, high: __m512i, query: &[__m512i; 4]) -> __m512i {
        let both = |plane: __m512i| {
            _mm512_add_epi64(
                _mm512_popcnt_epi64(_mm512_and_si512(low, plane)),
                _mm512_slli_epi64::<1>(_mm512_popcnt_epi64(_mm512_and_si512(high, plane))),
            )
        };
        let (c0, c1, c2, c3) = (both(query[0]), both(query[1]), both(query[2]), both(query[3]));
        _mm512_add_epi64(
            _mm512_add_epi64(c0, _mm512_slli_epi64::<1>(c1)),
            _mm512_slli_epi64::<2>(_mm512_add_epi64(c2, _mm512_slli_epi64::<1>(c3))),
        )
    }

    /// The sums of the eight lanes of each of `a`, `b`, `c` and `d`, as `u32`
    /// (each fits: at most 45 · 64 a word, 16 words a plane here).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn sum_four(a: __m512i, b: __m512i, c: __m512i, d: __m512i) -> [u32; 4] {
        // Per 128-bit lane: [a even + a odd, b even + b odd], and so for c, d.
        let ab = _mm512_add_epi64(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
        let cd = _mm512_add_epi64(_mm512_unpacklo_epi64(c, d), _mm512_unpackhi_epi64(c, d));
        // 128-bit lanes [ab0 + ab1, ab2 + ab3, cd0 + cd1, cd2 + cd3].
        let halves = _mm512_add_epi64(
            _mm512_shuffle_i64x2::<0b10_00_10_00>(ab, cd),
            _mm512_shuffle_i64x2::<0b11_01_11_01>(ab, cd),
        );
        // 128-bit lanes [ab, cd, ..]: the four sums in the first four words.
        let sums = _mm512_add_epi64(
            _mm512_shuffle_i64x2::<0b00_00_10_00>(halves, halves),
            _mm512_shuffle_i64x2::<0b00_00_11_01>(halves, halves),
        );
        let mut words = [0u64; 8];
        // SAFETY: `words` is 64 writable bytes, as many as a register holds.
        unsafe { std::ptr::write_unaligned(words.as_mut_ptr().cast(), sums) };
        [words[0] as u32, words[1] as u32, words[2] as u32, words[3] as u32]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::test_vectors::unit;
    use crate::scan::{exact_score, top_k};

    fn encode_all(vectors: &[Vec<f32>]) -> Vec<u8> {
        let mut data = Vec::new();
        let mut buf = Vec::new();
        for v in vectors {
            encode_bits(v, &mut buf);
            data.extend_from_slice(&buf);
        }
        data
    }

    #[test]
    fn a_vector_estimates_its_own_score_exactly() {
        for dim in [1, 63, 64, 65, 384, 768] {
            let v = unit(dim as u64, dim);
            let data = encode_all(std::slice::from_ref(&v));
            assert_eq!(data.len(), bits_stride(dim));
            let got = top_k_bits(&data, dim, &v, Metric::Cosine, 1, 1, None)[0].score;
            // Only the query's 4-bit quantisation is lost.
            assert!((got - 1.0).abs() < 0.03, "dim {dim}: {got}");
        }
    }

    #[test]
    fn every_kernel_counts_as_the_scalar_reference() {
        // Every kernel this CPU can run: the portable one, the chosen one and POPCNT alone.
        #[allow(unused_mut)]
        let mut kernels = vec![PopcountKernel::Portable, PopcountKernel::detect()];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") {
            kernels.push(PopcountKernel::Popcnt);
        }
        let mut x = 0x1234_5678_9ABC_DEF1u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for words in [1usize, 2, 5, 6, 7, 12, 13, 16, 17] {
            // Two code planes (low, then high) and the query's four.
            let code: Vec<u64> = (0..words * CODE_BITS).map(|_| next()).collect();
            let planes: Vec<u64> = (0..words * QUERY_BITS).map(|_| next()).collect();
            // Bit by bit: Σ_i u_i · w_i, with u_i the code and w_i the query's 4-bit value.
            let bit = |words_of: &[u64], plane: usize, i: usize| (words_of[plane * words + i / 64] >> (i % 64)) & 1;
            let reference: u32 = (0..words * 64)
                .map(|i| {
                    let u = (0..CODE_BITS).map(|b| bit(&code, b, i) << b).sum::<u64>();
                    let w = (0..QUERY_BITS).map(|j| bit(&planes, j, i) << j).sum::<u64>();
                    (u * w) as u32
                })
                .sum();
            // The same words as a sub-slice of a longer buffer.
            let shifted: Vec<u64> = std::iter::once(0).chain(code.iter().copied()).collect();
            for &kernel in &kernels {
                assert_eq!(kernel.weighted_count(&code, &planes), reference, "{kernel:?}, {words} words");
                assert_eq!(kernel.weighted_count(&shifted[1..], &planes), reference, "{kernel:?} shifted");
            }
            // Batches of slots with a wider stride, each slot counted on its
            // own: the code, its complement, zeros, then random codes; 11
            // slots, so kernels that count four at a time have a remainder.
            let stride = 2 + CODE_BITS * words + 1;
            let flipped: Vec<u64> = code.iter().map(|b| !b).collect();
            let mut codes = vec![code.clone(), flipped, vec![0; CODE_BITS * words]];
            codes.extend((0..8).map(|_| (0..words * CODE_BITS).map(|_| next()).collect::<Vec<u64>>()));
            let mut slots = vec![0u64; codes.len() * stride];
            for (slot, code) in slots.chunks_exact_mut(stride).zip(&codes) {
                slot[2..2 + CODE_BITS * words].copy_from_slice(code);
            }
            let expected: Vec<u32> =
                codes.iter().map(|code| PopcountKernel::Portable.weighted_count(code, &planes)).collect();
            assert_eq!(expected[0], reference);
            for &kernel in &kernels {
                for count in [1, 3, 4, 5, 8, 11] {
                    // Room for more counts than slots, as a scan's last batch has.
                    let mut out = vec![u32::MAX; count + 5];
                    kernel.weighted_counts(&slots[..count * stride], stride, &planes, &mut out);
                    assert_eq!(out[..count], expected[..count], "{kernel:?}, a batch of {count} {words}-word slots");
                    assert!(out[count..].iter().all(|&c| c == u32::MAX), "{kernel:?}: nothing past the slots");
                }
            }
            // All ones (code 3 against query value 15 everywhere) and all zeros.
            let ones = vec![u64::MAX; words * CODE_BITS];
            let all = vec![u64::MAX; words * QUERY_BITS];
            for &kernel in &kernels {
                assert_eq!(kernel.weighted_count(&ones, &all), 3 * 15 * 64 * words as u32);
                assert_eq!(kernel.weighted_count(&vec![0; words * CODE_BITS], &all), 0);
            }
        }
    }

    #[test]
    fn free_slots_are_never_candidates_on_either_metric() {
        let dim = 96;
        let vectors: Vec<Vec<f32>> = (0..40).map(|i| unit(i + 7, dim)).collect();
        let mut data = encode_all(&vectors);
        let stride = bits_stride(dim);
        for slot in (0..40).filter(|s| s % 3 == 0) {
            data[slot * stride..slot * stride + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        }
        let held: Vec<u64> = (0..40).filter(|s| s % 3 != 0).collect();
        for metric in [Metric::Cosine, Metric::Euclidean] {
            for threads in [1, 2] {
                let mut got: Vec<u64> =
                    top_k_bits(&data, dim, &vectors[0], metric, 40, threads, None).iter().map(|s| s.slot).collect();
                got.sort_unstable();
                assert_eq!(got, held, "{metric:?}, {threads} threads: every held slot and no free one");
                assert!(top_k_bits(&data, dim, &vectors[0], metric, 5, threads, None).iter().all(|s| s.slot % 3 != 0));
            }
        }
    }

    #[test]
    fn estimates_follow_the_exact_scores_and_skip_free_slots() {
        let dim = 200;
        let vectors: Vec<Vec<f32>> = (0..5_000).map(|i| unit(i, dim)).collect();
        let mut data = encode_all(&vectors);
        data[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        let flat: Vec<f32> = vectors.concat();
        for seed in 0..10 {
            let query = unit(1_000_000 + seed, dim);
            let candidates: Vec<u64> =
                top_k_bits(&data, dim, &query, Metric::Cosine, 100, 2, None).iter().map(|s| s.slot).collect();
            assert!(!candidates.contains(&0), "free slot returned");
            let exact = top_k(&flat, dim, &query, Metric::Cosine, 10, 1, None);
            let found = exact.iter().filter(|s| s.slot == 0 || candidates.contains(&s.slot)).count();
            // Random vectors are the hard case for these codes (sign bits
            // needed 6% of the slots for 8 of 10); 2% holds nearly all.
            assert!(found >= 9, "seed {seed}: {found} of the exact top 10 among the candidates");
            for s in top_k_bits(&data, dim, &query, Metric::Cosine, 5, 1, None) {
                let truth = exact_score(&query, &vectors[s.slot as usize], Metric::Cosine);
                assert!((s.score - truth).abs() < 0.2, "estimate {} against {truth}", s.score);
            }
        }
    }

    #[test]
    fn two_bits_halve_the_error_of_sign_bits() {
        // On random vectors the error of the sign-bit estimator has a standard
        // deviation of about √((π/2 − 1)/D) of cosine (0.053 at 200 dims);
        // four levels on the best grid should be under two thirds of that.
        let dim = 200;
        let vectors: Vec<Vec<f32>> = (0..3_000).map(|i| unit(i, dim)).collect();
        let data = encode_all(&vectors);
        let sign_bits = ((std::f32::consts::FRAC_PI_2 - 1.0) / dim as f32).sqrt();
        for seed in 0..5 {
            let query = unit(7_000_000 + seed, dim);
            let estimates = top_k_bits(&data, dim, &query, Metric::Cosine, vectors.len(), 1, None);
            assert_eq!(estimates.len(), vectors.len());
            let squared: f32 = estimates
                .iter()
                .map(|s| (s.score - exact_score(&query, &vectors[s.slot as usize], Metric::Cosine)).powi(2))
                .sum();
            let rms = (squared / estimates.len() as f32).sqrt();
            assert!(rms < 0.6 * sign_bits, "seed {seed}: error {rms} against sign bits' {sign_bits}");
        }
    }

    #[test]
    fn odd_vectors_encode_to_codes_that_cannot_mislead() {
        let dim = 70;
        let mut code = Vec::new();
        // All zero: no direction, factor 0, so every estimate is 0.
        encode_bits(&vec![0.0; dim], &mut code);
        assert_eq!(code.len(), bits_stride(dim));
        assert_eq!(f32::from_le_bytes(code[..4].try_into().unwrap()), 0.0);
        // All equal: every code is the top level, and the estimate of itself is exact.
        let flat = vec![1.0 / (dim as f32).sqrt(); dim];
        let got = top_k_bits(
            &{
                encode_bits(&flat, &mut code);
                code.clone()
            },
            dim,
            &flat,
            Metric::Cosine,
            1,
            1,
            None,
        );
        assert!((got[0].score - 1.0).abs() < 0.03, "{}", got[0].score);
        // One large component among tiny ones.
        let mut spike = vec![1e-4f32; dim];
        spike[3] = 1.0;
        encode_bits(&spike, &mut code);
        let got = top_k_bits(&code, dim, &spike, Metric::Cosine, 1, 1, None);
        assert!((got[0].score - 1.0).abs() < 0.03, "{}", got[0].score);
    }

    #[test]
    fn filters_and_threads_do_not_change_the_answer() {
        let dim = 70;
        // Enough slots for three scan threads.
        let vectors: Vec<Vec<f32>> = (0..40_000).map(|i| unit(i, dim)).collect();
        let data = encode_all(&vectors);
        let query = unit(99, dim);
        let allowed: Vec<bool> = (0..40_000).map(|i| i % 3 == 0).collect();
        let one = top_k_bits(&data, dim, &query, Metric::Cosine, 50, 1, Some(&allowed));
        assert!(one.iter().all(|s| s.slot % 3 == 0));
        for threads in [2, 3, 8] {
            assert_eq!(top_k_bits(&data, dim, &query, Metric::Cosine, 50, threads, Some(&allowed)), one);
        }
        let euclidean = top_k_bits(&data, dim, &query, Metric::Euclidean, 5, 2, None);
        assert!(euclidean.iter().all(|s| s.score > 0.0 && s.score <= 1.0));
        // A query of equal components has no spread to quantise.
        let flat = vec![0.1f32; dim];
        assert_eq!(top_k_bits(&data, dim, &flat, Metric::Cosine, 3, 2, None).len(), 3);
    }
}
