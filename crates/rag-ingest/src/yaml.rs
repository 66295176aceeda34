//! YAML front matter as JSON, within bounds a hostile file cannot break.
//!
//! A general YAML loader expands every alias into a full copy of its anchor
//! (nine levels of ten aliases is a billion nodes) and builds, converts and
//! drops its tree recursively (one stack frame per nesting level). This
//! loader reads the parser's events into JSON with an explicit stack, counts
//! every node it builds, aliases included, and stops at the first bound it
//! passes.

use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

/// Deepest nesting of lists and mappings front matter may use.
pub const MAX_YAML_DEPTH: usize = 64;

/// Most values (scalars, lists, mappings, counting each alias's expansion)
/// front matter may hold.
pub const MAX_YAML_NODES: usize = 20_000;

/// Why front matter was refused: it passed one of the loader's bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum YamlError {
    /// Lists and mappings nested deeper than [`MAX_YAML_DEPTH`].
    #[error("front matter nests deeper than {MAX_YAML_DEPTH} levels")]
    TooDeep,
    /// More than [`MAX_YAML_NODES`] values once aliases are expanded.
    #[error("front matter expands to more than {MAX_YAML_NODES} values (aliases included)")]
    TooManyValues,
}

/// A list or mapping being built, with the key a mapping waits to pair.
enum Open {
    List(Vec<Value>, usize),
    Map(Map<String, Value>, Option<String>, usize),
}

/// The first document of `yaml` as JSON: `Ok(None)` when it is not valid
/// YAML, `Err` when it passes a bound.
///
/// ```
/// use rag_ingest::{YamlError, yaml_to_json};
/// let v = yaml_to_json("a: &x [1, 2]\nb: *x\n").unwrap().unwrap();
/// assert_eq!(v["b"][1], 2);
/// // Each level holds ten of the one before: 10^9 values if expanded.
/// let mut laughs = String::from("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
/// for i in 1..9 {
///     laughs += &format!("l{i}: &l{i} [{}]\n", vec![format!("*l{}", i - 1); 10].join(", "));
/// }
/// assert_eq!(yaml_to_json(&laughs), Err(YamlError::TooManyValues));
/// assert_eq!(yaml_to_json(&"[".repeat(10)), Ok(None), "not valid YAML");
/// assert_eq!(yaml_to_json(&"- ".repeat(100)), Err(YamlError::TooDeep));
/// ```
pub fn yaml_to_json(yaml: &str) -> Result<Option<Value>, YamlError> {
    let mut parser = Parser::new_from_str(yaml);
    let mut stack: Vec<Open> = Vec::new();
    // Anchored values by id, with how many values each counts for.
    let mut anchors: Vec<(usize, Value, usize)> = Vec::new();
    let mut values = 0usize;
    loop {
        let Ok((event, _)) = parser.next_token() else { return Ok(None) };
        let (value, anchor, size) = match event {
            Event::StreamEnd | Event::DocumentEnd => return Ok(None),
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_YAML_DEPTH {
                    return Err(YamlError::TooDeep);
                }
                stack.push(Open::List(Vec::new(), anchor));
                count(&mut values, 1)?;
                continue;
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_YAML_DEPTH {
                    return Err(YamlError::TooDeep);
                }
                stack.push(Open::Map(Map::new(), None, anchor));
                count(&mut values, 1)?;
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Open::List(items, anchor)) => (Value::Array(items), anchor, 0),
                Some(Open::Map(map, _, anchor)) => (Value::Object(map), anchor, 0),
                None => return Ok(None),
            },
            Event::Scalar(text, style, anchor, _) => {
                count(&mut values, 1)?;
                (scalar(text, style), anchor, 1)
            }
            Event::Alias(id) => {
                let Some((_, value, size)) = anchors.iter().rev().find(|(a, _, _)| *a == id) else {
                    return Ok(None);
                };
                // Counted before it is copied: a billion laughs stops here.
                count(&mut values, *size)?;
                (value.clone(), 0, *size)
            }
            _ => continue,
        };
        if anchor > 0 {
            // A collection counts for everything built since it opened.
            let size = if size == 0 { nodes(&value) } else { size };
            anchors.push((anchor, value.clone(), size));
        }
        match stack.last_mut() {
            None => return Ok(Some(value)),
            Some(Open::List(items, _)) => items.push(value),
            Some(Open::Map(map, key, _)) => match key.take() {
                None => *key = Some(key_text(&value)),
                Some(k) => {
                    map.insert(k, value);
                }
            },
        }
    }
}

fn count(values: &mut usize, more: usize) -> Result<(), YamlError> {
    *values = values.saturating_add(more);
    if *values > MAX_YAML_NODES { Err(YamlError::TooManyValues) } else { Ok(()) }
}

/// How many values a built value holds, without recursion (it is at most
/// [`MAX_YAML_DEPTH`] deep, but an explicit stack costs nothing more).
fn nodes(value: &Value) -> usize {
    let mut total = 0;
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        total += 1;
        match v {
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => pending.extend(map.values()),
            _ => {}
        }
    }
    total
}

/// A scalar as YAML 1.2's core schema reads it: plain `true`, `null`, `12`,
/// `1.5` are typed; quoted and block scalars are strings.
fn scalar(text: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ => {
            if let Ok(i) = text.parse::<i64>() {
                Value::from(i)
            } else if let Some(f) = float(&text) {
                serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
            } else {
                Value::String(text)
            }
        }
    }
}

/// A plain scalar that YAML reads as a float (`1.5`, `-2e3`, `.5`), not
/// words Rust would also parse (`inf`, `NaN`).
fn float(text: &str) -> Option<f64> {
    let digits = text.trim_start_matches(['-', '+']);
    if digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && digits.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
    {
        text.parse().ok()
    } else {
        None
    }
}

/// A mapping key as text: strings as they are, other values as JSON.
fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_values_keep_their_types() {
        let v = yaml_to_json("title: Plan\ncount: 3\nratio: 0.5\ndone: true\nnone: ~\nquoted: '12'\ntags: [a, b]\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"title": "Plan", "count": 3, "ratio": 0.5, "done": true, "none": null, "quoted": "12", "tags": ["a", "b"]})
        );
    }

    #[test]
    fn nested_mappings_and_block_scalars_load() {
        let v = yaml_to_json("author:\n  name: Ada\n  links:\n    - a\n    - b\nabout: |\n  line one\n  line two\n")
            .unwrap()
            .unwrap();
        assert_eq!(v["author"]["links"][1], "b");
        assert_eq!(v["about"], "line one\nline two\n");
    }

    #[test]
    fn aliases_copy_their_anchor_and_count_against_the_budget() {
        let v = yaml_to_json("base: &b {x: 1, y: [2, 3]}\nother: *b\n").unwrap().unwrap();
        assert_eq!(v["other"], v["base"]);
        // Each alias of a five-value anchor counts five: 4,000 of them pass the budget.
        let many = format!("a: &a [1, 2, 3, 4]\nb: [{}]\n", vec!["*a"; 4_000].join(", "));
        assert_eq!(yaml_to_json(&many), Err(YamlError::TooManyValues));
        let few = format!("a: &a [1, 2, 3, 4]\nb: [{}]\n", vec!["*a"; 100].join(", "));
        assert_eq!(yaml_to_json(&few).unwrap().unwrap()["b"].as_array().unwrap().len(), 100);
    }

    #[test]
    fn depth_is_bounded_in_block_and_flow_style() {
        let ok = format!("{}x", "- ".repeat(MAX_YAML_DEPTH));
        assert!(yaml_to_json(&ok).unwrap().is_some());
        let deep = format!("{}x", "- ".repeat(MAX_YAML_DEPTH + 1));
        assert_eq!(yaml_to_json(&deep), Err(YamlError::TooDeep));
        let flow = format!("{}{}", "[".repeat(MAX_YAML_DEPTH + 1), "]".repeat(MAX_YAML_DEPTH + 1));
        assert_eq!(yaml_to_json(&flow), Err(YamlError::TooDeep));
        // Far deeper than any stack would take, and still an answer.
        assert_eq!(yaml_to_json(&"- ".repeat(100_000)), Err(YamlError::TooDeep));
    }

    #[test]
    fn invalid_yaml_and_unknown_aliases_are_no_front_matter() {
        assert_eq!(yaml_to_json("a: [1, 2"), Ok(None));
        assert_eq!(yaml_to_json("a: *nowhere\n"), Ok(None));
        assert_eq!(yaml_to_json(""), Ok(None));
    }
}
