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

/// The default chunker, sizes counted in characters: markdown split at
/// headings, then paragraphs and sentences; source code of the languages with
/// a tree-sitter grammar (feature `code`: Rust, Python, JavaScript/JSX,
/// TypeScript/TSX, Go, Java, C, C++, C#, Ruby, PHP, Kotlin, Scala, Swift, shell) at the largest syntax nodes that
/// fit, so a chunk holds whole functions where they fit; everything else at
/// blank lines, lines, sentences and words.
///
/// ```
/// use rag_core::{Chunker, TextChunker};
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
    code: Vec<(&'static str, text_splitter::CodeSplitter<text_splitter::Characters>)>,
}

impl std::fmt::Debug for TextChunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextChunker").field("size", &self.size).field("overlap", &self.overlap).finish_non_exhaustive()
    }
}

/// The tree-sitter grammar of each language name [`crate::language_for_path`] returns.
#[cfg(feature = "code")]
fn grammars() -> Vec<(&'static str, tree_sitter_language::LanguageFn)> {
    vec![
        ("rust", tree_sitter_rust::LANGUAGE),
        ("python", tree_sitter_python::LANGUAGE),
        ("javascript", tree_sitter_javascript::LANGUAGE),
        ("jsx", tree_sitter_javascript::LANGUAGE),
        ("typescript", tree_sitter_typescript::LANGUAGE_TYPESCRIPT),
        ("tsx", tree_sitter_typescript::LANGUAGE_TSX),
        ("go", tree_sitter_go::LANGUAGE),
        ("java", tree_sitter_java::LANGUAGE),
        ("c", tree_sitter_c::LANGUAGE),
        ("cpp", tree_sitter_cpp::LANGUAGE),
        ("shell", tree_sitter_bash::LANGUAGE),
        ("csharp", tree_sitter_c_sharp::LANGUAGE),
        ("ruby", tree_sitter_ruby::LANGUAGE),
        ("php", tree_sitter_php::LANGUAGE_PHP),
        ("kotlin", tree_sitter_kotlin_ng::LANGUAGE),
        ("scala", tree_sitter_scala::LANGUAGE),
        ("swift", tree_sitter_swift::LANGUAGE),
    ]
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
        #[cfg(feature = "code")]
        let code = grammars()
            .into_iter()
            .map(|(name, grammar)| {
                text_splitter::CodeSplitter::new(grammar, config(size, overlap)?)
                    .map(|splitter| (name, splitter))
                    .map_err(|e| Error::InvalidInput(format!("tree-sitter grammar for {name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            size,
            overlap,
            text: TextSplitter::new(config(size, overlap)?),
            markdown: MarkdownSplitter::new(config(size, overlap)?),
            #[cfg(feature = "code")]
            code,
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
        // The splitters' cost grows faster than the text (a 4 MB source file took
        // 49 s): split large texts first at structural breaks, then chunk each part.
        let mut pieces: Vec<(usize, &str)> = Vec::new();
        for (offset, part) in segments(text, language == "markdown", SEGMENT_BYTES) {
            let found: Vec<(usize, &str)> = if language == "markdown" {
                self.markdown.chunk_indices(part).collect()
            } else if let Some(code) = self.code_splitter(language) {
                code.chunk_indices(part).collect()
            } else {
                self.text.chunk_indices(part).collect()
            };
            pieces.extend(found.into_iter().map(|(s, p)| (s + offset, p)));
        }
        if self.code_splitter(language).is_some() {
            let mut ranges: Vec<(usize, usize)> = pieces.iter().map(|(s, p)| (*s, s + p.len())).collect();
            move_leading_comments(text, &mut ranges);
            pieces = ranges.into_iter().map(|(start, end)| (start, &text[start..end])).collect();
        }
        let structure = Structure::of(text, language, self);
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
                    metadata: structure.metadata(piece, start, end),
                }
            })
            .collect()
    }

    fn settings(&self) -> String {
        let code = if cfg!(feature = "code") { " code=tree-sitter" } else { "" };
        format!("text-splitter/chars size={} overlap={}{code}", self.size, self.overlap)
    }
}

impl TextChunker {
    #[cfg(feature = "code")]
    fn grammar(&self, language: &str) -> Option<tree_sitter_language::LanguageFn> {
        grammars().into_iter().find(|(name, _)| *name == language).map(|(_, grammar)| grammar)
    }

    #[cfg(feature = "code")]
    fn code_splitter(&self, language: &str) -> Option<&text_splitter::CodeSplitter<text_splitter::Characters>> {
        self.code.iter().find(|(name, _)| *name == language).map(|(_, splitter)| splitter)
    }

    #[cfg(not(feature = "code"))]
    fn code_splitter(&self, _language: &str) -> Option<&TextSplitter<text_splitter::Characters>> {
        None
    }
}

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
        let window_end = (start + target * 2).min(text.len());
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
    list: Vec<Symbol>,
    max_end: Vec<usize>,
}

#[cfg(feature = "code")]
impl Symbols {
    fn new(list: Vec<Symbol>) -> Self {
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
        let mut found: Vec<&Symbol> = Vec::new();
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
}

impl Structure {
    fn of(text: &str, language: &str, chunker: &TextChunker) -> Self {
        if language == "markdown" {
            let headings = crate::headings(text);
            let paths = crate::markdown::heading_paths(&headings);
            return Structure::Markdown(headings.iter().map(|h| h.offset).collect(), paths);
        }
        #[cfg(feature = "code")]
        if let Some(grammar) = chunker.grammar(language) {
            return Structure::Code(Symbols::new(symbols(text, grammar)));
        }
        let _ = chunker;
        Structure::None
    }

    /// `headings`, `tags` and `links` of a markdown chunk; `symbols` of a code chunk.
    fn metadata(&self, piece: &str, start: usize, end: usize) -> Metadata {
        let mut metadata = Metadata::new();
        match self {
            Structure::None => {}
            Structure::Markdown(offsets, paths) => {
                // The last heading at or before the chunk's start decides its path.
                if let Some(path) = offsets.partition_point(|&o| o <= start).checked_sub(1).map(|i| &paths[i]) {
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
            }
        }
        let _ = end;
        metadata
    }
}

/// A named definition in source code (function, class, ...).
#[cfg(feature = "code")]
#[derive(Debug, Clone)]
struct Symbol {
    start: usize,
    end: usize,
    name: String,
}

/// Named definitions of a source text, outermost first, from its syntax tree.
#[cfg(feature = "code")]
fn symbols(text: &str, grammar: tree_sitter_language::LanguageFn) -> Vec<Symbol> {
    const DEFINITIONS: &[&str] = &[
        "function",
        "method",
        "class",
        "struct",
        "impl",
        "trait",
        "interface",
        "enum",
        "module",
        "namespace",
        "constructor",
        "type_item",
        "mod_item",
        "macro_definition",
        "type_spec",
        "object",
    ];
    let mut parser = tree_sitter::Parser::new();
    if parser.set_language(&tree_sitter::Language::new(grammar)).is_err() {
        return Vec::new();
    }
    let Some(tree) = parser.parse(text, None) else { return Vec::new() };
    let mut out = Vec::new();
    // A cursor walk over named and anonymous nodes alike: no allocation per node.
    let mut cursor = tree.walk();
    'walk: loop {
        let node = cursor.node();
        let kind = node.kind();
        let is_definition = node.is_named()
            && ((kind.ends_with("_definition")
                || kind.ends_with("_declaration")
                || kind.ends_with("_item")
                || kind.ends_with("_specifier")
                || kind.ends_with("_spec"))
                && DEFINITIONS.iter().any(|d| kind.contains(d))
                // Ruby names its definitions plainly.
                || matches!(kind, "class" | "module" | "method" | "singleton_method"));
        if is_definition && let Some(name) = definition_name(node, text) {
            out.push(Symbol { start: node.start_byte(), end: node.end_byte(), name });
        }
        if cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                continue 'walk;
            }
            if !cursor.goto_parent() {
                break 'walk;
            }
        }
    }
    out.sort_by_key(|s| s.start);
    out
}

#[cfg(feature = "code")]
fn definition_name(node: tree_sitter::Node<'_>, text: &str) -> Option<String> {
    // `name` in most grammars; C and C++ functions keep it inside nested
    // declarators; a Rust `impl` names its `type`.
    let target = node.child_by_field_name("name").or_else(|| {
        let mut declarator = node.child_by_field_name("declarator")?;
        while let Some(inner) = declarator.child_by_field_name("declarator") {
            declarator = inner;
        }
        Some(declarator)
    });
    let target = target.or_else(|| node.child_by_field_name("type"))?;
    let name = text.get(target.start_byte()..target.end_byte())?.trim();
    (!name.is_empty() && name.len() <= 200 && !name.contains('\n')).then(|| name.to_string())
}

/// Tree-sitter sees a doc comment or attribute as a sibling before its item,
/// so a split between items can leave them at the end of the previous chunk.
/// Where chunks do not overlap, move such a trailing block of comment and
/// attribute lines to the chunk of the item it belongs to.
fn move_leading_comments(text: &str, ranges: &mut [(usize, usize)]) {
    for i in 0..ranges.len().saturating_sub(1) {
        let (start, end) = ranges[i];
        let next_start = ranges[i + 1].0;
        if next_start < end {
            continue; // overlapping chunks already repeat the comment
        }
        let chunk = &text[start..end];
        let mut cut = chunk.len();
        for line in chunk.split_inclusive('\n').collect::<Vec<_>>().iter().rev() {
            let trimmed = line.trim_start();
            let is_prefix = ["///", "//", "/*", "*", "#", "@", "--"].iter().any(|p| trimmed.starts_with(p));
            if trimmed.trim().is_empty() || !is_prefix {
                break;
            }
            cut -= line.len();
        }
        if cut > 0 && cut < chunk.len() && !chunk[..cut].trim().is_empty() {
            let new_end = start + chunk[..cut].trim_end().len();
            ranges[i].1 = new_end;
            ranges[i + 1].0 = start + cut;
        }
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

    #[cfg(feature = "code")]
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
            for language in ["markdown", "rust", "python", "text"] {
                let chunks = chunker.chunk(&text, "f", language);
                let lines = LineIndex::new(&text);
                let mut covered = vec![false; text.len()];
                let mut last = (0, 0);
                for c in &chunks {
                    assert_eq!(&text[c.byte_start..c.byte_end], c.text, "round {round} {language}");
                    assert_eq!(c.line_start, lines.line_of(c.byte_start));
                    assert!(c.line_end >= c.line_start);
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
