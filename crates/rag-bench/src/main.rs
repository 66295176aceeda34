//! `rag-bench`: the project's benchmarks, run as separate processes so that
//! "fresh process" means what it says. Build with `--release`:
//!
//! ```sh
//! cargo build --release -p rag-cli -p rag-bench
//! target/release/rag-bench query              # 10k, 100k, 1M chunks of 768 dims
//! target/release/rag-bench mcp                # warm search through `rag mcp` at 10k and 100k chunks
//! target/release/rag-bench watch              # save-to-queryable latency of `rag watch`
//! target/release/rag-bench embed --model DIR  # in-process embedder texts/s (beside --ollama-url)
//! target/release/rag-bench index              # 10k-file trees (mixed, notes, code), instant embedder
//! target/release/rag-bench index --tree DIR    # a folder of your own, instant embedder
//! target/release/rag-bench startup            # rag --version, rag store list
//! target/release/rag-bench s3                 # S3 Vectors backend against the loopback fake
//! target/release/rag-bench formats            # extraction + chunking throughput per format
//! ```
//!
//! Every figure is a median over several runs, measured in one invocation.
//! Stores and trees are built once under `--dir` (default
//! `target/rag-bench`) and reused.

mod embed;
mod eval;
mod mcp;
mod watch;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use rag_backend_local::LocalBackend;
use rag_core::{
    backend::{QueryRequest, VectorBackend, VectorRecord},
    embed::{DocText, Embedder},
    index::Indexer,
    search::{Querier, SearchOptions},
    store::{Chunk, Metric, StoreConfig},
};
use rag_ingest::{DiscoverOptions, FileSource, TextChunker, discover};

const DIM: usize = 768;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let dir = flag("--dir").map_or_else(|| PathBuf::from("target/rag-bench"), PathBuf::from);
    let runs: usize = flag("--runs").map_or(Ok(11), |r| r.parse()).context("--runs takes a number")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.first().map(String::as_str) {
        Some("query") => {
            let sizes = flag("--sizes").unwrap_or_else(|| "10000,100000,1000000".into());
            let sizes: Vec<usize> = sizes.split(',').map(str::parse).collect::<Result<_, _>>().context("--sizes")?;
            runtime.block_on(bench_query(&dir, &sizes, runs))
        }
        Some("mcp") => {
            let sizes = flag("--sizes").unwrap_or_else(|| "10000,100000".into());
            let sizes: Vec<usize> = sizes.split(',').map(str::parse).collect::<Result<_, _>>().context("--sizes")?;
            runtime.block_on(mcp::bench_mcp(&dir, &sizes, runs.max(21)))
        }
        Some("embed") => {
            let model = flag("--model").context("usage: rag-bench embed --model MODEL_FOLDER [--ollama-url URL]")?;
            let ollama =
                flag("--ollama-url").map(|url| (url, flag("--ollama-model").unwrap_or_else(|| "all-minilm".into())));
            runtime.block_on(embed::bench_embed(Path::new(&model), ollama, runs.min(5)))
        }
        Some("watch") => runtime.block_on(watch::bench_watch(&dir, runs.max(11))),
        Some("query-once") => {
            let data = flag("--data-dir").context("--data-dir")?;
            let store = flag("--store").context("--store")?;
            let mode = flag("--mode").unwrap_or_else(|| "vector".into());
            runtime.block_on(query_once(Path::new(&data), &store, &mode))
        }
        Some("index") => {
            let files: usize = flag("--files").map_or(Ok(10_000), |f| f.parse()).context("--files")?;
            if let Some(tree) = flag("--tree") {
                return runtime.block_on(bench_index(&dir, "given", Path::new(&tree), runs.min(5)));
            }
            let mixes = flag("--mix").unwrap_or_else(|| "mixed,notes,code".into());
            for mix in mixes.split(',') {
                let mix = Mix::parse(mix)?;
                let tree = match mix {
                    Mix::Mixed => dir.join(format!("tree-{files}")),
                    _ => dir.join(format!("tree-{files}-{}", mix.name())),
                };
                ensure_tree(&tree, files, mix)?;
                runtime.block_on(bench_index(&dir, mix.name(), &tree, runs.min(5)))?;
            }
            Ok(())
        }
        Some("eval") => {
            let dataset = args.get(1).filter(|a| !a.starts_with("--")).context("usage: rag-bench eval DATASET_DIR")?;
            let model = flag("--model").unwrap_or_else(|| "embeddinggemma".into());
            let mut config = rag_embed_ollama::OllamaConfig::new(model);
            if let Some(url) = flag("--ollama-url") {
                config = config.with_url(&url);
            }
            let modes = flag("--modes").unwrap_or_else(|| "vector,lexical,hybrid".into());
            let modes =
                modes.split(',').map(str::parse).collect::<rag_core::Result<Vec<rag_core::search::SearchMode>>>()?;
            let chunk_size = flag("--chunk-size").map(|c| c.parse()).transpose().context("--chunk-size")?;
            let limit = flag("--limit").map(|l| l.parse()).transpose().context("--limit")?;
            runtime.block_on(async {
                // A model folder or hf: name runs in this process; any other name through Ollama.
                let embedder: Arc<dyn Embedder> = if rag_embed_local::LocalEmbedder::is_local_model(&config.model) {
                    Arc::new(rag_embed_local::LocalEmbedder::load_named(&config.model)?)
                } else {
                    Arc::new(rag_embed_ollama::OllamaEmbedder::connect(config).await?)
                };
                eval::run(eval::EvalArgs {
                    dataset: PathBuf::from(dataset),
                    work: dir.join("eval"),
                    embedder,
                    modes,
                    embed_headings: !args.iter().any(|a| a == "--no-heading-embed"),
                    chunk_size,
                    json: args.iter().any(|a| a == "--json"),
                    limit,
                })
                .await
            })
        }
        Some("startup") => bench_startup(&dir, runs.max(21)),
        Some("formats") => bench_formats(runs.min(5)),
        Some("s3") => {
            let chunks: usize = flag("--chunks").map_or(Ok(20_000), |c| c.parse()).context("--chunks")?;
            let listed: usize = flag("--listed").map_or(Ok(100_000), |c| c.parse()).context("--listed")?;
            runtime.block_on(bench_s3(chunks, listed, runs))
        }
        _ => bail!(
            "usage: rag-bench query [--sizes 10000,100000,1000000] | mcp [--sizes 10000,100000] | watch | embed --model DIR [--ollama-url URL] | index [--files 10000] [--mix mixed,notes,code] [--tree DIR] | \
             startup | eval DATASET_DIR [--model M] [--ollama-url URL] [--modes vector,lexical,hybrid] \
             [--chunk-size N] [--no-heading-embed] [--limit N] [--json] | \
             s3 [--chunks 20000] [--listed 100000] | formats  [--runs N] [--dir DIR]"
        ),
    }
}

/// The `rag` binary built beside this one (the benchmarks run it as users do).
fn rag_binary() -> Result<PathBuf> {
    let rag = std::env::current_exe()?.with_file_name(format!("rag{}", std::env::consts::EXE_SUFFIX));
    if !rag.exists() {
        bail!("{} not found: build it with `cargo build --release -p rag-cli`", rag.display());
    }
    Ok(rag)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Deterministic pseudo-random unit vectors.
struct Vectors(u64);

impl Vectors {
    fn next_unit(&mut self, dim: usize) -> Vec<f32> {
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

fn synthetic_chunk(i: usize) -> Chunk {
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
fn synthetic_text(seed: u64, words: usize) -> String {
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
fn synthetic_query(seed: u64, words: usize) -> String {
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

fn word_of_rank(mut rank: usize) -> String {
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
struct FixedQuery(Vec<f32>);

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

async fn ensure_store(data: &Path, store: &str, size: usize) -> Result<()> {
    let backend = LocalBackend::new(data);
    if backend.store_exists(store).await? {
        if backend.store_info(store).await?.chunks == Some(size as u64) {
            // A writer brings the full-text index up to this version's tokenizer.
            drop(backend.lock_for_writing(store).await?);
            return Ok(());
        }
        backend.delete_store(store).await?;
    }
    eprintln!("building a store of {size} chunks of {DIM} dimensions under {} ...", data.display());
    let started = Instant::now();
    backend.create_store(&StoreConfig::new(store, "synthetic", DIM).with_chunking("synthetic")).await?;
    let mut vectors = Vectors(0x5eed);
    let mut i = 0;
    while i < size {
        let n = (size - i).min(8192);
        let records = (i..i + n).map(|j| VectorRecord {
            chunk: synthetic_chunk(j),
            vector: vectors.next_unit(DIM),
            indexed_at: 0,
        });
        backend.put(store, records.collect()).await?;
        i += n;
    }
    eprintln!("  built in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn bench_query(dir: &Path, sizes: &[usize], runs: usize) -> Result<()> {
    let exe = std::env::current_exe()?;
    println!("local query in a fresh process (768 dims, top 10, {runs} runs each, medians; query embedding excluded)");
    println!(
        "{:>10} {:>16} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "chunks", "mode", "search ms", "process ms", "peak RSS", "store size", "recall@10"
    );
    for &size in sizes {
        let data = dir.join(format!("query-v3-{size}"));
        let store = "bench";
        ensure_store(&data, store, size).await?;
        let size_on_disk = LocalBackend::new(&data).store_info(store).await?.size_bytes.unwrap_or(0);
        let recall = recall_at_10(&data, store, 20).await?;
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
            println!(
                "{:>10} {:>16} {:>12.2} {:>12.2} {:>8.0} MiB {:>8.0} MiB {:>10}",
                size,
                mode,
                median(search),
                median(process),
                median(rss) / 1024.0,
                size_on_disk as f64 / (1024.0 * 1024.0),
                if mode == "vector" { format!("{recall:.4}") } else { String::new() }
            );
        }
    }
    Ok(())
}

/// Share of the exact top 10 (brute force over the `f32` vectors) that the
/// store's query returns, over `queries` random queries.
async fn recall_at_10(data: &Path, store: &str, queries: usize) -> Result<f64> {
    let bytes = std::fs::read(data.join("stores").join(store).join("vectors.f32"))?;
    let floats: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let backend = LocalBackend::new(data);
    let mut vectors = Vectors(0xfeed);
    let mut found = 0;
    for _ in 0..queries {
        let query = vectors.next_unit(DIM);
        let exact = rag_backend_local::top_k(&floats, DIM, &query, Metric::Cosine, 10, 2, None);
        let hits = backend.query(store, &QueryRequest::new(query, 10)).await?;
        found += exact.iter().filter(|e| hits.iter().any(|h| (h.score - e.score).abs() < 1e-5)).count();
    }
    Ok(found as f64 / (queries * 10) as f64)
}

/// Opens the store, runs one query in `mode` (`vector`, `hybrid`,
/// `lexical`, optionally `+path` for a filter on one folder of 1/8 of the
/// files), prints `milliseconds peak_rss_kib`.
async fn query_once(data: &Path, store: &str, mode: &str) -> Result<()> {
    let started = Instant::now();
    let backend = Arc::new(LocalBackend::new(data));
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
    let vector = Vectors(u64::from(seed) | 1).next_unit(DIM);
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

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Returns a fixed unit vector (slightly varied) at once: measures everything
/// but the model.
struct InstantEmbedder;

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

fn instant_vector(seed: usize) -> Vec<f32> {
    let mut v = vec![0.036; DIM];
    v[seed % DIM] = 1.0;
    v
}

/// A tree of `files` files, markdown, Rust and text, about 5 KB each.
/// What a benchmark tree holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mix {
    /// A third each of markdown notes, Rust sources and plain text.
    Mixed,
    /// Half markdown notes, half plain text: a notes vault.
    Notes,
    /// Rust sources only: a code repository.
    Code,
}

impl Mix {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "mixed" => Mix::Mixed,
            "notes" => Mix::Notes,
            "code" => Mix::Code,
            other => bail!("--mix takes mixed, notes or code, not {other:?}"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mix::Mixed => "mixed",
            Mix::Notes => "notes",
            Mix::Code => "code",
        }
    }

    fn file(self, i: usize) -> (&'static str, String) {
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

fn ensure_tree(root: &Path, files: usize, mix: Mix) -> Result<()> {
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

fn markdown_body(i: usize) -> String {
    (0..6)
        .map(|s| {
            format!(
                "## Section {s} of note {i}\n\n{}\n\n",
                "Plain prose about the topic, with a link or two. ".repeat(16)
            )
        })
        .collect()
}

fn rust_body(i: usize) -> String {
    (0..12)
        .map(|f| format!("/// Does step {f} of item {i}.\npub fn step_{f}(x: u64) -> u64 {{\n    let y = x.wrapping_mul({f} + 3);\n    y ^ (y >> 7)\n}}\n\n"))
        .collect::<String>()
        .repeat(4)
}

fn text_body(i: usize) -> String {
    format!("Log of day {i}.\n").repeat(10) + &"A line of ordinary text that goes on for a while.\n".repeat(90)
}

/// Indexes `tree` into a fresh local store `runs` times, then again with nothing changed.
async fn bench_index(dir: &Path, label: &str, tree: &Path, runs: usize) -> Result<()> {
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

fn bench_startup(dir: &Path, runs: usize) -> Result<()> {
    let rag = crate::rag_binary()?;
    let data = dir.join("startup-data");
    std::fs::create_dir_all(&data)?;
    println!("start-up of {} ({runs} runs, medians)", rag.display());
    for args in [vec!["--version"], vec!["store", "list"]] {
        let mut times = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let status = Command::new(&rag).args(&args).env("RAG_DATA_DIR", &data).output()?.status;
            times.push(started.elapsed());
            if !status.success() {
                bail!("rag {} failed", args.join(" "));
            }
        }
        let ms: Vec<f64> = times.iter().map(Duration::as_secs_f64).map(|s| s * 1000.0).collect();
        println!("  rag {:<12} {:.2} ms", args.join(" "), median(ms));
    }
    Ok(())
}

/// An S3 Vectors backend on the loopback fake with static test credentials.
fn s3_backend(fake: &rag_testkit::FakeS3Vectors, segments: u32) -> rag_backend_s3vectors::S3VectorsBackend {
    use aws_sdk_s3vectors::config::{BehaviorVersion, Credentials, Region};
    let sdk = aws_sdk_s3vectors::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .endpoint_url(fake.url())
        .build();
    let config = rag_backend_s3vectors::S3VectorsConfig {
        endpoint_url: Some(fake.url()),
        list_segments: segments,
        ..rag_backend_s3vectors::S3VectorsConfig::new("bench-vectors")
    };
    rag_backend_s3vectors::S3VectorsBackend::from_client(
        aws_sdk_s3vectors::Client::from_conf(sdk),
        config,
        "us-east-1".into(),
    )
}

fn s3_store(name: &str, dimension: usize) -> StoreConfig {
    StoreConfig::new(name, "instant", dimension).with_chunking("synthetic")
}

async fn bench_s3(chunks: usize, listed: usize, runs: usize) -> Result<()> {
    let latency = Duration::from_millis(50);
    println!("S3 Vectors backend against the loopback fake ({} ms per request unless said)", latency.as_millis());

    // Writes: the indexer's path (batches sized by the backend's hint), instant embedder, 768 dims.
    let fake = rag_testkit::FakeS3Vectors::start();
    fake.set_latency(latency);
    let backend = s3_backend(&fake, 8);
    backend.create_store(&s3_store("writes", DIM)).await?;
    let mut vectors = Vectors(7);
    let records: Vec<VectorRecord> = (0..chunks)
        .map(|i| VectorRecord { chunk: synthetic_chunk(i), vector: vectors.next_unit(DIM), indexed_at: 0 })
        .collect();
    let hint = backend.write_batch_hint();
    let started = Instant::now();
    for batch in records.chunks(hint) {
        backend.put("writes", batch.to_vec()).await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "  write {chunks} vectors of {DIM} dims: {elapsed:.2} s, {:.0} vectors/s ({} PutVectors, client limit 2,400/s)",
        chunks as f64 / elapsed,
        fake.calls("PutVectors")
    );
    drop(backend);
    drop(fake);

    // State rebuilt from ListVectors with metadata: 1 vs 16 segments.
    let fake = rag_testkit::FakeS3Vectors::start();
    let filler = s3_backend(&fake, 1);
    filler.create_store(&s3_store("listed", 4)).await?;
    let records: Vec<VectorRecord> = (0..listed)
        .map(|i| VectorRecord {
            chunk: synthetic_chunk(i),
            vector: vec![1.0, 0.5, (i % 7) as f32, 0.25],
            indexed_at: 0,
        })
        .collect();
    for batch in records.chunks(4_000) {
        filler.put("listed", batch.to_vec()).await?;
    }
    fake.set_latency(latency);
    for segments in [1, 16] {
        let backend = s3_backend(&fake, segments);
        let mut times = Vec::new();
        for _ in 0..runs.min(3) {
            let started = Instant::now();
            let states = backend.file_states("listed").await?;
            times.push(started.elapsed().as_secs_f64());
            if states.len() != listed.div_ceil(8) {
                bail!("expected {} files, got {}", listed.div_ceil(8), states.len());
            }
        }
        println!("  file state of {listed} vectors from ListVectors, {segments:>2} segment(s): {:.2} s", median(times));
    }

    // Query round trip with no injected latency: client, HTTP on loopback, fake's search of 1,000 vectors.
    fake.set_latency(Duration::ZERO);
    let backend = s3_backend(&fake, 1);
    backend.create_store(&s3_store("queries", DIM)).await?;
    let mut vectors = Vectors(11);
    let records: Vec<VectorRecord> = (0..1_000)
        .map(|i| VectorRecord { chunk: synthetic_chunk(i), vector: vectors.next_unit(DIM), indexed_at: 0 })
        .collect();
    backend.put("queries", records).await?;
    let mut times = Vec::new();
    for _ in 0..(runs * 10).max(50) {
        let query = vectors.next_unit(DIM);
        let started = Instant::now();
        let hits = backend.query("queries", &QueryRequest::new(query, 10)).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if hits.len() != 10 {
            bail!("expected 10 hits");
        }
    }
    println!("  query round trip, top 10 of 1,000 vectors of {DIM} dims, no latency: {:.2} ms median", median(times));
    Ok(())
}

/// Extraction and chunking throughput per format, in memory (no disk, no
/// embedding): what the indexer does to each file before embedding.
fn bench_formats(runs: usize) -> Result<()> {
    use rag_core::chunk::Chunker;
    let chunker = TextChunker::default();
    let samples: Vec<(&str, &str, Vec<u8>)> = vec![
        ("markdown, 10 MB", "notes.md", fill(10, |i| markdown_body(i).into_bytes())),
        ("Rust source, 10 MB", "lib.rs", fill(10, |i| rust_body(i).into_bytes())),
        (
            "Python source",
            "mod.py",
            fill(4, |i| {
                (0..20)
                    .map(|f| format!("def step_{i}_{f}(x):\n    y = x * {f}\n    return y ^ (y >> 7)\n\n\n"))
                    .collect::<String>()
                    .into_bytes()
            }),
        ),
        ("plain text", "log.txt", fill(4, |i| text_body(i).into_bytes())),
        ("CSV", "table.csv", {
            let mut csv = b"id,name,city,amount\n".to_vec();
            csv.extend(fill(4, |i| format!("{i},Customer {i},City {},{}.50\n", i % 97, i % 1000).into_bytes()));
            csv
        }),
        ("HTML", "page.html", {
            let mut html = b"<html><body>".to_vec();
            html.extend(fill(4, |i| {
                format!("<h2>Part {i}</h2><p>{}</p><script>x({i})</script>", "Plain prose about it. ".repeat(20))
                    .into_bytes()
            }));
            html.extend(b"</body></html>");
            html
        }),
        ("Word .docx", "report.docx", docx_sample(4)),
        ("PDF", "paper.pdf", pdf_sample(300)),
    ];
    println!("extraction + chunking (1500/200), in memory, {runs} runs, medians");
    println!(
        "  {:<22} {:>7}  {:>7}  {:>9}  {:>9}  {:>9}  chunks",
        "format", "file MB", "text MB", "time", "file MB/s", "text MB/s"
    );
    for (label, name, bytes) in samples {
        let path = std::path::Path::new(name);
        let mut times = Vec::new();
        let (mut chunks, mut text) = (0, 0);
        for _ in 0..runs {
            let started = Instant::now();
            let extracted = rag_ingest::extract(path, &bytes).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            chunks = chunker.chunk(&extracted.text[extracted.body.clone()], name, &extracted.language).len();
            times.push(started.elapsed().as_secs_f64());
            text = extracted.body.len();
        }
        let t = median(times);
        let (file_mb, text_mb) = (bytes.len() as f64 / 1e6, text as f64 / 1e6);
        println!(
            "  {label:<22} {file_mb:>7.1}  {text_mb:>7.1}  {t:>7.3} s  {:>9.1}  {:>9.1}  {chunks}",
            file_mb / t,
            text_mb / t
        );
    }
    // The floor under code chunking: tree-sitter's parse alone, file by file.
    let files: Vec<String> = (0..1800).map(rust_body).collect();
    let bytes: usize = files.iter().map(String::len).sum();
    let mut parser = tree_sitter::Parser::new();
    parser.set_language(&tree_sitter::Language::new(tree_sitter_rust::LANGUAGE))?;
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        for file in &files {
            parser.parse(file, None).context("tree-sitter gave up")?;
        }
        times.push(started.elapsed().as_secs_f64());
    }
    let t = median(times);
    let mb = bytes as f64 / 1e6;
    println!(
        "  {:<22} {mb:>7.1}  {mb:>7.1}  {t:>7.3} s  {:>9.1}  {:>9.1}  (tree-sitter-rust parse alone)",
        "Rust, parse only",
        mb / t,
        mb / t
    );
    Ok(())
}

/// Repeats `piece(i)` until about `mb` megabytes.
fn fill(mb: usize, piece: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(mb * 1_000_000 + 10_000);
    let mut i = 0;
    while out.len() < mb * 1_000_000 {
        out.extend(piece(i));
        i += 1;
    }
    out
}

fn docx_sample(mb: usize) -> Vec<u8> {
    let body = fill(mb, |i| {
        format!(
            "<w:p><w:pPr><w:pStyle w:val=\"Heading2\"/></w:pPr><w:r><w:t>Section {i}</w:t></w:r></w:p><w:p><w:r><w:t>{}</w:t></w:r></w:p>",
            "Plain prose about the topic. ".repeat(12)
        )
        .into_bytes()
    });
    let xml = format!(r#"<w:document xmlns:w="w"><w:body>{}</w:body></w:document>"#, String::from_utf8_lossy(&body));
    rag_testkit::documents::zip(&[("word/document.xml", xml.as_bytes())])
}

fn pdf_sample(pages: usize) -> Vec<u8> {
    let pages: Vec<Vec<String>> = (0..pages)
        .map(|page| (0..40).map(|line| format!("Page {page} line {line}: ordinary words of a report.")).collect())
        .collect();
    rag_testkit::documents::pdf(&pages)
}
