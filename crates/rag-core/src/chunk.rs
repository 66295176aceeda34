//! Splitting text into chunks with exact line ranges.

use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};

use crate::error::{Error, Result};
use crate::types::Metadata;

/// One piece of a text, as a [`Chunker`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct TextChunk {
    /// The text of the chunk.
    pub text: String,
    /// Byte offset of the chunk's start in the input.
    pub byte_start: usize,
    /// Byte offset one past the chunk's end in the input.
    pub byte_end: usize,
    /// First line, 1-based.
    pub line_start: usize,
    /// Last line, 1-based, inclusive.
    pub line_end: usize,
    /// Anything else the chunker knows (heading path, symbol, ...).
    pub metadata: Metadata,
}

/// Splits a file's text into chunks.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait Chunker: Send + Sync {
    /// Splits `text` (the contents of `path`, of format `language`).
    fn chunk(&self, text: &str, path: &str, language: &str) -> Vec<TextChunk>;

    /// A description of the settings; a store records it, and when it changes
    /// every file is re-chunked.
    fn settings(&self) -> String;
}

/// The default chunker: markdown split at headings, then paragraphs and
/// sentences; everything else at blank lines, lines, sentences and words;
/// sizes counted in characters.
///
/// ```
/// use rag_core::{Chunker, TextChunker};
/// let chunker = TextChunker::new(30, 0).unwrap();
/// let text = "# One\nthe first part\n\n# Two\nthe second part\n";
/// let chunks = chunker.chunk(text, "a.md", "markdown");
/// assert_eq!(chunks.len(), 2);
/// assert_eq!((chunks[1].line_start, chunks[1].line_end), (4, 5));
/// ```
#[derive(Debug)]
pub struct TextChunker {
    size: usize,
    overlap: usize,
    text: TextSplitter<text_splitter::Characters>,
    markdown: MarkdownSplitter<text_splitter::Characters>,
}

impl TextChunker {
    /// Default chunk size in characters.
    pub const DEFAULT_SIZE: usize = 1500;
    /// Default overlap between neighbouring chunks in characters.
    pub const DEFAULT_OVERLAP: usize = 200;

    /// A chunker with chunks of at most `size` characters overlapping by `overlap`.
    pub fn new(size: usize, overlap: usize) -> Result<Self> {
        if size == 0 {
            return Err(Error::InvalidInput("chunk size must be at least 1 character".into()));
        }
        let config = |size, overlap| {
            ChunkConfig::new(size).with_overlap(overlap).map_err(|_| {
                Error::InvalidInput(format!("chunk overlap ({overlap}) must be smaller than the chunk size ({size})"))
            })
        };
        Ok(Self {
            size,
            overlap,
            text: TextSplitter::new(config(size, overlap)?),
            markdown: MarkdownSplitter::new(config(size, overlap)?),
        })
    }
}

impl Default for TextChunker {
    fn default() -> Self {
        Self::new(Self::DEFAULT_SIZE, Self::DEFAULT_OVERLAP)
            .unwrap_or_else(|_| unreachable!("default overlap is below the default size"))
    }
}

impl Chunker for TextChunker {
    fn chunk(&self, text: &str, _path: &str, language: &str) -> Vec<TextChunk> {
        let lines = LineIndex::new(text);
        let pieces: Vec<(usize, &str)> = if language == "markdown" {
            self.markdown.chunk_indices(text).collect()
        } else {
            self.text.chunk_indices(text).collect()
        };
        pieces
            .into_iter()
            .filter(|(_, piece)| !piece.trim().is_empty())
            .map(|(start, piece)| {
                let end = start + piece.len();
                TextChunk {
                    text: piece.to_string(),
                    byte_start: start,
                    byte_end: end,
                    line_start: lines.line_of(start),
                    line_end: lines.line_of(end.saturating_sub(1).max(start)),
                    metadata: Metadata::new(),
                }
            })
            .collect()
    }

    fn settings(&self) -> String {
        format!("text-splitter/chars size={} overlap={}", self.size, self.overlap)
    }
}

/// Maps byte offsets to 1-based line numbers.
#[derive(Debug)]
pub struct LineIndex {
    newlines: Vec<usize>,
}

impl LineIndex {
    /// Indexes the line breaks of `text`.
    pub fn new(text: &str) -> Self {
        Self { newlines: text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i).collect() }
    }

    /// The 1-based line that holds byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&nl| nl < offset) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered_lines(n: usize) -> String {
        (1..=n).map(|i| format!("line {i} has some words in it\n")).collect()
    }

    #[test]
    fn line_ranges_match_the_text_of_each_chunk() {
        let text = numbered_lines(200);
        let chunks = TextChunker::new(300, 50).unwrap().chunk(&text, "a.txt", "text");
        assert!(chunks.len() > 5);
        for chunk in &chunks {
            assert_eq!(&text[chunk.byte_start..chunk.byte_end], chunk.text);
            let first = chunk.text.lines().next().unwrap();
            let last = chunk.text.lines().last().unwrap();
            assert_eq!(first, format!("line {} has some words in it", chunk.line_start));
            assert_eq!(last, format!("line {} has some words in it", chunk.line_end));
        }
        assert_eq!(chunks[0].line_start, 1);
        assert_eq!(chunks.last().unwrap().line_end, 200);
    }

    #[test]
    fn chunks_respect_the_size_and_cover_the_text() {
        let text = numbered_lines(500);
        let chunks = TextChunker::new(400, 0).unwrap().chunk(&text, "a.txt", "text");
        assert!(chunks.iter().all(|c| c.text.chars().count() <= 400));
        let joined: String = chunks.iter().map(|c| c.text.replace('\n', "")).collect();
        assert_eq!(joined, text.replace('\n', ""));
    }

    #[test]
    fn markdown_is_split_at_headings() {
        let section = |title: &str| format!("## {title}\n\n{}\n\n", "Some prose about it. ".repeat(8));
        let text = format!("# Guide\n\n{}{}{}", section("Install"), section("Usage"), section("Faq"));
        let chunks = TextChunker::new(220, 0).unwrap().chunk(&text, "g.md", "markdown");
        // Each section is its own chunk: never two sections in one, never one cut mid-way.
        assert_eq!(chunks.len(), 3, "{chunks:#?}");
        for (chunk, title) in chunks.iter().zip(["## Install", "## Usage", "## Faq"]) {
            assert_eq!(chunk.text.matches("## ").count(), 1, "{chunk:#?}");
            assert!(chunk.text.contains(title) && chunk.text.ends_with("about it."), "{chunk:#?}");
        }
    }

    #[test]
    fn overlap_must_be_below_size() {
        assert!(TextChunker::new(100, 100).is_err());
        assert!(TextChunker::new(0, 0).is_err());
    }

    #[test]
    fn blank_text_has_no_chunks() {
        assert!(TextChunker::default().chunk(" \n\n\t", "a.txt", "text").is_empty());
    }
}
