//! The [`Chunker`] trait and what chunk budgets are made of.

use crate::types::Metadata;

/// Characters a token is assumed to take at the least when a chunk budget is
/// derived from a token window without the model's tokenizer: English prose
/// runs about 4 characters a token with the common tokenizers, source code
/// 2.9-3.2 (measured with all-MiniLM-L6-v2's), so 2.5 leaves room. Text
/// denser than that (CJK, long numbers) is caught by the indexer, which
/// splits a text the model refuses and embeds it in parts.
pub const MIN_CHARS_PER_TOKEN: f32 = 2.5;

/// Tokens kept free in the window for the model's prompt prefix and the
/// heading path embedded with a chunk.
pub const PROMPT_RESERVE_TOKENS: usize = 48;

/// The largest chunk, in characters, that fits a model's context window of
/// `tokens` tokens with room for the prompt.
///
/// ```
/// assert_eq!(rag_core::chunk::chunk_chars_for_window(512), 1160);
/// assert_eq!(rag_core::chunk::chunk_chars_for_window(2048), 5000);
/// ```
pub fn chunk_chars_for_window(tokens: usize) -> usize {
    let usable = tokens.saturating_sub(PROMPT_RESERVE_TOKENS).max(16);
    (usable as f32 * MIN_CHARS_PER_TOKEN) as usize
}

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

    /// A chunker of the same kind whose [`settings`](Self::settings) are
    /// `settings`, as a store recorded them; `None` when this one cannot make
    /// it (another kind, another version). An indexer asked to keep a store's
    /// chunking ([`IndexOptions::keep_store_chunking`](crate::index::IndexOptions::keep_store_chunking))
    /// chunks with it, so a store keeps its settings whatever another
    /// machine's defaults are.
    fn with_settings(&self, settings: &str) -> Option<std::sync::Arc<dyn Chunker>> {
        let _ = settings;
        None
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
