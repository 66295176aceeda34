//! Source code split at syntax nodes. One tree-sitter parse per text gives
//! both the chunk boundaries and the names of the definitions in them.
//!
//! The packer walks the syntax tree top-down: consecutive children of a node
//! are packed into a chunk while they fit, except that a definition of at
//! least an eighth of a chunk is a chunk of its own; a child too large for a
//! chunk is split at its own children, and so on down to single tokens,
//! which fall back to the plain text splitter. So a chunk is one function or
//! class wherever it fits (small helpers packed together), and a function
//! too large for one chunk is cut between its statements. Comments and attributes stay with the
//! item they precede; a comment on the line where an item ends stays with it.
//! Chunks overlap (by whole statements, up to the overlap budget) only where a
//! cut falls between statements, never where a new definition starts.

use std::cell::RefCell;

use text_splitter::{Characters, TextSplitter};
use tree_sitter::{Language, Node, Parser, Tree};
use tree_sitter_language::LanguageFn;

/// A tree-sitter grammar and which of its node kinds are named definitions.
pub(crate) struct Grammar {
    language: Language,
    /// Indexed by node kind id.
    definitions: Vec<bool>,
}

/// The tree-sitter grammar of each language name [`crate::language_for_path`] returns.
const GRAMMARS: &[(&str, LanguageFn)] = &[
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
];

impl Grammar {
    /// Every grammar, by language name.
    pub(crate) fn all() -> Vec<(&'static str, Self)> {
        GRAMMARS.iter().map(|&(name, function)| (name, Self::new(function))).collect()
    }

    /// The grammar for a language name [`crate::language_for_path`] returns.
    #[cfg(test)]
    pub(crate) fn for_language(name: &str) -> Option<Self> {
        GRAMMARS.iter().find(|(n, _)| *n == name).map(|&(_, function)| Self::new(function))
    }

    fn new(function: LanguageFn) -> Self {
        let language = Language::new(function);
        let definitions = (0..language.node_kind_count())
            .map(|id| {
                let id = id as u16;
                language.node_kind_is_named(id) && language.node_kind_for_id(id).is_some_and(is_definition_kind)
            })
            .collect();
        Self { language, definitions }
    }

    /// Whether `node` defines something with a name (function, class, ...).
    fn is_definition(&self, node: Node<'_>) -> bool {
        self.definitions.get(usize::from(node.kind_id())).copied().unwrap_or(false)
    }
}

/// A named definition in source code (function, class, ...).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Symbol {
    pub start: usize,
    pub end: usize,
    /// Where its body starts.
    pub body_start: usize,
    pub name: String,
    /// The text before its body, whitespace collapsed, at most
    /// [`MAX_SIGNATURE_CHARS`] characters.
    pub signature: String,
}

/// Signatures longer than this are cut (a chunk repeats its definition's).
const MAX_SIGNATURE_CHARS: usize = 200;

/// `text` with every run of whitespace one space, at most `max` characters.
fn collapsed(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() >= max {
            return out.chars().take(max).collect();
        }
    }
    out
}

/// Chunk byte ranges of a source text and the definitions found in it.
#[derive(Debug, Default)]
pub(crate) struct CodeSplit {
    pub ranges: Vec<(usize, usize)>,
    pub symbols: Vec<Symbol>,
}

thread_local! {
    /// One parser per thread: creating one allocates, and indexing parses thousands of files.
    static PARSER: RefCell<Parser> = RefCell::new(Parser::new());
}

/// Splits `text` into chunks of at most `size` characters at its syntax
/// nodes; `None` when the grammar cannot be loaded or the parse gives up.
pub(crate) fn split(
    text: &str,
    grammar: &Grammar,
    size: usize,
    overlap: usize,
    fallback: &TextSplitter<Characters>,
) -> Option<CodeSplit> {
    let tree = parse(text, &grammar.language)?;
    let mut packer =
        Packer { grammar, text, ascii: text.is_ascii(), size, overlap, fallback, out: Vec::new(), open: None };
    packer.children(tree.root_node(), (0, text.len()), 0);
    packer.flush();
    packer.attach_punctuation();
    Some(CodeSplit { ranges: packer.out, symbols: symbols(&tree, grammar, text) })
}

fn parse(text: &str, language: &Language) -> Option<Tree> {
    PARSER.with(|parser| {
        let mut parser = parser.borrow_mut();
        parser.set_language(language).ok()?;
        parser.parse(text, None)
    })
}

/// A definition of at least `1 / STANDALONE_SHARE` of the chunk size is a
/// chunk of its own. Measured on `rag-bench code` and `rag-bench index`
/// (docs/benchmarks.md): 8 (65 characters at the default 520, about three
/// lines) scored above 4 on both packages, and one-liners and accessors still
/// pack, so a file of helpers does not become a chunk per line.
const STANDALONE_SHARE: usize = 8;

/// Deeper than this, an oversized node is split as text rather than by its
/// children, which bounds the recursion on pathological nesting.
const MAX_DEPTH: usize = 200;

/// The chunk being filled.
#[derive(Debug, Clone, Copy)]
struct Open {
    start: usize,
    end: usize,
    chars: usize,
}

/// A run of a node's children that stays together: leading comments and
/// attributes, the child itself, and a comment on the line where it ends.
#[derive(Debug, Clone, Copy)]
struct Piece<'t> {
    start: usize,
    end: usize,
    /// The child to split further when the piece does not fit; `None` for a
    /// run of comments with no item after it.
    main: Option<Node<'t>>,
}

struct Packer<'a> {
    grammar: &'a Grammar,
    text: &'a str,
    ascii: bool,
    size: usize,
    overlap: usize,
    fallback: &'a TextSplitter<Characters>,
    out: Vec<(usize, usize)>,
    open: Option<Open>,
}

impl Packer<'_> {
    /// Characters in `start..end`.
    fn chars(&self, start: usize, end: usize) -> usize {
        if self.ascii { end - start } else { self.text[start..end].chars().count() }
    }

    fn flush(&mut self) {
        if let Some(open) = self.open.take() {
            self.out.push((open.start, open.end));
        }
    }

    /// Adds `start..end` to the open chunk, or starts a new one with it, or
    /// when it is larger than a chunk, splits it as plain text.
    fn add_range(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        if let Some(open) = self.open {
            let chars = open.chars + self.chars(open.end, end);
            if chars <= self.size {
                self.open = Some(Open { end, chars, ..open });
                return;
            }
        }
        let chars = self.chars(start, end);
        self.flush();
        if chars <= self.size {
            self.open = Some(Open { start, end, chars });
        } else {
            let found: Vec<(usize, usize)> = self
                .fallback
                .chunk_indices(&self.text[start..end])
                .map(|(s, p)| (start + s, start + s + p.len()))
                .collect();
            self.out.extend(found);
        }
    }

    /// Packs the children of `node` and any text between them within
    /// `bounds`, splitting pieces too large for a chunk further.
    fn children(&mut self, node: Node<'_>, bounds: (usize, usize), depth: usize) {
        let pieces = pieces(node, bounds, self.text);
        // The children of a definition before its body are its header (doc
        // comments, signature, `impl X`); elsewhere one-liners that define
        // nothing (imports, `if x {`) are. While the open chunk holds only
        // header, it is carried into an oversized child rather than left alone.
        let in_definition = self.grammar.is_definition(node);
        let mut header = true;
        // Pieces of this node in the open chunk, for overlap.
        let mut recent: Vec<(usize, usize)> = Vec::new();
        // After a piece too large for a chunk, its last part takes the closing
        // tokens that follow (`}`, `;`, `end`) rather than leave them alone.
        let mut after_split = false;
        for piece in pieces {
            let header_like = in_definition
                || (!self.text[piece.start..piece.end].contains('\n')
                    && !piece.main.is_some_and(|main| self.grammar.is_definition(main)));
            // A definition of at least an eighth of a chunk is a chunk of its
            // own where it fits: never joined to its neighbours, so the chunk
            // embeds one function, method or type and names it in its path.
            // Smaller ones (one-liners, accessors) still pack together: a
            // chunk each would multiply the vectors of a file of helpers.
            let standalone = !in_definition
                && piece.main.is_some_and(|main| self.defines(main))
                && self.chars(piece.start, piece.end) >= self.size / STANDALONE_SHARE;
            if standalone && !after_split {
                self.flush();
                recent.clear();
                header = false;
            }
            if after_split {
                after_split = false;
                let closer = piece.main.is_some_and(|main| !main.is_named()) && piece.end - piece.start <= 3;
                if closer && let Some(open) = self.open {
                    let chars = open.chars + self.chars(open.end, piece.end);
                    if chars <= self.size {
                        self.open = Some(Open { end: piece.end, chars, ..open });
                        after_split = true;
                        continue;
                    }
                }
                self.flush();
            }
            if let Some(open) = self.open {
                let chars = open.chars + self.chars(open.end, piece.end);
                if chars <= self.size {
                    self.open = Some(Open { end: piece.end, chars, ..open });
                    recent.push((piece.start, piece.end));
                    header &= header_like;
                    continue;
                }
            }
            let chars = self.chars(piece.start, piece.end);
            let carry = header && self.open.is_some_and(|open| open.chars <= self.size * 2 / 3);
            // A body that fits alone but not after its signature is split all
            // the same, so that its first part keeps the signature.
            let body_after_header =
                in_definition && carry && piece.main.is_some_and(|main| main.child_count() > 0) && depth < MAX_DEPTH;
            if chars <= self.size && !body_after_header {
                let start = if in_definition { piece.start } else { self.new_chunk_start(&piece, &recent) };
                self.flush();
                self.open = Some(Open { start, end: piece.end, chars: self.chars(start, piece.end) });
                recent.retain(|&(s, _)| s >= start);
                recent.push((piece.start, piece.end));
                header &= header_like;
                if standalone {
                    // What follows starts a chunk of its own, closing tokens aside.
                    after_split = true;
                    recent.clear();
                    header = false;
                }
                continue;
            }
            // Too large for one chunk (or a body after its signature): split it at its own children.
            if !carry {
                self.flush();
            }
            match piece.main {
                Some(main) if main.child_count() > 0 && depth < MAX_DEPTH => {
                    self.add_range(piece.start, trim_end(self.text, piece.start, main.start_byte()));
                    self.children(main, (main.start_byte(), main.end_byte()), depth + 1);
                    self.add_range(skip_space(self.text, main.end_byte(), piece.end), piece.end);
                }
                _ => {
                    self.flush();
                    self.add_range(piece.start, piece.end);
                }
            }
            // The next piece starts a chunk of its own, closing tokens aside.
            after_split = true;
            recent.clear();
            header = false;
        }
    }

    /// Whether `node` is a definition, or wraps one that ends with it (a
    /// Python `decorated_definition`, a JavaScript `export_statement`).
    fn defines(&self, node: Node<'_>) -> bool {
        self.grammar.is_definition(node)
            || node
                .named_child(node.named_child_count().saturating_sub(1) as u32)
                .is_some_and(|inner| inner.end_byte() == node.end_byte() && self.grammar.is_definition(inner))
    }

    /// A chunk of closing punctuation alone (`;\n}\n}` where a full chunk
    /// ended just before it) joins the chunk before it, or when that is
    /// full, starts at the last line of the chunk before it.
    fn attach_punctuation(&mut self) {
        for i in 1..self.out.len() {
            let (start, end) = self.out[i];
            if self.text[start..end].chars().any(char::is_alphanumeric) {
                continue;
            }
            let (previous_start, previous_end) = self.out[i - 1];
            if self.chars(previous_start, end) <= self.size {
                self.out[i - 1].1 = previous_end.max(end);
                self.out[i].1 = self.out[i].0; // emptied; dropped below
            } else if let Some(line) = self.text[previous_start..previous_end].trim_end().rfind('\n') {
                let last_line = skip_space(self.text, previous_start + line, previous_end);
                if self.chars(last_line, end) <= self.size {
                    self.out[i].0 = last_line;
                }
            }
        }
        self.out.retain(|&(start, end)| start < end);
    }

    /// Where a chunk that must begin at `piece` starts: earlier, repeating
    /// whole pieces of the previous chunk up to the overlap, when the cut
    /// falls between statements; later pieces move back to keep a lone
    /// closing token (`}`, `end`) from becoming a chunk of its own.
    fn new_chunk_start(&mut self, piece: &Piece<'_>, recent: &[(usize, usize)]) -> usize {
        let Some(main) = piece.main else { return piece.start };
        if self.grammar.is_definition(main) {
            return piece.start;
        }
        let mut start = piece.start;
        for &(s, e) in recent.iter().rev() {
            // Whole statements only: a chunk never starts at an opening `{` or `(`.
            let statement = self.text[s..e].chars().any(char::is_alphanumeric);
            if statement && self.chars(s, piece.start) <= self.overlap && self.chars(s, piece.end) <= self.size {
                start = s;
            } else {
                break;
            }
        }
        let lone_closer = !main.is_named() && piece.end - piece.start <= 3;
        if start == piece.start
            && lone_closer
            && recent.len() >= 2
            && let (Some(&(last_start, _)), Some(&(_, kept_end))) = (recent.last(), recent.get(recent.len() - 2))
            && self.chars(last_start, piece.end) <= self.size
            && let Some(open) = self.open
        {
            self.open = Some(Open { end: kept_end, chars: self.chars(open.start, kept_end), ..open });
            start = last_start;
        }
        start
    }
}

/// `node`'s children grouped into [`Piece`]s (zero-width ones dropped).
/// Error recovery can leave text outside every child; such text within
/// `bounds` becomes a piece of its own, so nothing is lost.
fn pieces<'t>(node: Node<'t>, bounds: (usize, usize), text: &str) -> Vec<Piece<'t>> {
    let mut out: Vec<Piece<'t>> = Vec::new();
    let mut comments: Option<(usize, usize)> = None;
    let mut covered = bounds.0;
    let stray = |from: usize, to: usize, out: &mut Vec<Piece<'t>>, comments: &mut Option<(usize, usize)>| {
        if from < to && !text[from..to].trim().is_empty() {
            if let Some((start, end)) = comments.take() {
                out.push(Piece { start, end, main: None });
            }
            let start = skip_space(text, from, to);
            out.push(Piece { start, end: trim_end(text, start, to), main: None });
        }
    };
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        let (start, end) = (child.start_byte(), child.end_byte());
        if start >= end || end <= covered {
            continue;
        }
        stray(covered, start, &mut out, &mut comments);
        let start = start.max(covered);
        covered = end;
        if is_comment_or_attribute(child) {
            if comments.is_none()
                && let Some(last) = out.last_mut()
                && !text[last.end..start].contains('\n')
            {
                last.end = end; // `x = 1  # why` stays on its line
                continue;
            }
            comments = Some((comments.map_or(start, |(s, _)| s), end));
            continue;
        }
        let start = comments.take().map_or(start, |(s, _)| s);
        out.push(Piece { start, end, main: Some(child) });
    }
    if let Some((start, end)) = comments {
        out.push(Piece { start, end, main: None });
    }
    stray(covered, bounds.1, &mut out, &mut comments);
    out
}

fn is_comment_or_attribute(node: Node<'_>) -> bool {
    let kind = node.kind();
    kind.contains("comment") || matches!(kind, "attribute_item" | "decorator")
}

fn trim_end(text: &str, start: usize, end: usize) -> usize {
    start + text[start..end].trim_end().len()
}

fn skip_space(text: &str, start: usize, end: usize) -> usize {
    end - text[start..end].trim_start().len()
}

/// Kinds of named definitions, matched as parts of node kinds.
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

/// Whether nodes of this (named) kind define something with a name.
fn is_definition_kind(kind: &str) -> bool {
    (kind.ends_with("_definition")
        || kind.ends_with("_declaration")
        || kind.ends_with("_item")
        || kind.ends_with("_specifier")
        || kind.ends_with("_spec"))
        && DEFINITIONS.iter().any(|d| kind.contains(d))
        // Ruby names its definitions plainly.
        || matches!(kind, "class" | "module" | "method" | "singleton_method")
}

/// Named definitions of the tree, sorted by start (outermost first on ties).
fn symbols(tree: &Tree, grammar: &Grammar, text: &str) -> Vec<Symbol> {
    let mut out = Vec::new();
    // A cursor walk: no allocation per node.
    let mut cursor = tree.walk();
    'walk: loop {
        let node = cursor.node();
        if grammar.is_definition(node)
            && let Some(name) = definition_name(node, text)
        {
            let body_start = node.child_by_field_name("body").map_or(node.end_byte(), |b| b.start_byte());
            let signature = text
                .get(node.start_byte()..body_start)
                .map_or_else(String::new, |header| collapsed(header, MAX_SIGNATURE_CHARS));
            out.push(Symbol { start: node.start_byte(), end: node.end_byte(), body_start, name, signature });
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

fn definition_name(node: Node<'_>, text: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn split_rust(text: &str, size: usize, overlap: usize) -> Vec<&str> {
        let fallback = TextSplitter::new(text_splitter::ChunkConfig::new(size).with_overlap(overlap).unwrap());
        let split = split(text, &Grammar::for_language("rust").unwrap(), size, overlap, &fallback).unwrap();
        split.ranges.iter().map(|&(s, e)| &text[s..e]).collect()
    }

    #[test]
    fn each_sizeable_definition_is_a_chunk_and_small_items_are_packed() {
        let text = "use std::io;\nuse std::fs;\n\n/// The first.\nfn a() -> u8 {\n    1\n}\n\nfn b(x: u8) -> u8 {\n    x + 2\n}\n\n\
                    const X: u8 = 1;\nconst Y: u8 = 2;\nfn c() -> u8 { 3 }\n";
        // At 240 characters a definition of 30 or more is a chunk of its own,
        // never joined to a neighbour, though both would fit; smaller items
        // (imports, constants, a one-line function) pack together.
        assert_eq!(
            split_rust(text, 240, 0),
            vec![
                "use std::io;\nuse std::fs;",
                "/// The first.\nfn a() -> u8 {\n    1\n}",
                "fn b(x: u8) -> u8 {\n    x + 2\n}",
                "const X: u8 = 1;\nconst Y: u8 = 2;\nfn c() -> u8 { 3 }"
            ]
        );
        // At 1000 the same functions are small helpers: the file is one chunk.
        assert_eq!(split_rust(text, 1000, 0), vec![text.trim_end()]);
        // Methods of an impl too large for one chunk are each their own.
        let methods =
            "impl P {\n    fn a(&self) -> u8 {\n        1\n    }\n\n    fn b(&self) -> u8 {\n        2\n    }\n}\n";
        assert_eq!(
            split_rust(methods, 60, 0),
            vec!["impl P {", "fn a(&self) -> u8 {\n        1\n    }", "fn b(&self) -> u8 {\n        2\n    }\n}"]
        );
        // A definition that fits is whole, methods and all.
        assert_eq!(split_rust(methods, 1000, 0), vec![methods.trim_end()]);
    }

    #[test]
    fn a_large_function_is_cut_between_statements_with_its_signature_first() {
        let body: String = (0..40).map(|i| format!("    let v{i} = v{} + {i};\n", i.max(1) - 1)).collect();
        let text = format!("fn small() {{}}\n\n/// The big one.\nfn big(v0: u32) -> u32 {{\n{body}    v39\n}}\n");
        let chunks = split_rust(&text, 200, 60);
        assert_eq!(chunks[0], "fn small() {}", "the small function is not merged into the big one");
        assert!(chunks[1].starts_with("/// The big one.\nfn big(v0: u32) -> u32 {\n    let v0"), "{:?}", chunks[1]);
        for chunk in &chunks[2..] {
            assert!(chunk.starts_with("let v") || chunk.starts_with("v39"), "cut mid-statement: {chunk:?}");
            assert!(chunk.chars().count() <= 200);
        }
        assert!(chunks.last().unwrap().ends_with("v39\n}"), "the closing brace stays with the last statements");
        // Statements overlap: each continuation begins with the previous chunk's last statement.
        for pair in chunks[1..].windows(2) {
            let first_line = pair[1].lines().next().unwrap();
            assert!(pair[0].contains(first_line), "no overlap between {:?} and {:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn closing_tokens_of_nested_splits_stay_with_their_code() {
        let body: String = (0..30).map(|i| format!("            total += step({i});\n")).collect();
        let text = format!(
            "fn run() -> u32 {{\n    let mut total = 0;\n    loop {{\n        if total > 9 {{\n{body}        }};\n    }}\n}}\n"
        );
        let chunks = split_rust(&text, 200, 60);
        assert!(chunks.len() > 3);
        for chunk in &chunks {
            assert!(chunk.chars().any(char::is_alphanumeric), "a chunk of punctuation alone: {chunk:?} in {chunks:#?}");
            assert!(!chunk.starts_with('{'), "a chunk starts at an opening brace: {chunk:?}");
        }
        assert!(chunks[0].starts_with("fn run() -> u32 {\n    let mut total = 0;\n    loop {\n        if total > 9 {"));
    }

    #[test]
    fn a_body_that_fits_alone_still_keeps_its_signature_company() {
        let doc = "/// Explains at length what this function is for and why.\n";
        let body: String = (0..6).map(|i| format!("    let v{i} = {i} * 2;\n")).collect();
        let text = format!("{doc}fn described(a: u32, b: u32) -> usize {{\n{body}    0\n}}\n");
        let chunks = split_rust(&text, 200, 60);
        assert!(chunks.len() >= 2, "{chunks:#?}");
        assert!(chunks[0].starts_with("/// Explains") && chunks[0].contains("-> usize {\n    let v0"), "{chunks:#?}");
        assert!(chunks.iter().skip(1).all(|c| c.starts_with("let v") || c.starts_with('0')), "{chunks:#?}");
    }

    #[test]
    fn comments_stay_with_their_items() {
        let text = "fn a() {}\n\n// header of b\n#[inline]\nfn b() {\n    let x = 1; // trailing\n    let y = 2;\n    let z = 3;\n    x + y + z;\n}\n";
        let chunks = split_rust(text, 60, 0);
        assert_eq!(chunks[0], "fn a() {}", "{chunks:?}");
        assert!(chunks[1].starts_with("// header of b\n#[inline]\nfn b() {\n    let x = 1; // trailing"), "{chunks:?}");
    }

    #[test]
    fn a_token_larger_than_a_chunk_is_split_as_text() {
        let text = format!("const S: &str = \"{}\";\n", "word ".repeat(100));
        let chunks = split_rust(&text, 50, 0);
        assert!(chunks.len() > 5);
        assert!(chunks.iter().all(|c| c.chars().count() <= 50));
        assert_eq!(chunks.concat().replace(' ', ""), text.trim_end().replace(' ', ""));
    }

    #[test]
    fn symbols_come_from_the_same_parse() {
        let text = "mod m {\n    struct P;\n    impl P {\n        fn area(&self) {}\n    }\n}\n";
        let rust = Grammar::for_language("rust").unwrap();
        let tree = parse(text, &rust.language).unwrap();
        let names: Vec<String> = symbols(&tree, &rust, text).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["m", "P", "P", "area"]);
    }
}
