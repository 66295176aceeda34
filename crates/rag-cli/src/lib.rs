//! The `rag` command as a library: [`main`] parses the process arguments and
//! runs. It is a thin layer over the library crates (argument parsing,
//! progress and output); everything it does is available to Rust programs
//! through `rag-core` and the backend and embedder crates.

mod backends;
mod cli;
mod isolate;
mod mcp;
mod output;
mod watch;

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use clap::{CommandFactory, Parser};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rag_backend_local::LocalBackend;
use rag_core::{
    Chunker, DocText, Embedder, Filter, IndexObserver, IndexOptions, Indexer, SearchOptions, StoreConfig,
    VectorBackend, validate_store_name,
};
use rag_embed_ollama::{DEFAULT_MODEL, OllamaConfig, OllamaEmbedder};
use rag_ingest::{DiscoverOptions, FileSource, TextChunker, discover};

use cli::{Cli, Command, EmbedderArgs, GetArgs, IndexArgs, QueryArgs, StoreCommand};
use output::{QueryMetadata, QueryOutput, QueryResult};

/// Runs `rag` with the process arguments and returns its exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ConvertDocument { extension } = &cli.command {
        return isolate::serve(extension);
    }
    init_logging(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// The message and its causes, leaving out causes the message already
/// quotes, with what to do where the library's error cannot say it in the
/// CLI's words.
pub(crate) fn error_chain(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    match err.chain().find_map(|cause| cause.downcast_ref::<rag_core::Error>()) {
        Some(rag_core::Error::StoreNotFound { store, .. }) => text.push_str(&format!(
            "; create it with `rag index PATHS --store {store}` or list stores with `rag store list`"
        )),
        Some(rag_core::Error::EmbedderUnreachable { .. }) => {
            text.truncate(text.trim_end_matches('.').len());
            text.push_str(
                "; or embed in this process, with no server, from a sentence-transformers model: \
             --model hf:sentence-transformers/all-MiniLM-L6-v2 (fetched once) or a folder, --model ./all-MiniLM-L6-v2",
            );
        }
        Some(rag_core::Error::InvalidInput(message)) if message.starts_with("the filter is not JSON") => {
            text.push_str(" (in --filter)");
        }
        _ => {}
    }
    text
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose >= 2)
        .without_time()
        .init();
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let data_dir = match &cli.data_dir {
        Some(dir) => dir.clone(),
        None => LocalBackend::default_data_dir()
            .context("no data folder on this platform; pass --data-dir or set RAG_DATA_DIR")?,
    };
    match cli.command {
        Command::Index(args) => index(args, &data_dir, cli.quiet, cli.verbose).await,
        Command::Query(args) => query(args, &data_dir).await,
        Command::Get(args) => get(args, &data_dir).await,
        Command::Watch(args) => watch::watch(args, &data_dir).await,
        Command::Mcp(args) => {
            let options =
                mcp::McpOptions { data_dir, backend: args.backend, embedder: args.embedder, stores: args.stores };
            mcp::serve(options).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Store(command) => store(command, &data_dir).await,
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "rag", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::ConvertDocument { extension } => Ok(isolate::serve(&extension)),
    }
}

/// The embedder of `model`: a model folder (a path, as `--model ./all-MiniLM-L6-v2`
/// gives it and as a store records it) or a Hub model (`hf:ORG/NAME[@REVISION]`,
/// fetched once into the Hub's cache) runs in this process; any other name is
/// an Ollama model.
pub(crate) async fn connect(
    args: &EmbedderArgs,
    model: String,
    batch_size: usize,
    concurrency: usize,
) -> Result<Arc<dyn Embedder>> {
    if rag_embed_local::LocalEmbedder::is_local_model(&model) {
        tracing::info!(model = %model, "loading the model in-process");
        let mut hub = rag_embed_local::HubOptions::from_env();
        hub.progress = std::io::stderr().is_terminal();
        let loaded = tokio::task::spawn_blocking(move || rag_embed_local::LocalEmbedder::load_named_with(&model, &hub))
            .await
            .context("loading the model stopped")??;
        return Ok(Arc::new(loaded));
    }
    let mut config = OllamaConfig::new(model);
    if let Some(url) = &args.ollama_url {
        config = config.with_url(url);
    }
    config.batch_size = batch_size;
    config.concurrency = concurrency;
    tracing::info!(url = %config.base_url, model = %config.model, "connecting to Ollama");
    Ok(Arc::new(OllamaEmbedder::connect(config).await?))
}

/// The store's recorded model when it exists, unless one was asked for.
async fn pick_model(args: &EmbedderArgs, backend: &dyn VectorBackend, store: &str) -> Result<String> {
    if let Some(model) = &args.model {
        return Ok(model.clone());
    }
    if backend.store_exists(store).await? {
        return Ok(backend.store_config(store).await?.model);
    }
    Ok(DEFAULT_MODEL.to_string())
}

async fn index(args: IndexArgs, data_dir: &Path, quiet: bool, verbose: u8) -> Result<ExitCode> {
    validate_store_name(&args.store)?;
    let opened = backends::open(data_dir, &args.backend, Some(&args.store)).await?;
    let backend = opened.as_dyn();
    let root = match &args.root {
        Some(root) => root.clone(),
        None => std::env::current_dir().context("cannot read the current folder")?,
    };
    let discovery =
        discover(&args.paths, &DiscoverOptions { root: root.clone(), hidden: args.hidden, no_ignore: args.no_ignore })?;
    for warning in &discovery.warnings {
        tracing::warn!("{warning}");
    }
    for pattern in &discovery.unmatched {
        tracing::warn!("{pattern:?} matched no file under {}", root.display());
    }
    let exists = backend.store_exists(&args.store).await?;
    if discovery.files.is_empty() && !exists {
        bail!(
            "nothing to index: {} matched no file (folders are walked for known text formats; quote globs like \"**/*.md\")",
            args.paths.join(", ")
        );
    }

    let setup = index_setup(&args, &backend, exists).await?;
    let progress = Progress::new(!(quiet || args.json) && std::io::stderr().is_terminal());
    let report = setup.indexer.index(&args.store, Arc::new(setup.source(discovery)), &setup.options, &progress).await;
    progress.finish();
    let report = report?;
    if !args.dry_run {
        remember_index(data_dir, &opened, &args, &root)?;
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", output::index_text(&report, backend.name(), verbose > 0));
    }
    if report.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {} file(s) failed; their previous chunks, if any, were kept", report.failed.len());
        Ok(ExitCode::FAILURE)
    }
}

/// Records, after a run that wrote, where a remote store lives (for later
/// commands on this machine) and what indexed the store.
pub(crate) fn remember_index(data_dir: &Path, opened: &backends::Backend, args: &IndexArgs, root: &Path) -> Result<()> {
    if let Some(remote) = opened.remote() {
        backends::RemoteStores::load(data_dir)?.remember(&args.store, remote.clone())?;
    }
    remember_source(data_dir, args, root);
    Ok(())
}

/// Records what indexed a store, for `rag mcp`'s index_status.
fn remember_source(data_dir: &Path, args: &IndexArgs, root: &Path) {
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let source =
        backends::IndexedSource { root, patterns: args.paths.clone(), hidden: args.hidden, no_ignore: args.no_ignore };
    if let Err(err) = backends::IndexedSources::load(data_dir).and_then(|mut s| s.remember(&args.store, source)) {
        tracing::warn!("cannot remember what indexed store {:?}: {err:#}", args.store);
    }
}

/// What an index run needs besides its files, made once: by `rag index`,
/// and by `rag watch` for every update.
pub(crate) struct IndexSetup {
    pub indexer: Indexer,
    pub options: IndexOptions,
    converter: Option<Arc<isolate::ChildConverter>>,
}

impl IndexSetup {
    /// The files of `discovery`, documents read in child processes.
    pub fn source(&self, discovery: rag_ingest::Discovery) -> FileSource {
        let source = FileSource::new(discovery);
        match &self.converter {
            Some(converter) => source.with_converter(converter.clone()),
            None => source,
        }
    }
}

/// The embedder, chunker and options an `rag index` of `args` runs with.
pub(crate) async fn index_setup(
    args: &IndexArgs,
    backend: &Arc<dyn VectorBackend>,
    exists: bool,
) -> Result<IndexSetup> {
    let model = pick_model(&args.embedder, backend.as_ref(), &args.store).await?;
    let embedder: Arc<dyn Embedder> = if args.dry_run {
        // A plan needs no embeddings: don't require Ollama for it.
        let dimension = if exists { backend.store_config(&args.store).await?.dimension } else { 0 };
        Arc::new(PlanOnly { model, dimension })
    } else {
        connect(&args.embedder, model, args.batch_size, args.concurrency).await?
    };

    let (mut chunk_size, mut chunk_overlap) = match args.chunk_tokens {
        Some(tokens) => {
            let size = (tokens as f32 * rag_core::MIN_CHARS_PER_TOKEN) as usize;
            (size, args.chunk_overlap.min(size / 4))
        }
        None => (args.chunk_size, args.chunk_overlap),
    };
    // The chunk budget follows the model's context window, so no chunk is refused.
    if let Some(window) = embedder.context_tokens() {
        let most = rag_core::chunk_chars_for_window(window);
        if chunk_size > most {
            tracing::info!(
                "chunks of at most {most} characters: model {:?} takes {window} tokens (--chunk-size {chunk_size} lowered)",
                embedder.model()
            );
            chunk_size = most;
            chunk_overlap = chunk_overlap.min(most / 4);
        }
    }
    let chunker = TextChunker::new(chunk_size, chunk_overlap)?;
    let options = IndexOptions {
        force: args.force,
        prune: !args.no_prune,
        dry_run: args.dry_run,
        metric: args.metric.into(),
        max_file_size: args.max_file_size,
        ..IndexOptions::default()
    };
    let indexer = Indexer::new(embedder, backend.clone(), Arc::new(chunker));
    if !(args.reader_timeout.is_finite() && args.reader_timeout > 0.0) {
        bail!("--reader-timeout must be a positive number of seconds");
    }
    let converter = match std::env::current_exe() {
        Ok(exe) => {
            let timeout = std::time::Duration::from_secs_f64(args.reader_timeout);
            let memory = args.reader_memory.saturating_mul(1024 * 1024);
            Some(Arc::new(isolate::ChildConverter::new(exe, timeout, memory)))
        }
        Err(err) => {
            tracing::warn!("documents are read in this process: cannot find the rag binary ({err})");
            None
        }
    };
    Ok(IndexSetup { indexer, options, converter })
}

/// Stands in for the embedder during `--dry-run`, which embeds nothing.
struct PlanOnly {
    model: String,
    dimension: usize,
}

#[async_trait]
impl Embedder for PlanOnly {
    fn model(&self) -> &str {
        &self.model
    }
    fn dimension(&self) -> usize {
        self.dimension
    }
    async fn embed_documents(&self, _docs: &[DocText]) -> rag_core::Result<Vec<Vec<f32>>> {
        Err(rag_core::Error::InvalidInput("a dry run does not embed".into()))
    }
    async fn embed_query(&self, _query: &str) -> rag_core::Result<Vec<f32>> {
        Err(rag_core::Error::InvalidInput("a dry run does not embed".into()))
    }
}

/// Progress bar on stderr, drawn only on a terminal.
struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn new(visible: bool) -> Self {
        let bar = if visible {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} files {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Self { bar }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl IndexObserver for Progress {
    fn planned(&self, files: usize) {
        self.bar.set_length(files as u64);
    }
    fn file_done(&self, _path: &str) {
        self.bar.inc(1);
    }
    fn chunks_embedded(&self, count: usize) {
        let done = self.bar.message().split(' ').next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
        self.bar.set_message(format!("{} chunks embedded", done + count));
    }
}

/// `rag query`: one store, or several (one embedding per model, hits merged on one ranking).
async fn query(args: QueryArgs, data_dir: &Path) -> Result<ExitCode> {
    let text = if args.stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read the question from stdin")?;
        text.trim().to_string()
    } else {
        args.text.clone().unwrap_or_default()
    };
    if text.trim().is_empty() {
        bail!("the question is empty; pass it as an argument or pipe it with --stdin");
    }
    let stores = query_stores(&args, data_dir).await?;
    if stores.is_empty() {
        bail!("no store to search: there are no stores yet; create one with `rag index PATHS --store NAME`");
    }
    let filter = query_filter(&args)?;
    let filter_json = filter.as_ref().map(|f| f.as_json().clone());
    let started = Instant::now();
    let mut embedders: Vec<(String, Arc<dyn Embedder>)> = Vec::new();
    let mut targets = Vec::new();
    let mut configs = Vec::new();
    for store in &stores {
        let backend = backends::open(data_dir, &args.backend, Some(store)).await?.as_dyn();
        let config = match backend.store_config(store).await {
            Ok(config) => config,
            Err(rag_core::Error::StoreNotFound { .. }) => {
                let known = backend.list_stores().await.unwrap_or_default();
                let known = if known.is_empty() {
                    "there are no stores yet".to_string()
                } else {
                    format!("stores: {}", known.join(", "))
                };
                bail!("store {store:?} not found ({known}); create it with `rag index PATHS --store {store}`");
            }
            Err(err) => return Err(err.into()),
        };
        let model = args.embedder.model.clone().unwrap_or_else(|| config.model.clone());
        let embedder = match embedders.iter().find(|(m, _)| *m == model) {
            Some((_, embedder)) => embedder.clone(),
            None => {
                let embedder = connect(&args.embedder, model.clone(), 1, 1).await?;
                embedders.push((model, embedder.clone()));
                embedder
            }
        };
        targets.push(rag_core::StoreTarget { store: store.clone(), backend, embedder });
        configs.push(config);
    }
    let options = SearchOptions::new(args.top_k)
        .with_mode(args.mode.into())
        .with_filter(filter)
        .with_lexical_weight(args.lexical_weight)
        .with_max_per_file(args.max_per_file);
    let found = rag_core::search_stores(&targets, &text, &options).await?;
    let elapsed = started.elapsed();
    let results: Vec<QueryResult> = found
        .hits
        .iter()
        .filter(|hit| args.min_score.is_none_or(|min| hit.hit.hit.score >= min))
        .enumerate()
        .map(|(i, hit)| QueryResult::from_search(i + 1, &hit.hit, args.full, args.snippet_length).in_store(&hit.store))
        .collect();
    // One store's notes as they are; several stores' each naming its store.
    let several = stores.len() > 1;
    let notes: Vec<String> = found
        .stores
        .iter()
        .flat_map(|(store, answer)| {
            answer.notes.iter().map(move |note| if several { format!("{store}: {note}") } else { note.clone() })
        })
        .collect();
    let mut models: Vec<&str> = Vec::new();
    for config in &configs {
        if !models.contains(&config.model.as_str()) {
            models.push(&config.model);
        }
    }
    let models = models.join(",");
    let joined = stores.join(",");
    let names: Vec<&str> = stores.iter().map(String::as_str).collect();
    let first = &configs[0];
    let lexical = found.stores.first().map_or(rag_core::LexicalSource::None, |(_, answer)| answer.lexical);
    let millis = elapsed.as_secs_f64() * 1000.0;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let out = QueryOutput {
            query: &text,
            store: &joined,
            stores: several.then_some(names.as_slice()),
            total_results: results.len(),
            requested_results: args.top_k,
            query_time: elapsed.as_secs_f64(),
            metadata: QueryMetadata {
                backend: targets[0].backend.name(),
                model: &models,
                dimension: first.dimension,
                metric: first.metric.as_str(),
                min_score: args.min_score,
                filter: filter_json.as_ref(),
                full: args.full,
                snippet_length: args.snippet_length,
                mode: options.mode.as_str(),
                lexical,
                lexical_weight: args.lexical_weight,
                max_per_file: args.max_per_file,
                notes: &notes,
            },
            backend: targets[0].backend.name(),
            model: &models,
            query_time_ms: millis,
            results,
        };
        serde_json::to_writer_pretty(&mut stdout, &out)?;
        writeln!(stdout)?;
    } else {
        for note in &notes {
            eprintln!("note: {note}");
        }
        write!(stdout, "{}", output::query_text(&text, &joined, &results, args.top_k, millis, args.explain))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The stores a query names: `--store` (repeatable), or with `--all-stores`
/// every local store and every S3 Vectors store used from this machine.
async fn query_stores(args: &QueryArgs, data_dir: &Path) -> Result<Vec<String>> {
    let mut stores: Vec<String> = Vec::new();
    if args.all_stores {
        let opened = backends::open(data_dir, &args.backend, None).await?;
        stores.extend(opened.as_dyn().list_stores().await?);
        if opened.remote().is_none() {
            stores.extend(backends::RemoteStores::load(data_dir)?.all().keys().cloned());
        }
    } else {
        stores.extend(args.stores.iter().cloned());
    }
    let mut seen = std::collections::HashSet::new();
    stores.retain(|s| seen.insert(s.clone()));
    Ok(stores)
}

/// `rag get`: what a store holds for a hit, from the store only.
async fn get(args: GetArgs, data_dir: &Path) -> Result<ExitCode> {
    let backend = backends::open(data_dir, &args.backend, Some(&args.store)).await?.as_dyn();
    let target: rag_core::ChunkRef = args.target.parse()?;
    let fetched = rag_core::fetch(backend.as_ref(), &args.store, &target, args.context).await?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let out = output::get_json(&args.store, &target, &fetched);
        serde_json::to_writer_pretty(&mut stdout, &out)?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", output::get_text(&fetched))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--filter`, `--path` and `--ext` combined; checked before any request.
fn query_filter(args: &QueryArgs) -> Result<Option<Filter>> {
    let mut parts = Vec::new();
    if let Some(json) = &args.filter {
        parts.push(Filter::from_json(json)?);
    }
    if let Some(folder) = &args.path {
        parts.push(Filter::folder(folder));
    }
    if !args.ext.is_empty() {
        parts.push(Filter::extensions(&args.ext));
    }
    Ok(parts.into_iter().reduce(Filter::and))
}

async fn store(command: StoreCommand, data_dir: &Path) -> Result<ExitCode> {
    match command {
        StoreCommand::List { json, backend: args } => {
            let opened = backends::open(data_dir, &args, None).await?;
            let backend = opened.as_dyn();
            let mut rows = Vec::new();
            for name in backend.list_stores().await? {
                match backend.store_info(&name).await {
                    Ok(info) => rows.push(info),
                    Err(err) => tracing::warn!("store {name:?} cannot be read: {err}"),
                }
            }
            // Remote stores used from this machine, listed without asking AWS.
            let remotes = if opened.remote().is_none() {
                backends::RemoteStores::load(data_dir)?.all().clone()
            } else {
                Default::default()
            };
            if json {
                let mut list: Vec<_> = rows.iter().map(output::info_json).collect();
                list.extend(remotes.iter().map(|(name, remote)| {
                    serde_json::json!({ "config": { "name": name }, "backend": remote.backend, "details": remote })
                }));
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if rows.is_empty() && remotes.is_empty() {
                eprintln!("No stores yet. Create one with `rag index PATHS --store NAME`.");
            } else {
                println!(
                    "{:<24} {:<10} {:<22} {:>6} {:>8} {:>10}",
                    "STORE", "BACKEND", "MODEL", "DIM", "CHUNKS", "SIZE"
                );
                for info in rows {
                    println!(
                        "{:<24} {:<10} {:<22} {:>6} {:>8} {:>10}",
                        info.config.name,
                        info.backend,
                        info.config.model,
                        info.config.dimension,
                        info.chunks.map_or_else(String::new, |c| c.to_string()),
                        info.size_bytes.map_or_else(String::new, output::human_bytes)
                    );
                }
                for (name, remote) in remotes {
                    println!("{name:<24} {:<10} bucket {}", remote.backend, remote.bucket);
                }
            }
        }
        StoreCommand::Create { name, embedder, dimension, metric, backend: args } => {
            validate_store_name(&name)?;
            let opened = backends::open(data_dir, &args, Some(&name)).await?;
            let backend = opened.as_dyn();
            let mut model = embedder.model.clone().unwrap_or_else(|| DEFAULT_MODEL.to_string());
            let dimension = match dimension {
                Some(dimension) if !rag_embed_local::LocalEmbedder::is_local_model(&model) => dimension,
                _ => {
                    let connected = connect(&embedder, model.clone(), 1, 1).await?;
                    // A local model is recorded by its path or Hub name and the fingerprint of its weights.
                    model = connected.model().to_string();
                    dimension.unwrap_or_else(|| connected.dimension())
                }
            };
            let chunking = TextChunker::default().settings();
            backend
                .create_store(&StoreConfig { name: name.clone(), model, dimension, metric: metric.into(), chunking })
                .await?;
            if let Some(remote) = opened.remote() {
                backends::RemoteStores::load(data_dir)?.remember(&name, remote.clone())?;
            }
            println!("Created store {name:?} ({}).", backend.name());
        }
        StoreCommand::Info { name, json, count, backend: args } => {
            let opened = backends::open(data_dir, &args, Some(&name)).await?;
            #[cfg_attr(not(feature = "s3vectors"), allow(unused_mut))]
            let mut info = opened.as_dyn().store_info(&name).await?;
            #[cfg(feature = "s3vectors")]
            if let (backends::Backend::S3(s3, _), true) = (&opened, count) {
                info.chunks = Some(s3.count_vectors(&name).await?);
            }
            #[cfg(not(feature = "s3vectors"))]
            let _ = count;
            if json {
                println!("{}", serde_json::to_string_pretty(&output::info_json(&info))?);
            } else {
                print!("{}", output::info_text(&info));
            }
        }
        StoreCommand::Delete { name, yes, backend: args } => {
            let opened = backends::open(data_dir, &args, Some(&name)).await?;
            let backend = opened.as_dyn();
            let info = backend.store_info(&name).await?;
            if !yes {
                if !std::io::stdin().is_terminal() {
                    eprintln!("error: refusing to delete store {name:?} without confirmation; pass --yes");
                    return Ok(ExitCode::from(2));
                }
                let chunks = info.chunks.map_or_else(|| "all its".to_string(), |c| c.to_string());
                eprint!("Delete store {name:?} ({}) with {chunks} chunks? [y/N] ", backend.name());
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    eprintln!("Kept.");
                    return Ok(ExitCode::FAILURE);
                }
            }
            backend.delete_store(&name).await?;
            if opened.remote().is_some() {
                backends::RemoteStores::load(data_dir)?.forget(&name)?;
            }
            backends::IndexedSources::load(data_dir)?.forget(&name)?;
            println!("Deleted store {name:?}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
