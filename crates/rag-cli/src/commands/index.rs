//! `rag index`: walk the paths, then one incremental run of the pipeline
//! (only what changed is embedded), and what a run leaves on record.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rag_core::backend::VectorBackend;

use rag_core::index::{IndexOptions, Indexer};
use rag_core::store::{StoreConfig, validate_store_name};
use rag_embed_ollama::DEFAULT_MODEL;
use rag_ingest::{DiscoverOptions, FileSource, TextChunker, Unseen, UnseenFolder, discover};

use crate::backends::Backend;
use crate::cli::IndexArgs;
use crate::progress::Progress;
use crate::records::{IndexedSource, IndexedSources, RemoteStores};
use crate::session::Session;
use crate::{embedders, isolate, output};

/// `rag index`: one incremental run over the paths of `args`.
pub async fn index(args: IndexArgs, data_dir: &Path, quiet: bool, verbose: u8) -> Result<ExitCode> {
    validate_store_name(&args.store)?;
    let session = Session::new(data_dir.to_path_buf(), args.backend.clone(), args.embedder.clone());
    let opened = session.backend(Some(&args.store)).await?;
    let backend = opened.as_dyn();
    let root = match &args.root {
        Some(root) => root.clone(),
        None => std::env::current_dir().context("cannot read the current folder")?,
    };
    let mut discovery =
        discover(&args.paths, &DiscoverOptions { root: root.clone(), hidden: args.hidden, no_ignore: args.no_ignore })?;
    if args.allow_mass_delete {
        // Told the files are gone on purpose: an empty folder is taken at its word.
        discovery.trust_empty_folders();
    }
    for warning in &discovery.warnings {
        tracing::warn!("{warning}");
    }
    for pattern in &discovery.unmatched {
        tracing::warn!("{pattern:?} matched no file under {}", root.display());
    }
    let existing = existing_config(backend.as_ref(), &args.store).await?;
    if discovery.files.is_empty() && existing.is_none() {
        bail!(
            "nothing to index: {} matched no file (folders are walked for known text formats; quote globs like \"**/*.md\")",
            args.paths.join(", ")
        );
    }

    let setup = index_setup(&args, &backend, existing.as_ref()).await?;
    let progress = Progress::new(!(quiet || args.json) && std::io::stderr().is_terminal());
    // A folder the walk could not read fails the run; an empty one only when
    // it held stored files (those are reported as kept).
    let unreadable: Vec<UnseenFolder> =
        discovery.unseen.iter().filter(|u| matches!(u.why, Unseen::Unreadable(_))).cloned().collect();
    let source = Arc::new(setup.source(discovery));
    let run = async {
        if args.dry_run {
            setup.indexer.plan(&args.store, source).await
        } else {
            setup.indexer.index_observed(&args.store, source, &progress).await
        }
    };
    let report = tokio::select! {
        report = run => report,
        stopped = crate::signals::stop_signal() => {
            stopped?;
            progress.finish();
            eprintln!(
                "interrupted: store {:?} keeps every file written before the signal; run the same command to finish",
                args.store
            );
            return Ok(ExitCode::from(crate::signals::INTERRUPTED_EXIT));
        }
    };
    progress.finish();
    let report = report?;
    if !args.dry_run {
        remember_index(data_dir, &opened, &args, &root)?;
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", output::terminal_safe(&output::index_text(&report, backend.name(), verbose > 0)));
        if let Some(embedder) = &setup.embedder
            && let Some(usage) = embedder.usage().filter(|u| u.tokens > 0)
        {
            let cost = usage.estimated_usd.map(|usd| format!(", about ${usd:.4} at list price")).unwrap_or_default();
            println!("  tokens: {} embedded by {}{cost}", usage.tokens, embedder.model());
        }
    }
    for folder in &unreadable {
        eprintln!("{}", output::terminal_safe(&format!("error: {}: {}", folder.path.display(), folder.reason())));
    }
    if !report.kept.is_empty() {
        eprintln!(
            "error: {} stored file(s) were not seen by this run and were kept, not deleted (see above); \
             if they were deleted on purpose, run again with --allow-mass-delete",
            report.kept.len()
        );
    }
    if !report.failed.is_empty() {
        eprintln!("error: {} file(s) failed; their previous chunks, if any, were kept", report.failed.len());
    }
    if report.failed.is_empty() && report.kept.is_empty() && unreadable.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// Records, after a run that wrote, where a remote store lives (for later
/// commands on this machine) and what indexed the store.
pub fn remember_index(data_dir: &Path, opened: &Backend, args: &IndexArgs, root: &Path) -> Result<()> {
    if let Some(remote) = opened.remote() {
        RemoteStores::load(data_dir)?.remember(&args.store, remote.clone())?;
    }
    remember_source(data_dir, args, root);
    Ok(())
}

/// Records what indexed a store, for `rag mcp`'s index_status.
fn remember_source(data_dir: &Path, args: &IndexArgs, root: &Path) {
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let source = IndexedSource { root, patterns: args.paths.clone(), hidden: args.hidden, no_ignore: args.no_ignore };
    if let Err(err) = IndexedSources::load(data_dir).and_then(|mut s| s.remember(&args.store, source)) {
        tracing::warn!("cannot remember what indexed store {:?}: {err:#}", args.store);
    }
}

/// What an index run needs besides its files, made once: by `rag index`,
/// and by `rag watch` for every update.
pub struct IndexSetup {
    /// The pipeline, with the run's options.
    pub indexer: Indexer,
    /// The embedder of a run that writes (none for a plan).
    pub embedder: Option<Arc<dyn rag_core::embed::Embedder>>,
    converter: Option<Arc<isolate::ChildConverter>>,
    secrets_allowed: rag_ingest::SecretExceptions,
}

impl IndexSetup {
    /// The files of `discovery`, documents read in child processes.
    pub fn source(&self, discovery: rag_ingest::Discovery) -> FileSource {
        let source = FileSource::new(discovery).with_secret_exceptions(self.secrets_allowed.clone());
        match &self.converter {
            Some(converter) => source.with_converter(converter.clone()),
            None => source,
        }
    }
}

/// The embedder, chunker and options an `rag index` of `args` runs with,
/// given the store's settings when it exists.
pub async fn index_setup(
    args: &IndexArgs,
    backend: &Arc<dyn VectorBackend>,
    existing: Option<&StoreConfig>,
) -> Result<IndexSetup> {
    // The store's recorded model when it exists, unless one was asked for.
    let model = match (&args.embedder.model, existing) {
        (Some(model), _) => model.clone(),
        (None, Some(config)) => config.model.clone(),
        (None, None) => DEFAULT_MODEL.to_string(),
    };
    // A plan needs no embeddings: --dry-run connects to no model. A new
    // store with no model named gets the default's choice, said in one line.
    let embedder_args = args.embedder.clone().with_aws_of(&args.backend);
    let embedder = match (args.dry_run, &args.embedder.model, existing) {
        (true, ..) => None,
        (false, None, None) => {
            Some(embedders::connect_default(&embedder_args, args.batch_size, args.concurrency).await?)
        }
        (false, ..) => Some(embedders::connect(&embedder_args, model, args.batch_size, args.concurrency).await?),
    };

    // Chunking belongs to the store: without chunk flags, a store that
    // exists keeps its settings (the indexer reads them under the writer's
    // lock); these defaults shape a new store.
    let chunking_asked = args.chunk_size.is_some() || args.chunk_overlap.is_some() || args.chunk_tokens.is_some();
    let overlap = args.chunk_overlap.unwrap_or(TextChunker::DEFAULT_OVERLAP);
    let (mut chunk_size, mut chunk_overlap) = match args.chunk_tokens {
        Some(tokens) => {
            let size = (tokens as f32 * rag_core::chunk::MIN_CHARS_PER_TOKEN) as usize;
            (size, overlap.min(size / 4))
        }
        None => (args.chunk_size.unwrap_or(TextChunker::DEFAULT_SIZE), overlap),
    };
    // The chunk budget follows the model's context window, so no chunk is refused.
    if let Some((embedder, window)) = embedder.as_ref().and_then(|e| Some((e, e.context_tokens()?))) {
        let most = rag_core::chunk::chunk_chars_for_window(window);
        if chunk_size > most {
            tracing::info!(
                "chunks of at most {most} characters: model {:?} takes {window} tokens (--chunk-size {chunk_size} lowered)",
                embedder.model()
            );
            chunk_size = most;
            chunk_overlap = chunk_overlap.min(most / 4);
        }
    }
    let mut chunker = TextChunker::new(chunk_size, chunk_overlap)?;
    // A dry run cannot ask the model its window: where the store's chunks are
    // no larger than asked for, that window shaped them, and a real run would
    // make the same again.
    if embedder.is_none()
        && let Some(stored) = existing.and_then(|config| TextChunker::from_settings(&config.chunking))
        && stored.size() <= chunker.size()
        && stored.overlap() <= chunker.overlap()
    {
        chunker = stored;
    }
    let options = IndexOptions::new()
        .with_force(args.force)
        .with_prune(!args.no_prune)
        .with_mass_removal(args.allow_mass_delete)
        .with_metric(args.metric.into())
        .with_max_file_size(args.max_file_size)
        .with_max_file_chunks(args.max_file_chunks)
        .with_store_chunking(!chunking_asked);
    let indexer = match embedder.clone() {
        Some(embedder) => Indexer::new(embedder, backend.clone(), Arc::new(chunker)),
        None => Indexer::planner(backend.clone(), Arc::new(chunker)),
    };
    let indexer = indexer.with_options(options);
    if !(args.reader_timeout.is_finite() && args.reader_timeout > 0.0) {
        bail!("--reader-timeout must be a positive number of seconds");
    }
    let timeout = std::time::Duration::from_secs_f64(args.reader_timeout);
    let converter = isolate::ChildConverter::of_this_binary(timeout, args.reader_memory);
    let secrets_allowed = rag_ingest::SecretExceptions::new(&args.allow_secrets)
        .map_err(|err| anyhow::anyhow!("--allow-secrets: {err}"))?;
    Ok(IndexSetup { indexer, embedder, converter, secrets_allowed })
}

/// The settings of `store`, or `None` when it does not exist yet: one read
/// where it exists. A backend that fails to read a store whose container is
/// missing too (an S3 Vectors bucket not made yet) is asked whether the
/// store exists before the error counts; when it does (another writer may
/// have made it since the first read), its settings are read again, so the
/// error returned is about the store as it is now.
pub async fn existing_config(backend: &dyn VectorBackend, store: &str) -> Result<Option<StoreConfig>> {
    match backend.store_config(store).await {
        Ok(config) => Ok(Some(config)),
        Err(rag_core::Error::StoreNotFound { .. }) => Ok(None),
        Err(_) if !backend.store_exists(store).await? => Ok(None),
        Err(_) => Ok(Some(backend.store_config(store).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rag_core::backend::MemoryBackend;
    use rag_core::mock::MockVectorBackend;

    #[tokio::test]
    async fn a_store_made_between_two_reads_is_read_not_reported_missing() {
        // Another writer makes the store between this client's first read of
        // its settings (which fails as a missing S3 Vectors bucket does) and
        // the question whether it exists.
        let config = StoreConfig::new("notes", "toy", 2).with_chunking("c");
        let mut backend = MockVectorBackend::new();
        let mut reads = mockall::Sequence::new();
        backend.expect_store_config().times(1).in_sequence(&mut reads).returning(|_| {
            Err(rag_core::Error::Backend {
                backend: "s3vectors".into(),
                message: "vector bucket not found".into(),
                source: None,
            })
        });
        backend.expect_store_exists().times(1).in_sequence(&mut reads).returning(|_| Ok(true));
        let made = config.clone();
        backend.expect_store_config().times(1).in_sequence(&mut reads).returning(move |_| Ok(made.clone()));
        let found = existing_config(&backend, "notes").await.expect("the store made meanwhile is read");
        assert_eq!(found, Some(config));
    }

    #[tokio::test]
    async fn a_missing_store_is_none_and_an_existing_one_its_settings() {
        let backend = MemoryBackend::new();
        assert_eq!(existing_config(&backend, "notes").await.unwrap(), None);
        let config = StoreConfig::new("notes", "toy", 2);
        backend.create_store(&config).await.unwrap();
        assert_eq!(existing_config(&backend, "notes").await.unwrap(), Some(config));
    }
}
