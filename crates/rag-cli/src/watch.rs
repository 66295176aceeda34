//! `rag watch`: index the paths, then keep the store current as files change.
//!
//! File-system events (the `notify` crate) are gathered until 250 ms pass
//! without one (at most 2 s), then one incremental run indexes what they
//! touched: the files under the changed paths that a walk of the patterns
//! still finds are read (and embedded when their content changed), and the
//! stored files under those paths that it no longer finds are deleted. The
//! store's write lock is held only during a run, so queries and `rag mcp`
//! run beside it. SIGINT or SIGTERM stops it, exit status 0 (130 during the
//! first run); a run it cuts short keeps what it wrote.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use notify::Watcher as _;
use rag_core::{
    backend::VectorBackend,
    index::IndexReport,
    source::{Document, Source, SourceError, SourceItem},
};
use rag_ingest::{DiscoverOptions, Discovery, FileSource, SKIPPED_DIRS, discover, stored_name, watch_roots};

use crate::cli::IndexArgs;
use crate::commands::index::{IndexSetup, existing_config, index_setup, remember_index};
use crate::session::Session;

/// Quiet time that ends a burst of events.
const SETTLE: Duration = Duration::from_millis(250);

/// Longest a burst is gathered before a run starts anyway.
const MAX_GATHER: Duration = Duration::from_secs(2);

/// The files a batch of events touched, as a [`Source`]: it lists the
/// changed files the walk finds and covers every stored file under a
/// changed path, so one that is gone is deleted.
struct Touched {
    files: FileSource,
    changed: Vec<String>,
}

/// Whether `path` is one of `changed` or lies under one of them.
fn touches(changed: &[String], path: &str) -> bool {
    changed.iter().any(|c| path == c || path.strip_prefix(c.as_str()).is_some_and(|rest| rest.starts_with('/')))
}

impl Source for Touched {
    fn items(&self) -> Vec<SourceItem> {
        self.files.items()
    }
    fn covers(&self, path: &str) -> bool {
        touches(&self.changed, path) && self.files.covers(path)
    }
    fn keeps(&self, path: &str) -> Option<String> {
        self.files.keeps(path).filter(|_| touches(&self.changed, path))
    }
    fn read(&self, item: &SourceItem, max_bytes: u64) -> Result<Vec<u8>, SourceError> {
        self.files.read(item, max_bytes)
    }
    fn decode(&self, item: &SourceItem, bytes: &[u8]) -> Result<Document, SourceError> {
        self.files.decode(item, bytes)
    }
    fn reader(&self) -> &str {
        self.files.reader()
    }
}

/// Whether an event's path can matter: not inside a hidden folder or a
/// skipped one (`.git`, `node_modules`, `target`) unless asked for.
fn may_matter(rel: &str, args: &IndexArgs) -> bool {
    rel.split('/').all(|part| {
        (args.hidden || !part.starts_with('.') || part == "." || part == "..")
            && (args.no_ignore || !SKIPPED_DIRS.contains(&part))
    })
}

/// One line on stderr for a run that changed something.
fn update_line(report: &IndexReport, started: Instant) -> Option<String> {
    let (new, changed, removed, failed) =
        (report.new.len(), report.changed.len(), report.removed.len(), report.failed.len());
    if new + changed + removed + failed == 0 {
        return None;
    }
    let mut parts = Vec::new();
    for (count, what, names) in
        [(new, "new", &report.new), (changed, "changed", &report.changed), (removed, "removed", &report.removed)]
    {
        if count > 0 {
            let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
            let more = if count > 3 { format!(" and {} more", count - 3) } else { String::new() };
            parts.push(format!("{count} {what} ({}{more})", shown.join(", ")));
        }
    }
    for problem in &report.failed {
        parts.push(format!("failed: {}: {}", problem.path, problem.reason));
    }
    Some(format!(
        "updated: {}; {} chunks embedded, {} deleted in {:.2} s",
        parts.join(", "),
        report.chunks_embedded,
        report.chunks_deleted,
        started.elapsed().as_secs_f64()
    ))
}

/// `rag watch PATHS --store NAME`.
pub async fn watch(args: IndexArgs, data_dir: &Path) -> Result<ExitCode> {
    if args.dry_run {
        bail!("rag watch writes as files change; --dry-run is for rag index");
    }
    rag_core::store::validate_store_name(&args.store)?;
    let session = Session::new(data_dir.to_path_buf(), args.backend.clone(), args.embedder.clone());
    let opened = session.backend(Some(&args.store)).await?;
    let backend: Arc<dyn VectorBackend> = opened.as_dyn();
    let root = match &args.root {
        Some(root) => root.clone(),
        None => std::env::current_dir().context("cannot read the current folder")?,
    };
    let root = std::path::absolute(&root).unwrap_or(root);
    let options = DiscoverOptions { root: root.clone(), hidden: args.hidden, no_ignore: args.no_ignore };
    let walk = |options: &DiscoverOptions| -> Result<Discovery> { Ok(discover(&args.paths, options)?) };

    // Watch first, so nothing that changes during the first run is missed.
    let (events, mut changes) = tokio::sync::mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = events.send(event);
    })
    .context("cannot watch files on this system")?;
    let roots = watch_roots(&args.paths, &root);
    if roots.is_empty() {
        bail!("nothing to watch: {} names no existing file or folder", args.paths.join(", "));
    }
    for (path, recursive) in &roots {
        let mode = if *recursive { notify::RecursiveMode::Recursive } else { notify::RecursiveMode::NonRecursive };
        watcher.watch(path, mode).with_context(|| format!("cannot watch {}", path.display()))?;
    }

    let existing = existing_config(backend.as_ref(), &args.store).await?;
    let setup: IndexSetup = index_setup(&args, &backend, existing.as_ref()).await?;
    let started = Instant::now();
    let discovery = walk(&options)?;
    let files = discovery.files.len();
    let stop = crate::signals::stop_signal();
    tokio::pin!(stop);
    let report = tokio::select! {
        report = setup.indexer.index(&args.store, Arc::new(setup.source(discovery))) => report?,
        stopped = &mut stop => {
            stopped?;
            eprintln!("stopped during the first run; store {:?} keeps every file written so far", args.store);
            return Ok(ExitCode::from(crate::signals::INTERRUPTED_EXIT));
        }
    };
    remember_index(data_dir, &opened, &args, &root)?;
    eprintln!(
        "indexed {files} files into store {:?}: {} new, {} changed, {} removed, {} failed, {} chunks embedded in {:.1} s",
        args.store,
        report.new.len(),
        report.changed.len(),
        report.removed.len(),
        report.failed.len(),
        report.chunks_embedded,
        started.elapsed().as_secs_f64()
    );
    for problem in &report.failed {
        eprintln!("{}", crate::output::terminal_safe(&format!("  failed: {}: {}", problem.path, problem.reason)));
    }
    let watched: Vec<String> = roots.iter().map(|(p, _)| p.display().to_string()).collect();
    eprintln!("watching {} for changes (Ctrl-C stops)", watched.join(", "));

    // Paths changed and not yet indexed: kept across a failed run.
    let mut pending: BTreeSet<String> = BTreeSet::new();
    loop {
        let first = tokio::select! {
            stopped = &mut stop => { stopped?; break; }
            event = changes.recv() => match event {
                Some(event) => event,
                None => bail!("the file watcher stopped"),
            },
        };
        let mut touched: BTreeSet<PathBuf> = BTreeSet::new();
        let mut gather = |event: notify::Result<notify::Event>| match event {
            Ok(event) => touched.extend(event.paths),
            Err(err) => tracing::warn!("file watcher: {err}"),
        };
        gather(first);
        let deadline = Instant::now() + MAX_GATHER;
        while Instant::now() < deadline {
            match tokio::time::timeout(SETTLE, changes.recv()).await {
                Ok(Some(event)) => gather(event),
                Ok(None) => bail!("the file watcher stopped"),
                Err(_) => break,
            }
        }
        pending.extend(touched.iter().map(|path| stored_name(&root, path)).filter(|rel| may_matter(rel, &args)));
        if pending.is_empty() {
            continue;
        }
        let changed: Vec<String> = pending.iter().cloned().collect();
        let started = Instant::now();
        let run = async {
            let mut discovery = walk(&options)?;
            discovery.files.retain(|file| touches(&changed, &file.rel));
            let source = Touched { files: setup.source(discovery), changed: changed.clone() };
            let report = setup.indexer.index(&args.store, Arc::new(source)).await?;
            anyhow::Ok(report)
        };
        let result = tokio::select! {
            result = run => result,
            // Stopped mid-run: what was written stays; the rest is seen by
            // the next `rag watch` or `rag index`.
            stopped = &mut stop => { stopped?; break; }
        };
        match result {
            Ok(report) => {
                pending.clear();
                if let Some(line) = update_line(&report, started) {
                    eprintln!("{}", crate::output::terminal_safe(&line));
                }
            }
            // A busy store (another rag index) or a passing failure: said,
            // and these paths are tried again with the next change.
            Err(err) => eprintln!("error: {} (tried again at the next change)", crate::errors::error_chain(&err)),
        }
    }
    drop(watcher);
    eprintln!("stopped; store {:?} holds every change seen", args.store);
    Ok(ExitCode::SUCCESS)
}
