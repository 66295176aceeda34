//! `rag-bench query`: fresh-process local queries over synthetic stores of
//! 768-dimensional vectors, every mode, with recall against exact search.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use rag_backend_local::LocalBackend;
use rag_core::{
    backend::{QueryRequest, VectorBackend, VectorRecord},
    embed::{DocText, Embedder},
    search::{Querier, SearchOptions},
    store::{Chunk, Metric, StoreConfig},
};

use crate::{DIM, median, peak_rss_kib};

/// Deterministic pseudo-random unit vectors.
pub(crate) struct Vectors(pub(crate) u64);

impl Vectors {
    pub(crate) fn next_unit(&mut self, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }
}

pub(crate) fn synthetic_chunk(i: usize) -> Chunk {
    let path = format!("docs/part{}/file{:06}.md", (i / 8) % 8, i / 8);
    Chunk::new(path, i % 8, synthetic_text(i as u64, 120))
        .with_total(8)
        .with_lines((i % 8) * 20 + 1, (i % 8) * 20 + 20)
        .with_bytes(0, 160)
        .with_content_hash(format!("{:064x}", i / 8))
        .with_language("markdown")
}

/// `words` pseudo-words drawn from a 20,000-word vocabulary with Zipf-like
/// frequencies (rank ~ exp(u ln V)), so a full-text index sees common and rare
/// terms as in real text.
pub(crate) fn synthetic_text(seed: u64, words: usize) -> String {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = String::with_capacity(words * 8);
    for _ in 0..words {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        let rank = (u * 20_000f64.ln()).exp() as usize;
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word_of_rank(rank));
    }
    out
}

/// A query of `words` words of the synthetic vocabulary past its 100 most
/// frequent, which stand for the stop words a real query loses.
pub(crate) fn synthetic_query(seed: u64, words: usize) -> String {
    let mut state = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    let mut out = Vec::with_capacity(words);
    while out.len() < words {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        let rank = (100f64.ln() + u * (20_000f64.ln() - 100f64.ln())).exp() as usize;
        out.push(word_of_rank(rank));
    }
    out.join(" ")
}

pub(crate) fn word_of_rank(mut rank: usize) -> String {
    const SYLLABLES: [&str; 16] =
        ["ka", "lo", "mi", "ren", "tas", "vo", "qui", "ber", "dun", "sel", "ap", "or", "ix", "te", "nu", "gar"];
    let mut word = String::new();
    loop {
        word.push_str(SYLLABLES[rank % 16]);
        rank /= 16;
        if rank == 0 {
            return word;
        }
    }
}

/// Returns one fixed vector for every query: searches measured without the model.
pub(crate) struct FixedQuery(Vec<f32>);

#[async_trait]
impl Embedder for FixedQuery {
    fn model(&self) -> &str {
        "synthetic"
    }
    fn dimension(&self) -> usize {
        self.0.len()
    }
    async fn embed_documents(&self, docs: &[DocText]) -> rag_core::Result<Vec<Vec<f32>>> {
        Ok(docs.iter().map(|_| self.0.clone()).collect())
    }
    async fn embed_query(&self, _query: &str) -> rag_core::Result<Vec<f32>> {
        Ok(self.0.clone())
    }
}

pub(crate) async fn ensure_store(data: &Path, store: &str, size: usize, dims: usize) -> Result<()> {
    let backend = LocalBackend::new(data);
    if backend.store_exists(store).await? {
        if backend.store_info(store).await?.chunks == Some(size as u64) {
            // A writer brings the full-text index up to this version's tokenizer.
            drop(backend.lock_for_writing(store).await?);
            return Ok(());
        }
        backend.delete_store(store).await?;
    }
    eprintln!("building a store of {size} chunks of {dims} dimensions under {} ...", data.display());
    let started = Instant::now();
    backend.create_store(&StoreConfig::new(store, "synthetic", dims).with_chunking("synthetic")).await?;
    let mut vectors = Vectors(0x5eed);
    let mut i = 0;
    while i < size {
        let n = (size - i).min(8192);
        let records = (i..i + n).map(|j| VectorRecord {
            chunk: synthetic_chunk(j),
            vector: vectors.next_unit(dims),
            indexed_at: 0,
        });
        backend.put(store, records.collect()).await?;
        if i / n % 64 == 63 {
            eprintln!("  {} chunks, {:.0} s", i + n, started.elapsed().as_secs_f64());
        }
        i += n;
    }
    eprintln!("  built in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The folder of the benchmark's store of `size` chunks of `dims` dimensions.
pub(crate) fn store_folder(dir: &Path, size: usize, dims: usize) -> std::path::PathBuf {
    if dims == DIM { dir.join(format!("query-v3-{size}")) } else { dir.join(format!("query-v3-{size}x{dims}")) }
}

pub(crate) async fn bench_query(dir: &Path, sizes: &[usize], dims: usize, runs: usize) -> Result<()> {
    let exe = std::env::current_exe()?;
    println!(
        "local query in a fresh process ({dims} dims, top 10, {runs} runs each, medians; query embedding excluded)"
    );
    println!(
        "{:>10} {:>16} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "chunks", "mode", "search ms", "process ms", "peak RSS", "store size", "recall@10"
    );
    for &size in sizes {
        let data = store_folder(dir, size, dims);
        let store = "bench";
        ensure_store(&data, store, size, dims).await?;
        let size_on_disk = LocalBackend::new(&data).store_info(store).await?.size_bytes.unwrap_or(0);
        let mut rows = Vec::new();
        for mode in ["vector", "hybrid", "lexical", "vector+path", "hybrid+path"] {
            let (mut search, mut process, mut rss) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..runs {
                let started = Instant::now();
                let out = Command::new(&exe)
                    .args(["query-once", "--data-dir"])
                    .arg(&data)
                    .args(["--store", store, "--mode", mode])
                    .output()?;
                let wall = started.elapsed();
                if !out.status.success() {
                    bail!("query-once failed: {}", String::from_utf8_lossy(&out.stderr));
                }
                let text = String::from_utf8_lossy(&out.stdout);
                let mut fields = text.split_whitespace();
                search.push(fields.next().context("no timing")?.parse::<f64>()?);
                rss.push(fields.next().context("no rss")?.parse::<f64>()?);
                process.push(wall.as_secs_f64() * 1000.0);
            }
            rows.push((mode, median(search), median(process), median(rss)));
        }
        // After the timed queries: the exact search reads the whole float
        // file (15 GB at 10M x 384), which would push the codes the queries
        // read out of the page cache first.
        let recall = recall_at_10(&data, store, dims, 20).await?;
        for (mode, search, process, rss) in rows {
            println!(
                "{:>10} {:>16} {:>12.2} {:>12.2} {:>8.0} MiB {:>8.0} MiB {:>10}",
                size,
                mode,
                search,
                process,
                rss / 1024.0,
                size_on_disk as f64 / (1024.0 * 1024.0),
                if mode == "vector" { format!("{recall:.4}") } else { String::new() }
            );
        }
    }
    Ok(())
}

/// Share of the exact top 10 (brute force over the `f32` vectors) that the
/// store's query returns, over `queries` random queries. The vectors are
/// read a block at a time, so a store larger than memory can be checked.
pub(crate) async fn recall_at_10(data: &Path, store: &str, dims: usize, queries: usize) -> Result<f64> {
    use std::io::Read;
    let mut vectors = Vectors(0xfeed);
    let asked: Vec<Vec<f32>> = (0..queries).map(|_| vectors.next_unit(dims)).collect();
    let mut exact: Vec<Vec<f32>> = vec![Vec::new(); queries];
    let mut file = std::fs::File::open(data.join("stores").join(store).join("vectors.f32"))?;
    let rows_per_block = (16 << 20) / (4 * dims.max(1));
    let mut bytes = vec![0u8; rows_per_block * dims * 4];
    loop {
        let mut filled = 0;
        while filled < bytes.len() {
            match file.read(&mut bytes[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        let floats: Vec<f32> = bytes[..filled / (4 * dims) * 4 * dims]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if floats.is_empty() {
            break;
        }
        for (query, best) in asked.iter().zip(&mut exact) {
            best.extend(
                rag_backend_local::top_k(&floats, dims, query, Metric::Cosine, 10, 2, None).iter().map(|s| s.score),
            );
            best.sort_by(|a, b| b.total_cmp(a));
            best.truncate(10);
        }
    }
    let backend = LocalBackend::new(data);
    let mut found = 0;
    for (query, best) in asked.into_iter().zip(exact) {
        let hits = backend.query(store, &QueryRequest::new(query, 10)).await?;
        found += best.iter().filter(|e| hits.iter().any(|h| (h.score - **e).abs() < 1e-5)).count();
    }
    Ok(found as f64 / (queries * 10) as f64)
}

/// Opens the store, runs one query in `mode` (`vector`, `hybrid`,
/// `lexical`, optionally `+path` for a filter on one folder of 1/8 of the
/// files), prints `milliseconds peak_rss_kib`.
pub(crate) async fn query_once(data: &Path, store: &str, mode: &str) -> Result<()> {
    let started = Instant::now();
    let backend = Arc::new(LocalBackend::new(data));
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
    let dims = backend.store_config(store).await?.dimension;
    let vector = Vectors(u64::from(seed) | 1).next_unit(dims);
    let (mode, filter) = match mode.split_once('+') {
        Some((mode, "path")) => (mode, Some(rag_core::filter::Filter::folder("docs/part3"))),
        _ => (mode, None),
    };
    let hits = if mode == "vector" && filter.is_none() {
        backend.query(store, &QueryRequest::new(vector, 10)).await?.len()
    } else {
        let text = synthetic_query(u64::from(seed), 5);
        let querier = Querier::new(Arc::new(FixedQuery(vector)), backend.clone());
        let config = backend.store_config(store).await?;
        let options = SearchOptions::new(10).with_mode(mode.parse()?).with_filter(filter);
        querier.search_store(store, &config, &text, &options).await?.hits.len()
    };
    let elapsed = started.elapsed();
    if hits == 0 {
        bail!("expected hits, got none");
    }
    println!("{:.3} {}", elapsed.as_secs_f64() * 1000.0, peak_rss_kib());
    Ok(())
}
