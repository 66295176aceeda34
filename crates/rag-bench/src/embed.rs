//! `rag-bench embed`: texts/s and tokens/s of the in-process embedder
//! (rag-embed-local) beside an Ollama server (the stand-in in
//! `../shared/tools/ollama-standin` serves the same all-MiniLM-L6-v2
//! weights with numpy), for texts of about 1, 32 and 256 tokens.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use rag_core::embed::{DocText, Embedder};

use crate::median;

/// A text of about `tokens` word pieces for a BERT tokenizer.
fn text_of(tokens: usize, seed: usize) -> String {
    const WORDS: [&str; 12] =
        ["water", "the", "garden", "in", "summer", "bread", "oven", "store", "query", "vector", "model", "files"];
    (0..tokens.max(1)).map(|i| WORDS[(i * 7 + seed) % WORDS.len()]).collect::<Vec<_>>().join(" ")
}

async fn measure(embedder: &dyn Embedder, tokens: usize, texts: usize, runs: usize) -> Result<f64> {
    let docs: Vec<DocText> = (0..texts).map(|i| DocText::new(None, text_of(tokens, i))).collect();
    let mut rates = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        for batch in docs.chunks(embedder.max_batch_size().max(1)) {
            embedder.embed_documents(batch).await?;
        }
        rates.push(texts as f64 / started.elapsed().as_secs_f64());
    }
    Ok(median(rates))
}

/// Texts/s of the model folder `model` in-process and, when given, of the
/// same model through the Ollama server at `ollama`.
pub async fn bench_embed(model: &Path, ollama: Option<(String, String)>, runs: usize) -> Result<()> {
    let local: Arc<dyn Embedder> = Arc::new(rag_embed_local::LocalEmbedder::load(model)?);
    let remote: Option<Arc<dyn Embedder>> = match ollama {
        Some((url, name)) => Some(Arc::new(
            rag_embed_ollama::OllamaEmbedder::connect(rag_embed_ollama::OllamaConfig::new(name).with_url(&url)).await?,
        )),
        None => None,
    };
    println!("embedding throughput, {} ({runs} runs each, medians; texts/s, tokens/s)", model.display());
    println!("{:>8} {:>8} {:>22} {:>22} {:>8}", "tokens", "texts", "in-process", "Ollama API", "ratio");
    for (tokens, texts) in [(1, 256), (32, 128), (256, 32)] {
        let inproc = measure(local.as_ref(), tokens, texts, runs).await?;
        let server = match &remote {
            Some(remote) => Some(measure(remote.as_ref(), tokens, texts, runs).await?),
            None => None,
        };
        let cell = |rate: f64| format!("{rate:>8.1} / {:>9.0}", rate * tokens as f64);
        println!(
            "{tokens:>8} {texts:>8} {:>22} {:>22} {:>8}",
            cell(inproc),
            server.map_or_else(|| "-".to_string(), cell),
            server.map_or_else(String::new, |s| format!("{:.1}x", inproc / s))
        );
    }
    Ok(())
}
