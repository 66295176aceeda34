//! The indexing pipeline of rag-core over files on disk: incremental runs,
//! pruning, unreadable and crashing readers, embedder and backend failures.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rag_core::backend::{FileState, QueryRequest, UnreadableFile, WriteBatch};
use rag_core::mock::MockEmbedder;
use rag_core::prelude::*;
use rag_core::store::StoreInfo;
use rag_ingest::{DiscoverOptions, Discovery, FileSource, TextChunker, discover};

/// The files of a walk as the indexer's source.
fn source_of(discovery: &Discovery) -> Arc<dyn Source> {
    Arc::new(FileSource::new(discovery.clone()))
}

/// What `FileSource` names itself in the records of unreadable files.
const READER: &str = concat!("rag-ingest ", env!("CARGO_PKG_VERSION"));

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
            .with_options(options)
            .index("notes", source_of(&found))
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
    let report = indexer.index("notes", source_of(&files)).await.unwrap();
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
    fn chunk(&self, text: &str, path: &str, language: &str) -> Vec<TextChunk> {
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
    let report = indexer.index("notes", source_of(&files)).await.unwrap();
    assert_eq!(report.new, ["a.md", "c.md"]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].path, "bad.md");
    assert!(report.failed[0].reason.contains("crashed") && report.failed[0].reason.contains("index out of bounds"));
    let again = indexer.index("notes", source_of(&files)).await.unwrap();
    assert_eq!(again.unchanged, 2);
    assert!(again.failed[0].reason.contains("not read again"), "{:?}", again.failed);
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
    let kept = s.index_with(IndexOptions::new().with_prune(false), 60).await.unwrap();
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
    let report = s.index_with(IndexOptions::new().with_force(true), 60).await.unwrap();
    assert_eq!(report.changed, ["a.md"]);
    assert_eq!(s.keys().await, before);
}

#[tokio::test]
async fn new_chunking_settings_rechunk_every_file() {
    let s = Setup::new();
    s.write("a.md", &paragraphs(&["alpha", "beta", "gamma"]));
    s.index().await;
    let before = s.backend.store_config("notes").await.unwrap().chunking;
    let report = s.index_with(IndexOptions::default(), 500).await.unwrap();
    assert_eq!(report.changed, ["a.md"]);
    assert_eq!(report.rechunked_from, Some(before));
    assert_eq!(s.keys().await, ["a.md#0"]);
    assert_eq!(s.backend.store_config("notes").await.unwrap().chunking, TextChunker::new(500, 0).unwrap().settings());
}

#[tokio::test]
async fn a_store_keeps_its_chunking_when_the_run_is_told_to() {
    let s = Setup::new();
    s.write("a.md", &paragraphs(&["alpha", "beta", "gamma"]));
    s.index().await;
    let recorded = s.backend.store_config("notes").await.unwrap().chunking;
    // Another machine's defaults: the store's settings are used, nothing is re-chunked.
    let kept = s.index_with(IndexOptions::default().with_store_chunking(true), 500).await.unwrap();
    assert!(kept.changed.is_empty() && kept.chunks_embedded == 0 && kept.rechunked_from.is_none(), "{kept:?}");
    assert_eq!(s.backend.store_config("notes").await.unwrap().chunking, recorded);
    // A change is still planned and made with the store's settings.
    s.write("a.md", &paragraphs(&["alpha", "beta", "delta"]));
    let changed = s.index_with(IndexOptions::default().with_store_chunking(true), 500).await.unwrap();
    assert_eq!(changed.changed, ["a.md"]);
    assert_eq!(s.keys().await.len(), 3, "chunked as the store records, not at 500");
    assert_eq!(s.backend.store_config("notes").await.unwrap().chunking, recorded);
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

    let forced = s.index_with(IndexOptions::new().with_force(true), 60).await.unwrap();
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
    async fn store_info(&self, store: &str) -> Result<StoreInfo> {
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
    async fn query(&self, store: &str, request: &QueryRequest) -> Result<Vec<Hit>> {
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
    let err = indexer.index("notes", source_of(&found)).await.unwrap_err();
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
    let found = discover(&[".".into()], &DiscoverOptions::new(s.dir.path())).unwrap();
    let indexer = Indexer::new(s.embedder.clone(), s.backend.clone(), Arc::new(TextChunker::new(60, 0).unwrap()));
    let plan = indexer.plan("notes", source_of(&found)).await.unwrap();
    assert!(plan.dry_run);
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
        .index("notes", source_of(&found))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("\"words\"") && text.contains("\"bigger\""), "{text}");
    let err = Querier::new(other, s.backend.clone()).query("notes", "q", 1).await.unwrap_err();
    assert!(matches!(err, Error::ModelMismatch { .. }));
}

#[tokio::test]
async fn an_unreachable_embedder_stops_the_run_with_its_message() {
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
        .index("notes", source_of(&found))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::EmbedderUnreachable { .. }), "{err}");
}

#[tokio::test]
async fn an_empty_folder_given_to_index_keeps_what_was_stored_from_it() {
    let s = Setup::new();
    s.write("notes/a.md", "alpha words");
    s.write("notes/sub/b.md", "beta words");
    s.write("other/c.md", "gamma words");
    let patterns = ["notes".to_string(), "other".to_string()];
    let options = DiscoverOptions::new(s.dir.path());
    let indexer = Indexer::new(s.embedder.clone(), s.backend.clone(), Arc::new(TextChunker::default()));
    indexer.index("notes", source_of(&discover(&patterns, &options).unwrap())).await.unwrap();

    // The folder is emptied (an unmounted disk looks the same); other/ loses a file.
    std::fs::remove_dir_all(s.dir.path().join("notes")).unwrap();
    std::fs::create_dir(s.dir.path().join("notes")).unwrap();
    std::fs::remove_file(s.dir.path().join("other/c.md")).unwrap();
    s.write("other/d.md", "delta words");
    let found = discover(&patterns, &options).unwrap();
    assert_eq!(found.unseen.len(), 1);
    assert_eq!(found.unseen[0].why, rag_ingest::Unseen::Empty);
    let report = indexer.index("notes", source_of(&found)).await.unwrap();
    assert_eq!(report.removed, ["other/c.md"], "what the walk saw go is deleted");
    let kept: Vec<&str> = report.kept.iter().map(|k| k.path.as_str()).collect();
    assert_eq!(kept, ["notes/a.md", "notes/sub/b.md"]);
    assert!(report.kept[0].reason.contains("empty"), "{}", report.kept[0].reason);
    let stored: Vec<String> = s.backend.file_states("notes").await.unwrap().into_iter().map(|f| f.path).collect();
    assert_eq!(stored, ["notes/a.md", "notes/sub/b.md", "other/d.md"]);
}
