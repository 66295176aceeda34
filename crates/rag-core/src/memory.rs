//! [`MemoryBackend`]: a [`VectorBackend`] in process memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::backend::VectorBackend;
use crate::error::{Error, Result};
use crate::lexical::Bm25;
use crate::search::{LexicalHit, LexicalRequest};
use crate::types::{
    FileState, Hit, Metric, QueryRequest, StoreConfig, StoreInfo, UnreadableFile, VectorRecord, WriteBatch,
};

/// Keeps stores in memory with exact search; for tests, examples and
/// short-lived programs. Nothing is persisted.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    stores: Mutex<BTreeMap<String, MemoryStore>>,
}

#[derive(Debug)]
struct MemoryStore {
    config: StoreConfig,
    records: HashMap<String, VectorRecord>,
    unreadable: BTreeMap<String, UnreadableFile>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_store<T>(&self, store: &str, f: impl FnOnce(&mut MemoryStore) -> Result<T>) -> Result<T> {
        let mut stores = self.stores.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = stores
            .get_mut(store)
            .ok_or_else(|| Error::StoreNotFound { store: store.to_string(), backend: "memory".into() })?;
        f(entry)
    }
}

#[async_trait]
impl VectorBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn create_store(&self, config: &StoreConfig) -> Result<()> {
        crate::types::validate_store_name(&config.name)?;
        let mut stores = self.stores.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if stores.contains_key(&config.name) {
            return Err(Error::StoreExists { store: config.name.clone(), backend: "memory".into() });
        }
        stores.insert(
            config.name.clone(),
            MemoryStore { config: config.clone(), records: HashMap::new(), unreadable: BTreeMap::new() },
        );
        Ok(())
    }

    async fn delete_store(&self, store: &str) -> Result<()> {
        let mut stores = self.stores.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        stores
            .remove(store)
            .map(|_| ())
            .ok_or_else(|| Error::StoreNotFound { store: store.to_string(), backend: "memory".into() })
    }

    async fn list_stores(&self) -> Result<Vec<String>> {
        Ok(self.stores.lock().unwrap_or_else(std::sync::PoisonError::into_inner).keys().cloned().collect())
    }

    async fn store_exists(&self, store: &str) -> Result<bool> {
        Ok(self.stores.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(store))
    }

    async fn store_config(&self, store: &str) -> Result<StoreConfig> {
        self.with_store(store, |s| Ok(s.config.clone()))
    }

    async fn update_store_config(&self, config: &StoreConfig) -> Result<()> {
        self.with_store(&config.name, |s| {
            if s.config.dimension != config.dimension || s.config.metric != config.metric {
                return Err(Error::InvalidInput(format!(
                    "store {:?}: dimension and metric are fixed at creation",
                    config.name
                )));
            }
            s.config = config.clone();
            Ok(())
        })
    }

    async fn get_chunks(&self, store: &str, keys: &[String]) -> Result<Vec<crate::types::Chunk>> {
        self.with_store(store, |s| Ok(keys.iter().filter_map(|k| s.records.get(k)).map(|r| r.chunk.clone()).collect()))
    }

    async fn store_info(&self, store: &str) -> Result<StoreInfo> {
        self.with_store(store, |s| {
            let files = s.records.values().map(|r| &r.chunk.source_path).collect::<std::collections::HashSet<_>>();
            let mut info = StoreInfo::new(s.config.clone(), "memory");
            info.files = Some(files.len() as u64);
            info.chunks = Some(s.records.len() as u64);
            info.unreadable_files = Some(s.unreadable.len() as u64);
            Ok(info)
        })
    }

    async fn file_states(&self, store: &str) -> Result<Vec<FileState>> {
        self.with_store(store, |s| {
            let mut by_file: BTreeMap<&str, Vec<&VectorRecord>> = BTreeMap::new();
            for record in s.records.values() {
                by_file.entry(&record.chunk.source_path).or_default().push(record);
            }
            Ok(by_file
                .into_iter()
                .map(|(path, records)| {
                    file_state(
                        path,
                        records.iter().map(|r| ChunkStamp {
                            key: &r.chunk.key,
                            content_hash: &r.chunk.content_hash,
                            total_chunks: r.chunk.total_chunks,
                        }),
                    )
                })
                .collect())
        })
    }

    async fn write(&self, store: &str, batch: WriteBatch) -> Result<()> {
        self.with_store(store, |s| {
            for record in &batch.upserts {
                if record.vector.len() != s.config.dimension {
                    return Err(Error::DimensionMismatch {
                        context: format!("chunk {}", record.chunk.key),
                        expected: s.config.dimension,
                        actual: record.vector.len(),
                    });
                }
            }
            for key in &batch.deletes {
                s.records.remove(key);
            }
            for record in batch.upserts {
                s.records.insert(record.chunk.key.clone(), record);
            }
            Ok(())
        })
    }

    async fn unreadable_files(&self, store: &str) -> Result<Vec<UnreadableFile>> {
        self.with_store(store, |s| Ok(s.unreadable.values().cloned().collect()))
    }

    async fn remember_unreadable(
        &self,
        store: &str,
        unreadable: Vec<UnreadableFile>,
        forget: Vec<String>,
    ) -> Result<()> {
        self.with_store(store, |s| {
            for path in forget {
                s.unreadable.remove(&path);
            }
            for file in unreadable {
                s.unreadable.insert(file.path.clone(), file);
            }
            Ok(())
        })
    }

    async fn query(&self, store: &str, request: &QueryRequest) -> Result<Vec<Hit>> {
        self.with_store(store, |s| {
            let metric = s.config.metric;
            let mut hits: Vec<Hit> = s
                .records
                .values()
                .filter(|r| {
                    request
                        .filter
                        .as_ref()
                        .is_none_or(|f| f.matches(&crate::filter::filter_metadata(&r.chunk, r.indexed_at)))
                })
                .map(|r| Hit {
                    score: score(metric, &request.vector, &r.vector),
                    chunk: r.chunk.clone(),
                    indexed_at: r.indexed_at,
                })
                .collect();
            hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.chunk.key.cmp(&b.chunk.key)));
            hits.truncate(request.top_k);
            Ok(hits)
        })
    }

    /// BM25 over every chunk of the store (statistics from the whole store,
    /// as a full-text index keeps them), then the filter.
    async fn exact_scores(&self, store: &str, keys: &[String], vector: &[f32]) -> Result<Option<Vec<Option<f32>>>> {
        self.with_store(store, |s| {
            let metric = s.config.metric;
            Ok(Some(keys.iter().map(|k| s.records.get(k).map(|r| score(metric, vector, &r.vector))).collect()))
        })
    }

    async fn lexical_query(&self, store: &str, request: &LexicalRequest) -> Result<Option<Vec<LexicalHit>>> {
        self.with_store(store, |s| {
            let metric = s.config.metric;
            let records: Vec<&VectorRecord> = s.records.values().collect();
            let scores = Bm25::for_chunks(records.iter().map(|r| &r.chunk)).scores(&request.terms);
            let mut hits: Vec<LexicalHit> = records
                .into_iter()
                .zip(scores)
                .filter(|(r, bm25)| {
                    *bm25 > 0.0
                        && request
                            .filter
                            .as_ref()
                            .is_none_or(|f| f.matches(&crate::filter::filter_metadata(&r.chunk, r.indexed_at)))
                })
                .map(|(r, bm25)| LexicalHit {
                    hit: Hit {
                        score: request.vector.as_ref().map_or(f32::NAN, |v| score(metric, v, &r.vector)),
                        chunk: r.chunk.clone(),
                        indexed_at: r.indexed_at,
                    },
                    bm25,
                })
                .collect();
            hits.sort_by(|a, b| b.bm25.total_cmp(&a.bm25).then_with(|| a.hit.chunk.key.cmp(&b.hit.chunk.key)));
            hits.truncate(request.top_k);
            Ok(Some(hits))
        })
    }
}

/// One stored chunk as incremental indexing sees it: its key, the content
/// hash of the file it came from, and how many chunks that file had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkStamp<'a> {
    /// Chunk key.
    pub key: &'a str,
    /// Content hash of the whole file when the chunk was made.
    pub content_hash: &'a str,
    /// Chunks the file was split into then.
    pub total_chunks: usize,
}

/// The state of one file from its stored chunks, the one rule every backend
/// applies: complete only when every chunk is there and all agree on the
/// content hash and chunk count; otherwise (an interrupted run) the hash is
/// `None` and the file is indexed again.
pub fn file_state<'a>(path: &str, chunks: impl IntoIterator<Item = ChunkStamp<'a>>) -> FileState {
    let chunks: Vec<ChunkStamp<'a>> = chunks.into_iter().collect();
    let first = chunks.first().copied();
    let complete = first.is_some_and(|first| {
        chunks.len() == first.total_chunks
            && chunks.iter().all(|c| c.content_hash == first.content_hash && c.total_chunks == first.total_chunks)
    });
    let mut keys: Vec<String> = chunks.iter().map(|c| c.key.to_string()).collect();
    keys.sort();
    FileState {
        path: path.to_string(),
        content_hash: first.filter(|_| complete).map(|c| c.content_hash.to_string()),
        keys,
    }
}

/// The score of `b` for query `a` under `metric`, computed exactly.
pub fn score(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::Cosine => {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let norms = a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norms == 0.0 { 0.0 } else { dot / norms }
        }
        Metric::Euclidean => {
            let distance = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt();
            metric.score_from_distance(distance)
        }
    }
}
