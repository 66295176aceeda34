//! `rag-bench eval DATASET_DIR`: retrieval quality on a dataset in BEIR's
//! layout (`corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`), through the
//! real pipeline: every document is written as a markdown file (its title as
//! the heading), indexed by the [`Indexer`] into a local store, and every
//! query goes through the [`Querier`] in each mode. Chunk hits map to their
//! documents (best rank per document) and are scored the way BEIR and
//! pytrec_eval score them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use rag_backend_local::LocalBackend;
use rag_core::{
    backend::VectorBackend,
    embed::{DocText, Embedder},
    index::{IndexOptions, Indexer},
    search::{Querier, SearchMode, SearchOptions},
};
use rag_ingest::{DiscoverOptions, FileSource, TextChunker, discover};
use serde_json::Value;

/// Graded judgements: query id → document id → grade (> 0 is relevant).
pub type Qrels = HashMap<String, HashMap<String, u32>>;

/// A dataset in BEIR's layout.
pub struct Dataset {
    /// `(id, title, text)` of every document.
    pub corpus: Vec<(String, String, String)>,
    /// `(id, text)` of every query.
    pub queries: Vec<(String, String)>,
    /// The judgements of `qrels/test.tsv`.
    pub qrels: Qrels,
}

impl Dataset {
    /// Reads `corpus.jsonl`, `queries.jsonl` and `qrels/test.tsv` under `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let lines = |name: &str| -> Result<Vec<Value>> {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .enumerate()
                .map(|(i, l)| {
                    serde_json::from_str(l).with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))
                })
                .collect()
        };
        let field = |v: &Value, key: &str| match &v[key] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        let corpus =
            lines("corpus.jsonl")?.iter().map(|v| (field(v, "_id"), field(v, "title"), field(v, "text"))).collect();
        let queries = lines("queries.jsonl")?.iter().map(|v| (field(v, "_id"), field(v, "text"))).collect();
        let path = dir.join("qrels/test.tsv");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Self { corpus, queries, qrels: parse_qrels(&text)? })
    }
}

/// Parses BEIR's qrels TSV (a header line, then `query-id corpus-id score`).
pub fn parse_qrels(text: &str) -> Result<Qrels> {
    let mut qrels: Qrels = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        if i == 0 && fields.first().is_some_and(|f| f.eq_ignore_ascii_case("query-id")) {
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let [query, doc, score] = fields[..] else { bail!("qrels line {}: expected 3 tab-separated fields", i + 1) };
        let score: i64 = score.parse().with_context(|| format!("qrels line {}: score {score:?}", i + 1))?;
        qrels.entry(query.to_string()).or_default().insert(doc.to_string(), u32::try_from(score.max(0)).unwrap_or(0));
    }
    Ok(qrels)
}

/// Scores of one ranking against one query's judgements.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueryScores {
    /// nDCG@10, gain = grade, log2 discount, ideal ranking from the judgements.
    pub ndcg10: f64,
    /// Share of the relevant documents in the top 10.
    pub recall10: f64,
    /// Share of the relevant documents in the top 100.
    pub recall100: f64,
    /// 1 / rank of the first relevant document in the top 10, else 0.
    pub mrr10: f64,
}

/// Scores a ranking of document ids (best first, no repeats) against graded
/// judgements, as pytrec_eval does.
pub fn score_ranking(ranking: &[String], judged: &HashMap<String, u32>) -> QueryScores {
    let relevant: HashSet<&String> = judged.iter().filter(|(_, g)| **g > 0).map(|(d, _)| d).collect();
    if relevant.is_empty() {
        return QueryScores::default();
    }
    let dcg: f64 = ranking
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, doc)| f64::from(judged.get(doc).copied().unwrap_or(0)) / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<u32> = judged.values().copied().filter(|g| *g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(10).enumerate().map(|(i, g)| f64::from(*g) / ((i + 2) as f64).log2()).sum();
    let found = |k: usize| ranking.iter().take(k).filter(|d| relevant.contains(d)).count() as f64;
    let first = ranking.iter().take(10).position(|d| relevant.contains(d));
    QueryScores {
        ndcg10: if idcg > 0.0 { dcg / idcg } else { 0.0 },
        recall10: found(10) / relevant.len() as f64,
        recall100: found(100) / relevant.len() as f64,
        mrr10: first.map_or(0.0, |p| 1.0 / (p + 1) as f64),
    }
}

/// Document ids in order of their best chunk, each once.
pub fn documents_in_order<'a>(
    paths: impl IntoIterator<Item = &'a str>,
    doc_of: &HashMap<String, String>,
) -> Vec<String> {
    let mut seen = HashSet::new();
    paths.into_iter().filter_map(|path| doc_of.get(path)).filter(|doc| seen.insert(doc.as_str())).cloned().collect()
}

/// A file name for a document id: the id where it is safe, else its hex.
fn file_name(id: &str) -> String {
    let safe =
        !id.is_empty() && id.len() <= 100 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if safe {
        format!("{id}.md")
    } else {
        format!("x{}.md", id.bytes().map(|b| format!("{b:02x}")).collect::<String>())
    }
}

/// What the embedder makes of a few fixed texts, to 4 decimals, hashed: part
/// of the name of a reusable index, so vectors made by other embedder code
/// (a changed encoder, another server) are never reused. Changes below 1e-4
/// per component keep the index, and cannot move the figures it gives.
async fn embedder_output_fingerprint(embedder: &dyn Embedder) -> Result<String> {
    let probes = [
        DocText::new(Some("probe".into()), "Pressure distribution over a swept wing at supersonic speed."),
        DocText::new(None, "fn parse_config(path: &Path) -> Result<Config> { todo!() }"),
        DocText::new(None, "a"),
    ];
    let vectors = embedder.embed_documents(&probes).await.context("embedding the fingerprint's probe texts")?;
    // FNV-1a over the rounded components: stable across Rust versions and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for value in vectors.iter().flatten() {
        for byte in ((value * 1e4).round() as i64).to_le_bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(format!("{:08x}", hash >> 32))
}

/// Caches query embeddings, so each mode searches with the same vector and
/// the search times exclude the model.
struct CachedQueries {
    inner: Arc<dyn Embedder>,
    cache: std::sync::Mutex<HashMap<String, Vec<f32>>>,
}

#[async_trait]
impl Embedder for CachedQueries {
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }
    fn max_batch_size(&self) -> usize {
        self.inner.max_batch_size()
    }
    fn max_concurrency(&self) -> usize {
        self.inner.max_concurrency()
    }
    fn context_tokens(&self) -> Option<usize> {
        self.inner.context_tokens()
    }
    async fn embed_documents(&self, docs: &[DocText]) -> rag_core::Result<Vec<Vec<f32>>> {
        self.inner.embed_documents(docs).await
    }
    async fn embed_query(&self, query: &str) -> rag_core::Result<Vec<f32>> {
        if let Some(v) = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(query) {
            return Ok(v.clone());
        }
        let v = self.inner.embed_query(query).await?;
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(query.to_string(), v.clone());
        Ok(v)
    }
}

/// The store every benchmark corpus is indexed into.
pub(crate) const STORE: &str = "eval";

/// How a benchmark corpus is indexed: the embedder (query embeddings
/// cached), the chunk size and a name for the variant, so an index is reused
/// only by runs that would build the same one.
pub(crate) struct Setup {
    /// The embedder, query embeddings cached.
    pub embedder: Arc<dyn Embedder>,
    /// Chunk size in characters.
    pub chunk_size: usize,
    /// Embed each chunk with its heading path.
    pub embed_headings: bool,
    /// Model, embedder output, chunk size and heading choice, as a folder name.
    pub variant: String,
}

/// A corpus indexed by [`Setup::index`].
pub(crate) struct Indexed {
    /// The local backend holding [`STORE`].
    pub backend: Arc<dyn VectorBackend>,
    /// `reused`, or how long indexing took.
    pub time: String,
}

impl Setup {
    /// The setup for `embedder`; `chunk_size` `None` is `rag index`'s
    /// default, fitted to the model's window.
    pub async fn new(embedder: Arc<dyn Embedder>, chunk_size: Option<usize>, embed_headings: bool) -> Result<Self> {
        let model = embedder.model().replace(['/', ':'], "_");
        let mut size = chunk_size.unwrap_or(TextChunker::DEFAULT_SIZE);
        if let (None, Some(window)) = (chunk_size, embedder.context_tokens()) {
            size = size.min(rag_core::chunk::chunk_chars_for_window(window));
        }
        let output = embedder_output_fingerprint(embedder.as_ref()).await?;
        let variant = format!("{model}-e{output}-c{size}{}", if embed_headings { "" } else { "-noheadings" });
        let embedder = Arc::new(CachedQueries { inner: embedder, cache: Default::default() });
        Ok(Self { embedder, chunk_size: size, embed_headings, variant })
    }

    /// Indexes `root/corpus` into a local store under `root/data`, as
    /// `rag index` would; an unchanged corpus reuses the store.
    pub async fn index(&self, root: &Path) -> Result<Indexed> {
        let backend: Arc<dyn VectorBackend> = Arc::new(LocalBackend::new(root.join("data")));
        let overlap = (self.chunk_size / 8).min(200);
        let chunker = TextChunker::new(self.chunk_size, overlap)?;
        let files = discover(&["corpus".to_string()], &DiscoverOptions::new(root))?;
        let options = IndexOptions::new().with_embed_headings(self.embed_headings);
        let started = Instant::now();
        let report = Indexer::new(self.embedder.clone(), backend.clone(), Arc::new(chunker))
            .with_options(options)
            .index(STORE, Arc::new(FileSource::new(files)))
            .await?;
        let secs = started.elapsed().as_secs_f64();
        if !report.failed.is_empty() {
            bail!("{} files failed to index, e.g. {:?}", report.failed.len(), report.failed[0]);
        }
        let time = if report.chunks_embedded == 0 { "reused".to_string() } else { format!("{secs:.1} s") };
        Ok(Indexed { backend, time })
    }
}

/// Writes `text` to `path` unless it already holds it, so an unchanged
/// corpus keeps its files' times and its index.
pub(crate) fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// What `rag-bench eval` was asked to do.
pub struct EvalArgs {
    /// The dataset folder.
    pub dataset: PathBuf,
    /// Where the corpus files and the store are kept between runs.
    pub work: PathBuf,
    /// The embedder.
    pub embedder: Arc<dyn Embedder>,
    /// Modes to score.
    pub modes: Vec<SearchMode>,
    /// Embed each chunk with its heading path (the indexer's default).
    pub embed_headings: bool,
    /// Largest chunk in characters (before the model's window lowers it).
    /// Chunk size in characters; `None` is `rag index`'s default, fitted to the model's window.
    pub chunk_size: Option<usize>,
    /// Print JSON instead of a table.
    pub json: bool,
    /// Score only the first N judged queries.
    pub limit: Option<usize>,
    /// Also compare fusion rules on the same candidates.
    pub fusion_study: bool,
}

/// Runs the evaluation and prints the table (or JSON).
pub async fn run(args: EvalArgs) -> Result<()> {
    let data = Dataset::load(&args.dataset)?;
    let name = args.dataset.file_name().map_or_else(|| "dataset".into(), |n| n.to_string_lossy().into_owned());
    let setup = Setup::new(args.embedder.clone(), args.chunk_size, args.embed_headings).await?;
    let root = args.work.join(format!("{name}-{}", setup.variant));
    let corpus_dir = root.join("corpus");
    std::fs::create_dir_all(&corpus_dir)?;
    let mut doc_of: HashMap<String, String> = HashMap::new();
    for (id, title, text) in &data.corpus {
        let file = file_name(id);
        let body =
            if title.trim().is_empty() { format!("{text}\n") } else { format!("# {}\n\n{text}\n", title.trim()) };
        write_if_changed(&corpus_dir.join(&file), &body)?;
        doc_of.insert(format!("corpus/{file}"), id.clone());
    }
    eprintln!("indexing {} documents of {name} with {} ...", data.corpus.len(), args.embedder.model());
    let indexed = setup.index(&root).await?;
    let (embedder, backend, chunk_size) = (setup.embedder.clone(), indexed.backend.clone(), setup.chunk_size);
    let store = STORE;
    let info = backend.store_info(store).await?;
    let indexed = indexed.time;

    let mut queries: Vec<&(String, String)> =
        data.queries.iter().filter(|(id, _)| data.qrels.contains_key(id)).collect();
    if let Some(limit) = args.limit {
        queries.truncate(limit);
    }
    if queries.is_empty() {
        bail!("no query of queries.jsonl has judgements in qrels/test.tsv");
    }
    let querier = Querier::new(embedder.clone(), backend.clone());
    let config = backend.store_config(store).await?;
    // Embed every query once (timed), so each mode's time is the search alone.
    let mut embed_ms = Vec::with_capacity(queries.len());
    for (_, text) in &queries {
        let t = Instant::now();
        embedder.embed_query(text).await?;
        embed_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    if args.fusion_study {
        let rules = crate::fusion::Rule::studied();
        let mut totals = vec![0.0; rules.len()];
        for (id, text) in &queries {
            let vector = embedder.embed_query(text).await?;
            let arms = crate::fusion::Arms::fetch(backend.as_ref(), store, text, vector, 100).await?;
            let chunks = arms.chunks();
            for (rule, total) in rules.iter().zip(&mut totals) {
                let fused = rule.fuse(&arms);
                let ranking = documents_in_order(fused.iter().map(|k| chunks[k].source_path.as_str()), &doc_of);
                *total += score_ranking(&ranking, &data.qrels[id]).ndcg10;
            }
        }
        for (rule, total) in rules.iter().zip(totals) {
            println!("{name} {:<18} nDCG@10 {:.4}", rule.name(), total / queries.len() as f64);
        }
    }
    let mut rows = Vec::new();
    for &mode in &args.modes {
        let mut total = QueryScores::default();
        let mut times = Vec::with_capacity(queries.len());
        for (id, text) in &queries {
            let t = Instant::now();
            let found = querier.search_store(store, &config, text, &SearchOptions::new(100).with_mode(mode)).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            let ranking = documents_in_order(found.hits.iter().map(|h| h.chunk.source_path.as_str()), &doc_of);
            let s = score_ranking(&ranking, &data.qrels[id]);
            total.ndcg10 += s.ndcg10;
            total.recall10 += s.recall10;
            total.recall100 += s.recall100;
            total.mrr10 += s.mrr10;
        }
        let n = queries.len() as f64;
        rows.push((
            mode,
            QueryScores {
                ndcg10: total.ndcg10 / n,
                recall10: total.recall10 / n,
                recall100: total.recall100 / n,
                mrr10: total.mrr10 / n,
            },
            crate::median(times),
        ));
    }

    if args.json {
        let modes: Vec<Value> = rows
            .iter()
            .map(|(mode, s, ms)| {
                serde_json::json!({
                    "mode": mode.as_str(), "ndcg@10": s.ndcg10, "recall@10": s.recall10,
                    "recall@100": s.recall100, "mrr@10": s.mrr10, "median_query_ms": ms,
                })
            })
            .collect();
        let out = serde_json::json!({
            "dataset": name, "model": args.embedder.model(), "documents": data.corpus.len(),
            "queries": queries.len(), "chunks": info.chunks, "chunk_size": chunk_size,
            "embed_headings": args.embed_headings, "index_time": indexed,
            "median_query_embedding_ms": crate::median(embed_ms), "modes": modes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{name}: {} documents ({} chunks of at most {chunk_size} characters{}), {} judged queries, model {}",
        data.corpus.len(),
        info.chunks.unwrap_or(0),
        if args.embed_headings { "" } else { ", headings not embedded" },
        queries.len(),
        args.embedder.model()
    );
    println!("index: {indexed}; query embedding: {:.1} ms median", crate::median(embed_ms));
    println!(
        "{:<8} {:>8} {:>10} {:>11} {:>8} {:>16}",
        "mode", "nDCG@10", "Recall@10", "Recall@100", "MRR@10", "query ms (median)"
    );
    for (mode, s, ms) in rows {
        println!(
            "{:<8} {:>8.4} {:>10.4} {:>11.4} {:>8.4} {:>16.2}",
            mode.as_str(),
            s.ndcg10,
            s.recall10,
            s.recall100,
            s.mrr10,
            ms
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, u32)]) -> HashMap<String, u32> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn ranking(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_perfect_ranking_scores_one() {
        let j = judged(&[("a", 3), ("b", 1)]);
        let s = score_ranking(&ranking(&["a", "b", "x"]), &j);
        assert!((s.ndcg10 - 1.0).abs() < 1e-12);
        assert_eq!((s.recall10, s.recall100, s.mrr10), (1.0, 1.0, 1.0));
    }

    #[test]
    fn graded_ndcg_matches_a_hand_computation() {
        // Judged: a=3, b=2, c=1. Ranking: x, c, a.
        // DCG = 0/log2(2) + 1/log2(3) + 3/log2(4) = 0.630930 + 1.5 = 2.130930
        // IDCG = 3/1 + 2/log2(3) + 1/2 = 3 + 1.261860 + 0.5 = 4.761860
        let j = judged(&[("a", 3), ("b", 2), ("c", 1)]);
        let s = score_ranking(&ranking(&["x", "c", "a"]), &j);
        assert!((s.ndcg10 - 2.130_930 / 4.761_860).abs() < 1e-6, "{}", s.ndcg10);
        assert!((s.recall10 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.mrr10, 0.5);
    }

    #[test]
    fn ranks_past_ten_count_for_recall_at_100_only() {
        let j = judged(&[("r", 1)]);
        let mut ids: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
        ids[14] = "r".into();
        let s = score_ranking(&ids, &j);
        assert_eq!((s.ndcg10, s.recall10, s.mrr10, s.recall100), (0.0, 0.0, 0.0, 1.0));
        // No hits at all score 0; grade-0 judgements are not relevant.
        assert_eq!(score_ranking(&[], &j), QueryScores::default());
        assert_eq!(score_ranking(&ranking(&["z"]), &judged(&[("z", 0)])), QueryScores::default());
    }

    #[test]
    fn chunk_hits_map_to_documents_by_best_rank() {
        let doc_of: HashMap<String, String> =
            [("corpus/1.md", "1"), ("corpus/2.md", "2")].iter().map(|(p, d)| (p.to_string(), d.to_string())).collect();
        let order = documents_in_order(["corpus/2.md", "corpus/1.md", "corpus/2.md", "other"], &doc_of);
        assert_eq!(order, ["2", "1"]);
    }

    #[test]
    fn qrels_parse_with_or_without_a_header() {
        let q = parse_qrels("query-id\tcorpus-id\tscore\n1\t184\t3\n1\t29\t2\n2\t7\t1\n").unwrap();
        assert_eq!(q["1"]["184"], 3);
        assert_eq!(q["2"].len(), 1);
        assert!(parse_qrels("1\t2\n").is_err());
    }

    #[test]
    fn document_ids_become_safe_unique_file_names() {
        assert_eq!(file_name("184"), "184.md");
        assert_ne!(file_name("a/b"), file_name("a_b"));
        assert!(!file_name("../x").contains('/'));
    }
}
