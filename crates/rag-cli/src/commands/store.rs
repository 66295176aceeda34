//! `rag store`: create, list, inspect and delete stores.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use rag_core::chunk::Chunker;
use rag_core::store::{StoreConfig, StoreInfo, validate_store_name};
use rag_embed_ollama::DEFAULT_MODEL;
use rag_ingest::TextChunker;

use crate::cli::{BackendArgs, EmbedderArgs, MetricArg, StoreCommand};
use crate::records::{IndexedSources, RemoteStore, RemoteStores};
use crate::session::Session;
use crate::{embedders, output};

/// Runs one `rag store` subcommand.
pub async fn store(command: StoreCommand, data_dir: &Path) -> Result<ExitCode> {
    match command {
        StoreCommand::List { json, backend } => list(&session(data_dir, backend), json).await,
        StoreCommand::Create { name, embedder, dimension, metric, backend } => {
            let embedder = embedder.with_aws_of(&backend);
            create(&session(data_dir, backend), &name, &embedder, dimension, metric).await
        }
        StoreCommand::Info { name, json, count, backend } => {
            info(&session(data_dir, backend), &name, json, count).await
        }
        StoreCommand::Delete { name, yes, backend } => delete(&session(data_dir, backend), &name, yes).await,
    }
}

fn session(data_dir: &Path, backend: BackendArgs) -> Session {
    Session::new(data_dir.to_path_buf(), backend, EmbedderArgs::default())
}

/// `rag store list`: the backend's stores with their facts, and the remote
/// stores used from this machine (listed without asking AWS).
async fn list(session: &Session, json: bool) -> Result<ExitCode> {
    let opened = session.backend(None).await?;
    let backend = opened.as_dyn();
    let mut rows = Vec::new();
    for name in backend.list_stores().await? {
        match backend.store_info(&name).await {
            Ok(info) => rows.push(info),
            Err(err) => tracing::warn!("store {name:?} cannot be read: {err}"),
        }
    }
    let remotes = if opened.remote().is_none() {
        RemoteStores::load(session.data_dir())?.all().clone()
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
        print!("{}", store_table(&rows, &remotes));
    }
    Ok(ExitCode::SUCCESS)
}

/// The table of `rag store list`: columns as wide as their longest value, so
/// a long model path pushes no row out of line.
fn store_table(rows: &[StoreInfo], remotes: &std::collections::BTreeMap<String, RemoteStore>) -> String {
    let width = |header: &str, values: &mut dyn Iterator<Item = usize>| values.fold(header.len(), usize::max);
    let store_width =
        width("STORE", &mut rows.iter().map(|r| r.config.name.len()).chain(remotes.keys().map(String::len)));
    let backend_width =
        width("BACKEND", &mut rows.iter().map(|r| r.backend.len()).chain(remotes.values().map(|r| r.backend.len())));
    let model_width = width("MODEL", &mut rows.iter().map(|r| r.config.model.chars().count()));
    let mut out = format!(
        "{:<store_width$} {:<backend_width$} {:<model_width$} {:>6} {:>8} {:>10}\n",
        "STORE", "BACKEND", "MODEL", "DIM", "CHUNKS", "SIZE"
    );
    for info in rows {
        out.push_str(&format!(
            "{:<store_width$} {:<backend_width$} {:<model_width$} {:>6} {:>8} {:>10}\n",
            info.config.name,
            info.backend,
            info.config.model,
            info.config.dimension,
            info.chunks.map_or_else(String::new, |c| c.to_string()),
            info.size_bytes.map_or_else(String::new, output::human_bytes)
        ));
    }
    for (name, remote) in remotes {
        out.push_str(&format!("{name:<store_width$} {:<backend_width$} bucket {}\n", remote.backend, remote.bucket));
    }
    out
}

/// `rag store create`: an empty store with a model and dimension.
async fn create(
    session: &Session,
    name: &str,
    embedder: &EmbedderArgs,
    dimension: Option<usize>,
    metric: MetricArg,
) -> Result<ExitCode> {
    validate_store_name(name)?;
    let opened = session.backend(Some(name)).await?;
    let backend = opened.as_dyn();
    let mut model = embedder.model.clone().unwrap_or_else(|| DEFAULT_MODEL.to_string());
    let dimension = match dimension {
        Some(dimension) if embedder.model.is_some() && !rag_embed_local::LocalEmbedder::is_local_model(&model) => {
            dimension
        }
        _ => {
            let connected = match &embedder.model {
                Some(_) => embedders::connect(embedder, model.clone(), 1, 1).await?,
                None => embedders::connect_default(embedder, 1, 1).await?,
            };
            // A local model is recorded by its path or Hub name and the fingerprint of its weights.
            model = connected.model().to_string();
            dimension.unwrap_or_else(|| connected.dimension())
        }
    };
    let chunking = TextChunker::default().settings();
    let config =
        StoreConfig::new(name.to_string(), model, dimension).with_metric(metric.into()).with_chunking(chunking);
    backend.create_store(&config).await?;
    if let Some(remote) = opened.remote() {
        RemoteStores::load(session.data_dir())?.remember(name, remote.clone())?;
    }
    println!("Created store {name:?} ({}).", backend.name());
    Ok(ExitCode::SUCCESS)
}

/// `rag store info`: a store's settings and counts.
async fn info(session: &Session, name: &str, json: bool, count: bool) -> Result<ExitCode> {
    let opened = session.backend(Some(name)).await?;
    #[cfg_attr(not(feature = "s3vectors"), allow(unused_mut))]
    let mut info = opened.as_dyn().store_info(name).await?;
    #[cfg(feature = "s3vectors")]
    if let (crate::backends::Backend::S3(s3, _), true) = (&opened, count) {
        info.chunks = Some(s3.count_vectors(name).await?);
    }
    #[cfg(not(feature = "s3vectors"))]
    let _ = count;
    if json {
        println!("{}", serde_json::to_string_pretty(&output::info_json(&info))?);
    } else {
        print!("{}", output::terminal_safe(&output::info_text(&info)));
    }
    Ok(ExitCode::SUCCESS)
}

/// `rag store delete`: after confirmation (or `--yes`), the store and what
/// this machine remembers of it.
async fn delete(session: &Session, name: &str, yes: bool) -> Result<ExitCode> {
    let opened = session.backend(Some(name)).await?;
    let backend = opened.as_dyn();
    let info = backend.store_info(name).await?;
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
    backend.delete_store(name).await?;
    if opened.remote().is_some() {
        RemoteStores::load(session.data_dir())?.forget(name)?;
    }
    IndexedSources::load(session.data_dir())?.forget(name)?;
    println!("Deleted store {name:?}.");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, model: &str) -> StoreInfo {
        let mut info = StoreInfo::new(StoreConfig::new(name, model, 384).with_chunking("c"), "local");
        (info.files, info.chunks, info.size_bytes) = (Some(2), Some(10), Some(4096));
        info
    }

    #[test]
    fn a_long_model_name_widens_its_column_and_keeps_rows_in_line() {
        let folder = "/home/me/models/all-MiniLM-L6-v2#0123456789abcdef";
        let table = store_table(&[row("notes", folder), row("code", "embeddinggemma")], &Default::default());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        let dim_at = |line: &str| line.find("384").or_else(|| line.find("DIM"));
        // The numbers line up under their header whatever the model's length.
        assert_eq!(dim_at(lines[1]), dim_at(lines[2]), "{table}");
        assert_eq!(dim_at(lines[0]), dim_at(lines[1]), "{table}");
        assert!(lines[1].contains(folder), "{table}");
    }
}
