//! The common path, deliberately small: `use rag_core::prelude::*;` gives
//! what a program needs to index a source and search it. Backend authors
//! and programs that need more reach the modules by name.

pub use crate::backend::{MemoryBackend, VectorBackend};
pub use crate::chunk::{Chunker, LineIndex, TextChunk};
pub use crate::embed::{DocText, Embedder};
pub use crate::error::{Error, Result};
pub use crate::filter::Filter;
pub use crate::index::{IndexOptions, IndexReport, Indexer, NoProgress};
pub use crate::search::{Querier, SearchHit, SearchMode, SearchOptions, SearchResults};
pub use crate::source::{Document, MemorySource, Source};
pub use crate::store::{Chunk, Hit, Metadata, Metric, Store, StoreConfig};
pub use async_trait::async_trait;
