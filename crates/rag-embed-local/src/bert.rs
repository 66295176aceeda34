//! A BERT encoder arranged for embedding on the CPU.
//!
//! The weights, names and arithmetic are those of candle-transformers'
//! `BertModel`; what differs is the arrangement:
//!
//! - **No padding.** The texts of a pass are laid end to end as one matrix of
//!   tokens, so the linear layers (most of the work) never multiply padding,
//!   and attention runs text by text, so no mask is needed.
//! - **Fused attention.** One matrix product gives queries, keys and values;
//!   each (text, head) pair then computes its scores, softmax and weighted
//!   values in a buffer of its own, on every core, writing straight into the
//!   output. Nothing of size texts × heads × tokens² is ever allocated.
//! - **In place.** Bias and GELU are applied to the intermediate layer in
//!   place, in parallel, with a polynomial `erf` in place of libm's.
//! - **bf16 where the CPU has it.** With [`Arithmetic::Bf16`] the dense
//!   layers (nine tenths of the work) and attention's two products multiply
//!   in bf16 with f32 sums ([`crate::bf16`]); softmax, GELU, sums and layer
//!   norms stay f32. [`Arithmetic::Fp32`] is candle's f32 matrix products
//!   throughout: the reference, and the fallback.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Module, Shape, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;

use crate::Arithmetic;
use crate::bf16::{self, Bf16Dense};

/// The span of one text in the matrix of tokens: first row and length.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub start: usize,
    pub len: usize,
}

impl Span {
    /// The spans of texts of these lengths laid end to end.
    pub fn lay_out(lengths: impl IntoIterator<Item = usize>) -> Vec<Span> {
        let mut start = 0;
        lengths
            .into_iter()
            .map(|len| {
                let span = Span { start, len };
                start += len;
                span
            })
            .collect()
    }
}

/// A checkpoint's tensors as the bytes of its mapped file, for packing
/// weights without converting them to tensors first.
pub struct RawWeights<'a> {
    tensors: &'a candle_core::safetensors::SliceSafetensors<'a>,
}

impl<'a> RawWeights<'a> {
    /// The tensors of a parsed safetensors file.
    pub fn new(tensors: &'a candle_core::safetensors::SliceSafetensors<'a>) -> Self {
        Self { tensors }
    }

    /// The little-endian f32 bytes of the `rows × cols` matrix `name`, when
    /// the file holds it so.
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Option<&'a [u8]> {
        let view = self.tensors.get(name).ok()?;
        let plain = view.dtype() == DType::F32.into() && view.shape() == [rows, cols];
        (plain && view.data().len() == rows * cols * 4).then(|| view.data())
    }

    /// A bf16 layer of the matrices `parts` (each `outputs × inputs`, its
    /// values multiplied by its scale) one under the other, with `bias`;
    /// `None` when a part is missing or not plain f32, or the CPU cannot.
    fn dense(
        &self,
        parts: &[(String, f32)],
        outputs: usize,
        inputs: usize,
        bias: Option<Vec<f32>>,
    ) -> Option<Bf16Dense> {
        let parts: Vec<(&[u8], f32)> = parts
            .iter()
            .map(|(name, scale)| Some((self.matrix(name, outputs, inputs)?, *scale)))
            .collect::<Option<_>>()?;
        let row = |output: usize, values: &mut [f32]| {
            let (bytes, scale) = parts[output / outputs];
            let bytes = &bytes[(output % outputs) * inputs * 4..][..inputs * 4];
            for (value, b) in values.iter_mut().zip(bytes.chunks_exact(4)) {
                // As candle scales a tensor: `v · scale + 0`.
                *value = f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * scale + 0.0;
            }
        };
        Bf16Dense::from_rows(parts.len() * outputs, inputs, row, bias.as_deref())
    }
}

/// A dense layer, `y = x·Wᵀ + b`, in the arithmetic chosen at load.
enum Dense {
    /// candle's f32 matrix product.
    Fp32(Linear),
    /// bf16 products, f32 sums.
    Bf16(Bf16Dense),
}

/// What is done to a dense layer's output besides the product.
#[derive(Clone, Copy)]
enum Then<'a> {
    /// Nothing: `x·Wᵀ + b`.
    Nothing,
    /// The residual added: `x·Wᵀ + b + residual`.
    Add(&'a Tensor),
    /// A bias added and the activation applied (the intermediate layer).
    Activate(&'a [f32], HiddenAct),
}

impl Dense {
    /// `linear` as it is, or converted to bf16 when that is asked for and the CPU has it.
    fn new(linear: Linear, arithmetic: Arithmetic) -> candle_core::Result<Self> {
        if arithmetic == Arithmetic::Bf16 {
            let (outputs, inputs) = linear.weight().dims2()?;
            let bias = linear.bias().map(|b| b.to_vec1::<f32>()).transpose()?;
            // Read in place: a copy of every weight would cost a fresh query
            // more than bf16 saves it.
            let (storage, layout) = linear.weight().storage_and_layout();
            let candle_core::Storage::Cpu(storage) = &*storage else { candle_core::bail!("weights not on the CPU") };
            let weight = contiguous_f32(storage, layout)?;
            if let Some(dense) = Bf16Dense::new(weight, outputs, inputs, bias.as_deref()) {
                return Ok(Self::Bf16(dense));
            }
        }
        Ok(Self::Fp32(linear))
    }

    /// The layer on the rows of `x`, then `then`. In bf16, `then` runs on
    /// each block of rows as it is written, while it is in cache.
    fn forward(&self, x: &Tensor, then: Then<'_>) -> candle_core::Result<Tensor> {
        match self {
            Dense::Fp32(linear) => {
                let y = linear.forward(x)?;
                match then {
                    Then::Nothing => Ok(y),
                    Then::Add(residual) => y + residual,
                    Then::Activate(bias, activation) => {
                        y.inplace_op1(&BiasActivation { bias, activation })?;
                        Ok(y)
                    }
                }
            }
            Dense::Bf16(dense) => match then {
                Then::Add(residual) => x.apply_op2_no_bwd(residual, &Bf16Op { dense, then }),
                _ => x.apply_op1_no_bwd(&Bf16Op { dense, then }),
            },
        }
    }
}

/// A bf16 dense layer and what follows it, as a candle op.
struct Bf16Op<'a> {
    dense: &'a Bf16Dense,
    then: Then<'a>,
}

impl Bf16Op<'_> {
    /// The layer on `x` (`rows × inputs`), each block of output rows then
    /// given `residual`'s same rows added, or the activation.
    fn run(&self, x: &[f32], layout: &Layout, residual: Option<&[f32]>) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, inputs) = layout.shape().dims2()?;
        let outputs = self.dense.outputs();
        if inputs != self.dense.inputs() || residual.is_some_and(|r| r.len() != rows * outputs) {
            candle_core::bail!("a dense layer of {} inputs was given rows of {inputs}", self.dense.inputs());
        }
        let y = self.dense.forward_then(x, |first, block| match (self.then, residual) {
            (Then::Activate(bias, activation), _) => with_wide_vectors(
                #[inline(always)]
                || {
                    for row in block.chunks_exact_mut(outputs) {
                        bias_activation(row, bias, activation);
                    }
                },
            ),
            (Then::Add(_), Some(residual)) => {
                let same = &residual[first * outputs..first * outputs + block.len()];
                with_wide_vectors(
                    #[inline(always)]
                    || block.iter_mut().zip(same).for_each(|(y, r)| *y += r),
                );
            }
            _ => {}
        });
        Ok((CpuStorage::F32(y), Shape::from((rows, outputs))))
    }
}

impl candle_core::CustomOp1 for Bf16Op<'_> {
    fn name(&self) -> &'static str {
        "bf16-dense"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run(contiguous_f32(storage, layout)?, layout, None)
    }
}

impl candle_core::CustomOp2 for Bf16Op<'_> {
    fn name(&self) -> &'static str {
        "bf16-dense-residual"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
        residual: &CpuStorage,
        residual_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let residual = contiguous_f32(residual, residual_layout)?;
        self.run(contiguous_f32(storage, layout)?, layout, Some(residual))
    }
}

struct Layer {
    /// Queries, keys and values in one weight of `3 × hidden` rows, the
    /// queries pre-scaled by 1/√(head size).
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    /// Without its bias: that is added with the activation, in place.
    intermediate: Dense,
    intermediate_bias: Vec<f32>,
    output: Dense,
    output_norm: LayerNorm,
}

/// A BERT encoder: token ids in, one vector per token out.
pub(crate) struct Encoder {
    word: Words,
    position: Tensor,
    token_type: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
    activation: HiddenAct,
    /// What the products run in: bf16 only where it was asked for and the CPU has it.
    arithmetic: Arithmetic,
}

fn layer_norm(vb: VarBuilder, size: usize, eps: f64) -> candle_core::Result<LayerNorm> {
    candle_nn::layer_norm(size, eps, vb)
}

impl Encoder {
    /// Loads the weights of a BERT checkpoint (with or without the `bert.`
    /// prefix), for the dense layers to run in `arithmetic`; the word
    /// embeddings are read from `words` as texts need them, when given.
    ///
    /// With `raw`, the checkpoint's bytes, the dense layers' bf16 weights are
    /// packed straight from them: a fresh query does not first copy 42 MB of
    /// f32 weights (all-MiniLM-L6-v2) only to round them.
    pub fn load(
        vb: VarBuilder,
        config: &Config,
        arithmetic: Arithmetic,
        words: Option<WordsInFile>,
        raw: Option<&RawWeights<'_>>,
    ) -> candle_core::Result<Self> {
        let prefix = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        let vb = if prefix.is_empty() { vb } else { vb.pp("bert") };
        let hidden = config.hidden_size;
        let heads = config.num_attention_heads;
        if heads == 0 || !hidden.is_multiple_of(heads) {
            candle_core::bail!("hidden_size {hidden} is not a multiple of num_attention_heads {heads}");
        }
        let arithmetic = match arithmetic {
            Arithmetic::Bf16 if Bf16Dense::supported() => Arithmetic::Bf16,
            _ => Arithmetic::Fp32,
        };
        let eps = config.layer_norm_eps;
        let embeddings = vb.pp("embeddings");
        let word = match words {
            Some(words) if words.rows == config.vocab_size && words.hidden == hidden => Words::InFile(words),
            _ => Words::Held(embeddings.get((config.vocab_size, hidden), "word_embeddings.weight")?),
        };
        let position = embeddings.get((config.max_position_embeddings, hidden), "position_embeddings.weight")?;
        let token_type =
            embeddings.get((config.type_vocab_size, hidden), "token_type_embeddings.weight")?.narrow(0, 0, 1)?;
        let embedding_norm = layer_norm(embeddings.pp("LayerNorm"), hidden, eps)?;
        let scale = 1.0 / ((hidden / heads) as f64).sqrt();
        // Not preallocated: the count is the file's word, and a missing layer ends the loop with an error.
        let mut layers = Vec::new();
        let intermediate_size = config.intermediate_size;
        for index in 0..config.num_hidden_layers {
            let layer = format!("encoder.layer.{index}");
            let vb = vb.pp(&layer);
            let bias = |name: &str, size: usize| vb.pp(name).get(size, "bias");
            // Queries (scaled, so attention need not scale), keys and values as one layer.
            let qkv_bias = match (bias("attention.self.query", hidden), bias("attention.self.key", hidden)) {
                (Ok(q), Ok(k)) => Tensor::cat(&[(q * scale)?, k, bias("attention.self.value", hidden)?], 0)?,
                _ => candle_core::bail!("layer {index}: attention without biases is not BERT"),
            };
            let intermediate_bias = bias("intermediate.dense", intermediate_size)?.to_vec1::<f32>()?;
            let in_place = |parts: &[(&str, f32)], outputs: usize, inputs: usize, bias: Option<Vec<f32>>| {
                let raw = raw.filter(|_| arithmetic == Arithmetic::Bf16)?;
                let name = |part: &str| format!("{prefix}{layer}.{part}.weight");
                raw.dense(
                    &parts.iter().map(|(part, scale)| (name(part), *scale)).collect::<Vec<_>>(),
                    outputs,
                    inputs,
                    bias,
                )
                .map(Dense::Bf16)
            };
            let qkv_parts =
                [("attention.self.query", scale as f32), ("attention.self.key", 1.0), ("attention.self.value", 1.0)];
            let qkv = match in_place(&qkv_parts, hidden, hidden, Some(qkv_bias.to_vec1::<f32>()?)) {
                Some(dense) => dense,
                None => {
                    let weight = |part: &str| vb.pp(part).get((hidden, hidden), "weight");
                    let weight = Tensor::cat(
                        &[
                            (weight("attention.self.query")? * scale)?,
                            weight("attention.self.key")?,
                            weight("attention.self.value")?,
                        ],
                        0,
                    )?;
                    Dense::new(Linear::new(weight, Some(qkv_bias)), arithmetic)?
                }
            };
            let dense = |part: &str, outputs: usize, inputs: usize, with_bias: bool| -> candle_core::Result<Dense> {
                let bias = if with_bias { Some(bias(part, outputs)?) } else { None };
                let bias_values = bias.as_ref().map(Tensor::to_vec1::<f32>).transpose()?;
                match in_place(&[(part, 1.0)], outputs, inputs, bias_values) {
                    Some(dense) => Ok(dense),
                    None => Dense::new(Linear::new(vb.pp(part).get((outputs, inputs), "weight")?, bias), arithmetic),
                }
            };
            layers.push(Layer {
                qkv,
                attention_out: dense("attention.output.dense", hidden, hidden, true)?,
                attention_norm: layer_norm(vb.pp("attention.output.LayerNorm"), hidden, eps)?,
                intermediate: dense("intermediate.dense", intermediate_size, hidden, false)?,
                intermediate_bias,
                output: dense("output.dense", hidden, intermediate_size, true)?,
                output_norm: layer_norm(vb.pp("output.LayerNorm"), hidden, eps)?,
            });
        }
        Ok(Self {
            word,
            position,
            token_type,
            embedding_norm,
            layers,
            heads,
            hidden,
            activation: config.hidden_act,
            arithmetic,
        })
    }

    /// What the matrix products run in.
    pub fn arithmetic(&self) -> Arithmetic {
        self.arithmetic
    }

    /// Token vectors of the texts `ids`, laid end to end: a `(tokens, hidden)`
    /// tensor whose rows for text `i` are `spans[i]`.
    pub fn forward(&self, ids: &[&[u32]]) -> candle_core::Result<(Tensor, Vec<Span>)> {
        let device = self.position.device();
        let spans = Span::lay_out(ids.iter().map(|text| text.len()));
        let flat: Vec<u32> = ids.concat();
        let positions: Vec<u32> = ids.iter().flat_map(|text| 0..text.len() as u32).collect();
        let tokens = flat.len();
        if tokens == 0 {
            return Ok((Tensor::zeros((0, self.hidden), DType::F32, device)?, spans));
        }
        let words = self.word.select(&flat, device)?;
        let positions = Tensor::from_vec(positions, tokens, device)?;
        let embedded = (words + self.position.index_select(&positions, 0)?)?.broadcast_add(&self.token_type)?;
        let mut x = self.embedding_norm.forward(&embedded)?;
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x, Then::Nothing)?;
            let attention = Attention { spans: &spans, heads: self.heads, bf16: self.arithmetic == Arithmetic::Bf16 };
            let context = qkv.apply_op1_no_bwd(&attention)?;
            let attended = layer.attention_out.forward(&context, Then::Add(&x))?;
            x = layer.attention_norm.forward(&attended)?;
            let inner = layer.intermediate.forward(&x, Then::Activate(&layer.intermediate_bias, self.activation))?;
            let out = layer.output.forward(&inner, Then::Add(&x))?;
            x = layer.output_norm.forward(&out)?;
        }
        Ok((x, spans))
    }
}

/// The word embeddings of a weights file: `rows × hidden` little-endian f32
/// at `offset`. A query needs a few rows of 30,522 (47 MB for MiniLM), so
/// they are read as texts need them rather than copied at load. The file
/// stays open: a model replaced by a new file (a download, a copy) does not
/// change under a running process; one rewritten in place would.
pub(crate) struct WordsInFile {
    pub file: std::fs::File,
    pub offset: u64,
    pub rows: usize,
    pub hidden: usize,
}

/// Where the word embeddings are.
enum Words {
    /// In memory: a test's weights, or a file whose embeddings are not plain f32.
    Held(Tensor),
    /// In the weights file, read a row at a time.
    InFile(WordsInFile),
}

impl Words {
    /// The embedding of each id in `ids`: `(ids.len(), hidden)`.
    fn select(&self, ids: &[u32], device: &candle_core::Device) -> candle_core::Result<Tensor> {
        match self {
            Words::Held(table) => table.index_select(&Tensor::from_slice(ids, ids.len(), device)?, 0),
            Words::InFile(words) => {
                let hidden = words.hidden;
                let mut unique = ids.to_vec();
                unique.sort_unstable();
                unique.dedup();
                let mut rows = vec![0f32; unique.len() * hidden];
                let mut bytes = vec![0u8; hidden * 4];
                for (&id, row) in unique.iter().zip(rows.chunks_exact_mut(hidden)) {
                    if id as usize >= words.rows {
                        candle_core::bail!("token id {id} is past the {} word embeddings", words.rows);
                    }
                    let at = words.offset + id as u64 * hidden as u64 * 4;
                    read_at(&words.file, &mut bytes, at).map_err(|e| {
                        candle_core::Error::Msg(format!("reading word embeddings from model.safetensors: {e}"))
                    })?;
                    for (value, four) in row.iter_mut().zip(bytes.chunks_exact(4)) {
                        *value = f32::from_le_bytes([four[0], four[1], four[2], four[3]]);
                    }
                }
                let mut out = Vec::with_capacity(ids.len() * hidden);
                for id in ids {
                    // Every id is in `unique`, which is sorted.
                    let index = unique.binary_search(id).unwrap_or_default();
                    out.extend_from_slice(&rows[index * hidden..(index + 1) * hidden]);
                }
                Tensor::from_vec(out, (ids.len(), hidden), device)
            }
        }
    }
}

/// Fills `buffer` from `file` at `offset`.
fn read_at(file: &std::fs::File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buffer.len() {
            match std::os::windows::fs::FileExt::seek_read(file, &mut buffer[done..], offset + done as u64)? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(())
    }
}

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    if !layout.is_contiguous() {
        candle_core::bail!("expected a contiguous tensor");
    }
    let data = storage.as_slice::<f32>()?;
    Ok(&data[layout.start_offset()..layout.start_offset() + layout.shape().elem_count()])
}

/// A raw pointer that rayon tasks may share: each writes its own disjoint cells.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes cells no other task writes (its own text and head).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// A matrix inside a flat buffer: element (i, j) is at `ptr + i·row + j·col`.
#[derive(Clone, Copy)]
struct View<P> {
    ptr: P,
    row: usize,
    col: usize,
}

impl<P> View<P> {
    /// Rows `row` elements apart, each one contiguous.
    fn rows(ptr: P, row: usize) -> Self {
        Self { ptr, row, col: 1 }
    }
}

/// `dst = lhs · rhs` for `(m, n, k)`: an m × k matrix times a k × n one, on
/// this thread (the callers already run one task per core).
///
/// # Safety
/// Every element the three views address lies inside its buffer, and no
/// other thread touches `dst`'s elements meanwhile.
unsafe fn matmul((m, n, k): (usize, usize, usize), dst: View<*mut f32>, lhs: View<*const f32>, rhs: View<*const f32>) {
    let stride = |s: usize| s as isize;
    // SAFETY: the caller's promise; gemm reads lhs and rhs and writes dst (alpha 0: not read).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            stride(dst.col),
            stride(dst.row),
            false,
            lhs.ptr,
            stride(lhs.col),
            stride(lhs.row),
            rhs.ptr,
            stride(rhs.col),
            stride(rhs.row),
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Self-attention over `(tokens, 3 × hidden)` queries, keys and values, text
/// by text: `(tokens, hidden)` context vectors out.
struct Attention<'a> {
    spans: &'a [Span],
    heads: usize,
    /// Scores and weighted values as bf16 products with f32 sums.
    bf16: bool,
}

/// One task's buffers for attention in bf16.
#[derive(Default)]
struct Bf16Scratch {
    queries: Vec<u32>,
    keys: Vec<u32>,
    scores: Vec<f32>,
    weights: Vec<u32>,
    values: Vec<u32>,
    context: Vec<f32>,
}

impl Attention<'_> {
    /// One text's one head in bf16: `(span.len, head_size)` context values
    /// into `scratch.context`.
    fn head_in_bf16(&self, qkv: &[f32], width: usize, span: Span, head: usize, scratch: &mut Bf16Scratch) {
        let hidden = width / 3;
        let head_size = hidden / self.heads;
        let n = span.len;
        // Element `dim` of row `row`'s queries (part 0), keys (1) or values (2).
        let at = |row: usize, part: usize, dim: usize| {
            qkv[(span.start + row) * width + part * hidden + head * head_size + dim]
        };
        let query_pairs = head_size.div_ceil(2);
        // Every cell is written below: only growth is zeroed.
        scratch.queries.resize(n * query_pairs, 0);
        for (row, pairs) in scratch.queries.chunks_exact_mut(query_pairs).enumerate() {
            let first = (span.start + row) * width + head * head_size;
            bf16::round_row(&qkv[first..first + head_size], pairs);
        }
        bf16::pack(n, head_size, |key, dim| at(key, 1, dim), &mut scratch.keys);
        // Every cell is written below: only growth is zeroed.
        scratch.scores.resize(n * n, 0.0);
        let queries = bf16::Rounded { pairs: &scratch.queries, per_row: query_pairs };
        bf16::multiply(queries, &scratch.keys, n, None, &mut scratch.scores, n);
        with_wide_vectors(
            #[inline(always)]
            || {
                for row in scratch.scores.chunks_exact_mut(n) {
                    softmax_in_place(row);
                }
            },
        );
        bf16::round_rows(&scratch.scores, n, &mut scratch.weights);
        bf16::pack(head_size, n, |dim, key| at(key, 2, dim), &mut scratch.values);
        // Every cell is written below: only growth is zeroed.
        scratch.context.resize(n * head_size, 0.0);
        let weights = bf16::Rounded { pairs: &scratch.weights, per_row: n.div_ceil(2) };
        bf16::multiply(weights, &scratch.values, head_size, None, &mut scratch.context, head_size);
    }
}

impl candle_core::CustomOp1 for Attention<'_> {
    fn name(&self) -> &'static str {
        "text-by-text-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = contiguous_f32(storage, layout)?;
        let (tokens, width) = layout.shape().dims2()?;
        let hidden = width / 3;
        let head_size = hidden / self.heads;
        let mut out = vec![0f32; tokens * hidden];
        let shared = SharedOut(out.as_mut_ptr());
        let tasks: Vec<(Span, usize)> =
            self.spans.iter().flat_map(|&span| (0..self.heads).map(move |head| (span, head))).collect();
        if self.bf16 {
            tasks.into_par_iter().for_each_init(Bf16Scratch::default, |scratch, (span, head)| {
                if span.len == 0 {
                    return;
                }
                self.head_in_bf16(qkv, width, span, head, scratch);
                let dst = shared;
                for (row, values) in scratch.context.chunks_exact(head_size).enumerate() {
                    // SAFETY: this task alone writes the head's columns of the
                    // span's rows of `out`, which holds tokens × hidden.
                    unsafe {
                        let at = dst.0.add((span.start + row) * hidden + head * head_size);
                        std::ptr::copy_nonoverlapping(values.as_ptr(), at, head_size);
                    }
                }
            });
            return Ok((CpuStorage::F32(out), Shape::from((tokens, hidden))));
        }
        tasks.into_par_iter().for_each_init(Vec::new, |scores: &mut Vec<f32>, (span, head)| {
            let n = span.len;
            if n == 0 {
                return;
            }
            scores.clear();
            scores.resize(n * n, 0.0);
            let q = &qkv[span.start * width + head * head_size..];
            let k = &qkv[span.start * width + hidden + head * head_size..];
            let v = &qkv[span.start * width + 2 * hidden + head * head_size..];
            // SAFETY: the slices above reach the last row of the span, inside
            // `qkv`; `scores` holds n × n. Keys are read transposed.
            unsafe {
                matmul(
                    (n, n, head_size),
                    View::rows(scores.as_mut_ptr(), n),
                    View::rows(q.as_ptr(), width),
                    View { ptr: k.as_ptr(), row: 1, col: width },
                );
            }
            with_wide_vectors(
                #[inline(always)]
                || {
                    for row in scores.chunks_exact_mut(n) {
                        softmax_in_place(row);
                    }
                },
            );
            let dst = shared;
            // SAFETY: this task alone writes the head's columns of the span's
            // rows of `out`, which holds tokens × hidden.
            unsafe {
                matmul(
                    (n, head_size, n),
                    View::rows(dst.0.add(span.start * hidden + head * head_size), hidden),
                    View::rows(scores.as_ptr(), n),
                    View::rows(v.as_ptr(), width),
                );
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((tokens, hidden))))
    }
}

/// Adds a bias to each row and applies the activation, in place.
struct BiasActivation<'a> {
    bias: &'a [f32],
    activation: HiddenAct,
}

impl candle_core::InplaceOp1 for BiasActivation<'_> {
    fn name(&self) -> &'static str {
        "bias-activation"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        if !layout.is_contiguous() || storage.dtype() != DType::F32 {
            candle_core::bail!("expected a contiguous f32 tensor");
        }
        let CpuStorage::F32(data) = storage else { candle_core::bail!("expected f32") };
        let start = layout.start_offset();
        let data = &mut data[start..start + layout.shape().elem_count()];
        let bias = self.bias;
        let activation = self.activation;
        data.par_chunks_mut(bias.len() * 16).for_each(|rows| {
            with_wide_vectors(
                #[inline(always)]
                || {
                    for row in rows.chunks_exact_mut(bias.len()) {
                        bias_activation(row, bias, activation);
                    }
                },
            )
        });
        Ok(())
    }
}

#[inline(always)]
fn bias_activation(row: &mut [f32], bias: &[f32], activation: HiddenAct) {
    for (x, b) in row.iter_mut().zip(bias) {
        *x += b;
    }
    match activation {
        HiddenAct::Gelu => row.iter_mut().for_each(|x| *x = gelu_erf(*x)),
        HiddenAct::GeluApproximate => row.iter_mut().for_each(|x| *x = gelu_tanh(*x)),
        HiddenAct::Relu => row.iter_mut().for_each(|x| *x = x.max(0.0)),
    }
}

/// Runs `f`, compiled for AVX-512 or for AVX2 and FMA when this CPU has
/// them: the loops of `exp`, `erf`, softmax and the residual sums then work
/// on 16 or 8 lanes instead of SSE2's 4 (the arithmetic, lane by lane, is
/// the same). `f` must be `#[inline(always)]` all the way down for this to
/// reach it.
#[inline(always)]
fn with_wide_vectors(f: impl FnOnce()) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn widest(f: impl FnOnce()) {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn wide(f: impl FnOnce()) {
            f()
        }
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512 F, and with it AVX2 and FMA.
            return unsafe { widest(f) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has both features, checked just above.
            return unsafe { wide(f) };
        }
    }
    f()
}

/// Softmax of a row of scores, in place.
#[inline(always)]
fn softmax_in_place(row: &mut [f32]) {
    let max = lanes(row, f32::NEG_INFINITY, f32::max);
    row.iter_mut().for_each(|x| *x = exp(*x - max));
    let inverse = 1.0 / lanes(row, 0.0, |a, b| a + b);
    row.iter_mut().for_each(|x| *x *= inverse);
}

/// Folds `xs` with `f` in 8 lanes, then folds the lanes: strict f32
/// arithmetic keeps a single running fold from being vectorised.
#[inline(always)]
fn lanes(xs: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = f(*a, x);
        }
    }
    let folded = acc.into_iter().fold(init, &f);
    tail.iter().fold(folded, |a, &x| f(a, x))
}

/// `e^x` to within 4 ulp, without libm, so that loops over it vectorise:
/// range reduction to 2^n · e^r with |r| ≤ ln2/2, and a degree-6
/// polynomial. Below -87 it is 0 (f32's normal range ends there).
#[inline(always)]
fn exp(x: f32) -> f32 {
    let underflow = x < -87.0;
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by adding 1.5 · 2^23: SSE2 has no rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    // 2^n through the exponent bits; n is in [-126, 127] after the clamp.
    // It is read from `shifted`'s low bits (ROUND's unit is 1), not cast
    // from f32: a float-to-int cast checks each lane for NaN, one at a time.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let value = p * f32::from_bits(n_bits.wrapping_add(127) << 23);
    if underflow { 0.0 } else { value }
}

/// `erf(x)` with an absolute error under 5e-7 in f32 (Abramowitz and Stegun
/// 7.1.26, whose own bound is 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// GELU as BERT defines it: `x · Φ(x)`, with the exact (erf) normal CDF.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU's tanh approximation (`gelu_new`).
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use candle_core::Device;
    use std::collections::HashMap;

    /// The tiny test model's weights, matrices scaled up so that attention
    /// is far from uniform and every path of the arithmetic shows.
    fn tiny_weights() -> HashMap<String, Tensor> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
        tensors
            .into_iter()
            .map(|(name, t)| {
                let scaled = if name.contains("LayerNorm") { t } else { (t * 20.0).unwrap() };
                (name, scaled)
            })
            .collect()
    }

    fn tiny_config(activation: &str) -> Config {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        config["hidden_act"] = activation.into();
        serde_json::from_value(config).unwrap()
    }

    #[test]
    fn the_encoder_matches_candles_bert_text_by_text() {
        let texts: [&[u32]; 4] = [&[2, 40, 41, 42, 3], &[2, 3], &[2, 50, 60, 70, 80, 90, 100, 110, 120, 3], &[2, 7, 3]];
        for activation in ["gelu", "geluapproximate", "relu"] {
            let config = tiny_config(activation);
            let vb = || VarBuilder::from_tensors(tiny_weights(), DType::F32, &Device::Cpu);
            let ours = Encoder::load(vb(), &config, Arithmetic::Fp32, None, None).unwrap();
            let theirs = candle_transformers::models::bert::BertModel::load(vb(), &config).unwrap();
            let (packed, spans) = ours.forward(&texts).unwrap();
            assert_eq!(packed.dims(), &[20, 32]);
            for (text, span) in texts.iter().zip(&spans) {
                let ids = Tensor::new(*text, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
                let expected = theirs.forward(&ids, &ids.zeros_like().unwrap(), None).unwrap().squeeze(0).unwrap();
                let got = packed.narrow(0, span.start, span.len).unwrap();
                let differ = (got - &expected).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                let spread = expected.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(differ < 1e-4 * spread.max(1.0), "{activation}, {} tokens: off by {differ}", text.len());
            }
        }
    }

    /// bf16 against f32 on the tiny model as it is: every token vector
    /// stays close. (Its weights scaled 20x, as the test above has them,
    /// give logits in the hundreds; bf16's 2⁻⁸ of those moves attention
    /// itself, and cosines fall to 0.97. Trained models are far from that:
    /// all-MiniLM-L6-v2 stays above 0.9999, tests/minilm.rs.)
    #[test]
    fn the_encoder_in_bf16_stays_close_to_f32() {
        if !Bf16Dense::supported() {
            eprintln!("skipped: this CPU has no AVX-512 BF16 (the f32 path runs instead)");
            return;
        }
        let texts: [&[u32]; 3] = [&[2, 40, 41, 42, 3], &[2, 3], &[2, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 3]];
        let config = tiny_config("gelu");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
        let vb = || VarBuilder::from_tensors(weights.clone(), DType::F32, &Device::Cpu);
        let (fast, _) = Encoder::load(vb(), &config, Arithmetic::Bf16, None, None).unwrap().forward(&texts).unwrap();
        let (exact, _) = Encoder::load(vb(), &config, Arithmetic::Fp32, None, None).unwrap().forward(&texts).unwrap();
        let (fast, exact) = (fast.to_vec2::<f32>().unwrap(), exact.to_vec2::<f32>().unwrap());
        let mut least = 1.0f32;
        for (a, b) in fast.iter().zip(&exact) {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            least = least.min(dot / (norm(a) * norm(b)));
        }
        assert!(least >= 0.999, "least cosine {least}");
    }

    #[test]
    fn bf16_weights_packed_from_the_files_bytes_equal_those_from_tensors() {
        if !Bf16Dense::supported() {
            eprintln!("skipped: this CPU has no AVX-512 BF16 (the f32 path runs instead)");
            return;
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let header = candle_core::safetensors::SliceSafetensors::new(&bytes).unwrap();
        let raw = RawWeights::new(&header);
        // The layers are read in place (else the comparison below is of one path with itself).
        assert!(raw.matrix("encoder.layer.0.attention.self.query.weight", 32, 32).is_some());
        assert!(raw.matrix("encoder.layer.0.intermediate.dense.weight", 64, 32).is_some());
        assert!(raw.matrix("encoder.layer.0.intermediate.dense.weight", 32, 64).is_none(), "shape checked");
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
        let vb = || VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
        let config = tiny_config("gelu");
        let texts: [&[u32]; 3] = [&[2, 40, 41, 42, 3], &[2, 3], &[2, 50, 60, 70, 80, 90, 100, 3]];
        let (in_place, _) =
            Encoder::load(vb(), &config, Arithmetic::Bf16, None, Some(&raw)).unwrap().forward(&texts).unwrap();
        let (from_tensors, _) =
            Encoder::load(vb(), &config, Arithmetic::Bf16, None, None).unwrap().forward(&texts).unwrap();
        assert_eq!(in_place.to_vec2::<f32>().unwrap(), from_tensors.to_vec2::<f32>().unwrap());
        // In f32 the bytes are not used: the same as without them.
        let (f32_raw, _) =
            Encoder::load(vb(), &config, Arithmetic::Fp32, None, Some(&raw)).unwrap().forward(&texts).unwrap();
        let (f32_plain, _) =
            Encoder::load(vb(), &config, Arithmetic::Fp32, None, None).unwrap().forward(&texts).unwrap();
        assert_eq!(f32_raw.to_vec2::<f32>().unwrap(), f32_plain.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn word_embeddings_read_from_the_file_equal_the_loaded_ones() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let path = dir.join("model.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let header = candle_core::safetensors::SliceSafetensors::new(&bytes).unwrap();
        let words = crate::words_in_file(&std::fs::File::open(&path).unwrap(), &bytes, &header);
        let words = words.expect("tiny-bert's word embeddings are plain f32");
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
        let vb = || VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
        let config = tiny_config("gelu");
        let held = Encoder::load(vb(), &config, Arithmetic::Fp32, None, None).unwrap();
        let in_file = Encoder::load(vb(), &config, Arithmetic::Fp32, Some(words), None).unwrap();
        assert!(matches!(in_file.word, Words::InFile(_)) && matches!(held.word, Words::Held(_)));
        // Repeated ids, and a text of one token.
        let texts: [&[u32]; 3] = [&[2, 40, 40, 41, 40, 3], &[2, 7, 3], &[5]];
        let (a, _) = held.forward(&texts).unwrap();
        let (b, _) = in_file.forward(&texts).unwrap();
        assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
        // An id past the table is an error, not a crash.
        let past = [&[2u32, config.vocab_size as u32, 3][..]];
        assert!(in_file.forward(&past).is_err() && held.forward(&past).is_err());
    }

    #[test]
    fn exp_and_erf_match_libm() {
        for i in -8000..=1000 {
            let x = i as f32 / 100.0;
            let (ours, libm) = (exp(x), x.exp());
            assert!((ours - libm).abs() <= libm * 5e-7, "exp({x}): {ours} vs {libm}");
        }
        for i in -600..=600 {
            let x = i as f32 / 100.0;
            let reference = libm_erf(x as f64);
            assert!((erf(x) as f64 - reference).abs() < 5e-7, "erf({x}): {} vs {reference}", erf(x));
        }
        assert_eq!((exp(-87.5), exp(-1e30), exp(f32::NEG_INFINITY)), (0.0, 0.0, 0.0));
    }

    /// erf by its Taylor series (|x| < 3) or continued fraction, in f64.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let mut sum = 0.0;
            let mut term = x;
            for n in 0..200 {
                sum += term / (2 * n + 1) as f64;
                term *= -x * x / (n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let a = x.abs();
            let mut fraction = 0.0;
            for k in (1..100).rev() {
                fraction = (k as f64 / 2.0) / (a + fraction);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + fraction);
            (1.0 - erfc).copysign(x)
        }
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut row = vec![1.0, 3.0, -2.0, 3.0, 0.5];
        softmax_in_place(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[1] == row[3] && row[1] > row[0] && row[0] > row[4] && row[4] > row[2]);
        let mut huge = vec![1000.0, 0.0];
        softmax_in_place(&mut huge);
        assert_eq!(huge, vec![1.0, 0.0]);
    }
}
