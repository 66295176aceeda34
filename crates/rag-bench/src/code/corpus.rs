//! The code-search set of one package, built the way CodeSearchNet was:
//! every docstring and doc comment is blanked (line numbers kept), and each
//! documented definition's first sentence becomes a query whose answer is
//! that definition.

use anyhow::{Context, Result};
use tree_sitter::{Language, Node, Parser};

/// A documented definition: where it is, and the query made of its docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// The file, relative to the package folder, `/`-separated.
    pub path: String,
    /// The name it defines.
    pub name: String,
    /// First line of the definition (decorators included), 1-based.
    pub line_start: usize,
    /// Last line, 1-based, inclusive.
    pub line_end: usize,
    /// The first sentence of its documentation.
    pub query: String,
}

/// A source file with its documentation blanked, and the definitions whose
/// documentation made queries.
#[derive(Debug, Clone, PartialEq)]
pub struct Stripped {
    /// The text with every docstring or doc comment emptied, lines kept.
    pub text: String,
    /// The documented definitions, in file order.
    pub definitions: Vec<Definition>,
}

/// The languages the set is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// `.py` files: docstrings are the first string statement of a body.
    Python,
    /// `.rs` files: doc comments are `///`, `//!`, `/** */` and `/*! */`.
    Rust,
}

impl Lang {
    /// The language of a file name, if the set uses it.
    pub fn of(path: &str) -> Option<Self> {
        match path.rsplit_once('.').map(|(_, ext)| ext) {
            Some("py") => Some(Self::Python),
            Some("rs") => Some(Self::Rust),
            _ => None,
        }
    }

    fn language(self) -> Language {
        match self {
            Self::Python => Language::new(tree_sitter_python::LANGUAGE),
            Self::Rust => Language::new(tree_sitter_rust::LANGUAGE),
        }
    }
}

/// Blanks the documentation of `text` (a file at `path`) and lists its
/// documented definitions.
pub fn strip(path: &str, text: &str, lang: Lang) -> Result<Stripped> {
    let mut parser = Parser::new();
    parser.set_language(&lang.language()).context("loading the grammar")?;
    let tree = parser.parse(text, None).with_context(|| format!("{path}: the parser gave up"))?;
    let mut blanks: Vec<(usize, usize, &'static str)> = Vec::new();
    let mut definitions = Vec::new();
    let mut stack = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        match lang {
            Lang::Python => python_node(node, text, path, &mut blanks, &mut definitions),
            Lang::Rust => rust_node(node, text, path, &mut blanks, &mut definitions),
        }
        let mut cursor = node.walk();
        stack.extend(node.named_children(&mut cursor));
    }
    blanks.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, keep) in blanks {
        if start < at {
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(keep);
        out.extend(text[start..end].chars().filter(|&c| c == '\n'));
        at = end;
    }
    out.push_str(&text[at..]);
    definitions.sort_by_key(|d: &Definition| d.line_start);
    Ok(Stripped { text: out, definitions })
}

/// The docstring of a Python module, class or function body: its first
/// statement when that is a lone string.
fn python_docstring<'t>(body: Node<'t>) -> Option<Node<'t>> {
    let mut cursor = body.walk();
    let first = body.named_children(&mut cursor).find(|n| n.kind() != "comment")?;
    if first.kind() != "expression_statement" || first.named_child_count() != 1 {
        return None;
    }
    first.named_child(0).filter(|s| s.kind() == "string")
}

fn python_node(
    node: Node<'_>,
    text: &str,
    path: &str,
    blanks: &mut Vec<(usize, usize, &'static str)>,
    definitions: &mut Vec<Definition>,
) {
    let body = match node.kind() {
        "module" => Some(node),
        "function_definition" | "class_definition" => node.child_by_field_name("body"),
        _ => None,
    };
    let Some(doc) = body.and_then(python_docstring) else { return };
    // An empty string keeps the body a valid statement list.
    blanks.push((doc.start_byte(), doc.end_byte(), "\"\""));
    if node.kind() == "module" {
        return;
    }
    let name = node.child_by_field_name("name").map(|n| &text[n.byte_range()]).unwrap_or_default();
    let outer = node.parent().filter(|p| p.kind() == "decorated_definition").unwrap_or(node);
    let literal = &text[doc.byte_range()];
    let Some(query) = first_sentence(&python_string_value(literal)) else { return };
    if is_conventional(name) {
        return;
    }
    definitions.push(Definition {
        path: path.to_string(),
        name: name.to_string(),
        line_start: outer.start_position().row + 1,
        line_end: outer.end_position().row + 1,
        query,
    });
}

/// The value of a Python string literal, prefixes and quotes removed.
fn python_string_value(literal: &str) -> String {
    let body = literal.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    for quote in ["\"\"\"", "'''", "\"", "'"] {
        if let Some(inner) = body.strip_prefix(quote).and_then(|b| b.strip_suffix(quote)) {
            return inner.to_string();
        }
    }
    body.to_string()
}

/// Dunder methods and tests: left out of the queries, as CodeSearchNet left them.
fn is_conventional(name: &str) -> bool {
    (name.starts_with("__") && name.ends_with("__")) || name.starts_with("test")
}

const RUST_ITEMS: &[&str] = &[
    "function_item",
    "function_signature_item",
    "struct_item",
    "enum_item",
    "union_item",
    "trait_item",
    "type_item",
    "const_item",
    "static_item",
    "macro_definition",
    "mod_item",
];

fn is_doc_comment(comment: &str) -> bool {
    (comment.starts_with("///") && !comment.starts_with("////"))
        || comment.starts_with("//!")
        || (comment.starts_with("/**") && !comment.starts_with("/***") && comment != "/**/")
        || comment.starts_with("/*!")
}

fn rust_node(
    node: Node<'_>,
    text: &str,
    path: &str,
    blanks: &mut Vec<(usize, usize, &'static str)>,
    definitions: &mut Vec<Definition>,
) {
    if matches!(node.kind(), "line_comment" | "block_comment") {
        let comment = &text[node.byte_range()];
        if is_doc_comment(comment) {
            // A line comment's node may or may not hold its newline; the
            // blank keeps every newline either way.
            blanks.push((node.start_byte(), node.end_byte(), ""));
        }
        return;
    }
    if !RUST_ITEMS.contains(&node.kind()) {
        return;
    }
    // The outer doc comments right above the item (attributes may sit between).
    let mut lines = Vec::new();
    let mut sibling = node.prev_sibling();
    while let Some(s) = sibling {
        match s.kind() {
            "attribute_item" => {}
            "line_comment" | "block_comment" => {
                let comment = &text[s.byte_range()];
                if comment.starts_with("///") && !comment.starts_with("////") {
                    lines.push(comment.trim_end().trim_start_matches("///").to_string());
                } else if comment.starts_with("/**") && is_doc_comment(comment) {
                    let inner = comment.trim_start_matches("/**").trim_end_matches("*/");
                    lines.extend(inner.lines().rev().map(|l| l.trim_start().trim_start_matches('*').to_string()));
                } else {
                    break;
                }
            }
            _ => break,
        }
        sibling = s.prev_sibling();
    }
    lines.reverse();
    let name = node.child_by_field_name("name").map(|n| &text[n.byte_range()]).unwrap_or_default();
    let Some(query) = first_sentence(&lines.join("\n")) else { return };
    if name.is_empty() || is_conventional(name) {
        return;
    }
    definitions.push(Definition {
        path: path.to_string(),
        name: name.to_string(),
        line_start: node.start_position().row + 1,
        line_end: node.end_position().row + 1,
        query,
    });
}

/// The first sentence of a documentation text: its first paragraph, lines
/// joined, up to the first full stop followed by a space. `None` when it has
/// fewer than three words (CodeSearchNet's cut), or starts with markup
/// (`:param`, `@`, a heading or a code fence).
pub fn first_sentence(doc: &str) -> Option<String> {
    let paragraph: Vec<&str> =
        doc.lines().map(str::trim).skip_while(|l| l.is_empty()).take_while(|l| !l.is_empty()).collect();
    let joined = paragraph.join(" ");
    if joined.starts_with([':', '@', '#', '`', '>', '.', '-', '=']) {
        return None;
    }
    let mut end = joined.len();
    for (i, _) in joined.match_indices('.') {
        let next = joined[i + 1..].chars().next();
        if next.is_none_or(char::is_whitespace) {
            end = i + 1;
            break;
        }
    }
    let sentence = joined[..end].trim().to_string();
    (sentence.split_whitespace().count() >= 3).then_some(sentence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_docstrings_are_blanked_with_their_lines_kept() {
        let text = "\"\"\"Module docs.\"\"\"\n\n@decorator\ndef parse(x):\n    \"\"\"Parse the amount in a \
                    string.\n\n    More words.\n    \"\"\"\n    return x\n\nclass Box:\n    r'''Holds many things at \
                    once.'''\n    def __len__(self):\n        \"\"\"Number of things in it.\"\"\"\n        return 0\n";
        let out = strip("a.py", text, Lang::Python).unwrap();
        assert_eq!(out.text.lines().count(), text.lines().count());
        assert!(!out.text.contains("Parse the") && !out.text.contains("Holds") && !out.text.contains("Module"));
        assert!(out.text.contains("    \"\"\n\n\n\n    return x"), "{}", out.text);
        let found: Vec<(&str, usize, usize, &str)> =
            out.definitions.iter().map(|d| (d.name.as_str(), d.line_start, d.line_end, d.query.as_str())).collect();
        // `__len__` is conventional and left out; the decorator belongs to `parse`.
        assert_eq!(
            found,
            [("parse", 3, 9, "Parse the amount in a string."), ("Box", 11, 15, "Holds many things at once.")]
        );
        // The stripped text still parses as Python with no error.
        let mut parser = Parser::new();
        parser.set_language(&Lang::Python.language()).unwrap();
        assert!(!parser.parse(&out.text, None).unwrap().root_node().has_error());
    }

    #[test]
    fn rust_doc_comments_are_blanked_and_name_their_items() {
        let text = "//! Crate docs.\n\n/// Adds two numbers together quickly.\n///\n/// More.\n#[inline]\npub fn \
                    add(a: u8, b: u8) -> u8 {\n    // a plain comment stays\n    a + b\n}\n\n/** Holds a pair of \
                    values. */\nstruct Pair(u8, u8);\n\n/// Too short.\nfn f() {}\n";
        let out = strip("src/lib.rs", text, Lang::Rust).unwrap();
        assert_eq!(out.text.lines().count(), text.lines().count());
        assert!(!out.text.contains("Adds") && !out.text.contains("Crate docs") && !out.text.contains("Holds"));
        assert!(out.text.contains("// a plain comment stays"));
        let found: Vec<(&str, usize, usize, &str)> =
            out.definitions.iter().map(|d| (d.name.as_str(), d.line_start, d.line_end, d.query.as_str())).collect();
        assert_eq!(
            found,
            [("add", 7, 10, "Adds two numbers together quickly."), ("Pair", 13, 13, "Holds a pair of values.")]
        );
    }

    #[test]
    fn the_first_sentence_ends_at_a_full_stop_before_a_space() {
        assert_eq!(first_sentence("\n  Returns the e.g. value.\n  Then more.").as_deref(), Some("Returns the e.g."));
        assert_eq!(first_sentence("Splits `a.b` into parts. Next").as_deref(), Some("Splits `a.b` into parts."));
        assert_eq!(
            first_sentence("Build the list of\nall the items\n\nSecond").as_deref(),
            Some("Build the list of all the items")
        );
        assert_eq!(first_sentence("Too short."), None);
        assert_eq!(first_sentence(":param x: the value of the thing"), None);
        assert_eq!(first_sentence(""), None);
    }
}
