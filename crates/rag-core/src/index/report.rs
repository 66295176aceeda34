//! What an index run reports ([`IndexReport`], [`FileProblem`]) and tells
//! an observer as it goes ([`IndexObserver`]).

use serde::Serialize;

/// A file that was not indexed, or was indexed with a caveat, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileProblem {
    /// Stored name of the file.
    pub path: String,
    /// What happened.
    pub reason: String,
    /// Which kind of problem, so a program can say what to do about it.
    pub kind: ProblemKind,
}

/// The kinds of [`FileProblem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// Not something to index (binary, empty); skipped, old chunks deleted.
    Skipped,
    /// Over the run's size limit ([`IndexOptions::max_file_size`](super::IndexOptions::max_file_size)); skipped.
    TooLarge,
    /// Would make more chunks than the run's limit
    /// ([`IndexOptions::max_file_chunks`](super::IndexOptions::max_file_chunks)); skipped.
    TooManyChunks,
    /// Its content cannot be decoded; the store remembers it until it changes.
    Unreadable,
    /// Remembered as unreadable and unchanged since, so not read again
    /// ([`IndexOptions::force`](super::IndexOptions::force) reads it anyway).
    NotReadAgain,
    /// It could not be read or embedded this time; the next run tries again.
    Failed,
    /// Indexed, with a caveat (lossy decoding).
    Note,
    /// Holds, or is named like it holds, credentials; skipped, old chunks deleted.
    Secret,
    /// Stored, not seen by this run, and kept: the source could not see
    /// where it lives ([`Source::keeps`](crate::source::Source::keeps)).
    Kept,
}

/// What an index run did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct IndexReport {
    /// Store name.
    pub store: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Files indexed for the first time.
    pub new: Vec<String>,
    /// Files re-indexed because their content (or the chunking) changed.
    pub changed: Vec<String>,
    /// Files left alone because they did not change.
    pub unchanged: usize,
    /// Files whose chunks were deleted because they are gone.
    pub removed: Vec<String>,
    /// Files skipped on purpose (binary, empty, too large).
    pub skipped: Vec<FileProblem>,
    /// Files that could not be indexed; their previous chunks, if any, are kept.
    pub failed: Vec<FileProblem>,
    /// Files indexed with a caveat (lossy decoding).
    pub notes: Vec<FileProblem>,
    /// Stored files this run could not see and kept rather than deleted
    /// (an unreadable or empty folder): the caller should say so and fail.
    pub kept: Vec<FileProblem>,
    /// Chunks embedded (or, in a dry run, that would be).
    pub chunks_embedded: usize,
    /// Chunks deleted (stale chunks of changed files and chunks of removed files).
    pub chunks_deleted: usize,
    /// Wall time of the run in milliseconds.
    pub elapsed_ms: u64,
    /// The store's chunking settings before this run, when the run
    /// re-chunked (or, planned, would re-chunk) every file for other ones.
    pub rechunked_from: Option<String>,
}

/// Receives progress events; every method has a no-op default.
pub trait IndexObserver: Send + Sync {
    /// The walk found `files` files to look at.
    fn planned(&self, _files: usize) {}
    /// One file is done with (indexed, unchanged, skipped or failed).
    fn file_done(&self, _path: &str) {}
    /// `count` more chunks were embedded.
    fn chunks_embedded(&self, _count: usize) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl IndexObserver for NoProgress {}
