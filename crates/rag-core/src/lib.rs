//! Types, traits and the pipeline of vector-rag: index a person's files into a
//! vector store and answer questions with the most relevant chunks.
//!
//! The pipeline is generic over four traits, each with its own crate of
//! implementations:
//!
//! - [`Embedder`] turns text into vectors (`rag-embed-ollama` for Ollama);
//! - [`VectorBackend`] keeps named stores of vectors (`rag-backend-local` for
//!   the embedded default store, `rag-backend-s3vectors` for Amazon S3
//!   Vectors, [`MemoryBackend`] in memory);
//! - [`Source`] lists, reads and decodes the items to index (`rag-ingest`'s
//!   `FileSource` for files on disk, [`MemorySource`] for documents in memory);
//! - [`Chunker`] splits text into chunks with exact line ranges
//!   (`rag-ingest`'s `TextChunker`).
//!
//! [`Indexer`] embeds and stores a source's items incrementally (unchanged
//! items are not re-embedded, stale chunks are deleted), and [`Querier`] (or
//! a [`Store`] handle) answers questions. This crate has no file-format
//! parsers; implementors of the traits need only it (it re-exports
//! [`macro@async_trait`]).
//!
//! # Where things are
//!
//! [`prelude`] is the common path: `use rag_core::prelude::*` and the
//! example below runs. The rest is in modules named for their job:
//!
//! | module | what it holds |
//! |---|---|
//! | [`index`] | [`Indexer`], its options, report and progress observer |
//! | [`search`] | [`Querier`], search options and modes, hits, several stores at once, fusion |
//! | [`store`] | the [`Store`] handle, chunks, hits, settings, store names, reading chunks back |
//! | [`source`] | the [`Source`] trait, documents and their sections, [`MemorySource`] |
//! | [`embed`] | the [`Embedder`] trait and model prompt formats |
//! | [`chunk`] | the [`Chunker`] trait, line numbers, chunk budgets |
//! | [`filter`] | metadata filters, checked once and evaluated alike on every backend |
//! | [`lexical`] | terms and BM25 |
//! | [`backend`] | for backend authors: the [`VectorBackend`] trait, records, write batches, helpers, [`MemoryBackend`] |
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use rag_core::prelude::*;
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
//! // A toy chunker: one chunk per paragraph. `rag-ingest` has the real one.
//! struct Paragraphs;
//! impl Chunker for Paragraphs {
//!     fn chunk(&self, text: &str, _path: &str, _language: &str) -> Vec<TextChunk> {
//!         let lines = LineIndex::new(text);
//!         let mut start = 0;
//!         text.split_inclusive("\n\n").map(|part| {
//!             let (byte_start, byte_end) = (start, start + part.len());
//!             start = byte_end;
//!             TextChunk { text: part.trim().into(), byte_start, byte_end,
//!                 line_start: lines.line_of(byte_start), line_end: lines.line_of(byte_end - 1),
//!                 metadata: Metadata::new() }
//!         }).collect()
//!     }
//!     fn settings(&self) -> String { "paragraphs".into() }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<()> {
//! let mut notes = MemorySource::new();
//! notes.insert("zoo.md", Document::new("zizz zazz zozz", "markdown"));
//! notes.insert("sea.md", Document::new("eerie eel", "markdown"));
//!
//! let embedder: Arc<dyn Embedder> = Arc::new(Letters);
//! let backend: Arc<dyn VectorBackend> = Arc::new(MemoryBackend::new());
//! let indexer = Indexer::new(embedder.clone(), backend.clone(), Arc::new(Paragraphs));
//! let report = indexer.index("notes", Arc::new(notes)).await?;
//! assert_eq!(report.new, ["sea.md", "zoo.md"]);
//!
//! let hits = Querier::new(embedder, backend).query("notes", "zz", 1).await?;
//! assert_eq!(hits[0].chunk.source_path, "zoo.md");
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub mod chunk;
pub mod embed;
mod error;
pub mod filter;
mod get;
pub mod index;
pub mod lexical;
mod memory;
mod model_spec;
pub mod prelude;
mod private_files;
mod query;
pub mod search;
pub mod source;
pub mod store;
mod types;

pub use async_trait::async_trait;
pub use error::{Error, Result};

#[cfg(doc)]
use prelude::*;

/// mockall mocks of the traits, for tests (feature `mock`).
#[cfg(any(test, feature = "mock"))]
pub mod mock {
    pub use crate::backend::MockVectorBackend;
    pub use crate::chunk::MockChunker;
    pub use crate::embed::MockEmbedder;
}
