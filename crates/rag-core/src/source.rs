//! Where the indexer's items come from: the [`Source`] trait, the decoded
//! [`Document`] it hands over, and [`MemorySource`] for documents held in
//! memory.
//!
//! Files on disk are one source (`rag-ingest`'s `FileSource`); rows of a
//! database, a web page cache or a watcher's list of changed files are
//! others. The indexer lists a source's items, reads each one's bytes and
//! hashes them; only an item whose hash changed is decoded, chunked and
//! embedded.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::types::Metadata;

/// One item of a [`Source`]: the path its chunks are stored under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceItem {
    /// Relative path with `/` separators (or any stable name); it becomes the
    /// chunks' `source_path`, so it must stay the same from run to run.
    pub path: String,
}

impl SourceItem {
    /// An item named `path`.
    pub fn new(path: impl Into<String>) -> Self {
        Self { path: path.into() }
    }
}

/// Why an item could not be read or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The item is larger than the run allows; it is skipped and its old
    /// chunks, if any, are deleted.
    #[error("{size} bytes is over the size limit of {limit}")]
    TooLarge {
        /// Its size in bytes.
        size: u64,
        /// The limit it is over.
        limit: u64,
    },
    /// The item is not something to index (binary data); it is skipped.
    #[error("{0}")]
    Skip(String),
    /// The item holds, or is named like it holds, credentials (a private
    /// key, a token, a cloud credentials file): it is skipped, its old chunks
    /// deleted, and its text reaches no embedder or backend. The reason names
    /// the rule.
    #[error("{0}")]
    Secret(String),
    /// The bytes could not be fetched (I/O): the item fails this run and is
    /// tried again next run.
    #[error("{0}")]
    Read(String),
    /// The content cannot be decoded (damaged, password-protected, a zip
    /// bomb): the item fails and the store remembers it, with its hash, so it
    /// is decoded again only once it changes.
    #[error("{0}")]
    Unreadable(String),
}

/// What an item's bytes decode to: text, its format, and what the decoder
/// knows about where its parts lie.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Document {
    /// The text.
    pub text: String,
    /// Its format, as the chunker understands it (`markdown`, `rust`, `text`, ...).
    pub language: String,
    /// The part of `text` to chunk (markdown front matter, for one, is left out).
    pub body: Range<usize>,
    /// Facts about the whole item every chunk carries (`title`, `tags`, `frontmatter`, ...).
    pub metadata: Metadata,
    /// Things worth telling the user that did not stop the item (lossy decoding).
    pub notes: Vec<String>,
    /// Where the pages, slides, sheets and rows of a converted document lie in
    /// `text`; a chunk's location is taken from the sections its bytes overlap.
    pub sections: Vec<Section>,
}

impl Document {
    /// A document of `text` in format `language`, all of it to be chunked.
    ///
    /// ```
    /// let doc = rag_core::source::Document::new("# Hi\n\nthere", "markdown");
    /// assert_eq!(doc.body, 0..11);
    /// ```
    pub fn new(text: impl Into<String>, language: impl Into<String>) -> Self {
        let text = text.into();
        Self { body: 0..text.len(), text, language: language.into(), ..Self::default() }
    }

    /// The same document with `metadata` carried by every chunk.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The same document with typed sections (pages, slides, sheets, rows).
    pub fn with_sections(mut self, sections: Vec<Section>) -> Self {
        self.sections = sections;
        self
    }

    /// The location metadata of the bytes `range` of `text`: `page_start` and
    /// `page_end`, `slide_start` and `slide_end`, `sheet`, `row_start` and
    /// `row_end`, from the sections the range overlaps.
    ///
    /// ```
    /// use rag_core::source::{Document, Location, Section};
    /// let doc = Document::new("# Page 1\n\none\n\n# Page 2\n\ntwo\n", "markdown").with_sections(vec![
    ///     Section { range: 0..15, location: Location::Page(1) },
    ///     Section { range: 15..28, location: Location::Page(2) },
    /// ]);
    /// let at = doc.location(10..25);
    /// assert_eq!((at["page_start"].as_u64(), at["page_end"].as_u64()), (Some(1), Some(2)));
    /// ```
    pub fn location(&self, range: Range<usize>) -> Metadata {
        let mut out = Metadata::new();
        let mut span = |name: &str, n: u64| {
            let (start, end) = (format!("{name}_start"), format!("{name}_end"));
            if !out.contains_key(&start) {
                out.insert(start, n.into());
            }
            let end_value = out.get(&end).and_then(|v| v.as_u64()).map_or(n, |e| e.max(n));
            out.insert(end, end_value.into());
        };
        let mut sheet = None;
        let overlapping = self.sections.iter().filter(|s| {
            s.range.start < range.end.max(range.start + 1) && range.start < s.range.end.max(s.range.start + 1)
        });
        for section in overlapping {
            match &section.location {
                Location::Page(n) => span("page", *n),
                Location::Slide(n) => span("slide", *n),
                Location::Row(n) => span("row", *n),
                Location::Sheet(name) => {
                    sheet.get_or_insert_with(|| name.clone());
                }
            }
        }
        if let Some(sheet) = sheet {
            out.insert("sheet".into(), sheet.into());
        }
        out
    }
}

/// A part of a converted document and where it lies in the document's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Its bytes in [`Document::text`].
    pub range: Range<usize>,
    /// What it is.
    pub location: Location,
}

/// Where in a document a [`Section`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A page, numbered from 1 (PDF).
    Page(u64),
    /// A slide, numbered from 1 (PPTX, ODP).
    Slide(u64),
    /// A sheet of a workbook, by name.
    Sheet(String),
    /// A row of a sheet, numbered as the spreadsheet numbers it.
    Row(u64),
}

/// The metadata keys [`Document::location`] may write.
pub const LOCATION_KEYS: &[&str] =
    &["page_start", "page_end", "slide_start", "slide_end", "sheet", "row_start", "row_end"];

/// Anything the indexer can take items from: it lists them, reads their
/// bytes (whose hash decides whether an item changed) and decodes the ones
/// that did.
///
/// Methods are called from several threads at once, one item per call, off
/// the async runtime: blocking I/O is fine.
///
/// ```
/// use rag_core::source::{Document, Source, SourceError, SourceItem};
///
/// /// Rows of a table of notes, by id.
/// struct Notes(Vec<(u32, String)>);
///
/// impl Source for Notes {
///     fn items(&self) -> Vec<SourceItem> {
///         self.0.iter().map(|(id, _)| SourceItem::new(format!("note/{id}"))).collect()
///     }
///     fn covers(&self, path: &str) -> bool {
///         path.starts_with("note/")
///     }
///     fn read(&self, item: &SourceItem, _max_bytes: u64) -> Result<Vec<u8>, SourceError> {
///         let id = item.path.trim_start_matches("note/");
///         let row = self.0.iter().find(|(n, _)| n.to_string() == id);
///         row.map(|(_, text)| text.clone().into_bytes()).ok_or_else(|| SourceError::Read("gone".into()))
///     }
///     fn decode(&self, _item: &SourceItem, bytes: &[u8]) -> Result<Document, SourceError> {
///         Ok(Document::new(String::from_utf8_lossy(bytes), "markdown"))
///     }
/// }
/// let notes = Notes(vec![(7, "# Tea\n\nGreen.".into())]);
/// assert_eq!(notes.items()[0].path, "note/7");
/// ```
pub trait Source: Send + Sync {
    /// Every item, each path once.
    fn items(&self) -> Vec<SourceItem>;

    /// Whether a stored path belongs to this source: a stored path it covers
    /// but no longer lists is pruned. A source over part of a store (one
    /// folder, one table) covers only that part.
    fn covers(&self, path: &str) -> bool;

    /// Why a stored path it covers but does not list must be kept: the
    /// source cannot see it right now (a folder it could not read, a folder
    /// found empty), so its absence does not mean it was deleted. The default
    /// keeps nothing.
    fn keeps(&self, _path: &str) -> Option<String> {
        None
    }

    /// The item's bytes, refusing with [`SourceError::TooLarge`] when there
    /// are more than `max_bytes`.
    fn read(&self, item: &SourceItem, max_bytes: u64) -> Result<Vec<u8>, SourceError>;

    /// Decodes bytes [`read`](Self::read) returned. Called only for items
    /// whose hash changed (or on a forced run).
    fn decode(&self, item: &SourceItem, bytes: &[u8]) -> Result<Document, SourceError>;

    /// Names the decoder and its version. The store remembers it with each
    /// item that could not be decoded; a different decoder tries again.
    fn reader(&self) -> &str {
        concat!("rag-core ", env!("CARGO_PKG_VERSION"))
    }
}

/// Documents held in memory, by path: the simplest [`Source`].
///
/// ```
/// use rag_core::source::{Document, MemorySource, Source};
/// let mut source = MemorySource::covering("notes/");
/// source.insert("notes/tea.md", Document::new("# Tea\n\nGreen tea, brewed cool.", "markdown"));
/// assert_eq!(source.items().len(), 1);
/// assert!(source.covers("notes/tea.md") && !source.covers("other.md"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    documents: BTreeMap<String, Document>,
    prefix: String,
}

impl MemorySource {
    /// An empty source that covers the whole store: a path it does not hold is pruned.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty source that covers only paths under `prefix` (`"inbox/"`).
    pub fn covering(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into(), ..Self::default() }
    }

    /// Adds or replaces the document at `path`.
    pub fn insert(&mut self, path: impl Into<String>, document: Document) {
        self.documents.insert(path.into(), document);
    }

    /// Removes the document at `path`, if any.
    pub fn remove(&mut self, path: &str) -> Option<Document> {
        self.documents.remove(path)
    }
}

impl Source for MemorySource {
    fn items(&self) -> Vec<SourceItem> {
        self.documents.keys().map(SourceItem::new).collect()
    }

    fn covers(&self, path: &str) -> bool {
        path.starts_with(&self.prefix)
    }

    fn read(&self, item: &SourceItem, max_bytes: u64) -> Result<Vec<u8>, SourceError> {
        let document = self.documents.get(&item.path).ok_or_else(|| SourceError::Read("no longer held".into()))?;
        let size = document.text.len() as u64;
        if size > max_bytes {
            return Err(SourceError::TooLarge { size, limit: max_bytes });
        }
        // The text is the content whose hash decides a change; the rest of
        // the document (metadata, sections) goes with it.
        let mut bytes = document.text.clone().into_bytes();
        if !document.metadata.is_empty() {
            bytes.push(0);
            bytes.extend(serde_json::to_vec(&document.metadata).unwrap_or_default());
        }
        Ok(bytes)
    }

    fn decode(&self, item: &SourceItem, _bytes: &[u8]) -> Result<Document, SourceError> {
        self.documents.get(&item.path).cloned().ok_or_else(|| SourceError::Read("no longer held".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sheet() -> Document {
        let text = "# Sheet: Budget\n\nrow 2: tea\nrow 3: jam\n# Sheet: Staff\n\nrow 2: Ann\n".to_string();
        let at = |needle: &str| text.find(needle).unwrap();
        let sections = vec![
            Section { range: 0..at("# Sheet: Staff"), location: Location::Sheet("Budget".into()) },
            Section { range: at("row 2: tea")..at("row 3"), location: Location::Row(2) },
            Section { range: at("row 3")..at("# Sheet: Staff"), location: Location::Row(3) },
            Section { range: at("# Sheet: Staff")..text.len(), location: Location::Sheet("Staff".into()) },
            Section { range: at("row 2: Ann")..text.len(), location: Location::Row(2) },
        ];
        Document::new(text, "markdown").with_sections(sections)
    }

    #[test]
    fn a_range_takes_the_sheet_it_starts_in_and_the_rows_it_overlaps() {
        let doc = sheet();
        let start = doc.text.find("row 3").unwrap();
        let at = doc.location(start..start + 5);
        assert_eq!(at["sheet"], "Budget");
        assert_eq!((at["row_start"].as_u64(), at["row_end"].as_u64()), (Some(3), Some(3)));
        let all = doc.location(0..doc.text.len());
        assert_eq!(all["sheet"], "Budget");
        assert_eq!((all["row_start"].as_u64(), all["row_end"].as_u64()), (Some(2), Some(3)));
        let staff = doc.text.find("Ann").unwrap();
        assert_eq!(doc.location(staff..staff + 3)["sheet"], "Staff");
    }

    #[test]
    fn a_document_without_sections_has_no_location() {
        assert!(Document::new("plain", "text").location(0..5).is_empty());
    }

    #[test]
    fn a_memory_source_changes_its_bytes_when_its_metadata_changes() {
        let mut source = MemorySource::new();
        source.insert("a", Document::new("same", "text"));
        let before = source.read(&SourceItem::new("a"), 100).unwrap();
        let mut metadata = Metadata::new();
        metadata.insert("title".into(), "A".into());
        source.insert("a", Document::new("same", "text").with_metadata(metadata));
        assert_ne!(before, source.read(&SourceItem::new("a"), 100).unwrap());
        assert_eq!(source.read(&SourceItem::new("a"), 2), Err(SourceError::TooLarge { size: 4, limit: 2 }));
    }
}
