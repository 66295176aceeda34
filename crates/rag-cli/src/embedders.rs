//! Which embedder a model name means: a model folder or a Hub model runs in
//! this process; any other name is an Ollama model.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{Context, Result};
use rag_core::embed::Embedder;
use rag_embed_ollama::{OllamaConfig, OllamaEmbedder};

use crate::cli::EmbedderArgs;

/// The embedder of `model`: a model folder (a path, as `--model ./all-MiniLM-L6-v2`
/// gives it and as a store records it) or a Hub model (`hf:ORG/NAME[@REVISION]`,
/// fetched once into the Hub's cache) runs in this process; any other name is
/// an Ollama model.
pub async fn connect(
    args: &EmbedderArgs,
    model: String,
    batch_size: usize,
    concurrency: usize,
) -> Result<Arc<dyn Embedder>> {
    if rag_embed_local::LocalEmbedder::is_local_model(&model) {
        tracing::info!(model = %model, "loading the model in-process");
        let mut hub = rag_embed_local::HubOptions::from_env();
        hub.progress = std::io::stderr().is_terminal();
        let loaded = tokio::task::spawn_blocking(move || rag_embed_local::LocalEmbedder::load_named_with(&model, &hub))
            .await
            .context("loading the model stopped")??;
        return Ok(Arc::new(loaded));
    }
    let mut config = OllamaConfig::new(model);
    if let Some(url) = &args.ollama_url {
        config = config.with_url(url);
    }
    config.batch_size = batch_size;
    config.concurrency = concurrency;
    tracing::info!(url = %config.base_url, model = %config.model, "connecting to Ollama");
    Ok(Arc::new(OllamaEmbedder::connect(config).await?))
}
