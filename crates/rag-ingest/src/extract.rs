//! Turning a file's bytes into text: format detection and decoding.
//!
//! This is the one step the indexer calls per file; document formats (PDF,
//! Office, ...) add arms to [`extract`].

use std::path::Path;

use rag_core::source::Document;

/// Formats indexed by default when a folder is walked, by file extension.
const LANGUAGES: &[(&[&str], &str)] = &[
    (&["md", "markdown", "mdx"], "markdown"),
    (&["txt", "text"], "text"),
    (&["rst"], "rst"),
    (&["py", "pyi"], "python"),
    (&["ts", "mts", "cts"], "typescript"),
    (&["tsx"], "tsx"),
    (&["js", "mjs", "cjs"], "javascript"),
    (&["jsx"], "jsx"),
    (&["java"], "java"),
    (&["go"], "go"),
    (&["kt", "kts"], "kotlin"),
    (&["html", "htm", "xhtml"], "html"),
    (&["csv"], "csv"),
    (&["tsv", "tab"], "tsv"),
    (&["ipynb"], "notebook"),
    (&["pdf", "docx", "pptx", "odt", "odp", "epub", "xlsx", "xlsm", "xls", "ods"], "document"),
    (&["css"], "css"),
    (&["sql"], "sql"),
    (&["rs"], "rust"),
    (&["cpp", "cc", "cxx", "hpp", "hh", "hxx"], "cpp"),
    (&["c", "h"], "c"),
    (&["cs"], "csharp"),
    (&["php"], "php"),
    (&["rb"], "ruby"),
    (&["scala", "sc"], "scala"),
    (&["swift"], "swift"),
    (&["sh", "bash", "zsh", "fish"], "shell"),
    (&["json", "jsonl", "ndjson"], "json"),
    (&["xml"], "xml"),
    (&["yaml", "yml"], "yaml"),
    (&["toml"], "toml"),
];

/// Extensions of files that are never text: skipped by folder walks without
/// being read.
pub const BINARY_EXTENSIONS: &[&str] = &[
    "png",
    "jpg",
    "jpeg",
    "gif",
    "bmp",
    "ico",
    "webp",
    "tif",
    "tiff",
    "psd",
    "heic",
    "avif",
    "mp3",
    "mp4",
    "m4a",
    "wav",
    "flac",
    "ogg",
    "mov",
    "avi",
    "mkv",
    "webm",
    "zip",
    "gz",
    "tgz",
    "bz2",
    "xz",
    "zst",
    "7z",
    "rar",
    "tar",
    "jar",
    "war",
    "class",
    "exe",
    "dll",
    "so",
    "dylib",
    "o",
    "a",
    "lib",
    "obj",
    "pdb",
    "wasm",
    "bin",
    "dat",
    "iso",
    "dmg",
    "woff",
    "woff2",
    "ttf",
    "otf",
    "eot",
    "pyc",
    "pyo",
    "db",
    "sqlite",
    "sqlite3",
    "parquet",
    "npy",
    "npz",
    "pkl",
    "pt",
    "onnx",
    "safetensors",
    "gguf",
    "lock",
];

/// Whether a folder walk should consider a file: a known format, or a file
/// with no or an unknown extension that is not a known binary type (its
/// content decides: text is indexed, binary is skipped).
pub fn walkable(path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        None => true,
        Some(ext) => {
            language_for_path(path).is_some() || !BINARY_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
        }
    }
}

/// The format name of a path by its extension, if it is one `rag` knows.
///
/// ```
/// use std::path::Path;
/// assert_eq!(rag_ingest::language_for_path(Path::new("src/main.rs")), Some("rust"));
/// assert_eq!(rag_ingest::language_for_path(Path::new("notes/Todo.MD")), Some("markdown"));
/// assert_eq!(rag_ingest::language_for_path(Path::new("photo.jpg")), None);
/// ```
pub fn language_for_path(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    LANGUAGES.iter().find(|(exts, _)| exts.contains(&ext.as_str())).map(|(_, lang)| *lang)
}

/// Why a file produced no text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The bytes are not text.
    #[error("binary file (contains NUL bytes); not indexed")]
    Binary,
    /// The file claims a format but cannot be read as it.
    #[error("cannot read {0}")]
    Unreadable(String),
    /// Its conversion was cut short from outside; read it again next time.
    #[error("reading was interrupted: {0}")]
    Interrupted(String),
}

impl ExtractError {
    fn from_conversion(err: ConvertError, what: &str) -> Self {
        match err {
            ConvertError::Unreadable(reason) => Self::Unreadable(format!("{what}{reason}")),
            ConvertError::Interrupted(reason) => Self::Interrupted(reason),
        }
    }
}

/// The interpreter of a `#!` line, as a format name.
fn shebang_language(text: &str) -> Option<&'static str> {
    let line = text.lines().next()?.strip_prefix("#!")?;
    let program = line.split_whitespace().flat_map(|p| p.rsplit('/').next()).find(|p| *p != "env")?;
    Some(match program {
        p if p.starts_with("python") => "python",
        "sh" | "bash" | "zsh" | "fish" | "dash" | "ksh" => "shell",
        p if p.starts_with("node") || p == "deno" || p == "bun" => "javascript",
        "ruby" => "ruby",
        "perl" => "text",
        _ => "text",
    })
}

/// A Jupyter notebook as markdown: markdown cells as they are, code cells
/// fenced, each under a level-6 heading naming the cell, so a chunk's heading
/// path says which cell it came from.
fn notebook_to_markdown(text: &str) -> Result<String, String> {
    let notebook: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let cells = notebook["cells"].as_array().ok_or("no `cells` list")?;
    let language = notebook["metadata"]["kernelspec"]["language"]
        .as_str()
        .or(notebook["metadata"]["language_info"]["name"].as_str())
        .unwrap_or("python");
    let source = |cell: &serde_json::Value| match &cell["source"] {
        serde_json::Value::Array(lines) => lines.iter().filter_map(|l| l.as_str()).collect::<String>(),
        serde_json::Value::String(s) => s.clone(),
        _ => String::new(),
    };
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        let body = source(cell);
        if body.trim().is_empty() {
            continue;
        }
        let kind = cell["cell_type"].as_str().unwrap_or("raw");
        out.push_str(&format!("###### Cell {} ({kind})\n\n", i + 1));
        if kind == "code" {
            out.push_str(&format!("```{language}\n{}\n```\n\n", body.trim_end()));
        } else {
            out.push_str(body.trim_end());
            out.push_str("\n\n");
        }
    }
    Ok(out)
}

/// Largest HTML page parsed in this process; larger pages go to the
/// [`DocumentConverter`]. Parsing costs time that grows with size times
/// nesting, and a child process costs a few milliseconds a page.
pub const MAX_IN_PROCESS_HTML_BYTES: usize = 256 * 1024;

/// Longest column name repeated on every row; a longer one is cut there
/// (it stays whole on the `columns:` line).
const MAX_REPEATED_NAME_CHARS: usize = 64;

/// Most text a table may become: the header repeated on every row can make
/// a small file huge, so past this the table is refused.
pub const MAX_TABLE_TEXT_BYTES: usize = 64 * 1024 * 1024;

/// A table as one line per row, each cell named by its column
/// (`name: Ada | born: 1815`), so every chunk stands alone. Lines match the
/// file's lines unless a quoted cell spans several. `Err` when the text would
/// pass [`MAX_TABLE_TEXT_BYTES`].
fn table_rows(text: &str, delimiter: u8, notes: &mut Vec<String>) -> Result<String, String> {
    let mut reader =
        csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).has_headers(true).from_reader(text.as_bytes());
    let headers: Vec<String> = reader.headers().map(|h| h.iter().map(str::to_string).collect()).unwrap_or_default();
    let mut out = format!("columns: {}\n", headers.join(" | "));
    let names: Vec<String> = headers
        .iter()
        .map(|name| match name.char_indices().nth(MAX_REPEATED_NAME_CHARS) {
            Some((cut, _)) => format!("{}…", &name[..cut]),
            None => name.clone(),
        })
        .collect();
    let mut bad = 0;
    for record in reader.records() {
        match record {
            Ok(record) => {
                for (i, value) in record.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" | ");
                    }
                    if let Some(name) = names.get(i).filter(|n| !n.is_empty()) {
                        out.push_str(name);
                        out.push_str(": ");
                    }
                    out.push_str(&value.replace('\n', " "));
                }
                out.push('\n');
            }
            Err(_) => {
                bad += 1;
                out.push('\n');
            }
        }
        if out.len() > MAX_TABLE_TEXT_BYTES {
            return Err(format!(
                "its rows, each with the column names, pass {} MiB of text; not read",
                MAX_TABLE_TEXT_BYTES / (1024 * 1024)
            ));
        }
    }
    if bad > 0 {
        notes.push(format!("{bad} malformed rows were left out"));
    }
    Ok(out)
}

/// Decodes a file's bytes into text and names its format.
///
/// UTF-8 (with or without BOM) and UTF-16 with BOM are decoded exactly; other
/// bytes are decoded lossily (invalid sequences become U+FFFD) with a note.
/// Files with NUL bytes and no UTF-16 BOM are binary.
///
/// ```
/// use std::path::Path;
/// let out = rag_ingest::extract(Path::new("a.md"), b"\xEF\xBB\xBF# Hi").unwrap();
/// assert_eq!((out.text.as_str(), out.language.as_str()), ("# Hi", "markdown"));
/// assert!(rag_ingest::extract(Path::new("a.txt"), b"\x00\x01\x02").is_err());
/// ```
pub fn extract(path: &Path, bytes: &[u8]) -> Result<Document, ExtractError> {
    extract_with(path, bytes, &InProcess)
}

/// Turns a document (PDF, Office, OpenDocument, EPUB: [`DOCUMENT_EXTENSIONS`](crate::DOCUMENT_EXTENSIONS),
/// and HTML pages given as UTF-8 under the extension `html`) into markdown. [`InProcess`] calls [`convert_document`] here; a program
/// that reads untrusted files can run the conversion where a crash, a runaway
/// allocation or an endless loop can be contained and killed (the `rag` CLI
/// runs it in a child process with time and memory limits).
pub trait DocumentConverter: Send + Sync {
    /// The markdown of a document of this extension, or why it cannot be read.
    fn convert(&self, extension: &str, bytes: &[u8]) -> Result<String, ConvertError>;
}

/// Why a [`DocumentConverter`] gave no markdown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// The document cannot be read (damaged, locked, hostile, or its reader
    /// crashed or ran out of time on it): the store remembers it until it
    /// changes.
    #[error("{0}")]
    Unreadable(String),
    /// The conversion was cut short from outside (the program is stopping):
    /// nothing is remembered, and the next run reads the file again.
    #[error("{0}")]
    Interrupted(String),
}

/// Converts documents in this process, with [`convert_document`].
#[derive(Debug, Default, Clone, Copy)]
pub struct InProcess;

impl DocumentConverter for InProcess {
    fn convert(&self, extension: &str, bytes: &[u8]) -> Result<String, ConvertError> {
        convert_document(extension, bytes).map_err(ConvertError::Unreadable)
    }
}

/// Converts a document's bytes to markdown in this process: PDF pages,
/// Word and OpenDocument text, slides, sheets, EPUB chapters, HTML pages
/// (extension `html`, UTF-8). `Err` says why
/// it cannot be read (damaged, password-protected, a zip bomb, no text layer).
pub fn convert_document(extension: &str, bytes: &[u8]) -> Result<String, String> {
    crate::documents::convert(extension, bytes)
}

/// [`extract`], with documents converted by `converter`.
pub fn extract_with(path: &Path, bytes: &[u8], converter: &dyn DocumentConverter) -> Result<Document, ExtractError> {
    let mut language = language_for_path(path).unwrap_or("text");
    let mut notes = Vec::new();
    if language == "document" {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
        let text = converter.convert(&extension, bytes).map_err(|err| ExtractError::from_conversion(err, ""))?;
        let mut metadata = rag_core::store::Metadata::new();
        metadata.insert("converted_from".into(), extension.as_str().into());
        let sections = crate::documents::sections(&extension, &text);
        return Ok(Document::new(text, "markdown").with_metadata(metadata).with_sections(sections));
    }
    let text = if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        decode_utf8(rest, &mut notes)
    } else if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        decode_utf16(rest, u16::from_le_bytes, &mut notes)
    } else if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        decode_utf16(rest, u16::from_be_bytes, &mut notes)
    } else if looks_binary(bytes) {
        return Err(ExtractError::Binary);
    } else {
        decode_utf8(bytes, &mut notes)
    };
    let mut metadata = rag_core::store::Metadata::new();
    let text = match language {
        "notebook" => {
            language = "markdown";
            metadata.insert("converted_from".into(), "ipynb".into());
            notebook_to_markdown(&text).map_err(|reason| ExtractError::Unreadable(format!("notebook: {reason}")))?
        }
        "html" => {
            language = "markdown";
            metadata.insert("converted_from".into(), "html".into());
            // A small page is parsed here (its nesting is bounded before and
            // after parsing, and its size bounds the parser's time); a large
            // one where the converter runs (`rag`: a child process with time
            // and memory limits), like the binary formats.
            if text.len() <= MAX_IN_PROCESS_HTML_BYTES {
                crate::html::html_to_markdown(&text)
                    .map_err(|reason| ExtractError::Unreadable(format!("HTML: {reason}")))?
            } else {
                converter
                    .convert("html", text.as_bytes())
                    .map_err(|err| ExtractError::from_conversion(err, "HTML: "))?
            }
        }
        "csv" | "tsv" => {
            let delimiter = if language == "csv" { b',' } else { b'\t' };
            language = "text";
            metadata.insert("converted_from".into(), if delimiter == b',' { "csv" } else { "tsv" }.into());
            table_rows(&text, delimiter, &mut notes)
                .map_err(|reason| ExtractError::Unreadable(format!("table: {reason}")))?
        }
        _ => {
            if language == "text" && path.extension().is_none() {
                language = shebang_language(&text).unwrap_or("text");
            }
            text
        }
    };
    let mut body = 0..text.len();
    let front_matter = if language == "markdown" {
        crate::markdown::front_matter(&text).map_err(|err| ExtractError::Unreadable(err.to_string()))?
    } else {
        None
    };
    if let Some((fields, start)) = front_matter {
        body.start = start;
        let tags = crate::markdown::front_matter_tags(&fields);
        if !tags.is_empty() {
            metadata.insert("tags".into(), tags.into());
        }
        if let Some(title) = fields.get("title").and_then(|t| t.as_str()) {
            metadata.insert("title".into(), title.into());
        }
        metadata.insert("frontmatter".into(), serde_json::Value::Object(fields));
    }
    let mut document = Document::new(text, language).with_metadata(metadata);
    document.body = body;
    document.notes = notes;
    Ok(document)
}

/// Whether the start of a file holds a NUL byte, the cheap test git and
/// ripgrep use.
pub fn looks_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(8192)].contains(&0)
}

fn decode_utf8(bytes: &[u8], notes: &mut Vec<String>) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(err) => {
            notes.push(format!(
                "not valid UTF-8 (first bad byte at offset {}); invalid bytes were replaced with U+FFFD",
                err.valid_up_to()
            ));
            String::from_utf8_lossy(bytes).into_owned()
        }
    }
}

fn decode_utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16, notes: &mut Vec<String>) -> String {
    let units: Vec<u16> = bytes.chunks_exact(2).map(|pair| unit([pair[0], pair[1]])).collect();
    if bytes.len() % 2 == 1 {
        notes.push("UTF-16 file has an odd number of bytes; the last byte was dropped".into());
    }
    match String::from_utf16(&units) {
        Ok(text) => text,
        Err(_) => {
            notes.push("invalid UTF-16 sequences were replaced with U+FFFD".into());
            String::from_utf16_lossy(&units)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_with_bom_is_decoded() {
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend("héllo".encode_utf16().flat_map(u16::to_le_bytes));
        let out = extract(Path::new("a.txt"), &bytes).unwrap();
        assert_eq!(out.text, "héllo");
        assert!(out.notes.is_empty());
        assert_eq!(out.body, 0..6);
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily_with_a_note() {
        let out = extract(Path::new("latin1.txt"), b"caf\xE9 au lait").unwrap();
        assert_eq!(out.text, "caf\u{FFFD} au lait");
        assert_eq!(out.notes.len(), 1);
        assert!(out.notes[0].contains("offset 3"), "{:?}", out.notes);
    }

    #[test]
    fn markdown_front_matter_is_metadata_not_body() {
        let text = "---\ntitle: Plan\ntags: [work, q3]\n---\n# Plan\nbody\n";
        let out = extract(Path::new("plan.md"), text.as_bytes()).unwrap();
        assert_eq!(&out.text[out.body.clone()], "# Plan\nbody\n");
        assert_eq!(out.metadata["title"], "Plan");
        assert_eq!(out.metadata["tags"], serde_json::json!(["work", "q3"]));
        assert_eq!(out.metadata["frontmatter"]["tags"][1], "q3");
    }

    #[test]
    fn tables_repeat_the_header_on_every_row() {
        let out = extract(Path::new("people.csv"), b"name,born\nAda,1815\n\"Grace, H\",1906\n").unwrap();
        assert_eq!(out.text, "columns: name | born\nname: Ada | born: 1815\nname: Grace, H | born: 1906\n");
        let tsv = extract(Path::new("t.tsv"), b"a\tb\n1\t2\n").unwrap();
        assert_eq!(tsv.text.lines().nth(1), Some("a: 1 | b: 2"));
    }

    #[test]
    fn long_column_names_are_cut_where_they_repeat_and_huge_tables_refused() {
        let name = "n".repeat(100);
        let out = extract(Path::new("t.csv"), format!("{name},b\n1,2\n").as_bytes()).unwrap();
        assert_eq!(out.text.lines().nth(1), Some(format!("{}…: 1 | b: 2", "n".repeat(64)).as_str()));
        // 1 MB of empty cells under 2,000 long names: 70 MB of text.
        let header: Vec<String> = (0..2_000).map(|i| format!("{i:0>64}")).collect();
        let huge = format!("{}\n{}", header.join(","), format!("{}\n", ",".repeat(1_999)).repeat(520));
        let refused = table_rows(&huge, b',', &mut Vec::new());
        assert!(refused.unwrap_err().contains("pass 64 MiB"));
    }

    #[test]
    fn notebooks_become_markdown_with_one_heading_per_cell() {
        let nb = serde_json::json!({
            "cells": [
                {"cell_type": "markdown", "source": ["# Analysis\n", "Load the data."]},
                {"cell_type": "code", "source": "df = load()\n"},
            ],
            "metadata": {"kernelspec": {"language": "python"}},
        });
        let out = extract(Path::new("a.ipynb"), nb.to_string().as_bytes()).unwrap();
        assert_eq!(out.language, "markdown");
        assert!(out.text.contains("###### Cell 1 (markdown)\n\n# Analysis\nLoad the data."), "{}", out.text);
        assert!(out.text.contains("###### Cell 2 (code)\n\n```python\ndf = load()\n```"), "{}", out.text);
        assert!(matches!(extract(Path::new("b.ipynb"), b"{not json"), Err(ExtractError::Unreadable(_))));
    }

    #[test]
    fn html_drops_scripts_and_styles() {
        let html = b"<html><head><style>p{}</style></head><body><h1>Title</h1><script>x()</script><p>Body text</p></body></html>";
        let out = extract(Path::new("page.html"), html).unwrap();
        assert_eq!(out.language, "markdown");
        assert!(out.text.contains("# Title") && out.text.contains("Body text"), "{}", out.text);
        assert!(!out.text.contains("x()") && !out.text.contains("p{}"), "{}", out.text);
    }

    #[test]
    fn small_pages_are_read_here_and_large_ones_by_the_converter() {
        struct Recording(std::sync::Mutex<Vec<String>>);
        impl DocumentConverter for Recording {
            fn convert(&self, extension: &str, bytes: &[u8]) -> Result<String, ConvertError> {
                self.0.lock().unwrap().push(extension.to_string());
                convert_document(extension, bytes).map_err(ConvertError::Unreadable)
            }
        }
        let converter = Recording(std::sync::Mutex::new(Vec::new()));
        let small = "<p>kites</p>".repeat(100);
        assert!(extract_with(Path::new("s.html"), small.as_bytes(), &converter).unwrap().text.contains("kites"));
        assert!(converter.0.lock().unwrap().is_empty());
        let large = "<p>kites</p>".repeat(MAX_IN_PROCESS_HTML_BYTES / 12 + 1);
        assert!(extract_with(Path::new("l.html"), large.as_bytes(), &converter).unwrap().text.contains("kites"));
        assert_eq!(*converter.0.lock().unwrap(), ["html"]);
    }

    #[test]
    fn extensionless_files_are_text_or_scripts() {
        assert_eq!(extract(Path::new("Makefile"), b"all:\n\tcc x.c\n").unwrap().language, "text");
        assert_eq!(extract(Path::new("deploy"), b"#!/usr/bin/env bash\necho hi\n").unwrap().language, "shell");
        assert_eq!(extract(Path::new("tool"), b"#!/usr/bin/python3\nprint(1)\n").unwrap().language, "python");
        assert!(walkable(Path::new("LICENSE")) && walkable(Path::new("notes.log")));
        assert!(!walkable(Path::new("photo.JPG")) && !walkable(Path::new("lib.so")));
    }

    #[test]
    fn nul_bytes_mean_binary() {
        assert_eq!(extract(Path::new("x.rs"), b"fn main() {}\0\0"), Err(ExtractError::Binary));
    }

    #[test]
    fn every_listed_language_is_found_by_extension() {
        for ext in [
            "py", "ts", "tsx", "js", "jsx", "java", "go", "kt", "html", "css", "sql", "rs", "cpp", "cc", "cxx", "cs",
            "php", "rb", "scala", "swift", "sh", "bash", "zsh", "fish", "json", "jsonl", "xml", "yaml", "yml", "toml",
            "md", "markdown", "txt", "rst",
        ] {
            assert!(language_for_path(Path::new(&format!("f.{ext}"))).is_some(), "{ext}");
        }
    }
}
