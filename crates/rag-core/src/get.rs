//! Reading back what a store holds: a hit's full text by key, or the chunks
//! over a file's lines, with neighbouring chunks for context.

use std::fmt;
use std::str::FromStr;

use crate::backend::VectorBackend;
use crate::error::{Error, Result};
use crate::types::{Chunk, chunk_key};

/// Most neighbouring chunks [`fetch`] adds on each side.
pub const MAX_CONTEXT: usize = 20;

/// Most chunks of one file [`fetch`] reads to find a line range.
pub const MAX_FILE_CHUNKS: usize = 10_000;

/// What to read from a store: a chunk by key, or the chunks over lines of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkRef {
    /// A chunk's key, as hits carry it (`notes/tea.md#3`).
    Key(String),
    /// The chunks of `path` overlapping lines `start..=end` (1-based).
    Lines {
        /// The file's stored name.
        path: String,
        /// First line, 1-based.
        start: usize,
        /// Last line, inclusive.
        end: usize,
    },
}

impl ChunkRef {
    /// The chunks of `path` over lines `start..=end` (1-based); refuses a
    /// range that starts at 0 or runs backwards.
    ///
    /// ```
    /// use rag_core::store::ChunkRef;
    /// assert!(ChunkRef::lines("a.md", 3, 5).is_ok());
    /// assert!(ChunkRef::lines("a.md", 5, 3).is_err());
    /// ```
    pub fn lines(path: impl Into<String>, start: usize, end: usize) -> Result<Self> {
        let path = path.into();
        if start == 0 || end < start {
            return Err(Error::InvalidInput(format!(
                "bad line range {start}-{end} of {path:?}: lines count from 1 and the range must not run backwards"
            )));
        }
        Ok(ChunkRef::Lines { path, start, end })
    }
}

impl FromStr for ChunkRef {
    type Err = Error;

    /// `FILE:START-END` or `FILE:LINE` is a line range; anything else a key.
    ///
    /// ```
    /// use rag_core::store::ChunkRef;
    /// assert_eq!("notes/tea.md#2".parse::<ChunkRef>().unwrap(), ChunkRef::Key("notes/tea.md#2".into()));
    /// assert_eq!(
    ///     "src/lib.rs:10-20".parse::<ChunkRef>().unwrap(),
    ///     ChunkRef::Lines { path: "src/lib.rs".into(), start: 10, end: 20 }
    /// );
    /// assert!("src/lib.rs:20-10".parse::<ChunkRef>().is_err());
    /// ```
    fn from_str(text: &str) -> Result<Self> {
        let lines = text.rsplit_once(':').and_then(|(path, range)| {
            let (start, end) = range.split_once('-').unwrap_or((range, range));
            Some((path, start.parse::<usize>().ok()?, end.parse::<usize>().ok()?))
        });
        match lines {
            Some((path, start, end)) if !path.is_empty() => ChunkRef::lines(path, start, end),
            _ if text.trim().is_empty() => Err(Error::InvalidInput("no chunk key or FILE:START-END given".into())),
            _ => Ok(ChunkRef::Key(text.to_string())),
        }
    }
}

impl fmt::Display for ChunkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkRef::Key(key) => f.write_str(key),
            ChunkRef::Lines { path, start, end } => write!(f, "{path}:{start}-{end}"),
        }
    }
}

/// Chunks read back from a store, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// The chunks asked for with their neighbours, by chunk index.
    pub chunks: Vec<Chunk>,
    /// Which of `chunks` were asked for (the rest are context).
    pub asked: std::ops::Range<usize>,
}

/// Reads `what` from `store`, with up to `context` neighbouring chunks of the
/// same file on each side (at most [`MAX_CONTEXT`]). Only what the store
/// holds is read, never the file on disk.
///
/// Errors name what is missing: a key the store does not hold, a file it
/// has no chunks of, a line range past the file's end, a path with `..`.
pub async fn fetch(backend: &dyn VectorBackend, store: &str, what: &ChunkRef, context: usize) -> Result<Fetched> {
    if context > MAX_CONTEXT {
        return Err(Error::InvalidInput(format!("context of {context} chunks is more than {MAX_CONTEXT}")));
    }
    let (path, asked) = match what {
        ChunkRef::Key(key) => {
            let chunk = backend.get_chunks(store, std::slice::from_ref(key)).await?.into_iter().next();
            let chunk = chunk.ok_or_else(|| Error::NotInStore {
                store: store.to_string(),
                what: format!("no chunk with key {key:?} (keys look like path#index)"),
            })?;
            (chunk.source_path.clone(), chunk.chunk_index..chunk.chunk_index + 1)
        }
        ChunkRef::Lines { path, start, end } => {
            if path.split(['/', '\\']).any(|part| part == "..") {
                return Err(Error::InvalidInput(format!(
                    "{path:?} has a '..' part; give the file's name as the store holds it (as hits show it)"
                )));
            }
            let first = backend.get_chunks(store, &[chunk_key(path, 0)]).await?.into_iter().next();
            let first = first
                .ok_or_else(|| Error::NotInStore { store: store.to_string(), what: format!("no file {path:?}") })?;
            let total = first.total_chunks.min(MAX_FILE_CHUNKS);
            let keys: Vec<String> = (0..total).map(|i| chunk_key(path, i)).collect();
            let chunks = backend.get_chunks(store, &keys).await?;
            let last_line = chunks.iter().map(|c| c.line_end).max().unwrap_or(0);
            let over: Vec<usize> =
                chunks.iter().filter(|c| c.line_start <= *end && *start <= c.line_end).map(|c| c.chunk_index).collect();
            let (Some(&low), Some(&high)) = (over.iter().min(), over.iter().max()) else {
                return Err(Error::NotInStore {
                    store: store.to_string(),
                    what: format!("lines {start}-{end} are past the end of {path:?}, which has {last_line} lines"),
                });
            };
            (path.clone(), low..high + 1)
        }
    };
    let from = asked.start.saturating_sub(context);
    let to = asked.end + context;
    let keys: Vec<String> = (from..to).map(|i| chunk_key(&path, i)).collect();
    let mut chunks = backend.get_chunks(store, &keys).await?;
    chunks.sort_by_key(|c| c.chunk_index);
    let start = chunks.iter().position(|c| c.chunk_index >= asked.start).unwrap_or(chunks.len());
    let end = chunks.iter().position(|c| c.chunk_index >= asked.end).unwrap_or(chunks.len());
    Ok(Fetched { chunks, asked: start..end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;
    use crate::types::{StoreConfig, VectorRecord};

    async fn store_of_one_file(chunks: usize) -> MemoryBackend {
        let backend = MemoryBackend::new();
        let config = StoreConfig::new("notes", "m", 2).with_chunking("c");
        backend.create_store(&config).await.unwrap();
        let records = (0..chunks)
            .map(|i| VectorRecord {
                chunk: Chunk {
                    key: chunk_key("a.md", i),
                    source_path: "a.md".into(),
                    chunk_index: i,
                    total_chunks: chunks,
                    line_start: i * 10 + 1,
                    line_end: i * 10 + 10,
                    byte_start: 0,
                    byte_end: 0,
                    text: format!("part {i}"),
                    content_hash: "h".into(),
                    language: "markdown".into(),
                    metadata: Default::default(),
                },
                vector: vec![1.0, i as f32],
                indexed_at: 0,
            })
            .collect();
        backend.put("notes", records).await.unwrap();
        backend
    }

    fn texts(fetched: &Fetched) -> Vec<&str> {
        fetched.chunks.iter().map(|c| c.text.as_str()).collect()
    }

    #[tokio::test]
    async fn a_key_comes_back_with_its_neighbours_and_lines_with_the_chunks_over_them() {
        let backend = store_of_one_file(5).await;
        let one = fetch(&backend, "notes", &"a.md#2".parse().unwrap(), 0).await.unwrap();
        assert_eq!((texts(&one), one.asked.clone()), (vec!["part 2"], 0..1));
        let around = fetch(&backend, "notes", &"a.md#0".parse().unwrap(), 2).await.unwrap();
        assert_eq!((texts(&around), around.asked.clone()), (vec!["part 0", "part 1", "part 2"], 0..1));
        let lines = fetch(&backend, "notes", &"a.md:15-25".parse().unwrap(), 1).await.unwrap();
        assert_eq!(texts(&lines), ["part 0", "part 1", "part 2", "part 3"]);
        assert_eq!(lines.asked, 1..3);
    }

    #[tokio::test]
    async fn what_the_store_does_not_hold_gets_a_clear_error() {
        let backend = store_of_one_file(2).await;
        let err = |what: &str, context| {
            let backend = &backend;
            let what = what.to_string();
            async move { fetch(backend, "notes", &what.parse().unwrap(), context).await.unwrap_err().to_string() }
        };
        assert!(err("b.md#0", 0).await.contains("no chunk with key \"b.md#0\""));
        assert!(err("b.md:1-2", 0).await.contains("no file \"b.md\""));
        assert!(err("a.md:50-60", 0).await.contains("past the end of \"a.md\", which has 20 lines"));
        assert!(err("../a.md:1-2", 0).await.contains("'..'"));
        assert!(err("a.md#0", 1000).await.contains("more than 20"));
        assert!("a.md:0-3".parse::<ChunkRef>().is_err() && "".parse::<ChunkRef>().is_err());
        assert!(fetch(&backend, "none", &"a.md#0".parse().unwrap(), 0).await.is_err());
    }
}
