//! For backend authors: the [`VectorBackend`] trait (where vectors and
//! their chunks live), the records and batches it is handed, and helpers
//! every backend needs (exact scores, file states, filterable metadata).
//! [`MemoryBackend`] is the reference implementation.

pub use crate::error::BoxError;
pub use crate::filter::{FILE_KEYS, FILTERABLE_KEYS, file_filter_metadata, filter_metadata};
pub use crate::memory::{ChunkStamp, MemoryBackend, file_state, score};
pub use crate::private_files::{create_private_dir, private_file, replace_private_file};
pub use crate::search::{LexicalHit, LexicalRequest};
pub use crate::types::{FileState, MAX_KEY_LEN, QueryRequest, UnreadableFile, VectorRecord, WriteBatch, chunk_key};
pub use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::types::{Chunk, Hit, StoreConfig, StoreInfo};

/// The right to write a store, from [`VectorBackend::lock_for_writing`]
/// until it is released or dropped: then the next writer may come in. No
/// begin/end pair to keep balanced, as with tantivy's `IndexWriter`.
///
/// A lock held on a remote service (a lease) is given back by
/// [`release`](Self::release); dropped instead, it lapses when its lease
/// expires.
#[must_use = "the store is unlocked as soon as this is dropped"]
pub struct WriteLock {
    held: Held,
}

enum Held {
    Nothing,
    UntilDropped(#[allow(dead_code)] Box<dyn Send + Sync>),
    UntilReleased(Box<dyn ReleaseLock>),
}

/// A lock a backend gives back with a call (a lease on a remote service),
/// for [`WriteLock::releasing`].
#[async_trait]
pub trait ReleaseLock: Send + Sync {
    /// Gives the lock back; failures are the backend's to report (a lease
    /// that cannot be given back lapses on its own).
    async fn release(self: Box<Self>);
}

impl WriteLock {
    /// The lock of a backend that lets every writer in: holds nothing.
    pub fn shared() -> Self {
        Self { held: Held::Nothing }
    }

    /// A lock held as long as `guard` lives: the backend releases the store
    /// when the guard is dropped.
    pub fn holding(guard: impl Send + Sync + 'static) -> Self {
        Self { held: Held::UntilDropped(Box::new(guard)) }
    }

    /// A lock given back by [`release`](Self::release) through `lock`.
    pub fn releasing(lock: impl ReleaseLock + 'static) -> Self {
        Self { held: Held::UntilReleased(Box::new(lock)) }
    }

    /// Gives the lock back now (and waits until it is).
    pub async fn release(self) {
        if let Held::UntilReleased(lock) = self.held {
            lock.release().await;
        }
    }
}

impl std::fmt::Debug for WriteLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteLock").field("exclusive", &!matches!(self.held, Held::Nothing)).finish()
    }
}

/// A place that keeps named stores of vectors with their chunks.
///
/// Every backend scores hits on the same scale (see
/// [`Metric::score_from_distance`](crate::Metric::score_from_distance)) and
/// follows the same store naming rules, so a store can move between them.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait VectorBackend: Send + Sync {
    /// Short backend name for messages and output (`local`, `s3vectors`).
    fn name(&self) -> &'static str;

    /// Creates a store; fails with [`Error::StoreExists`]
    /// if the name is taken.
    async fn create_store(&self, config: &StoreConfig) -> Result<()>;

    /// Deletes a store and everything in it.
    async fn delete_store(&self, store: &str) -> Result<()>;

    /// Names of all stores, sorted.
    async fn list_stores(&self) -> Result<Vec<String>>;

    /// Whether a store exists.
    async fn store_exists(&self, store: &str) -> Result<bool>;

    /// The settings a store was created with.
    async fn store_config(&self, store: &str) -> Result<StoreConfig>;

    /// Replaces the mutable settings of a store (its chunking signature).
    async fn update_store_config(&self, config: &StoreConfig) -> Result<()>;

    /// Counts and facts for `rag store info`.
    async fn store_info(&self, store: &str) -> Result<StoreInfo>;

    /// Takes the store's writer lock for an indexing run: backends that let
    /// one writer in at a time fail with [`Error::StoreBusy`] when another
    /// holds it. The lock lasts until the returned [`WriteLock`] is dropped,
    /// so a long-running program does not keep other writers out between
    /// runs. The default lets every writer in.
    async fn lock_for_writing(&self, _store: &str) -> Result<WriteLock> {
        Ok(WriteLock::shared())
    }

    /// How many chunks the indexer should hand to one [`write`](Self::write):
    /// small for a local transaction, large where the backend spreads a write
    /// over parallel requests.
    fn write_batch_hint(&self) -> usize {
        256
    }

    /// For each source file with chunks in the store: its content hash and keys.
    async fn file_states(&self, store: &str) -> Result<Vec<FileState>>;

    /// Applies upserts and deletes; atomically where the backend can.
    async fn write(&self, store: &str, batch: WriteBatch) -> Result<()>;

    /// Files whose current content could not be read, as recorded by
    /// [`remember_unreadable`](Self::remember_unreadable); the indexer does not
    /// read them again until they change. The default remembers nothing, so
    /// such files are read on every run.
    async fn unreadable_files(&self, _store: &str) -> Result<Vec<UnreadableFile>> {
        Ok(Vec::new())
    }

    /// Records `unreadable` files (replacing earlier records of their paths)
    /// and forgets the records of the `forget` paths. Called by the indexer
    /// at the end of a run, while it holds the [`WriteLock`].
    async fn remember_unreadable(
        &self,
        _store: &str,
        _unreadable: Vec<UnreadableFile>,
        _forget: Vec<String>,
    ) -> Result<()> {
        Ok(())
    }

    /// Inserts or overwrites records by key.
    async fn put(&self, store: &str, records: Vec<VectorRecord>) -> Result<()> {
        self.write(store, WriteBatch { upserts: records, deletes: Vec::new() }).await
    }

    /// Deletes records by key; unknown keys are ignored.
    async fn delete(&self, store: &str, keys: Vec<String>) -> Result<()> {
        self.write(store, WriteBatch { upserts: Vec::new(), deletes: keys }).await
    }

    /// The `top_k` nearest chunks to a vector, best first.
    async fn query(&self, store: &str, request: &QueryRequest) -> Result<Vec<Hit>>;

    /// The `top_k` best chunks for a full-text (BM25) search, best first,
    /// among those passing the request's filter; each hit scored against
    /// the request's vector when it has one.
    ///
    /// `Ok(None)` says the store has no full-text index (the default): the
    /// [`Querier`](crate::Querier) then ranks vector candidates lexically
    /// itself for hybrid search, and refuses lexical-only search.
    async fn lexical_query(&self, _store: &str, _request: &LexicalRequest) -> Result<Option<Vec<LexicalHit>>> {
        Ok(None)
    }

    /// Why this backend cannot store `chunk` at all: a limit of the service
    /// that no shortening meets (S3 Vectors: a path too long for its
    /// filterable metadata). The indexer asks before embedding a file, so
    /// such a file fails alone, named, instead of failing a whole write.
    /// `None` (the default): it can.
    fn refuses(&self, _chunk: &Chunk) -> Option<String> {
        None
    }

    /// The exact similarity to `vector` of each chunk under `keys`, on the
    /// store's scale ([`Hit::score`]), in the order asked; `None` for a key
    /// the store does not hold. A hybrid search runs its full-text arm
    /// while the query is embedded and asks this for the hits the vector
    /// arm did not score.
    ///
    /// `Ok(None)`, the default, says the backend cannot: the search then
    /// runs the full-text arm again with the vector.
    async fn exact_scores(&self, _store: &str, _keys: &[String], _vector: &[f32]) -> Result<Option<Vec<Option<f32>>>> {
        Ok(None)
    }

    /// What a user can do when [`lexical_query`](Self::lexical_query)
    /// answers `Ok(None)`: part of the message of
    /// [`Error::NoFullTextIndex`].
    fn full_text_hint(&self) -> &'static str {
        "this backend has no text search; use vector or hybrid mode (hybrid re-ranks vector candidates lexically)"
    }

    /// The chunks stored under `keys`, in the order asked; keys the store
    /// does not hold are left out. What `rag get` and the MCP `get` tool
    /// read: a hit's full text and its neighbours (keys are
    /// [`chunk_key`]`(path, index)`).
    ///
    /// The default says the backend cannot.
    async fn get_chunks(&self, _store: &str, _keys: &[String]) -> Result<Vec<Chunk>> {
        Err(Error::Backend {
            backend: self.name().into(),
            message: "this backend cannot fetch chunks by key".into(),
            source: None,
        })
    }
}
