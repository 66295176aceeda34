//! One contract for every [`VectorBackend`]: what the pipeline relies on,
//! checked the same way against the memory, local and S3 Vectors backends
//! (the fake and moto), as tantivy runs one suite against every directory.
//!
//! A backend's own tests call [`backend_contract`] with two handles on the
//! same storage (two processes' views) and say which optional abilities it
//! has; each ability it lacks is checked to be refused the documented way.

use rag_core::Error;
use rag_core::backend::{LexicalRequest, QueryRequest, UnreadableFile, VectorBackend, VectorRecord, WriteBatch, score};
use rag_core::filter::Filter;
use rag_core::lexical::query_terms;
use rag_core::store::{Chunk, Metric, StoreConfig, chunk_key};

/// What a backend can do beyond the common part of the contract.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct Abilities {
    /// Answers [`VectorBackend::query`] (moto's emulator does not).
    pub vector_search: bool,
    /// Has a full-text index ([`VectorBackend::lexical_query`] answers `Some`).
    pub full_text: bool,
    /// Lets one writer in at a time ([`VectorBackend::lock_for_writing`] refuses a second).
    pub exclusive_writer: bool,
    /// Lets one writer in at a time, the others waiting for it
    /// ([`VectorBackend::lock_for_writing`] returns once the first is released).
    pub waiting_writer: bool,
    /// Remembers unreadable files ([`VectorBackend::remember_unreadable`]).
    pub remembers_unreadable: bool,
}

impl Abilities {
    /// Nothing beyond the common part.
    pub fn none() -> Self {
        Self::default()
    }

    /// Answers vector queries.
    pub fn with_vector_search(mut self) -> Self {
        self.vector_search = true;
        self
    }

    /// Has a full-text index.
    pub fn with_full_text(mut self) -> Self {
        self.full_text = true;
        self
    }

    /// Lets one writer in at a time.
    pub fn with_exclusive_writer(mut self) -> Self {
        self.exclusive_writer = true;
        self
    }

    /// Lets one writer in at a time; the others wait.
    pub fn with_waiting_writer(mut self) -> Self {
        self.waiting_writer = true;
        self
    }

    /// Remembers unreadable files.
    pub fn with_unreadable_memory(mut self) -> Self {
        self.remembers_unreadable = true;
        self
    }
}

/// Dimension of the contract's vectors.
const DIM: usize = 8;

/// The contract's store settings.
pub fn contract_config(name: &str) -> StoreConfig {
    StoreConfig::new(name, "contract-model", DIM).with_chunking("contract-chunking v1")
}

/// A deterministic unit-ish vector: mostly along axis `axis`, a little along the next.
pub fn axis_vector(axis: usize, tilt: f32) -> Vec<f32> {
    let mut v = vec![0.01; DIM];
    v[axis % DIM] = 1.0;
    v[(axis + 1) % DIM] += tilt;
    v
}

/// A record of chunk `index` of `total` of file `path`.
pub fn contract_record(
    path: &str,
    index: usize,
    total: usize,
    hash: &str,
    text: &str,
    vector: Vec<f32>,
) -> VectorRecord {
    let lines = text.lines().count().max(1);
    let chunk = Chunk::new(path.to_string(), index, text.to_string())
        .with_total(total)
        .with_lines(1 + index * 10, index * 10 + lines)
        .with_bytes(index * 100, index * 100 + text.len())
        .with_content_hash(hash.to_string())
        .with_language("markdown");
    VectorRecord { chunk, vector, indexed_at: 1_700_000_000 }
}

/// Runs the whole contract. `backend` and `second` are two handles on the
/// same, empty storage; the stores `contract-a` and `contract-b` are made
/// and deleted.
pub async fn backend_contract(backend: &dyn VectorBackend, second: &dyn VectorBackend, abilities: Abilities) {
    catalog(backend, second).await;
    incremental_state(backend, second).await;
    reads(backend).await;
    if abilities.vector_search {
        vector_search(backend).await;
    }
    lexical(backend, abilities.full_text).await;
    unreadable(backend, second, abilities.remembers_unreadable).await;
    writer_lock(backend, second, abilities).await;
    deletion(backend, second).await;
}

/// Create, list, exists, settings, and the errors of each.
async fn catalog(backend: &dyn VectorBackend, second: &dyn VectorBackend) {
    let name = backend.name();
    assert!(backend.list_stores().await.expect("list").is_empty(), "{name}: empty storage lists no stores");
    backend.create_store(&contract_config("contract-b")).await.expect("create contract-b");
    backend.create_store(&contract_config("contract-a")).await.expect("create contract-a");
    let again = backend.create_store(&contract_config("contract-a")).await;
    assert!(matches!(again, Err(Error::StoreExists { .. })), "{name}: a taken name is refused: {again:?}");
    let bad = backend.create_store(&contract_config("Bad_Name")).await;
    assert!(matches!(bad, Err(Error::InvalidStoreName { .. })), "{name}: a bad name is refused: {bad:?}");
    assert_eq!(second.list_stores().await.expect("list"), ["contract-a", "contract-b"], "{name}: sorted");
    assert!(backend.store_exists("contract-a").await.expect("exists"));
    assert!(!backend.store_exists("contract-z").await.expect("exists"));
    assert_eq!(second.store_config("contract-b").await.expect("config"), contract_config("contract-b"));
    let missing = backend.store_config("contract-z").await;
    assert!(matches!(missing, Err(Error::StoreNotFound { .. })), "{name}: {missing:?}");

    // New chunking settings are kept in the store, where another handle
    // reads them (a handle may keep settings it has read: a store's settings
    // change only when a writer re-chunks it).
    let changed = contract_config("contract-a").with_chunking("contract-chunking v2");
    backend.update_store_config(&changed).await.expect("update settings");
    assert_eq!(backend.store_config("contract-a").await.expect("config"), changed, "{name}");
    assert_eq!(second.store_config("contract-a").await.expect("config"), changed, "{name}");
    let resized = backend.update_store_config(&contract_config("contract-a").with_metric(Metric::Euclidean)).await;
    assert!(resized.is_err(), "{name}: the metric is fixed at creation");
    let info = backend.store_info("contract-a").await.expect("info");
    assert_eq!((info.config.dimension, info.backend.as_str()), (DIM, name));
}

/// What incremental indexing reads: each file's hash and keys, after puts,
/// overwrites and deletes.
async fn incremental_state(backend: &dyn VectorBackend, second: &dyn VectorBackend) {
    let name = backend.name();
    let records = vec![
        contract_record("notes/tea.md", 0, 2, "h1", "green tea brewing", axis_vector(0, 0.0)),
        contract_record("notes/tea.md", 1, 2, "h1", "oolong tea leaves", axis_vector(0, 0.3)),
        contract_record("docs/kites.md", 0, 1, "h2", "kites fly in wind", axis_vector(3, 0.0)),
    ];
    backend.put("contract-a", records).await.expect("put");
    let mut states = second.file_states("contract-a").await.expect("states");
    states.sort_by(|a, b| a.path.cmp(&b.path));
    let summary: Vec<(&str, Option<&str>, Vec<&str>)> = states
        .iter()
        .map(|s| (s.path.as_str(), s.content_hash.as_deref(), s.keys.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        summary,
        [
            ("docs/kites.md", Some("h2"), vec!["docs/kites.md#0"]),
            ("notes/tea.md", Some("h1"), vec!["notes/tea.md#0", "notes/tea.md#1"])
        ],
        "{name}"
    );
    // A changed file: its first chunk overwritten, its surplus one deleted, in one write.
    let batch = WriteBatch {
        upserts: vec![contract_record("notes/tea.md", 0, 1, "h3", "green tea, cooler", axis_vector(0, 0.1))],
        deletes: vec![chunk_key("notes/tea.md", 1), "never/stored.md#0".into()],
    };
    backend.write("contract-a", batch).await.expect("write");
    let states = second.file_states("contract-a").await.expect("states");
    let tea = states.iter().find(|s| s.path == "notes/tea.md").expect("tea is stored");
    assert_eq!((tea.content_hash.as_deref(), tea.keys.as_slice()), (Some("h3"), &["notes/tea.md#0".to_string()][..]));
    assert!(second.file_states("contract-b").await.expect("states").is_empty(), "{name}: stores are separate");
}

/// Chunks read back by key: in the order asked, unknown keys left out.
async fn reads(backend: &dyn VectorBackend) {
    let keys = [chunk_key("docs/kites.md", 0), "gone.md#0".to_string(), chunk_key("notes/tea.md", 0)];
    let chunks = backend.get_chunks("contract-a", &keys).await.expect("get");
    let got: Vec<(&str, &str)> = chunks.iter().map(|c| (c.key.as_str(), c.text.as_str())).collect();
    assert_eq!(got, [("docs/kites.md#0", "kites fly in wind"), ("notes/tea.md#0", "green tea, cooler")]);
    let chunk = &chunks[1];
    assert_eq!((chunk.source_path.as_str(), chunk.chunk_index, chunk.total_chunks), ("notes/tea.md", 0, 1));
    assert_eq!((chunk.line_start, chunk.content_hash.as_str()), (1, "h3"));
}

/// Nearest chunks best first, exact scores, and a filter applied before the
/// top-k cut.
async fn vector_search(backend: &dyn VectorBackend) {
    let name = backend.name();
    // Ten close neighbours outside docs/, two far ones inside it.
    let near: Vec<VectorRecord> = (0..10)
        .map(|i| contract_record(&format!("near/n{i}.md"), 0, 1, "hn", "near", axis_vector(5, i as f32 * 0.01)))
        .collect();
    backend.put("contract-a", near.clone()).await.expect("put");
    let query = axis_vector(5, 0.0);
    let hits = backend.query("contract-a", &QueryRequest::new(query.clone(), 3)).await.expect("query");
    assert_eq!(hits.len(), 3, "{name}");
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "{name}: best first");
    assert_eq!(hits[0].chunk.key, "near/n0.md#0", "{name}");
    for hit in &hits {
        let stored =
            near.iter().find(|r| r.chunk.key == hit.chunk.key).map(|r| r.vector.as_slice()).unwrap_or_default();
        let exact = score(Metric::Cosine, &query, stored);
        assert!((hit.score - exact).abs() < 1e-4, "{name}: {} scores {} (exact {exact})", hit.chunk.key, hit.score);
    }
    let docs = QueryRequest::new(query, 2).with_filter(Some(Filter::folder("docs")));
    let hits = backend.query("contract-a", &docs).await.expect("filtered query");
    let paths: Vec<&str> = hits.iter().map(|h| h.chunk.source_path.as_str()).collect();
    assert_eq!(paths, ["docs/kites.md"], "{name}: the filter applies before the cut, not after it");
    let deletes = (0..10).map(|i| chunk_key(&format!("near/n{i}.md"), 0)).collect();
    backend.delete("contract-a", deletes).await.expect("delete");
}

/// Full-text search where the backend has it, `None` where it has not.
async fn lexical(backend: &dyn VectorBackend, full_text: bool) {
    let name = backend.name();
    let request = LexicalRequest::new(query_terms("kites wind"), 5);
    let found = backend.lexical_query("contract-a", &request).await.expect("lexical query");
    if !full_text {
        assert!(found.is_none(), "{name} says it has no full-text index");
        return;
    }
    let hits = found.expect("a full-text index");
    assert_eq!(hits.first().map(|h| h.hit.chunk.key.as_str()), Some("docs/kites.md#0"), "{name}");
    let filtered = LexicalRequest::new(query_terms("tea kites"), 5).with_filter(Some(Filter::folder("notes")));
    let hits = backend.lexical_query("contract-a", &filtered).await.expect("lexical").expect("index");
    let keys: Vec<&str> = hits.iter().map(|h| h.hit.chunk.key.as_str()).collect();
    assert_eq!(keys, ["notes/tea.md#0"], "{name}: the filter applies before the cut");
}

/// Files that cannot be read: remembered across handles and forgotten on request.
async fn unreadable(backend: &dyn VectorBackend, second: &dyn VectorBackend, remembers: bool) {
    let name = backend.name();
    let record = UnreadableFile {
        path: "broken.pdf".into(),
        content_hash: "hb".into(),
        reason: "not a PDF".into(),
        reader: "contract".into(),
    };
    backend.remember_unreadable("contract-a", vec![record.clone()], Vec::new()).await.expect("remember");
    let known = second.unreadable_files("contract-a").await.expect("unreadable");
    if !remembers {
        assert!(known.is_empty(), "{name} remembers nothing");
        return;
    }
    assert_eq!(known, [record], "{name}");
    backend.remember_unreadable("contract-a", Vec::new(), vec!["broken.pdf".into()]).await.expect("forget");
    assert!(second.unreadable_files("contract-a").await.expect("unreadable").is_empty(), "{name}");
}

/// One writer at a time where the backend says so (refusing or making the
/// second wait); released when the lock is released.
async fn writer_lock(backend: &dyn VectorBackend, second: &dyn VectorBackend, abilities: Abilities) {
    let name = backend.name();
    let first = backend.lock_for_writing("contract-a").await.expect("first writer");
    if abilities.waiting_writer {
        let waiting = second.lock_for_writing("contract-a");
        tokio::pin!(waiting);
        let early = tokio::time::timeout(std::time::Duration::from_millis(1500), &mut waiting).await;
        assert!(early.is_err(), "{name}: a second writer waits while the first writes");
        let elsewhere = backend.lock_for_writing("contract-b").await.expect("another store is free");
        elsewhere.release().await;
        first.release().await;
        let got = tokio::time::timeout(std::time::Duration::from_secs(20), waiting).await;
        let got = got.unwrap_or_else(|_| panic!("{name}: the second writer comes in once the first is done"));
        got.expect("second writer").release().await;
    } else {
        let other = second.lock_for_writing("contract-a").await;
        if abilities.exclusive_writer {
            assert!(matches!(other, Err(Error::StoreBusy { .. })), "{name}: a second writer is refused: {other:?}");
            let elsewhere = second.lock_for_writing("contract-b").await.expect("another store is free");
            elsewhere.release().await;
        } else {
            other.expect("a second writer").release().await;
        }
        first.release().await;
    }
    let again = second.lock_for_writing("contract-a").await.expect("the lock is free once released");
    again.release().await;
}

/// Deleting a store deletes it for every handle.
async fn deletion(backend: &dyn VectorBackend, second: &dyn VectorBackend) {
    let name = backend.name();
    backend.delete_store("contract-b").await.expect("delete");
    assert_eq!(second.list_stores().await.expect("list"), ["contract-a"], "{name}");
    let gone = second.store_config("contract-b").await;
    assert!(matches!(gone, Err(Error::StoreNotFound { .. })), "{name}: {gone:?}");
    backend.delete_store("contract-a").await.expect("delete");
    assert!(second.list_stores().await.expect("list").is_empty(), "{name}");
}
