//! `rag-bench codes DATA_DIR STORE`: how well the local store's first
//! stages, the two-bit codes and the sign codes, find the exact nearest
//! neighbours, on the vectors a store really holds (random vectors flatter
//! or punish such codes unlike a real model's do). For several candidate
//! counts C it reports recall@10 and recall@100 of each code scan's best C
//! against exact search, and of the two together as a query of a large
//! store runs them (the sign codes' best `sign_candidates(C, slots)`, then
//! the best C of those by the two-bit codes), then the recall@10 and time
//! of the store's query as shipped.
//!
//! Queries are the texts of a BEIR `queries.jsonl` embedded with `--model`
//! (the store's own model), or, without `--queries`, stored vectors
//! themselves, each leaving itself out of the answer.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rag_backend_local::LocalBackend;
use rag_core::backend::{QueryRequest, VectorBackend};
use rag_core::embed::Embedder;
use rag_core::store::Metric;

use crate::median;

/// What `rag-bench codes` measures.
pub(crate) struct CodesArgs {
    /// The data folder holding `stores/STORE`.
    pub(crate) data: PathBuf,
    pub(crate) store: String,
    /// A BEIR `queries.jsonl` and the embedder for its texts.
    pub(crate) queries: Option<(PathBuf, Arc<dyn Embedder>)>,
    /// Stored vectors used as queries when no query file is given.
    pub(crate) sample: usize,
    /// Candidate counts to report.
    pub(crate) candidates: Vec<usize>,
}

pub(crate) async fn run(args: CodesArgs) -> Result<()> {
    let backend = LocalBackend::new(&args.data);
    let config = backend.store_config(&args.store).await?;
    let (dim, metric) = (config.dimension, config.metric);
    // A writer gives a store made before the codes existed its codes.
    drop(backend.lock_for_writing(&args.store).await?);
    let folder = args.data.join("stores").join(&args.store);
    let floats = read_floats(&folder.join("vectors.f32"))?;
    let bits = std::fs::read(folder.join("vectors.b2")).context("the store has no two-bit codes")?;
    let signs = std::fs::read(folder.join("vectors.s1")).context("the store has no sign codes")?;
    let slots = floats.len() / dim;
    let queries: Vec<(Vec<f32>, Option<u64>)> = match &args.queries {
        Some((file, embedder)) => {
            let texts = query_texts(file)?;
            let mut out = Vec::with_capacity(texts.len());
            for text in &texts {
                out.push((embedder.embed_query(text).await?, None));
            }
            out
        }
        None => {
            let step = (slots / args.sample.max(1)).max(1);
            (0..slots)
                .step_by(step)
                .take(args.sample)
                .map(|slot| (floats[slot * dim..(slot + 1) * dim].to_vec(), Some(slot as u64)))
                .filter(|(v, _)| !v[0].is_nan())
                .collect()
        }
    };
    if queries.is_empty() {
        bail!("no queries");
    }
    let widest = args.candidates.iter().copied().max().unwrap_or(1000);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut recall10 = vec![0usize; args.candidates.len()];
    let mut recall100 = vec![0usize; args.candidates.len()];
    let (mut signs10, mut signs100) = (vec![0usize; args.candidates.len()], vec![0usize; args.candidates.len()]);
    let mut staged10 = vec![0usize; args.candidates.len()];
    let (mut shipped_found, mut times) = (0usize, Vec::new());
    for (query, itself) in &queries {
        let query = unit(query, metric);
        let not_itself = |slot: &u64| Some(*slot) != *itself;
        let exact: Vec<u64> = rag_backend_local::top_k(&floats, dim, &query, metric, 101, threads, None)
            .iter()
            .map(|s| s.slot)
            .filter(not_itself)
            .take(100)
            .collect();
        let ranked: Vec<u64> = rag_backend_local::top_k_bits(&bits, dim, &query, metric, widest + 1, threads, None)
            .iter()
            .map(|s| s.slot)
            .filter(not_itself)
            .collect();
        let mut by_signs = rag_backend_local::top_k_signs(&signs, dim, &query, widest + 1, threads, None);
        by_signs.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.slot.cmp(&b.slot)));
        let by_signs: Vec<u64> = by_signs.iter().map(|s| s.slot).filter(not_itself).collect();
        for (i, &c) in args.candidates.iter().enumerate() {
            let taken: HashSet<u64> = ranked.iter().take(c).copied().collect();
            recall10[i] += exact.iter().take(10).filter(|s| taken.contains(s)).count();
            recall100[i] += exact.iter().filter(|s| taken.contains(s)).count();
            let taken: HashSet<u64> = by_signs.iter().take(c).copied().collect();
            signs10[i] += exact.iter().take(10).filter(|s| taken.contains(s)).count();
            signs100[i] += exact.iter().filter(|s| taken.contains(s)).count();
            // The two stages of a large store's query (its own query left out).
            let first = rag_backend_local::sign_candidates(c + 1, slots);
            let first = rag_backend_local::top_k_signs(&signs, dim, &query, first + 1, threads, None);
            let codes = rag_backend_local::BitCodes::InMemory(&bits);
            let staged = rag_backend_local::top_k_bits_among(codes, dim, &query, metric, &first, c + 1, threads);
            let mut staged: Vec<_> = staged.into_iter().filter(|s| not_itself(&s.slot)).collect();
            staged.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.slot.cmp(&b.slot)));
            let taken: HashSet<u64> = staged.iter().take(c).map(|s| s.slot).collect();
            staged10[i] += exact.iter().take(10).filter(|s| taken.contains(s)).count();
        }
        let started = Instant::now();
        let hits = backend.query(&args.store, &QueryRequest::new(query.clone(), 11)).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        let exact_scores: Vec<f32> = exact
            .iter()
            .take(10)
            .map(|&s| rag_core::backend::score(metric, &query, &floats[s as usize * dim..(s as usize + 1) * dim]))
            .collect();
        shipped_found += exact_scores.iter().filter(|e| hits.iter().any(|h| (h.score - **e).abs() < 1e-5)).count();
    }
    let n = queries.len();
    println!(
        "store {} ({slots} slots of {dim} dims, {metric}), {n} queries ({})",
        args.store,
        if args.queries.is_some() { "embedded query texts" } else { "stored vectors, leaving themselves out" }
    );
    println!("the best C by each code's estimates: recall@10 and recall@100 against exact search");
    println!(
        "{:>12} {:>12} {:>14} {:>14} {:>14} {:>14} {:>18}",
        "candidates", "share", "two-bit @10", "two-bit @100", "signs @10", "signs @100", "signs→two-bit @10"
    );
    let share = |found: usize, of: usize| found as f64 / (n * of) as f64;
    for (i, &c) in args.candidates.iter().enumerate() {
        println!(
            "{:>12} {:>11.3}% {:>14.4} {:>14.4} {:>14.4} {:>14.4} {:>18.4}",
            c,
            100.0 * c as f64 / slots.max(1) as f64,
            share(recall10[i], 10),
            share(recall100[i], 100),
            share(signs10[i], 10),
            share(signs100[i], 100),
            share(staged10[i], 10)
        );
    }
    println!(
        "store query as shipped: recall@10 {:.4}, median {:.2} ms (warm, in process)",
        shipped_found as f64 / (n * 10) as f64,
        median(times)
    );
    Ok(())
}

fn read_floats(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

fn unit(vector: &[f32], metric: Metric) -> Vec<f32> {
    match metric {
        Metric::Euclidean => vector.to_vec(),
        Metric::Cosine => {
            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
            vector.iter().map(|x| x / norm).collect()
        }
    }
}

/// The `text` of every line of a BEIR `queries.jsonl`.
fn query_texts(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)?;
            value["text"].as_str().map(str::to_string).context("a query without text")
        })
        .collect()
}
