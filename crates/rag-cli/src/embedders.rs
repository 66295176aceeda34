//! Which embedder a model name means: a model folder or a Hub model runs in
//! this process, `openai:MODEL` goes to an OpenAI-compatible server,
//! `bedrock:MODEL_ID` to Amazon Bedrock; any other name is an Ollama model. With no name at all, a
//! new store gets [`connect_default`]'s choice.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{Context, Result};
use rag_core::embed::Embedder;
use rag_core::store::StoreConfig;
use rag_embed_ollama::{DEFAULT_MODEL, OllamaConfig, OllamaEmbedder, PullProgress};

use crate::cli::EmbedderArgs;
use crate::first_use::LoadedOnFirstUse;
use crate::output::say;

/// The in-process model of a new store when no model is named and Ollama is
/// not running: all-MiniLM-L6-v2 (384 dimensions, 256 tokens, about 90 MB),
/// the sentence-transformers model whose weights the test suite verifies.
pub const IN_PROCESS_DEFAULT: &str = "hf:sentence-transformers/all-MiniLM-L6-v2";

/// Where a model name says to embed, with its settings.
enum Provider {
    /// A model folder or `hf:` name, in this process.
    InProcess(String),
    OpenAi(rag_embed_openai::OpenAiConfig),
    Bedrock(rag_embed_bedrock::BedrockConfig),
    Ollama(OllamaConfig),
}

impl Provider {
    /// Reads `model`: a model folder (a path, as `--model ./all-MiniLM-L6-v2`
    /// gives it and as a store records it) or a Hub model
    /// (`hf:ORG/NAME[@REVISION]`) runs in this process; `openai:MODEL` (with
    /// `?dimensions=N` where the model shortens its vectors) is sent to
    /// `--embed-url`, `bedrock:MODEL_ID` to Amazon Bedrock; any other name
    /// is an Ollama model.
    fn of(args: &EmbedderArgs, model: String, batch_size: usize, concurrency: usize) -> Result<Self> {
        if rag_embed_local::LocalEmbedder::is_local_model(&model) {
            return Ok(Provider::InProcess(model));
        }
        if let Some(name) = rag_core::embed::ModelSpec::parse(&model, rag_embed_openai::PROVIDER)? {
            let mut config = rag_embed_openai::OpenAiConfig::new(name.model).with_dimensions(name.dimensions);
            if let Some(url) = &args.embed_url {
                config = config.with_url(url);
            }
            config.batch_size = batch_size;
            config.concurrency = concurrency;
            return Ok(Provider::OpenAi(config));
        }
        if let Some(name) = rag_core::embed::ModelSpec::parse(&model, rag_embed_bedrock::PROVIDER)? {
            return Ok(Provider::Bedrock(rag_embed_bedrock::BedrockConfig {
                dimensions: name.dimensions,
                endpoint_url: args.bedrock_url.clone(),
                region: args.aws_region.clone(),
                profile: args.aws_profile.clone(),
                ..rag_embed_bedrock::BedrockConfig::new(name.model)
            }));
        }
        Ok(Provider::Ollama(ollama_config(args, model, batch_size, concurrency)))
    }
}

/// The embedder of `model` ([`Provider::of`] says which), connected: a
/// server is asked the model's vector length.
pub async fn connect(
    args: &EmbedderArgs,
    model: String,
    batch_size: usize,
    concurrency: usize,
) -> Result<Arc<dyn Embedder>> {
    Ok(match Provider::of(args, model, batch_size, concurrency)? {
        Provider::InProcess(model) => return load_in_process(model).await,
        Provider::OpenAi(config) => {
            tracing::info!(url = %config.base_url, model = %config.model, "connecting to an OpenAI-compatible server");
            Arc::new(rag_embed_openai::OpenAiEmbedder::connect(config).await?)
        }
        Provider::Bedrock(config) => {
            tracing::info!(model = %config.model_id, "connecting to Amazon Bedrock");
            Arc::new(rag_embed_bedrock::BedrockEmbedder::connect(config).await?)
        }
        Provider::Ollama(config) => {
            tracing::info!(url = %config.base_url, model = %config.model, "connecting to Ollama");
            Arc::new(OllamaEmbedder::connect(config).await?)
        }
    })
}

/// The query embedder of `store`'s own model: servers are asked nothing
/// until the query itself (one request, one paid call), where [`connect`]
/// would first ask the model's length; an in-process model loads on the
/// first query, while the search's full-text arm runs.
pub async fn connect_for_queries(args: &EmbedderArgs, store: &StoreConfig) -> Result<Arc<dyn Embedder>> {
    let dimension = store.dimension;
    Ok(match Provider::of(args, store.model.clone(), 1, 1)? {
        Provider::InProcess(_) => Arc::new(LoadedOnFirstUse::new(store, load_in_process)),
        Provider::OpenAi(config) => Arc::new(rag_embed_openai::OpenAiEmbedder::assume(config, dimension)?),
        Provider::Bedrock(config) => Arc::new(rag_embed_bedrock::BedrockEmbedder::assume(config, dimension).await?),
        Provider::Ollama(config) => Arc::new(OllamaEmbedder::assume(config, dimension)?),
    })
}

/// The embedder of a new store when no model is named, and one line saying
/// which and why:
/// - Ollama answers: its `embeddinggemma`, pulled first when it lacks it;
/// - Ollama does not answer (and `--ollama-url` did not name a server):
///   [`IN_PROCESS_DEFAULT`] in this process, fetched once from the Hub.
///
/// The store records the model, so later runs and queries use it with no flag.
pub async fn connect_default(args: &EmbedderArgs, batch_size: usize, concurrency: usize) -> Result<Arc<dyn Embedder>> {
    let config = ollama_config(args, DEFAULT_MODEL.to_string(), batch_size, concurrency);
    let url = config.base_url.clone();
    match OllamaEmbedder::connect(config.clone()).await {
        Ok(embedder) => {
            say(&format!("model: {DEFAULT_MODEL} through Ollama at {url} (no --model given; the store records it)"));
            Ok(Arc::new(embedder))
        }
        Err(rag_core::Error::ModelMissing { .. }) => {
            say(&format!(
                "model: {DEFAULT_MODEL} through Ollama at {url}, which does not have it yet: pulling it (about \
                 620 MB, once)"
            ));
            pull_with_progress(&config).await.with_context(|| {
                format!(
                    "{DEFAULT_MODEL} could not be pulled into Ollama at {url}; pull it yourself (`ollama pull \
                     {DEFAULT_MODEL}`), or embed in this process with --model {IN_PROCESS_DEFAULT}"
                )
            })?;
            let embedder = OllamaEmbedder::connect(config).await?;
            say(&format!("model: {DEFAULT_MODEL} pulled; the store records it"));
            Ok(Arc::new(embedder))
        }
        Err(rag_core::Error::EmbedderUnreachable { reason, .. }) if args.ollama_url.is_none() => {
            say(&format!(
                "model: {IN_PROCESS_DEFAULT} in this process (no --model given, and no Ollama at {url}: {reason}); \
                 fetched once from the Hugging Face Hub (about 90 MB) into its cache; the store records it"
            ));
            load_in_process(IN_PROCESS_DEFAULT.to_string()).await.with_context(|| {
                format!(
                    "no Ollama at {url} and the in-process default cannot be loaded; start Ollama (`ollama serve`) \
                     or pass --model with a sentence-transformers model folder"
                )
            })
        }
        Err(err) => Err(err.into()),
    }
}

fn ollama_config(args: &EmbedderArgs, model: String, batch_size: usize, concurrency: usize) -> OllamaConfig {
    let mut config = OllamaConfig::new(model);
    if let Some(url) = &args.ollama_url {
        config = config.with_url(url);
    }
    config.batch_size = batch_size;
    config.concurrency = concurrency;
    config
}

async fn load_in_process(model: String) -> Result<Arc<dyn Embedder>> {
    tracing::info!(model = %model, "loading the model in-process");
    let mut hub = rag_embed_local::HubOptions::from_env();
    hub.progress = std::io::stderr().is_terminal();
    let loaded = tokio::task::spawn_blocking(move || rag_embed_local::LocalEmbedder::load_named_with(&model, &hub))
        .await
        .context("loading the model stopped")??;
    Ok(Arc::new(loaded))
}

/// `ollama pull`, shown as a bar of each layer's bytes on a terminal and as
/// one line a step otherwise. Ctrl-C ends it; Ollama keeps the finished
/// layers and resumes on the next run.
async fn pull_with_progress(config: &OllamaConfig) -> Result<()> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut last_status = String::new();
    let result = rag_embed_ollama::pull(config, |step: &PullProgress| {
        if let Some(bar) = &bar {
            bar.set_message(step.status.clone());
            if let (Some(total), Some(done)) = (step.total, step.completed) {
                bar.set_length(total);
                bar.set_position(done);
            }
        } else if step.status != last_status {
            match step.total {
                Some(total) => say(&format!("  {} ({})", step.status, crate::output::human_bytes(total))),
                None => say(&format!("  {}", step.status)),
            }
        }
        last_status.clone_from(&step.status);
    })
    .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    Ok(result?)
}
