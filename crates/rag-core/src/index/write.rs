//! From finished files to backend writes: the report's bookkeeping and the
//! batches of whole files written beside the embedding loop.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use crate::backend::VectorBackend;
use crate::error::{Error, Result};
use crate::index::{IndexObserver, IndexReport};
use crate::types::{UnreadableFile, VectorRecord, WriteBatch};

use super::prepare::{FileEvent, PreparedFile};
use super::report::{FileProblem, ProblemKind};

pub(super) struct PendingFile {
    pub(super) file: PreparedFile,
    pub(super) vectors: Vec<Option<Vec<f32>>>,
    pub(super) remaining: usize,
    pub(super) failure: Option<String>,
}

pub(super) fn record_event(
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

pub(super) fn finish_file(
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
pub(super) struct PendingWrites {
    pub(super) store: String,
    pub(super) batch: WriteBatch,
    pub(super) threshold: usize,
    pub(super) interval: std::time::Duration,
    pub(super) oldest: Option<Instant>,
    /// The write under way; it yields the number of keys it deleted.
    pub(super) writing: Option<tokio::task::JoinHandle<Result<usize>>>,
}

impl PendingWrites {
    pub(super) fn new(store: &str, threshold: usize, interval: std::time::Duration) -> Self {
        Self {
            store: store.to_string(),
            batch: WriteBatch::default(),
            threshold: threshold.max(1),
            interval,
            oldest: None,
            writing: None,
        }
    }

    pub(super) fn delete(&mut self, keys: Vec<String>) {
        self.touch();
        self.batch.deletes.extend(keys);
    }

    pub(super) fn upsert(&mut self, records: impl IntoIterator<Item = VectorRecord>) {
        self.touch();
        self.batch.upserts.extend(records);
    }

    pub(super) fn touch(&mut self) {
        self.oldest.get_or_insert_with(Instant::now);
    }

    /// Enough waits to be worth a write, or it has waited long enough.
    pub(super) fn is_full(&self) -> bool {
        self.batch.upserts.len() + self.batch.deletes.len() >= self.threshold
            || self.oldest.is_some_and(|t| t.elapsed() >= self.interval)
    }

    /// Starts writing what waits, once the previous write has landed.
    pub(super) async fn flush(&mut self, backend: &Arc<dyn VectorBackend>, report: &mut IndexReport) -> Result<()> {
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
    pub(super) async fn wait(&mut self, report: &mut IndexReport) -> Result<()> {
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
    pub(super) async fn finish(&mut self, backend: &Arc<dyn VectorBackend>, report: &mut IndexReport) -> Result<()> {
        self.flush(backend, report).await?;
        self.wait(report).await
    }
}
