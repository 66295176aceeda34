//! One-bit codes: the sign of every dimension of a stored vector, and what it
//! takes to turn them into a score estimate. A query scans these (about 1/30
//! of the float vectors' bytes) with popcount, then re-scores the best
//! candidates on the int8 codes and the best of those exactly.
//!
//! A slot is a 16-byte header and then one bit a dimension, in little-endian
//! `u64` words: `factor` (`f32`, NaN when the slot is free), `norm2` (`f32`,
//! the vector's squared length), `ones` (`u32`, how many bits are set), four
//! spare bytes, then the bits: bit `i % 64` of word `i / 64` is set when
//! dimension `i` is positive.
//!
//! With `s` the vector's signs (±1), ⟨q, v⟩ is estimated as ⟨q, s⟩ · factor,
//! where factor = ‖v‖² / ‖v‖₁, exact for q = v. (This is RaBitQ's estimator
//! ⟨q, ō⟩ / ⟨v, ō⟩ with ō = s / √D, without its random rotation.) The query
//! stays in floats but is quantised to four bits a dimension and split into
//! four bit planes, so Σ over set bits of q is `ones` plus four AND-and-
//! popcounts a word: ⟨q, s⟩ = 2 Σ_{bit set} q_i − Σ q_i.

use std::collections::BinaryHeap;

use rag_core::store::Metric;

use crate::scan::{Scored, is_allowed, parallel_top_k, push_bounded};

/// Bytes of the header of a slot.
const HEADER_BYTES: usize = 16;
/// Bits of the query's quantisation: four planes.
const QUERY_BITS: usize = 4;

/// Bytes of one slot of the bit-code file for `dim` dimensions.
pub fn bits_stride(dim: usize) -> usize {
    HEADER_BYTES + dim.div_ceil(64) * 8
}

/// Encodes a vector (as the store keeps it: unit length on cosine stores)
/// into `out`, [`bits_stride`] bytes.
pub fn encode_bits(vector: &[f32], out: &mut Vec<u8>) {
    let norm2: f32 = vector.iter().map(|x| x * x).sum();
    let norm1: f32 = vector.iter().map(|x| x.abs()).sum();
    let factor = if norm1 > 0.0 { norm2 / norm1 } else { 0.0 };
    let mut words = vec![0u64; vector.len().div_ceil(64)];
    for (i, x) in vector.iter().enumerate() {
        if *x > 0.0 {
            words[i / 64] |= 1 << (i % 64);
        }
    }
    let ones: u32 = words.iter().map(|w| w.count_ones()).sum();
    out.clear();
    out.extend(factor.to_le_bytes());
    out.extend(norm2.to_le_bytes());
    out.extend(ones.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend(words.iter().flat_map(|w| w.to_le_bytes()));
}

/// The `k` best slots of the bit-code file `data` by estimated score, best
/// first; free slots (NaN factor) are skipped. The estimates are rough
/// (about ±0.05 of cosine on real embeddings): callers take several times
/// the slots they need and re-score them.
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
        // The popcounts of a batch of slots in one call of the CPU's kernel,
        // then the scores and the heap in plain code.
        for batch_start in (start..end).step_by(BATCH) {
            let batch_end = (batch_start + BATCH).min(end);
            let slots = &words[batch_start * stride..batch_end * stride];
            query.kernel.weighted_counts(slots, stride, &query.planes, &mut counts);
            for (i, slot) in slots.chunks_exact(stride).enumerate() {
                let number = batch_start + i;
                if !is_allowed(allowed, number) {
                    continue;
                }
                if let Some(score) = query.estimate(slot, counts[i]) {
                    push_bounded(&mut heap, Scored { score, slot: number as u64 }, k);
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

    /// The estimated score of one slot (`None` when it is free), given its
    /// weighted count against the query's planes.
    fn estimate(&self, slot: &[u64], weighted: u32) -> Option<f32> {
        let factor = f32::from_bits(slot[0] as u32);
        if factor.is_nan() {
            return None;
        }
        let norm2 = f32::from_bits((slot[0] >> 32) as u32);
        let ones = slot[1] as u32;
        let selected = self.low * ones as f32 + self.step * weighted as f32;
        let dot = (2.0 * selected - self.sum) * factor;
        Some(match self.metric {
            Metric::Cosine => dot,
            Metric::Euclidean => 1.0 / (1.0 + (self.norm2 + norm2 - 2.0 * dot).max(0.0).sqrt()),
        })
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
    /// the bits), Σ_j 2^j · popcount(bits & plane_j), into `out`.
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

    #[cfg(test)]
    fn weighted_count(self, bits: &[u64], planes: &[u64]) -> u32 {
        let slot: Vec<u64> = [0, 0].iter().chain(bits).copied().collect();
        let mut out = [0u32];
        self.weighted_counts(&slot, slot.len(), planes, &mut out);
        out[0]
    }
}

/// The loop every kernel compiles: over the words of a slot, each AND-ed
/// with the four planes and counted (the compiler vectorises it across
/// words where the CPU has vector popcount).
#[inline(always)]
fn weighted_counts_lanes(slots: &[u64], stride: usize, planes: &[u64], out: &mut [u32]) {
    let words = planes.len() / QUERY_BITS;
    let (p0, rest) = planes.split_at(words);
    let (p1, rest) = rest.split_at(words);
    let (p2, p3) = rest.split_at(words);
    for (slot, count) in slots.chunks_exact(stride).zip(out.iter_mut()) {
        let bits = &slot[2..2 + words];
        let mut total = 0u32;
        for ((((b, a), c), d), e) in bits.iter().zip(p0).zip(p1).zip(p2).zip(p3) {
            total += (b & a).count_ones()
                + ((b & c).count_ones() << 1)
                + ((b & d).count_ones() << 2)
                + ((b & e).count_ones() << 3);
        }
        *count = total;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn weighted_counts_popcnt(slots: &[u64], stride: usize, planes: &[u64], out: &mut [u32]) {
    weighted_counts_lanes(slots, stride, planes, out)
}

/// Eight words at a time in 512-bit registers, the last few masked.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
fn weighted_counts_avx512(slots: &[u64], stride: usize, planes: &[u64], out: &mut [u32]) {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi64, _mm512_and_si512, _mm512_maskz_loadu_epi64, _mm512_popcnt_epi64,
        _mm512_reduce_add_epi64, _mm512_setzero_si512, _mm512_slli_epi64,
    };
    let words = planes.len() / QUERY_BITS;
    if stride < 2 + words {
        return weighted_counts_lanes(slots, stride, planes, out);
    }
    let load = |words: &[u64], at: usize, mask: u8| -> __m512i {
        // SAFETY: `mask` selects only the words from `at` to the end of
        // `words`, at most eight; masked-off lanes are not read.
        unsafe { _mm512_maskz_loadu_epi64(mask, words.as_ptr().add(at).cast()) }
    };
    for (slot, count) in slots.chunks_exact(stride).zip(out.iter_mut()) {
        let bits = &slot[2..2 + words];
        let (mut c0, mut c1, mut c2, mut c3) =
            (_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512());
        let mut at = 0;
        while at < words {
            let left = words - at;
            let mask = if left >= 8 { u8::MAX } else { (1u8 << left) - 1 };
            let b = load(bits, at, mask);
            let plane = |j: usize| load(&planes[j * words..(j + 1) * words], at, mask);
            c0 = _mm512_add_epi64(c0, _mm512_popcnt_epi64(_mm512_and_si512(b, plane(0))));
            c1 = _mm512_add_epi64(c1, _mm512_popcnt_epi64(_mm512_and_si512(b, plane(1))));
            c2 = _mm512_add_epi64(c2, _mm512_popcnt_epi64(_mm512_and_si512(b, plane(2))));
            c3 = _mm512_add_epi64(c3, _mm512_popcnt_epi64(_mm512_and_si512(b, plane(3))));
            at += 8;
        }
        let weighted = _mm512_add_epi64(
            _mm512_add_epi64(c0, _mm512_slli_epi64::<1>(c1)),
            _mm512_add_epi64(_mm512_slli_epi64::<2>(c2), _mm512_slli_epi64::<3>(c3)),
        );
        *count = _mm512_reduce_add_epi64(weighted) as u32;
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
            let bits: Vec<u64> = (0..words).map(|_| next()).collect();
            let planes: Vec<u64> = (0..words * QUERY_BITS).map(|_| next()).collect();
            let mut reference = 0u32;
            for j in 0..QUERY_BITS {
                for w in 0..words {
                    for b in 0..64 {
                        if bits[w] >> b & 1 == 1 && planes[j * words + w] >> b & 1 == 1 {
                            reference += 1 << j;
                        }
                    }
                }
            }
            // The same words as a sub-slice of a longer buffer.
            let shifted: Vec<u64> = std::iter::once(0).chain(bits.iter().copied()).collect();
            for &kernel in &kernels {
                assert_eq!(kernel.weighted_count(&bits, &planes), reference, "{kernel:?}, {words} words");
                assert_eq!(kernel.weighted_count(&shifted[1..], &planes), reference, "{kernel:?} shifted");
            }
            // A batch of slots with a wider stride: each slot counted on its own.
            let stride = 2 + words + 1;
            let mut slots = vec![0u64; 3 * stride];
            let flipped: Vec<u64> = bits.iter().map(|b| !b).collect();
            slots[2..2 + words].copy_from_slice(&bits);
            slots[stride + 2..stride + 2 + words].copy_from_slice(&flipped);
            for &kernel in &kernels {
                let mut out = [u32::MAX; 3];
                kernel.weighted_counts(&slots, stride, &planes, &mut out);
                let expected = [reference, PopcountKernel::Portable.weighted_count(&flipped, &planes), 0];
                assert_eq!(out, expected, "{kernel:?}, a batch of {words}-word slots");
            }
            // All ones and all zeros.
            let ones = vec![u64::MAX; words];
            let all = vec![u64::MAX; words * QUERY_BITS];
            for &kernel in &kernels {
                assert_eq!(kernel.weighted_count(&ones, &all), 15 * 64 * words as u32);
                assert_eq!(kernel.weighted_count(&vec![0; words], &all), 0);
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
                top_k_bits(&data, dim, &query, Metric::Cosine, 300, 2, None).iter().map(|s| s.slot).collect();
            assert!(!candidates.contains(&0), "free slot returned");
            let exact = top_k(&flat, dim, &query, Metric::Cosine, 10, 1, None);
            let found = exact.iter().filter(|s| s.slot == 0 || candidates.contains(&s.slot)).count();
            // Random vectors are the hard case for sign codes; most of the top 10 are in 6% of the slots.
            assert!(found >= 8, "seed {seed}: {found} of the exact top 10 among the candidates");
            for s in top_k_bits(&data, dim, &query, Metric::Cosine, 5, 1, None) {
                let truth = exact_score(&query, &vectors[s.slot as usize], Metric::Cosine);
                assert!((s.score - truth).abs() < 0.2, "estimate {} against {truth}", s.score);
            }
        }
    }

    #[test]
    fn filters_and_threads_do_not_change_the_answer() {
        let dim = 70;
        let vectors: Vec<Vec<f32>> = (0..9_000).map(|i| unit(i, dim)).collect();
        let data = encode_all(&vectors);
        let query = unit(99, dim);
        let allowed: Vec<bool> = (0..9_000).map(|i| i % 3 == 0).collect();
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
