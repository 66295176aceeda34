//! Searching stores: [`Querier`] for one store, [`search_stores`] for
//! several at once, the search modes (the vector arm, the lexical arm, and
//! both fused by reciprocal rank), and the hits they answer with.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::lexical::{Bm25, query_terms};
use crate::types::{Chunk, Hit, SimilarityLevel};

pub use crate::query::{MultiSearchResults, Querier, StoreTarget, check_search, search_stores};

/// How a query finds its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Both arms, fused by reciprocal rank (the default).
    #[default]
    Hybrid,
    /// Nearest vectors only.
    Vector,
    /// Full-text (BM25) only; needs a store with a full-text index.
    Lexical,
}

impl SearchMode {
    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Hybrid => "hybrid",
            SearchMode::Vector => "vector",
            SearchMode::Lexical => "lexical",
        }
    }
}

impl fmt::Display for SearchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SearchMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "hybrid" => Ok(SearchMode::Hybrid),
            "vector" => Ok(SearchMode::Vector),
            "lexical" => Ok(SearchMode::Lexical),
            other => Err(Error::InvalidInput(format!("unknown search mode {other:?}: use hybrid, vector or lexical"))),
        }
    }
}

/// The constant of reciprocal rank fusion: an item at rank `r` of an arm
/// adds `weight / (RRF_K + r)`. The original paper's 60 flattens the top of
/// each arm: the first and the tenth candidate differ by 13%. 10 lets a
/// candidate near the top of both arms lead (the first and the tenth differ
/// by 45%). Measured on the project's sets (`rag-bench code` and `rag-bench
/// eval --fusion-study`, docs/benchmarks.md): MRR@10 0.577 against 0.574 on
/// Python, 0.399 against 0.386 on Rust, Cranfield nDCG@10 0.4136 against
/// 0.4117; within 0.003 of the best rule tried on each, so one rule serves
/// code and prose.
pub const RRF_K: f32 = 10.0;

/// How a hybrid search fused its arms, as `--explain` and the JSON output
/// state it.
///
/// ```
/// use rag_core::search::Fusion;
/// let fusion = Fusion::with_lexical_weight(1.0);
/// assert!(fusion.to_string().starts_with("reciprocal-rank fusion"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Fusion {
    /// The rank constant ([`RRF_K`]).
    pub k: f32,
    /// Weight of the vector arm.
    pub vector_weight: f32,
    /// Weight of the lexical arm.
    pub lexical_weight: f32,
    /// How much more a defined name weighs than a word in BM25
    /// ([`crate::lexical::NAME_WEIGHT`]).
    pub name_weight: f32,
}

impl Fusion {
    /// The fusion of a hybrid search with this lexical weight.
    pub fn with_lexical_weight(lexical_weight: f32) -> Self {
        Self { k: RRF_K, vector_weight: 1.0, lexical_weight, name_weight: crate::lexical::NAME_WEIGHT }
    }
}

impl std::fmt::Display for Fusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reciprocal-rank fusion: a result scores {v}/({k} + vector rank) + {l}/({k} + lexical rank); \
             in BM25 a name the chunk defines weighs {n} words. One rule for code and prose: within 0.003 \
             of the best rule tried on each of the project's benchmarks (docs/benchmarks.md)",
            v = self.vector_weight,
            l = self.lexical_weight,
            k = self.k,
            n = self.name_weight
        )
    }
}

/// The most candidates an arm fetches (S3 Vectors' largest `topK`).
pub const MAX_CANDIDATES: usize = 10_000;

/// Settings of one search.
///
/// ```
/// use rag_core::search::{SearchMode, SearchOptions};
/// let options = SearchOptions::new(10).with_mode(SearchMode::Lexical).with_max_per_file(Some(2));
/// assert_eq!(options.top_k, 10);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SearchOptions {
    /// How many hits to return at most.
    pub top_k: usize,
    /// Which arms to use.
    pub mode: SearchMode,
    /// Only chunks passing this filter; every arm applies it before it cuts
    /// its candidates, never after.
    pub filter: Option<Filter>,
    /// Weight of the lexical arm in the fusion (the vector arm weighs 1).
    pub lexical_weight: f32,
    /// At most this many hits from one file.
    pub max_per_file: Option<usize>,
    /// Candidates each arm fetches before fusion; `None` picks
    /// `max(50, 2 k)` (`10 k` with `max_per_file`).
    pub candidates: Option<usize>,
}

impl SearchOptions {
    /// Hybrid search for `top_k` hits, equal weights, no filter.
    pub fn new(top_k: usize) -> Self {
        Self {
            top_k,
            mode: SearchMode::Hybrid,
            filter: None,
            lexical_weight: 1.0,
            max_per_file: None,
            candidates: None,
        }
    }

    /// The same options with another mode.
    pub fn with_mode(mut self, mode: SearchMode) -> Self {
        self.mode = mode;
        self
    }

    /// The same options with a filter.
    pub fn with_filter(mut self, filter: Option<Filter>) -> Self {
        self.filter = filter;
        self
    }

    /// The same options with another lexical weight.
    pub fn with_lexical_weight(mut self, weight: f32) -> Self {
        self.lexical_weight = weight;
        self
    }

    /// The same options with a per-file limit.
    pub fn with_max_per_file(mut self, limit: Option<usize>) -> Self {
        self.max_per_file = limit;
        self
    }

    /// The same options with a candidate depth per arm.
    pub fn with_candidates(mut self, candidates: Option<usize>) -> Self {
        self.candidates = candidates;
        self
    }

    /// Candidates each arm fetches, at most [`MAX_CANDIDATES`].
    pub fn depth(&self) -> usize {
        self.candidates
            .unwrap_or_else(|| {
                let base = self.top_k.saturating_mul(2).max(50);
                if self.max_per_file.is_some() { base.max(self.top_k.saturating_mul(10)) } else { base }
            })
            .min(MAX_CANDIDATES)
    }
}

/// A lexical (full-text) search request to a backend.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LexicalRequest {
    /// The query's terms, from [`query_terms`]; a
    /// chunk matches when it has any of them.
    pub terms: Vec<String>,
    /// How many hits to return at most, best BM25 first.
    pub top_k: usize,
    /// Only chunks passing this filter (applied before the cut).
    pub filter: Option<Filter>,
    /// When given, each hit's [`Hit::score`] is its exact similarity to this
    /// vector on the store's scale; otherwise it is NaN.
    pub vector: Option<Vec<f32>>,
}

impl LexicalRequest {
    /// A request for the `top_k` best chunks for `terms`.
    pub fn new(terms: Vec<String>, top_k: usize) -> Self {
        Self { terms, top_k, filter: None, vector: None }
    }

    /// The same request restricted to chunks passing `filter`.
    pub fn with_filter(mut self, filter: Option<Filter>) -> Self {
        self.filter = filter;
        self
    }

    /// The same request, scoring each hit against `vector` too.
    pub fn with_vector(mut self, vector: Option<Vec<f32>>) -> Self {
        self.vector = vector;
        self
    }
}

/// A hit of the lexical arm: the chunk and its BM25 score (higher is better).
#[derive(Debug, Clone, PartialEq)]
pub struct LexicalHit {
    /// The chunk; `score` is its vector similarity when the request had a vector.
    pub hit: Hit,
    /// BM25 score, positive, higher is better; comparable within one query only.
    pub bm25: f32,
}

/// A hit of a search: the store and chunk it names, its score, and what
/// each arm said of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SearchHit {
    /// The store it came from.
    #[serde(skip)]
    pub store: String,
    /// The chunk.
    #[serde(skip)]
    pub chunk: Chunk,
    /// Its exact vector similarity on the store's metric scale, in every
    /// mode, so similarity levels and score thresholds mean the same
    /// whatever the ranking.
    #[serde(skip)]
    pub score: f32,
    /// When the chunk was indexed, seconds since the Unix epoch.
    #[serde(skip)]
    pub indexed_at: i64,
    /// The reciprocal-rank fusion score (hybrid mode).
    pub fused_score: Option<f32>,
    /// Rank in the vector arm, from 1, if it was among its candidates.
    pub vector_rank: Option<usize>,
    /// Rank in the lexical arm, from 1, if it matched.
    pub lexical_rank: Option<usize>,
    /// BM25 score in the lexical arm, if it matched.
    pub lexical_score: Option<f32>,
}

impl SearchHit {
    /// A hit of `store` with nothing known of its ranks (a search fills them in).
    pub fn from_hit(store: impl Into<String>, hit: Hit) -> Self {
        let Hit { score, chunk, indexed_at } = hit;
        Self {
            store: store.into(),
            chunk,
            score,
            indexed_at,
            fused_score: None,
            vector_rank: None,
            lexical_rank: None,
            lexical_score: None,
        }
    }

    /// The similarity level of its score.
    pub fn level(&self) -> SimilarityLevel {
        SimilarityLevel::from_score(self.score)
    }
}

/// Where the lexical arm's scores came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LexicalSource {
    /// No lexical arm (vector mode, or a query with no words).
    None,
    /// The store's full-text index, over every chunk.
    FullText,
    /// BM25 over the vector arm's top `candidates` only: the backend has no
    /// text search (S3 Vectors), so a chunk outside them cannot be found lexically.
    Rerank {
        /// How many vector candidates were re-ranked.
        candidates: usize,
    },
}

/// The answer to a search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResults {
    /// Best first, at most `top_k`.
    pub hits: Vec<SearchHit>,
    /// The mode that ran.
    pub mode: SearchMode,
    /// How the lexical arm was computed.
    pub lexical: LexicalSource,
    /// Things the caller should know (a query with no words, an arm that was
    /// not available, ...).
    pub notes: Vec<String>,
}

/// Hits of the vector arm in rank order, as search hits.
pub(crate) fn vector_only(hits: Vec<Hit>) -> Vec<SearchHit> {
    hits.into_iter()
        .enumerate()
        .map(|(i, hit)| SearchHit { vector_rank: Some(i + 1), ..SearchHit::from_hit("", hit) })
        .collect()
}

/// Hits of the lexical arm in rank order, as search hits.
pub(crate) fn lexical_only(hits: Vec<LexicalHit>) -> Vec<SearchHit> {
    hits.into_iter()
        .enumerate()
        .map(|(i, l)| SearchHit {
            lexical_rank: Some(i + 1),
            lexical_score: Some(l.bm25),
            ..SearchHit::from_hit("", l.hit)
        })
        .collect()
}

/// Reciprocal rank fusion of the two arms: each hit scores
/// `1 / (RRF_K + vector rank) + lexical_weight / (RRF_K + lexical rank)`
/// over the arms it appears in. Ties go to the higher vector score.
pub fn fuse(vector: Vec<Hit>, lexical: Vec<LexicalHit>, lexical_weight: f32) -> Vec<SearchHit> {
    let mut fused: Vec<SearchHit> = Vec::with_capacity(vector.len() + lexical.len());
    let mut at: HashMap<String, usize> = HashMap::new();
    for (i, hit) in vector.into_iter().enumerate() {
        at.insert(hit.chunk.key.clone(), fused.len());
        fused.push(SearchHit {
            fused_score: Some(1.0 / (RRF_K + (i + 1) as f32)),
            vector_rank: Some(i + 1),
            ..SearchHit::from_hit("", hit)
        });
    }
    for (i, l) in lexical.into_iter().enumerate() {
        let add = lexical_weight / (RRF_K + (i + 1) as f32);
        match at.get(&l.hit.chunk.key) {
            Some(&j) => {
                let entry = &mut fused[j];
                entry.fused_score = Some(entry.fused_score.unwrap_or(0.0) + add);
                entry.lexical_rank = Some(i + 1);
                entry.lexical_score = Some(l.bm25);
            }
            None => {
                at.insert(l.hit.chunk.key.clone(), fused.len());
                fused.push(SearchHit {
                    fused_score: Some(add),
                    lexical_rank: Some(i + 1),
                    lexical_score: Some(l.bm25),
                    ..SearchHit::from_hit("", l.hit)
                });
            }
        }
    }
    fused.sort_by(|a, b| {
        b.fused_score
            .unwrap_or(0.0)
            .total_cmp(&a.fused_score.unwrap_or(0.0))
            .then_with(|| b.score.total_cmp(&a.score))
            .then_with(|| a.chunk.key.cmp(&b.chunk.key))
    });
    fused
}

/// BM25 among a set of vector candidates, for backends without text search:
/// the candidates that contain a query term, best first.
pub fn rerank_lexically(candidates: &[Hit], query: &str) -> Vec<LexicalHit> {
    let wanted = query_terms(query);
    if wanted.is_empty() || candidates.is_empty() {
        return Vec::new();
    }
    let scores = Bm25::for_chunks(candidates.iter().map(|h| &h.chunk)).scores(&wanted);
    let mut matched: Vec<LexicalHit> = candidates
        .iter()
        .zip(scores)
        .filter(|(_, s)| *s > 0.0)
        .map(|(hit, bm25)| LexicalHit { hit: hit.clone(), bm25 })
        .collect();
    matched.sort_by(|a, b| b.bm25.total_cmp(&a.bm25).then_with(|| a.hit.chunk.key.cmp(&b.hit.chunk.key)));
    matched
}

/// Keeps at most `limit` hits of any one file, in order.
pub fn limit_per_file(hits: Vec<SearchHit>, limit: Option<usize>) -> Vec<SearchHit> {
    let Some(limit) = limit else { return hits };
    let mut seen: HashMap<String, usize> = HashMap::new();
    hits.into_iter()
        .filter(|h| {
            let count = seen.entry(h.chunk.source_path.clone()).or_default();
            *count += 1;
            *count <= limit
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Chunk, chunk_key};

    fn hit(path: &str, index: usize, score: f32, text: &str) -> Hit {
        Hit {
            score,
            chunk: Chunk {
                key: chunk_key(path, index),
                source_path: path.into(),
                chunk_index: index,
                total_chunks: 1,
                line_start: 1,
                line_end: 1,
                byte_start: 0,
                byte_end: text.len(),
                text: text.into(),
                content_hash: "h".into(),
                language: "text".into(),
                metadata: Default::default(),
            },
            indexed_at: 0,
        }
    }

    #[test]
    fn fusion_adds_reciprocal_ranks_of_both_arms() {
        let vector = vec![hit("a", 0, 0.9, ""), hit("b", 0, 0.8, ""), hit("c", 0, 0.7, "")];
        let lexical = vec![
            LexicalHit { hit: hit("c", 0, 0.7, ""), bm25: 5.0 },
            LexicalHit { hit: hit("d", 0, 0.1, ""), bm25: 4.0 },
        ];
        let fused = fuse(vector, lexical, 1.0);
        let keys: Vec<&str> = fused.iter().map(|h| h.chunk.key.as_str()).collect();
        // With k = 10: c 1/13 + 1/11 beats a 1/11; b and d tie at 1/12,
        // and b has the higher cosine.
        assert_eq!(keys, ["c#0", "a#0", "b#0", "d#0"]);
        let c = &fused[0];
        assert!((c.fused_score.unwrap() - (1.0 / 13.0 + 1.0 / 11.0)).abs() < 1e-7);
        assert_eq!((c.vector_rank, c.lexical_rank, c.lexical_score), (Some(3), Some(1), Some(5.0)));
        let d = &fused[3];
        assert_eq!((d.vector_rank, d.lexical_rank), (None, Some(2)));
        assert!((d.score - 0.1).abs() < 1e-7, "a lexical-only hit keeps its cosine score");
    }

    #[test]
    fn the_lexical_weight_tilts_the_fusion() {
        let vector = vec![hit("a", 0, 0.9, ""), hit("b", 0, 0.8, "")];
        let lexical = vec![LexicalHit { hit: hit("b", 0, 0.8, ""), bm25: 1.0 }];
        let zero = fuse(vector.clone(), lexical.clone(), 0.0);
        assert_eq!(zero[0].chunk.key, "a#0");
        let heavy = fuse(vector, lexical, 3.0);
        assert_eq!(heavy[0].chunk.key, "b#0");
    }

    #[test]
    fn rerank_scores_only_candidates_with_a_query_term() {
        let candidates = vec![
            hit("a", 0, 0.9, "nothing relevant here"),
            hit("b", 0, 0.5, "the sourdough starter needs rye flour"),
            hit("c", 0, 0.4, "flour"),
        ];
        let ranked = rerank_lexically(&candidates, "sourdough rye flour");
        let keys: Vec<&str> = ranked.iter().map(|h| h.hit.chunk.key.as_str()).collect();
        assert_eq!(keys, ["b#0", "c#0"]);
        assert!(rerank_lexically(&candidates, "?!").is_empty());
    }

    #[test]
    fn per_file_limit_keeps_order() {
        let hits =
            vector_only(vec![hit("a", 0, 0.9, ""), hit("a", 1, 0.8, ""), hit("b", 0, 0.7, ""), hit("a", 2, 0.6, "")]);
        let kept = limit_per_file(hits, Some(1));
        let keys: Vec<&str> = kept.iter().map(|h| h.chunk.key.as_str()).collect();
        assert_eq!(keys, ["a#0", "b#0"]);
    }

    #[test]
    fn modes_parse_and_print() {
        for mode in [SearchMode::Hybrid, SearchMode::Vector, SearchMode::Lexical] {
            assert_eq!(mode.as_str().parse::<SearchMode>().unwrap(), mode);
        }
        assert!("fuzzy".parse::<SearchMode>().is_err());
    }
}
