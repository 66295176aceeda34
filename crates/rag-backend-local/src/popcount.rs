//! The popcount kernels the code scans share: a query quantised to four
//! bits a dimension and split into four bit planes, and the weighted counts
//! Σ_b 2^b Σ_j 2^j popcount(code_b & query_j) of a slot's code planes
//! against them, with AVX-512 `VPOPCNTDQ` where the CPU has it, `POPCNT`
//! or portable code otherwise, chosen at run time.
//!
//! The two-bit codes ([`crate::bits`]) have two planes a slot; the sign
//! codes ([`crate::signs`]) one.

/// Bits of the query's quantisation: four planes.
pub(crate) const QUERY_BITS: usize = 4;

/// A query as the code scans need it: four bit planes of its 4-bit codes
/// (plane-major, one word a 64 dimensions each), so that
/// q_i ≈ `low` + `step` · w_i, and the kernel this CPU runs.
pub(crate) struct QueryPlanes {
    pub(crate) planes: Vec<u64>,
    /// The smallest component, the value of code 0.
    pub(crate) low: f32,
    /// The value of one step of the 4-bit code.
    pub(crate) step: f32,
    /// Σ q_i, exact.
    pub(crate) sum: f32,
    pub(crate) kernel: PopcountKernel,
}

impl QueryPlanes {
    pub(crate) fn new(query: &[f32]) -> Self {
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
        Self { planes, low, step, sum: query.iter().sum(), kernel: PopcountKernel::detect() }
    }

    /// The weighted counts of `slots` (`stride` words each, their `PLANES`
    /// code planes from word `code_at`) against this query, into `out`.
    pub(crate) fn weighted_counts<const PLANES: usize>(
        &self,
        slots: &[u64],
        stride: usize,
        code_at: usize,
        out: &mut [u32],
    ) {
        self.kernel.weighted_counts::<PLANES>(slots, stride, code_at, &self.planes, out);
    }
}

/// Which implementation of the popcount loop this CPU runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PopcountKernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Popcnt,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl PopcountKernel {
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("popcnt") {
                return Self::Popcnt;
            }
        }
        Self::Portable
    }

    /// For each slot of `slots` (`stride` words each, the code's `PLANES`
    /// planes of `planes.len() / QUERY_BITS` words back to back from word
    /// `code_at`), Σ_b 2^b Σ_j 2^j · popcount(code_b & plane_j), into `out`.
    pub(crate) fn weighted_counts<const PLANES: usize>(
        self,
        slots: &[u64],
        stride: usize,
        code_at: usize,
        planes: &[u64],
        out: &mut [u32],
    ) {
        const { assert!(PLANES == 1 || PLANES == 2, "codes have one or two planes") };
        match self {
            Self::Portable => weighted_counts_lanes::<PLANES>(slots, stride, code_at, planes, out),
            // SAFETY: detect() chose these only after checking the CPU has the features.
            #[cfg(target_arch = "x86_64")]
            Self::Popcnt => unsafe { weighted_counts_popcnt::<PLANES>(slots, stride, code_at, planes, out) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => unsafe { weighted_counts_avx512::<PLANES>(slots, stride, code_at, planes, out) },
        }
    }
}

/// The loop every kernel compiles: over the words of each code plane of a
/// slot, each AND-ed with the query's four planes and counted (the compiler
/// vectorises it across words where the CPU has vector popcount).
#[inline(always)]
fn weighted_counts_lanes<const PLANES: usize>(
    slots: &[u64],
    stride: usize,
    code_at: usize,
    planes: &[u64],
    out: &mut [u32],
) {
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
        let plane = |b: usize| &slot[code_at + b * words..code_at + (b + 1) * words];
        *count = (0..PLANES).map(|b| plane_count(plane(b)) << b).sum();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn weighted_counts_popcnt<const PLANES: usize>(
    slots: &[u64],
    stride: usize,
    code_at: usize,
    planes: &[u64],
    out: &mut [u32],
) {
    weighted_counts_lanes::<PLANES>(slots, stride, code_at, planes, out)
}

/// Eight words at a time in 512-bit registers, the last few masked; each
/// code plane against each query plane. Codes of up to 1,024 dimensions
/// (two registers a plane) run [`weighted_counts_avx512_held`], or
/// [`weighted_counts_avx512_narrow_tail`] where the last register would
/// hold four words or fewer (256 and 768 dimensions among them: at 768,
/// 4.1 ns a slot of sign codes in cache against 5.3); wider ones the
/// general loop here.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq")]
fn weighted_counts_avx512<const PLANES: usize>(
    slots: &[u64],
    stride: usize,
    code_at: usize,
    planes: &[u64],
    out: &mut [u32],
) {
    use std::arch::x86_64::{_mm512_add_epi64, _mm512_reduce_add_epi64, _mm512_setzero_si512};
    let words = planes.len() / QUERY_BITS;
    if stride < code_at + PLANES * words {
        return weighted_counts_lanes::<PLANES>(slots, stride, code_at, planes, out);
    }
    match words {
        1..=4 => return weighted_counts_avx512_narrow_tail::<PLANES, 0>(slots, stride, code_at, planes, out),
        9..=12 => return weighted_counts_avx512_narrow_tail::<PLANES, 1>(slots, stride, code_at, planes, out),
        5..=8 => return weighted_counts_avx512_held::<PLANES, 1>(slots, stride, code_at, planes, out),
        13..=16 => return weighted_counts_avx512_held::<PLANES, 2>(slots, stride, code_at, planes, out),
        _ => {}
    }
    for (slot, count) in slots.chunks_exact(stride).zip(out.iter_mut()) {
        let code = &slot[code_at..code_at + PLANES * words];
        let mut weighted = _mm512_setzero_si512();
        let mut at = 0;
        while at < words {
            let mask = words_mask(words - at);
            // SAFETY: every plane holds `words` words, and `mask` selects
            // those from `at` to the end, at most eight.
            let load = |plane: &[u64]| unsafe { avx512::load(plane, at, mask) };
            let query: [_; QUERY_BITS] = std::array::from_fn(|j| load(&planes[j * words..(j + 1) * words]));
            let counted = match PLANES {
                1 => avx512::weighted_one(load(code), &query),
                _ => avx512::weighted(load(&code[..words]), load(&code[words..]), &query),
            };
            weighted = _mm512_add_epi64(weighted, counted);
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
fn weighted_counts_avx512_held<const PLANES: usize, const CHUNKS: usize>(
    slots: &[u64],
    stride: usize,
    code_at: usize,
    planes: &[u64],
    out: &mut [u32],
) {
    use std::arch::x86_64::{__m512i, _mm512_add_epi64, _mm512_setzero_si512};
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
        let code = &slot[code_at..code_at + PLANES * words];
        let mut sum = _mm512_setzero_si512();
        for (c, query) in query.iter().enumerate() {
            let counted = match PLANES {
                1 => avx512::weighted_one(load(code, c), query),
                _ => avx512::weighted(load(&code[..words], c), load(&code[words..], c), query),
            };
            sum = _mm512_add_epi64(sum, counted);
        }
        sum
    };
    avx512::count_by_fours(slots, stride, out, weighted);
}

/// [`weighted_counts_avx512_held`] for codes whose last register would be
/// half empty or less: `FULL` whole 512-bit registers a plane and a tail
/// of one to four words in a 256-bit one (768 dimensions: 8 + 4 words).
/// Where 512-bit operations run as two 256-bit halves (Zen 4), a masked
/// 512-bit tail costs as much as a whole register; this one half.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq")]
fn weighted_counts_avx512_narrow_tail<const PLANES: usize, const FULL: usize>(
    slots: &[u64],
    stride: usize,
    code_at: usize,
    planes: &[u64],
    out: &mut [u32],
) {
    use std::arch::x86_64::{__m256i, __m512i, _mm256_maskz_loadu_epi64, _mm512_add_epi64, _mm512_zextsi256_si512};
    let words = planes.len() / QUERY_BITS;
    let tail = words - 8 * FULL;
    debug_assert!((1..=4).contains(&tail), "one to four words after the whole registers");
    let tail_mask = words_mask(tail);
    // SAFETY: every plane holds `words` words; a whole register reads
    // eight from 8c (c < FULL, so 8c + 8 ≤ words), the tail `tail` words
    // from 8 · FULL, the end of the plane.
    let load = |plane: &[u64], c: usize| unsafe { avx512::load(plane, 8 * c, u8::MAX) };
    let load_tail = |plane: &[u64]| unsafe { _mm256_maskz_loadu_epi64(tail_mask, plane.as_ptr().add(8 * FULL).cast()) };
    let plane_of = |j: usize| &planes[j * words..(j + 1) * words];
    let query: [[__m512i; QUERY_BITS]; FULL] = std::array::from_fn(|c| std::array::from_fn(|j| load(plane_of(j), c)));
    let query_tail: [__m256i; QUERY_BITS] = std::array::from_fn(|j| load_tail(plane_of(j)));
    let weighted = |slot: &[u64]| {
        let code = &slot[code_at..code_at + PLANES * words];
        let counted_tail = match PLANES {
            1 => avx512::weighted_one_256(load_tail(code), &query_tail),
            _ => avx512::weighted_256(load_tail(&code[..words]), load_tail(&code[words..]), &query_tail),
        };
        let mut sum = _mm512_zextsi256_si512(counted_tail);
        for (c, query) in query.iter().enumerate() {
            let counted = match PLANES {
                1 => avx512::weighted_one(load(code, c), query),
                _ => avx512::weighted(load(&code[..words], c), load(&code[words..], c), query),
            };
            sum = _mm512_add_epi64(sum, counted);
        }
        sum
    };
    avx512::count_by_fours(slots, stride, out, weighted);
}

/// The AVX-512 kernels' building blocks.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m256i, __m512i, _mm256_add_epi64, _mm256_and_si256, _mm256_popcnt_epi64, _mm256_slli_epi64, _mm512_add_epi64,
        _mm512_and_si512, _mm512_maskz_loadu_epi64, _mm512_popcnt_epi64, _mm512_reduce_add_epi64, _mm512_shuffle_i64x2,
        _mm512_slli_epi64, _mm512_unpackhi_epi64, _mm512_unpacklo_epi64,
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

    /// Per lane, Σ_j 2^j popcount(code & query_j).
    #[inline]
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub(super) fn weighted_one(code: __m512i, query: &[__m512i; 4]) -> __m512i {
        let count = |plane: __m512i| _mm512_popcnt_epi64(_mm512_and_si512(code, plane));
        let (c0, c1, c2, c3) = (count(query[0]), count(query[1]), count(query[2]), count(query[3]));
        _mm512_add_epi64(
            _mm512_add_epi64(c0, _mm512_slli_epi64::<1>(c1)),
            _mm512_slli_epi64::<2>(_mm512_add_epi64(c2, _mm512_slli_epi64::<1>(c3))),
        )
    }

    /// [`weighted_one`] in a 256-bit register.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq")]
    pub(super) fn weighted_one_256(code: __m256i, query: &[__m256i; 4]) -> __m256i {
        let count = |plane: __m256i| _mm256_popcnt_epi64(_mm256_and_si256(code, plane));
        let (c0, c1, c2, c3) = (count(query[0]), count(query[1]), count(query[2]), count(query[3]));
        _mm256_add_epi64(
            _mm256_add_epi64(c0, _mm256_slli_epi64::<1>(c1)),
            _mm256_slli_epi64::<2>(_mm256_add_epi64(c2, _mm256_slli_epi64::<1>(c3))),
        )
    }

    /// [`weighted`] in a 256-bit register.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq")]
    pub(super) fn weighted_256(low: __m256i, high: __m256i, query: &[__m256i; 4]) -> __m256i {
        _mm256_add_epi64(weighted_one_256(low, query), _mm256_slli_epi64::<1>(weighted_one_256(high, query)))
    }

    /// Per lane, Σ_j 2^j (popcount(low & query_j) + 2 · popcount(high & query_j)).
    #[inline]
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub(super) fn weighted(low: __m512i, high: __m512i, query: &[__m512i; 4]) -> __m512i {
        _mm512_add_epi64(weighted_one(low, query), _mm512_slli_epi64::<1>(weighted_one(high, query)))
    }

    /// The count of each slot of `slots` (`stride` words each) into `out`,
    /// `weighted` giving a slot's counts per lane: four slots' lanes summed
    /// together ([`sum_four`]), the rest one by one; as many counts as
    /// slots or as `out` holds, whichever is fewer.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn count_by_fours(slots: &[u64], stride: usize, out: &mut [u32], weighted: impl Fn(&[u64]) -> __m512i) {
        let count = out.len().min(slots.len() / stride);
        let mut groups = slots[..count * stride].chunks_exact(4 * stride);
        let mut outs = out[..count].chunks_exact_mut(4);
        for (group, out) in groups.by_ref().zip(outs.by_ref()) {
            let sums = sum_four(
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

    /// Every kernel this CPU can run: the portable one, the chosen one and POPCNT alone.
    fn kernels() -> Vec<PopcountKernel> {
        #[allow(unused_mut)]
        let mut kernels = vec![PopcountKernel::Portable, PopcountKernel::detect()];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") {
            kernels.push(PopcountKernel::Popcnt);
        }
        kernels
    }

    /// The weighted count of one slot's code planes (`PLANES` planes of
    /// `planes.len() / QUERY_BITS` words, back to back).
    fn weighted_count<const PLANES: usize>(kernel: PopcountKernel, code: &[u64], planes: &[u64]) -> u32 {
        let slot: Vec<u64> = [0, 0].iter().chain(code).copied().collect();
        let mut out = [0u32];
        kernel.weighted_counts::<PLANES>(&slot, slot.len(), 2, planes, &mut out);
        out[0]
    }

    #[test]
    fn every_kernel_counts_as_the_scalar_reference() {
        check_kernels::<1>();
        check_kernels::<2>();
    }

    fn check_kernels<const PLANES: usize>() {
        let kernels = kernels();
        let mut x = 0x1234_5678_9ABC_DEF1u64 + PLANES as u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for words in [1usize, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 17] {
            // The code planes (low, then high) and the query's four.
            let code: Vec<u64> = (0..words * PLANES).map(|_| next()).collect();
            let planes: Vec<u64> = (0..words * QUERY_BITS).map(|_| next()).collect();
            // Bit by bit: Σ_i u_i · w_i, with u_i the code and w_i the query's 4-bit value.
            let bit = |words_of: &[u64], plane: usize, i: usize| (words_of[plane * words + i / 64] >> (i % 64)) & 1;
            let reference: u32 = (0..words * 64)
                .map(|i| {
                    let u = (0..PLANES).map(|b| bit(&code, b, i) << b).sum::<u64>();
                    let w = (0..QUERY_BITS).map(|j| bit(&planes, j, i) << j).sum::<u64>();
                    (u * w) as u32
                })
                .sum();
            // The same words as a sub-slice of a longer buffer.
            let shifted: Vec<u64> = std::iter::once(0).chain(code.iter().copied()).collect();
            for &kernel in &kernels {
                assert_eq!(weighted_count::<PLANES>(kernel, &code, &planes), reference, "{kernel:?}, {words} words");
                assert_eq!(weighted_count::<PLANES>(kernel, &shifted[1..], &planes), reference, "{kernel:?} shifted");
            }
            // Batches of slots with a header of one word and a wider stride,
            // each slot counted on its own: the code, its complement, zeros,
            // then random codes; 11 slots, so kernels that count four at a
            // time have a remainder.
            let stride = 1 + PLANES * words + 1;
            let flipped: Vec<u64> = code.iter().map(|b| !b).collect();
            let mut codes = vec![code.clone(), flipped, vec![0; PLANES * words]];
            codes.extend((0..8).map(|_| (0..words * PLANES).map(|_| next()).collect::<Vec<u64>>()));
            let mut slots = vec![0u64; codes.len() * stride];
            for (slot, code) in slots.chunks_exact_mut(stride).zip(&codes) {
                slot[1..1 + PLANES * words].copy_from_slice(code);
            }
            let expected: Vec<u32> =
                codes.iter().map(|code| weighted_count::<PLANES>(PopcountKernel::Portable, code, &planes)).collect();
            assert_eq!(expected[0], reference);
            for &kernel in &kernels {
                for count in [1, 3, 4, 5, 8, 11] {
                    // Room for more counts than slots, as a scan's last batch has.
                    let mut out = vec![u32::MAX; count + 5];
                    kernel.weighted_counts::<PLANES>(&slots[..count * stride], stride, 1, &planes, &mut out);
                    assert_eq!(out[..count], expected[..count], "{kernel:?}, a batch of {count} {words}-word slots");
                    assert!(out[count..].iter().all(|&c| c == u32::MAX), "{kernel:?}: nothing past the slots");
                }
            }
            // All ones (the top code against query value 15 everywhere) and all zeros.
            let ones = vec![u64::MAX; words * PLANES];
            let all = vec![u64::MAX; words * QUERY_BITS];
            let top = (1u32 << PLANES) - 1;
            for &kernel in &kernels {
                assert_eq!(weighted_count::<PLANES>(kernel, &ones, &all), top * 15 * 64 * words as u32);
                assert_eq!(weighted_count::<PLANES>(kernel, &vec![0; words * PLANES], &all), 0);
            }
        }
    }
}
