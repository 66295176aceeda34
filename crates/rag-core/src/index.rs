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
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::source::{Document, Source, SourceError, SourceItem};
use crate::types::{
    Chunk, DocText, FileState, Metric, StoreConfig, UnreadableFile, VectorRecord, WriteBatch, chunk_key, now_unix,
    validate_store_name,
};

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
    /// Over the run's size limit ([`IndexOptions::max_file_size`]); skipped.
    TooLarge,
    /// Its content cannot be decoded; the store remembers it until it changes.
    Unreadable,
    /// Remembered as unreadable and unchanged since, so not read again
    /// ([`IndexOptions::force`] reads it anyway).
    NotReadAgain,
    /// It could not be read or embedded this time; the next run tries again.
    Failed,
    /// Indexed, with a caveat (lossy decoding).
    Note,
}

/// The end of a [`ProblemKind::NotReadAgain`] reason.
const NOT_READ_AGAIN: &str = " (unchanged since, so not read again)";

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
}

/// Event sent from the file-reading thread to the embedding loop.
enum FileEvent {
    Unchanged(String),
    Skipped {
        path: String,
        reason: String,
        old_keys: Vec<String>,
        kind: ProblemKind,
    },
    /// `unreadable` is set when the content itself cannot be read (not a
    /// passing I/O error or an embedder's refusal): the store remembers it.
    Failed {
        path: String,
        reason: String,
        kind: ProblemKind,
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
        Self { embedder, backend, chunker }
    }

    /// Indexes the items of `source` into `store`, creating the store if
    /// needed. Stored items the source [covers](Source::covers) but no longer
    /// lists are deleted (unless `options.prune` is off).
    ///
    /// Errors that make every further file fail (embedder unreachable, model
    /// missing, backend failure) end the run with an error after the files
    /// already embedded are written; any other problem with a file is recorded
    /// in the report and the run goes on.
    pub async fn index(
        &self,
        store: &str,
        source: Arc<dyn Source>,
        options: &IndexOptions,
        observer: &dyn IndexObserver,
    ) -> Result<IndexReport> {
        let mut began = false;
        let result = self.run(store, source, options, observer, &mut began).await;
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
        source: Arc<dyn Source>,
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
        let items = source.items();
        let found: HashSet<&str> = items.iter().map(|item| item.path.as_str()).collect();
        let removed: Vec<&FileState> = if options.prune {
            let mut removed: Vec<&FileState> =
                states.values().filter(|s| !found.contains(s.path.as_str()) && source.covers(&s.path)).collect();
            removed.sort_by(|a, b| a.path.cmp(&b.path));
            removed
        } else {
            Vec::new()
        };

        observer.planned(items.len());
        let (tx, rx) = mpsc::channel(16);
        // Reading, hashing, extracting and chunking run on every core; the
        // events reach the embedding loop as files finish.
        let producer = {
            let files = Arc::new(items.clone());
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let states = Arc::new(states.clone());
            let known = Arc::new(if options.force { HashMap::new() } else { known_unreadable.clone() });
            let max_file_size = options.max_file_size;
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let (files, next, states, known, chunker, source, tx) = (
                        files.clone(),
                        next.clone(),
                        states.clone(),
                        known.clone(),
                        Arc::clone(&self.chunker),
                        Arc::clone(&source),
                        tx.clone(),
                    );
                    tokio::task::spawn_blocking(move || {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(file) = files.get(i) else { break };
                            let known = Known { state: states.get(&file.path), unreadable: known.get(&file.path) };
                            let readers = Readers { chunker: chunker.as_ref(), source: source.as_ref() };
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
                .filter(|path| found.contains(path.as_str()) || source.covers(path))
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

/// What turns an item's bytes into chunks.
#[derive(Clone, Copy)]
struct Readers<'a> {
    chunker: &'a dyn Chunker,
    source: &'a dyn Source,
}

/// Reads, hashes and chunks one item, deciding whether it needs embedding.
fn prepare(
    item: &SourceItem,
    Known { state, unreadable }: Known<'_>,
    rechunk_all: bool,
    max_file_size: u64,
    Readers { chunker, source }: Readers<'_>,
) -> FileEvent {
    let path = item.path.clone();
    let old_keys = state.map(|s| s.keys.clone()).unwrap_or_default();
    let reader = source.reader();
    let bytes = match source.read(item, max_file_size) {
        Ok(bytes) => bytes,
        Err(err @ SourceError::TooLarge { .. }) => {
            return FileEvent::Skipped { path, reason: err.to_string(), old_keys, kind: ProblemKind::TooLarge };
        }
        Err(SourceError::Skip(reason)) => {
            return FileEvent::Skipped { path, reason, old_keys, kind: ProblemKind::Skipped };
        }
        Err(err) => return failed(path, format!("cannot read: {err}")),
    };
    let hash = blake3::hash(&bytes).to_hex().to_string();
    if !rechunk_all && state.and_then(|s| s.content_hash.as_deref()) == Some(hash.as_str()) {
        return FileEvent::Unchanged(path);
    }
    if let Some(known) = unreadable.filter(|u| u.content_hash == hash && u.reader == reader) {
        return FileEvent::Failed {
            reason: format!("{}{NOT_READ_AGAIN}", known.reason),
            kind: ProblemKind::NotReadAgain,
            path,
            unreadable: Some(known.clone()),
        };
    }
    // A reader or chunker that panics on hostile input fails this item only,
    // named, and the store remembers it until it changes.
    let crashed = |stage: &str, panic: Box<dyn std::any::Any + Send>| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        let reason = format!("the {stage} crashed on this file ({message}); it is skipped until it changes");
        unreadable_file(path.clone(), hash.clone(), reason, reader)
    };
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source.decode(item, &bytes)));
    let document = match decoded {
        Err(panic) => return crashed("reader", panic),
        Ok(Ok(document)) => document,
        Ok(Err(SourceError::Skip(reason))) => {
            return FileEvent::Skipped { path, reason, old_keys, kind: ProblemKind::Skipped };
        }
        // A damaged or locked document fails (exit status 1); its old chunks
        // stay, and the store remembers it so it is read again only once it changes.
        Ok(Err(SourceError::Unreadable(reason))) => return unreadable_file(path, hash, reason, reader),
        Ok(Err(err)) => return failed(path, format!("cannot read: {err}")),
    };
    let Some(body_text) = document.text.get(document.body.clone()) else {
        let reason = format!("the reader returned a body range {:?} outside its text", document.body);
        return unreadable_file(path, hash, reason, reader);
    };
    let body = document.body.clone();
    let chunked =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| chunker.chunk(body_text, &path, &document.language)));
    let pieces = match chunked {
        Ok(pieces) => pieces,
        Err(panic) => return crashed("chunker", panic),
    };
    if pieces.is_empty() {
        return FileEvent::Skipped {
            path,
            reason: "no text to index (empty file)".into(),
            old_keys,
            kind: ProblemKind::Skipped,
        };
    }
    let lines = crate::chunk::LineIndex::new(&document.text);
    let total = pieces.len();
    let chunks = pieces
        .into_iter()
        .enumerate()
        .map(|(index, mut piece)| {
            let (byte_start, byte_end) = (body.start + piece.byte_start, body.start + piece.byte_end);
            if !document.sections.is_empty() {
                piece.metadata.extend(document.location(byte_start..byte_end));
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
                language: document.language.clone(),
                metadata: merge_metadata(&document.metadata, piece.metadata),
            }
        })
        .collect();
    let title = document
        .metadata
        .get("title")
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .or_else(|| Path::new(&path).file_stem().map(|s| s.to_string_lossy().into_owned()));
    let Document { notes, .. } = document;
    FileEvent::Prepared(PreparedFile { title, is_new: state.is_none(), path, chunks, old_keys, notes })
}

/// A file whose content this reader cannot read: it fails, and the store
/// remembers it with its hash so it is read again only once it changes.
fn unreadable_file(path: String, content_hash: String, reason: String, reader: &str) -> FileEvent {
    let record = UnreadableFile { path: path.clone(), content_hash, reason: reason.clone(), reader: reader.into() };
    FileEvent::Failed { path, reason, kind: ProblemKind::Unreadable, unreadable: Some(record) }
}

/// A file that failed for a passing reason (I/O): read again next run.
fn failed(path: String, reason: String) -> FileEvent {
    FileEvent::Failed { path, reason, kind: ProblemKind::Failed, unreadable: None }
}

/// A chunk's metadata: the file's (front matter, title) with the chunk's own
/// on top; tags are the union of both.
fn merge_metadata(file: &crate::types::Metadata, chunk: crate::types::Metadata) -> crate::types::Metadata {
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
        FileEvent::Skipped { path, reason, old_keys, kind } => {
            observer.file_done(&path);
            // The file can no longer be indexed: its old chunks would be stale.
            match writer {
                Some(writer) => writer.delete(old_keys),
                None => report.chunks_deleted += old_keys.len(),
            }
            report.skipped.push(FileProblem { path, reason, kind });
        }
        FileEvent::Failed { path, reason, kind, unreadable: record } => {
            observer.file_done(&path);
            report.failed.push(FileProblem { path, reason, kind });
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
        report.failed.push(FileProblem { path: file.path, reason, kind: ProblemKind::Failed });
        return;
    }
    let live: HashSet<&str> = file.chunks.iter().map(|c| c.key.as_str()).collect();
    let stale: Vec<String> = file.old_keys.iter().filter(|k| !live.contains(k.as_str())).cloned().collect();
    report.chunks_embedded += file.chunks.len();
    for note in file.notes {
        report.notes.push(FileProblem { path: file.path.clone(), reason: note, kind: ProblemKind::Note });
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
    use crate::memory::MemoryBackend;
    use crate::prelude::{LineIndex, Metadata, Querier, TextChunk};
    use crate::source::{Location, MemorySource, Section};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts letters; counts the texts it embeds.
    #[derive(Default)]
    struct Letters(AtomicUsize);

    #[async_trait]
    impl Embedder for Letters {
        fn model(&self) -> &str {
            "letters"
        }
        fn dimension(&self) -> usize {
            3
        }
        async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
            self.0.fetch_add(docs.len(), Ordering::SeqCst);
            Ok(docs.iter().map(|d| self.letters(&d.text)).collect())
        }
        async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
            Ok(self.letters(query))
        }
    }

    impl Letters {
        fn letters(&self, text: &str) -> Vec<f32> {
            "aeo".chars().map(|l| text.chars().filter(|c| *c == l).count() as f32 + 0.1).collect()
        }
    }

    /// One chunk per blank-line-separated paragraph.
    struct Paragraphs;

    impl Chunker for Paragraphs {
        fn chunk(&self, text: &str, _path: &str, _language: &str) -> Vec<TextChunk> {
            let lines = LineIndex::new(text);
            let mut start = 0;
            let mut out = Vec::new();
            for part in text.split_inclusive("\n\n") {
                let (byte_start, byte_end) = (start, start + part.len());
                start = byte_end;
                if !part.trim().is_empty() {
                    out.push(TextChunk {
                        text: part.trim().into(),
                        byte_start,
                        byte_end,
                        line_start: lines.line_of(byte_start),
                        line_end: lines.line_of(byte_end - 1),
                        metadata: Metadata::new(),
                    });
                }
            }
            out
        }
        fn settings(&self) -> String {
            "paragraphs".into()
        }
    }

    struct Setup {
        embedder: Arc<Letters>,
        backend: Arc<MemoryBackend>,
    }

    impl Setup {
        fn new() -> Self {
            Self { embedder: Arc::default(), backend: Arc::default() }
        }
        async fn index(&self, source: impl Source + 'static) -> IndexReport {
            Indexer::new(self.embedder.clone(), self.backend.clone(), Arc::new(Paragraphs))
                .index("notes", Arc::new(source), &IndexOptions::default(), &NoProgress)
                .await
                .unwrap()
        }
        async fn paths(&self) -> Vec<String> {
            self.backend.file_states("notes").await.unwrap().into_iter().map(|s| s.path).collect()
        }
    }

    #[tokio::test]
    async fn documents_in_memory_are_indexed_incrementally_and_pruned_within_what_the_source_covers() {
        let s = Setup::new();
        let mut inbox = MemorySource::covering("inbox/");
        inbox.insert("inbox/a", Document::new("oat\n\nsea", "text"));
        inbox.insert("inbox/b", Document::new("bee", "text"));
        let mut archive = MemorySource::covering("archive/");
        archive.insert("archive/c", Document::new("old", "text"));
        assert_eq!(s.index(inbox.clone()).await.new, ["inbox/a", "inbox/b"]);
        assert_eq!(s.index(archive).await.new, ["archive/c"]);
        assert_eq!(s.embedder.0.load(Ordering::SeqCst), 4);

        let again = s.index(inbox.clone()).await;
        assert_eq!((again.unchanged, s.embedder.0.load(Ordering::SeqCst)), (2, 4), "nothing re-embedded");

        inbox.insert("inbox/b", Document::new("bee\n\nhive", "text"));
        inbox.remove("inbox/a");
        let changed = s.index(inbox).await;
        assert_eq!((changed.changed, changed.removed), (vec!["inbox/b".to_string()], vec!["inbox/a".to_string()]));
        assert_eq!(s.paths().await, ["archive/c", "inbox/b"], "the archive is outside the inbox source");
    }

    #[tokio::test]
    async fn chunks_take_their_location_from_the_sections_they_overlap() {
        let s = Setup::new();
        let text = "# Page 1\n\nfirst\n\n# Page 2\n\nsecond\n";
        let page_two = text.find("# Page 2").unwrap();
        let sections = vec![
            Section { range: 0..page_two, location: Location::Page(1) },
            Section { range: page_two..text.len(), location: Location::Page(2) },
        ];
        let mut source = MemorySource::new();
        source.insert("report.pdf", Document::new(text, "markdown").with_sections(sections));
        s.index(source).await;
        let hits = Querier::new(s.embedder.clone(), s.backend.clone()).query("notes", "x", 10).await.unwrap();
        let second = hits.iter().find(|h| h.chunk.text == "second").unwrap();
        assert_eq!(
            (second.chunk.metadata["page_start"].as_u64(), second.chunk.metadata["page_end"].as_u64()),
            (Some(2), Some(2))
        );
        let first = hits.iter().find(|h| h.chunk.text == "first").unwrap();
        assert_eq!(first.chunk.metadata["page_start"].as_u64(), Some(1));
    }

    /// A source whose decoder panics on one item and refuses another.
    struct Hostile(MemorySource);

    impl Source for Hostile {
        fn items(&self) -> Vec<SourceItem> {
            self.0.items()
        }
        fn covers(&self, path: &str) -> bool {
            self.0.covers(path)
        }
        fn read(&self, item: &SourceItem, max_bytes: u64) -> std::result::Result<Vec<u8>, SourceError> {
            self.0.read(item, max_bytes)
        }
        fn decode(&self, item: &SourceItem, bytes: &[u8]) -> std::result::Result<Document, SourceError> {
            match item.path.as_str() {
                "panics" => panic!("slice index starts at 7 but ends at 3"),
                "locked" => Err(SourceError::Unreadable("password-protected".into())),
                "bad-range" => Ok(Document { body: 0..999, ..Document::new("short", "text") }),
                _ => self.0.decode(item, bytes),
            }
        }
    }

    #[tokio::test]
    async fn a_decoder_that_panics_or_refuses_fails_its_item_only_and_is_remembered() {
        let s = Setup::new();
        let mut inner = MemorySource::new();
        for path in ["fine", "panics", "locked", "bad-range"] {
            inner.insert(path, Document::new(format!("text of {path}"), "text"));
        }
        let report = s.index(Hostile(inner.clone())).await;
        assert_eq!(report.new, ["fine"]);
        let failed: Vec<(&str, &str)> = report.failed.iter().map(|f| (f.path.as_str(), f.reason.as_str())).collect();
        assert_eq!(failed.len(), 3, "{failed:?}");
        assert!(failed[0].0 == "bad-range" && failed[0].1.contains("outside its text"), "{failed:?}");
        assert!(failed[1].0 == "locked" && failed[1].1 == "password-protected", "{failed:?}");
        assert!(failed[2].0 == "panics" && failed[2].1.contains("slice index starts at 7"), "{failed:?}");
        let remembered = s.backend.unreadable_files("notes").await.unwrap();
        assert_eq!(remembered.len(), 3);
        let again = s.index(Hostile(inner)).await;
        assert!(again.failed.iter().all(|f| f.reason.contains("not read again")), "{:?}", again.failed);
    }

    #[test]
    fn halving_cuts_at_a_break_near_the_middle() {
        assert_eq!(halve("aaaa bbbb"), ("aaaa ", "bbbb"));
        assert_eq!(halve("one\ntwo three"), ("one\n", "two three"));
        let (a, b) = halve("ééééé");
        assert_eq!(format!("{a}{b}"), "ééééé");
        assert!(!a.is_empty() && !b.is_empty());
    }
}
