//! Turning a file's bytes into text: format detection and decoding.
//!
//! This is the one step the indexer calls per file; document formats (PDF,
//! Office, ...) add arms to [`extract`].

use std::path::Path;

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
    (&["html", "htm"], "html"),
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

/// The format name of a path by its extension, if it is one `rag` indexes
/// when walking a folder.
///
/// ```
/// use std::path::Path;
/// assert_eq!(rag_core::language_for_path(Path::new("src/main.rs")), Some("rust"));
/// assert_eq!(rag_core::language_for_path(Path::new("notes/Todo.MD")), Some("markdown"));
/// assert_eq!(rag_core::language_for_path(Path::new("photo.jpg")), None);
/// ```
pub fn language_for_path(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    LANGUAGES.iter().find(|(exts, _)| exts.contains(&ext.as_str())).map(|(_, lang)| *lang)
}

/// A file turned into text.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// The text.
    pub text: String,
    /// Its format (`markdown`, `rust`, `text`, ...).
    pub language: &'static str,
    /// Things worth telling the user that did not stop the file (lossy decoding).
    pub notes: Vec<String>,
    /// The part of `text` to chunk (markdown front matter is left out).
    pub body: std::ops::Range<usize>,
    /// Facts about the whole file every chunk carries: `frontmatter`, `title`, `tags`.
    pub metadata: crate::Metadata,
}

/// Why a file produced no text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The bytes are not text.
    #[error("binary file (contains NUL bytes); not indexed")]
    Binary,
}

/// Decodes a file's bytes into text and names its format.
///
/// UTF-8 (with or without BOM) and UTF-16 with BOM are decoded exactly; other
/// bytes are decoded lossily (invalid sequences become U+FFFD) with a note.
/// Files with NUL bytes and no UTF-16 BOM are binary.
///
/// ```
/// use std::path::Path;
/// let out = rag_core::extract(Path::new("a.md"), b"\xEF\xBB\xBF# Hi").unwrap();
/// assert_eq!((out.text.as_str(), out.language), ("# Hi", "markdown"));
/// assert!(rag_core::extract(Path::new("a.txt"), b"\x00\x01\x02").is_err());
/// ```
pub fn extract(path: &Path, bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let language = language_for_path(path).unwrap_or("text");
    let mut notes = Vec::new();
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
    let mut metadata = crate::Metadata::new();
    let mut body = 0..text.len();
    if language == "markdown"
        && let Some((fields, start)) = crate::markdown::front_matter(&text)
    {
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
    Ok(Extracted { text, language, notes, body, metadata })
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
