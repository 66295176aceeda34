//! The default chunker: markdown by section, code by syntax, the rest at
//! paragraph, line, sentence and word breaks.

use rag_core::{
    Error, Result,
    chunk::{Chunker, LineIndex, TextChunk},
    store::Metadata,
};
use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};

/// The default chunker, sizes counted in characters: markdown split at
/// headings, then paragraphs and sentences; everything else at blank lines,
/// lines, sentences and words, except source code of the languages with a
/// tree-sitter grammar (feature `code`: Rust, Python, JavaScript/JSX,
/// TypeScript/TSX, Go, Java, C, C++, C#, Ruby, PHP, Kotlin, Scala, Swift,
/// shell). Code is parsed once: neighbouring syntax nodes are packed into a
/// chunk while they fit, but a definition of at least an eighth of a chunk is
/// a chunk of its own; a node too large is split at its own children. So a
/// chunk is one function or class where it fits, with its doc comments and
/// attributes, and a function too large for one chunk is cut between
/// statements, its signature in the first part. Chunks overlap only where a
/// cut falls between statements. Each code chunk's `symbols` metadata names
/// the definitions it overlaps, outermost first; `headings` names the ones
/// that hold it (`Ledger > weighted_total`), and a later part of a long
/// definition carries its `signature`.
///
/// ```
/// use rag_core::chunk::Chunker;
/// use rag_ingest::TextChunker;
/// let chunker = TextChunker::new(30, 0).unwrap();
/// let text = "# One\nthe first part\n\n# Two\nthe second part\n";
/// let chunks = chunker.chunk(text, "a.md", "markdown");
/// assert_eq!(chunks.len(), 2);
/// assert_eq!((chunks[1].line_start, chunks[1].line_end), (4, 5));
/// ```
pub struct TextChunker {
    size: usize,
    overlap: usize,
    text: TextSplitter<text_splitter::Characters>,
    markdown: MarkdownSplitter<text_splitter::Characters>,
    #[cfg(feature = "code")]
    grammars: Vec<(&'static str, crate::code::Grammar)>,
}

impl std::fmt::Debug for TextChunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextChunker").field("size", &self.size).field("overlap", &self.overlap).finish_non_exhaustive()
    }
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
            #[cfg(feature = "code")]
            grammars: crate::code::Grammar::all(),
        })
    }

    /// Most characters in a chunk.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Characters neighbouring chunks share.
    pub fn overlap(&self) -> usize {
        self.overlap
    }

    /// The chunker whose [`settings`](Chunker::settings) are `settings`, as a
    /// store records them: `None` when this build would chunk otherwise (other
    /// code, another version of the splitter, no tree-sitter).
    ///
    /// ```
    /// use rag_core::chunk::Chunker;
    /// use rag_ingest::TextChunker;
    /// let recorded = TextChunker::new(800, 100).unwrap().settings();
    /// assert_eq!(TextChunker::from_settings(&recorded).unwrap().settings(), recorded);
    /// assert!(TextChunker::from_settings("paragraphs").is_none());
    /// ```
    pub fn from_settings(settings: &str) -> Option<Self> {
        let number = |key: &str| -> Option<usize> {
            settings.split_whitespace().find_map(|part| part.strip_prefix(key)?.parse().ok())
        };
        let chunker = Self::new(number("size=")?, number("overlap=")?).ok()?;
        (chunker.settings() == settings).then_some(chunker)
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
        let (ranges, structure) = self.split(text, language);
        ranges
            .into_iter()
            .filter(|&(start, end)| !text[start..end].trim().is_empty())
            .map(|(start, end)| {
                let piece = &text[start..end];
                TextChunk {
                    text: piece.to_string(),
                    byte_start: start,
                    byte_end: end,
                    line_start: lines.line_of(start),
                    line_end: lines.line_of(end.saturating_sub(1).max(start)),
                    metadata: structure.metadata(piece, start, end),
                }
            })
            .collect()
    }

    fn settings(&self) -> String {
        // Version 4 of code chunks: one definition a chunk (unless small), definition paths, repeated signatures.
        let code = if cfg!(feature = "code") { " code=tree-sitter-definitions-8" } else { "" };
        format!("text-splitter/chars size={} overlap={} sections=whole{code}", self.size, self.overlap)
    }

    fn with_settings(&self, settings: &str) -> Option<std::sync::Arc<dyn Chunker>> {
        Self::from_settings(settings).map(|chunker| std::sync::Arc::new(chunker) as std::sync::Arc<dyn Chunker>)
    }
}

impl TextChunker {
    /// Chunk byte ranges of `text` and what is known of its structure.
    fn split(&self, text: &str, language: &str) -> (Vec<(usize, usize)>, Structure) {
        #[cfg(feature = "code")]
        if let Some((_, grammar)) = self.grammars.iter().find(|(name, _)| *name == language) {
            return self.split_code(text, grammar);
        }
        let markdown = language == "markdown";
        let mut ranges = Vec::new();
        if !markdown {
            self.split_plain(text, 0, false, &mut ranges);
            return (ranges, Structure::None);
        }
        let headings = crate::headings(text);
        // Sections stay whole: a chunk never joins a section to its siblings,
        // so a short section is not buried in its neighbours' text.
        for (start, end) in section_groups(text, &headings, self.size) {
            let part = &text[start..end];
            if part.chars().count() <= self.size {
                let lead = part.len() - part.trim_start().len();
                let tail = part.len() - part.trim_end().len();
                ranges.push((start + lead, end - tail));
            } else {
                self.split_plain(part, start, true, &mut ranges);
            }
        }
        let paths = crate::markdown::heading_paths(&headings);
        (ranges, Structure::Markdown(headings.iter().map(|h| h.offset).collect(), paths))
    }

    /// Chunks `text` (which starts at `offset` of the file) with the text or
    /// markdown splitter. Their cost grows faster than the text (a 4 MB file
    /// took 49 s): large texts are first cut at structural breaks.
    fn split_plain(&self, text: &str, offset: usize, markdown: bool, ranges: &mut Vec<(usize, usize)>) {
        for (at, part) in segments(text, markdown, SEGMENT_BYTES) {
            let found: Vec<(usize, &str)> = if markdown {
                self.markdown.chunk_indices(part).collect()
            } else {
                self.text.chunk_indices(part).collect()
            };
            ranges.extend(found.into_iter().map(|(s, p)| (offset + at + s, offset + at + s + p.len())));
        }
    }

    /// Source code: one parse per part gives chunk boundaries and symbols.
    #[cfg(feature = "code")]
    fn split_code(&self, text: &str, grammar: &crate::code::Grammar) -> (Vec<(usize, usize)>, Structure) {
        let mut ranges = Vec::new();
        let mut symbols = Vec::new();
        // Parsing is linear, but a syntax tree takes several times its text in memory.
        for (offset, part) in segments(text, false, CODE_SEGMENT_BYTES) {
            match crate::code::split(part, grammar, self.size, self.overlap, &self.text) {
                Some(split) => {
                    ranges.extend(split.ranges.into_iter().map(|(s, e)| (offset + s, offset + e)));
                    symbols.extend(split.symbols.into_iter().map(|mut symbol| {
                        symbol.start += offset;
                        symbol.end += offset;
                        symbol.body_start += offset;
                        symbol
                    }));
                }
                None => ranges.extend(self.text.chunk_indices(part).map(|(s, p)| (offset + s, offset + s + p.len()))),
            }
        }
        (ranges, Structure::Code(Symbols::new(symbols)))
    }
}

/// The byte ranges of a markdown text's chunks-to-be: one per section, where
/// a section runs from its heading to the next heading. A section whose own
/// text is short (a title, an intro line) takes its subsections with it while
/// they fit in `size` characters, and a lone heading with nothing under it is
/// carried into its first subsection; siblings are never joined.
fn section_groups(text: &str, headings: &[crate::Heading], size: usize) -> Vec<(usize, usize)> {
    // (start, end, level); the text before the first heading is level 0.
    let mut sections: Vec<(usize, usize, usize)> = Vec::with_capacity(headings.len() + 1);
    let first = headings.first().map_or(text.len(), |h| h.offset);
    if !text[..first].trim().is_empty() {
        sections.push((0, first, 0));
    }
    for (i, heading) in headings.iter().enumerate() {
        let end = headings.get(i + 1).map_or(text.len(), |next| next.offset);
        sections.push((heading.offset, end, heading.level));
    }
    let chars = |range: std::ops::Range<usize>| text[range].chars().count();
    let short = size / 4;
    let mut groups = Vec::with_capacity(sections.len());
    let mut carry: Option<usize> = None;
    let mut i = 0;
    while i < sections.len() {
        let (own_start, own_end, level) = sections[i];
        let start = carry.take().unwrap_or(own_start);
        let mut end = own_end;
        let mut next = i + 1;
        if chars(own_start..own_end) <= short {
            while let Some(&(_, sub_end, sub_level)) = sections.get(next) {
                if sub_level <= level || chars(start..sub_end) > size {
                    break;
                }
                end = sub_end;
                next += 1;
            }
            let lone_heading = text[own_start..own_end].lines().skip(1).all(|l| l.trim().is_empty());
            if next == i + 1 && lone_heading && sections.get(next).is_some_and(|s| s.2 > level) {
                carry = Some(start);
                i = next;
                continue;
            }
        }
        groups.push((start, end));
        i = next;
    }
    groups
}

/// Source texts longer than this are parsed in parts cut at structural breaks.
#[cfg(feature = "code")]
const CODE_SEGMENT_BYTES: usize = 64 * 1024;

/// Texts longer than this are chunked in parts cut at structural breaks.
const SEGMENT_BYTES: usize = 8 * 1024;

/// Cuts `text` into parts of about `target` bytes at the best break near
/// each cut: before a heading (markdown) or a line at column 0 after a blank
/// line (a new top-level item in code), else at a blank line, else at a line.
fn segments(text: &str, markdown: bool, target: usize) -> Vec<(usize, &str)> {
    if text.len() <= target * 2 {
        return vec![(0, text)];
    }
    let mut out = Vec::new();
    let mut start = 0;
    while text.len() - start > target * 2 {
        let mut window_end = (start + target * 2).min(text.len());
        while !text.is_char_boundary(window_end) {
            window_end -= 1;
        }
        let mut best: [Option<usize>; 3] = [None; 3];
        let mut offset = start;
        let mut previous_blank = false;
        for line in text[start..window_end].split_inclusive('\n') {
            if offset >= start + target / 2 {
                let blank = line.trim().is_empty();
                let top_level = !line.starts_with([' ', '\t']) && !blank;
                let strong = if markdown { line.starts_with('#') } else { previous_blank && top_level };
                if strong && best[0].is_none_or(|b| b < start + target) {
                    best[0] = Some(offset);
                }
                if previous_blank && best[1].is_none_or(|b| b < start + target) {
                    best[1] = Some(offset);
                }
                if best[2].is_none_or(|b| b < start + target) {
                    best[2] = Some(offset);
                }
            }
            previous_blank = line.trim().is_empty();
            offset += line.len();
        }
        let cut = best.iter().flatten().copied().find(|&c| c > start).unwrap_or(window_end);
        let mut cut = cut.min(text.len());
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        out.push((start, &text[start..cut]));
        start = cut;
    }
    out.push((start, &text[start..]));
    out
}

/// What the chunker knows of a text's structure, to describe each chunk.
enum Structure {
    None,
    /// Headings' offsets and the heading path in force from each.
    Markdown(Vec<usize>, Vec<String>),
    #[cfg(feature = "code")]
    Code(Symbols),
}

/// Definitions sorted by start, with the running maximum of their ends, so
/// the ones overlapping a range are found without scanning them all.
#[cfg(feature = "code")]
struct Symbols {
    list: Vec<crate::code::Symbol>,
    max_end: Vec<usize>,
}

#[cfg(feature = "code")]
impl Symbols {
    fn new(list: Vec<crate::code::Symbol>) -> Self {
        let mut max = 0;
        let max_end = list
            .iter()
            .map(|s| {
                max = max.max(s.end);
                max
            })
            .collect();
        Self { list, max_end }
    }

    /// Names of the definitions overlapping `start..end`, outermost first, at most 12.
    fn overlapping(&self, start: usize, end: usize) -> Vec<String> {
        let inside_end = self.list.partition_point(|s| s.start < end);
        // Walk back from the last one starting before `end` while an earlier one may still reach `start`.
        let mut found: Vec<&crate::code::Symbol> = Vec::new();
        for i in (0..inside_end).rev() {
            if self.max_end[i] <= start {
                break;
            }
            if self.list[i].end > start {
                found.push(&self.list[i]);
            }
        }
        found.reverse();
        let mut names: Vec<String> = Vec::new();
        for symbol in found {
            if !names.contains(&symbol.name) {
                names.push(symbol.name.clone());
                if names.len() == 12 {
                    break;
                }
            }
        }
        names
    }

    /// The definitions holding the whole of a chunk, outermost first: its
    /// definition path. A chunk's leading comments, attributes and
    /// decorators (`lead` bytes from `start`) may lie before the definition.
    fn enclosing(&self, start: usize, lead: usize, end: usize) -> Vec<&crate::code::Symbol> {
        let code_start = start + lead;
        let before = self.list.partition_point(|s| s.start <= code_start);
        let mut found: Vec<&crate::code::Symbol> = Vec::new();
        for i in (0..before).rev() {
            if self.max_end[i] < end {
                break;
            }
            if self.list[i].end >= end {
                found.push(&self.list[i]);
            }
        }
        found.reverse();
        found
    }
}

/// Where a code chunk's code ends: before trailing blank lines and lines
/// of closing brackets alone (the end of an enclosing block the packer
/// attaches to its last part).
#[cfg(feature = "code")]
fn code_end(piece: &str) -> usize {
    let mut end = piece.trim_end().len();
    while let Some(newline) = piece[..end].rfind('\n') {
        let line = piece[newline + 1..end].trim();
        if line.is_empty() || !line.chars().all(|c| matches!(c, '}' | ')' | ']' | ';' | ',')) {
            break;
        }
        end = piece[..newline].trim_end().len();
    }
    end
}

/// Bytes of a code chunk before its first code: blank lines, comments,
/// attributes and decorators, and the indentation of the first line of code.
#[cfg(feature = "code")]
fn leading_notes(piece: &str) -> usize {
    let mut at = 0;
    for line in piece.split_inclusive('\n') {
        let code = line.trim_start();
        let note =
            code.is_empty() || ["//", "/*", "*", "#", "@", "--", ";"].iter().any(|marker| code.starts_with(marker));
        if !note {
            at += line.len() - code.len();
            break;
        }
        at += line.len();
    }
    at.min(piece.trim_end().len())
}

impl Structure {
    /// `headings`, `tags` and `links` of a markdown chunk; `symbols` of a code chunk.
    fn metadata(&self, piece: &str, start: usize, end: usize) -> Metadata {
        let mut metadata = Metadata::new();
        match self {
            Structure::None => {}
            Structure::Markdown(offsets, paths) => {
                // The last heading before the chunk's first line of content
                // decides its path (a chunk may open with a parent's heading).
                let content = start + leading_headings(piece);
                if let Some(path) = offsets.partition_point(|&o| o <= content).checked_sub(1).map(|i| &paths[i]) {
                    metadata.insert("headings".into(), path.clone().into());
                }
                let tags = crate::inline_tags(piece);
                if !tags.is_empty() {
                    metadata.insert("tags".into(), tags.into());
                }
                let links = crate::wikilinks(piece);
                if !links.is_empty() {
                    metadata.insert("links".into(), links.into());
                }
            }
            #[cfg(feature = "code")]
            Structure::Code(symbols) => {
                let names = symbols.overlapping(start, end);
                if !names.is_empty() {
                    metadata.insert("symbols".into(), names.into());
                }
                let lead = leading_notes(piece);
                let path = symbols.enclosing(start, lead, start + code_end(piece));
                let mut heading: Vec<&str> = Vec::with_capacity(path.len());
                for symbol in &path {
                    // A Rust `impl P` inside nothing named `P` reads once.
                    if heading.last() != Some(&symbol.name.as_str()) {
                        heading.push(&symbol.name);
                    }
                }
                if !heading.is_empty() {
                    metadata.insert("headings".into(), heading.join(" > ").into());
                }
                // A part of a long definition repeats its signature.
                if let Some(inner) = path.last().filter(|s| start + lead >= s.body_start && !s.signature.is_empty()) {
                    metadata.insert("signature".into(), inner.signature.clone().into());
                }
            }
        }
        let _ = end;
        metadata
    }
}

/// Bytes of the heading lines and blank lines that open `piece`, up to the
/// start of its last such heading line.
fn leading_headings(piece: &str) -> usize {
    let mut offset = 0;
    let mut last_heading = 0;
    for line in piece.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            last_heading = offset;
        } else if !trimmed.is_empty() {
            break;
        }
        offset += line.len();
    }
    last_heading
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headings_of(chunks: &[TextChunk]) -> Vec<&str> {
        chunks.iter().map(|c| c.metadata.get("headings").and_then(|h| h.as_str()).unwrap_or("")).collect()
    }

    #[test]
    fn a_short_section_is_not_merged_into_a_long_neighbour() {
        let filler = "The weekly figures are in line with the plan and nothing needs doing. ".repeat(12);
        let text = format!(
            "# Weekly memo\n\n{filler}\n\n## Kitchen\n\nThe bakery wants a sourdough starter and rye flour.\n\n## Parking\n\nBays 3 and 4 are closed.\n"
        );
        let chunks = TextChunker::new(1500, 200).unwrap().chunk(&text, "memo.md", "markdown");
        let kitchen: Vec<&TextChunk> = chunks.iter().filter(|c| c.text.contains("sourdough")).collect();
        assert_eq!(kitchen.len(), 1);
        assert!(
            kitchen[0].text.starts_with("## Kitchen") && !kitchen[0].text.contains("weekly figures"),
            "{chunks:#?}"
        );
        assert!(!kitchen[0].text.contains("Parking"), "siblings stay apart");
        assert_eq!(headings_of(&chunks), ["Weekly memo", "Weekly memo > Kitchen", "Weekly memo > Parking"]);
    }

    #[test]
    fn a_short_lead_keeps_its_subsections_and_a_lone_heading_is_carried() {
        let text = "# Install\n\nTwo ways.\n\n## Linux\n\napt install it\n\n## Mac\n\nbrew install it\n\n# Usage\n\n## Query\n\nrag query\n";
        let chunks = TextChunker::new(1500, 200).unwrap().chunk(text, "a.md", "markdown");
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts.len(), 2, "{texts:#?}");
        assert!(texts[0].starts_with("# Install") && texts[0].ends_with("brew install it"));
        // `# Usage` has nothing of its own: it opens its subsection's chunk, whose path is the subsection's.
        assert!(texts[1].starts_with("# Usage\n\n## Query"));
        assert_eq!(headings_of(&chunks), ["Install", "Usage > Query"]);
    }

    #[test]
    fn a_long_section_is_still_split_and_lines_stay_exact() {
        let body = "A sentence about nothing in particular, repeated. ".repeat(80);
        let text = format!("intro\n\n# Big\n\n{body}\n\n# Small\n\nend\n");
        let chunks = TextChunker::new(500, 50).unwrap().chunk(&text, "a.md", "markdown");
        assert!(chunks.len() >= 4, "{}", chunks.len());
        assert!(chunks.iter().all(|c| c.text.chars().count() <= 500));
        for c in &chunks {
            assert_eq!(&text[c.byte_start..c.byte_end], c.text);
        }
        assert_eq!(chunks.last().map(|c| c.text.as_str()), Some("# Small\n\nend"));
        assert_eq!(chunks[0].text, "intro");
    }

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

    #[cfg(feature = "code")]
    #[test]
    fn stores_chunked_by_the_previous_code_chunker_are_chunked_again() {
        // What stores written before definition paths record: this build
        // cannot chunk that way, so their next writer re-chunks them once.
        let previous = "text-splitter/chars size=800 overlap=100 sections=whole code=tree-sitter-nodes";
        assert!(TextChunker::from_settings(previous).is_none());
        let current = TextChunker::new(800, 100).unwrap().settings();
        assert_ne!(current, previous);
        assert!(TextChunker::from_settings(&current).is_some());
    }

    #[cfg(feature = "code")]
    #[test]
    fn code_chunks_carry_their_definition_path_and_a_split_one_its_signature() {
        let body: String = (0..40).map(|i| format!("            total += {i} * weight\n")).collect();
        let python = format!(
            "class Ledger:\n    \"\"\"Keeps the balance.\"\"\"\n\n    def credit(self, amount):\n        \
             self.balance += amount\n\n    # the heavy one\n    @cached\n    def weighted_total(\n        self,\n        \
             weight,\n    ) -> float:\n        total = 0\n        for entry in self.entries:\n{body}        return total\n"
        );
        let chunks = TextChunker::new(300, 0).unwrap().chunk(&python, "ledger.py", "python");
        let field = |c: &TextChunk, key: &str| c.metadata.get(key).and_then(|v| v.as_str()).map(str::to_string);
        // The part holding the signature: its path, no repeated signature.
        let first = chunks.iter().find(|c| c.text.contains("def weighted_total")).unwrap();
        assert_eq!(field(first, "headings").as_deref(), Some("Ledger > weighted_total"), "{chunks:#?}");
        assert_eq!(field(first, "signature"), None);
        // Every later part: the same path, and the signature collapsed to one line.
        let later: Vec<&TextChunk> =
            chunks.iter().filter(|c| c.line_start > first.line_start && c.text.contains("total +=")).collect();
        assert!(!later.is_empty(), "{chunks:#?}");
        for chunk in later {
            assert_eq!(field(chunk, "headings").as_deref(), Some("Ledger > weighted_total"));
            assert_eq!(
                field(chunk, "signature").as_deref(),
                Some("def weighted_total( self, weight, ) -> float:"),
                "{chunk:#?}"
            );
        }
        // A chunk holding several methods is only inside the class.
        let small = TextChunker::new(2000, 0).unwrap().chunk(&python, "ledger.py", "python");
        assert_eq!(small.len(), 1);
        assert_eq!(field(&small[0], "headings").as_deref(), Some("Ledger"));
        // Rust: an impl's methods sit in the type; a top-level function in nothing.
        let rust = "/// A point.\nstruct P;\n\nimpl P {\n    /// Its area.\n    fn area(&self) -> u32 {\n        0\n    }\n}\n";
        let chunks = TextChunker::new(70, 0).unwrap().chunk(rust, "p.rs", "rust");
        let area = chunks.iter().find(|c| c.text.contains("fn area")).unwrap();
        assert_eq!(field(area, "headings").as_deref(), Some("P > area"), "{chunks:#?}");
        let point = chunks.iter().find(|c| c.text.contains("struct P")).unwrap();
        assert_eq!(field(point, "headings").as_deref(), Some("P"), "{chunks:#?}");
    }

    #[cfg(feature = "code")]
    #[test]
    fn docstrings_and_doc_comments_stay_with_their_definitions() {
        // Python: decorated functions and methods whose docstrings are what
        // makes them findable; one long enough to be split.
        let long_body: String = (0..60).map(|i| format!("        total += {i} * weight\n")).collect();
        let python = format!(
            "import functools\n\n\nclass Ledger:\n    \"\"\"Keeps the running balance of an account.\"\"\"\n\n    \
             def credit(self, amount):\n        \"\"\"Adds money to the balance.\"\"\"\n        self.balance += amount\n\n    \
             def weighted_total(self, weight):\n        \"\"\"Sums every entry times its weight.\"\"\"\n        total = 0\n{long_body}        \
             return total\n\n\n@functools.lru_cache\ndef parse_amount(text):\n    \"\"\"Reads an amount such as 12.50 EUR.\"\"\"\n    \
             return float(text.split()[0])\n"
        );
        let rust = "/// Reads an amount such as `12.50 EUR`.\n#[must_use]\npub fn parse_amount(text: &str) -> f64 {\n    \
                    text.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0.0)\n}\n\n\
                    /// Adds money to the balance.\npub fn credit(balance: &mut f64, amount: f64) {\n    *balance += amount;\n}\n";
        let cases = [
            (
                python.as_str(),
                "python",
                vec![
                    ("def credit", "Adds money to the balance."),
                    ("def weighted_total", "Sums every entry times its weight."),
                    ("def parse_amount", "Reads an amount such as 12.50 EUR."),
                ],
            ),
            (
                rust,
                "rust",
                vec![
                    ("fn parse_amount", "Reads an amount such as `12.50 EUR`."),
                    ("fn credit", "Adds money to the balance."),
                ],
            ),
        ];
        for (text, language, definitions) in cases {
            let chunks = TextChunker::new(400, 0).unwrap().chunk(text, "f", language);
            for (signature, doc) in definitions {
                let with_signature: Vec<&TextChunk> = chunks.iter().filter(|c| c.text.contains(signature)).collect();
                assert!(!with_signature.is_empty(), "{language}: no chunk holds {signature}: {chunks:#?}");
                for chunk in with_signature {
                    assert!(
                        chunk.text.contains(doc),
                        "{language}: {signature} without its doc {doc:?}: {:?}",
                        chunk.text
                    );
                }
            }
            // The decorator and the attribute stay too.
            let decorated =
                chunks.iter().find(|c| c.text.contains("def parse_amount") || c.text.contains("fn parse_amount"));
            let marker = if language == "python" { "@functools.lru_cache" } else { "#[must_use]" };
            assert!(decorated.is_some_and(|c| c.text.contains(marker)), "{language}: {chunks:#?}");
        }
    }

    #[test]
    fn rust_and_python_are_split_at_function_boundaries() {
        let rust: String = (0..12)
            .map(|i| {
                format!("/// Doubles {i}.\nfn double_{i}(x: u32) -> u32 {{\n    let y = x * 2;\n    y + {i}\n}}\n\n")
            })
            .collect();
        let python: String =
            (0..12).map(|i| format!("def double_{i}(x):\n    y = x * 2\n    return y + {i}\n\n\n")).collect();
        for (text, language, opener) in [(&rust, "rust", "/// Doubles"), (&python, "python", "def double_")] {
            let chunks = TextChunker::new(200, 0).unwrap().chunk(text, "f", language);
            assert!(chunks.len() > 2, "{language}: {chunks:#?}");
            for chunk in &chunks {
                assert!(chunk.text.starts_with(opener), "{language} chunk starts mid-function: {:?}", chunk.text);
                let symbols = chunk.metadata["symbols"].as_array().unwrap();
                for symbol in symbols {
                    assert!(
                        chunk.text.contains(&format!("def {}", symbol.as_str().unwrap()))
                            || chunk.text.contains(&format!("fn {}", symbol.as_str().unwrap())),
                        "{symbol} not in {:?}",
                        chunk.text
                    );
                }
                assert_eq!(symbols.len(), chunk.text.matches(opener).count(), "one symbol per function");
                let opens = chunk.text.matches(opener).count();
                let closes = if language == "rust" {
                    chunk.text.matches("\n}").count()
                } else {
                    chunk.text.matches("return").count()
                };
                assert_eq!(opens, closes, "{language} chunk holds a partial function: {:?}", chunk.text);
            }
        }
    }

    #[cfg(feature = "code")]
    #[test]
    fn every_grammar_names_the_definitions_of_a_chunk() {
        let cases = [
            ("rust", "struct Point { x: i32 }\nfn area(p: Point) -> i32 { p.x }\n", &["Point", "area"][..]),
            ("python", "class Cart:\n    def total(self):\n        return 0\n", &["Cart", "total"]),
            ("javascript", "function greet(name) { return name; }\nclass Door {}\n", &["greet", "Door"]),
            ("typescript", "interface Shape { area(): number }\nfunction draw(s: Shape) {}\n", &["Shape", "draw"]),
            ("tsx", "function Button() { return <b/>; }\n", &["Button"]),
            ("go", "package m\nfunc Sum(a int) int { return a }\ntype Bag struct{}\n", &["Sum", "Bag"]),
            ("java", "class Account { void deposit() {} }\n", &["Account", "deposit"]),
            ("c", "int add(int a, int b) { return a + b; }\nstruct node { int v; };\n", &["add", "node"]),
            ("cpp", "namespace geo { class Circle {}; }\nint main() { return 0; }\n", &["geo", "Circle", "main"]),
            ("csharp", "class Invoice { void Pay() {} }\n", &["Invoice", "Pay"]),
            ("ruby", "class Order\n  def ship\n  end\nend\n", &["Order", "ship"]),
            ("php", "<?php\nfunction render() {}\nclass View {}\n", &["render", "View"]),
            ("kotlin", "class Wallet { fun spend() {} }\n", &["Wallet", "spend"]),
            ("scala", "object Main { def run(): Unit = () }\n", &["Main", "run"]),
            ("swift", "class Track { func play() {} }\n", &["Track", "play"]),
            ("shell", "deploy() {\n  echo hi\n}\n", &["deploy"]),
        ];
        let chunker = TextChunker::default();
        for (language, code, expected) in cases {
            let chunks = chunker.chunk(code, "f", language);
            let symbols: Vec<String> = chunks
                .iter()
                .flat_map(|c| c.metadata.get("symbols").and_then(|s| s.as_array()).cloned().unwrap_or_default())
                .map(|v| v.as_str().map(str::to_string).unwrap_or_default())
                .collect();
            for name in expected {
                assert!(symbols.iter().any(|s| s == name), "{language}: {name} not in {symbols:?}");
            }
        }
    }

    #[test]
    fn markdown_chunks_carry_heading_paths_tags_and_links() {
        let section = |title: &str, body: &str, n: usize| format!("{title}\n\n{}\n\n", body.repeat(n));
        let text = [
            section("# Guide", "Intro words here. ", 5),
            section("## Install", "Install words #setup here. ", 3),
            section("### Linux", "Use apt, see [[Packages|the list]]. ", 2),
            section("## Usage", "Run it. ", 6),
        ]
        .concat();
        let chunks = TextChunker::new(100, 0).unwrap().chunk(&text, "g.md", "markdown");
        let find = |needle: &str| chunks.iter().find(|c| c.text.contains(needle)).unwrap();
        assert_eq!(find("apt").metadata["headings"], "Guide > Install > Linux");
        assert_eq!(find("Run it").metadata["headings"], "Guide > Usage");
        assert_eq!(find("#setup").metadata["tags"], serde_json::json!(["setup"]));
        assert_eq!(find("apt").metadata["links"], serde_json::json!(["Packages"]));
        let linux = find("apt");
        assert_eq!(text.lines().nth(linux.line_start - 1).unwrap(), "### Linux");
    }

    #[test]
    fn long_lines_of_wide_characters_are_cut_between_characters() {
        for width in ["é", "\u{fffd}", "😀"] {
            let text = format!("a{}", width.repeat(40_000));
            for language in ["text", "markdown"] {
                let chunks = TextChunker::default().chunk(&text, "x", language);
                let kept: usize = chunks.iter().map(|c| c.text.chars().count()).sum();
                assert!(kept >= 40_001, "{width} {language}: {kept}");
            }
        }
    }

    /// Random documents of every kind: chunking never panics, never loses
    /// text, and line ranges agree with byte ranges and move forward.
    #[test]
    fn chunking_any_input_keeps_every_character_and_exact_lines() {
        let pieces = [
            "# Title\n",
            "## Sub\n",
            "plain words here ",
            "naïve café ✓ ",
            "\n",
            "\n\n",
            "\r\n",
            "```\ncode\n```\n",
            "fn f() { let x = 1; }\n",
            "def g(x):\n    return x\n",
            "/// doc\n",
            "    indented\n",
            "- item\n",
            "| a | b |\n",
            "#tag ",
            "[[Link]] ",
            "\t",
            "}",
            "{",
            "é",
            "日本語の文章。",
            "a very long token ",
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for round in 0..300 {
            let len = next(120);
            let text: String = (0..len).map(|_| pieces[next(pieces.len())]).collect();
            let size = 20 + next(300);
            let overlap = next(size / 2);
            let chunker = TextChunker::new(size, overlap).unwrap();
            for language in ["markdown", "rust", "python", "javascript", "shell", "ruby", "text"] {
                let chunks = chunker.chunk(&text, "f", language);
                let lines = LineIndex::new(&text);
                let mut covered = vec![false; text.len()];
                let mut last = (0, 0);
                for c in &chunks {
                    assert_eq!(&text[c.byte_start..c.byte_end], c.text, "round {round} {language}");
                    assert_eq!(c.line_start, lines.line_of(c.byte_start));
                    assert!(c.line_end >= c.line_start);
                    assert!(
                        c.text.chars().count() <= size,
                        "round {round} {language}: chunk over {size}/{overlap}: {:?} IN {text:?}",
                        c.text
                    );
                    assert!((c.byte_start, c.line_start) >= last, "round {round} {language}: chunks go backwards");
                    last = (c.byte_start, c.line_start);
                    covered[c.byte_start..c.byte_end].iter_mut().for_each(|b| *b = true);
                }
                for (i, ch) in text.char_indices() {
                    assert!(
                        ch.is_whitespace() || covered[i],
                        "round {round} {language} size {size}/{overlap}: {ch:?} at {i} is in no chunk of {text:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn large_texts_are_cut_at_structural_breaks() {
        let code: String = (0..4000).map(|i| format!("fn f{i}() {{\n    let x = {i};\n\n    x + 1\n}}\n\n")).collect();
        let parts = segments(&code, false, 4096);
        assert!(parts.len() > 10);
        assert_eq!(parts.iter().map(|(_, p)| *p).collect::<String>(), code);
        for (offset, part) in &parts[1..] {
            assert!(part.starts_with("fn f"), "cut mid-function at {offset}: {:?}", &part[..20]);
        }
        let chunks = TextChunker::new(300, 0).unwrap().chunk(&code, "big.rs", "rust");
        assert!(chunks.iter().all(|c| c.text.starts_with("fn f") && c.text.ends_with('}')), "functions stay whole");
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
