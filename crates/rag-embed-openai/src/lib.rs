//! [`OpenAiEmbedder`]: a [`rag_core::embed::Embedder`] on any server that
//! speaks the OpenAI embeddings API (`POST {base}/embeddings`).
//!
//! That is OpenAI itself and most of what people run or rent: Mistral,
//! Voyage, Jina, Together, LM Studio, llama.cpp's server, vLLM, Hugging Face
//! TEI, Infinity, LocalAI, and Ollama's `/v1` endpoint. Texts go in batches
//! ([`OpenAiConfig::batch_size`]) with a few requests in flight; 429, 408
//! and 5xx answers are retried with exponential backoff, waiting at least
//! what `Retry-After` (or `retry-after-ms`) asks; the tokens the server
//! counted are summed ([`OpenAiEmbedder::tokens_used`]). Each failure is one
//! [`rag_core::Error`] a caller can match: a refused key is
//! [`Error::AccessDenied`], an unknown model [`Error::ModelMissing`], a
//! text over the model's window [`Error::ContextLength`] (the indexer then
//! embeds it in parts), throttling that outlasts the retries
//! [`Error::Throttled`].
//!
//! ```no_run
//! use rag_core::embed::Embedder;
//! use rag_embed_openai::{OpenAiConfig, OpenAiEmbedder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> rag_core::Result<()> {
//! // OPENAI_API_KEY and OPENAI_BASE_URL are read from the environment.
//! let config = OpenAiConfig::new("text-embedding-3-small").with_dimensions(Some(512));
//! let embedder = OpenAiEmbedder::connect(config).await?;
//! let vector = embedder.embed_query("how do I rotate the keys?").await?;
//! assert_eq!(vector.len(), 512);
//! # Ok(())
//! # }
//! ```

mod errors;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rag_core::{
    Error, Result,
    embed::{DocText, Embedder, PromptFormat},
};
use serde::{Deserialize, Serialize};

pub use errors::OpenAiError;
/// The provider prefix of this crate's models: `openai:MODEL[?dimensions=N]`
/// ([`rag_core::embed::ModelSpec`]).
pub const PROVIDER: &str = "openai";

/// Where requests go when neither the caller nor `OPENAI_BASE_URL` says.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// How to reach the server and use the model.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// Base URL, up to and including the version (`https://api.openai.com/v1`,
    /// `http://localhost:11434/v1`); `/embeddings` is appended.
    pub base_url: String,
    /// Sent as `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// The model as the server names it.
    pub model: String,
    /// `dimensions` to ask for (models that shorten their vectors, such as
    /// `text-embedding-3-*`); `None` takes the model's own.
    pub dimensions: Option<usize>,
    /// Prompt format; `None` picks the model family's documented one.
    pub prompt: Option<PromptFormat>,
    /// Texts per request (OpenAI takes up to 2,048 and 300,000 tokens).
    pub batch_size: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Time limit of one request.
    pub timeout: Duration,
    /// Retries after a 429, 408, 5xx, timeout or dropped connection.
    pub max_retries: u32,
    /// First backoff delay; doubles on each retry, up to [`MAX_BACKOFF`].
    pub initial_backoff: Duration,
    /// The model's context window in tokens, when known (the chunk budget
    /// follows it); `None` looks the model up in a table of known ones.
    pub context_tokens: Option<usize>,
}

/// The longest wait between two attempts, `Retry-After` included.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("batch_size", &self.batch_size)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl OpenAiConfig {
    /// Settings for `model`, with the base URL from `OPENAI_BASE_URL` (else
    /// [`DEFAULT_BASE_URL`]) and the key from `OPENAI_API_KEY`.
    pub fn new(model: impl Into<String>) -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            base_url: env("OPENAI_BASE_URL").map_or_else(|| DEFAULT_BASE_URL.to_string(), |u| trim_url(&u)),
            api_key: env("OPENAI_API_KEY"),
            model: model.into(),
            dimensions: None,
            prompt: None,
            batch_size: 64,
            concurrency: 4,
            timeout: Duration::from_secs(120),
            max_retries: 5,
            initial_backoff: Duration::from_millis(500),
            context_tokens: None,
        }
    }

    /// The same settings with another base URL.
    pub fn with_url(mut self, url: &str) -> Self {
        self.base_url = trim_url(url);
        self
    }

    /// The same settings with another key (`None`: send none).
    pub fn with_api_key(mut self, key: Option<String>) -> Self {
        self.api_key = key;
        self
    }

    /// The same settings asking for vectors of `dimensions`.
    pub fn with_dimensions(mut self, dimensions: Option<usize>) -> Self {
        self.dimensions = dimensions;
        self
    }
}

fn trim_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

/// Context windows of models whose servers do not report them.
fn known_context_tokens(model: &str) -> Option<usize> {
    let name = model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase();
    if name.starts_with("text-embedding-3") || name.starts_with("text-embedding-ada-002") {
        Some(8_191)
    } else if name.starts_with("mistral-embed") {
        Some(8_192)
    } else if name.starts_with("all-minilm") {
        Some(256)
    } else if name.starts_with("nomic-embed-text") {
        Some(2_048)
    } else {
        None
    }
}

/// OpenAI's list price in dollars a million tokens, for the models it names.
fn list_price(model: &str) -> Option<f64> {
    match model {
        "text-embedding-3-small" => Some(0.02),
        "text-embedding-3-large" => Some(0.13),
        "text-embedding-ada-002" => Some(0.10),
        _ => None,
    }
}

/// An [`Embedder`] on an OpenAI-compatible server.
#[derive(Debug)]
pub struct OpenAiEmbedder {
    client: reqwest::Client,
    config: OpenAiConfig,
    prompt: PromptFormat,
    recorded: String,
    dimension: usize,
    tokens: AtomicU64,
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    total_tokens: u64,
}

impl OpenAiEmbedder {
    /// Connects: embeds one short text to check the key and the model and
    /// to learn the vector length.
    pub async fn connect(config: OpenAiConfig) -> Result<Self> {
        let mut embedder = Self::unconnected(config)?;
        let probe = embedder.embed_raw(&["dimension probe".to_string()]).await?;
        embedder.dimension = probe.first().map_or(0, Vec::len);
        if embedder.dimension == 0 {
            return Err(Error::Embedder {
                message: format!(
                    "{} returned an empty vector for model {:?}",
                    embedder.endpoint(),
                    embedder.config.model
                ),
                source: None,
            });
        }
        if let Some(asked) = embedder.config.dimensions
            && asked != embedder.dimension
        {
            return Err(Error::InvalidInput(format!(
                "model {:?} at {} returned {} dimensions where {asked} were asked for: it does not take \
                 `dimensions`; leave ?dimensions= off the model name",
                embedder.config.model,
                embedder.endpoint(),
                embedder.dimension
            )));
        }
        Ok(embedder)
    }

    /// An embedder for a model whose vector length is already known (a
    /// store records it), sending nothing until the first text: a query
    /// then costs one paid call, not two.
    pub fn assume(config: OpenAiConfig, dimension: usize) -> Result<Self> {
        let mut embedder = Self::unconnected(config)?;
        embedder.dimension = dimension;
        Ok(embedder)
    }

    fn unconnected(config: OpenAiConfig) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Embedder { message: "cannot build HTTP client".into(), source: Some(e.into()) })?;
        let prompt = config.prompt.clone().unwrap_or_else(|| PromptFormat::for_model(&config.model));
        let recorded = rag_core::embed::ModelSpec::new(PROVIDER, config.model.clone(), config.dimensions).to_string();
        Ok(Self { client, config, prompt, recorded, dimension: 0, tokens: AtomicU64::new(0) })
    }

    /// The settings in use.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// Tokens the server counted for every request so far (its `usage`).
    pub fn tokens_used(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed)
    }

    fn endpoint(&self) -> String {
        format!("{}/embeddings", self.config.base_url)
    }

    /// One request's vectors, in the order of `inputs`, checked.
    async fn embed_raw(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>> {
        let body = EmbeddingsRequest {
            model: &self.config.model,
            input: inputs,
            encoding_format: "float",
            dimensions: self.config.dimensions,
        };
        let text = self.post(&body).await?;
        let response: EmbeddingsResponse = serde_json::from_str(&text).map_err(|e| Error::Embedder {
            message: format!(
                "{} answered with no usable embeddings (a non-number or a missing field): {e}",
                self.endpoint()
            ),
            source: Some(Box::new(OpenAiError::BadResponse(e.to_string()))),
        })?;
        if let Some(usage) = &response.usage {
            self.tokens.fetch_add(usage.total_tokens, Ordering::Relaxed);
        }
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
        for item in response.data {
            if let Some(slot) = vectors.get_mut(item.index) {
                *slot = Some(item.embedding);
            }
        }
        let vectors: Vec<Vec<f32>> = vectors.into_iter().flatten().collect();
        if vectors.len() != inputs.len() {
            return Err(Error::Embedder {
                message: format!(
                    "sent {} texts to {}, got {} embeddings back",
                    inputs.len(),
                    self.endpoint(),
                    vectors.len()
                ),
                source: None,
            });
        }
        let expected = if self.dimension > 0 { self.dimension } else { vectors[0].len() };
        for vector in &vectors {
            if vector.len() != expected {
                return Err(Error::DimensionMismatch {
                    context: format!("model {:?} at {}", self.config.model, self.endpoint()),
                    expected,
                    actual: vector.len(),
                });
            }
            if vector.iter().any(|x| !x.is_finite()) {
                return Err(Error::Embedder {
                    message: format!("{} returned a vector with a non-finite value", self.endpoint()),
                    source: None,
                });
            }
        }
        Ok(vectors)
    }

    /// POSTs with retries; the body of a 2xx answer, or an actionable error.
    async fn post(&self, body: &EmbeddingsRequest<'_>) -> Result<String> {
        let url = self.endpoint();
        let mut delay = self.config.initial_backoff;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut request = self.client.post(&url).json(body);
            if let Some(key) = &self.config.api_key {
                request = request.bearer_auth(key);
            }
            let (failure, asked_wait) = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let asked_wait = errors::retry_after(response.headers());
                    let text = response.text().await.unwrap_or_default();
                    if (200..300).contains(&status) {
                        return Ok(text);
                    }
                    let failure = OpenAiError::from_body(status, &text);
                    if !failure.is_retryable() || attempt > self.config.max_retries {
                        return Err(errors::to_error(failure, &self.config, &url, attempt));
                    }
                    (failure, asked_wait)
                }
                Err(err) if err.is_connect() && attempt > self.config.max_retries.min(1) => {
                    return Err(Error::EmbedderUnreachable {
                        endpoint: url,
                        reason: Error::root_cause(&err),
                        hint: "Is the server running? Check --embed-url (or OPENAI_BASE_URL).".into(),
                    });
                }
                Err(err) if attempt > self.config.max_retries => {
                    return Err(Error::EmbedderUnreachable {
                        endpoint: url,
                        reason: format!("{} after {attempt} attempts", Error::root_cause(&err)),
                        hint: "The server did not answer in time; check that it is not overloaded.".into(),
                    });
                }
                Err(err) => (OpenAiError::Transport(err), None),
            };
            let wait = asked_wait.map_or(delay, |asked| asked.max(delay)).min(MAX_BACKOFF);
            tracing::debug!(attempt, error = %failure, "embedding request to {url} failed; retrying in {wait:?}");
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    /// `openai:MODEL`, with `?dimensions=N` when asked for: what a store records.
    fn model(&self) -> &str {
        &self.recorded
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn max_batch_size(&self) -> usize {
        self.config.batch_size.max(1)
    }

    fn max_concurrency(&self) -> usize {
        self.config.concurrency.max(1)
    }

    fn context_tokens(&self) -> Option<usize> {
        self.config.context_tokens.or_else(|| known_context_tokens(&self.config.model))
    }

    fn usage(&self) -> Option<rag_core::embed::Usage> {
        let official = self.config.base_url.starts_with(DEFAULT_BASE_URL);
        let price = official.then(|| list_price(&self.config.model)).flatten();
        Some(rag_core::embed::Usage::priced(self.tokens_used(), price))
    }

    async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let inputs: Vec<String> = docs.iter().map(|d| self.prompt.document(d.title.as_deref(), &d.text)).collect();
        self.embed_raw(&inputs).await.map_err(|err| err.with_longest_text(docs))
    }

    /// Embeds a query; one longer than the model's window is cut in half
    /// until it fits (these APIs refuse rather than truncate): a question's
    /// first few hundred words say what it asks.
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let mut query = query;
        loop {
            match self.embed_raw(&[self.prompt.query(query)]).await {
                Ok(mut vectors) => {
                    return vectors.pop().ok_or_else(|| Error::Embedder {
                        message: "the server returned no embedding".into(),
                        source: None,
                    });
                }
                Err(Error::ContextLength { .. }) if query.chars().count() > 16 => {
                    let half = query.char_indices().nth(query.chars().count() / 2).map_or(query.len(), |(i, _)| i);
                    query = &query[..half];
                }
                Err(err) => return Err(err),
            }
        }
    }
}

#[cfg(test)]
mod tests;
