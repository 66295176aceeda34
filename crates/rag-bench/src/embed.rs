//! `rag-bench embed`: texts/s and tokens/s of the in-process embedder
//! (rag-embed-local) beside an Ollama server (the stand-in in
//! `../shared/tools/ollama-standin` serves the same all-MiniLM-L6-v2
//! weights with numpy), for texts of about 1, 32 and 256 tokens: in f32 and
//! in bf16 where the CPU has it, with the least cosine between the two.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use rag_core::embed::{DocText, Embedder};
use rag_embed_local::Arithmetic;

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

/// The least cosine between the vectors `a` and `b` give the same texts.
async fn least_cosine(a: &dyn Embedder, b: &dyn Embedder, tokens: usize, texts: usize) -> Result<f64> {
    let docs: Vec<DocText> = (0..texts).map(|i| DocText::new(None, text_of(tokens, i))).collect();
    let (left, right) = (a.embed_documents(&docs).await?, b.embed_documents(&docs).await?);
    let cosine = |x: &[f32], y: &[f32]| {
        let dot: f64 = x.iter().zip(y).map(|(p, q)| f64::from(*p) * f64::from(*q)).sum();
        let norm = |v: &[f32]| v.iter().map(|p| f64::from(*p).powi(2)).sum::<f64>().sqrt();
        dot / (norm(x) * norm(y))
    };
    Ok(left.iter().zip(&right).map(|(x, y)| cosine(x, y)).fold(1.0, f64::min))
}

/// Texts/s of the model folder `model` in-process, in f32 and in the
/// fastest arithmetic this CPU has, and, when given, of the same model
/// through the Ollama server at `ollama`; texts of each of `lengths` tokens.
pub async fn bench_embed(model: &Path, ollama: Option<(String, String)>, lengths: &[usize], runs: usize) -> Result<()> {
    let reference = rag_embed_local::LocalEmbedder::load_with(model, Arithmetic::Fp32)?;
    let fast = rag_embed_local::LocalEmbedder::load_with(model, Arithmetic::Bf16)?;
    let fast: Option<Arc<dyn Embedder>> = (fast.arithmetic() != Arithmetic::Fp32).then(|| Arc::new(fast) as _);
    let reference: Arc<dyn Embedder> = Arc::new(reference);
    let remote: Option<Arc<dyn Embedder>> = match ollama {
        Some((url, name)) => Some(Arc::new(
            rag_embed_ollama::OllamaEmbedder::connect(rag_embed_ollama::OllamaConfig::new(name).with_url(&url)).await?,
        )),
        None => None,
    };
    println!("embedding throughput, {} ({runs} runs each, medians; texts/s / tokens/s)", model.display());
    if fast.is_none() {
        println!("this CPU has no AVX-512 BF16: only the f32 path runs");
    }
    println!(
        "{:>6} {:>6} {:>20} {:>20} {:>20} {:>9} {:>9} {:>11}",
        "tokens", "texts", "in-process f32", "in-process bf16", "Ollama API", "bf16/f32", "bf16/API", "least cos"
    );
    for &tokens in lengths {
        let texts = (8192 / tokens.max(1)).clamp(32, 256);
        let cell = |rate: f64| format!("{rate:>8.1} / {:>9.0}", rate * tokens as f64);
        let dash = || "-".to_string();
        let f32_rate = measure(reference.as_ref(), tokens, texts, runs).await?;
        let fast_rate = match &fast {
            Some(fast) => Some(measure(fast.as_ref(), tokens, texts, runs).await?),
            None => None,
        };
        let server = match &remote {
            Some(remote) => Some(measure(remote.as_ref(), tokens, texts, runs).await?),
            None => None,
        };
        let least = match &fast {
            Some(fast) => format!("{:.6}", least_cosine(reference.as_ref(), fast.as_ref(), tokens, texts).await?),
            None => dash(),
        };
        let best = fast_rate.unwrap_or(f32_rate);
        println!(
            "{tokens:>6} {texts:>6} {:>20} {:>20} {:>20} {:>9} {:>9} {least:>11}",
            cell(f32_rate),
            fast_rate.map_or_else(dash, cell),
            server.map_or_else(dash, cell),
            fast_rate.map_or_else(dash, |r| format!("{:.2}x", r / f32_rate)),
            server.map_or_else(dash, |s| format!("{:.1}x", best / s)),
        );
    }
    Ok(())
}
