//! `rag-bench index`: indexing throughput over generated 10k-file trees (or a
//! tree of your own) with an embedder that costs nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use rag_backend_local::LocalBackend;
use rag_core::{
    embed::{DocText, Embedder},
    index::Indexer,
};
use rag_ingest::{DiscoverOptions, FileSource, TextChunker, discover};

use crate::{DIM, median};

/// Returns a fixed unit vector (slightly varied) at once: measures everything
/// but the model.
pub(crate) struct InstantEmbedder;

#[async_trait]
impl Embedder for InstantEmbedder {
    fn model(&self) -> &str {
        "instant"
    }
    fn dimension(&self) -> usize {
        DIM
    }
    fn max_batch_size(&self) -> usize {
        64
    }
    async fn embed_documents(&self, docs: &[DocText]) -> rag_core::Result<Vec<Vec<f32>>> {
        Ok(docs.iter().map(|d| instant_vector(d.text.len())).collect())
    }
    async fn embed_query(&self, query: &str) -> rag_core::Result<Vec<f32>> {
        Ok(instant_vector(query.len()))
    }
}

pub(crate) fn instant_vector(seed: usize) -> Vec<f32> {
    let mut v = vec![0.036; DIM];
    v[seed % DIM] = 1.0;
    v
}

/// A tree of `files` files, markdown, Rust and text, about 5 KB each.
/// What a benchmark tree holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mix {
    /// A third each of markdown notes, Rust sources and plain text.
    Mixed,
    /// Half markdown notes, half plain text: a notes vault.
    Notes,
    /// Rust sources only: a code repository.
    Code,
}

impl Mix {
    pub(crate) fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "mixed" => Mix::Mixed,
            "notes" => Mix::Notes,
            "code" => Mix::Code,
            other => bail!("--mix takes mixed, notes or code, not {other:?}"),
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Mix::Mixed => "mixed",
            Mix::Notes => "notes",
            Mix::Code => "code",
        }
    }

    pub(crate) fn file(self, i: usize) -> (&'static str, String) {
        let kind = match self {
            Mix::Mixed => i % 3,
            Mix::Notes => [0, 2][i % 2],
            Mix::Code => 1,
        };
        match kind {
            0 => ("md", markdown_body(i)),
            1 => ("rs", rust_body(i)),
            _ => ("txt", text_body(i)),
        }
    }
}

pub(crate) fn ensure_tree(root: &Path, files: usize, mix: Mix) -> Result<()> {
    let marker = root.join(format!(".complete-{files}"));
    if !marker.exists() {
        eprintln!("writing a tree of {files} files under {} ...", root.display());
        let _ = std::fs::remove_dir_all(root);
        for i in 0..files {
            let (ext, body) = mix.file(i);
            let path = root.join(format!("d{:03}/f{i:05}.{ext}", i % 100));
            std::fs::create_dir_all(path.parent().context("parent")?)?;
            std::fs::write(path, body)?;
        }
        std::fs::write(&marker, "")?;
    }
    Ok(())
}

pub(crate) fn markdown_body(i: usize) -> String {
    (0..6)
        .map(|s| {
            format!(
                "## Section {s} of note {i}\n\n{}\n\n",
                "Plain prose about the topic, with a link or two. ".repeat(16)
            )
        })
        .collect()
}

pub(crate) fn rust_body(i: usize) -> String {
    (0..12)
        .map(|f| format!("/// Does step {f} of item {i}.\npub fn step_{f}(x: u64) -> u64 {{\n    let y = x.wrapping_mul({f} + 3);\n    y ^ (y >> 7)\n}}\n\n"))
        .collect::<String>()
        .repeat(4)
}

pub(crate) fn text_body(i: usize) -> String {
    format!("Log of day {i}.\n").repeat(10) + &"A line of ordinary text that goes on for a while.\n".repeat(90)
}

/// Indexes `tree` into a fresh local store `runs` times, then again with nothing changed.
pub(crate) async fn bench_index(dir: &Path, label: &str, tree: &Path, runs: usize) -> Result<()> {
    let found = discover(&[".".into()], &DiscoverOptions::new(tree))?;
    let bytes: u64 = found.files.iter().map(|f| std::fs::metadata(&f.path).map_or(0, |m| m.len())).sum();
    println!(
        "indexing a {label} tree ({}): {} files, {:.1} MB, instant embedder of {DIM} dims, local store ({runs} runs, medians)",
        tree.display(),
        found.files.len(),
        bytes as f64 / 1e6
    );
    let (mut full, mut unchanged, mut chunks) = (Vec::new(), Vec::new(), 0);
    for run in 0..runs {
        let data = dir.join(format!("index-data-{run}"));
        let _ = std::fs::remove_dir_all(&data);
        let backend = Arc::new(LocalBackend::new(&data));
        let indexer = Indexer::new(Arc::new(InstantEmbedder), backend.clone(), Arc::new(TextChunker::default()));
        let started = Instant::now();
        let report = indexer.index("bench", Arc::new(FileSource::new(found.clone()))).await?;
        full.push(started.elapsed().as_secs_f64());
        chunks = report.chunks_embedded;
        drop(indexer);
        drop(backend);
        let backend = Arc::new(LocalBackend::new(&data));
        let indexer = Indexer::new(Arc::new(InstantEmbedder), backend, Arc::new(TextChunker::default()));
        let started = Instant::now();
        let again = indexer.index("bench", Arc::new(FileSource::new(found.clone()))).await?;
        unchanged.push(started.elapsed().as_secs_f64());
        if again.unchanged != found.files.len() {
            bail!("re-index saw {} unchanged of {}", again.unchanged, found.files.len());
        }
        let _ = std::fs::remove_dir_all(&data);
    }
    let (full, unchanged) = (median(full), median(unchanged));
    println!(
        "  first index: {full:.2} s, {:.0} files/s, {:.1} MB/s, {chunks} chunks",
        found.files.len() as f64 / full,
        bytes as f64 / 1e6 / full
    );
    println!(
        "  re-index, nothing changed: {unchanged:.2} s, {:.0} files/s, {:.1} MB/s",
        found.files.len() as f64 / unchanged,
        bytes as f64 / 1e6 / unchanged
    );
    Ok(())
}
