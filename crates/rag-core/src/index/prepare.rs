//! Preparing one file off the async runtime: read, hash, compare with the
//! store, decode and chunk, each failure confined to its file.

use std::path::Path;

use crate::backend::VectorBackend;
use crate::chunk::Chunker;
use crate::source::{Document, Source, SourceError, SourceItem};
use crate::types::{Chunk, FileState, UnreadableFile, chunk_key};

use super::report::ProblemKind;

/// The end of a [`ProblemKind::NotReadAgain`] reason.
pub(super) const NOT_READ_AGAIN: &str = " (unchanged since, so not read again)";

/// Event sent from the file-reading thread to the embedding loop.
pub(super) enum FileEvent {
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

pub(super) struct PreparedFile {
    pub(super) path: String,
    pub(super) title: Option<String>,
    pub(super) chunks: Vec<Chunk>,
    pub(super) old_keys: Vec<String>,
    pub(super) is_new: bool,
    pub(super) notes: Vec<String>,
}

/// What the store knows of a file before this run.
#[derive(Clone, Copy)]
pub(super) struct Known<'a> {
    pub(super) state: Option<&'a FileState>,
    pub(super) unreadable: Option<&'a UnreadableFile>,
}

/// What turns an item's bytes into chunks, and the backend that must be
/// able to store them.
#[derive(Clone, Copy)]
pub(super) struct Readers<'a> {
    pub(super) chunker: &'a dyn Chunker,
    pub(super) source: &'a dyn Source,
    pub(super) backend: &'a dyn VectorBackend,
}

/// How much of one file a run takes.
#[derive(Clone, Copy)]
pub(super) struct Limits {
    pub(super) max_file_size: u64,
    pub(super) max_file_chunks: usize,
}

/// Reads, hashes and chunks one item, deciding whether it needs embedding.
pub(super) fn prepare(
    item: &SourceItem,
    Known { state, unreadable }: Known<'_>,
    rechunk_all: bool,
    Limits { max_file_size, max_file_chunks }: Limits,
    Readers { chunker, source, backend }: Readers<'_>,
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
        Err(SourceError::Secret(reason)) => {
            return FileEvent::Skipped { path, reason, old_keys, kind: ProblemKind::Secret };
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
        Ok(Err(SourceError::Secret(reason))) => {
            return FileEvent::Skipped { path, reason, old_keys, kind: ProblemKind::Secret };
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
    if pieces.len() > max_file_chunks {
        let reason = format!("would make {} chunks, more than the {max_file_chunks} a file may have", pieces.len());
        return FileEvent::Skipped { path, reason, old_keys, kind: ProblemKind::TooManyChunks };
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
        .collect::<Vec<Chunk>>();
    // A chunk the store cannot hold fails its file here, not a whole write.
    if let Some((chunk, reason)) = chunks.iter().find_map(|c| backend.refuses(c).map(|r| (c, r))) {
        return failed(path, format!("chunk {} cannot be stored: {reason}", chunk.chunk_index));
    }
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
pub(super) fn unreadable_file(path: String, content_hash: String, reason: String, reader: &str) -> FileEvent {
    let record = UnreadableFile { path: path.clone(), content_hash, reason: reason.clone(), reader: reader.into() };
    FileEvent::Failed { path, reason, kind: ProblemKind::Unreadable, unreadable: Some(record) }
}

/// A file that failed for a passing reason (I/O): read again next run.
pub(super) fn failed(path: String, reason: String) -> FileEvent {
    FileEvent::Failed { path, reason, kind: ProblemKind::Failed, unreadable: None }
}

/// A chunk's metadata: the file's (front matter, title) with the chunk's own
/// on top; tags are the union of both.
pub(super) fn merge_metadata(file: &crate::types::Metadata, chunk: crate::types::Metadata) -> crate::types::Metadata {
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
