//! The indexing pipeline: files in, chunks embedded and stored, incrementally.
//!
//! [`Indexer`] runs the pipeline: `prepare.rs` reads, hashes, decodes and
//! chunks each file on a blocking thread; the loop in `mod.rs` embeds chunks
//! in batches (`embed.rs`) and hands finished files to the writer
//! (`write.rs`).

mod embed;
mod options;
mod prepare;
mod report;
mod write;

pub use options::IndexOptions;
pub use report::{FileProblem, IndexObserver, IndexReport, NoProgress, ProblemKind};

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::backend::VectorBackend;
use crate::chunk::Chunker;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::source::Source;
use crate::types::{DocText, FileState, StoreConfig, UnreadableFile, check_model, now_unix, validate_store_name};

use embed::{embed_isolating, embedding_text};
use prepare::{FileEvent, Known, Limits, Readers, prepare};
use write::{PendingFile, PendingWrites, finish_file, record_event};

/// Indexes the items of a [`Source`] into a store: reads and chunks each
/// changed item, embeds chunks in batches and writes files as they complete.
///
/// Re-running on the same files re-embeds only what changed (by content
/// hash), replaces the chunks of changed files, and deletes the chunks of
/// files that disappeared from the patterns.
pub struct Indexer {
    /// `None` for a planner, which only says what a run would do.
    embedder: Option<Arc<dyn Embedder>>,
    backend: Arc<dyn VectorBackend>,
    chunker: Arc<dyn Chunker>,
    options: IndexOptions,
}

type BatchItems = Vec<(usize, usize)>;
type BatchOutcome = (BatchItems, Result<Vec<Result<Vec<f32>>>>);

/// How a writing run embeds its chunks.
#[derive(Clone, Copy)]
struct Embedding<'a> {
    embedder: &'a Arc<dyn Embedder>,
    /// Each chunk embedded with its heading path in front.
    with_headings: bool,
}

impl Indexer {
    /// A pipeline over an embedder, a backend and a chunker, with the
    /// default [`IndexOptions`].
    pub fn new(embedder: Arc<dyn Embedder>, backend: Arc<dyn VectorBackend>, chunker: Arc<dyn Chunker>) -> Self {
        Self { embedder: Some(embedder), backend, chunker, options: IndexOptions::default() }
    }

    /// An indexer with no embedder, that can only [`plan`](Self::plan): what
    /// `rag index --dry-run` and the MCP `index_status` tool use, so that
    /// saying what changed needs no model. [`index`](Self::index) on it is
    /// refused.
    pub fn planner(backend: Arc<dyn VectorBackend>, chunker: Arc<dyn Chunker>) -> Self {
        Self { embedder: None, backend, chunker, options: IndexOptions::default() }
    }

    /// The same pipeline with other settings.
    pub fn with_options(mut self, options: IndexOptions) -> Self {
        self.options = options;
        self
    }

    /// The settings every run of this indexer uses.
    pub fn options(&self) -> &IndexOptions {
        &self.options
    }

    /// Indexes the items of `source` into `store`, creating the store if
    /// needed. Stored items the source [covers](Source::covers) but no longer
    /// lists are deleted (unless [`IndexOptions::prune`] is off).
    ///
    /// Errors that make every further file fail (embedder unreachable, model
    /// missing, backend failure) end the run with an error after the files
    /// already embedded are written; any other problem with a file is recorded
    /// in the report and the run goes on.
    pub async fn index(&self, store: &str, source: Arc<dyn Source>) -> Result<IndexReport> {
        self.index_observed(store, source, &NoProgress).await
    }

    /// Like [`index`](Self::index), telling `observer` how the run goes.
    pub async fn index_observed(
        &self,
        store: &str,
        source: Arc<dyn Source>,
        observer: &dyn IndexObserver,
    ) -> Result<IndexReport> {
        let Some(embedder) = &self.embedder else {
            return Err(Error::InvalidInput(
                "this indexer has no embedder (Indexer::planner): it can only plan".into(),
            ));
        };
        let settings = self.chunker.settings();
        if self.existing(store).await?.is_none() {
            let config = StoreConfig::new(store, embedder.model(), embedder.dimension())
                .with_metric(self.options.metric)
                .with_chunking(settings.clone());
            match self.backend.create_store(&config).await {
                // Another writer made it first: it is read below, under the lock.
                Ok(()) | Err(Error::StoreExists { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        // One writer at a time: the lock is held from here until the run
        // ends, whatever its outcome. What the store holds is read under it,
        // so a writer that waited sees what the one before it wrote.
        let lock = self.backend.lock_for_writing(store).await?;
        let result = async {
            let existing = self.existing(store).await?;
            let chunker = self.chunker_for(existing.as_ref());
            let settings = chunker.settings();
            if let Some(config) = existing.as_ref().filter(|c| c.chunking != settings) {
                self.backend.update_store_config(&StoreConfig { chunking: settings.clone(), ..config.clone() }).await?;
            }
            self.run(store, existing.as_ref(), source, observer, chunker, Some(embedder)).await
        }
        .await;
        lock.release().await;
        result
    }

    /// What [`index`](Self::index) would do, without embedding, writing or
    /// creating anything: the report lists the new, changed, unchanged,
    /// removed, skipped and failing files, and `chunks_embedded` and
    /// `chunks_deleted` count what would be.
    pub async fn plan(&self, store: &str, source: Arc<dyn Source>) -> Result<IndexReport> {
        let existing = self.existing(store).await?;
        let chunker = self.chunker_for(existing.as_ref());
        self.run(store, existing.as_ref(), source, &NoProgress, chunker, None).await
    }

    /// The chunker of a run on a store with settings `existing`: the store's
    /// own where [`IndexOptions::keep_store_chunking`] asks and the chunker
    /// can make it, this indexer's otherwise.
    fn chunker_for(&self, existing: Option<&StoreConfig>) -> Arc<dyn Chunker> {
        match existing {
            Some(config) if self.options.keep_store_chunking && config.chunking != self.chunker.settings() => {
                self.chunker.with_settings(&config.chunking).unwrap_or_else(|| Arc::clone(&self.chunker))
            }
            _ => Arc::clone(&self.chunker),
        }
    }

    /// The store's settings when it exists, after refusing another model
    /// (when there is an embedder to compare).
    async fn existing(&self, store: &str) -> Result<Option<StoreConfig>> {
        validate_store_name(store)?;
        if !self.backend.store_exists(store).await? {
            return Ok(None);
        }
        let config = self.backend.store_config(store).await?;
        if let Some(embedder) = &self.embedder {
            check_model(&config, embedder.as_ref())?;
        }
        Ok(Some(config))
    }

    async fn run(
        &self,
        store: &str,
        existing: Option<&StoreConfig>,
        source: Arc<dyn Source>,
        observer: &dyn IndexObserver,
        chunker: Arc<dyn Chunker>,
        // The embedder of a run that writes; `None` plans.
        embedder: Option<&Arc<dyn Embedder>>,
    ) -> Result<IndexReport> {
        let started = Instant::now();
        let options = &self.options;
        let dry_run = embedder.is_none();
        let settings = chunker.settings();
        let states: HashMap<String, FileState> = if existing.is_some() {
            self.backend.file_states(store).await?.into_iter().map(|s| (s.path.clone(), s)).collect()
        } else {
            HashMap::new()
        };
        let rechunk_all = options.force || existing.is_some_and(|c| c.chunking != settings);
        let known_unreadable: HashMap<String, UnreadableFile> = if existing.is_some() {
            self.backend.unreadable_files(store).await?.into_iter().map(|u| (u.path.clone(), u)).collect()
        } else {
            HashMap::new()
        };
        let mut unreadable: Vec<UnreadableFile> = Vec::new();

        let mut report = IndexReport {
            store: store.to_string(),
            dry_run,
            rechunked_from: existing.filter(|c| c.chunking != settings).map(|c| c.chunking.clone()),
            ..IndexReport::default()
        };
        let items = source.items();
        let found: HashSet<&str> = items.iter().map(|item| item.path.as_str()).collect();
        // Stored files the source no longer lists: deleted where it covers
        // them, kept (and said) where it cannot see them.
        let mut removed: Vec<&FileState> = Vec::new();
        for state in states.values().filter(|s| !found.contains(s.path.as_str())) {
            if let Some(reason) = source.keeps(&state.path) {
                report.kept.push(FileProblem { path: state.path.clone(), reason, kind: ProblemKind::Kept });
            } else if options.prune && source.covers(&state.path) {
                removed.push(state);
            }
        }
        removed.sort_by(|a, b| a.path.cmp(&b.path));
        report.kept.sort_by(|a, b| a.path.cmp(&b.path));
        if !dry_run {
            check_removal(store, removed.len(), states.len(), options)?;
        }

        observer.planned(items.len());
        let (tx, rx) = mpsc::channel(16);
        // Reading, hashing, extracting and chunking run on every core; the
        // events reach the embedding loop as files finish.
        let producer = {
            let files = Arc::new(items.clone());
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let states = Arc::new(states.clone());
            let known = Arc::new(if options.force { HashMap::new() } else { known_unreadable.clone() });
            let limits = Limits { max_file_size: options.max_file_size, max_file_chunks: options.max_file_chunks };
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let (files, next, states, known, chunker, source, backend, tx) = (
                        files.clone(),
                        next.clone(),
                        states.clone(),
                        known.clone(),
                        Arc::clone(&chunker),
                        Arc::clone(&source),
                        Arc::clone(&self.backend),
                        tx.clone(),
                    );
                    tokio::task::spawn_blocking(move || {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(file) = files.get(i) else { break };
                            let known = Known { state: states.get(&file.path), unreadable: known.get(&file.path) };
                            let readers = Readers {
                                chunker: chunker.as_ref(),
                                source: source.as_ref(),
                                backend: backend.as_ref(),
                            };
                            let event = prepare(file, known, rechunk_all, limits, readers);
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
        let result = match embedder {
            None => self.tally(rx, &mut report, &mut unreadable, observer).await,
            Some(embedder) => {
                let embedding = Embedding { embedder, with_headings: options.embed_headings };
                self.embed_and_write(rx, embedding, &mut writer, &mut report, &mut unreadable, observer).await
            }
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
            if dry_run {
                report.chunks_deleted += state.keys.len();
            } else {
                writer.delete(state.keys.clone());
            }
        }
        if !dry_run {
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

    async fn tally(
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
        Embedding { embedder, with_headings }: Embedding<'_>,
        writer: &mut PendingWrites,
        report: &mut IndexReport,
        unreadable: &mut Vec<UnreadableFile>,
        observer: &dyn IndexObserver,
    ) -> Result<()> {
        let batch_size = embedder.max_batch_size().max(1);
        let concurrency = embedder.max_concurrency().max(1);
        let dimension = embedder.dimension();
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
                        DocText::new(file.title.clone(), embedding_text(&file.chunks[index], with_headings))
                    })
                    .collect();
                let embedder = Arc::clone(embedder);
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
                                    context: format!("embedder {:?} (for {})", embedder.model(), entry.file.path),
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

/// Fewest deletions a run is refused for (with more than half of a store's
/// files, unless [`IndexOptions::allow_mass_removal`]): small stores and
/// ordinary clean-ups are never stopped.
pub const MASS_REMOVAL_MIN_FILES: usize = 20;

/// Refuses a run that would delete the chunks of more than half of a store's
/// files (and at least [`MASS_REMOVAL_MIN_FILES`]) unless
/// [`IndexOptions::allow_mass_removal`] says so: a wrong root or a lost mount
/// should not empty a store, as rsync's `--max-delete` guards a mirror.
fn check_removal(store: &str, removing: usize, stored: usize, options: &IndexOptions) -> Result<()> {
    if options.allow_mass_removal || removing < MASS_REMOVAL_MIN_FILES || removing * 2 <= stored {
        return Ok(());
    }
    Err(Error::MassRemoval { store: store.to_string(), removing, stored })
}

#[cfg(test)]
mod tests;
