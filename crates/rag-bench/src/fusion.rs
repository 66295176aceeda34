//! `--fusion-study`: the same two arms fused by several rules, so the rule
//! the querier uses is chosen by measurement, on prose and on code alike.

use std::collections::HashMap;

use anyhow::Result;
use rag_core::{
    backend::{LexicalHit, LexicalRequest, QueryRequest, VectorBackend},
    lexical::query_terms,
    store::{Chunk, Hit},
};

/// Both arms' candidates for one query.
pub struct Arms {
    /// Vector candidates, best first.
    pub vector: Vec<Hit>,
    /// Lexical candidates, best first, each with its exact vector score.
    pub lexical: Vec<LexicalHit>,
}

impl Arms {
    /// Fetches `depth` candidates from each arm of `store`.
    pub async fn fetch(
        backend: &dyn VectorBackend,
        store: &str,
        text: &str,
        vector: Vec<f32>,
        depth: usize,
    ) -> Result<Self> {
        let lexical = backend
            .lexical_query(store, &LexicalRequest::new(query_terms(text), depth).with_vector(Some(vector.clone())))
            .await?
            .unwrap_or_default();
        let vector = backend.query(store, &QueryRequest::new(vector, depth)).await?;
        Ok(Self { vector, lexical })
    }

    /// Every candidate chunk by key.
    pub fn chunks(&self) -> HashMap<&str, &Chunk> {
        let mut out: HashMap<&str, &Chunk> = self.vector.iter().map(|h| (h.chunk.key.as_str(), &h.chunk)).collect();
        out.extend(self.lexical.iter().map(|l| (l.hit.chunk.key.as_str(), &l.hit.chunk)));
        out
    }
}

/// A fusion rule under study.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// Reciprocal rank fusion with this k and lexical weight.
    Rrf { k: f32, lexical_weight: f32 },
    /// `alpha * cosine' + (1 - alpha) * bm25'`, each scaled to [0, 1] over
    /// the candidates by its min and max.
    Convex { alpha: f32 },
}

impl Rule {
    /// The rules the study compares.
    pub fn studied() -> Vec<Rule> {
        let mut rules = vec![
            Rule::Rrf { k: 60.0, lexical_weight: 1.0 },
            Rule::Rrf { k: 60.0, lexical_weight: 0.5 },
            Rule::Rrf { k: 60.0, lexical_weight: 2.0 },
            Rule::Rrf { k: 10.0, lexical_weight: 1.0 },
        ];
        rules.extend([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8].map(|alpha| Rule::Convex { alpha }));
        rules
    }

    /// A short name for tables.
    pub fn name(&self) -> String {
        match self {
            Rule::Rrf { k, lexical_weight } => format!("rrf k={k} w={lexical_weight}"),
            Rule::Convex { alpha } => format!("convex a={alpha}"),
        }
    }

    /// Keys of the fused candidates, best first.
    pub fn fuse<'a>(&self, arms: &'a Arms) -> Vec<&'a str> {
        let mut scores: HashMap<&str, f32> = HashMap::new();
        match *self {
            Rule::Rrf { k, lexical_weight } => {
                for (i, h) in arms.vector.iter().enumerate() {
                    *scores.entry(h.chunk.key.as_str()).or_default() += 1.0 / (k + (i + 1) as f32);
                }
                for (i, l) in arms.lexical.iter().enumerate() {
                    *scores.entry(l.hit.chunk.key.as_str()).or_default() += lexical_weight / (k + (i + 1) as f32);
                }
            }
            Rule::Convex { alpha } => {
                let mut cosine: HashMap<&str, f32> = HashMap::new();
                for h in &arms.vector {
                    cosine.insert(h.chunk.key.as_str(), h.score);
                }
                for l in &arms.lexical {
                    if l.hit.score.is_finite() {
                        cosine.insert(l.hit.chunk.key.as_str(), l.hit.score);
                    }
                }
                let (lo, hi) = min_max(cosine.values().copied());
                let (_, top_bm25) = min_max(arms.lexical.iter().map(|l| l.bm25));
                let bm25: HashMap<&str, f32> =
                    arms.lexical.iter().map(|l| (l.hit.chunk.key.as_str(), l.bm25)).collect();
                for (key, c) in cosine {
                    let v = if hi > lo { (c - lo) / (hi - lo) } else { 1.0 };
                    let b = bm25.get(key).map_or(0.0, |b| if top_bm25 > 0.0 { b / top_bm25 } else { 0.0 });
                    scores.insert(key, alpha * v + (1.0 - alpha) * b);
                }
            }
        }
        let mut ranked: Vec<(&str, f32)> = scores.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        ranked.into_iter().map(|(k, _)| k).collect()
    }
}

fn min_max(values: impl Iterator<Item = f32>) -> (f32, f32) {
    values.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}
