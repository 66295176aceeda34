//! The indexing pipeline: files in, chunks embedded and stored, incrementally.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::backend::VectorBackend;
use crate::chunk::Chunker;
use crate::discover::{Discovery, SourceFile};
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::types::{
    Chunk, DocText, FileState, Metric, StoreConfig, UnreadableFile, VectorRecord, WriteBatch, chunk_key, now_unix,
    validate_store_name,
};

/// Names the reader in [`UnreadableFile::reader`]: a file this version could
/// not read is tried again by the next.
const READER: &str = concat!("rag-core ", env!("CARGO_PKG_VERSION"));

/// Settings of one index run.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Re-embed every file, changed or not.
    pub force: bool,
    /// Delete the chunks of stored files that fall under the patterns but
    /// were not found (deleted or now excluded).
    pub prune: bool,
    /// Work out the plan (new, changed, unchanged, removed) without embedding
    /// or writing anything.
    pub dry_run: bool,
    /// Metric for a store created by this run.
    pub metric: Metric,
    /// How many chunks to collect before writing them to the backend;
    /// `None` takes the backend's [`write_batch_hint`](VectorBackend::write_batch_hint).
    pub write_batch_size: Option<usize>,
    /// Longest time finished files wait before they are written, which bounds
    /// the work an interrupted run loses.
    pub write_interval: std::time::Duration,
    /// Files larger than this many bytes are skipped with a reason.
    pub max_file_size: u64,
    /// Embed each chunk with its heading path in front (markdown sections,
    /// slides, sheets), so a short section keeps its context. The path is
    /// stored either way.
    pub embed_headings: bool,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            force: false,
            prune: true,
            dry_run: false,
            metric: Metric::Cosine,
            write_batch_size: None,
            write_interval: std::time::Duration::from_secs(2),
            max_file_size: 50 * 1024 * 1024,
            embed_headings: true,
        }
    }
}

/// A file that was not indexed, or was indexed with a caveat, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileProblem {
    /// Stored name of the file.
    pub path: String,
    /// What happened and, where it helps, what to do.
    pub reason: String,
}

/// What an index run did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
    /// Chunks embedded (or, in a dry run, that would be).
    pub chunks_embedded: usize,
    /// Chunks deleted (stale chunks of changed files and chunks of removed files).
    pub chunks_deleted: usize,
    /// Wall time of the run in milliseconds.
    pub elapsed_ms: u64,
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

/// Indexes files into a store: discovers, extracts, chunks, embeds in
/// batches and writes as batches complete.
///
/// Re-running on the same files re-embeds only what changed (by content
/// hash), replaces the chunks of changed files, and deletes the chunks of
/// files that disappeared from the patterns.
pub struct Indexer {
    embedder: Arc<dyn Embedder>,
    backend: Arc<dyn VectorBackend>,
    chunker: Arc<dyn Chunker>,
    converter: Arc<dyn crate::DocumentConverter>,
}

/// Event sent from the file-reading thread to the embedding loop.
enum FileEvent {
    Unchanged(String),
    Skipped {
        path: String,
        reason: String,
        old_keys: Vec<String>,
    },
    /// `unreadable` is set when the content itself cannot be read (not a
    /// passing I/O error or an embedder's refusal): the store remembers it.
    Failed {
        path: String,
        reason: String,
        unreadable: Option<UnreadableFile>,
    },
    Prepared(PreparedFile),
}

struct PreparedFile {
    path: String,
    title: Option<String>,
    chunks: Vec<Chunk>,
    old_keys: Vec<String>,
    is_new: bool,
    notes: Vec<String>,
}

struct PendingFile {
    file: PreparedFile,
    vectors: Vec<Option<Vec<f32>>>,
    remaining: usize,
    failure: Option<String>,
}

type BatchItems = Vec<(usize, usize)>;
type BatchOutcome = (BatchItems, Result<Vec<Result<Vec<f32>>>>);

impl Indexer {
    /// A pipeline over an embedder, a backend and a chunker.
    pub fn new(embedder: Arc<dyn Embedder>, backend: Arc<dyn VectorBackend>, chunker: Arc<dyn Chunker>) -> Self {
        Self { embedder, backend, chunker, converter: Arc::new(crate::InProcess) }
    }

    /// The same pipeline with documents (PDF, Office, OpenDocument, EPUB)
    /// converted by `converter` instead of in this process.
    pub fn with_converter(mut self, converter: Arc<dyn crate::DocumentConverter>) -> Self {
        self.converter = converter;
        self
    }

    /// Indexes the files of `discovery` into `store`, creating the store if
    /// needed.
    ///
    /// Errors that make every further file fail (embedder unreachable, model
    /// missing, backend failure) end the run with an error after the files
    /// already embedded are written; any other problem with a file is recorded
    /// in the report and the run goes on.
    pub async fn index(
        &self,
        store: &str,
        discovery: &Discovery,
        options: &IndexOptions,
        observer: &dyn IndexObserver,
    ) -> Result<IndexReport> {
        let mut began = false;
        let result = self.run(store, discovery, options, observer, &mut began).await;
        if began {
            // The writer's lock goes with the run, whatever its outcome.
            let released = self.backend.end_indexing(store).await;
            if let (Ok(_), Err(err)) = (&result, released) {
                return Err(err);
            }
        }
        result
    }

    async fn run(
        &self,
        store: &str,
        discovery: &Discovery,
        options: &IndexOptions,
        observer: &dyn IndexObserver,
        began: &mut bool,
    ) -> Result<IndexReport> {
        let started = Instant::now();
        validate_store_name(store)?;
        let settings = self.chunker.settings();
        let existing = if self.backend.store_exists(store).await? {
            let config = self.backend.store_config(store).await?;
            check_model(&config, self.embedder.as_ref())?;
            Some(config)
        } else {
            None
        };

        if !options.dry_run {
            if existing.is_none() {
                self.backend
                    .create_store(&StoreConfig {
                        name: store.to_string(),
                        model: self.embedder.model().to_string(),
                        dimension: self.embedder.dimension(),
                        metric: options.metric,
                        chunking: settings.clone(),
                    })
                    .await?;
            }
            // The writer's lock first: a refused run changes nothing.
            self.backend.begin_indexing(store).await?;
            *began = true;
            if let Some(config) = existing.as_ref().filter(|c| c.chunking != settings) {
                self.backend.update_store_config(&StoreConfig { chunking: settings.clone(), ..config.clone() }).await?;
            }
        }
        let states: HashMap<String, FileState> = if existing.is_some() {
            self.backend.file_states(store).await?.into_iter().map(|s| (s.path.clone(), s)).collect()
        } else {
            HashMap::new()
        };
        let rechunk_all = options.force || existing.as_ref().is_some_and(|c| c.chunking != settings);
        // Documents that could not be read are not read again until they change (or --force).
        let known_unreadable: HashMap<String, UnreadableFile> = if existing.is_some() {
            self.backend.unreadable_files(store).await?.into_iter().map(|u| (u.path.clone(), u)).collect()
        } else {
            HashMap::new()
        };
        let mut unreadable: Vec<UnreadableFile> = Vec::new();

        let mut report = IndexReport { store: store.to_string(), dry_run: options.dry_run, ..IndexReport::default() };
        let found: HashSet<&str> = discovery.files.iter().map(|f| f.rel.as_str()).collect();
        let removed: Vec<&FileState> = if options.prune {
            let mut removed: Vec<&FileState> = states
                .values()
                .filter(|s| !found.contains(s.path.as_str()) && discovery.scope.contains(&s.path))
                .collect();
            removed.sort_by(|a, b| a.path.cmp(&b.path));
            removed
        } else {
            Vec::new()
        };

        observer.planned(discovery.files.len());
        let (tx, rx) = mpsc::channel(16);
        // Reading, hashing, extracting and chunking run on every core; the
        // events reach the embedding loop as files finish.
        let producer = {
            let files = Arc::new(discovery.files.clone());
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let states = Arc::new(states.clone());
            let known = Arc::new(if options.force { HashMap::new() } else { known_unreadable.clone() });
            let max_file_size = options.max_file_size;
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let (files, next, states, known, chunker, converter, tx) = (
                        files.clone(),
                        next.clone(),
                        states.clone(),
                        known.clone(),
                        Arc::clone(&self.chunker),
                        Arc::clone(&self.converter),
                        tx.clone(),
                    );
                    tokio::task::spawn_blocking(move || {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(file) = files.get(i) else { break };
                            let known = Known { state: states.get(&file.rel), unreadable: known.get(&file.rel) };
                            let readers = Readers { chunker: chunker.as_ref(), converter: converter.as_ref() };
                            let event = prepare(file, known, rechunk_all, max_file_size, readers);
                            if tx.blocking_send(event).is_err() {
                                break;
                            }
                        }
                    })
                })
                .collect();
            drop(tx);
            handles
        };

        let write_batch = options.write_batch_size.unwrap_or_else(|| self.backend.write_batch_hint());
        let mut writer = PendingWrites::new(store, write_batch, options.write_interval);
        let result = if options.dry_run {
            self.plan(rx, &mut report, &mut unreadable, observer).await
        } else {
            self.embed_and_write(rx, &mut writer, &mut report, &mut unreadable, observer, options.embed_headings).await
        };
        if let Err(err) = result {
            // Keep what was finished: the files already embedded are written.
            drop(producer);
            let _ = writer.finish(&self.backend, &mut report).await;
            return Err(err);
        }
        for handle in producer {
            handle.await.map_err(|e| Error::InvalidInput(format!("file reader stopped: {e}")))?;
        }

        for state in removed {
            report.removed.push(state.path.clone());
            if options.dry_run {
                report.chunks_deleted += state.keys.len();
            } else {
                writer.delete(state.keys.clone());
            }
        }
        if !options.dry_run {
            writer.finish(&self.backend, &mut report).await?;
            // Forget the records of files in this run's scope that were read
            // after all or are gone; keep those of files outside it.
            let still: HashSet<&str> = unreadable.iter().map(|u| u.path.as_str()).collect();
            let forget: Vec<String> = known_unreadable
                .keys()
                .filter(|path| !still.contains(path.as_str()))
                .filter(|path| found.contains(path.as_str()) || discovery.scope.contains(path))
                .cloned()
                .collect();
            unreadable.retain(|u| known_unreadable.get(&u.path) != Some(u));
            if !unreadable.is_empty() || !forget.is_empty() {
                self.backend.remember_unreadable(store, unreadable, forget).await?;
            }
        }
        // Files finish in any order on several threads: report them sorted.
        report.new.sort();
        report.changed.sort();
        report.skipped.sort_by(|a, b| a.path.cmp(&b.path));
        report.failed.sort_by(|a, b| a.path.cmp(&b.path));
        report.notes.sort_by(|a, b| a.path.cmp(&b.path));
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }

    async fn plan(
        &self,
        mut rx: mpsc::Receiver<FileEvent>,
        report: &mut IndexReport,
        unreadable: &mut Vec<UnreadableFile>,
        observer: &dyn IndexObserver,
    ) -> Result<()> {
        while let Some(event) = rx.recv().await {
            match event {
                FileEvent::Prepared(file) => {
                    report.chunks_embedded += file.chunks.len();
                    let live: HashSet<&str> = file.chunks.iter().map(|c| c.key.as_str()).collect();
                    report.chunks_deleted += file.old_keys.iter().filter(|k| !live.contains(k.as_str())).count();
                    observer.file_done(&file.path);
                    if file.is_new { report.new.push(file.path) } else { report.changed.push(file.path) }
                }
                other => record_event(other, report, None, unreadable, observer),
            }
        }
        Ok(())
    }

    async fn embed_and_write(
        &self,
        mut rx: mpsc::Receiver<FileEvent>,
        writer: &mut PendingWrites,
        report: &mut IndexReport,
        unreadable: &mut Vec<UnreadableFile>,
        observer: &dyn IndexObserver,
        embed_headings: bool,
    ) -> Result<()> {
        let batch_size = self.embedder.max_batch_size().max(1);
        let concurrency = self.embedder.max_concurrency().max(1);
        let dimension = self.embedder.dimension();
        let indexed_at = now_unix();
        let mut pending: HashMap<usize, PendingFile> = HashMap::new();
        let mut queue: VecDeque<(usize, usize)> = VecDeque::new();
        let mut inflight: JoinSet<BatchOutcome> = JoinSet::new();
        let mut next_id = 0usize;
        let mut reading = true;

        loop {
            while inflight.len() < concurrency && (queue.len() >= batch_size || (!reading && !queue.is_empty())) {
                let items: BatchItems = queue.drain(..batch_size.min(queue.len())).collect();
                let docs: Vec<DocText> = items
                    .iter()
                    .map(|&(id, index)| {
                        let file = &pending[&id].file;
                        DocText::new(file.title.clone(), embedding_text(&file.chunks[index], embed_headings))
                    })
                    .collect();
                let embedder = Arc::clone(&self.embedder);
                inflight.spawn(async move {
                    let result = embed_isolating(embedder.as_ref(), &docs).await;
                    (items, result)
                });
            }
            if !reading && inflight.is_empty() && queue.is_empty() {
                return Ok(());
            }
            let room = queue.len() < batch_size * (concurrency + 1);
            tokio::select! {
                event = rx.recv(), if reading && room => match event {
                    None => reading = false,
                    Some(FileEvent::Prepared(file)) => {
                        let id = next_id;
                        next_id += 1;
                        queue.extend((0..file.chunks.len()).map(|index| (id, index)));
                        let remaining = file.chunks.len();
                        pending.insert(id, PendingFile { vectors: vec![None; remaining], remaining, file, failure: None });
                    }
                    Some(other) => record_event(other, report, Some(writer), unreadable, observer),
                },
                Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                    let (items, outcome) = joined.map_err(|e| Error::Embedder {
                        message: format!("embedding task stopped: {e}"),
                        source: None,
                    })?;
                    let vectors = outcome?;
                    observer.chunks_embedded(items.len());
                    for (&(id, index), vector) in items.iter().zip(vectors) {
                        let Some(entry) = pending.get_mut(&id) else { continue };
                        match vector {
                            Ok(vector) if vector.len() == dimension => entry.vectors[index] = Some(vector),
                            Ok(vector) => {
                                return Err(Error::DimensionMismatch {
                                    context: format!("embedder {:?} (for {})", self.embedder.model(), entry.file.path),
                                    expected: dimension,
                                    actual: vector.len(),
                                });
                            }
                            Err(err) => {
                                let chunk = &entry.file.chunks[index];
                                entry.failure.get_or_insert_with(|| {
                                    format!("chunk {} (lines {}-{}): {err}", index, chunk.line_start, chunk.line_end)
                                });
                            }
                        }
                        entry.remaining -= 1;
                        if entry.remaining == 0
                            && let Some(done) = pending.remove(&id)
                        {
                            finish_file(done, indexed_at, writer, report, observer);
                            if writer.is_full() {
                                writer.flush(&self.backend, report).await?;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What the store knows of a file before this run.
#[derive(Clone, Copy)]
struct Known<'a> {
    state: Option<&'a FileState>,
    unreadable: Option<&'a UnreadableFile>,
}

/// What turns a file's bytes into chunks.
#[derive(Clone, Copy)]
struct Readers<'a> {
    chunker: &'a dyn Chunker,
    converter: &'a dyn crate::DocumentConverter,
}

/// Reads, hashes and chunks one file, deciding whether it needs embedding.
fn prepare(
    file: &SourceFile,
    Known { state, unreadable }: Known<'_>,
    rechunk_all: bool,
    max_file_size: u64,
    Readers { chunker, converter }: Readers<'_>,
) -> FileEvent {
    let path = file.rel.clone();
    let old_keys = state.map(|s| s.keys.clone()).unwrap_or_default();
    let size = std::fs::metadata(&file.path).map(|m| m.len()).unwrap_or(0);
    if size > max_file_size {
        return FileEvent::Skipped {
            path,
            reason: format!(
                "{size} bytes is over the size limit of {max_file_size}; raise --max-file-size to index it"
            ),
            old_keys,
        };
    }
    let bytes = match std::fs::read(&file.path) {
        Ok(bytes) => bytes,
        Err(err) => return FileEvent::Failed { path, reason: format!("cannot read: {err}"), unreadable: None },
    };
    let hash = blake3::hash(&bytes).to_hex().to_string();
    if !rechunk_all && state.and_then(|s| s.content_hash.as_deref()) == Some(hash.as_str()) {
        return FileEvent::Unchanged(path);
    }
    if let Some(known) = unreadable.filter(|u| u.content_hash == hash && u.reader == READER) {
        return FileEvent::Failed {
            reason: format!("{} (unchanged since, so not read again; --force tries it anyway)", known.reason),
            path,
            unreadable: Some(known.clone()),
        };
    }
    // A reader or chunker that panics on hostile input fails this file only,
    // named, and the store remembers it until it changes.
    let crashed = |stage: &str, panic: Box<dyn std::any::Any + Send>| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        let reason = format!("the {stage} crashed on this file ({message}); it is skipped until it changes");
        unreadable_file(path.clone(), hash.clone(), reason)
    };
    let extracted =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::extract_with(&file.path, &bytes, converter)));
    let extracted = match extracted {
        Err(panic) => return crashed("reader", panic),
        Ok(Ok(extracted)) => extracted,
        Ok(Err(err @ crate::ExtractError::Binary)) => {
            return FileEvent::Skipped { path, reason: err.to_string(), old_keys };
        }
        // A damaged or locked document fails (exit status 1); its old chunks
        // stay, and the store remembers it so it is read again only once it changes.
        Ok(Err(err)) => return unreadable_file(path, hash, err.to_string()),
    };
    let body = extracted.body.clone();
    let chunked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        chunker.chunk(&extracted.text[body.clone()], &path, extracted.language)
    }));
    let pieces = match chunked {
        Ok(pieces) => pieces,
        Err(panic) => return crashed("chunker", panic),
    };
    if pieces.is_empty() {
        return FileEvent::Skipped { path, reason: "no text to index (empty file)".into(), old_keys };
    }
    let lines = crate::LineIndex::new(&extracted.text);
    let total = pieces.len();
    let converted_from = extracted.metadata.get("converted_from").and_then(|v| v.as_str());
    let chunks = pieces
        .into_iter()
        .enumerate()
        .map(|(index, mut piece)| {
            let (byte_start, byte_end) = (body.start + piece.byte_start, body.start + piece.byte_end);
            if let Some(from) = converted_from {
                let headings = piece.metadata.get("headings").and_then(|h| h.as_str());
                let location = crate::documents::location(from, headings, &piece.text);
                piece.metadata.extend(location);
            }
            Chunk {
                key: chunk_key(&path, index),
                source_path: path.clone(),
                chunk_index: index,
                total_chunks: total,
                line_start: lines.line_of(byte_start),
                line_end: lines.line_of(byte_end.saturating_sub(1).max(byte_start)),
                byte_start,
                byte_end,
                text: piece.text,
                content_hash: hash.clone(),
                language: extracted.language.to_string(),
                metadata: merge_metadata(&extracted.metadata, piece.metadata),
            }
        })
        .collect();
    let title = extracted
        .metadata
        .get("title")
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .or_else(|| Path::new(&path).file_stem().map(|s| s.to_string_lossy().into_owned()));
    FileEvent::Prepared(PreparedFile { title, is_new: state.is_none(), path, chunks, old_keys, notes: extracted.notes })
}

/// A file whose content this reader cannot read: it fails, and the store
/// remembers it with its hash so it is read again only once it changes.
fn unreadable_file(path: String, content_hash: String, reason: String) -> FileEvent {
    let record = UnreadableFile { path: path.clone(), content_hash, reason: reason.clone(), reader: READER.into() };
    FileEvent::Failed { path, reason, unreadable: Some(record) }
}

/// A chunk's metadata: the file's (front matter, title) with the chunk's own
/// on top; tags are the union of both.
fn merge_metadata(file: &crate::Metadata, chunk: crate::Metadata) -> crate::Metadata {
    let mut merged = file.clone();
    for (key, value) in chunk {
        match (key.as_str(), merged.get_mut(&key), value) {
            ("tags", Some(serde_json::Value::Array(tags)), serde_json::Value::Array(more)) => {
                for tag in more {
                    if !tags.contains(&tag) {
                        tags.push(tag);
                    }
                }
            }
            (_, _, value) => {
                merged.insert(key, value);
            }
        }
    }
    merged
}

/// The text embedded for a chunk: its heading path first, so a short chunk
/// keeps its context.
fn embedding_text(chunk: &Chunk, with_headings: bool) -> String {
    match chunk.metadata.get("headings").and_then(|h| h.as_str()) {
        Some(path) if with_headings && !path.is_empty() => format!("{path}\n\n{}", chunk.text),
        _ => chunk.text.clone(),
    }
}

/// Embeds a batch; when the batch fails for a reason that is not fatal, embeds
/// its texts one by one so one bad text fails only its own file.
async fn embed_isolating(embedder: &dyn Embedder, docs: &[DocText]) -> Result<Vec<Result<Vec<f32>>>> {
    match embed_checked(embedder, docs).await {
        Ok(vectors) => Ok(vectors.into_iter().map(Ok).collect()),
        Err(err) if err.is_fatal() => Err(err),
        Err(Error::ContextLength { .. }) if docs.len() == 1 => Ok(vec![embed_in_parts(embedder, &docs[0]).await]),
        Err(err) if docs.len() == 1 => Ok(vec![Err(err)]),
        Err(_) => {
            let mut out = Vec::with_capacity(docs.len());
            for doc in docs {
                match embed_checked(embedder, std::slice::from_ref(doc)).await {
                    Ok(mut vectors) => out.push(Ok(vectors.remove(0))),
                    Err(err) if err.is_fatal() => return Err(err),
                    Err(Error::ContextLength { .. }) => out.push(embed_in_parts(embedder, doc).await),
                    Err(err) => out.push(Err(err)),
                }
            }
            Ok(out)
        }
    }
}

/// Embeds a text the model refused as too long: halves it at a line or word
/// break until every part fits, and returns the parts' vectors averaged
/// (weighted by length, normalised), so no text is cut and no file fails.
async fn embed_in_parts(embedder: &dyn Embedder, doc: &DocText) -> Result<Vec<f32>> {
    let mut pending = vec![doc.text.clone()];
    let mut sum: Vec<f32> = Vec::new();
    let mut parts = 0usize;
    while let Some(part) = pending.pop() {
        match embed_checked(embedder, &[DocText::new(doc.title.clone(), part.clone())]).await {
            Ok(mut vectors) => {
                let vector = vectors.remove(0);
                let weight = part.chars().count() as f32;
                if sum.is_empty() {
                    sum = vec![0.0; vector.len()];
                }
                for (total, x) in sum.iter_mut().zip(&vector) {
                    *total += weight * x;
                }
                parts += 1;
            }
            Err(Error::ContextLength { .. }) if part.chars().count() > 32 => {
                let (first, second) = halve(&part);
                pending.push(second.to_string());
                pending.push(first.to_string());
            }
            Err(err) => return Err(err),
        }
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        sum.iter_mut().for_each(|x| *x /= norm);
    }
    tracing::debug!(parts, chars = doc.text.len(), "embedded a text too long for the model in parts");
    Ok(sum)
}

/// Cuts a text in two near its middle: at a line break if one is near, else
/// at whitespace, else at a character boundary.
fn halve(text: &str) -> (&str, &str) {
    let mut middle = text.len() / 2;
    while !text.is_char_boundary(middle) {
        middle += 1;
    }
    let window = text.len() / 4;
    let near = |pattern: char| {
        let before = text[..middle].rfind(pattern).filter(|&i| middle - i <= window && i > 0);
        let after = text[middle..].find(pattern).map(|i| middle + i).filter(|&i| i - middle <= window);
        before.or(after).map(|i| i + pattern.len_utf8())
    };
    let mut cut = near('\n').or_else(|| near(' ')).filter(|&c| c > 0 && c < text.len()).unwrap_or(middle);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text.split_at(cut.min(text.len()))
}

async fn embed_checked(embedder: &dyn Embedder, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
    let vectors = embedder.embed_documents(docs).await?;
    if vectors.len() != docs.len() {
        return Err(Error::Embedder {
            message: format!("asked for {} embeddings, got {}", docs.len(), vectors.len()),
            source: None,
        });
    }
    Ok(vectors)
}

fn record_event(
    event: FileEvent,
    report: &mut IndexReport,
    writer: Option<&mut PendingWrites>,
    unreadable: &mut Vec<UnreadableFile>,
    observer: &dyn IndexObserver,
) {
    match event {
        FileEvent::Unchanged(path) => {
            report.unchanged += 1;
            observer.file_done(&path);
        }
        FileEvent::Skipped { path, reason, old_keys } => {
            observer.file_done(&path);
            // The file can no longer be indexed: its old chunks would be stale.
            match writer {
                Some(writer) => writer.delete(old_keys),
                None => report.chunks_deleted += old_keys.len(),
            }
            report.skipped.push(FileProblem { path, reason });
        }
        FileEvent::Failed { path, reason, unreadable: record } => {
            observer.file_done(&path);
            report.failed.push(FileProblem { path, reason });
            unreadable.extend(record);
        }
        FileEvent::Prepared(_) => {}
    }
}

fn finish_file(
    done: PendingFile,
    indexed_at: i64,
    writer: &mut PendingWrites,
    report: &mut IndexReport,
    observer: &dyn IndexObserver,
) {
    let PendingFile { file, vectors, failure, .. } = done;
    observer.file_done(&file.path);
    if let Some(reason) = failure {
        report.failed.push(FileProblem { path: file.path, reason });
        return;
    }
    let live: HashSet<&str> = file.chunks.iter().map(|c| c.key.as_str()).collect();
    let stale: Vec<String> = file.old_keys.iter().filter(|k| !live.contains(k.as_str())).cloned().collect();
    report.chunks_embedded += file.chunks.len();
    for note in file.notes {
        report.notes.push(FileProblem { path: file.path.clone(), reason: note });
    }
    if file.is_new {
        report.new.push(file.path.clone())
    } else {
        report.changed.push(file.path.clone())
    }
    let records = file
        .chunks
        .into_iter()
        .zip(vectors)
        .filter_map(|(chunk, vector)| vector.map(|vector| VectorRecord { chunk, vector, indexed_at }));
    writer.upsert(records);
    writer.delete(stale);
}

/// Finished files waiting to be written; whole files only. A write runs
/// beside the embedding loop while the next batch gathers; at most one at a
/// time, so writes land in order.
struct PendingWrites {
    store: String,
    batch: WriteBatch,
    threshold: usize,
    interval: std::time::Duration,
    oldest: Option<Instant>,
    /// The write under way; it yields the number of keys it deleted.
    writing: Option<tokio::task::JoinHandle<Result<usize>>>,
}

impl PendingWrites {
    fn new(store: &str, threshold: usize, interval: std::time::Duration) -> Self {
        Self {
            store: store.to_string(),
            batch: WriteBatch::default(),
            threshold: threshold.max(1),
            interval,
            oldest: None,
            writing: None,
        }
    }

    fn delete(&mut self, keys: Vec<String>) {
        self.touch();
        self.batch.deletes.extend(keys);
    }

    fn upsert(&mut self, records: impl IntoIterator<Item = VectorRecord>) {
        self.touch();
        self.batch.upserts.extend(records);
    }

    fn touch(&mut self) {
        self.oldest.get_or_insert_with(Instant::now);
    }

    /// Enough waits to be worth a write, or it has waited long enough.
    fn is_full(&self) -> bool {
        self.batch.upserts.len() + self.batch.deletes.len() >= self.threshold
            || self.oldest.is_some_and(|t| t.elapsed() >= self.interval)
    }

    /// Starts writing what waits, once the previous write has landed.
    async fn flush(&mut self, backend: &Arc<dyn VectorBackend>, report: &mut IndexReport) -> Result<()> {
        self.wait(report).await?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.oldest = None;
        let deleted = batch.deletes.len();
        let (backend, store) = (Arc::clone(backend), self.store.clone());
        self.writing = Some(tokio::spawn(async move { backend.write(&store, batch).await.map(|()| deleted) }));
        Ok(())
    }

    /// Waits for the write under way, if any.
    async fn wait(&mut self, report: &mut IndexReport) -> Result<()> {
        if let Some(writing) = self.writing.take() {
            let deleted = writing.await.map_err(|e| Error::Backend {
                backend: "index".into(),
                message: format!("write task stopped: {e}"),
                source: None,
            })??;
            report.chunks_deleted += deleted;
        }
        Ok(())
    }

    /// Writes everything that waits and returns once it has landed.
    async fn finish(&mut self, backend: &Arc<dyn VectorBackend>, report: &mut IndexReport) -> Result<()> {
        self.flush(backend, report).await?;
        self.wait(report).await
    }
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
    use crate::discover::{DiscoverOptions, discover};
    use crate::memory::MemoryBackend;
    use crate::{Querier, TextChunker};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Embeds by hashing words; refuses texts containing POISON; counts calls.
    #[derive(Default)]
    struct WordEmbedder {
        texts: AtomicUsize,
        model: Option<String>,
    }

    #[async_trait]
    impl Embedder for WordEmbedder {
        fn model(&self) -> &str {
            self.model.as_deref().unwrap_or("words")
        }
        fn dimension(&self) -> usize {
            16
        }
        fn max_batch_size(&self) -> usize {
            3
        }
        async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
            if docs.iter().any(|d| d.text.contains("POISON")) {
                return Err(Error::InvalidInput("poisoned text".into()));
            }
            self.texts.fetch_add(docs.len(), Ordering::SeqCst);
            Ok(docs.iter().map(|d| words(&d.text)).collect())
        }
        async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
            Ok(words(query))
        }
    }

    fn words(text: &str) -> Vec<f32> {
        let mut v = vec![0.0; 16];
        v[0] = 0.01;
        for word in text.split_whitespace() {
            let h = word.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            v[(h % 16) as usize] += 1.0;
        }
        v
    }

    struct Setup {
        dir: tempfile::TempDir,
        embedder: Arc<WordEmbedder>,
        backend: Arc<MemoryBackend>,
    }

    impl Setup {
        fn new() -> Self {
            Self { dir: tempfile::tempdir().unwrap(), embedder: Arc::default(), backend: Arc::default() }
        }
        fn write(&self, path: &str, contents: &str) {
            let path = self.dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        async fn index_with(&self, options: IndexOptions, chunk_size: usize) -> Result<IndexReport> {
            let found = discover(&[".".into()], &DiscoverOptions::new(self.dir.path()))?;
            Indexer::new(self.embedder.clone(), self.backend.clone(), Arc::new(TextChunker::new(chunk_size, 0)?))
                .index("notes", &found, &options, &NoProgress)
                .await
        }
        async fn index(&self) -> IndexReport {
            self.index_with(IndexOptions::default(), 60).await.unwrap()
        }
        fn embedded(&self) -> usize {
            self.embedder.texts.load(Ordering::SeqCst)
        }
        async fn keys(&self) -> Vec<String> {
            let states = self.backend.file_states("notes").await.unwrap();
            states.into_iter().flat_map(|s| s.keys).collect()
        }
    }

    fn paragraphs(words: &[&str]) -> String {
        words.iter().map(|w| format!("{w} {w} {w} {w} {w} {w}\n\n")).collect()
    }

    /// Refuses texts over `limit` characters as Ollama does with `truncate` off.
    struct SmallWindow {
        limit: usize,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Embedder for SmallWindow {
        fn model(&self) -> &str {
            "small"
        }
        fn dimension(&self) -> usize {
            16
        }
        async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(long) = docs.iter().find(|d| d.text.chars().count() > self.limit) {
                return Err(Error::ContextLength { model: "small".into(), chars: long.text.chars().count() });
            }
            Ok(docs.iter().map(|d| words(&d.text)).collect())
        }
        async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
            Ok(words(query))
        }
    }

    #[tokio::test]
    async fn a_chunk_the_model_refuses_as_too_long_is_embedded_in_parts() {
        let dir = tempfile::tempdir().unwrap();
        let long = (0..60).map(|i| format!("word{i} ")).collect::<String>();
        std::fs::write(dir.path().join("long.txt"), &long).unwrap();
        std::fs::write(dir.path().join("short.txt"), "tiny text").unwrap();
        let embedder = Arc::new(SmallWindow { limit: 100, calls: AtomicUsize::new(0) });
        let backend = Arc::new(MemoryBackend::new());
        let files = discover(&[".".into()], &DiscoverOptions::new(dir.path())).unwrap();
        let indexer = Indexer::new(embedder.clone(), backend.clone(), Arc::new(TextChunker::new(2000, 0).unwrap()));
        let report = indexer.index("notes", &files, &IndexOptions::default(), &NoProgress).await.unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert_eq!(report.new, ["long.txt", "short.txt"]);
        // The whole text stays one chunk; its vector averages the parts', and finds it.
        let hits = Querier::new(embedder.clone(), backend).query("notes", "word3 word57", 1).await.unwrap();
        assert_eq!(hits[0].chunk.source_path, "long.txt");
        assert_eq!(hits[0].chunk.text, long.trim_end());
        assert!(embedder.calls.load(Ordering::SeqCst) > 3, "the refused text was sent again in parts");
    }

    /// Splits like the default chunker, but panics on one file, as a reader
    /// given hostile bytes may.
    struct PanicsOn(&'static str);

    impl Chunker for PanicsOn {
        fn chunk(&self, text: &str, path: &str, language: &str) -> Vec<crate::TextChunk> {
            assert!(path != self.0, "index out of bounds: the len is 3 but the index is 7");
            TextChunker::default().chunk(text, path, language)
        }
        fn settings(&self) -> String {
            "panics".into()
        }
    }

    #[tokio::test]
    async fn a_reader_that_panics_fails_its_file_only_and_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.md", "bad.md", "c.md"] {
            std::fs::write(dir.path().join(name), format!("text of {name}")).unwrap();
        }
        let embedder = Arc::new(WordEmbedder::default());
        let backend = Arc::new(MemoryBackend::new());
        let files = discover(&[".".into()], &DiscoverOptions::new(dir.path())).unwrap();
        let indexer = Indexer::new(embedder.clone(), backend.clone(), Arc::new(PanicsOn("bad.md")));
        let report = indexer.index("notes", &files, &IndexOptions::default(), &NoProgress).await.unwrap();
        assert_eq!(report.new, ["a.md", "c.md"]);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].path, "bad.md");
        assert!(report.failed[0].reason.contains("crashed") && report.failed[0].reason.contains("index out of bounds"));
        let again = indexer.index("notes", &files, &IndexOptions::default(), &NoProgress).await.unwrap();
        assert_eq!(again.unchanged, 2);
        assert!(again.failed[0].reason.contains("not read again"), "{:?}", again.failed);
    }

    #[test]
    fn halving_cuts_at_a_break_near_the_middle() {
        assert_eq!(halve("aaaa bbbb"), ("aaaa ", "bbbb"));
        assert_eq!(halve("one\ntwo three"), ("one\n", "two three"));
        let (a, b) = halve("ééééé");
        assert_eq!(format!("{a}{b}"), "ééééé");
        assert!(!a.is_empty() && !b.is_empty());
    }

    #[tokio::test]
    async fn reindex_without_changes_embeds_nothing() {
        let s = Setup::new();
        s.write("a.md", &paragraphs(&["alpha", "beta", "gamma"]));
        s.write("sub/b.txt", "just one line");
        let first = s.index().await;
        assert_eq!(first.new, ["a.md", "sub/b.txt"]);
        let embedded = s.embedded();
        assert!(embedded >= 4);
        let second = s.index().await;
        assert_eq!((second.unchanged, second.chunks_embedded), (2, 0));
        assert_eq!(s.embedded(), embedded);
    }

    #[tokio::test]
    async fn changed_file_is_reembedded_alone_and_its_surplus_chunks_go() {
        let s = Setup::new();
        s.write("a.md", &paragraphs(&["alpha", "beta", "gamma", "delta"]));
        s.write("b.md", &paragraphs(&["other"]));
        s.index().await;
        let before = s.embedded();
        s.write("a.md", &paragraphs(&["alpha"]));
        let report = s.index().await;
        assert_eq!(report.changed, ["a.md"]);
        assert_eq!(report.unchanged, 1);
        assert_eq!(s.embedded() - before, 1);
        assert_eq!(s.keys().await, ["a.md#0", "b.md#0"]);
        let hits = Querier::new(s.embedder.clone(), s.backend.clone()).query("notes", "gamma gamma", 5).await.unwrap();
        assert!(hits.iter().all(|h| !h.chunk.text.contains("gamma")), "stale text returned: {hits:?}");
    }

    #[tokio::test]
    async fn deleted_files_are_pruned_unless_told_not_to() {
        let s = Setup::new();
        s.write("a.md", "keep me");
        s.write("b.md", "delete me");
        s.index().await;
        std::fs::remove_file(s.dir.path().join("b.md")).unwrap();
        let kept = s.index_with(IndexOptions { prune: false, ..IndexOptions::default() }, 60).await.unwrap();
        assert!(kept.removed.is_empty());
        assert_eq!(s.keys().await.len(), 2);
        let pruned = s.index().await;
        assert_eq!(pruned.removed, ["b.md"]);
        assert_eq!(s.keys().await, ["a.md#0"]);
    }

    #[tokio::test]
    async fn force_reembeds_everything_without_duplicating() {
        let s = Setup::new();
        s.write("a.md", &paragraphs(&["alpha", "beta"]));
        s.index().await;
        let before = s.keys().await;
        let report = s.index_with(IndexOptions { force: true, ..IndexOptions::default() }, 60).await.unwrap();
        assert_eq!(report.changed, ["a.md"]);
        assert_eq!(s.keys().await, before);
    }

    #[tokio::test]
    async fn new_chunking_settings_rechunk_every_file() {
        let s = Setup::new();
        s.write("a.md", &paragraphs(&["alpha", "beta", "gamma"]));
        s.index().await;
        let report = s.index_with(IndexOptions::default(), 500).await.unwrap();
        assert_eq!(report.changed, ["a.md"]);
        assert_eq!(s.keys().await, ["a.md#0"]);
        assert_eq!(
            s.backend.store_config("notes").await.unwrap().chunking,
            TextChunker::new(500, 0).unwrap().settings()
        );
    }

    #[tokio::test]
    async fn a_file_that_fails_to_embed_fails_alone_and_is_retried_next_run() {
        let s = Setup::new();
        for i in 0..5 {
            s.write(&format!("ok{i}.md"), &paragraphs(&["fine"]));
        }
        s.write("bad.md", &paragraphs(&["fine", "POISON"]));
        let report = s.index().await;
        assert_eq!(report.new.len(), 5);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].path, "bad.md");
        assert!(report.failed[0].reason.contains("poisoned"), "{:?}", report.failed);
        assert!(s.keys().await.iter().all(|k| !k.starts_with("bad.md")), "no half file");
        s.write("bad.md", &paragraphs(&["fine", "cured"]));
        let report = s.index().await;
        assert_eq!(report.new, ["bad.md"]);
    }

    #[tokio::test]
    async fn an_unreadable_document_is_read_again_only_once_it_changes() {
        let s = Setup::new();
        s.write("good.md", "words");
        s.write("bad.docx", "not a zip at all");
        let first = s.index().await;
        assert_eq!(first.failed.len(), 1);
        assert!(!first.failed[0].reason.contains("not read again"), "{:?}", first.failed);
        let remembered = s.backend.unreadable_files("notes").await.unwrap();
        assert_eq!(remembered.len(), 1);
        assert_eq!((remembered[0].path.as_str(), remembered[0].reader.as_str()), ("bad.docx", READER));

        let second = s.index().await;
        assert_eq!(second.failed.len(), 1, "still reported, so the exit status still says so");
        assert!(second.failed[0].reason.starts_with(&first.failed[0].reason), "{:?}", second.failed);
        assert!(second.failed[0].reason.contains("not read again"), "{:?}", second.failed);

        let forced = s.index_with(IndexOptions { force: true, ..IndexOptions::default() }, 60).await.unwrap();
        assert!(!forced.failed[0].reason.contains("not read again"), "--force reads it: {:?}", forced.failed);

        s.write("bad.docx", "still not a zip, but different");
        let changed = s.index().await;
        assert!(!changed.failed[0].reason.contains("not read again"), "{:?}", changed.failed);
        let hash = blake3::hash(b"still not a zip, but different").to_hex().to_string();
        assert_eq!(s.backend.unreadable_files("notes").await.unwrap()[0].content_hash, hash);

        // What an older reader could not read, this one tries again.
        let older = UnreadableFile { reader: "rag-core 0.0.1".into(), ..remembered[0].clone() };
        s.write("bad.docx", "not a zip at all");
        s.backend.remember_unreadable("notes", vec![older], Vec::new()).await.unwrap();
        let upgraded = s.index().await;
        assert!(!upgraded.failed[0].reason.contains("not read again"), "{:?}", upgraded.failed);

        std::fs::remove_file(s.dir.path().join("bad.docx")).unwrap();
        let gone = s.index().await;
        assert!(gone.failed.is_empty());
        assert!(s.backend.unreadable_files("notes").await.unwrap().is_empty(), "a deleted file is forgotten");
    }

    /// A memory backend whose writes fail after the first `ok_writes`.
    struct FailingWrites {
        inner: MemoryBackend,
        ok_writes: AtomicUsize,
    }

    #[async_trait]
    impl VectorBackend for FailingWrites {
        fn name(&self) -> &'static str {
            "failing"
        }
        fn write_batch_hint(&self) -> usize {
            1
        }
        async fn create_store(&self, config: &StoreConfig) -> Result<()> {
            self.inner.create_store(config).await
        }
        async fn delete_store(&self, store: &str) -> Result<()> {
            self.inner.delete_store(store).await
        }
        async fn list_stores(&self) -> Result<Vec<String>> {
            self.inner.list_stores().await
        }
        async fn store_exists(&self, store: &str) -> Result<bool> {
            self.inner.store_exists(store).await
        }
        async fn store_config(&self, store: &str) -> Result<StoreConfig> {
            self.inner.store_config(store).await
        }
        async fn update_store_config(&self, config: &StoreConfig) -> Result<()> {
            self.inner.update_store_config(config).await
        }
        async fn store_info(&self, store: &str) -> Result<crate::StoreInfo> {
            self.inner.store_info(store).await
        }
        async fn file_states(&self, store: &str) -> Result<Vec<FileState>> {
            self.inner.file_states(store).await
        }
        async fn write(&self, store: &str, batch: WriteBatch) -> Result<()> {
            if self.ok_writes.fetch_sub(1, Ordering::SeqCst) == 0 {
                self.ok_writes.store(0, Ordering::SeqCst);
                return Err(Error::Backend { backend: "failing".into(), message: "disk full".into(), source: None });
            }
            self.inner.write(store, batch).await
        }
        async fn query(&self, store: &str, request: &crate::QueryRequest) -> Result<Vec<crate::Hit>> {
            self.inner.query(store, request).await
        }
    }

    #[tokio::test]
    async fn a_failed_write_ends_the_run_with_its_error_and_keeps_what_landed() {
        let s = Setup::new();
        for i in 0..6 {
            s.write(&format!("f{i}.md"), &format!("note number {i}"));
        }
        let backend = Arc::new(FailingWrites { inner: MemoryBackend::new(), ok_writes: AtomicUsize::new(2) });
        let found = discover(&[".".into()], &DiscoverOptions::new(s.dir.path())).unwrap();
        let indexer = Indexer::new(s.embedder.clone(), backend.clone(), Arc::new(TextChunker::default()));
        let err = indexer.index("notes", &found, &IndexOptions::default(), &NoProgress).await.unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        let kept = backend.inner.file_states("notes").await.unwrap();
        assert_eq!(kept.len(), 2, "the two writes that landed stay: {kept:?}");
    }

    #[tokio::test]
    async fn binary_and_empty_files_are_skipped_with_reasons() {
        let s = Setup::new();
        s.write("good.md", "words");
        s.write("empty.md", "");
        std::fs::write(s.dir.path().join("blob.txt"), b"\x00\x01binary").unwrap();
        let report = s.index().await;
        assert_eq!(report.new, ["good.md"]);
        let skipped: Vec<&str> = report.skipped.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(skipped, ["blob.txt", "empty.md"]);
        assert!(report.skipped[0].reason.contains("binary"));
    }

    #[tokio::test]
    async fn a_dry_run_plans_without_writing() {
        let s = Setup::new();
        s.write("a.md", "words");
        let plan = s.index_with(IndexOptions { dry_run: true, ..IndexOptions::default() }, 60).await.unwrap();
        assert_eq!((plan.new.len(), plan.chunks_embedded), (1, 1));
        assert_eq!(s.embedded(), 0);
        assert!(!s.backend.store_exists("notes").await.unwrap());
    }

    #[tokio::test]
    async fn another_model_is_refused_naming_both() {
        let s = Setup::new();
        s.write("a.md", "words");
        s.index().await;
        let other = Arc::new(WordEmbedder { model: Some("bigger".into()), ..WordEmbedder::default() });
        let found = discover(&[".".into()], &DiscoverOptions::new(s.dir.path())).unwrap();
        let err = Indexer::new(other.clone(), s.backend.clone(), Arc::new(TextChunker::default()))
            .index("notes", &found, &IndexOptions::default(), &NoProgress)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"words\"") && text.contains("\"bigger\""), "{text}");
        let err = Querier::new(other, s.backend.clone()).query("notes", "q", 1).await.unwrap_err();
        assert!(matches!(err, Error::ModelMismatch { .. }));
    }

    #[tokio::test]
    async fn an_unreachable_embedder_stops_the_run_with_its_message() {
        use crate::mock::MockEmbedder;
        let s = Setup::new();
        s.write("a.md", "words");
        let mut embedder = MockEmbedder::new();
        embedder.expect_model().return_const("m".to_string());
        embedder.expect_dimension().return_const(4usize);
        embedder.expect_max_batch_size().return_const(8usize);
        embedder.expect_max_concurrency().return_const(1usize);
        embedder.expect_embed_documents().times(1).returning(|_| {
            Err(Error::EmbedderUnreachable {
                endpoint: "http://x".into(),
                reason: "refused".into(),
                hint: "start it".into(),
            })
        });
        let found = discover(&[".".into()], &DiscoverOptions::new(s.dir.path())).unwrap();
        let err = Indexer::new(Arc::new(embedder), s.backend.clone(), Arc::new(TextChunker::default()))
            .index("notes", &found, &IndexOptions::default(), &NoProgress)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::EmbedderUnreachable { .. }), "{err}");
    }
}
