//! An in-process [`Embedder`] for vector-rag: a sentence-transformers model
//! (BERT family: all-MiniLM, bge, e5, gte, snowflake-arctic-embed; and
//! nomic-bert, nomic-embed-text's architecture) run on
//! [candle](https://github.com/huggingface/candle), pure Rust, on every core,
//! with no server.
//!
//! A model comes from a folder ([`LocalEmbedder::load`]) or from the Hugging
//! Face Hub by name, `hf:ORG/NAME[@REVISION]`, fetched once into the Hub's
//! cache and used offline from then on ([`LocalEmbedder::load_hub`],
//! [`HubModel`]).
//!
//! BERT runs on this crate's own encoder: the texts of a pass are laid end
//! to end with no padding, and attention is fused per text and head, so a
//! 256-token text costs what its tokens cost. On CPUs with AVX-512 BF16 its
//! matrix products run in bf16 with f32 sums ([`Arithmetic`]):
//! all-MiniLM-L6-v2 then embeds about 9x the texts a second of the numpy
//! Ollama stand-in on the same 2 cores (5x in f32), vectors within cosine
//! 0.9999 of f32's.
//! nomic-bert runs on candle-transformers' model with padded batches, and
//! reads at most 1,024 tokens of a text.
//!
//! The folder holds `config.json`, `tokenizer.json` and `model.safetensors`,
//! and where present `modules.json` (a `Normalize` module turns on
//! normalisation), `1_Pooling/config.json` (mean or CLS pooling) and
//! `sentence_bert_config.json` (`max_seq_length`, which wins over whatever
//! truncation `tokenizer.json` carries).
//!
//! ```no_run
//! use rag_core::embed::Embedder;
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let embedder = rag_embed_local::LocalEmbedder::load("models/all-MiniLM-L6-v2")?;
//! let vector = embedder.embed_query("how do I water tomatoes?").await?;
//! assert_eq!(vector.len(), 384);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::Tensor;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config;
use candle_transformers::models::nomic_bert::{Config as NomicConfig, NomicBertModel};
use rag_core::{
    Error, Result,
    embed::{DocText, Embedder, PromptFormat},
};
use tokenizers::Encoding;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

mod bert;
mod bf16;
mod fingerprint;
mod hub;
mod hub_fetch;
mod tokenizer_file;

pub use hub::{HubModel, HubOptions};

/// Most texts embedded in one call.
pub const BATCH: usize = 32;

/// Most tokens in one forward pass. The texts of a pass are laid end to end
/// (no padding), so this bounds the activations: an intermediate layer of
/// 4,096 tokens is 24 MB for all-MiniLM-L6-v2 and 48 MB for a base model.
const TOKENS_PER_PASS: usize = 4096;

/// Most tokens of a text nomic-bert reads in-process. Its window is 8,192,
/// but it runs on candle's padded attention, whose memory grows with the
/// square of the length; chunks are far shorter than this.
const NOMIC_MAX_TOKENS: usize = 1024;

/// Bound on texts × tokens² of one padded nomic-bert pass.
const NOMIC_ATTENTION_BUDGET: usize = 1 << 18;

/// Why a model folder cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file the model needs is missing or unreadable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A model name (`hf:ORG/NAME[@REVISION]`) that is malformed or cannot be fetched.
    #[error("{name}: {reason}")]
    Name {
        /// The name as given.
        name: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The folder holds a model of an architecture this crate does not run.
    #[error(
        "{path}: model type {model_type:?} is not supported; rag runs BERT-family models in-process \
             (all-MiniLM, bge, e5, gte, snowflake-arctic-embed, nomic-embed-text); use it through Ollama instead"
    )]
    Architecture {
        /// `config.json`.
        path: PathBuf,
        /// Its `model_type`.
        model_type: String,
    },
}

impl From<LoadError> for Error {
    fn from(err: LoadError) -> Self {
        Error::Embedder { message: err.to_string(), source: Some(Box::new(err)) }
    }
}

/// The arithmetic of a BERT encoder's dense layers, nine tenths of its work.
///
/// ```
/// use rag_embed_local::Arithmetic;
/// // What `LocalEmbedder::load` picks on this machine.
/// let chosen = Arithmetic::for_this_machine();
/// assert!(chosen == Arithmetic::Fp32 || Arithmetic::bf16_supported());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Arithmetic {
    /// f32 throughout, on candle's kernels: the reference, and what every CPU runs.
    Fp32,
    /// Products in bf16 and sums in f32, on AVX-512 BF16, with the weights
    /// rounded once at load: about twice the texts a second of
    /// [`Arithmetic::Fp32`], vectors within cosine 0.999 of its. A CPU
    /// without the instructions runs [`Arithmetic::Fp32`] instead.
    Bf16,
}

impl Arithmetic {
    /// The variable that overrides the choice: `fp32` or `bf16`.
    pub const ENV: &'static str = "RAG_EMBED_ARITHMETIC";

    /// Whether this CPU has AVX-512 BF16.
    pub fn bf16_supported() -> bool {
        bf16::Bf16Dense::supported()
    }

    /// The fastest this CPU runs, unless `RAG_EMBED_ARITHMETIC` names one
    /// (`fp32` asks for the reference on any CPU).
    pub fn for_this_machine() -> Self {
        Self::chosen(std::env::var(Self::ENV).ok().as_deref())
    }

    /// The arithmetic `setting` (the variable's value, if set) asks for.
    fn chosen(setting: Option<&str>) -> Self {
        match setting.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            Some("fp32" | "f32") => Arithmetic::Fp32,
            None | Some("" | "bf16" | "auto") => Self::fastest(),
            Some(other) => {
                tracing::warn!("{}={other:?} is not fp32, bf16 or auto; choosing by the CPU", Self::ENV);
                Self::fastest()
            }
        }
    }

    fn fastest() -> Self {
        if Self::bf16_supported() { Arithmetic::Bf16 } else { Arithmetic::Fp32 }
    }
}

/// How token vectors become one text vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of the tokens' vectors (padding left out).
    Mean,
    /// The first token's (`[CLS]`) vector.
    Cls,
}

/// A sentence-transformers model folder, loaded and ready to embed.
#[derive(Clone)]
pub struct LocalEmbedder {
    inner: Arc<Inner>,
    prompts: PromptFormat,
}

struct Inner {
    name: String,
    model: Network,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    max_tokens: usize,
    dimension: usize,
    tokens_per_pass: usize,
    arithmetic: Arithmetic,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("model", &self.inner.name)
            .field("dimension", &self.inner.dimension)
            .field("pooling", &self.inner.pooling)
            .field("normalize", &self.inner.normalize)
            .field("max_tokens", &self.inner.max_tokens)
            .field("arithmetic", &self.inner.arithmetic)
            .finish()
    }
}

/// The encoder a folder holds.
enum Network {
    /// BERT: this crate's own encoder (no padding, fused attention).
    Bert(bert::Encoder),
    /// nomic-bert (rotary positions, SwiGLU): candle-transformers' model.
    Nomic(Box<NomicBertModel>),
}

/// A folder's configuration, by architecture.
enum Architecture {
    Bert(Config),
    Nomic(NomicConfig),
}

impl Architecture {
    /// `(vocabulary, positions, hidden size)`.
    fn sizes(&self) -> (usize, usize, usize) {
        match self {
            Architecture::Bert(c) => (c.vocab_size, c.max_position_embeddings, c.hidden_size),
            // n_positions is already capped at NOMIC_MAX_TOKENS when the config is read.
            Architecture::Nomic(c) => (c.vocab_size, c.n_positions, c.n_embd),
        }
    }
}

/// The first line of an error: candle appends a backtrace when
/// `RUST_BACKTRACE` is set.
fn first_line(err: &impl std::fmt::Display) -> String {
    err.to_string().lines().next().unwrap_or_default().trim().to_string()
}

fn file_error(path: &Path, reason: impl Into<String>) -> LoadError {
    LoadError::File { path: path.to_path_buf(), reason: reason.into() }
}

fn read_json(path: &Path) -> std::result::Result<Option<serde_json::Value>, LoadError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| file_error(path, format!("not valid JSON ({e}); the model folder looks damaged"))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(file_error(path, format!("cannot read it ({err})"))),
    }
}

impl LocalEmbedder {
    /// Loads the model folder at `dir`.
    ///
    /// Each problem is one line naming the file: a folder without weights,
    /// a truncated or corrupt `model.safetensors`, a `tokenizer.json` with
    /// more tokens than the model has embeddings (another model's), a model
    /// type other than BERT.
    pub fn load(dir: impl AsRef<Path>) -> std::result::Result<Self, LoadError> {
        Self::load_as(dir.as_ref(), None, Arithmetic::for_this_machine())
    }

    /// [`LocalEmbedder::load`], with the dense layers in `arithmetic` where
    /// the CPU and the model allow it ([`LocalEmbedder::arithmetic`] says
    /// what runs). `Arithmetic::Fp32` gives the reference vectors on any CPU.
    pub fn load_with(dir: impl AsRef<Path>, arithmetic: Arithmetic) -> std::result::Result<Self, LoadError> {
        Self::load_as(dir.as_ref(), None, arithmetic)
    }

    /// Loads the Hub model `model`, fetched into the cache first if it is
    /// not there yet (see [`HubModel::fetch`]). Its name is `hf:ORG/NAME`
    /// (with `@REVISION` unless it is `main`) and its weights' fingerprint.
    pub fn load_hub(model: &HubModel, options: &HubOptions) -> std::result::Result<Self, LoadError> {
        let folder = model.fetch(options)?;
        Self::load_as(&folder, Some(model), Arithmetic::for_this_machine())
    }

    fn load_as(dir: &Path, hub: Option<&HubModel>, arithmetic: Arithmetic) -> std::result::Result<Self, LoadError> {
        if !dir.is_dir() {
            return Err(file_error(dir, "no such folder; give the folder of a sentence-transformers model"));
        }
        let dir = std::fs::canonicalize(dir).map_err(|e| file_error(dir, e.to_string()))?;
        let config_path = dir.join("config.json");
        let config_json = read_json(&config_path)?.ok_or_else(|| {
            file_error(
                &config_path,
                "missing; this is not a model folder (config.json, tokenizer.json and model.safetensors are needed)",
            )
        })?;
        let model_type = config_json.get("model_type").and_then(|t| t.as_str()).unwrap_or("bert").to_string();
        let architecture = match model_type.as_str() {
            "bert" => Architecture::Bert(
                serde_json::from_value(config_json)
                    .map_err(|e| file_error(&config_path, format!("not a BERT configuration ({e})")))?,
            ),
            "nomic_bert" => {
                let mut config: NomicConfig = serde_json::from_value(config_json)
                    .map_err(|e| file_error(&config_path, format!("not a nomic-bert configuration ({e})")))?;
                if config.n_head == 0 || !config.n_embd.is_multiple_of(config.n_head) {
                    return Err(file_error(&config_path, "n_embd is not a multiple of n_head; the file is damaged"));
                }
                // Only this many positions are read; the rotary table is built for them alone.
                config.n_positions = config.n_positions.min(NOMIC_MAX_TOKENS);
                if config.activation_function != "swiglu" || config.rotary_emb_fraction != 1.0 {
                    return Err(file_error(
                        &config_path,
                        "a nomic-bert variant (activation other than swiglu, or partial rotary) rag does not run; \
                         use it through Ollama instead",
                    ));
                }
                Architecture::Nomic(config)
            }
            _ => return Err(LoadError::Architecture { path: config_path, model_type }),
        };
        let (vocab_size, positions, hidden_size) = architecture.sizes();

        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.exists() {
            return Err(file_error(&tokenizer_path, "missing; download tokenizer.json into the folder"));
        }
        // The tokenizer (a 700 KB JSON file for BERT) is parsed on a thread
        // of its own while the weights load: a fresh query waits for both.
        let weights_path = dir.join("model.safetensors");
        let (mut tokenizer, model, fingerprint) = std::thread::scope(|scope| {
            let parsing = scope.spawn(|| {
                // The tokenizers crate panics on some damaged files; that is an error here.
                std::panic::catch_unwind(|| tokenizer_file::read(&tokenizer_path))
                    .unwrap_or_else(|_| Err("its contents do not fit together".into()))
                    .map_err(|e| file_error(&tokenizer_path, format!("cannot be read ({e}); download it again")))
            });
            let loaded = load_weights(&weights_path, &architecture, arithmetic);
            let tokenizer = parsing.join().unwrap_or_else(|_| {
                Err(file_error(&tokenizer_path, "cannot be read (it stopped the parser); download it again"))
            })?;
            let vocab = tokenizer.get_vocab_size(true);
            if vocab > vocab_size {
                return Err(file_error(
                    &tokenizer_path,
                    format!(
                        "has {vocab} tokens but the model has {vocab_size} embeddings: this tokenizer belongs to another model"
                    ),
                ));
            }
            let (model, fingerprint) = loaded?;
            Ok((tokenizer, model, fingerprint))
        })?;

        let st_config = read_json(&dir.join("sentence_bert_config.json"))?;
        let max_tokens = st_config
            .as_ref()
            .and_then(|c| c.get("max_seq_length"))
            .and_then(serde_json::Value::as_u64)
            .map_or(positions, |n| n as usize)
            .min(positions)
            .max(2);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| file_error(&tokenizer_path, format!("cannot truncate ({e})")))?;
        tokenizer.with_padding(None);
        // A damaged tokenizer.json can parse yet panic on its first text
        // (a post-processor naming a token its vocabulary lacks): try one now.
        let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tokenizer.encode("probe text", true)));
        if !matches!(probe, Ok(Ok(_))) {
            return Err(file_error(&tokenizer_path, "cannot encode text; the file is damaged: download it again"));
        }

        let pooling_config = read_json(&dir.join("1_Pooling").join("config.json"))?;
        let pooling = match pooling_config {
            Some(c) if c.get("pooling_mode_cls_token").and_then(|v| v.as_bool()) == Some(true) => Pooling::Cls,
            _ => Pooling::Mean,
        };
        let modules = read_json(&dir.join("modules.json"))?;
        let normalize = modules.as_ref().and_then(|m| m.as_array()).is_some_and(|modules| {
            modules.iter().any(|m| m.get("type").and_then(|t| t.as_str()).is_some_and(|t| t.ends_with("Normalize")))
        });
        // Prompts follow the model's own name: the folder's, or the Hub repository's.
        let (label, family) = match hub {
            Some(hub) => (hub.name(), hub.repo().rsplit('/').next().unwrap_or_default().to_string()),
            None => (
                dir.display().to_string(),
                dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            ),
        };
        let arithmetic = match &model {
            Network::Bert(encoder) => encoder.arithmetic(),
            Network::Nomic(_) => Arithmetic::Fp32,
        };
        let inner = Inner {
            name: format!("{label}#{}", &fingerprint[..16]),
            model,
            tokenizer,
            pooling,
            normalize,
            max_tokens,
            dimension: hidden_size,
            tokens_per_pass: TOKENS_PER_PASS,
            arithmetic,
        };
        Ok(Self { inner: Arc::new(inner), prompts: PromptFormat::for_model(&family) })
    }

    /// The same model with other prompts for documents and queries.
    pub fn with_prompts(mut self, prompts: PromptFormat) -> Self {
        self.prompts = prompts;
        self
    }

    /// The arithmetic the dense layers run in: what was asked for, or
    /// [`Arithmetic::Fp32`] where the CPU or the architecture (nomic-bert)
    /// does not allow it.
    pub fn arithmetic(&self) -> Arithmetic {
        self.inner.arithmetic
    }

    /// How token vectors are pooled.
    pub fn pooling(&self) -> Pooling {
        self.inner.pooling
    }

    /// Most tokens of a text the model reads; the rest is cut off.
    pub fn max_tokens(&self) -> usize {
        self.inner.max_tokens
    }

    /// Whether a model name (as `--model` takes it, or as a store records
    /// it) names a model folder: a folder path, optionally followed by `#`
    /// and the weights' fingerprint.
    pub fn is_model_folder(name: &str) -> bool {
        let path = name.split_once('#').map_or(name, |(path, _)| path);
        (path.contains('/') || path.contains('\\') || path.starts_with('.')) && Path::new(path).is_dir()
    }

    /// Whether a model name (as `--model` takes it, or as a store records
    /// it) names a model this crate runs: a model folder, or `hf:ORG/NAME`.
    pub fn is_local_model(name: &str) -> bool {
        name.starts_with("hf:") || Self::is_model_folder(name)
    }

    /// Loads the model a name names (see [`is_local_model`](Self::is_local_model));
    /// `hf:` names are fetched with the environment's [`HubOptions`].
    pub fn load_named(name: &str) -> std::result::Result<Self, LoadError> {
        Self::load_named_with(name, &HubOptions::from_env())
    }

    /// [`load_named`](Self::load_named) with the Hub options given.
    pub fn load_named_with(name: &str, hub: &HubOptions) -> std::result::Result<Self, LoadError> {
        if name.starts_with("hf:") {
            return Self::load_hub(&HubModel::parse(name)?, hub);
        }
        Self::load(name.split_once('#').map_or(name, |(path, _)| path))
    }
}

/// The network of the weights at `path` (`model.safetensors`), and their
/// fingerprint. Only the tensors the network asks for are converted.
fn load_weights(
    path: &Path,
    architecture: &Architecture,
    arithmetic: Arithmetic,
) -> std::result::Result<(Network, String), LoadError> {
    let cannot_read = |e: std::io::Error| {
        file_error(path, format!("cannot read the weights ({e}); download model.safetensors into the folder"))
    };
    let file = std::fs::File::open(path).map_err(cannot_read)?;
    // Mapped, not read: each tensor is copied out of the page cache once,
    // with no 90 MB heap copy first. SAFETY: the map is read-only and
    // dropped before this function returns; a file truncated by another
    // process in that window would fault, as any reader of it would fail.
    let weights = unsafe { memmap2::Mmap::map(&file) }.map_err(cannot_read)?;
    let fingerprint = fingerprint::fingerprint(path, &file, &weights);
    // The header is parsed once: for where the word embeddings lie, then
    // for the tensors the network asks for.
    let tensors = candle_core::safetensors::SliceSafetensors::new(&weights).map_err(|e| {
        file_error(
            path,
            format!(
                "not readable safetensors ({}); the file is truncated or damaged: download it again",
                first_line(&e)
            ),
        )
    })?;
    let words = matches!(architecture, Architecture::Bert(_)).then(|| words_in_file(&file, &weights, &tensors));
    let vb = VarBuilder::from_backend(Box::new(Shared(&tensors)), DType::F32, Device::Cpu);
    let raw = bert::RawWeights::new(&tensors);
    // candle asserts on some shapes; a damaged folder must give an error, not a crash.
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match architecture {
        Architecture::Bert(config) => {
            bert::Encoder::load(vb, config, arithmetic, words.flatten(), Some(&raw)).map(Network::Bert)
        }
        Architecture::Nomic(config) => NomicBertModel::load(vb, config).map(|m| Network::Nomic(Box::new(m))),
    }))
    .unwrap_or_else(|_| Err(candle_core::Error::Msg("the shapes do not fit together".into())));
    let model = built.map_err(|e| {
        file_error(path, format!("does not hold the weights config.json describes ({})", first_line(&e)))
    })?;
    Ok((model, fingerprint))
}

/// The parsed tensors of a mapped checkpoint, lent to a `VarBuilder`, so
/// that what reads them in place ([`bert::RawWeights`]) shares one parse of
/// the header.
struct Shared<'a, 'b>(&'b candle_core::safetensors::SliceSafetensors<'a>);

impl candle_nn::var_builder::SimpleBackend for Shared<'_, '_> {
    fn get(
        &self,
        shape: candle_core::Shape,
        name: &str,
        init: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_nn::var_builder::SimpleBackend::get(self.0, shape, name, init, dtype, device)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        candle_nn::var_builder::SimpleBackend::get_unchecked(self.0, name, dtype, device)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        candle_nn::var_builder::SimpleBackend::contains_tensor(self.0, name)
    }
}

/// Where a BERT checkpoint's word embeddings lie in its mapped file
/// `weights` (whose header is `tensors`), when they are plain f32 that can
/// be read a row at a time.
fn words_in_file(
    file: &std::fs::File,
    weights: &[u8],
    tensors: &candle_core::safetensors::SliceSafetensors<'_>,
) -> Option<bert::WordsInFile> {
    let view = ["bert.embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"]
        .into_iter()
        .find_map(|name| tensors.get(name).ok())?;
    let &[rows, hidden] = view.shape() else { return None };
    if view.dtype() != DType::F32.into() || view.data().len() != rows * hidden * 4 {
        return None;
    }
    let offset = (view.data().as_ptr() as usize).checked_sub(weights.as_ptr() as usize)?;
    Some(bert::WordsInFile { file: file.try_clone().ok()?, offset: offset as u64, rows, hidden })
}

impl Inner {
    /// Token vectors of the texts of a pass, laid end to end, and each text's rows.
    fn token_vectors(&self, pass: &[Encoding]) -> candle_core::Result<(Vec<f32>, Vec<bert::Span>)> {
        match &self.model {
            Network::Bert(encoder) => {
                let ids: Vec<&[u32]> = pass.iter().map(|e| e.get_ids()).collect();
                let (hidden, spans) = encoder.forward(&ids)?;
                Ok((hidden.flatten_all()?.to_vec1::<f32>()?, spans))
            }
            Network::Nomic(model) => {
                let width = self.dimension;
                let spans = bert::Span::lay_out(pass.iter().map(Encoding::len));
                let mut flat = vec![0f32; pass.iter().map(Encoding::len).sum::<usize>() * width];
                let mut order: Vec<usize> = (0..pass.len()).collect();
                order.sort_by_key(|&i| spans[i].len);
                let mut rest = order.as_slice();
                while !rest.is_empty() {
                    // Sorted by length: the last text of a batch is its longest.
                    let mut take = 1;
                    while take < rest.len() {
                        let longest = spans[rest[take]].len.max(1);
                        if (take + 1) * longest * longest > NOMIC_ATTENTION_BUDGET {
                            break;
                        }
                        take += 1;
                    }
                    let (batch, tail) = rest.split_at(take);
                    rest = tail;
                    let longest = batch.iter().map(|&i| spans[i].len).max().unwrap_or(1).max(1);
                    let mut ids = Vec::with_capacity(batch.len() * longest);
                    let mut mask = Vec::with_capacity(batch.len() * longest);
                    for &i in batch {
                        let n = spans[i].len;
                        ids.extend_from_slice(pass[i].get_ids());
                        ids.extend(std::iter::repeat_n(0, longest - n));
                        mask.extend(std::iter::repeat_n(1u32, n));
                        mask.extend(std::iter::repeat_n(0u32, longest - n));
                    }
                    let ids = Tensor::from_vec(ids, (batch.len(), longest), &Device::Cpu)?;
                    let mask = Tensor::from_vec(mask, (batch.len(), longest), &Device::Cpu)?;
                    let hidden = model.forward(&ids, None, Some(&mask))?.flatten_all()?.to_vec1::<f32>()?;
                    // Each text's rows, padding left behind, into its span.
                    for (row, &i) in batch.iter().enumerate() {
                        let span = spans[i];
                        let from = row * longest * width;
                        flat[span.start * width..(span.start + span.len) * width]
                            .copy_from_slice(&hidden[from..from + span.len * width]);
                    }
                }
                Ok((flat, spans))
            }
        }
    }

    /// Vectors of `texts`, in passes of at most [`TOKENS_PER_PASS`] tokens.
    fn embed(&self, texts: Vec<String>) -> candle_core::Result<Vec<Vec<f32>>> {
        let encodings =
            self.tokenizer.encode_batch(texts, true).map_err(|e| candle_core::Error::Msg(format!("tokenizer: {e}")))?;
        let mut out = Vec::with_capacity(encodings.len());
        let mut rest = encodings.as_slice();
        while !rest.is_empty() {
            let mut take = 1;
            let mut tokens = rest[0].get_ids().len();
            while take < rest.len() && tokens + rest[take].get_ids().len() <= self.tokens_per_pass {
                tokens += rest[take].get_ids().len();
                take += 1;
            }
            let (pass, tail) = rest.split_at(take);
            rest = tail;
            let (hidden, spans) = self.token_vectors(pass)?;
            let width = self.dimension;
            for span in spans {
                let rows = &hidden[span.start * width..(span.start + span.len) * width];
                let mut vector = match self.pooling {
                    Pooling::Cls => rows.get(..width).map_or_else(|| vec![0.0; width], <[f32]>::to_vec),
                    Pooling::Mean => {
                        let mut sum = vec![0f32; width];
                        for row in rows.chunks_exact(width) {
                            sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
                        }
                        let count = span.len.max(1) as f32;
                        sum.iter_mut().for_each(|s| *s /= count);
                        sum
                    }
                };
                if self.normalize {
                    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    vector.iter_mut().for_each(|x| *x /= norm);
                }
                out.push(vector);
            }
        }
        Ok(out)
    }
}

impl LocalEmbedder {
    async fn run(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let inner = self.inner.clone();
        let vectors = tokio::task::spawn_blocking(move || inner.embed(texts))
            .await
            .map_err(|e| Error::Embedder { message: format!("the embedding task stopped: {e}"), source: None })?;
        vectors.map_err(|e| Error::Embedder {
            message: format!("model {}: {}", self.inner.name, first_line(&e)),
            source: Some(Box::new(e)),
        })
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        &self.inner.name
    }

    fn dimension(&self) -> usize {
        self.inner.dimension
    }

    fn max_batch_size(&self) -> usize {
        BATCH
    }

    /// One batch at a time: a forward pass already uses every core.
    fn max_concurrency(&self) -> usize {
        1
    }

    fn context_tokens(&self) -> Option<usize> {
        Some(self.inner.max_tokens)
    }

    async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
        let texts = docs.iter().map(|d| self.prompts.document(d.title.as_deref(), &d.text)).collect();
        self.run(texts).await
    }

    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let mut vectors = self.run(vec![self.prompts.query(query)]).await?;
        vectors.pop().ok_or_else(|| Error::Embedder { message: "no vector for the query".into(), source: None })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn tiny() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert")
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
    }

    /// A copy of the tiny model in a temporary folder, with `damage` done to it.
    fn damaged(damage: impl FnOnce(&Path)) -> (tempfile::TempDir, std::result::Result<LocalEmbedder, LoadError>) {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("model");
        std::fs::create_dir_all(copy.join("1_Pooling")).unwrap();
        for name in [
            "config.json",
            "tokenizer.json",
            "model.safetensors",
            "modules.json",
            "sentence_bert_config.json",
            "1_Pooling/config.json",
        ] {
            std::fs::copy(tiny().join(name), copy.join(name)).unwrap();
        }
        damage(&copy);
        let loaded = LocalEmbedder::load(&copy);
        (dir, loaded)
    }

    #[tokio::test]
    async fn vectors_have_the_models_dimension_unit_norm_and_never_change() {
        let embedder = LocalEmbedder::load(tiny()).unwrap();
        assert_eq!((embedder.dimension(), embedder.max_tokens(), embedder.pooling()), (32, 24, Pooling::Mean));
        assert_eq!(embedder.context_tokens(), Some(24));
        let a = embedder.embed_query("water the tomatoes in the summer heat").await.unwrap();
        assert_eq!(a.len(), 32);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5, "unit norm");
        let again =
            LocalEmbedder::load(tiny()).unwrap().embed_query("water the tomatoes in the summer heat").await.unwrap();
        assert_eq!(a, again, "deterministic");
        let other = embedder.embed_query("rust code function error").await.unwrap();
        assert!(cosine(&a, &other) < 0.999, "different texts differ");
        assert!(embedder.model().contains("tiny-bert#"), "{}", embedder.model());
    }

    #[tokio::test]
    async fn a_text_gets_the_same_vector_alone_or_in_a_batch() {
        for arithmetic in [Arithmetic::Fp32, Arithmetic::Bf16] {
            let embedder = LocalEmbedder::load_with(tiny(), arithmetic).unwrap();
            let short = DocText::new(None, "bake bread");
            let long =
                DocText::new(None, "the apple tree flowers in spring and the garden needs water in the summer heat");
            let alone = embedder.embed_documents(std::slice::from_ref(&short)).await.unwrap();
            let batch = embedder.embed_documents(&[long.clone(), short.clone(), long]).await.unwrap();
            assert_eq!(batch.len(), 3);
            assert!(cosine(&alone[0], &batch[1]) > 0.99999, "{arithmetic:?}: its neighbours must not change a vector");
            assert!((cosine(&batch[0], &batch[2]) - 1.0).abs() < 1e-5);
        }
    }

    /// The f32 path is what a CPU without AVX-512 BF16 runs: forced here,
    /// it must be chosen whatever the CPU, and bf16 (where it runs) must
    /// stay within its rounding of it.
    #[tokio::test]
    async fn the_f32_fallback_can_be_forced_and_bf16_stays_close_to_it() {
        let reference = LocalEmbedder::load_with(tiny(), Arithmetic::Fp32).unwrap();
        assert_eq!(reference.arithmetic(), Arithmetic::Fp32);
        let fast = LocalEmbedder::load_with(tiny(), Arithmetic::Bf16).unwrap();
        let expected = if Arithmetic::bf16_supported() { Arithmetic::Bf16 } else { Arithmetic::Fp32 };
        assert_eq!(fast.arithmetic(), expected);
        assert_eq!(reference.model(), fast.model(), "the arithmetic is not part of the model's name");
        let texts = ["bake bread", "water the tomatoes in the summer heat", "x", "rust code function error model"];
        let docs: Vec<DocText> = texts.iter().map(|t| DocText::new(None, *t)).collect();
        let (a, b) = (reference.embed_documents(&docs).await.unwrap(), fast.embed_documents(&docs).await.unwrap());
        for ((x, y), text) in a.iter().zip(&b).zip(texts) {
            assert!(cosine(x, y) >= 0.999, "{text:?}: cosine {}", cosine(x, y));
        }
    }

    #[test]
    fn the_arithmetic_follows_the_variable_then_the_cpu() {
        let fastest = if Arithmetic::bf16_supported() { Arithmetic::Bf16 } else { Arithmetic::Fp32 };
        assert_eq!(Arithmetic::chosen(Some("fp32")), Arithmetic::Fp32);
        assert_eq!(Arithmetic::chosen(Some(" F32 ")), Arithmetic::Fp32);
        for setting in [None, Some(""), Some("bf16"), Some("auto"), Some("int4")] {
            assert_eq!(Arithmetic::chosen(setting), fastest, "{setting:?}");
        }
    }

    #[tokio::test]
    async fn texts_split_over_several_passes_keep_their_order() {
        let mut embedder = LocalEmbedder::load(tiny()).unwrap();
        Arc::get_mut(&mut embedder.inner).unwrap().tokens_per_pass = 20;
        let words = ["apple tree", "garden water in the summer heat", "bread", "oven store query vector model"];
        let docs: Vec<DocText> = (0..12).map(|i| DocText::new(None, words[i % 4].repeat(i % 3 + 1))).collect();
        let together = embedder.embed_documents(&docs).await.unwrap();
        assert_eq!(together.len(), 12);
        for (doc, vector) in docs.iter().zip(&together) {
            let alone = embedder.embed_documents(std::slice::from_ref(doc)).await.unwrap();
            assert!(cosine(&alone[0], vector) > 0.99999, "{:?}", doc.text);
        }
        assert!(cosine(&together[0], &together[1]) < 0.999, "different texts differ");
    }

    #[tokio::test]
    async fn text_past_the_window_is_cut_at_max_seq_length() {
        let embedder = LocalEmbedder::load(tiny()).unwrap();
        let words: Vec<&str> = "apple tree garden water bread oven store query vector model".split(' ').collect();
        let long: Vec<&str> = words.iter().cycle().take(60).copied().collect();
        // 24 tokens: [CLS], 22 words, [SEP].
        let cut = long[..22].join(" ");
        let whole = embedder.embed_query(&long.join(" ")).await.unwrap();
        let first = embedder.embed_query(&cut).await.unwrap();
        assert!(cosine(&whole, &first) > 0.99999);
    }

    #[test]
    fn broken_model_folders_get_one_line_naming_the_file() {
        let message = |result: std::result::Result<LocalEmbedder, LoadError>| result.unwrap_err().to_string();
        let (_d, no_weights) = damaged(|m| std::fs::remove_file(m.join("model.safetensors")).unwrap());
        let text = message(no_weights);
        assert!(text.contains("model.safetensors") && text.contains("download"), "{text}");
        let (_d, truncated) = damaged(|m| {
            let bytes = std::fs::read(m.join("model.safetensors")).unwrap();
            std::fs::write(m.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
        });
        let text = message(truncated);
        assert!(text.contains("model.safetensors") && text.contains("truncated or damaged"), "{text}");
        assert!(!text.contains('\n'), "one line, even with RUST_BACKTRACE set: {text}");
        let (_d, garbage) = damaged(|m| std::fs::write(m.join("model.safetensors"), b"not safetensors").unwrap());
        assert!(message(garbage).contains("model.safetensors"));
        let (_d, wrong_tokenizer) = damaged(|m| {
            // Another model's tokenizer: a larger vocabulary than these weights.
            let tokenizer = std::fs::read_to_string(m.join("tokenizer.json")).unwrap();
            let mut value: serde_json::Value = serde_json::from_str(&tokenizer).unwrap();
            let vocab = value["model"]["vocab"].as_object_mut().unwrap();
            for i in 0..500 {
                let id = vocab.len();
                vocab.insert(format!("extra{i}"), id.into());
            }
            std::fs::write(m.join("tokenizer.json"), value.to_string()).unwrap();
        });
        let text = message(wrong_tokenizer);
        assert!(text.contains("tokenizer.json") && text.contains("another model"), "{text}");
        let (_d, other_arch) = damaged(|m| {
            let config = std::fs::read_to_string(m.join("config.json")).unwrap();
            std::fs::write(m.join("config.json"), config.replace("\"bert\"", "\"modernbert\"")).unwrap();
        });
        let text = message(other_arch);
        assert!(text.contains("config.json") && text.contains("modernbert") && text.contains("Ollama"), "{text}");
        let (_d, no_config) = damaged(|m| std::fs::remove_file(m.join("config.json")).unwrap());
        assert!(message(no_config).contains("config.json"));
        assert!(message(LocalEmbedder::load("/no/such/model")).contains("no such folder"));
    }

    #[test]
    fn model_names_that_are_folders_are_told_apart_from_ollama_names() {
        let path = tiny();
        let path = path.to_string_lossy();
        assert!(LocalEmbedder::is_model_folder(&path));
        assert!(LocalEmbedder::is_model_folder(&format!("{path}#0123456789abcdef")));
        assert!(!LocalEmbedder::is_model_folder("all-minilm"));
        assert!(!LocalEmbedder::is_model_folder("nomic-embed-text:latest"));
        let loaded = LocalEmbedder::load_named(&format!("{path}#0123")).unwrap();
        assert_eq!(loaded.dimension(), 32);
    }
}
