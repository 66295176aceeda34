//! Files into documents for vector-rag: discovery, format detection and
//! decoding, document converters, and the default chunker.
//!
//! - [`discover`] walks folders and globs the way `rag index` does
//!   (`.gitignore` honoured, dependency and build folders skipped);
//! - [`FileSource`] offers what it found to [`rag_core::index::Indexer`] as a
//!   [`rag_core::source::Source`], decoding text in any common encoding, notebooks,
//!   HTML, CSV, and documents (PDF, Office, OpenDocument, EPUB, spreadsheets)
//!   through a [`DocumentConverter`];
//! - [`TextChunker`] splits markdown by section and source code by syntax
//!   (tree-sitter, feature `code`).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use rag_core::prelude::*;
//! use rag_ingest::{DiscoverOptions, FileSource, TextChunker, discover};
//! # struct Letters;
//! # #[async_trait]
//! # impl Embedder for Letters {
//! #     fn model(&self) -> &str { "letters" }
//! #     fn dimension(&self) -> usize { 2 }
//! #     async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
//! #         Ok(docs.iter().map(|d| vec![d.text.len() as f32, 1.0]).collect())
//! #     }
//! #     async fn embed_query(&self, q: &str) -> Result<Vec<f32>> { Ok(vec![q.len() as f32, 1.0]) }
//! # }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<()> {
//! let folder = tempfile::tempdir().unwrap();
//! std::fs::write(folder.path().join("tea.md"), "# Tea\n\nGreen tea, brewed cool.").unwrap();
//!
//! let found = discover(&[".".into()], &DiscoverOptions::new(folder.path()))?;
//! let indexer = Indexer::new(Arc::new(Letters), Arc::new(MemoryBackend::new()), Arc::new(TextChunker::default()));
//! let report = indexer.index("notes", Arc::new(FileSource::new(found))).await?;
//! assert_eq!(report.new, ["tea.md"]);
//! # Ok(())
//! # }
//! ```

mod chunk;
#[cfg(feature = "code")]
mod code;
mod discover;
mod documents;
mod extract;
mod files;
mod html;
mod markdown;
mod secrets;
mod yaml;

pub use chunk::TextChunker;
pub use discover::{
    DiscoverOptions, Discovery, SKIPPED_DIRS, Scope, SourceFile, Unseen, UnseenFolder, discover, stored_name,
    watch_roots,
};
pub use documents::{DOCUMENT_EXTENSIONS, MAX_UNCOMPRESSED};
pub use extract::{
    BINARY_EXTENSIONS, ConvertError, DocumentConverter, ExtractError, InProcess, MAX_IN_PROCESS_HTML_BYTES,
    convert_document, extract, extract_with, language_for_path, looks_binary, walkable,
};
pub use files::FileSource;
pub use html::MAX_HTML_DEPTH;
pub use markdown::{
    FrontMatter, Heading, MAX_FRONT_MATTER_BYTES, front_matter, front_matter_tags, heading_path, heading_paths,
    headings, inline_tags, wikilinks,
};
pub use secrets::{SecretExceptions, secret_content_rule, secret_file_rule};
pub use yaml::{MAX_YAML_DEPTH, MAX_YAML_NODES, YamlError, yaml_to_json};
