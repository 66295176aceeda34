//! [`OllamaEmbedder`]: a [`rag_core::embed::Embedder`] on Ollama's HTTP API.
//!
//! It batches texts through `POST /api/embed`, checks the model with
//! `POST /api/show` when it connects (present, an embedding model, and its
//! vector length), words documents and queries as the model family expects
//! ([`rag_core::embed::PromptFormat`]), and retries timeouts, "server busy" and other
//! 5xx answers with backoff before giving up with a message a person can act
//! on.
//!
//! ```no_run
//! use rag_core::embed::Embedder;
//! use rag_embed_ollama::{OllamaConfig, OllamaEmbedder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> rag_core::Result<()> {
//! let embedder = OllamaEmbedder::connect(OllamaConfig::new("embeddinggemma")).await?;
//! let vector = embedder.embed_query("how do I install it?").await?;
//! assert_eq!(vector.len(), embedder.dimension());
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

mod pull;

pub use pull::{PullProgress, pull};

use async_trait::async_trait;
use rag_core::{
    Error, Result,
    embed::{DocText, Embedder, PromptFormat},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where Ollama listens when nothing says otherwise.
pub const DEFAULT_URL: &str = "http://localhost:11434";
/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "embeddinggemma";

/// How to reach Ollama and use the model.
#[derive(Debug, Clone)]
pub struct OllamaConfig {
    /// Base URL of the server.
    pub base_url: String,
    /// Model name, e.g. `embeddinggemma` or `nomic-embed-text:v1.5`.
    pub model: String,
    /// Prompt format; `None` picks the model family's documented one.
    pub prompt: Option<PromptFormat>,
    /// Let Ollama cut texts longer than the model's context window instead of
    /// refusing them (`truncate`). Off by default: text is never lost silently.
    pub truncate: bool,
    /// How long Ollama keeps the model loaded after a request (`keep_alive`, e.g. `"5m"`).
    pub keep_alive: Option<String>,
    /// Texts per request.
    pub batch_size: usize,
    /// Requests in flight at once (Ollama runs one per model unless `OLLAMA_NUM_PARALLEL` says more).
    pub concurrency: usize,
    /// Time limit of one request.
    pub timeout: Duration,
    /// Retries after a timeout, 5xx or connection reset, with exponential backoff.
    pub max_retries: u32,
    /// First backoff delay; doubles on each retry.
    pub initial_backoff: Duration,
}

impl OllamaConfig {
    /// Settings for `model` with the URL from `OLLAMA_HOST` or the default.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            base_url: base_url_from(None, std::env::var("OLLAMA_HOST").ok().as_deref()),
            model: model.into(),
            prompt: None,
            truncate: false,
            keep_alive: None,
            batch_size: 32,
            concurrency: 2,
            timeout: Duration::from_secs(300),
            max_retries: 4,
            initial_backoff: Duration::from_millis(500),
        }
    }

    /// The same settings with another base URL.
    pub fn with_url(mut self, url: &str) -> Self {
        self.base_url = base_url_from(Some(url), None);
        self
    }
}

/// The server URL: an explicit one, else `OLLAMA_HOST` (which may omit the
/// scheme or port, as Ollama allows), else [`DEFAULT_URL`].
///
/// ```
/// use rag_embed_ollama::base_url_from;
/// assert_eq!(base_url_from(None, Some("10.0.0.5")), "http://10.0.0.5:11434");
/// assert_eq!(base_url_from(Some("https://gpu.example/"), Some("x")), "https://gpu.example");
/// assert_eq!(base_url_from(None, None), "http://localhost:11434");
/// ```
pub fn base_url_from(explicit: Option<&str>, ollama_host: Option<&str>) -> String {
    let raw = explicit.or(ollama_host.filter(|h| !h.trim().is_empty())).unwrap_or(DEFAULT_URL).trim();
    let with_scheme = if raw.contains("://") { raw.to_string() } else { format!("http://{raw}") };
    let trimmed = with_scheme.trim_end_matches('/').to_string();
    let after_scheme = trimmed.split_once("://").map_or(trimmed.as_str(), |(_, rest)| rest);
    let has_port = after_scheme.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    if explicit.is_none() && !has_port && !after_scheme.contains('/') { format!("{trimmed}:11434") } else { trimmed }
}

/// What went wrong talking to Ollama; reaches callers inside
/// [`rag_core::Error`] variants that say what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OllamaError {
    /// Ollama answered with an error status and body.
    #[error("Ollama answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The `error` field of the body (or the body).
        message: String,
    },
    /// The request did not get an answer.
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// The answer was not what the API documents.
    #[error("unexpected answer: {0}")]
    BadResponse(String),
}

/// An [`Embedder`] on an Ollama server.
#[derive(Debug, Clone)]
pub struct OllamaEmbedder {
    client: reqwest::Client,
    config: OllamaConfig,
    prompt: PromptFormat,
    dimension: usize,
    context_tokens: Option<usize>,
}

#[derive(Serialize)]
struct EmbedRequest<'a> {
    model: &'a str,
    input: &'a [String],
    truncate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<&'a str>,
}

#[derive(Deserialize)]
struct EmbedResponse {
    embeddings: Vec<Vec<f32>>,
}

/// An HTTP client for the Ollama server at `base_url`: connecting gives up
/// after 5 s. Plain HTTP (Ollama's own default) needs no certificates, so
/// none are loaded for it: reading the system's store cost each fresh `rag
/// query` several ms. A redirect to HTTPS would then fail verification;
/// Ollama sends none.
fn client_builder(base_url: &str) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
    if base_url.starts_with("http://") { builder.tls_certs_only([]) } else { builder }
}

impl OllamaEmbedder {
    /// Connects: checks that the server answers, that the model is there and
    /// embeds, and learns its vector length.
    pub async fn connect(config: OllamaConfig) -> Result<Self> {
        let mut embedder = Self::assume(config, 0)?;
        let show = embedder.post("/api/show", &serde_json::json!({ "model": embedder.config.model })).await?;
        if let Some(capabilities) = show.get("capabilities").and_then(Value::as_array)
            && !capabilities.iter().any(|c| c == "embedding")
        {
            return Err(Error::InvalidInput(format!(
                "model {:?} is not an embedding model (capabilities: {}); pull one with `ollama pull {}`",
                embedder.config.model,
                Value::Array(capabilities.clone()),
                DEFAULT_MODEL
            )));
        }
        embedder.context_tokens = model_info_number(&show, ".context_length");
        embedder.dimension = match embedding_length(&show) {
            Some(dimension) => dimension,
            None => {
                // Older servers do not report it: ask for one vector.
                let probe = embedder.embed_raw(&["dimension probe".to_string()]).await?;
                probe.first().map(Vec::len).unwrap_or(0)
            }
        };
        if embedder.dimension == 0 {
            return Err(Error::Embedder {
                message: format!("model {:?} reported no embedding length", embedder.config.model),
                source: None,
            });
        }
        Ok(embedder)
    }

    /// An embedder for a model whose vector length is already known (a
    /// store records it), asking the server nothing until the first text:
    /// a query then costs one request, not two. A model Ollama lacks is
    /// [`Error::ModelMissing`] at that first request.
    pub fn assume(config: OllamaConfig, dimension: usize) -> Result<Self> {
        let client = client_builder(&config.base_url)
            .timeout(config.timeout)
            .build()
            .map_err(|e| Error::Embedder { message: "cannot build HTTP client".into(), source: Some(e.into()) })?;
        let prompt = config.prompt.clone().unwrap_or_else(|| PromptFormat::for_model(&config.model));
        Ok(Self { client, config, prompt, dimension, context_tokens: None })
    }

    /// The settings in use.
    pub fn config(&self) -> &OllamaConfig {
        &self.config
    }

    async fn embed_raw(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>> {
        self.embed_with(inputs, self.config.truncate).await
    }

    async fn embed_with(&self, inputs: &[String], truncate: bool) -> Result<Vec<Vec<f32>>> {
        let body = EmbedRequest {
            model: &self.config.model,
            input: inputs,
            truncate,
            keep_alive: self.config.keep_alive.as_deref(),
        };
        let value = self.post("/api/embed", &body).await?;
        let response: EmbedResponse = serde_json::from_value(value).map_err(|e| Error::Embedder {
            message: "Ollama's /api/embed answer has no usable `embeddings`".into(),
            source: Some(Box::new(OllamaError::BadResponse(e.to_string()))),
        })?;
        if response.embeddings.len() != inputs.len() {
            return Err(Error::Embedder {
                message: format!(
                    "sent {} texts, Ollama returned {} embeddings",
                    inputs.len(),
                    response.embeddings.len()
                ),
                source: None,
            });
        }
        Ok(response.embeddings)
    }

    /// POSTs JSON with retries; maps failures to actionable errors.
    async fn post<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> Result<Value> {
        let url = format!("{}{path}", self.config.base_url);
        let mut delay = self.config.initial_backoff;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = self.client.post(&url).json(body).send().await;
            let retryable = match outcome {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    if (200..300).contains(&status) {
                        return serde_json::from_str(&text).map_err(|e| Error::Embedder {
                            message: format!("Ollama's answer to {path} is not JSON"),
                            source: Some(Box::new(OllamaError::BadResponse(e.to_string()))),
                        });
                    }
                    let message = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                        .unwrap_or(text);
                    let err = OllamaError::Status { status, message };
                    if !matches!(status, 408 | 429 | 499 | 500..=599) || attempt > self.config.max_retries {
                        return Err(self.status_error(err, attempt));
                    }
                    err
                }
                Err(err) if err.is_connect() && attempt > self.config.max_retries.min(1) => {
                    return Err(Error::EmbedderUnreachable {
                        endpoint: self.config.base_url.clone(),
                        reason: Error::root_cause(&err),
                        hint: "Is Ollama running? Start it with `ollama serve`, or connect to a server that is.".into(),
                    });
                }
                Err(err) if attempt > self.config.max_retries => {
                    return Err(Error::EmbedderUnreachable {
                        endpoint: self.config.base_url.clone(),
                        reason: format!("{} after {attempt} attempts", Error::root_cause(&err)),
                        hint: "The server did not answer in time; check that it is not overloaded, or raise the \
                               timeout."
                            .into(),
                    });
                }
                Err(err) => OllamaError::Transport(err),
            };
            // A refused connection is tried once more without a word: it is
            // how a machine without Ollama answers, and the caller decides.
            if matches!(&retryable, OllamaError::Transport(err) if err.is_connect()) {
                tracing::debug!(attempt, error = %retryable, "Ollama request to {path} failed; retrying in {delay:?}");
            } else {
                tracing::warn!(attempt, error = %retryable, "Ollama request to {path} failed; retrying in {delay:?}");
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    fn status_error(&self, err: OllamaError, attempts: u32) -> Error {
        let OllamaError::Status { status, message } = &err else {
            return Error::Embedder { message: err.to_string(), source: Some(Box::new(err)) };
        };
        let model = self.config.model.clone();
        match *status {
            404 => Error::ModelMissing { model: model.clone(), hint: format!("pull it with `ollama pull {model}`") },
            400 if message.contains("context length") => Error::ContextLength { model, chars: 0 },
            400 => Error::InvalidInput(format!("Ollama refused the request: {message}")),
            429 | 503 => Error::Throttled { service: format!("Ollama at {}", self.config.base_url), attempts },
            _ => Error::Embedder {
                message: format!("Ollama failed after {attempts} attempts"),
                source: Some(Box::new(err)),
            },
        }
    }
}

/// `model_info["<arch>.embedding_length"]` of an `/api/show` answer.
fn embedding_length(show: &Value) -> Option<usize> {
    model_info_number(show, ".embedding_length")
}

/// `model_info["<arch><suffix>"]` of an `/api/show` answer, as a number.
fn model_info_number(show: &Value, suffix: &str) -> Option<usize> {
    let info = show.get("model_info")?.as_object()?;
    info.iter()
        .find(|(key, _)| key.ends_with(suffix))
        .and_then(|(_, value)| value.as_u64())
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0)
}

#[async_trait]
impl Embedder for OllamaEmbedder {
    fn model(&self) -> &str {
        &self.config.model
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
        self.context_tokens
    }

    async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let inputs: Vec<String> = docs.iter().map(|d| self.prompt.document(d.title.as_deref(), &d.text)).collect();
        self.embed_raw(&inputs).await.map_err(|err| err.with_longest_text(docs))
    }

    /// Embeds a query; a query longer than the model's window is cut by
    /// Ollama (`truncate`) rather than refused: a question loses nothing
    /// stored, and its first few hundred words say what it asks.
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let mut vectors = self.embed_with(&[self.prompt.query(query)], true).await?;
        vectors.pop().ok_or_else(|| Error::Embedder { message: "Ollama returned no embedding".into(), source: None })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rag_testkit::FakeOllama;

    fn config(url: &str) -> OllamaConfig {
        OllamaConfig { initial_backoff: Duration::from_millis(1), ..OllamaConfig::new("embeddinggemma").with_url(url) }
    }

    #[tokio::test]
    async fn connect_learns_the_dimension_and_embeds_in_order_with_prompts() {
        let ollama = FakeOllama::start();
        let embedder = OllamaEmbedder::connect(config(&ollama.url())).await.unwrap();
        assert_eq!(embedder.dimension(), rag_testkit::DEFAULT_DIMENSION);
        let docs = [DocText::new(Some("README".into()), "alpha"), DocText::new(None, "beta")];
        let vectors = embedder.embed_documents(&docs).await.unwrap();
        assert_eq!(ollama.last_inputs(), ["title: README | text: alpha", "title: none | text: beta"]);
        assert_eq!(vectors[0], FakeOllama::vector_for("title: README | text: alpha", 64));
        assert_eq!(ollama.last_request()["truncate"], false);
        embedder.embed_query("why").await.unwrap();
        assert_eq!(ollama.last_inputs(), ["task: search result | query: why"]);
    }

    #[tokio::test]
    async fn an_assumed_dimension_asks_nothing_until_the_first_text() {
        let ollama = FakeOllama::start();
        let embedder = OllamaEmbedder::assume(config(&ollama.url()), 64).unwrap();
        assert_eq!((ollama.stats().show_requests, ollama.stats().embed_requests), (0, 0));
        let vector = embedder.embed_query("why").await.unwrap();
        assert_eq!(vector.len(), 64);
        assert_eq!((ollama.stats().show_requests, ollama.stats().embed_requests), (0, 1));
        let missing =
            OllamaEmbedder::assume(OllamaConfig { model: "nope".into(), ..config(&ollama.url()) }, 64).unwrap();
        assert!(matches!(missing.embed_query("why").await.unwrap_err(), Error::ModelMissing { .. }));
    }

    #[tokio::test]
    async fn a_missing_model_says_to_pull_it() {
        let ollama = FakeOllama::with_models(&[("nomic-embed-text", 8)]);
        let err = OllamaEmbedder::connect(config(&ollama.url())).await.unwrap_err();
        assert!(matches!(err, Error::ModelMissing { .. }), "{err}");
        assert!(err.to_string().contains("ollama pull embeddinggemma"), "{err}");
    }

    #[tokio::test]
    async fn a_server_that_is_not_running_is_named_with_its_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let err = OllamaEmbedder::connect(config(&url)).await.unwrap_err();
        assert!(matches!(err, Error::EmbedderUnreachable { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&url) && text.contains("ollama serve"), "{text}");
    }

    #[tokio::test]
    async fn busy_and_failing_servers_are_retried_then_reported() {
        let ollama = FakeOllama::start();
        let embedder = OllamaEmbedder::connect(config(&ollama.url())).await.unwrap();
        ollama.fail_next(2, 503, "server busy, please try again.  maximum pending requests exceeded");
        embedder.embed_query("recovered").await.unwrap();

        ollama.fail_next(10, 500, "llama runner process has terminated");
        let err = embedder.embed_query("broken").await.unwrap_err();
        assert!(err.to_string().contains("after 5 attempts"), "{err}");
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("llama runner process has terminated"), "{source}");
    }

    #[tokio::test]
    async fn over_long_input_is_a_context_length_error_not_silent_truncation() {
        let ollama = FakeOllama::start();
        ollama.set_context_chars(10);
        let embedder = OllamaEmbedder::connect(config(&ollama.url())).await.unwrap();
        let err = embedder.embed_documents(&[DocText::new(None, "x".repeat(50))]).await.unwrap_err();
        assert!(matches!(err, Error::ContextLength { chars: 50, .. }), "{err}");
        // A query is cut by the server instead: it loses nothing stored.
        let query = embedder.embed_query(&"y".repeat(50)).await.unwrap();
        assert_eq!(query.len(), embedder.dimension());
        assert_eq!(ollama.last_request()["truncate"], true);
    }

    #[tokio::test]
    async fn the_context_window_comes_from_api_show() {
        let ollama = FakeOllama::start();
        ollama.set_context_chars(2048);
        let embedder = OllamaEmbedder::connect(config(&ollama.url())).await.unwrap();
        assert_eq!(embedder.context_tokens(), Some(512));
    }

    #[test]
    fn prompt_format_follows_the_model_family_unless_overridden() {
        let mut config = OllamaConfig::new("nomic-embed-text");
        assert_eq!(config.prompt, None);
        config.prompt = Some(PromptFormat::Plain);
        assert_eq!(config.prompt.clone().unwrap().query("q"), "q");
    }
}
