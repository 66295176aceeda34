//! Index a folder and ask it a question through the library, as `rag` does.
//!
//! Needs Ollama with the model pulled (`ollama pull embeddinggemma`):
//!
//! ```sh
//! cargo run -p rag-examples --example quickstart -- ./docs "how do I install it?"
//! ```

use std::sync::Arc;

use rag_backend_local::LocalBackend;
use rag_core::prelude::*;
use rag_embed_ollama::{OllamaConfig, OllamaEmbedder};
use rag_ingest::{DiscoverOptions, FileSource, TextChunker, discover};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let folder = args.next().unwrap_or_else(|| ".".into());
    let question = args.next().unwrap_or_else(|| "what is this project about?".into());

    // The stores live in a folder of our choosing; `rag` uses the platform data folder.
    let data_dir = std::env::temp_dir().join("rag-quickstart");
    let backend = Arc::new(LocalBackend::new(&data_dir));
    let embedder = Arc::new(OllamaEmbedder::connect(OllamaConfig::new("embeddinggemma")).await?);

    let files = discover(std::slice::from_ref(&folder), &DiscoverOptions::new("."))?;
    let indexer = Indexer::new(embedder.clone(), backend.clone(), Arc::new(TextChunker::default()));
    let report = indexer.index("quickstart", Arc::new(FileSource::new(files))).await?;
    println!(
        "indexed {folder}: {} new, {} changed, {} unchanged, {} chunks embedded",
        report.new.len(),
        report.changed.len(),
        report.unchanged,
        report.chunks_embedded
    );

    for hit in Querier::new(embedder, backend).query("quickstart", &question, 3).await? {
        println!("{:.3} {}:{}-{}", hit.score, hit.chunk.source_path, hit.chunk.line_start, hit.chunk.line_end);
    }
    Ok(())
}
