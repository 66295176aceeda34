//! [`IndexOptions`]: the settings of an index run.

use crate::store::Metric;

/// Settings of one index run; start from [`IndexOptions::new`] (the
/// defaults) and change what you need.
///
/// ```
/// use rag_core::index::IndexOptions;
/// let options = IndexOptions::new().with_force(true).with_max_file_size(1 << 20);
/// assert!(options.force && options.prune);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IndexOptions {
    /// Re-embed every file, changed or not.
    pub force: bool,
    /// Delete the chunks of stored files that fall under the patterns but
    /// were not found (deleted or now excluded).
    pub prune: bool,
    /// Metric for a store created by this run.
    pub metric: Metric,
    /// How many chunks to collect before writing them to the backend;
    /// `None` takes the backend's [`write_batch_hint`](crate::backend::VectorBackend::write_batch_hint).
    pub write_batch_size: Option<usize>,
    /// Longest time finished files wait before they are written, which bounds
    /// the work an interrupted run loses.
    pub write_interval: std::time::Duration,
    /// Files larger than this many bytes are skipped with a reason.
    pub max_file_size: u64,
    /// Files that would make more chunks than this are skipped with a reason:
    /// a million-row table or a log of years is not worth an hour of
    /// embedding by accident. The default is [`MAX_FILE_CHUNKS`](crate::store::MAX_FILE_CHUNKS),
    /// the most `rag get` returns of one file.
    pub max_file_chunks: usize,
    /// Let a run delete the chunks of more than half of a store's files (and
    /// at least [`MASS_REMOVAL_MIN_FILES`](super::MASS_REMOVAL_MIN_FILES));
    /// without it such a run is refused with
    /// [`Error::MassRemoval`](crate::Error::MassRemoval) before it changes anything.
    pub allow_mass_removal: bool,
    /// Embed each chunk with its heading path in front (markdown sections,
    /// slides, sheets), so a short section keeps its context. The path is
    /// stored either way.
    pub embed_headings: bool,
    /// Chunk a store that exists as it records ([`Chunker::with_settings`](crate::chunk::Chunker::with_settings)),
    /// not with the indexer's chunker, where the chunker can: the settings
    /// belong to the store, and a run with other defaults does not re-chunk
    /// it. Off, the indexer's chunker is used and a store chunked otherwise
    /// is re-chunked. The CLI turns it on unless chunk flags are given.
    pub keep_store_chunking: bool,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            force: false,
            prune: true,
            metric: Metric::Cosine,
            write_batch_size: None,
            write_interval: std::time::Duration::from_secs(2),
            max_file_size: 50 * 1024 * 1024,
            max_file_chunks: crate::store::MAX_FILE_CHUNKS,
            allow_mass_removal: false,
            embed_headings: true,
            keep_store_chunking: false,
        }
    }
}

impl IndexOptions {
    /// The defaults: incremental, pruning, cosine, files up to 50 MiB and
    /// 10,000 chunks, headings embedded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Re-embed every file, changed or not.
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Delete the chunks of stored files the source covers but no longer lists.
    pub fn with_prune(mut self, prune: bool) -> Self {
        self.prune = prune;
        self
    }

    /// The metric of a store this run creates.
    pub fn with_metric(mut self, metric: Metric) -> Self {
        self.metric = metric;
        self
    }

    /// Chunks collected before a write; `None` asks the backend.
    pub fn with_write_batch_size(mut self, size: Option<usize>) -> Self {
        self.write_batch_size = size;
        self
    }

    /// Longest time finished files wait before they are written.
    pub fn with_write_interval(mut self, interval: std::time::Duration) -> Self {
        self.write_interval = interval;
        self
    }

    /// Files larger than this many bytes are skipped with a reason.
    pub fn with_max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// Files that would make more chunks than this are skipped with a reason.
    pub fn with_max_file_chunks(mut self, chunks: usize) -> Self {
        self.max_file_chunks = chunks;
        self
    }

    /// Let the run delete most of a store's files.
    pub fn with_mass_removal(mut self, allow: bool) -> Self {
        self.allow_mass_removal = allow;
        self
    }

    /// Embed each chunk with its heading path in front.
    pub fn with_embed_headings(mut self, embed_headings: bool) -> Self {
        self.embed_headings = embed_headings;
        self
    }

    /// Chunk an existing store as it records, where the chunker can.
    pub fn with_store_chunking(mut self, keep: bool) -> Self {
        self.keep_store_chunking = keep;
        self
    }
}
