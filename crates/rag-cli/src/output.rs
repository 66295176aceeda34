//! What `rag` prints: text for people, JSON for programs.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use rag_core::{
    index::IndexReport,
    search::{LexicalSource, SearchHit},
    store::{StoreInfo, format_rfc3339},
};
use serde::Serialize;
use serde_json::Value;

/// `rag query --json`: field names of the original tool kept, additions after.
#[derive(Debug, Serialize)]
pub struct QueryOutput<'a> {
    pub query: &'a str,
    /// The store, or the stores' names joined by commas.
    pub store: &'a str,
    /// Every store searched, when there were several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stores: Option<&'a [&'a str]>,
    pub total_results: usize,
    pub requested_results: usize,
    /// Seconds, as in the original.
    pub query_time: f64,
    pub metadata: QueryMetadata<'a>,
    pub results: Vec<QueryResult>,
    pub backend: &'a str,
    pub model: &'a str,
    pub query_time_ms: f64,
}

/// The `metadata` object of `rag query --json`.
#[derive(Debug, Serialize)]
pub struct QueryMetadata<'a> {
    pub backend: &'a str,
    pub model: &'a str,
    pub dimension: usize,
    pub metric: &'a str,
    pub min_score: Option<f32>,
    pub filter: Option<&'a Value>,
    pub full: bool,
    pub snippet_length: usize,
    /// `hybrid`, `vector` or `lexical`.
    pub mode: &'static str,
    /// How the lexical arm was computed: `full_text` (the store's index),
    /// `rerank` (BM25 over the top vector candidates: S3 Vectors) or `none`.
    pub lexical: LexicalSource,
    pub lexical_weight: f32,
    /// How the arms were fused (hybrid mode with a lexical arm), else null.
    pub fusion: Option<rag_core::search::Fusion>,
    pub max_per_file: Option<usize>,
    /// What the caller should know about how the results were found.
    pub notes: &'a [String],
}

/// One hit of `rag query --json`.
#[derive(Debug, Serialize)]
pub struct QueryResult {
    pub score: f32,
    pub similarity_level: &'static str,
    pub similarity_description: &'static str,
    pub file_path: String,
    pub line_start: usize,
    pub line_end: usize,
    pub chunk_index: usize,
    pub total_chunks: usize,
    pub content: String,
    pub word_count: usize,
    pub char_count: usize,
    pub tags: Value,
    pub links: Value,
    pub frontmatter: Value,
    pub rank: usize,
    /// Where in the file: the heading path (markdown, or the slide, sheet,
    /// cell or chapter of a converted document), if any.
    pub headings: Option<String>,
    /// Functions, classes and types the chunk holds (code), if any.
    pub symbols: Value,
    /// Where in a converted document the chunk lies (`page_start`/`page_end`,
    /// `slide_start`/`slide_end`, `sheet`, `row_start`/`row_end`), if known.
    pub location: Option<Value>,
    pub key: String,
    pub language: String,
    pub content_hash: String,
    pub indexed_at: String,
    pub truncated: bool,
    /// Reciprocal-rank fusion score (hybrid mode), which orders the results.
    pub fused_score: Option<f32>,
    /// Rank among the vector arm's candidates, if there.
    pub vector_rank: Option<usize>,
    /// Rank in the lexical arm, if the chunk matched.
    pub lexical_rank: Option<usize>,
    /// BM25 score in the lexical arm, if the chunk matched.
    pub lexical_score: Option<f32>,
    /// The store the hit came from.
    pub store: String,
}

impl QueryResult {
    /// The result at `rank` for a hit of a search, with what each arm said of it.
    pub fn new(rank: usize, hit: &SearchHit, full: bool, snippet_length: usize) -> Self {
        let text = &hit.chunk.text;
        let (content, truncated) = if full { (text.clone(), false) } else { snippet(text, snippet_length) };
        let meta = |key: &str, empty: Value| hit.chunk.metadata.get(key).cloned().unwrap_or(empty);
        Self {
            score: hit.score,
            similarity_level: hit.level().as_str(),
            similarity_description: hit.level().description(),
            file_path: hit.chunk.source_path.clone(),
            line_start: hit.chunk.line_start,
            line_end: hit.chunk.line_end,
            chunk_index: hit.chunk.chunk_index,
            total_chunks: hit.chunk.total_chunks,
            content,
            word_count: text.split_whitespace().count(),
            char_count: text.chars().count(),
            tags: meta("tags", Value::Array(Vec::new())),
            links: meta("links", Value::Array(Vec::new())),
            frontmatter: meta("frontmatter", Value::Object(Default::default())),
            rank,
            headings: hit.chunk.metadata.get("headings").and_then(Value::as_str).map(str::to_string),
            symbols: meta("symbols", Value::Array(Vec::new())),
            location: location(&hit.chunk.metadata),
            key: hit.chunk.key.clone(),
            language: hit.chunk.language.clone(),
            content_hash: hit.chunk.content_hash.clone(),
            indexed_at: format_rfc3339(hit.indexed_at),
            truncated,
            store: hit.store.clone(),
            fused_score: hit.fused_score,
            vector_rank: hit.vector_rank,
            lexical_rank: hit.lexical_rank,
            lexical_score: hit.lexical_score,
        }
    }

    /// One line saying where the result stood in each arm (`--explain`).
    pub fn explain(&self) -> String {
        let vector = self.vector_rank.map_or_else(|| "vector -".to_string(), |r| format!("vector #{r}"));
        let lexical = match (self.lexical_rank, self.lexical_score) {
            (Some(rank), Some(score)) => format!("lexical #{rank} (bm25 {score:.2})"),
            _ => "lexical -".to_string(),
        };
        let fused = self.fused_score.map_or_else(String::new, |f| format!("  fused {f:.4}"));
        format!("{vector}  {lexical}{fused}")
    }
}

/// The location fields of a chunk's metadata, as one object.
fn location(metadata: &rag_core::store::Metadata) -> Option<Value> {
    let found: serde_json::Map<String, Value> = rag_core::source::LOCATION_KEYS
        .iter()
        .filter_map(|&key| Some((key.to_string(), metadata.get(key)?.clone())))
        .collect();
    (!found.is_empty()).then_some(Value::Object(found))
}

/// The first `max` characters of `text`, and whether it was cut.
pub fn snippet(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((cut, _)) => (text[..cut].to_string(), true),
        None => (text.to_string(), false),
    }
}

/// A chunk starts at its first token, without that line's indentation;
/// the lines after it lose their common indentation too, so code reads as
/// it is nested.
fn dedent(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let rest: Vec<&str> = lines.collect();
    let indent = rest
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start_matches([' ', '\t']).len())
        .min()
        .unwrap_or(0);
    let mut out = first.to_string();
    for line in rest {
        out.push('\n');
        out.push_str(line.get(indent..).unwrap_or_else(|| line.trim_start()));
    }
    out
}

/// The text form of query results.
pub fn query_text(
    query: &str,
    store: &str,
    results: &[QueryResult],
    top_k: usize,
    millis: f64,
    explain: Option<&str>,
) -> String {
    let mut out = String::new();
    if results.is_empty() {
        let _ = writeln!(out, "No results for {query:?} in store {store:?}.");
        return out;
    }
    let _ = writeln!(out, "{} of {top_k} results for {query:?} in store {store:?} ({millis:.0} ms)\n", results.len());
    if let Some(how) = explain.filter(|how| !how.is_empty()) {
        let _ = writeln!(out, "[{how}]\n");
    }
    for r in results {
        // Where in the file: the heading path, else the code's definitions.
        let symbols: Vec<&str> = r.symbols.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let place = match (&r.headings, symbols.as_slice()) {
            (Some(headings), _) => format!("  ({headings})"),
            (None, []) => String::new(),
            (None, names) if names.len() > 4 => format!("  ({}, …)", names[..4].join(", ")),
            (None, names) => format!("  ({})", names.join(", ")),
        };
        // Several stores: each hit says which.
        let from = if r.store.is_empty() || r.store == store { String::new() } else { format!("[{}] ", r.store) };
        let _ = writeln!(
            out,
            "{:>2}. {:.3}  {:<13} {from}{}:{}-{}{place}",
            r.rank,
            r.score,
            r.similarity_level.replace('_', " "),
            r.file_path,
            r.line_start,
            r.line_end
        );
        if explain.is_some() {
            let _ = writeln!(out, "    [{}]", r.explain());
        }
        let body = if r.truncated { format!("{}…", r.content.trim_end()) } else { r.content.clone() };
        for line in dedent(body.trim()).lines() {
            let _ = writeln!(out, "    {line}");
        }
        out.push('\n');
    }
    out
}

/// `rag get --json`: the chunks with what marks the ones asked for.
pub fn get_json(store: &str, target: &rag_core::store::ChunkRef, fetched: &rag_core::store::Fetched) -> Value {
    let chunks: Vec<Value> = fetched
        .chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            serde_json::json!({
                "key": chunk.key,
                "file_path": chunk.source_path,
                "line_start": chunk.line_start,
                "line_end": chunk.line_end,
                "chunk_index": chunk.chunk_index,
                "total_chunks": chunk.total_chunks,
                "headings": chunk.metadata.get("headings"),
                "symbols": chunk.metadata.get("symbols"),
                "location": location(&chunk.metadata),
                "language": chunk.language,
                "content": chunk.text,
                "context": !fetched.asked.contains(&i),
            })
        })
        .collect();
    serde_json::json!({ "store": store, "target": target.to_string(), "chunks": chunks })
}

/// `rag get` as text: each chunk under a line saying where it is from.
pub fn get_text(fetched: &rag_core::store::Fetched) -> String {
    let mut out = String::new();
    for (i, chunk) in fetched.chunks.iter().enumerate() {
        let role = if fetched.asked.contains(&i) { "" } else { "  (context)" };
        let place =
            chunk.metadata.get("headings").and_then(Value::as_str).map(|h| format!("  ({h})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "── {}:{}-{}  chunk {}/{}{place}{role}",
            chunk.source_path,
            chunk.line_start,
            chunk.line_end,
            chunk.chunk_index + 1,
            chunk.total_chunks
        );
        let _ = writeln!(out, "{}\n", chunk.text.trim_end());
    }
    out
}

/// The text form of an index report.
pub fn index_text(report: &IndexReport, backend: &str, verbose: bool) -> String {
    let mut out = String::new();
    let seconds = report.elapsed_ms as f64 / 1000.0;
    if report.dry_run {
        let _ = writeln!(out, "Plan for store {:?} ({backend}); dry run, nothing embedded or written:", report.store);
        for (label, paths) in [("new", &report.new), ("changed", &report.changed), ("remove", &report.removed)] {
            for path in paths {
                let _ = writeln!(out, "  {label:<8} {path}");
            }
        }
    } else {
        let _ = writeln!(out, "Indexed store {:?} ({backend}) in {seconds:.1}s", report.store);
    }
    let _ = writeln!(
        out,
        "  files:  {} new, {} changed, {} unchanged, {} removed, {} skipped, {} failed",
        report.new.len(),
        report.changed.len(),
        report.unchanged,
        report.removed.len(),
        report.skipped.len(),
        report.failed.len()
    );
    let verb = if report.dry_run { "to embed" } else { "embedded" };
    let _ = writeln!(out, "  chunks: {} {verb}, {} deleted", report.chunks_embedded, report.chunks_deleted);
    if let Some(before) = &report.rechunked_from {
        let verb = if report.dry_run { "would be" } else { "was" };
        let _ = writeln!(out, "  every file {verb} re-chunked: the store was chunked with \"{before}\"");
    }
    let labelled =
        [("skipped", &report.skipped), ("note", &report.notes), ("failed", &report.failed), ("kept", &report.kept)];
    for (label, problems) in labelled {
        // Failures and kept files are always listed; long lists of skips and notes only with -v.
        if matches!(label, "skipped" | "note") && !verbose && problems.len() > 10 {
            let what = if label == "note" { "decoded with caveats" } else { "binary, empty or too large" };
            let _ = writeln!(out, "  {label}: {} files {what} (-v lists them)", problems.len());
            continue;
        }
        for problem in problems {
            let hint = match problem.kind {
                rag_core::index::ProblemKind::TooLarge => "; raise --max-file-size to index it",
                rag_core::index::ProblemKind::TooManyChunks => "; raise --max-file-chunks to index it",
                rag_core::index::ProblemKind::NotReadAgain => "; --force tries it anyway",
                _ => "",
            };
            let _ = writeln!(out, "  {label}: {}: {}{hint}", problem.path, problem.reason);
        }
    }
    out
}

/// `rag store info` as text.
pub fn info_text(info: &StoreInfo) -> String {
    let mut out = String::new();
    let c = &info.config;
    let opt = |v: Option<u64>| v.map_or_else(|| "unknown".to_string(), |v| v.to_string());
    let time = |v: Option<i64>| v.map_or_else(|| "unknown".to_string(), format_rfc3339);
    let _ = writeln!(out, "store:      {}", c.name);
    let _ = writeln!(out, "backend:    {}", info.backend);
    let _ = writeln!(out, "model:      {}", c.model);
    let _ = writeln!(out, "dimension:  {}", c.dimension);
    let _ = writeln!(out, "metric:     {}", c.metric);
    let _ = writeln!(out, "chunking:   {}", c.chunking);
    let _ = writeln!(out, "files:      {}", opt(info.files));
    let _ = writeln!(out, "chunks:     {}", opt(info.chunks));
    let _ = writeln!(out, "size:       {}", info.size_bytes.map_or_else(|| "unknown".into(), human_bytes));
    let _ = writeln!(out, "created:    {}", time(info.created_at));
    let _ = writeln!(out, "updated:    {}", time(info.updated_at));
    if let Some(count) = info.unreadable_files.filter(|n| *n > 0) {
        let _ = writeln!(
            out,
            "unreadable files: {count} (not read again until they change; `rag index --force` reads them again)"
        );
    }
    for (key, value) in &info.details {
        let _ = writeln!(out, "{:<11} {value}", format!("{key}:"));
    }
    out
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// `rag store info --json`.
pub fn info_json(info: &StoreInfo) -> Value {
    let mut value = serde_json::to_value(info).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        for key in ["created_at", "updated_at"] {
            if let Some(secs) = map.get(key).and_then(Value::as_i64) {
                map.insert(key.into(), Value::String(format_rfc3339(secs)));
            }
        }
        let details: serde_json::Map<String, Value> =
            info.details.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        map.insert("details".into(), Value::Object(details));
    }
    value
}

/// Text for a terminal: control characters other than newline and tab
/// (`ESC` starts the sequences that set a window's title, clear the screen
/// or move the cursor), and the bidirectional overrides that make code read
/// otherwise than it runs, are shown escaped (`\x1b`, `\u{202e}`). Files'
/// text and names pass through this before they are printed.
///
/// Every text `rag` prints is built of its own words and newlines, so the
/// whole output can pass through it.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !unsafe_char(c) => out.push(c),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Set by `--quiet`: [`say`] prints nothing.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Makes [`say`] silent (`--quiet`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// One line for the person at the terminal, on stderr (so stdout stays the
/// answer or the JSON), unless `--quiet`.
pub fn say(line: &str) {
    if !QUIET.load(Ordering::Relaxed) {
        eprintln!("{}", terminal_safe(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_in_file_text_print_escaped() {
        let hostile = "title\x1b]0;pwned\x07 and \x1b[2J, \u{202e}gnp.exe\r\nnext\tline";
        assert_eq!(terminal_safe(hostile), "title\\x1b]0;pwned\\x07 and \\x1b[2J, \\u{202e}gnp.exe\\x0d\nnext\tline");
        assert!(matches!(terminal_safe("plain\ttext\n"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn snippets_cut_on_character_boundaries() {
        assert_eq!(snippet("héllo wörld", 4), ("héll".to_string(), true));
        assert_eq!(snippet("short", 10), ("short".to_string(), false));
    }

    fn hit(path: &str, metadata: serde_json::Value) -> SearchHit {
        let serde_json::Value::Object(metadata) = metadata else { panic!("metadata is an object") };
        let hit = rag_core::store::Hit {
            score: 0.5,
            chunk: rag_core::store::Chunk::new(path, 0, "text")
                .with_total(1)
                .with_lines(3, 9)
                .with_bytes(0, 4)
                .with_content_hash("h")
                .with_language("rust")
                .with_metadata(metadata),
            indexed_at: 0,
        };
        SearchHit::from_hit("notes", hit)
    }

    #[test]
    fn text_results_say_where_by_headings_or_symbols() {
        let results = [
            QueryResult::new(1, &hit("notes.md", serde_json::json!({"headings": "Install > Linux"})), false, 300),
            QueryResult::new(2, &hit("lib.rs", serde_json::json!({"symbols": ["Packer", "flush"]})), false, 300),
            QueryResult::new(3, &hit("a.txt", serde_json::json!({})), false, 300),
        ];
        let out = query_text("q", "s", &results, 3, 1.0, None);
        assert!(out.contains("notes.md:3-9  (Install > Linux)"), "{out}");
        assert!(out.contains("lib.rs:3-9  (Packer, flush)"), "{out}");
        assert!(out.contains("a.txt:3-9\n"), "{out}");
    }

    #[test]
    fn snippets_of_code_lose_the_indentation_their_first_line_lost() {
        assert_eq!(
            dedent("let x = 1;\n        if x {\n            y();\n        }"),
            "let x = 1;\nif x {\n    y();\n}"
        );
        assert_eq!(dedent("fn f() {\n    body();\n}"), "fn f() {\n    body();\n}");
        assert_eq!(dedent("# Title\n\nprose"), "# Title\n\nprose");
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
