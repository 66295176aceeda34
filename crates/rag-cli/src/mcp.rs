//! `rag mcp`: the stores as Model Context Protocol tools, over stdio, on the
//! official Rust SDK (rmcp).
//!
//! Tools: `search` (one or several stores, a character budget for the whole
//! answer), `get` (a hit's full text and its neighbours, from the store),
//! `list_stores` and `index_status` (what changed on disk since the store
//! was indexed, without embedding). Backends and embedder clients stay open
//! between calls. A bad call is a tool error with the message `rag` would
//! print; the server goes on serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rag_core::filter::Filter;
use rag_core::index::Indexer;
use rag_core::search::{SearchMode, SearchOptions, check_search};
use rag_core::store::ChunkRef;
use rag_ingest::{DiscoverOptions, FileSource, TextChunker, discover};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cli::{BackendArgs, DEFAULT_READER_MEMORY_MIB, DEFAULT_READER_TIMEOUT_SECS, EmbedderArgs};
use crate::isolate::ChildConverter;
use crate::records::{IndexedSource, IndexedSources};
use crate::session::{Session, combine_filters};

/// Most hits one `search` returns.
pub const MAX_K: usize = 100;

/// The answer budget of `search` when the call gives none, in characters.
pub const DEFAULT_MAX_CHARS: usize = 20_000;

/// Longest snippet of a hit before the budget cuts it.
const MAX_SNIPPET: usize = 2_000;

/// How `rag mcp` was started.
#[derive(Debug, Clone)]
pub struct McpOptions {
    /// The data folder (stores, remembered remote stores and sources).
    pub data_dir: PathBuf,
    /// Where stores live.
    pub backend: BackendArgs,
    /// Where embeddings come from.
    pub embedder: EmbedderArgs,
    /// The only stores served (others are refused); empty means every store.
    pub stores: Vec<String>,
}

/// The server: its options and what it keeps open between calls.
#[derive(Clone)]
pub struct RagServer {
    state: Arc<State>,
    tool_router: ToolRouter<Self>,
}

struct State {
    /// Backends, stores and embedder clients, opened once and kept between calls.
    session: Session,
    /// The stores `search` uses when a call names none (the served ones);
    /// empty means every store.
    stores: Vec<String>,
}

/// Input of `search`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct SearchParams {
    /// What to look for: a question, a phrase, or exact identifiers, error codes and names.
    pub query: String,
    /// Stores to search (names from list_stores); default: the server's stores, else every store.
    #[serde(default)]
    pub stores: Option<Vec<String>>,
    /// Number of hits, 1 to 100 (default 10).
    #[serde(default)]
    pub k: Option<usize>,
    /// "hybrid" (default: full-text and vector ranks fused; best for identifiers and names),
    /// "vector" (meaning only) or "lexical" (words only).
    #[serde(default)]
    pub mode: Option<String>,
    /// A metadata filter as JSON, e.g. {"language": "rust"} or {"tags": {"$in": ["todo"]}}.
    #[serde(default)]
    pub filter: Option<Value>,
    /// Only files under this folder of the store, e.g. "docs/api".
    #[serde(default)]
    pub path: Option<String>,
    /// Only files with these extensions, e.g. ["md", "rs"].
    #[serde(default)]
    pub ext: Option<Vec<String>>,
    /// Budget in characters for the whole answer (default 20000); snippets are cut, then hits dropped, to fit.
    #[serde(default)]
    pub max_chars: Option<usize>,
}

/// Input of `get`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct GetParams {
    /// The store the hit came from.
    pub store: String,
    /// A hit's key (e.g. "docs/install.md#3"); or give file_path and line_start instead.
    #[serde(default)]
    pub key: Option<String>,
    /// A file's path as hits show it.
    #[serde(default)]
    pub file_path: Option<String>,
    /// First line wanted (1-based), with file_path.
    #[serde(default)]
    pub line_start: Option<usize>,
    /// Last line wanted (default: line_start).
    #[serde(default)]
    pub line_end: Option<usize>,
    /// Neighbouring chunks to add on each side, 0 to 20 (default 0).
    #[serde(default)]
    pub context: Option<usize>,
}

/// Input of `index_status`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct StatusParams {
    /// The store to check.
    pub store: String,
}

/// Turns a tool's outcome into its MCP result: structured content with a
/// short text rendering, or a tool error with the message `rag` would print.
fn answer(outcome: Result<(Value, String)>) -> Result<CallToolResult, ErrorData> {
    Ok(match outcome {
        Ok((value, text)) => {
            let mut result = CallToolResult::structured(value);
            result.content = vec![ContentBlock::text(text)];
            result
        }
        Err(err) => {
            CallToolResult::error(vec![ContentBlock::text(format!("error: {}", crate::errors::error_chain(&err)))])
        }
    })
}

#[tool_router(router = tool_router)]
impl RagServer {
    /// A server over the stores of `options`.
    pub fn new(options: McpOptions) -> Self {
        let McpOptions { data_dir, backend, embedder, stores } = options;
        let session = Session::new(data_dir, backend, embedder).serving_only(stores.clone());
        let state = State { session, stores };
        Self { state: Arc::new(state), tool_router: Self::tool_router() }
    }

    /// Searches the user's indexed files.
    #[tool(
        name = "search",
        description = "Search the user's indexed files (code, docs, notes) for the passages most relevant to a query. \
                       Returns hits with store, key, file_path, line range, score, headings or symbols and a snippet; \
                       use `get` with a hit's store and key for its full text and neighbours."
    )]
    async fn search(&self, Parameters(params): Parameters<SearchParams>) -> Result<CallToolResult, ErrorData> {
        answer(self.run_search(params).await)
    }

    /// A hit's full text from the store.
    #[tool(
        name = "get",
        description = "Read what a store holds for a hit: by store and key, or by store, file_path and a line range; \
                       `context` adds neighbouring chunks. Reads the index, never arbitrary files on disk."
    )]
    async fn get(&self, Parameters(params): Parameters<GetParams>) -> Result<CallToolResult, ErrorData> {
        answer(self.run_get(params).await)
    }

    /// The stores and what they hold.
    #[tool(
        name = "list_stores",
        description = "List the stores that can be searched: name, backend, embedding model, dimension, \
                       files, chunks and when each was last indexed."
    )]
    async fn list_stores(&self) -> Result<CallToolResult, ErrorData> {
        answer(self.run_list_stores().await)
    }

    /// What changed on disk since a store was indexed.
    #[tool(
        name = "index_status",
        description = "Tell what changed on disk since a store was last indexed (new, changed and deleted files), \
                       without embedding anything. `rag index` brings the store up to date."
    )]
    async fn index_status(&self, Parameters(params): Parameters<StatusParams>) -> Result<CallToolResult, ErrorData> {
        answer(self.run_index_status(params).await)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for RagServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("vector-rag", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "The user's files (code, docs, notes) indexed for retrieval. Call `search` with what you need; \
                 hits name their store, file and lines. Call `get` with a hit's store and key to read it in full.",
            )
    }
}

impl RagServer {
    async fn run_search(&self, params: SearchParams) -> Result<(Value, String)> {
        let query = params.query.trim();
        let mut notes = Vec::new();
        let k = match params.k.unwrap_or(10) {
            0 => bail!("k must be at least 1"),
            k if k > MAX_K => {
                notes.push(format!("k of {k} lowered to {MAX_K}"));
                MAX_K
            }
            k => k,
        };
        let budget = params.max_chars.unwrap_or(DEFAULT_MAX_CHARS);
        if budget == 0 {
            bail!("max_chars must be at least 1: it is the budget for the whole answer, in characters");
        }
        let mode: SearchMode = match params.mode.as_deref() {
            None => SearchMode::Hybrid,
            Some(mode) => mode.parse()?,
        };
        let filter = params.filter.map(Filter::parse).transpose()?;
        let filter = combine_filters(filter, params.path.as_deref(), params.ext.as_deref().unwrap_or_default());
        let options = SearchOptions::new(k).with_mode(mode).with_filter(filter);
        check_search(query, &options)?;
        let session = &self.state.session;
        let named = params.stores.filter(|s| !s.is_empty()).unwrap_or_else(|| self.state.stores.clone());
        let stores = session.stores_to_search(&named).await?;
        let targets = session.targets(&stores).await?;
        let found = rag_core::search::search_stores(&targets, query, &options).await?;
        for (store, results) in &found.stores {
            notes.extend(results.notes.iter().map(|note| format!("{store}: {note}")));
        }
        let hits: Vec<Value> = found
            .hits
            .iter()
            .map(|found| {
                let chunk = &found.chunk;
                json!({
                    "store": found.store,
                    "key": chunk.key,
                    "file_path": chunk.source_path,
                    "line_start": chunk.line_start,
                    "line_end": chunk.line_end,
                    "score": found.score,
                    "fused_score": found.fused_score,
                    "headings": chunk.metadata.get("headings"),
                    "symbols": chunk.metadata.get("symbols"),
                    "snippet": chunk.text,
                })
            })
            .collect();
        Ok(fit_search(query, &stores, hits, notes, budget))
    }

    async fn run_get(&self, params: GetParams) -> Result<(Value, String)> {
        let target = match (params.key, params.file_path) {
            (Some(key), _) if !key.trim().is_empty() => ChunkRef::Key(key),
            (_, Some(path)) => {
                let Some(start) = params.line_start else { bail!("give line_start with file_path") };
                ChunkRef::lines(path, start, params.line_end.unwrap_or(start))?
            }
            _ => bail!("give a hit's key, or file_path with line_start"),
        };
        let store = self.state.session.store(&params.store).await?;
        let fetched = store.get(&target, params.context.unwrap_or(0)).await?;
        let value = crate::output::get_json(&params.store, &target, &fetched);
        Ok((value, crate::output::get_text(&fetched)))
    }

    async fn run_list_stores(&self) -> Result<(Value, String)> {
        let mut rows = Vec::new();
        let mut text = String::new();
        for name in self.state.session.all_stores().await? {
            let info = match self.state.session.store(&name).await {
                Ok(store) => store.info().await.map_err(anyhow::Error::from),
                Err(err) => Err(err),
            };
            match info {
                Ok(info) => {
                    let last = info.updated_at.map(rag_core::store::format_rfc3339);
                    text.push_str(&format!(
                        "{name} ({}, {} dims {}): {} files, {} chunks, last indexed {}\n",
                        info.backend,
                        info.config.dimension,
                        info.config.model,
                        info.files.map_or_else(|| "?".into(), |n| n.to_string()),
                        info.chunks.map_or_else(|| "?".into(), |n| n.to_string()),
                        last.as_deref().unwrap_or("unknown"),
                    ));
                    rows.push(json!({
                        "name": name,
                        "backend": info.backend,
                        "model": info.config.model,
                        "dimension": info.config.dimension,
                        "files": info.files,
                        "chunks": info.chunks,
                        "last_indexed": last,
                    }));
                }
                Err(err) => {
                    let message = crate::errors::error_chain(&err);
                    text.push_str(&format!("{name}: cannot be read: {message}\n"));
                    rows.push(json!({ "name": name, "error": message }));
                }
            }
        }
        if rows.is_empty() {
            text.push_str("no stores yet; index some files with `rag index PATHS --store NAME`\n");
        }
        Ok((json!({ "stores": rows }), text))
    }

    async fn run_index_status(&self, params: StatusParams) -> Result<(Value, String)> {
        let name = params.store;
        let store = self.state.session.store(&name).await?;
        let sources = IndexedSources::load(self.state.session.data_dir())?;
        let Some(source) = sources.get(&name).cloned() else {
            bail!(
                "no record of what indexed store {name:?} (it was indexed by an older rag, or on another machine); \
                 run `rag index PATHS --store {name}` once"
            );
        };
        let IndexedSource { root, patterns, hidden, no_ignore } = source;
        let options = DiscoverOptions { root: root.clone(), hidden, no_ignore };
        let walked = patterns.clone();
        let discovery = tokio::task::spawn_blocking(move || discover(&walked, &options))
            .await
            .context("the status check stopped")??;
        // The plan of `rag index` with the store's own chunking: what it would
        // embed, delete and leave, with no model and nothing written.
        let mut notes = Vec::new();
        let chunker = TextChunker::from_settings(&store.config().chunking).unwrap_or_else(|| {
            notes.push(format!(
                "the store was chunked with settings this rag does not make ({}); `rag index` re-chunks every file",
                store.config().chunking
            ));
            TextChunker::default()
        });
        let timeout = std::time::Duration::from_secs_f64(DEFAULT_READER_TIMEOUT_SECS);
        let mut files = FileSource::new(discovery);
        if let Some(converter) = ChildConverter::of_this_binary(timeout, DEFAULT_READER_MEMORY_MIB) {
            files = files.with_converter(converter);
        }
        let planner = Indexer::planner(store.backend().clone(), Arc::new(chunker));
        let plan = planner.plan(&name, Arc::new(files)).await?;
        let out_of_date = plan.new.len() + plan.changed.len() + plan.removed.len();
        let text = format!(
            "store {name:?} against {}: {} new, {} changed, {} deleted, {} unchanged{}\n",
            root.display(),
            plan.new.len(),
            plan.changed.len(),
            plan.removed.len(),
            plan.unchanged,
            if out_of_date > 0 {
                format!("; `rag index {} --store {name}` brings it up to date", patterns.join(" "))
            } else {
                String::new()
            }
        );
        let first = |paths: &[String]| paths.iter().take(50).cloned().collect::<Vec<_>>();
        let problems = |problems: &[rag_core::index::FileProblem]| {
            problems.iter().take(50).map(|p| json!({"path": p.path, "reason": p.reason})).collect::<Vec<_>>()
        };
        let value = json!({
            "store": name,
            "root": root,
            "patterns": patterns,
            "new": plan.new.len(),
            "changed": plan.changed.len(),
            "deleted": plan.removed.len(),
            "unchanged": plan.unchanged,
            "new_files": first(&plan.new),
            "changed_files": first(&plan.changed),
            "deleted_files": first(&plan.removed),
            "chunks_to_embed": plan.chunks_embedded,
            "chunks_to_delete": plan.chunks_deleted,
            "skipped": problems(&plan.skipped),
            "failing": problems(&plan.failed),
            "notes": notes,
        });
        Ok((value, text))
    }
}

/// The `search` answer within `budget` characters: snippets are cut shorter,
/// then hits dropped from the end, until both the JSON and the text fit.
fn fit_search(query: &str, stores: &[String], hits: Vec<Value>, notes: Vec<String>, budget: usize) -> (Value, String) {
    let total = hits.len();
    let mut limit = MAX_SNIPPET;
    let mut kept = total;
    loop {
        let shown: Vec<Value> = hits[..kept]
            .iter()
            .map(|hit| {
                let mut hit = hit.clone();
                let text = hit["snippet"].as_str().unwrap_or_default();
                let cut = text.chars().count() > limit;
                let snippet: String = text.chars().take(limit).collect();
                hit["snippet"] = json!(if cut { format!("{snippet}…") } else { snippet });
                hit["snippet_truncated"] = json!(cut);
                hit
            })
            .collect();
        let truncated = kept < total || shown.iter().any(|h| h["snippet_truncated"] == true);
        let mut notes = notes.clone();
        if kept < total {
            notes.push(format!("{} of {total} hits left out to fit max_chars of {budget}", total - kept));
        }
        let value = json!({
            "query": query.chars().take(200).collect::<String>(),
            "stores": stores,
            "hits": shown,
            "truncated": truncated,
            "notes": notes,
        });
        let text = search_text(&value);
        let size = value.to_string().chars().count().max(text.chars().count());
        if size <= budget || kept == 0 {
            return (value, text);
        }
        if limit > 0 {
            // Shrink the snippets in proportion to what is over, at least by a quarter.
            let per_hit = (size - budget).div_ceil(kept);
            limit = limit.saturating_sub(per_hit.max(limit / 4).max(1));
        } else {
            kept -= 1;
        }
    }
}

/// The short text of a `search` answer.
fn search_text(value: &Value) -> String {
    let mut out = String::new();
    let hits = value["hits"].as_array().map(Vec::as_slice).unwrap_or_default();
    if hits.is_empty() {
        out.push_str("no hits\n");
    }
    for (i, hit) in hits.iter().enumerate() {
        let place = hit["headings"].as_str().map(|h| format!(" ({h})")).unwrap_or_default();
        out.push_str(&format!(
            "{}. [{}] {}:{}-{}{place} score {:.3} key {}\n",
            i + 1,
            hit["store"].as_str().unwrap_or_default(),
            hit["file_path"].as_str().unwrap_or_default(),
            hit["line_start"],
            hit["line_end"],
            hit["score"].as_f64().unwrap_or_default(),
            hit["key"].as_str().unwrap_or_default(),
        ));
        let snippet = hit["snippet"].as_str().unwrap_or_default();
        if !snippet.is_empty() {
            for line in snippet.lines() {
                out.push_str("   ");
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for note in value["notes"].as_array().map(Vec::as_slice).unwrap_or_default() {
        out.push_str(&format!("note: {}\n", note.as_str().unwrap_or_default()));
    }
    out
}

/// Runs the server on stdin/stdout until the client closes it.
pub async fn serve(options: McpOptions) -> Result<()> {
    let data_dir: &Path = &options.data_dir;
    tracing::info!(data_dir = %data_dir.display(), "rag mcp serving on stdio");
    let service = RagServer::new(options)
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP client did not complete the handshake")?;
    service.waiting().await.context("the MCP session ended with an error")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(n: usize, text: &str) -> Value {
        json!({"store": "s", "key": format!("a.md#{n}"), "file_path": "a.md", "line_start": 1, "line_end": 2,
               "score": 0.5, "fused_score": null, "headings": null, "symbols": null, "snippet": text})
    }

    #[test]
    fn answers_fit_their_budget_by_cutting_snippets_then_dropping_hits() {
        let hits: Vec<Value> = (0..10).map(|n| hit(n, &"word ".repeat(400))).collect();
        let stores = ["s".to_string()];
        let (whole, _) = fit_search("q", &stores, hits.clone(), Vec::new(), 1_000_000);
        assert_eq!(whole["truncated"], false);
        for budget in [200, 1_000, 5_000, 20_000] {
            let (value, text) = fit_search("q", &stores, hits.clone(), Vec::new(), budget);
            assert!(value.to_string().chars().count() <= budget, "{budget}: {}", value.to_string().len());
            assert!(text.chars().count() <= budget, "{budget}");
            assert_eq!(value["truncated"], true);
        }
        let (small, _) = fit_search("q", &stores, hits, Vec::new(), 1_000);
        assert!(small["notes"].to_string().contains("left out to fit"), "{small}");
    }
}
