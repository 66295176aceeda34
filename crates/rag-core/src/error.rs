//! The error type shared by the traits and the pipeline.

use std::path::PathBuf;

/// A boxed error from a lower layer (HTTP client, SQLite, AWS SDK, ...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used across rag-core and the crates that implement its traits.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while indexing or querying.
///
/// Variants are the cases a caller can act on; the message of each says what
/// happened and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A store name breaks the naming rules (see [`crate::types::validate_store_name`]).
    #[error("invalid store name {name:?}: {reason}")]
    InvalidStoreName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// The named store does not exist on this backend.
    #[error("store {store:?} not found on the {backend} backend")]
    StoreNotFound {
        /// Store name.
        store: String,
        /// Backend name (`local`, `s3vectors`, ...).
        backend: String,
    },

    /// A store of that name already exists.
    #[error("store {store:?} already exists on the {backend} backend")]
    StoreExists {
        /// Store name.
        store: String,
        /// Backend name.
        backend: String,
    },

    /// The store was built with another embedding model or dimension.
    #[error(
        "store {store:?} was built with model {stored_model:?} ({stored_dimension} dimensions), \
         but the embedder is {model:?} ({dimension} dimensions); vectors of different models \
         cannot be mixed"
    )]
    ModelMismatch {
        /// Store name.
        store: String,
        /// Model the store was built with.
        stored_model: String,
        /// Dimension the store was built with.
        stored_dimension: usize,
        /// Model of the embedder in use.
        model: String,
        /// Dimension of the embedder in use.
        dimension: usize,
    },

    /// A vector has a different length than expected.
    #[error("{context}: expected a vector of {expected} dimensions, got {actual}")]
    DimensionMismatch {
        /// What produced or received the vector.
        context: String,
        /// Expected length.
        expected: usize,
        /// Actual length.
        actual: usize,
    },

    /// The embedding service could not be reached.
    #[error("cannot reach the embedding service at {endpoint}: {reason}. {hint}")]
    EmbedderUnreachable {
        /// URL or name of the service.
        endpoint: String,
        /// What failed (connection refused, timeout, ...).
        reason: String,
        /// What to do about it.
        hint: String,
    },

    /// The embedding model is not available on the service.
    #[error("embedding model {model:?} is not available: {hint}")]
    ModelMissing {
        /// Model name.
        model: String,
        /// What to do about it (for Ollama: `ollama pull MODEL`).
        hint: String,
    },

    /// The service kept refusing with "slow down" after all retries.
    #[error(
        "{service} is throttling requests and still refused after {attempts} attempts; try again later or lower the concurrency"
    )]
    Throttled {
        /// Service name.
        service: String,
        /// How many attempts were made.
        attempts: u32,
    },

    /// An input was rejected before or by the service.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A search was asked for with an empty (or all-blank) query.
    #[error("the query is empty")]
    EmptyQuery,

    /// A metadata filter is not JSON or breaks the filter language (see
    /// [`Filter`](crate::filter::Filter)).
    #[error("invalid filter: {0}")]
    InvalidFilter(String),

    /// What was asked for is not in the store: a chunk key, a file, or a
    /// line range past a file's end.
    #[error("{what} in store {store:?}")]
    NotInStore {
        /// Store name.
        store: String,
        /// What is missing, in words (`no chunk with key "a.md#9"`).
        what: String,
    },

    /// Lexical-only search on a store that has no full-text index.
    #[error("store {store:?} ({backend}) has no full-text index for lexical search: {hint}")]
    NoFullTextIndex {
        /// Store name.
        store: String,
        /// Backend name.
        backend: String,
        /// What to do about it, from the backend
        /// ([`VectorBackend::full_text_hint`](crate::backend::VectorBackend::full_text_hint)).
        hint: String,
    },

    /// A service refused the credentials (a wrong or expired API key, a
    /// role without the permission, a model not enabled for the account).
    #[error("{service} refused access: {reason}. {hint}")]
    AccessDenied {
        /// The service and where it was reached.
        service: String,
        /// What it said.
        reason: String,
        /// What to do about it.
        hint: String,
    },

    /// A text is longer than the embedding model's context window.
    #[error("text of {chars} characters exceeds the context window of model {model:?}")]
    ContextLength {
        /// Model name.
        model: String,
        /// Length of the text that was refused.
        chars: usize,
    },

    /// A run would delete the chunks of most of a store's files; refused
    /// before anything changed (see `IndexOptions::allow_mass_removal`).
    #[error(
        "this run would delete the chunks of {removing} of the {stored} files stored in {store:?} \
         (they were not found); nothing was changed"
    )]
    MassRemoval {
        /// Store name.
        store: String,
        /// Files whose chunks would be deleted.
        removing: usize,
        /// Files the store holds.
        stored: usize,
    },

    /// Another process is writing to the store.
    #[error("store {store:?} is locked by another writer")]
    StoreBusy {
        /// Store name.
        store: String,
    },

    /// The embedder failed for another reason.
    #[error("embedding failed: {message}")]
    Embedder {
        /// What failed.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },

    /// The vector backend failed for another reason.
    #[error("{backend} backend: {message}")]
    Backend {
        /// Backend name.
        backend: String,
        /// What failed.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The innermost cause of `err`, which for a failed connection is the
    /// useful part ("Connection refused") under layers of "error sending
    /// request".
    ///
    /// ```
    /// let io = std::io::Error::other("Connection refused");
    /// assert_eq!(rag_core::Error::root_cause(&io), "Connection refused");
    /// ```
    pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
        let mut cause = err;
        while let Some(next) = cause.source() {
            cause = next;
        }
        cause.to_string()
    }

    /// An [`Error::ContextLength`] from a call that embedded `docs` names
    /// the longest of them (what the indexer splits); other errors pass.
    pub fn with_longest_text(self, docs: &[crate::embed::DocText]) -> Self {
        match self {
            Error::ContextLength { model, .. } => {
                Error::ContextLength { model, chars: docs.iter().map(|d| d.text.chars().count()).max().unwrap_or(0) }
            }
            other => other,
        }
    }

    /// Builds an [`Error::Backend`] from a message and an underlying error.
    pub fn backend(backend: impl Into<String>, message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend { backend: backend.into(), message: message.into(), source: Some(source.into()) }
    }

    /// Whether the whole run should stop: the embedder or backend is unusable,
    /// so every further file would fail the same way.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::EmbedderUnreachable { .. }
                | Error::AccessDenied { .. }
                | Error::ModelMissing { .. }
                | Error::ModelMismatch { .. }
                | Error::DimensionMismatch { .. }
                | Error::StoreNotFound { .. }
                | Error::StoreBusy { .. }
                | Error::Throttled { .. }
                | Error::Backend { .. }
        )
    }
}
