//! Between rag's records and S3 Vectors' metadata documents.

use aws_smithy_types::{Document, Number};
use rag_core::{
    Error, Result,
    backend::{VectorRecord, filter_metadata},
    store::Chunk,
};
use serde_json::{Map, Value};

/// Metadata keys declared non-filterable when a store's index is created.
pub const NON_FILTERABLE_KEYS: &[&str] = &["text", "content_hash", "extra"];

/// S3 Vectors' limit on filterable metadata per vector.
pub const MAX_FILTERABLE_BYTES: usize = 2048;
/// S3 Vectors' limit on all metadata per vector.
pub const MAX_METADATA_BYTES: usize = 40 * 1024;

/// JSON to a smithy `Document` (the SDK has no serde support).
pub fn json_to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Number::PosInt(u),
            (None, Some(i)) => Number::NegInt(i),
            _ => Number::Float(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(json_to_document).collect()),
        Value::Object(map) => Document::Object(map.iter().map(|(k, v)| (k.clone(), json_to_document(v))).collect()),
    }
}

/// A smithy `Document` to JSON.
pub fn document_to_json(doc: &Document) -> Value {
    match doc {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => Value::from(*u),
        Document::Number(Number::NegInt(i)) => Value::from(*i),
        Document::Number(Number::Float(f)) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Document::String(s) => Value::String(s.clone()),
        Document::Array(items) => Value::Array(items.iter().map(document_to_json).collect()),
        Document::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), document_to_json(v))).collect()),
    }
}

/// Bytes kept free for the JSON around the text and its escaping.
const METADATA_SLACK: usize = 1024;

/// Why a chunk cannot be stored at all: its filterable metadata (path,
/// folders, language, positions) passes S3 Vectors' 2 KB limit. Everything
/// else is made to fit by [`record_metadata`].
pub fn refusal(chunk: &Chunk) -> Option<String> {
    // The widest indexing time, so the check holds whenever it is written.
    let filterable = Value::Object(filter_metadata(chunk, i64::MIN)).to_string().len();
    (filterable > MAX_FILTERABLE_BYTES).then(|| {
        format!(
            "its filterable metadata (path and folders) takes {filterable} bytes, over S3 Vectors' limit of \
             {MAX_FILTERABLE_BYTES}: the path is too long or too deep for this store"
        )
    })
}

/// The metadata stored with a record's vector, within the service's limits:
/// when the chunk's own metadata (front matter) leaves no room it is dropped
/// and marked (`metadata_truncated`), and the chunk text is shortened and
/// marked (`text_truncated`) if the 40 KB limit needs it. `Err` only when
/// the filterable part alone is over its 2 KB limit ([`refusal`]).
pub fn record_metadata(record: &VectorRecord) -> Result<Value> {
    let chunk = &record.chunk;
    if let Some(reason) = refusal(chunk) {
        return Err(Error::InvalidInput(format!("chunk {} of {}: {reason}", chunk.chunk_index, chunk.source_path)));
    }
    let mut map = filter_metadata(chunk, record.indexed_at);
    let filterable = Value::Object(map.clone()).to_string().len();
    let mut extra = Map::new();
    extra.insert("byte_start".into(), chunk.byte_start.into());
    extra.insert("byte_end".into(), chunk.byte_end.into());
    let fixed = |extra: &Map<String, Value>| {
        filterable
            .saturating_add(METADATA_SLACK)
            .saturating_add(chunk.content_hash.len())
            // Stored as a string: its JSON is escaped once more.
            .saturating_add(Value::from(Value::Object(extra.clone()).to_string()).to_string().len())
    };
    if !chunk.metadata.is_empty() {
        let mut with = extra.clone();
        with.insert("metadata".into(), Value::Object(chunk.metadata.clone()));
        // The chunk's own metadata may take at most half of what is left.
        if fixed(&with) <= MAX_METADATA_BYTES / 2 {
            extra = with;
        } else {
            extra.insert("metadata_truncated".into(), true.into());
        }
    }
    let budget = MAX_METADATA_BYTES.saturating_sub(fixed(&extra).saturating_add(32));
    // JSON escaping can double a character's bytes (or more, for control
    // characters): measure the escaped text, not the raw one.
    let escaped = |text: &str| Value::from(text).to_string().len();
    let text = if escaped(&chunk.text) > budget {
        extra.insert("text_truncated".into(), true.into());
        let mut cut = budget.min(chunk.text.len());
        loop {
            while !chunk.text.is_char_boundary(cut) {
                cut -= 1;
            }
            if escaped(&chunk.text[..cut]) <= budget {
                break;
            }
            // Shrink by the overshoot; escapes take at most 6 bytes a byte.
            cut = cut.saturating_sub((escaped(&chunk.text[..cut]) - budget).div_ceil(6).max(1));
        }
        &chunk.text[..cut]
    } else {
        chunk.text.as_str()
    };
    map.insert("text".into(), text.into());
    map.insert("content_hash".into(), chunk.content_hash.clone().into());
    map.insert("extra".into(), Value::Object(extra).to_string().into());
    Ok(Value::Object(map))
}

/// A chunk from its key and stored metadata, with its indexing time.
pub fn chunk_from_metadata(key: &str, metadata: &Value) -> (Chunk, i64) {
    let get = |name: &str| metadata.get(name);
    let number = |name: &str| get(name).and_then(Value::as_u64).map_or(0, |n| usize::try_from(n).unwrap_or(0));
    let string = |name: &str| get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    let extra: Map<String, Value> =
        get("extra").and_then(Value::as_str).and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
    let extra_number =
        |name: &str| extra.get(name).and_then(Value::as_u64).map_or(0, |n| usize::try_from(n).unwrap_or(0));
    let mut chunk_metadata = extra.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    for mark in ["text_truncated", "metadata_truncated"] {
        if extra.get(mark).and_then(Value::as_bool) == Some(true) {
            chunk_metadata.insert(mark.into(), true.into());
        }
    }
    (
        Chunk::new(string("source_path"), number("chunk_index"), string("text"))
            .with_key(key)
            .with_total(number("total_chunks"))
            .with_lines(number("line_start"), number("line_end"))
            .with_bytes(extra_number("byte_start"), extra_number("byte_end"))
            .with_content_hash(string("content_hash"))
            .with_language(string("language"))
            .with_metadata(chunk_metadata),
        get("indexed_at").and_then(Value::as_i64).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str, text: &str) -> VectorRecord {
        VectorRecord {
            chunk: Chunk::new(path, 2, text)
                .with_total(5)
                .with_lines(10, 20)
                .with_bytes(100, 200)
                .with_content_hash("abc")
                .with_language("markdown")
                .with_metadata(Map::from_iter([("tags".to_string(), Value::from(vec!["x"]))])),
            vector: vec![1.0],
            indexed_at: 1_700_000_000,
        }
    }

    #[test]
    fn metadata_round_trips_through_documents() {
        let original = record("docs/a.md", "héllo");
        let metadata = record_metadata(&original).unwrap();
        let back = document_to_json(&json_to_document(&metadata));
        assert_eq!(back, metadata);
        let (chunk, indexed_at) = chunk_from_metadata(&original.chunk.key, &back);
        assert_eq!(chunk, original.chunk);
        assert_eq!(indexed_at, original.indexed_at);
    }

    #[test]
    fn huge_text_is_cut_to_the_metadata_limit_and_marked() {
        let big = "é".repeat(30_000);
        let metadata = record_metadata(&record("a.md", &big)).unwrap();
        assert!(metadata.to_string().len() <= MAX_METADATA_BYTES);
        let (chunk, _) = chunk_from_metadata("a.md#2", &metadata);
        assert!(chunk.text.len() < big.len());
        assert_eq!(chunk.metadata["text_truncated"], true);
    }

    #[test]
    fn oversized_front_matter_is_dropped_and_marked_and_the_text_still_fits() {
        let mut huge = record("a.md", &"\u{1}\"é".repeat(20_000));
        let front_matter: Map<String, Value> =
            (0..2_000).map(|i| (format!("field{i}"), Value::from("value ".repeat(4)))).collect();
        huge.chunk.metadata.insert("frontmatter".into(), Value::Object(front_matter));
        let metadata = record_metadata(&huge).unwrap();
        assert!(metadata.to_string().len() <= MAX_METADATA_BYTES, "{}", metadata.to_string().len());
        let (chunk, _) = chunk_from_metadata("a.md#2", &metadata);
        assert_eq!(chunk.metadata.get("metadata_truncated"), Some(&Value::Bool(true)));
        assert_eq!(chunk.metadata.get("text_truncated"), Some(&Value::Bool(true)));
        assert!(chunk.metadata.get("frontmatter").is_none());
        assert!(!chunk.text.is_empty() && huge.chunk.text.starts_with(&chunk.text));
    }

    #[test]
    fn overlong_paths_are_refused_naming_the_file() {
        let path = format!("{}/deep.md", "folder/".repeat(60).trim_end_matches('/'));
        let err = record_metadata(&record(&path, "x")).unwrap_err();
        assert!(err.to_string().contains("deep.md"), "{err}");
        assert!(refusal(&record(&path, "x").chunk).unwrap().contains("too long or too deep"));
        assert_eq!(refusal(&record("docs/a.md", "x").chunk), None);
    }
}
