//! Plain data: chunks, records, hits, store settings, similarity levels.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::embed::Embedder;
use crate::error::{Error, Result};

/// Free-form metadata attached to a chunk (tags, links, front matter, ...).
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// A piece of a source file, ready to be embedded and stored.
///
/// Start from [`Chunk::new`] and set what is known:
///
/// ```
/// use rag_core::store::Chunk;
/// let chunk = Chunk::new("notes/tea.md", 2, "Green tea, brewed cool.").with_lines(12, 14).with_total(5);
/// assert_eq!((chunk.key.as_str(), chunk.line_end, chunk.total_chunks), ("notes/tea.md#2", 14, 5));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Chunk {
    /// Stable key: derived from the source path and chunk index (see [`chunk_key`]).
    pub key: String,
    /// Source path relative to the index root, with `/` separators.
    pub source_path: String,
    /// Position of this chunk in its file, from 0.
    pub chunk_index: usize,
    /// Number of chunks the file was split into.
    pub total_chunks: usize,
    /// First line of the chunk in the file, 1-based.
    pub line_start: usize,
    /// Last line of the chunk in the file, 1-based, inclusive.
    pub line_end: usize,
    /// Byte offset of the chunk's start in the decoded text.
    pub byte_start: usize,
    /// Byte offset one past the chunk's end in the decoded text.
    pub byte_end: usize,
    /// The chunk's text.
    pub text: String,
    /// Content hash of the whole source file (hex BLAKE3 of its bytes).
    pub content_hash: String,
    /// Language or format, e.g. `rust`, `markdown`, `text`.
    pub language: String,
    /// Anything else a chunker or extractor wants to keep.
    #[serde(default)]
    pub metadata: Metadata,
}

impl Chunk {
    /// Chunk `chunk_index` of the file stored as `source_path`, keyed by
    /// [`chunk_key`]: one chunk of one, at line 1, its bytes those of `text`,
    /// with no content hash, language `text` and no metadata until set.
    pub fn new(source_path: impl Into<String>, chunk_index: usize, text: impl Into<String>) -> Self {
        let (source_path, text) = (source_path.into(), text.into());
        Self {
            key: chunk_key(&source_path, chunk_index),
            source_path,
            chunk_index,
            total_chunks: chunk_index + 1,
            line_start: 1,
            line_end: 1,
            byte_start: 0,
            byte_end: text.len(),
            text,
            content_hash: String::new(),
            language: "text".into(),
            metadata: Metadata::new(),
        }
    }

    /// With another key (a backend reading back what it stored).
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// With the number of chunks its file was split into.
    pub fn with_total(mut self, total_chunks: usize) -> Self {
        self.total_chunks = total_chunks;
        self
    }

    /// With its first and last line (1-based, inclusive).
    pub fn with_lines(mut self, start: usize, end: usize) -> Self {
        (self.line_start, self.line_end) = (start, end);
        self
    }

    /// With its byte range in the decoded text.
    pub fn with_bytes(mut self, start: usize, end: usize) -> Self {
        (self.byte_start, self.byte_end) = (start, end);
        self
    }

    /// With the content hash of its whole file.
    pub fn with_content_hash(mut self, hash: impl Into<String>) -> Self {
        self.content_hash = hash.into();
        self
    }

    /// With its language or format.
    pub fn with_language(mut self, language: impl Into<String>) -> Self {
        self.language = language.into();
        self
    }

    /// With its metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// The longest key S3 Vectors accepts; keys stay under it on every backend.
pub const MAX_KEY_LEN: usize = 1024;

/// Builds the stable key of a chunk from its source path and position.
///
/// Keys are `path#index`, so re-indexing a file overwrites its chunks in place
/// and two files with the same name in different folders never collide. Paths
/// too long for a key are replaced by their BLAKE3 hash.
///
/// ```
/// assert_eq!(rag_core::store::chunk_key("docs/README.md", 3), "docs/README.md#3");
/// ```
pub fn chunk_key(source_path: &str, chunk_index: usize) -> String {
    let key = format!("{source_path}#{chunk_index}");
    if key.len() <= MAX_KEY_LEN {
        key
    } else {
        format!("blake3:{}#{chunk_index}", blake3::hash(source_path.as_bytes()).to_hex())
    }
}

/// A text to embed as a document, with the title some models take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocText {
    /// Document title (the original tool used the file stem), if any.
    pub title: Option<String>,
    /// The text itself.
    pub text: String,
}

impl DocText {
    /// A document text with a title.
    pub fn new(title: Option<String>, text: impl Into<String>) -> Self {
        Self { title, text: text.into() }
    }
}

/// A chunk with its embedding, as written to a backend.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRecord {
    /// The chunk and its metadata.
    pub chunk: Chunk,
    /// The embedding.
    pub vector: Vec<f32>,
    /// When it was indexed, seconds since the Unix epoch.
    pub indexed_at: i64,
}

/// One write to a backend: records to upsert and keys to delete.
///
/// Backends that can (the local store) apply a batch atomically, so a file's
/// new chunks and the removal of its surplus old ones land together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    /// Records to insert or overwrite (by key).
    pub upserts: Vec<VectorRecord>,
    /// Keys to remove; unknown keys are ignored.
    pub deletes: Vec<String>,
}

impl WriteBatch {
    /// Whether the batch has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }
}

/// What a backend knows about one indexed source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// Source path relative to the index root.
    pub path: String,
    /// The file's content hash when all of its chunks are stored and agree on
    /// it; `None` when the file is only partly stored (an interrupted run), so
    /// the indexer re-does it.
    pub content_hash: Option<String>,
    /// Keys of the chunks currently stored for the file.
    pub keys: Vec<String>,
}

/// A file whose content could not be read (a damaged or encrypted document),
/// remembered by the store so that the indexer does not read it again until
/// it changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnreadableFile {
    /// Source path relative to the index root.
    pub path: String,
    /// The content hash the file had when it could not be read.
    pub content_hash: String,
    /// Why it could not be read.
    pub reason: String,
    /// The reader that failed (`rag-core 0.1.0`): a newer one tries again.
    pub reader: String,
}

/// A search request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct QueryRequest {
    /// The query embedding.
    pub vector: Vec<f32>,
    /// How many hits to return at most.
    pub top_k: usize,
    /// Only chunks whose metadata passes this filter.
    pub filter: Option<crate::filter::Filter>,
}

impl QueryRequest {
    /// A request for the `top_k` nearest chunks to `vector`.
    pub fn new(vector: Vec<f32>, top_k: usize) -> Self {
        Self { vector, top_k, filter: None }
    }

    /// The same request, restricted to chunks passing `filter`.
    pub fn with_filter(mut self, filter: Option<crate::filter::Filter>) -> Self {
        self.filter = filter;
        self
    }
}

/// A search result from a backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Score on the common scale (see [`Metric::score_from_distance`]).
    pub score: f32,
    /// The stored chunk.
    pub chunk: Chunk,
    /// When it was indexed, seconds since the Unix epoch.
    pub indexed_at: i64,
}

impl Hit {
    /// The similarity level of this hit's score.
    pub fn level(&self) -> SimilarityLevel {
        SimilarityLevel::from_score(self.score)
    }
}

/// Distance metric of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity (the default).
    #[default]
    Cosine,
    /// Euclidean (L2) distance.
    Euclidean,
}

impl Metric {
    /// The score every backend reports for a distance under this metric:
    /// cosine similarity (`1 - distance`) for cosine, `1 / (1 + distance)` for
    /// euclidean.
    ///
    /// ```
    /// use rag_core::store::Metric;
    /// assert_eq!(Metric::Cosine.score_from_distance(0.25), 0.75);
    /// assert_eq!(Metric::Euclidean.score_from_distance(1.0), 0.5);
    /// ```
    pub fn score_from_distance(self, distance: f32) -> f32 {
        match self {
            Metric::Cosine => 1.0 - distance,
            Metric::Euclidean => 1.0 / (1.0 + distance),
        }
    }

    /// The name used in settings and on S3 Vectors.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Euclidean => "euclidean",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cosine" => Ok(Metric::Cosine),
            "euclidean" => Ok(Metric::Euclidean),
            other => Err(Error::InvalidInput(format!("unknown metric {other:?}: use cosine or euclidean"))),
        }
    }
}

/// How alike a hit is to the query, from its cosine score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimilarityLevel {
    /// score >= 0.85
    Duplicate,
    /// score >= 0.60
    VerySimilar,
    /// score >= 0.30
    Related,
    /// score >= 0
    Unrelated,
    /// score < 0
    Contradiction,
}

impl SimilarityLevel {
    /// The level of a score.
    ///
    /// ```
    /// use rag_core::store::SimilarityLevel;
    /// assert_eq!(SimilarityLevel::from_score(0.9), SimilarityLevel::Duplicate);
    /// assert_eq!(SimilarityLevel::from_score(-0.1), SimilarityLevel::Contradiction);
    /// ```
    pub fn from_score(score: f32) -> Self {
        if score >= 0.85 {
            SimilarityLevel::Duplicate
        } else if score >= 0.60 {
            SimilarityLevel::VerySimilar
        } else if score >= 0.30 {
            SimilarityLevel::Related
        } else if score >= 0.0 {
            SimilarityLevel::Unrelated
        } else {
            SimilarityLevel::Contradiction
        }
    }

    /// Machine name, as in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            SimilarityLevel::Duplicate => "duplicate",
            SimilarityLevel::VerySimilar => "very_similar",
            SimilarityLevel::Related => "related",
            SimilarityLevel::Unrelated => "unrelated",
            SimilarityLevel::Contradiction => "contradiction",
        }
    }

    /// One-line description for people.
    pub fn description(self) -> &'static str {
        match self {
            SimilarityLevel::Duplicate => "Near-duplicate: almost the same meaning",
            SimilarityLevel::VerySimilar => "Very similar: strongly related content",
            SimilarityLevel::Related => "Related: shares topic or context",
            SimilarityLevel::Unrelated => "Unrelated: little in common",
            SimilarityLevel::Contradiction => "Opposite: points away from the query",
        }
    }
}

/// The settings a store is created with and keeps for its life.
///
/// ```
/// use rag_core::store::{Metric, StoreConfig};
/// let config = StoreConfig::new("notes", "embeddinggemma", 768).with_metric(Metric::Euclidean);
/// assert_eq!((config.dimension, config.metric), (768, Metric::Euclidean));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Store name (validated, see [`validate_store_name`]).
    pub name: String,
    /// Embedding model the vectors come from.
    pub model: String,
    /// Vector dimension.
    pub dimension: usize,
    /// Distance metric.
    pub metric: Metric,
    /// Chunking settings the stored chunks were made with; when they change,
    /// every file is re-chunked on the next run.
    pub chunking: String,
}

impl StoreConfig {
    /// A store of `model` vectors of `dimension`, compared by cosine, with
    /// no chunking settings recorded yet.
    pub fn new(name: impl Into<String>, model: impl Into<String>, dimension: usize) -> Self {
        Self { name: name.into(), model: model.into(), dimension, metric: Metric::Cosine, chunking: String::new() }
    }

    /// With another distance metric.
    pub fn with_metric(mut self, metric: Metric) -> Self {
        self.metric = metric;
        self
    }

    /// With the chunking settings the chunks are made with.
    pub fn with_chunking(mut self, chunking: impl Into<String>) -> Self {
        self.chunking = chunking.into();
        self
    }
}

/// What `rag store info` shows about a store: start from
/// [`StoreInfo::new`] and fill in what the backend knows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StoreInfo {
    /// The store's settings.
    pub config: StoreConfig,
    /// Backend name.
    pub backend: String,
    /// Number of source files with chunks in the store, when known.
    pub files: Option<u64>,
    /// Number of chunks (vectors), when known.
    pub chunks: Option<u64>,
    /// Bytes on disk, when known.
    pub size_bytes: Option<u64>,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: Option<i64>,
    /// Time of the last write, seconds since the Unix epoch.
    pub updated_at: Option<i64>,
    /// Files the backend remembers as unreadable (not read again until they
    /// change), when it keeps such a record.
    pub unreadable_files: Option<u64>,
    /// Backend-specific facts (location, ARN, index mode, ...).
    pub details: Vec<(String, String)>,
}

impl StoreInfo {
    /// The facts of a store of `config` on `backend`, counts unknown.
    pub fn new(config: StoreConfig, backend: impl Into<String>) -> Self {
        Self {
            config,
            backend: backend.into(),
            files: None,
            chunks: None,
            size_bytes: None,
            created_at: None,
            updated_at: None,
            unreadable_files: None,
            details: Vec::new(),
        }
    }
}

/// Checks a store name against the rules of S3 Vectors index names, which every
/// backend follows so a store can move between them: 3 to 63 characters of
/// `a-z`, `0-9`, `-` and `.`, starting and ending with a letter or digit.
///
/// ```
/// assert!(rag_core::store::validate_store_name("my-notes").is_ok());
/// assert!(rag_core::store::validate_store_name("../escape").is_err());
/// ```
pub fn validate_store_name(name: &str) -> Result<()> {
    let fail = |reason: &str| Err(Error::InvalidStoreName { name: name.to_string(), reason: reason.to_string() });
    if !(3..=63).contains(&name.len()) {
        return fail("use 3 to 63 characters");
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.')) {
        return fail(&format!("{c:?} is not allowed; use a-z, 0-9, '-' and '.'"));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return fail("start and end with a letter or digit");
    }
    Ok(())
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC (`2026-11-26T23:36:15Z`).
///
/// ```
/// assert_eq!(rag_core::store::format_rfc3339(0), "1970-01-01T00:00:00Z");
/// assert_eq!(rag_core::store::format_rfc3339(1_795_736_175), "2026-11-26T23:36:15Z");
/// ```
pub fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Refuses an embedder whose model or dimension differs from the store's.
pub fn check_model(config: &StoreConfig, embedder: &dyn Embedder) -> Result<()> {
    let base = |m: &str| m.strip_suffix(":latest").unwrap_or(m).to_string();
    if base(&config.model) != base(embedder.model()) || config.dimension != embedder.dimension() {
        return Err(Error::ModelMismatch {
            store: config.name.clone(),
            stored_model: config.model.clone(),
            stored_dimension: config.dimension,
            model: embedder.model().to_string(),
            dimension: embedder.dimension(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_names_follow_s3_vectors_index_rules() {
        for ok in ["abc", "my-notes", "v1.2", "a".repeat(63).as_str()] {
            assert!(validate_store_name(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "../escape", "Notes", "-lead", "trail.", "a/b", "with space", &"a".repeat(64)] {
            assert!(validate_store_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn same_file_name_in_two_folders_gets_two_keys() {
        assert_ne!(chunk_key("docs/README.md", 0), chunk_key("src/README.md", 0));
    }

    #[test]
    fn overlong_paths_get_bounded_keys() {
        let long = "d/".repeat(600);
        let key = chunk_key(&long, 7);
        assert!(key.len() <= MAX_KEY_LEN);
        assert!(key.ends_with("#7"));
        assert_ne!(key, chunk_key(&format!("{long}x"), 7));
    }

    #[test]
    fn similarity_levels_use_the_documented_thresholds() {
        let cases = [
            (0.85, SimilarityLevel::Duplicate),
            (0.849, SimilarityLevel::VerySimilar),
            (0.6, SimilarityLevel::VerySimilar),
            (0.3, SimilarityLevel::Related),
            (0.0, SimilarityLevel::Unrelated),
            (-0.01, SimilarityLevel::Contradiction),
        ];
        for (score, level) in cases {
            assert_eq!(SimilarityLevel::from_score(score), level, "{score}");
        }
    }

    #[test]
    fn rfc3339_formats_leap_days() {
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
