//! Metadata filters: the S3 Vectors filter language, checked before any
//! request and evaluated the same way on every backend.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::types::Chunk;

/// Metadata keys every backend can filter on, with their types.
///
/// | key | type | |
/// |---|---|---|
/// | `source_path` | string | stored path, e.g. `docs/install.md` |
/// | `dirs` | array of strings | every folder above the file: `["docs", "docs/api"]` |
/// | `ext` | string | lower-case extension without the dot |
/// | `language` | string | format name, e.g. `markdown`, `rust` |
/// | `chunk_index`, `total_chunks`, `line_start`, `line_end` | number | |
/// | `indexed_at` | number | seconds since the Unix epoch |
pub const FILTERABLE_KEYS: &[&str] =
    &["source_path", "dirs", "ext", "language", "chunk_index", "total_chunks", "line_start", "line_end", "indexed_at"];

/// A validated metadata filter.
///
/// The language is S3 Vectors': `{"field": value}` (equality), `$eq`, `$ne`,
/// `$gt`, `$gte`, `$lt`, `$lte` (numbers), `$in`, `$nin` (non-empty arrays),
/// `$exists`, and `$and` / `$or` over lists of filters. `$eq` on an array
/// field matches any element. There is no `$not`.
///
/// ```
/// use rag_core::filter::Filter;
/// use serde_json::json;
/// let filter = Filter::parse(json!({"ext": "md", "line_start": {"$lt": 100}})).unwrap();
/// assert!(Filter::parse(json!({"ext": {"$not": "md"}})).is_err());
/// assert!(Filter::parse(json!({"ext": {"$gt": "m"}})).is_err());
/// # let _ = filter;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Filter(Value);

impl Filter {
    /// Checks a filter document.
    pub fn parse(value: Value) -> Result<Self> {
        check_filter(&value)?;
        Ok(Self(value))
    }

    /// Parses filter JSON text.
    pub fn from_json(text: &str) -> Result<Self> {
        let value = serde_json::from_str(text).map_err(|e| Error::InvalidFilter(format!("not JSON: {e}")))?;
        Self::parse(value)
    }

    /// Chunks under a folder (`docs/api` matches `docs/api/x.md` and deeper).
    pub fn folder(folder: &str) -> Self {
        Self(serde_json::json!({ "dirs": folder.trim_matches('/') }))
    }

    /// Chunks of files with one of these extensions (without dots).
    pub fn extensions(extensions: &[String]) -> Self {
        let list: Vec<Value> =
            extensions.iter().map(|e| Value::String(e.trim_start_matches('.').to_ascii_lowercase())).collect();
        Self(serde_json::json!({ "ext": { "$in": list } }))
    }

    /// Both filters.
    pub fn and(self, other: Filter) -> Self {
        Self(serde_json::json!({ "$and": [self.0, other.0] }))
    }

    /// The filter document, as sent to S3 Vectors.
    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// Whether the filter looks only at keys every chunk of a file shares
    /// ([`FILE_KEYS`]: path, folders, extension, language), so a backend can
    /// decide it once per file (`--path`, `--ext`).
    ///
    /// ```
    /// use rag_core::filter::Filter;
    /// assert!(Filter::folder("docs").and(Filter::extensions(&["md".into()])).is_per_file());
    /// assert!(!Filter::from_json(r#"{"line_start": {"$lt": 9}}"#).unwrap().is_per_file());
    /// ```
    pub fn is_per_file(&self) -> bool {
        keys_within(&self.0, FILE_KEYS)
    }

    /// A folder every passing chunk must lie under, when the filter says so
    /// (`{"dirs": "docs"}`, as `--path docs` writes, alone or inside `$and`):
    /// a backend can then look only at paths under it.
    ///
    /// ```
    /// use rag_core::filter::Filter;
    /// let filter = Filter::folder("docs/api").and(Filter::extensions(&["md".into()]));
    /// assert_eq!(filter.required_folder(), Some("docs/api"));
    /// assert_eq!(Filter::extensions(&["md".into()]).required_folder(), None);
    /// ```
    pub fn required_folder(&self) -> Option<&str> {
        required_folder(&self.0)
    }

    /// The folder when the filter is that folder and nothing else (as
    /// `--path docs` alone writes it): every chunk under it passes, so a
    /// backend need not look at each file.
    ///
    /// ```
    /// use rag_core::filter::Filter;
    /// assert_eq!(Filter::folder("docs/api").only_folder(), Some("docs/api"));
    /// assert_eq!(Filter::folder("docs").and(Filter::extensions(&["md".into()])).only_folder(), None);
    /// let not_only = Filter::from_json(r#"{"dirs": {"$eq": "docs", "$ne": "docs/old"}}"#).unwrap();
    /// assert_eq!(not_only.only_folder(), None);
    /// ```
    pub fn only_folder(&self) -> Option<&str> {
        let Value::Object(map) = &self.0 else { return None };
        // `{"dirs": DIR}` or `{"dirs": {"$eq": DIR}}`, with no other condition.
        let alone = match map.get("dirs") {
            Some(Value::Object(ops)) => ops.len() == 1,
            Some(_) => true,
            None => false,
        };
        if map.len() == 1 && alone { required_folder(&self.0) } else { None }
    }

    /// Whether the filter looks at metadata key `key` anywhere.
    ///
    /// ```
    /// use rag_core::filter::Filter;
    /// let filter = Filter::from_json(r#"{"$or": [{"language": "rust"}, {"ext": "md"}]}"#).unwrap();
    /// assert!(filter.mentions("language") && !filter.mentions("dirs"));
    /// ```
    pub fn mentions(&self, key: &str) -> bool {
        !keys_within(&self.0, &FILTERABLE_KEYS.iter().copied().filter(|k| *k != key).collect::<Vec<_>>())
    }

    /// Whether metadata (as [`filter_metadata`] builds it) passes.
    pub fn matches(&self, metadata: &Map<String, Value>) -> bool {
        matches(&self.0, metadata)
    }
}

/// The filterable metadata of a chunk (see [`FILTERABLE_KEYS`]).
pub fn filter_metadata(chunk: &Chunk, indexed_at: i64) -> Map<String, Value> {
    let mut map = file_filter_metadata(&chunk.source_path, &chunk.language);
    map.insert("chunk_index".into(), chunk.chunk_index.into());
    map.insert("total_chunks".into(), chunk.total_chunks.into());
    map.insert("line_start".into(), chunk.line_start.into());
    map.insert("line_end".into(), chunk.line_end.into());
    map.insert("indexed_at".into(), indexed_at.into());
    map
}

/// The filterable keys that are the same for every chunk of a file
/// ([`FILE_KEYS`]): enough to evaluate a filter that
/// [`is_per_file`](Filter::is_per_file) once per file.
pub fn file_filter_metadata(source_path: &str, language: &str) -> Map<String, Value> {
    let path = std::path::Path::new(source_path);
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    let parts: Vec<&str> = source_path.split('/').collect();
    let dirs: Vec<Value> = (1..parts.len()).map(|n| Value::String(parts[..n].join("/"))).filter(|d| d != "").collect();
    let mut map = Map::new();
    map.insert("source_path".into(), source_path.into());
    map.insert("dirs".into(), Value::Array(dirs));
    map.insert("ext".into(), ext.into());
    map.insert("language".into(), language.into());
    map
}

/// The filterable keys that every chunk of a file shares.
pub const FILE_KEYS: &[&str] = &["source_path", "dirs", "ext", "language"];

fn required_folder(filter: &Value) -> Option<&str> {
    let Value::Object(map) = filter else { return None };
    map.iter().find_map(|(key, condition)| match (key.as_str(), condition) {
        ("dirs", Value::String(folder)) => Some(folder.as_str()),
        ("dirs", Value::Object(ops)) => ops.get("$eq").and_then(Value::as_str),
        ("$and", Value::Array(items)) => items.iter().find_map(required_folder),
        _ => None,
    })
}

fn keys_within(filter: &Value, allowed: &[&str]) -> bool {
    let Value::Object(map) = filter else { return false };
    map.iter().all(|(key, condition)| match key.as_str() {
        "$and" | "$or" => condition.as_array().is_some_and(|items| items.iter().all(|f| keys_within(f, allowed))),
        field => allowed.contains(&field),
    })
}

fn invalid(message: String) -> Error {
    Error::InvalidFilter(message)
}

fn check_filter(value: &Value) -> Result<()> {
    let Value::Object(map) = value else {
        return Err(invalid(format!("expected an object, got {value}")));
    };
    if map.is_empty() {
        return Err(invalid("empty filter".into()));
    }
    for (key, condition) in map {
        match key.as_str() {
            "$and" | "$or" => match condition {
                Value::Array(items) if !items.is_empty() => items.iter().try_for_each(check_filter)?,
                _ => return Err(invalid(format!("{key} takes a non-empty list of filters"))),
            },
            "$not" => return Err(invalid("$not is not supported by S3 Vectors; use $ne or $nin".into())),
            op if op.starts_with('$') => return Err(invalid(format!("unknown operator {op} at the top level"))),
            field => {
                if !FILTERABLE_KEYS.contains(&field) {
                    return Err(invalid(format!(
                        "{field:?} is not filterable; use one of {}",
                        FILTERABLE_KEYS.join(", ")
                    )));
                }
                check_condition(field, condition)?;
            }
        }
    }
    Ok(())
}

fn check_condition(field: &str, condition: &Value) -> Result<()> {
    let Value::Object(ops) = condition else {
        return check_scalar(field, "equality", condition);
    };
    if ops.is_empty() {
        return Err(invalid(format!("{field}: empty condition")));
    }
    for (op, arg) in ops {
        match op.as_str() {
            "$eq" | "$ne" => check_scalar(field, op, arg)?,
            "$gt" | "$gte" | "$lt" | "$lte" => {
                if !arg.is_number() {
                    return Err(invalid(format!("{field}: {op} compares numbers only, got {arg}")));
                }
            }
            "$in" | "$nin" => match arg {
                Value::Array(items) if !items.is_empty() => {
                    items.iter().try_for_each(|item| check_scalar(field, op, item))?;
                }
                _ => return Err(invalid(format!("{field}: {op} takes a non-empty array"))),
            },
            "$exists" => {
                if !arg.is_boolean() {
                    return Err(invalid(format!("{field}: $exists takes true or false")));
                }
            }
            "$not" => return Err(invalid("$not is not supported by S3 Vectors; use $ne or $nin".into())),
            other => return Err(invalid(format!("{field}: unknown operator {other}"))),
        }
    }
    Ok(())
}

fn check_scalar(field: &str, op: &str, value: &Value) -> Result<()> {
    if value.is_string() || value.is_number() || value.is_boolean() {
        Ok(())
    } else {
        Err(invalid(format!("{field}: {op} takes a string, number or boolean, got {value}")))
    }
}

fn matches(filter: &Value, metadata: &Map<String, Value>) -> bool {
    let Value::Object(map) = filter else { return false };
    map.iter().all(|(key, condition)| match key.as_str() {
        "$and" => condition.as_array().is_some_and(|items| items.iter().all(|f| matches(f, metadata))),
        "$or" => condition.as_array().is_some_and(|items| items.iter().any(|f| matches(f, metadata))),
        field => field_matches(metadata.get(field), condition),
    })
}

fn field_matches(value: Option<&Value>, condition: &Value) -> bool {
    let Value::Object(ops) = condition else { return equals(value, condition) };
    ops.iter().all(|(op, arg)| match op.as_str() {
        "$eq" => equals(value, arg),
        "$ne" => value.is_some() && !equals(value, arg),
        "$gt" => compare(value, arg).is_some_and(|o| o.is_gt()),
        "$gte" => compare(value, arg).is_some_and(|o| o.is_ge()),
        "$lt" => compare(value, arg).is_some_and(|o| o.is_lt()),
        "$lte" => compare(value, arg).is_some_and(|o| o.is_le()),
        "$in" => arg.as_array().is_some_and(|items| items.iter().any(|item| equals(value, item))),
        "$nin" => value.is_some() && arg.as_array().is_some_and(|items| !items.iter().any(|item| equals(value, item))),
        "$exists" => arg.as_bool() == Some(value.is_some()),
        _ => false,
    })
}

/// Equality, where an array field matches when any element does.
fn equals(value: Option<&Value>, expected: &Value) -> bool {
    match value {
        Some(Value::Array(items)) => items.iter().any(|item| scalar_eq(item, expected)),
        Some(value) => scalar_eq(value, expected),
        None => false,
    }
}

fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn compare(value: Option<&Value>, arg: &Value) -> Option<std::cmp::Ordering> {
    value?.as_f64()?.partial_cmp(&arg.as_f64()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(path: &str, line_start: usize) -> Map<String, Value> {
        let chunk = Chunk {
            key: format!("{path}#0"),
            source_path: path.into(),
            chunk_index: 0,
            total_chunks: 1,
            line_start,
            line_end: line_start + 5,
            byte_start: 0,
            byte_end: 1,
            text: String::new(),
            content_hash: String::new(),
            language: "markdown".into(),
            metadata: Map::new(),
        };
        filter_metadata(&chunk, 100)
    }

    #[test]
    fn operators_match_like_s3_vectors() {
        let m = meta("docs/api/Auth.MD", 40);
        let yes = [
            json!({"ext": "md"}),
            json!({"dirs": "docs/api"}),
            json!({"dirs": {"$eq": "docs"}}),
            json!({"line_start": {"$gte": 40, "$lt": 41}}),
            json!({"ext": {"$in": ["rs", "md"]}}),
            json!({"ext": {"$nin": ["rs"]}}),
            json!({"language": {"$ne": "rust"}}),
            json!({"source_path": {"$exists": true}}),
            json!({"$or": [{"ext": "rs"}, {"$and": [{"ext": "md"}, {"chunk_index": 0}]}]}),
        ];
        for filter in yes {
            assert!(Filter::parse(filter.clone()).unwrap().matches(&m), "{filter}");
        }
        let no = [
            json!({"ext": "rs"}),
            json!({"dirs": "doc"}),
            json!({"line_start": {"$gt": 40}}),
            json!({"language": {"$nin": ["markdown"]}}),
        ];
        for filter in no {
            assert!(!Filter::parse(filter.clone()).unwrap().matches(&m), "{filter}");
        }
    }

    #[test]
    fn unsupported_filters_are_refused_before_any_request() {
        for bad in [
            json!({"ext": {"$not": "md"}}),
            json!({"$not": {"ext": "md"}}),
            json!({"ext": {"$gt": "m"}}),
            json!({"ext": {"$in": []}}),
            json!({"$and": []}),
            json!({"text": "x"}),
            json!({"ext": {"$regex": "m"}}),
            json!({"ext": ["md"]}),
            json!([1]),
        ] {
            assert!(Filter::parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn friendly_forms_build_valid_filters() {
        let m = meta("docs/a.md", 1);
        assert!(Filter::folder("docs/").matches(&m));
        assert!(Filter::extensions(&[".MD".into()]).matches(&m));
        assert!(!Filter::folder("src").and(Filter::extensions(&["md".into()])).matches(&m));
        assert!(
            Filter::parse(Filter::folder("docs").and(Filter::extensions(&["md".into()])).as_json().clone()).is_ok()
        );
    }
}
