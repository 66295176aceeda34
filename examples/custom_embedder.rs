//! Plug your own embedding model into the pipeline: implement `Embedder` in a
//! few lines and hand it to `Indexer` and `Querier`.
//!
//! This one hashes character trigrams into a fixed-size vector: no model, no
//! network, good enough to find a note by its words.
//!
//! ```sh
//! cargo run -p rag-examples --example custom_embedder
//! ```

use std::sync::Arc;

use rag_backend_local::LocalBackend;
use rag_core::prelude::*;
use rag_ingest::{DiscoverOptions, FileSource, TextChunker};

/// Character-trigram hashing: similar spellings give similar vectors.
struct Trigrams;

#[async_trait]
impl Embedder for Trigrams {
    fn model(&self) -> &str {
        "trigrams-256"
    }

    fn dimension(&self) -> usize {
        256
    }

    async fn embed_documents(&self, docs: &[DocText]) -> rag_core::Result<Vec<Vec<f32>>> {
        Ok(docs.iter().map(|doc| trigrams(&doc.text)).collect())
    }

    async fn embed_query(&self, query: &str) -> rag_core::Result<Vec<f32>> {
        Ok(trigrams(query))
    }
}

fn trigrams(text: &str) -> Vec<f32> {
    let chars: Vec<char> = text.to_lowercase().chars().collect();
    let mut vector = vec![0.0; 256];
    vector[0] = 0.01; // never the zero vector, which has no direction
    for window in chars.windows(3) {
        let hash = window.iter().fold(2_166_136_261u32, |h, c| (h ^ *c as u32).wrapping_mul(16_777_619));
        vector[(hash % 256) as usize] += 1.0;
    }
    vector
}

/// Writes three notes into `folder`, indexes them into a local store under
/// `data_dir` and asks about gardening.
async fn run(folder: &std::path::Path, data_dir: &std::path::Path) -> rag_core::Result<Vec<Hit>> {
    std::fs::write(folder.join("garden.md"), "# Garden\n\nTomatoes need sun and daily watering.\n").ok();
    std::fs::write(folder.join("kitchen.md"), "# Kitchen\n\nBake bread at 220 degrees.\n").ok();
    std::fs::write(folder.join("car.md"), "# Car\n\nCheck the tyre pressure monthly.\n").ok();

    let embedder = Arc::new(Trigrams);
    let backend = Arc::new(LocalBackend::new(data_dir));
    let files = rag_ingest::discover(&[".".into()], &DiscoverOptions::new(folder))?;
    Indexer::new(embedder.clone(), backend.clone(), Arc::new(TextChunker::default()))
        .index("custom", Arc::new(FileSource::new(files)))
        .await?;
    Querier::new(embedder, backend).query("custom", "watering tomatoes", 2).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    for hit in run(folder.path(), data.path()).await? {
        println!("{:.3} {} ({})", hit.score, hit.chunk.source_path, hit.level().as_str());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[tokio::test]
    async fn the_custom_embedder_finds_the_garden_note() {
        let folder = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let hits = super::run(folder.path(), data.path()).await.unwrap();
        assert_eq!(hits[0].chunk.source_path, "garden.md");
        assert!(hits[0].score > hits[1].score);
    }
}
