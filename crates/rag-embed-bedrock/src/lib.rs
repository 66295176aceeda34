//! [`BedrockEmbedder`]: a [`rag_core::embed::Embedder`] on Amazon Bedrock,
//! through the official `aws-sdk-bedrockruntime` client (InvokeModel).
//!
//! For a team whose vectors live in S3 Vectors, Bedrock embeds with no
//! machine to run: Amazon Titan Text Embeddings V2
//! (`amazon.titan-embed-text-v2:0`, 256/512/1,024 dimensions) and Cohere
//! Embed v3 and v4 (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`,
//! `cohere.embed-v4:0`), see [`Family`]. Credentials, region and profile
//! come from the AWS chain, as for S3 Vectors; the endpoint from
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` or [`BedrockConfig::endpoint_url`].
//!
//! Titan takes one text a call and Cohere 96: calls run several at a time,
//! up to [`BedrockConfig::concurrency`], under a bound that halves on
//! `ThrottlingException` and grows back one call at a time, so a run settles
//! at what the account's quota takes; throttled and failed calls are retried
//! with jittered backoff ([`BedrockConfig::max_attempts`]).
//! A text over the model's limit is [`Error::ContextLength`] before any call
//! (the indexer embeds it in parts); a model not enabled in the region, or a
//! role without `bedrock:InvokeModel`, is [`Error::AccessDenied`]. Tokens
//! and their list price are counted ([`Embedder::usage`]).
//!
//! ```no_run
//! use rag_core::embed::Embedder;
//! use rag_embed_bedrock::{BedrockConfig, BedrockEmbedder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> rag_core::Result<()> {
//! let config = BedrockConfig { region: Some("us-east-1".into()), ..BedrockConfig::new("amazon.titan-embed-text-v2:0") };
//! let embedder = BedrockEmbedder::connect(config).await?;
//! let vector = embedder.embed_query("how do I rotate the keys?").await?;
//! assert_eq!(vector.len(), 1024);
//! # Ok(())
//! # }
//! ```

mod concurrency;
mod errors;
mod family;

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::Region;
use aws_sdk_bedrockruntime::primitives::Blob;
use futures::stream::{self, StreamExt, TryStreamExt};
use rag_core::{
    Error, Result,
    embed::{DocText, Embedder, ModelSpec, Usage},
};

pub use family::{Family, Purpose};

/// The provider prefix of this crate's models: `bedrock:MODEL_ID[?dimensions=N]`.
pub const PROVIDER: &str = "bedrock";

/// Which model, where, and how hard to push.
#[derive(Debug, Clone)]
pub struct BedrockConfig {
    /// The model id (`amazon.titan-embed-text-v2:0`) or an inference profile (`us.cohere.embed-v4:0`).
    pub model_id: String,
    /// Vector length to ask for, where the model offers several.
    pub dimensions: Option<usize>,
    /// AWS region; `None` takes it from the environment or profile.
    pub region: Option<String>,
    /// AWS profile; `None` uses the default chain.
    pub profile: Option<String>,
    /// Endpoint override (`AWS_ENDPOINT_URL_BEDROCK_RUNTIME` also works).
    pub endpoint_url: Option<String>,
    /// InvokeModel calls in flight at once.
    pub concurrency: usize,
    /// Attempts per call (throttling, 5xx, timeouts), by this crate's loop.
    pub max_attempts: u32,
    /// First wait between attempts; doubles, with jitter, up to 10 s.
    pub initial_backoff: std::time::Duration,
}

impl BedrockConfig {
    /// Defaults for `model_id`: up to 16 calls at once, 8 attempts each.
    pub fn new(model_id: impl Into<String>) -> Self {
        Self {
            model_id: model_id.into(),
            dimensions: None,
            region: None,
            profile: None,
            endpoint_url: None,
            concurrency: 16,
            max_attempts: 8,
            initial_backoff: std::time::Duration::from_millis(200),
        }
    }
}

/// A client with the AWS chain and the overrides of `config`, and its region.
async fn sdk_client(config: &BedrockConfig) -> Result<(Client, String)> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        // Retries are this crate's, so every throttle reaches the concurrency bound.
        .retry_config(RetryConfig::disabled());
    if let Some(profile) = &config.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let sdk = loader.load().await;
    let region = sdk.region().map(ToString::to_string).ok_or_else(|| {
        Error::InvalidInput("no AWS region for Bedrock: set AWS_REGION, or a region in your AWS profile".into())
    })?;
    Ok((Client::new(&sdk), region))
}

/// An [`Embedder`] on Amazon Bedrock.
#[derive(Debug)]
pub struct BedrockEmbedder {
    client: Client,
    config: BedrockConfig,
    family: Family,
    region: String,
    recorded: String,
    dimension: usize,
    calls: concurrency::AdaptiveConcurrency,
    tokens: AtomicU64,
}

impl BedrockEmbedder {
    /// Loads AWS configuration (environment, profile, SSO, IMDS) with the
    /// overrides of `config`, and connects: one short text is embedded to
    /// check access to the model and learn its vector length.
    pub async fn connect(config: BedrockConfig) -> Result<Self> {
        let (client, region) = sdk_client(&config).await?;
        Self::from_client(client, config, region).await
    }

    /// An embedder for a model whose vector length is already known (a
    /// store records it), calling nothing until the first text: a query
    /// then costs one paid call, not two.
    pub async fn assume(config: BedrockConfig, dimension: usize) -> Result<Self> {
        let (client, region) = sdk_client(&config).await?;
        let mut embedder = Self::unprobed(client, config, region)?;
        embedder.dimension = dimension;
        Ok(embedder)
    }

    /// Connects through a client built elsewhere (tests, custom credentials).
    pub async fn from_client(client: Client, config: BedrockConfig, region: String) -> Result<Self> {
        let mut embedder = Self::unprobed(client, config, region)?;
        let probe = embedder.embed_texts(&["dimension probe".to_string()], Purpose::Query).await?;
        embedder.dimension = probe.first().map_or(0, Vec::len);
        if embedder.dimension == 0 {
            return Err(Error::Embedder {
                message: format!("{} returned an empty vector", embedder.service()),
                source: None,
            });
        }
        Ok(embedder)
    }

    /// The embedder before its vector length is known: the model and the
    /// dimensions asked for are checked here, before any call.
    fn unprobed(client: Client, config: BedrockConfig, region: String) -> Result<Self> {
        let family = Family::of(&config.model_id).ok_or_else(|| {
            Error::InvalidInput(format!(
                "{:?} is not a Bedrock embedding model rag can use: use amazon.titan-embed-text-v2:0, \
                 cohere.embed-english-v3, cohere.embed-multilingual-v3 or cohere.embed-v4:0",
                config.model_id
            ))
        })?;
        if let Some(asked) = config.dimensions
            && !family.dimensions().contains(&asked)
        {
            return Err(Error::InvalidInput(format!(
                "{} offers vectors of {:?} dimensions, not {asked}",
                config.model_id,
                family.dimensions()
            )));
        }
        let recorded = ModelSpec::new(PROVIDER, config.model_id.clone(), config.dimensions).to_string();
        let calls = concurrency::AdaptiveConcurrency::new(config.concurrency);
        Ok(Self { client, config, family, region, recorded, dimension: 0, calls, tokens: AtomicU64::new(0) })
    }

    /// The model family in use.
    pub fn family(&self) -> Family {
        self.family
    }

    fn service(&self) -> String {
        format!("Amazon Bedrock ({} in {})", self.config.model_id, self.region)
    }

    /// Vectors of `texts`, in order: calls of the family's size, several at once.
    async fn embed_texts(&self, texts: &[String], purpose: Purpose) -> Result<Vec<Vec<f32>>> {
        if let Some(long) = texts.iter().map(|t| t.chars().count()).find(|&n| n > self.family.max_chars()) {
            return Err(Error::ContextLength { model: self.recorded.clone(), chars: long });
        }
        let groups: Vec<Vec<String>> = texts.chunks(self.family.texts_per_call()).map(<[String]>::to_vec).collect();
        let parts: Vec<Vec<Vec<f32>>> = stream::iter(groups)
            .map(|group| async move { self.invoke(&group, purpose).await })
            .buffered(self.config.concurrency.max(1))
            .try_collect()
            .await?;
        let vectors: Vec<Vec<f32>> = parts.into_iter().flatten().collect();
        let expected = if self.dimension > 0 { self.dimension } else { vectors.first().map_or(0, Vec::len) };
        for vector in &vectors {
            if vector.len() != expected {
                return Err(Error::DimensionMismatch { context: self.service(), expected, actual: vector.len() });
            }
            if vector.iter().any(|x| !x.is_finite()) {
                return Err(Error::Embedder {
                    message: format!("{} returned a vector with a non-finite value", self.service()),
                    source: None,
                });
            }
        }
        Ok(vectors)
    }

    /// One InvokeModel call.
    async fn invoke(&self, texts: &[String], purpose: Purpose) -> Result<Vec<Vec<f32>>> {
        let body = self.family.request(texts, purpose, self.config.dimensions);
        let bytes = serde_json::to_vec(&body).map_err(|e| Error::InvalidInput(format!("request body: {e}")))?;
        let mut delay = self.config.initial_backoff;
        let mut attempt = 0;
        let output = loop {
            attempt += 1;
            let slot = self.calls.acquire().await;
            let started = slot.started();
            let sent = self
                .client
                .invoke_model()
                .model_id(&self.config.model_id)
                .content_type("application/json")
                .accept("application/json")
                .body(Blob::new(bytes.clone()))
                .send()
                .await;
            drop(slot);
            match sent {
                Ok(output) => {
                    self.calls.succeeded();
                    break output;
                }
                Err(err) if errors::is_retryable(&err) && attempt < self.config.max_attempts => {
                    if errors::is_throttling(&err) {
                        self.calls.throttled(started);
                    }
                    let wait = errors::jitter(delay);
                    tracing::debug!(attempt, limit = self.calls.limit(), "Bedrock call failed; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(10));
                }
                Err(err) => return Err(errors::to_error(err, &self.service(), &self.recorded, attempt)),
            }
        };
        let answer: serde_json::Value =
            serde_json::from_slice(output.body().as_ref()).map_err(|e| Error::Embedder {
                message: format!("{} answered with a body that is not JSON: {e}", self.service()),
                source: None,
            })?;
        let (vectors, counted) = self.family.response(&answer).map_err(|why| Error::Embedder {
            message: format!("{} answered with no usable embeddings: {why}", self.service()),
            source: None,
        })?;
        if vectors.len() != texts.len() {
            return Err(Error::Embedder {
                message: format!(
                    "sent {} texts to {}, got {} embeddings back",
                    texts.len(),
                    self.service(),
                    vectors.len()
                ),
                source: None,
            });
        }
        // Cohere does not count tokens: 4 characters a token, as the list prices assume.
        let tokens = counted.unwrap_or_else(|| texts.iter().map(|t| t.chars().count() as u64).sum::<u64>().div_ceil(4));
        self.tokens.fetch_add(tokens, Ordering::Relaxed);
        Ok(vectors)
    }
}

#[async_trait]
impl Embedder for BedrockEmbedder {
    /// `bedrock:MODEL_ID`, with `?dimensions=N` when asked for.
    fn model(&self) -> &str {
        &self.recorded
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn max_batch_size(&self) -> usize {
        match self.family {
            Family::TitanV2 => 32,
            Family::CohereV3 | Family::CohereV4 => 96,
        }
    }

    fn max_concurrency(&self) -> usize {
        4
    }

    fn context_tokens(&self) -> Option<usize> {
        Some(self.family.context_tokens())
    }

    fn usage(&self) -> Option<Usage> {
        Some(Usage::priced(self.tokens.load(Ordering::Relaxed), Some(self.family.usd_per_million_tokens())))
    }

    async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
        let texts: Vec<String> = docs.iter().map(|d| d.text.clone()).collect();
        self.embed_texts(&texts, Purpose::Document).await
    }

    /// A query longer than the model's limit is cut to it: its first
    /// thousands of characters say what it asks.
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let cut: String = query.chars().take(self.family.max_chars()).collect();
        let mut vectors = self.embed_texts(&[cut], Purpose::Query).await?;
        vectors.pop().ok_or_else(|| Error::Embedder {
            message: format!("{} returned no embedding", self.service()),
            source: None,
        })
    }
}
