//! Stores: the [`Store`] handle a program opens once and asks (and its
//! [`StoreWriter`], which holds the write lock), and what a store holds
//! (chunks, hits, settings) and how it is read back.

use std::sync::Arc;

pub use crate::get::{ChunkRef, Fetched, MAX_CONTEXT, MAX_FILE_CHUNKS, fetch};
pub use crate::types::{
    Chunk, Hit, MAX_KEY_LEN, Metadata, Metric, SimilarityLevel, StoreConfig, StoreInfo, check_model, chunk_key,
    format_rfc3339, now_unix, validate_store_name,
};

use crate::backend::{VectorBackend, WriteLock};
use crate::embed::Embedder;
use crate::error::Result;
use crate::query::Querier;
use crate::search::{SearchOptions, SearchResults};
use crate::types::{FileState, VectorRecord, WriteBatch};

/// A named store opened on a backend: its name checked once and its
/// settings read once, then asked for searches, chunks and state.
///
/// Cloning is cheap (the backend is shared).
///
/// ```
/// use std::sync::Arc;
/// use rag_core::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> rag_core::Result<()> {
/// let backend: Arc<dyn VectorBackend> = Arc::new(MemoryBackend::new());
/// let missing = Store::open(backend.clone(), "notes").await;
/// assert!(matches!(missing, Err(Error::StoreNotFound { .. })));
/// let config = StoreConfig::new("notes", "toy", 2);
/// backend.create_store(&config).await?;
/// let store = Store::open(backend, "notes").await?;
/// assert_eq!(store.config().model, "toy");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Store {
    name: String,
    backend: Arc<dyn VectorBackend>,
    config: StoreConfig,
}

impl Store {
    /// Opens the store `name` of `backend`: fails with
    /// [`Error::InvalidStoreName`](crate::Error::InvalidStoreName) or
    /// [`Error::StoreNotFound`](crate::Error::StoreNotFound).
    pub async fn open(backend: Arc<dyn VectorBackend>, name: &str) -> Result<Self> {
        validate_store_name(name)?;
        let config = backend.store_config(name).await?;
        Ok(Self { name: name.to_string(), backend, config })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings the store was read with when opened.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The backend the store lives on.
    pub fn backend(&self) -> &Arc<dyn VectorBackend> {
        &self.backend
    }

    /// Searches the store (see [`Querier::search`]) with an embedder of its
    /// model; refuses another model with
    /// [`Error::ModelMismatch`](crate::Error::ModelMismatch).
    pub async fn search(
        &self,
        embedder: Arc<dyn Embedder>,
        text: &str,
        options: &SearchOptions,
    ) -> Result<SearchResults> {
        Querier::new(embedder, self.backend.clone()).search_store(&self.name, &self.config, text, options).await
    }

    /// What the store holds for `what`, with `context` neighbouring chunks
    /// on each side (see [`fetch`]).
    pub async fn get(&self, what: &ChunkRef, context: usize) -> Result<Fetched> {
        fetch(self.backend.as_ref(), &self.name, what, context).await
    }

    /// Counts and facts, as `rag store info` shows them.
    pub async fn info(&self) -> Result<StoreInfo> {
        self.backend.store_info(&self.name).await
    }

    /// For each source file with chunks in the store: its content hash and keys.
    pub async fn file_states(&self) -> Result<Vec<FileState>> {
        self.backend.file_states(&self.name).await
    }

    /// The store's writer: holds its write lock (refused with
    /// [`Error::StoreBusy`](crate::Error::StoreBusy) while another writer
    /// holds it, on backends that let one in at a time) until dropped.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rag_core::prelude::*;
    /// use rag_core::backend::VectorRecord;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> rag_core::Result<()> {
    /// let backend: Arc<dyn VectorBackend> = Arc::new(MemoryBackend::new());
    /// backend.create_store(&StoreConfig::new("notes", "toy", 2)).await?;
    /// let store = Store::open(backend, "notes").await?;
    /// let chunk = Chunk::new("a.md", 0, "hello").with_content_hash("h");
    /// let writer = store.writer().await?;
    /// writer.put(vec![VectorRecord { chunk, vector: vec![1.0, 0.0], indexed_at: 0 }]).await?;
    /// writer.finish().await; // the next writer may come in
    /// assert_eq!(store.file_states().await?[0].path, "a.md");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn writer(&self) -> Result<StoreWriter> {
        let lock = self.backend.lock_for_writing(&self.name).await?;
        Ok(StoreWriter { store: self.clone(), lock })
    }
}

/// Writes to one store while holding its write lock; [`finish`](Self::finish)
/// gives the lock back (dropping it does too, except a remote lease, which
/// then lapses on its own). Made by [`Store::writer`].
#[derive(Debug)]
pub struct StoreWriter {
    store: Store,
    lock: WriteLock,
}

impl StoreWriter {
    /// Ends the writing and gives the lock back.
    pub async fn finish(self) {
        self.lock.release().await;
    }

    /// The store written to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Applies upserts and deletes; atomically where the backend can.
    pub async fn write(&self, batch: WriteBatch) -> Result<()> {
        self.store.backend.write(&self.store.name, batch).await
    }

    /// Inserts or overwrites records by key.
    pub async fn put(&self, records: Vec<VectorRecord>) -> Result<()> {
        self.store.backend.put(&self.store.name, records).await
    }

    /// Deletes records by key; unknown keys are ignored.
    pub async fn delete(&self, keys: Vec<String>) -> Result<()> {
        self.store.backend.delete(&self.store.name, keys).await
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("name", &self.name).field("backend", &self.backend.name()).finish()
    }
}
