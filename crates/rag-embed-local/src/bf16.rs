//! Matrix products in bf16 with f32 sums, on AVX-512 BF16: the encoder's
//! dense layers ([`Bf16Dense`]) and attention's two products ([`pack`],
//! [`round_rows`], [`multiply`]).
//!
//! A layer's weights are rounded to bf16 once, at load, and packed in
//! panels of [`PANEL`] outputs: for each pair of inputs, one `u32` per output
//! holding its two bf16 weights. A forward pass rounds a block of input rows
//! to bf16 pairs the same way, then multiplies tiles of [`TILE_ROWS`] rows by
//! one panel: `VDPBF16PS` adds two products into each of 16 f32 sums, so a
//! 512-bit instruction does 32 multiply-adds where an f32 FMA does 16.
//!
//! Rounding is to nearest, ties to even, for weights and inputs alike, and
//! sums stay in f32: a product is off from the f32 one by about 2⁻⁸ of its
//! size, and a sum of many by far less (the errors do not line up).
//!
//! [`Bf16Dense::new`] answers `None` where the CPU lacks the instructions;
//! the caller keeps its f32 layer then.

use rayon::prelude::*;

/// Outputs per panel: two 16-lane vectors of sums.
const PANEL: usize = 32;

/// Rows per tile: 12 rows × 2 vectors are 24 of the 32 vector registers.
const TILE_ROWS: usize = 12;

/// Rows one task rounds and multiplies: their bf16 copy stays in L1/L2.
const BLOCK_ROWS: usize = 4 * TILE_ROWS;

/// `x` rounded to bf16, to nearest with ties to even (a NaN stays a NaN).
fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

/// The f32 value of a bf16.
#[cfg(test)]
fn from_bf16(x: u16) -> f32 {
    f32::from_bits(u32::from(x) << 16)
}

/// Two bf16 in one `u32`, the first in the low half: the layout `VDPBF16PS` pairs.
fn pair(first: f32, second: f32) -> u32 {
    u32::from(to_bf16(first)) | (u32::from(to_bf16(second)) << 16)
}

/// A dense layer, `y = x·Wᵀ + b`, with its weights in bf16.
pub(crate) struct Bf16Dense {
    inputs: usize,
    outputs: usize,
    /// Input pairs: `inputs / 2` rounded up (an odd last input pairs with 0).
    pairs: usize,
    /// Panel `p`'s pair `q` is at `(p · pairs + q) · PANEL`, one `u32` an output.
    panels: Vec<u32>,
    bias: Option<Vec<f32>>,
}

impl Bf16Dense {
    /// Whether this CPU runs the bf16 kernel (AVX-512 F and BF16).
    pub fn supported() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bf16")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The layer whose weight is `outputs × inputs` (row-major, as BERT's
    /// checkpoints hold it), with `bias` of `outputs` if given; `None` when
    /// the CPU cannot run it or the sizes do not fit together.
    pub fn new(weight: &[f32], outputs: usize, inputs: usize, bias: Option<&[f32]>) -> Option<Self> {
        if weight.len() != outputs * inputs {
            return None;
        }
        Self::from_rows(outputs, inputs, |output, row| row.copy_from_slice(&weight[output * inputs..][..inputs]), bias)
    }

    /// The layer of `outputs × inputs` whose weight row `o` `row(o, buffer)`
    /// writes into `buffer` (`inputs` values): for weights read in place,
    /// from bytes that need decoding, with no copy of the whole matrix. The
    /// rows are asked for on every core. `None` as for [`Bf16Dense::new`].
    pub fn from_rows(
        outputs: usize,
        inputs: usize,
        row: impl Fn(usize, &mut [f32]) + Sync,
        bias: Option<&[f32]>,
    ) -> Option<Self> {
        if !Self::supported() || inputs == 0 || outputs == 0 || bias.is_some_and(|b| b.len() != outputs) {
            return None;
        }
        let panels = pack_rows(outputs, inputs, row);
        Some(Self { inputs, outputs, pairs: inputs.div_ceil(2), panels, bias: bias.map(<[f32]>::to_vec) })
    }

    /// Inputs a row holds.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Outputs a row gets.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// `y = x·Wᵀ + b` for the rows of `x` (`rows × inputs`, row-major):
    /// `rows × outputs` out, blocks of rows on every core.
    #[cfg(test)]
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        self.forward_then(x, |_, _| {})
    }

    /// [`Bf16Dense::forward`], with `finish(first_row, rows)` run on each
    /// block of output rows as soon as it is written, while it is in cache.
    pub fn forward_then(&self, x: &[f32], finish: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
        let rows = x.len() / self.inputs;
        let mut out = vec![0f32; rows * self.outputs];
        out.par_chunks_mut(BLOCK_ROWS * self.outputs)
            .zip(x.par_chunks(BLOCK_ROWS * self.inputs))
            .enumerate()
            .for_each_init(Vec::new, |rounded, (block, (out, x))| {
                self.block(x, out, rounded);
                finish(block * BLOCK_ROWS, out);
            });
        out
    }

    /// One block of rows: rounded to pairs into `rounded`, then multiplied.
    fn block(&self, x: &[f32], out: &mut [f32], rounded: &mut Vec<u32>) {
        round_rows(x, self.inputs, rounded);
        multiply(
            Rounded { pairs: rounded, per_row: self.pairs },
            &self.panels,
            self.outputs,
            self.bias.as_deref(),
            out,
            self.outputs,
        );
    }
}

/// Rows rounded to bf16 pairs: `per_row` pairs a row.
#[derive(Clone, Copy)]
pub(crate) struct Rounded<'a> {
    /// The pairs, row after row.
    pub pairs: &'a [u32],
    /// Pairs a row: its values / 2, rounded up.
    pub per_row: usize,
}

/// The rows of `x` (`width` values each) rounded to bf16 pairs into `dst`,
/// `width / 2` rounded up a row.
pub(crate) fn round_rows(x: &[f32], width: usize, dst: &mut Vec<u32>) {
    let per_row = width.div_ceil(2);
    // Every cell is written below: only growth is zeroed.
    dst.resize(x.len() / width.max(1) * per_row, 0);
    for (row, d) in x.chunks_exact(width.max(1)).zip(dst.chunks_exact_mut(per_row.max(1))) {
        round_row(row, d);
    }
}

/// Packs the `outputs × inputs` matrix whose element (o, i) is `weight(o, i)`
/// into panels of [`PANEL`] outputs for [`multiply`], into `dst`.
pub(crate) fn pack(outputs: usize, inputs: usize, weight: impl Fn(usize, usize) -> f32, dst: &mut Vec<u32>) {
    let pairs = inputs.div_ceil(2);
    dst.clear();
    dst.resize(outputs.div_ceil(PANEL) * pairs * PANEL, 0);
    for output in 0..outputs {
        let (panel, lane) = (output / PANEL, output % PANEL);
        for q in 0..pairs {
            let second = if 2 * q + 1 < inputs { weight(output, 2 * q + 1) } else { 0.0 };
            dst[(panel * pairs + q) * PANEL + lane] = pair(weight(output, 2 * q), second);
        }
    }
}

/// [`pack`] of an `outputs × inputs` weight given a row at a time (see
/// [`Bf16Dense::from_rows`]), one task a panel, each output's row rounded
/// 32 values at a time: a layer's weights at load.
fn pack_rows(outputs: usize, inputs: usize, row: impl Fn(usize, &mut [f32]) + Sync) -> Vec<u32> {
    let pairs = inputs.div_ceil(2);
    let mut dst = vec![0u32; outputs.div_ceil(PANEL) * pairs * PANEL];
    let scratch = || (vec![0f32; inputs], vec![0u32; pairs]);
    dst.par_chunks_exact_mut((pairs * PANEL).max(1)).enumerate().for_each_init(
        scratch,
        |(values, rounded), (panel, cells)| {
            for output in panel * PANEL..outputs.min((panel + 1) * PANEL) {
                row(output, values);
                round_row(values, rounded);
                let lane = output - panel * PANEL;
                for (cell, &value) in cells.chunks_exact_mut(PANEL).zip(rounded.iter()) {
                    cell[lane] = value;
                }
            }
        },
    );
    dst
}

/// `out[r · out_stride + o] = Σ x[r]·w[o] + bias[o]` for every rounded row
/// `r` of `x` and output `o` of the panels (packed by [`pack`] with as many
/// inputs as `x` has pairs).
///
/// # Panics
/// If the panels or `out` are too short for the rows and outputs.
pub(crate) fn multiply(
    x: Rounded<'_>,
    panels: &[u32],
    outputs: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    out_stride: usize,
) {
    let pairs = x.per_row;
    let rows = x.pairs.len().checked_div(pairs).unwrap_or(0);
    assert!(panels.len() >= outputs.div_ceil(PANEL) * pairs * PANEL);
    for panel in 0..outputs.div_ceil(PANEL) {
        let first = panel * PANEL;
        let width = (outputs - first).min(PANEL);
        let weights = &panels[panel * pairs * PANEL..(panel + 1) * pairs * PANEL];
        let bias = bias.map(|b| &b[first..first + width]);
        let mut row = 0;
        while row < rows {
            let take = (rows - row).min(TILE_ROWS);
            let tile = Tile {
                inputs: &x.pairs[row * pairs..(row + take) * pairs],
                pairs,
                weights,
                bias,
                out: &mut out[row * out_stride + first..],
                out_stride,
                width,
            };
            tile.multiply(take);
            row += take;
        }
    }
}

/// One row rounded to bf16 pairs (`dst` holds `row.len() / 2` rounded up).
pub(crate) fn round_row(row: &[f32], dst: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if Bf16Dense::supported() {
        // SAFETY: the CPU has AVX-512 F and BF16, checked just above.
        return unsafe { avx512::round_row(row, dst) };
    }
    for (two, d) in row.chunks(2).zip(dst) {
        *d = pair(two[0], two.get(1).copied().unwrap_or(0.0));
    }
}

/// Up to [`TILE_ROWS`] rows of rounded inputs times one panel of weights.
struct Tile<'a> {
    /// The rows' pairs, `pairs` a row.
    inputs: &'a [u32],
    pairs: usize,
    /// The panel: `pairs × PANEL`.
    weights: &'a [u32],
    /// The panel's `width` biases, if any.
    bias: Option<&'a [f32]>,
    /// The first row's first output; rows `out_stride` apart, `width` written each.
    out: &'a mut [f32],
    out_stride: usize,
    width: usize,
}

impl Tile<'_> {
    /// Multiplies the first `rows` rows (1 to [`TILE_ROWS`]).
    fn multiply(self, rows: usize) {
        assert!((1..=TILE_ROWS).contains(&rows) && self.inputs.len() >= rows * self.pairs);
        assert!(self.weights.len() >= self.pairs * PANEL && self.width <= PANEL);
        assert!(self.out.len() >= (rows - 1) * self.out_stride + self.width);
        assert!(self.bias.is_none_or(|b| b.len() >= self.width));
        #[cfg(target_arch = "x86_64")]
        {
            macro_rules! rows {
                ($($n:literal)*) => {
                    // SAFETY: the CPU has AVX-512 F and BF16 (a Bf16Dense
                    // exists only then), and the asserts above keep every
                    // read and write inside the slices.
                    match rows {
                        $($n => unsafe { avx512::tile::<$n>(self) },)*
                        _ => unreachable!("rows is checked above"),
                    }
                };
            }
            rows!(1 2 3 4 5 6 7 8 9 10 11 12);
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("a Bf16Dense exists only on x86_64 with AVX-512 BF16");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{PANEL, Tile, pair};
    use std::arch::x86_64::*;

    /// [`super::round_row`] on 32 inputs at a time.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn round_row(row: &[f32], dst: &mut [u32]) {
        let whole = row.len() / 32 * 32;
        assert!(dst.len() >= row.len().div_ceil(2));
        for (i, d) in (0..whole).step_by(32).zip(dst.chunks_exact_mut(16)) {
            // SAFETY: i + 32 ≤ whole ≤ row.len(), and d holds 16 u32.
            unsafe {
                let low = _mm512_loadu_ps(row.as_ptr().add(i));
                let high = _mm512_loadu_ps(row.as_ptr().add(i + 16));
                let pairs: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(high, low));
                _mm512_storeu_si512(d.as_mut_ptr().cast(), pairs);
            }
        }
        for (two, d) in row[whole..].chunks(2).zip(&mut dst[whole / 2..]) {
            *d = pair(two[0], two.get(1).copied().unwrap_or(0.0));
        }
    }

    /// `ROWS` rows of a tile: `ROWS × 2` vectors of sums, one pair of inputs
    /// at a time, each input pair broadcast to all lanes.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BF16, and `tile` holds what
    /// [`Tile::multiply`] asserts.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile<const ROWS: usize>(tile: Tile<'_>) {
        let Tile { inputs, pairs, weights, bias, out, out_stride, width } = tile;
        // SAFETY (for the block): reads stay below ROWS · pairs in `inputs`
        // and pairs · PANEL in `weights`; writes are masked to `width`
        // outputs of ROWS rows, out_stride apart, all inside `out`.
        unsafe {
            let mut sums = [[_mm512_setzero_ps(); 2]; ROWS];
            let w = weights.as_ptr();
            let x = inputs.as_ptr();
            for q in 0..pairs {
                let low: __m512bh = std::mem::transmute(_mm512_loadu_si512(w.add(q * PANEL).cast()));
                let high: __m512bh = std::mem::transmute(_mm512_loadu_si512(w.add(q * PANEL + 16).cast()));
                for (r, sum) in sums.iter_mut().enumerate() {
                    let both: __m512bh = std::mem::transmute(_mm512_set1_epi32(*x.add(r * pairs + q) as i32));
                    sum[0] = _mm512_dpbf16_ps(sum[0], both, low);
                    sum[1] = _mm512_dpbf16_ps(sum[1], both, high);
                }
            }
            let mask = |lanes: usize| -> __mmask16 { ((1u32 << lanes.min(16)) - 1) as __mmask16 };
            let masks = [mask(width), mask(width.saturating_sub(16))];
            let bias = match bias {
                Some(b) => {
                    [_mm512_maskz_loadu_ps(masks[0], b.as_ptr()), _mm512_maskz_loadu_ps(masks[1], b.as_ptr().add(16))]
                }
                None => [_mm512_setzero_ps(); 2],
            };
            let o = out.as_mut_ptr();
            for (r, sum) in sums.iter().enumerate() {
                for half in 0..2 {
                    let value = _mm512_add_ps(sum[half], bias[half]);
                    _mm512_mask_storeu_ps(o.add(r * out_stride + 16 * half), masks[half], value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Deterministic values in [-1, 1), from the test kit's generator.
    fn values(seed: u64, count: usize) -> Vec<f32> {
        let mut rng = rag_testkit::fuzz::Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        (0..count).map(|_| (rng.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0).collect()
    }

    /// `x·Wᵀ + b` in f64 from the given values, each first passed through `round`.
    fn reference(x: &[f32], weight: &[f32], bias: Option<&[f32]>, inputs: usize, round: fn(f32) -> f32) -> Vec<f64> {
        let outputs = weight.len() / inputs;
        let mut out = Vec::new();
        for row in x.chunks_exact(inputs) {
            for (o, w) in weight.chunks_exact(inputs).enumerate() {
                let dot: f64 = row.iter().zip(w).map(|(&a, &b)| f64::from(round(a)) * f64::from(round(b))).sum();
                out.push(dot + bias.map_or(0.0, |b| f64::from(b[o])));
            }
        }
        assert_eq!(out.len(), x.len() / inputs * outputs);
        out
    }

    fn through_bf16(x: f32) -> f32 {
        from_bf16(to_bf16(x))
    }

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0, "a tie rounds to the even neighbour");
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0, "a tie rounds to the even neighbour");
        assert_eq!(from_bf16(to_bf16(1.0 + 1.1 / 256.0)), 1.0 + 2.0 / 256.0);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        assert_eq!(from_bf16(to_bf16(f32::MAX)), f32::INFINITY, "past bf16's largest value");
    }

    /// The kernel against the same products in f64 (of the bf16-rounded
    /// values) and against f32 arithmetic, over shapes that leave partial
    /// tiles, partial panels, an odd input count and slices that start off
    /// any alignment.
    #[test]
    fn the_kernel_matches_the_scalar_reference() {
        if !Bf16Dense::supported() {
            eprintln!("skipped: this CPU has no AVX-512 BF16 (the f32 path runs instead)");
            return;
        }
        let shapes = [(1, 2, 1), (13, 31, 33), (49, 64, 32), (7, 383, 77), (100, 384, 1152), (3, 1, 5)];
        for (seed, &(rows, inputs, outputs)) in shapes.iter().enumerate() {
            let seed = seed as u64;
            let weight = values(seed, outputs * inputs);
            let bias = values(seed + 100, outputs);
            // One extra value in front: the rows start off alignment.
            let padded = values(seed + 200, rows * inputs + 1);
            let x = &padded[1..];
            for bias in [None, Some(bias.as_slice())] {
                let layer = Bf16Dense::new(&weight, outputs, inputs, bias).unwrap();
                let got = layer.forward(x);
                let rounded = reference(x, &weight, bias, inputs, through_bf16);
                let exact = reference(x, &weight, bias, inputs, |v| v);
                for (i, ((&g, &r), &e)) in got.iter().zip(&rounded).zip(&exact).enumerate() {
                    let scale = (inputs as f64).sqrt();
                    assert!((f64::from(g) - r).abs() <= 1e-5 * scale, "{rows}×{inputs}×{outputs} [{i}]: {g} vs {r}");
                    assert!((f64::from(g) - e).abs() <= 1e-2 * scale, "{rows}×{inputs}×{outputs} [{i}]: {g} vs {e}");
                }
            }
        }
    }

    #[test]
    fn equal_rows_give_equal_outputs_and_extremes_stay_finite() {
        if !Bf16Dense::supported() {
            return;
        }
        let (inputs, outputs) = (65, 40);
        let weight = vec![0.5f32; outputs * inputs];
        let layer = Bf16Dense::new(&weight, outputs, inputs, None).unwrap();
        let x = vec![3.0f32; 25 * inputs];
        let got = layer.forward(&x);
        assert!(got.iter().all(|&v| v == 0.5 * 3.0 * inputs as f32), "{:?}", &got[..4]);
        let big = vec![1e30f32; inputs];
        let out = Bf16Dense::new(&vec![1e-30f32; outputs * inputs], outputs, inputs, None).unwrap().forward(&big);
        assert!(out.iter().all(|v| (v - inputs as f32).abs() < 0.05 * inputs as f32), "{:?}", &out[..4]);
    }

    #[test]
    fn sizes_that_do_not_fit_are_refused() {
        assert!(Bf16Dense::new(&[1.0; 6], 2, 4, None).is_none());
        assert!(Bf16Dense::new(&[1.0; 8], 2, 4, Some(&[0.0; 3])).is_none());
        assert!(Bf16Dense::new(&[], 0, 0, None).is_none());
        assert!(Bf16Dense::new(&[], 0, 4, None).is_none(), "no outputs");
    }
}
