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
//! target/release/rag-bench providers          # Bedrock and OpenAI-compatible clients, 50 ms fakes
//! target/release/rag-bench formats            # extraction + chunking throughput per format
//! target/release/rag-bench eval DATASET_DIR   # retrieval quality on a BEIR-layout set
//! target/release/rag-bench code PACKAGE_DIR... # code search quality (scripts/fetch-code-bench.sh)
//! target/release/rag-bench codes DATA_DIR STORE # recall of the bit codes on a store's real vectors
//! target/release/rag-bench scan               # the two-bit code scan alone, in memory, 384 and 768 dims
//! ```
//!
//! Every figure is a median over several runs, measured in one invocation.
//! Stores and trees are built once under `--dir` (default
//! `target/rag-bench`) and reused.

mod code;
mod codes;
mod embed;
mod eval;
mod formats;
mod fusion;
mod index;
mod mcp;
mod providers;
mod query;
mod s3;
mod scan;
mod startup;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rag_core::embed::Embedder;

use formats::bench_formats;
use index::{Mix, bench_index, ensure_tree};
use query::{bench_query, query_once};
use s3::bench_s3;
use startup::bench_startup;

pub(crate) const DIM: usize = 768;

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
            let dims: usize = flag("--dims").map_or(Ok(DIM), |d| d.parse()).context("--dims")?;
            runtime.block_on(bench_query(&dir, &sizes, dims, runs))
        }
        Some("mcp") => {
            let sizes = flag("--sizes").unwrap_or_else(|| "10000,100000".into());
            let sizes: Vec<usize> = sizes.split(',').map(str::parse).collect::<Result<_, _>>().context("--sizes")?;
            runtime.block_on(mcp::bench_mcp(&dir, &sizes, runs.max(21)))
        }
        Some("providers") => runtime.block_on(providers::bench_providers(runs)),
        Some("embed") => {
            let model = flag("--model").context("usage: rag-bench embed --model MODEL_FOLDER [--ollama-url URL]")?;
            let ollama =
                flag("--ollama-url").map(|url| (url, flag("--ollama-model").unwrap_or_else(|| "all-minilm".into())));
            let lengths = flag("--lengths").unwrap_or_else(|| "1,32,256".into());
            let lengths: Vec<usize> =
                lengths.split(',').map(str::parse).collect::<Result<_, _>>().context("--lengths")?;
            runtime.block_on(embed::bench_embed(Path::new(&model), ollama, &lengths, runs.min(5)))
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
            let chunk_size = flag("--chunk-size").map(|c| c.parse()).transpose().context("--chunk-size")?;
            let limit = flag("--limit").map(|l| l.parse()).transpose().context("--limit")?;
            runtime.block_on(async {
                eval::run(eval::EvalArgs {
                    dataset: PathBuf::from(dataset),
                    work: dir.join("eval"),
                    embedder: embedder_of_flags(&flag).await?,
                    modes: modes_of_flags(&flag)?,
                    embed_headings: !args.iter().any(|a| a == "--no-heading-embed"),
                    chunk_size,
                    json: args.iter().any(|a| a == "--json"),
                    limit,
                    fusion_study: args.iter().any(|a| a == "--fusion-study"),
                })
                .await
            })
        }
        Some("code") => {
            let mut packages = Vec::new();
            let mut rest = args.iter().skip(1);
            while let Some(arg) = rest.next() {
                if arg == "--json" || arg == "--fusion-study" {
                    continue;
                } else if arg.starts_with("--") {
                    // Every other flag of this command takes a value.
                    rest.next();
                } else {
                    packages.push(PathBuf::from(arg));
                }
            }
            if packages.is_empty() {
                bail!("usage: rag-bench code PACKAGE_DIR... (scripts/fetch-code-bench.sh fetches the usual ones)");
            }
            let chunk_size = flag("--chunk-size").map(|c| c.parse()).transpose().context("--chunk-size")?;
            let queries = flag("--queries").map_or(Ok(300), |q| q.parse()).context("--queries")?;
            runtime.block_on(async {
                code::run(code::CodeArgs {
                    packages,
                    work: dir.join("code"),
                    embedder: embedder_of_flags(&flag).await?,
                    modes: modes_of_flags(&flag)?,
                    chunk_size,
                    queries,
                    json: args.iter().any(|a| a == "--json"),
                    fusion_study: args.iter().any(|a| a == "--fusion-study"),
                    misses: flag("--misses").map_or(Ok(0), |m| m.parse()).context("--misses")?,
                })
                .await
            })
        }
        Some("codes") => {
            let (Some(data), Some(store)) = (args.get(1), args.get(2)) else {
                bail!("usage: rag-bench codes DATA_DIR STORE [--queries QUERIES_JSONL --model MODEL] [--sample N]");
            };
            let candidates = flag("--candidates")
                .unwrap_or_else(|| "50,100,200,400,600,1000,2000".into())
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<usize>, _>>()
                .context("--candidates takes numbers separated by commas")?;
            runtime.block_on(async {
                let queries = match flag("--queries") {
                    Some(file) => Some((PathBuf::from(file), embedder_of_flags(&flag).await?)),
                    None => None,
                };
                codes::run(codes::CodesArgs {
                    data: PathBuf::from(data),
                    store: store.clone(),
                    queries,
                    sample: flag("--sample").map_or(Ok(200), |s| s.parse()).context("--sample")?,
                    candidates,
                })
                .await
            })
        }
        Some("scan") => {
            let slots: usize = flag("--slots").map_or(Ok(1_000_000), |s| s.parse()).context("--slots")?;
            let dims = flag("--dims").unwrap_or_else(|| "384,768".into());
            let dims: Vec<usize> = dims.split(',').map(str::parse).collect::<Result<_, _>>().context("--dims")?;
            scan::bench_scan(slots, &dims, runs)
        }
        Some("startup") => bench_startup(&dir, runs.max(21)),
        Some("formats") => bench_formats(runs.min(5)),
        Some("s3") => {
            let chunks: usize = flag("--chunks").map_or(Ok(20_000), |c| c.parse()).context("--chunks")?;
            let listed: usize = flag("--listed").map_or(Ok(100_000), |c| c.parse()).context("--listed")?;
            runtime.block_on(bench_s3(chunks, listed, runs))
        }
        _ => bail!(
            "usage: rag-bench query [--sizes 10000,100000,1000000] [--dims 768] | mcp [--sizes 10000,100000] | watch | embed --model DIR [--ollama-url URL] [--lengths 1,32,256] | index [--files 10000] [--mix mixed,notes,code] [--tree DIR] | \
             codes DATA_DIR STORE [--queries QUERIES_JSONL --model M] [--candidates 100,600] | scan [--slots 1000000] [--dims 384,768] | \
             startup | eval DATASET_DIR [--model M] [--ollama-url URL] [--modes vector,lexical,hybrid] \
             [--chunk-size N] [--no-heading-embed] [--limit N] [--json] | \
             code PACKAGE_DIR... [--model M] [--modes ...] [--queries 300] [--chunk-size N] [--fusion-study] [--misses N] [--json] | \
             s3 [--chunks 20000] [--listed 100000] | formats  [--runs N] [--dir DIR]"
        ),
    }
}

/// The embedder `--model` names (default `embeddinggemma` on Ollama): a
/// model folder or `hf:` name runs in this process, `openai:MODEL` on
/// `--embed-url` (or `OPENAI_BASE_URL`), `bedrock:MODEL_ID` on Bedrock, any
/// other name through Ollama (`--ollama-url`).
async fn embedder_of_flags(flag: &impl Fn(&str) -> Option<String>) -> Result<Arc<dyn Embedder>> {
    let model = flag("--model").unwrap_or_else(|| "embeddinggemma".into());
    if rag_embed_local::LocalEmbedder::is_local_model(&model) {
        return Ok(Arc::new(rag_embed_local::LocalEmbedder::load_named(&model)?));
    }
    if let Some(name) = rag_core::embed::ModelSpec::parse(&model, rag_embed_openai::PROVIDER)? {
        let mut openai = rag_embed_openai::OpenAiConfig::new(name.model).with_dimensions(name.dimensions);
        if let Some(url) = flag("--embed-url") {
            openai = openai.with_url(&url);
        }
        return Ok(Arc::new(rag_embed_openai::OpenAiEmbedder::connect(openai).await?));
    }
    if let Some(name) = rag_core::embed::ModelSpec::parse(&model, rag_embed_bedrock::PROVIDER)? {
        let bedrock = rag_embed_bedrock::BedrockConfig {
            dimensions: name.dimensions,
            ..rag_embed_bedrock::BedrockConfig::new(name.model)
        };
        return Ok(Arc::new(rag_embed_bedrock::BedrockEmbedder::connect(bedrock).await?));
    }
    let mut config = rag_embed_ollama::OllamaConfig::new(model);
    if let Some(url) = flag("--ollama-url") {
        config = config.with_url(&url);
    }
    Ok(Arc::new(rag_embed_ollama::OllamaEmbedder::connect(config).await?))
}

/// The modes `--modes` lists (default all three).
fn modes_of_flags(flag: &impl Fn(&str) -> Option<String>) -> Result<Vec<rag_core::search::SearchMode>> {
    let modes = flag("--modes").unwrap_or_else(|| "vector,lexical,hybrid".into());
    Ok(modes.split(',').map(str::parse).collect::<rag_core::Result<Vec<_>>>()?)
}

/// The `rag` binary built beside this one (the benchmarks run it as users do).
pub(crate) fn rag_binary() -> Result<PathBuf> {
    let rag = std::env::current_exe()?.with_file_name(format!("rag{}", std::env::consts::EXE_SUFFIX));
    if !rag.exists() {
        bail!("{} not found: build it with `cargo build --release -p rag-cli`", rag.display());
    }
    Ok(rag)
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

pub(crate) fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}
