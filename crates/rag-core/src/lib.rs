//! Types, traits and the pipeline of vector-rag: index a person's files into a
//! vector store and answer questions with the most relevant chunks.
//!
//! The pipeline is generic over three traits, each with its own crate of
//! implementations:
//!
//! - [`Embedder`] turns text into vectors (`rag-embed-ollama` for Ollama);
//! - [`VectorBackend`] keeps named stores of vectors (`rag-backend-local` for
//!   the embedded default store, [`MemoryBackend`] in memory);
//! - [`Chunker`] splits text into chunks with exact line ranges
//!   ([`TextChunker`] by default).
//!
//! [`discover`] finds files, [`Indexer`] embeds and stores them incrementally
//! (unchanged files are not re-embedded, stale chunks are deleted), and
//! [`Querier`] answers questions.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use rag_core::*;
//!
//! // A toy embedder: counts of a few letters. Real programs use an embedding model.
//! struct Letters;
//! #[async_trait]
//! impl Embedder for Letters {
//!     fn model(&self) -> &str { "letters" }
//!     fn dimension(&self) -> usize { 4 }
//!     async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
//!         Ok(docs.iter().map(|d| letters(&d.text)).collect())
//!     }
//!     async fn embed_query(&self, q: &str) -> Result<Vec<f32>> { Ok(letters(q)) }
//! }
//! fn letters(text: &str) -> Vec<f32> {
//!     "aeiz".chars().map(|l| text.chars().filter(|c| *c == l).count() as f32 + 0.1).collect()
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<()> {
//! let folder = tempfile::tempdir().unwrap();
//! std::fs::write(folder.path().join("zoo.md"), "zizz zazz zozz").unwrap();
//! std::fs::write(folder.path().join("sea.md"), "eerie eel").unwrap();
//!
//! let embedder: Arc<dyn Embedder> = Arc::new(Letters);
//! let backend: Arc<dyn VectorBackend> = Arc::new(MemoryBackend::new());
//! let indexer = Indexer::new(embedder.clone(), backend.clone(), Arc::new(TextChunker::default()));
//!
//! let files = discover(&[".".into()], &DiscoverOptions::new(folder.path()))?;
//! let report = indexer.index("notes", &files, &IndexOptions::default(), &NoProgress).await?;
//! assert_eq!(report.new, ["sea.md", "zoo.md"]);
//!
//! let hits = Querier::new(embedder, backend).query("notes", "zz", 1).await?;
//! assert_eq!(hits[0].chunk.source_path, "zoo.md");
//! # Ok(())
//! # }
//! ```

mod backend;
mod chunk;
#[cfg(feature = "code")]
mod code;
mod discover;
mod documents;
mod embed;
mod error;
mod extract;
mod filter;
mod index;
pub mod lexical;
mod markdown;
mod memory;
mod query;
mod search;
mod types;

pub use backend::VectorBackend;
pub use chunk::{
    Chunker, LineIndex, MIN_CHARS_PER_TOKEN, PROMPT_RESERVE_TOKENS, TextChunk, TextChunker, chunk_chars_for_window,
};
pub use discover::{DiscoverOptions, Discovery, SKIPPED_DIRS, Scope, SourceFile, discover};
pub use documents::{DOCUMENT_EXTENSIONS, LOCATION_KEYS, MAX_UNCOMPRESSED};
pub use embed::{Embedder, PromptFormat};
pub use error::{BoxError, Error, Result};
pub use extract::{
    BINARY_EXTENSIONS, DocumentConverter, ExtractError, Extracted, InProcess, convert_document, extract, extract_with,
    language_for_path, looks_binary, walkable,
};
pub use filter::{FILE_KEYS, FILTERABLE_KEYS, Filter, file_filter_metadata, filter_metadata};
pub use index::{FileProblem, IndexObserver, IndexOptions, IndexReport, Indexer, NoProgress, check_model};
pub use markdown::{
    Heading, front_matter, front_matter_tags, heading_path, heading_paths, headings, inline_tags, wikilinks,
};
pub use memory::{ChunkStamp, MemoryBackend, file_state, score};
pub use query::Querier;
pub use search::{
    LexicalHit, LexicalRequest, LexicalSource, MAX_CANDIDATES, RRF_K, SearchHit, SearchMode, SearchOptions,
    SearchResults, fuse, limit_per_file, rerank_lexically,
};
pub use types::{
    Chunk, DocText, FileState, Hit, MAX_KEY_LEN, Metadata, Metric, QueryRequest, SimilarityLevel, StoreConfig,
    StoreInfo, UnreadableFile, VectorRecord, WriteBatch, chunk_key, format_rfc3339, now_unix, validate_store_name,
};

/// mockall mocks of the traits, for tests (feature `mock`).
#[cfg(any(test, feature = "mock"))]
pub mod mock {
    pub use crate::backend::MockVectorBackend;
    pub use crate::chunk::MockChunker;
    pub use crate::embed::MockEmbedder;
}
