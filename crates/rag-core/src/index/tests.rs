use super::embed::halve;
use super::*;
use crate::memory::MemoryBackend;
use crate::prelude::{LineIndex, Metadata, Querier, TextChunk};
use crate::source::{Document, SourceError, SourceItem};
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
            .index("notes", Arc::new(source))
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

#[tokio::test]
async fn a_planner_says_what_would_change_with_no_embedder_and_writes_nothing() {
    let s = Setup::new();
    let mut notes = MemorySource::new();
    notes.insert("a.md", Document::new("oat\n\nsea", "text"));
    notes.insert("b.md", Document::new("bee", "text"));
    s.index(notes.clone()).await;
    let before = s.backend.file_states("notes").await.unwrap();

    notes.insert("a.md", Document::new("oat\n\nsea\n\nmore", "text"));
    notes.remove("b.md");
    notes.insert("c.md", Document::new("new", "text"));
    let planner = Indexer::planner(s.backend.clone(), Arc::new(Paragraphs));
    let plan = planner.plan("notes", Arc::new(notes.clone())).await.unwrap();
    assert!(plan.dry_run);
    assert_eq!(
        (plan.new.as_slice(), plan.changed.as_slice(), plan.removed.as_slice()),
        (&["c.md".to_string()][..], &["a.md".to_string()][..], &["b.md".to_string()][..])
    );
    assert_eq!((plan.chunks_embedded, plan.chunks_deleted), (4, 1), "a.md's 3 chunks and c.md's 1; b.md's 1");
    assert_eq!(s.backend.file_states("notes").await.unwrap(), before, "a plan writes nothing");
    assert_eq!(s.embedder.0.load(Ordering::SeqCst), 3, "and embeds nothing");

    // A planner of a store that does not exist yet creates nothing.
    assert_eq!(planner.plan("fresh", Arc::new(notes.clone())).await.unwrap().new.len(), 2);
    assert!(!s.backend.store_exists("fresh").await.unwrap());
    // It cannot index.
    let refused = planner.index("notes", Arc::new(notes)).await.unwrap_err();
    assert!(matches!(refused, Error::InvalidInput(_)), "{refused}");
}

/// A source over part of `notes/` that cannot see into `notes/lost/`.
struct Blind(MemorySource);

impl Source for Blind {
    fn items(&self) -> Vec<SourceItem> {
        self.0.items()
    }
    fn covers(&self, path: &str) -> bool {
        self.0.covers(path)
    }
    fn keeps(&self, path: &str) -> Option<String> {
        path.starts_with("notes/lost/").then(|| "the folder cannot be read".to_string())
    }
    fn read(&self, item: &SourceItem, max_bytes: u64) -> std::result::Result<Vec<u8>, SourceError> {
        self.0.read(item, max_bytes)
    }
    fn decode(&self, item: &SourceItem, bytes: &[u8]) -> std::result::Result<Document, SourceError> {
        self.0.decode(item, bytes)
    }
}

#[tokio::test]
async fn what_the_source_cannot_see_is_kept_and_reported_not_deleted() {
    let s = Setup::new();
    let mut notes = MemorySource::covering("notes/");
    for path in ["notes/a", "notes/lost/b", "notes/lost/c", "notes/d"] {
        notes.insert(path, Document::new(format!("text of {path}"), "text"));
    }
    s.index(notes.clone()).await;
    // The lost folder's files and d are gone from the listing; only d is deleted.
    for path in ["notes/lost/b", "notes/lost/c", "notes/d"] {
        notes.remove(path);
    }
    let report = s.index(Blind(notes)).await;
    assert_eq!(report.removed, ["notes/d"]);
    let kept: Vec<(&str, ProblemKind)> = report.kept.iter().map(|k| (k.path.as_str(), k.kind)).collect();
    assert_eq!(kept, [("notes/lost/b", ProblemKind::Kept), ("notes/lost/c", ProblemKind::Kept)]);
    assert_eq!(s.paths().await, ["notes/a", "notes/lost/b", "notes/lost/c"]);
}

#[tokio::test]
async fn deleting_most_of_a_store_needs_to_be_allowed() {
    let s = Setup::new();
    let mut notes = MemorySource::new();
    for i in 0..30 {
        notes.insert(format!("n{i:02}"), Document::new(format!("note {i}"), "text"));
    }
    s.index(notes.clone()).await;
    let mut fewer = MemorySource::new();
    for i in 0..8 {
        fewer.insert(format!("n{i:02}"), Document::new(format!("note {i}"), "text"));
    }
    let indexer = Indexer::new(s.embedder.clone(), s.backend.clone(), Arc::new(Paragraphs));
    let refused = indexer.index("notes", Arc::new(fewer.clone())).await.unwrap_err();
    assert!(matches!(refused, Error::MassRemoval { removing: 22, stored: 30, .. }), "{refused}");
    assert_eq!(s.paths().await.len(), 30, "nothing changed");
    // A plan says what would happen, without refusing.
    assert_eq!(indexer.plan("notes", Arc::new(fewer.clone())).await.unwrap().removed.len(), 22);
    // Half or fewer, or fewer than 20 files, needs nothing.
    let mut half = fewer.clone();
    for i in 8..15 {
        half.insert(format!("n{i:02}"), Document::new(format!("note {i}"), "text"));
    }
    assert_eq!(indexer.index("notes", Arc::new(half)).await.unwrap().removed.len(), 15);
    let allowed = indexer.with_options(IndexOptions::new().with_mass_removal(true));
    assert_eq!(allowed.index("notes", Arc::new(MemorySource::new())).await.unwrap().removed.len(), 15);
    assert!(s.paths().await.is_empty());
}
