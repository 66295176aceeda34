//! The query side: embed a question, fetch the nearest chunks.

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::VectorBackend;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::lexical::query_terms;
use crate::search::{
    LexicalHit, LexicalRequest, LexicalSource, SearchHit, SearchMode, SearchOptions, SearchResults, fuse, lexical_only,
    limit_per_file, rerank_lexically, vector_only,
};
use crate::store::Store;
use crate::types::check_model;
use crate::types::{Hit, QueryRequest, StoreConfig};

/// Vector candidates re-ranked lexically when a backend has no text search.
const RERANK_CANDIDATES: usize = 100;

/// Answers questions against a store.
pub struct Querier {
    embedder: Arc<dyn Embedder>,
    backend: Arc<dyn VectorBackend>,
}

impl Querier {
    /// A querier over an embedder and a backend.
    pub fn new(embedder: Arc<dyn Embedder>, backend: Arc<dyn VectorBackend>) -> Self {
        Self { embedder, backend }
    }

    /// The `top_k` chunks of `store` nearest to `text`, best first.
    ///
    /// Refuses with [`Error::ModelMismatch`] when the store was built with
    /// another model or dimension than the embedder's.
    pub async fn query(&self, store: &str, text: &str, top_k: usize) -> Result<Vec<Hit>> {
        self.query_filtered(store, text, top_k, None).await
    }

    /// Like [`query`](Self::query), among the chunks whose metadata passes `filter`.
    pub async fn query_filtered(
        &self,
        store: &str,
        text: &str,
        top_k: usize,
        filter: Option<Filter>,
    ) -> Result<Vec<Hit>> {
        let config = self.backend.store_config(store).await?;
        self.query_store(store, &config, text, top_k, filter).await
    }

    /// Like [`query_filtered`](Self::query_filtered), for a caller that has
    /// already read the store's settings (`config`), saving a second read.
    pub async fn query_store(
        &self,
        store: &str,
        config: &StoreConfig,
        text: &str,
        top_k: usize,
        filter: Option<Filter>,
    ) -> Result<Vec<Hit>> {
        check_search(text, &SearchOptions::new(top_k))?;
        let vector = self.embed_query(config, text).await?;
        self.backend.query(store, &QueryRequest::new(vector, top_k).with_filter(filter)).await
    }

    async fn embed_query(&self, config: &StoreConfig, text: &str) -> Result<Vec<f32>> {
        check_model(config, self.embedder.as_ref())?;
        let vector = self.embedder.embed_query(text).await?;
        if vector.len() != config.dimension {
            return Err(Error::DimensionMismatch {
                context: format!("query embedding from {:?}", self.embedder.model()),
                expected: config.dimension,
                actual: vector.len(),
            });
        }
        Ok(vector)
    }

    /// Searches `store` in the mode of `options` (hybrid by default): the
    /// vector arm, the lexical arm, or both fused by reciprocal rank.
    ///
    /// Every hit's [`Hit::score`] is its exact vector similarity, whatever
    /// the mode. A store without a full-text index (S3 Vectors, or a local
    /// store not written since the index came) gets hybrid search by
    /// re-ranking its top vector candidates lexically, and the results say
    /// so; lexical mode on it is an error.
    pub async fn search(&self, store: &str, text: &str, options: &SearchOptions) -> Result<SearchResults> {
        let config = self.backend.store_config(store).await?;
        self.search_store(store, &config, text, options).await
    }

    /// Like [`search`](Self::search), for a caller that has already read the
    /// store's settings.
    pub async fn search_store(
        &self,
        store: &str,
        config: &StoreConfig,
        text: &str,
        options: &SearchOptions,
    ) -> Result<SearchResults> {
        check_search(text, options)?;
        let terms = query_terms(text);
        // The full-text arm needs no vector: it runs while the query is
        // embedded and the vector arm searches.
        let vector_side = async {
            let vector = self.embed_query(config, text).await?;
            let candidates = self.vector_arm(store, &vector, !terms.is_empty(), options).await?;
            Ok::<_, Error>((vector, candidates))
        };
        let (full_text, vector_side) = tokio::join!(self.full_text_arm(store, &terms, options), vector_side);
        let (vector, candidates) = vector_side?;
        self.combine(store, text, &vector, candidates, full_text?, options).await
    }

    /// The full-text search of a hybrid or lexical search for the query's
    /// `terms`, its hits not yet scored against the query vector; `None`
    /// when the mode does not use it or the query has no words to search for.
    async fn full_text_arm(&self, store: &str, terms: &[String], options: &SearchOptions) -> Result<Option<FullText>> {
        if options.mode == SearchMode::Vector || terms.is_empty() {
            return Ok(None);
        }
        let request = LexicalRequest::new(terms.to_vec(), lexical_depth(options)).with_filter(options.filter.clone());
        let found = self.backend.lexical_query(store, &request).await?;
        Ok(Some(FullText { request, found }))
    }

    /// The nearest chunks to `vector` that the mode of `options` asks for;
    /// `None` in lexical mode. Hybrid search of a query with words to
    /// search for (`has_terms`) asks for enough that a backend without text
    /// search can re-rank the same candidates lexically: one vector query
    /// either way.
    async fn vector_arm(
        &self,
        store: &str,
        vector: &[f32],
        has_terms: bool,
        options: &SearchOptions,
    ) -> Result<Option<Vec<Hit>>> {
        let depth = lexical_depth(options);
        let k = match options.mode {
            SearchMode::Lexical => return Ok(None),
            SearchMode::Hybrid if has_terms => depth.max(RERANK_CANDIDATES),
            _ if options.max_per_file.is_some() => depth,
            _ => options.top_k,
        };
        let request = QueryRequest::new(vector.to_vec(), k).with_filter(options.filter.clone());
        Ok(Some(self.backend.query(store, &request).await?))
    }

    /// The answer of one store from its arms: the vector arm's `candidates`
    /// and the `full_text` arm's hits, scored against `vector` and fused
    /// as the mode asks.
    async fn combine(
        &self,
        store: &str,
        text: &str,
        vector: &[f32],
        candidates: Option<Vec<Hit>>,
        full_text: Option<FullText>,
        options: &SearchOptions,
    ) -> Result<SearchResults> {
        let mut notes = Vec::new();
        let candidates = candidates.unwrap_or_default();
        let (hits, lexical) = match (options.mode, full_text) {
            (SearchMode::Vector, _) => (vector_only(candidates), LexicalSource::None),
            (SearchMode::Lexical, None) => {
                notes.push("the query has no words to search for lexically".to_string());
                return Ok(SearchResults { hits: Vec::new(), mode: options.mode, lexical: LexicalSource::None, notes });
            }
            (SearchMode::Lexical, Some(FullText { request, found })) => {
                let Some(found) = found else { return Err(self.no_full_text(store)) };
                let found = self.score_full_text(store, &request, found, &[], vector).await?;
                (lexical_only(found), LexicalSource::FullText)
            }
            (SearchMode::Hybrid, None) => {
                notes.push("the query has no words to search for lexically; vector search only".to_string());
                (vector_only(candidates), LexicalSource::None)
            }
            (SearchMode::Hybrid, Some(FullText { request, found: Some(found) })) => {
                let found = self.score_full_text(store, &request, found, &candidates, vector).await?;
                (fuse(candidates, found, options.lexical_weight), LexicalSource::FullText)
            }
            (SearchMode::Hybrid, Some(FullText { found: None, .. })) => {
                let reranked = rerank_lexically(&candidates, text);
                let count = candidates.len();
                notes.push(format!(
                    "the {} backend has no text search: lexical scores rank the top {count} vector candidates only",
                    self.backend.name()
                ));
                (fuse(candidates, reranked, options.lexical_weight), LexicalSource::Rerank { candidates: count })
            }
        };
        let mut hits = limit_per_file(hits, options.max_per_file);
        hits.truncate(options.top_k);
        for hit in &mut hits {
            hit.store = store.to_string();
        }
        Ok(SearchResults { hits, mode: options.mode, lexical, notes })
    }

    /// `found`, the full-text hits, each with its exact similarity to
    /// `vector`: taken from the vector arm's `scored` hits where they hold
    /// the chunk, asked of the backend for the rest. Hits whose chunk the
    /// store no longer holds are left out. A backend that cannot score by
    /// key has the full-text arm's `request` run again with the vector.
    async fn score_full_text(
        &self,
        store: &str,
        request: &LexicalRequest,
        mut found: Vec<LexicalHit>,
        scored: &[Hit],
        vector: &[f32],
    ) -> Result<Vec<LexicalHit>> {
        let known: HashMap<&str, f32> = scored.iter().map(|h| (h.chunk.key.as_str(), h.score)).collect();
        let mut unknown = Vec::new();
        for (i, hit) in found.iter_mut().enumerate() {
            match known.get(hit.hit.chunk.key.as_str()) {
                Some(&score) => hit.hit.score = score,
                None => unknown.push(i),
            }
        }
        if unknown.is_empty() {
            return Ok(found);
        }
        let keys: Vec<String> = unknown.iter().map(|&i| found[i].hit.chunk.key.clone()).collect();
        let Some(scores) = self.backend.exact_scores(store, &keys, vector).await? else {
            let request = request.clone().with_vector(Some(vector.to_vec()));
            return Ok(self.backend.lexical_query(store, &request).await?.unwrap_or_default());
        };
        let mut gone = vec![false; found.len()];
        for (&i, score) in unknown.iter().zip(scores.into_iter().chain(std::iter::repeat(None))) {
            match score {
                Some(score) => found[i].hit.score = score,
                None => gone[i] = true,
            }
        }
        let mut gone = gone.into_iter();
        found.retain(|_| !gone.next().unwrap_or(false));
        Ok(found)
    }

    fn no_full_text(&self, store: &str) -> Error {
        Error::NoFullTextIndex {
            store: store.to_string(),
            backend: self.backend.name().to_string(),
            hint: self.backend.full_text_hint().to_string(),
        }
    }
}

/// The full-text arm's request (without a vector) and its answer: `None`
/// when the store has no full-text index.
struct FullText {
    request: LexicalRequest,
    found: Option<Vec<LexicalHit>>,
}

/// How many hits the full-text arm (and the vector arm of a hybrid search
/// or one limited per file) asks for.
fn lexical_depth(options: &SearchOptions) -> usize {
    options.depth().max(options.top_k.min(crate::search::MAX_CANDIDATES))
}

/// Refuses a search that cannot run: an empty query, no hits wanted, a
/// lexical weight that is not a number of 0 or more.
pub fn check_search(text: &str, options: &SearchOptions) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::EmptyQuery);
    }
    if options.top_k == 0 {
        return Err(Error::InvalidInput("top-k must be at least 1".into()));
    }
    if !options.lexical_weight.is_finite() || options.lexical_weight < 0.0 {
        return Err(Error::InvalidInput(format!(
            "the lexical weight must be a number of 0 or more, not {}",
            options.lexical_weight
        )));
    }
    Ok(())
}

/// One store of a [`search_stores`] call: the opened store and an embedder
/// of the model it was built with.
#[derive(Clone)]
pub struct StoreTarget {
    /// The store, opened once (its settings already read).
    pub store: Store,
    /// An embedder of the store's model; targets that share a model share
    /// one query embedding.
    pub embedder: Arc<dyn Embedder>,
}

impl StoreTarget {
    /// Searches `store` with `embedder`.
    pub fn new(store: Store, embedder: Arc<dyn Embedder>) -> Self {
        Self { store, embedder }
    }
}

impl std::fmt::Debug for StoreTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreTarget").field("store", &self.store).field("model", &self.embedder.model()).finish()
    }
}

/// The answer to a [`search_stores`] call.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiSearchResults {
    /// Best first over every store, at most `top_k`, each naming its store.
    pub hits: Vec<SearchHit>,
    /// Each store's own answer (its mode, lexical source and notes), hits
    /// moved to `hits`.
    pub stores: Vec<(String, SearchResults)>,
}

/// Searches several stores with one query and merges their hits on one
/// ranking. The query is embedded once per distinct model; each store is
/// searched with its own embedder's vector (stores of different models can
/// be searched together), concurrently.
///
/// Hits merge by their fused score in hybrid mode (reciprocal-rank scores,
/// comparable across stores), by their vector score otherwise; ties keep
/// store order. `max_per_file` applies per store.
pub async fn search_stores(targets: &[StoreTarget], text: &str, options: &SearchOptions) -> Result<MultiSearchResults> {
    check_search(text, options)?;
    if targets.is_empty() {
        return Err(Error::InvalidInput("no store to search".into()));
    }
    // One embedding per model, while every store's full-text arm runs.
    let embeddings = async {
        let mut vectors: Vec<(String, Vec<f32>)> = Vec::new();
        for target in targets {
            let config = target.store.config();
            check_model(config, target.embedder.as_ref())?;
            if !vectors.iter().any(|(model, _)| model == target.embedder.model()) {
                let querier = Querier::new(target.embedder.clone(), target.store.backend().clone());
                vectors.push((target.embedder.model().to_string(), querier.embed_query(config, text).await?));
            }
        }
        Ok::<_, Error>(vectors)
    };
    let terms = query_terms(text);
    let has_terms = !terms.is_empty();
    let full_texts = futures::future::try_join_all(targets.iter().map(|target| {
        let querier = Querier::new(target.embedder.clone(), target.store.backend().clone());
        let terms = &terms;
        async move { querier.full_text_arm(target.store.name(), terms, options).await }
    }));
    // Each store's vector arm, once its model's embedding is known.
    let vector_side = async {
        let vectors = embeddings.await?;
        futures::future::try_join_all(targets.iter().map(|target| {
            let vector = vectors.iter().find(|(model, _)| model == target.embedder.model()).map(|(_, v)| v.clone());
            let querier = Querier::new(target.embedder.clone(), target.store.backend().clone());
            async move {
                let vector = vector.unwrap_or_default();
                let candidates = querier.vector_arm(target.store.name(), &vector, has_terms, options).await?;
                Ok::<_, Error>((vector, candidates))
            }
        }))
        .await
    };
    let (full_texts, vector_side) = tokio::join!(full_texts, vector_side);
    let (vector_side, full_texts) = (vector_side?, full_texts?);
    let searches =
        targets.iter().zip(vector_side).zip(full_texts).map(|((target, (vector, candidates)), full_text)| async move {
            let querier = Querier::new(target.embedder.clone(), target.store.backend().clone());
            querier.combine(target.store.name(), text, &vector, candidates, full_text, options).await
        });
    let answers = futures::future::try_join_all(searches).await?;
    let mut hits: Vec<SearchHit> = Vec::new();
    let mut stores = Vec::new();
    for (target, mut answer) in targets.iter().zip(answers) {
        let name = target.store.name();
        hits.append(&mut answer.hits);
        stores.push((name.to_string(), answer));
    }
    // Each mode's own ranking: fused in hybrid, BM25 in lexical, similarity
    // in vector search (the sort is stable: one store keeps its order).
    let key = |h: &SearchHit| match options.mode {
        SearchMode::Lexical => h.lexical_score.unwrap_or(f32::NEG_INFINITY),
        _ => h.fused_score.unwrap_or(h.score),
    };
    hits.sort_by(|a, b| key(b).total_cmp(&key(a)));
    hits.truncate(options.top_k);
    Ok(MultiSearchResults { hits, stores })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexical::terms;
    use crate::memory::MemoryBackend;
    use crate::prelude::{DocText, Filter, SearchMode, SearchOptions, VectorBackend};
    use crate::search::LexicalSource;
    use crate::types::{Chunk, Metric, VectorRecord, chunk_key};
    use async_trait::async_trait;

    /// Embeds by hashing words into 32 buckets; with a signal, answers a
    /// query only once it is given (a full-text search has started).
    #[derive(Default)]
    struct Words(Option<Arc<tokio::sync::Notify>>);

    #[async_trait]
    impl Embedder for Words {
        fn model(&self) -> &str {
            "words"
        }
        fn dimension(&self) -> usize {
            32
        }
        async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
            Ok(docs.iter().map(|d| words(&d.text)).collect())
        }
        async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
            if let Some(signal) = &self.0 {
                tokio::time::timeout(std::time::Duration::from_secs(5), signal.notified())
                    .await
                    .map_err(|_| Error::InvalidInput("the full-text arm waited for the embedding".into()))?;
            }
            Ok(words(query))
        }
    }

    fn words(text: &str) -> Vec<f32> {
        let mut v = vec![0.0; 32];
        v[0] = 0.05;
        for t in terms(text) {
            v[t.bytes().fold(7usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize)) % 32] += 1.0;
        }
        v
    }

    async fn store(texts: &[(&str, &str)]) -> (Querier, Arc<MemoryBackend>) {
        let backend = Arc::new(MemoryBackend::new());
        backend.create_store(&StoreConfig::new("notes", "words", 32).with_chunking("c")).await.unwrap();
        let records = texts
            .iter()
            .map(|(path, text)| VectorRecord {
                chunk: Chunk {
                    key: chunk_key(path, 0),
                    source_path: path.to_string(),
                    chunk_index: 0,
                    total_chunks: 1,
                    line_start: 1,
                    line_end: 1,
                    byte_start: 0,
                    byte_end: text.len(),
                    text: text.to_string(),
                    content_hash: "h".into(),
                    language: "text".into(),
                    metadata: Default::default(),
                },
                vector: words(text),
                indexed_at: 0,
            })
            .collect();
        backend.put("notes", records).await.unwrap();
        (Querier::new(Arc::new(Words::default()), backend.clone()), backend)
    }

    /// `words` under another model name, counting its query embeddings.
    struct Named(&'static str, std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl Embedder for Named {
        fn model(&self) -> &str {
            self.0
        }
        fn dimension(&self) -> usize {
            32
        }
        async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
            Ok(docs.iter().map(|d| words(&d.text)).collect())
        }
        async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(words(query))
        }
    }

    #[tokio::test]
    async fn several_stores_of_different_models_answer_one_query_on_one_ranking() {
        let (_, notes) = store(&[("tea.md", "green tea brewing"), ("car.md", "tyre pressure")]).await;
        let (_, other) = store(&[("oolong.md", "oolong tea brewing"), ("bike.md", "chain oil")]).await;
        // The second store says it was built with another model.
        let mut config = other.store_config("notes").await.unwrap();
        config.model = "other".into();
        other.update_store_config(&config).await.unwrap();
        let words_model = Arc::new(Named("words", Default::default()));
        let other_model = Arc::new(Named("other", Default::default()));
        let (notes, other) = (Store::open(notes, "notes").await.unwrap(), Store::open(other, "notes").await.unwrap());
        let target = |store: &Store, embedder: &Arc<Named>| StoreTarget::new(store.clone(), embedder.clone());
        let targets = [target(&notes, &words_model), target(&other, &other_model), target(&notes, &words_model)];
        let found = search_stores(&targets, "tea brewing", &SearchOptions::new(4)).await.unwrap();
        let tea: Vec<&str> = found.hits.iter().take(2).map(|h| h.chunk.source_path.as_str()).collect();
        assert!(tea.contains(&"tea.md") && tea.contains(&"oolong.md"), "{:?}", found.hits);
        assert_eq!(found.stores.len(), 3);
        let count = |e: &Named| e.1.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!((count(&words_model), count(&other_model)), (1, 1), "one embedding per model");
        // A store searched with the wrong model is refused, naming both.
        let wrong = [target(&other, &words_model)];
        let err = search_stores(&wrong, "tea", &SearchOptions::new(3)).await.unwrap_err();
        assert!(matches!(err, Error::ModelMismatch { .. }), "{err}");
        let none = search_stores(&[], "tea", &SearchOptions::new(3)).await.unwrap_err();
        assert!(matches!(none, Error::InvalidInput(_)), "{none}");
    }

    #[tokio::test]
    async fn lexical_search_of_stores_ranks_by_bm25_not_by_similarity() {
        // "zeta" is rare and "alpha" common: BM25 puts rare.md first, while
        // its vector (many other words) is further from the query's.
        let mut texts = vec![
            ("rare.md", "zeta one two three four five six seven eight".to_string()),
            ("common.md", "alpha alpha".to_string()),
        ];
        texts.extend((0..5).map(|i| (["f0.md", "f1.md", "f2.md", "f3.md", "f4.md"][i], format!("alpha filler{i}"))));
        let refs: Vec<(&str, &str)> = texts.iter().map(|(p, t)| (*p, t.as_str())).collect();
        let (_, memory) = store(&refs).await;
        let target = StoreTarget::new(Store::open(memory, "notes").await.unwrap(), Arc::new(Words::default()));
        let options = SearchOptions::new(3).with_mode(SearchMode::Lexical);
        let found = search_stores(std::slice::from_ref(&target), "zeta alpha", &options).await.unwrap();
        let order: Vec<&str> = found.hits.iter().map(|h| h.chunk.source_path.as_str()).collect();
        assert_eq!(order[0], "rare.md", "{order:?}");
        assert!(found.hits[0].score < found.hits[1].score, "the vector arm would have ranked them the other way");
        let ranks: Vec<Option<usize>> = found.hits.iter().map(|h| h.lexical_rank).collect();
        assert_eq!(ranks, [Some(1), Some(2), Some(3)]);
    }

    #[tokio::test]
    async fn every_mode_scores_hits_by_their_vector_similarity() {
        let (querier, _) =
            store(&[("a.rs", "fn parse_config() reads the settings"), ("b.md", "settings are read at start")]).await;
        for mode in [SearchMode::Hybrid, SearchMode::Vector, SearchMode::Lexical] {
            let found = querier.search("notes", "parse_config", &SearchOptions::new(5).with_mode(mode)).await.unwrap();
            assert_eq!(found.hits[0].chunk.source_path, "a.rs", "{mode}");
            let exact = crate::backend::score(
                Metric::Cosine,
                &words("parse_config"),
                &words("fn parse_config() reads the settings"),
            );
            assert!((found.hits[0].score - exact).abs() < 1e-6, "{mode}: score is the cosine");
        }
        let hybrid = querier.search("notes", "parse_config", &SearchOptions::new(5)).await.unwrap();
        assert_eq!(hybrid.lexical, LexicalSource::FullText);
        assert!(hybrid.hits[0].fused_score.is_some() && hybrid.hits[0].lexical_rank == Some(1));
    }

    #[tokio::test]
    async fn queries_without_words_fall_back_or_say_so() {
        let (querier, _) = store(&[("a.md", "some text")]).await;
        let hybrid = querier.search("notes", "?!", &SearchOptions::new(3)).await.unwrap();
        assert_eq!(hybrid.hits.len(), 1, "vector search still answers");
        assert!(hybrid.notes[0].contains("no words"), "{:?}", hybrid.notes);
        let lexical =
            querier.search("notes", "?!", &SearchOptions::new(3).with_mode(SearchMode::Lexical)).await.unwrap();
        assert!(lexical.hits.is_empty() && !lexical.notes.is_empty());
        assert!(querier.search("notes", "  ", &SearchOptions::new(3)).await.is_err());
        let bad = SearchOptions::new(3).with_lexical_weight(f32::NAN);
        assert!(querier.search("notes", "text", &bad).await.is_err());
    }

    #[tokio::test]
    async fn filters_apply_in_both_arms_before_the_cut() {
        let mut texts: Vec<(String, String)> =
            (0..300).map(|i| (format!("notes/n{i}.md"), "flour flour flour".to_string())).collect();
        texts.push(("docs/far.md".into(), format!("flour {}", "filler ".repeat(200))));
        let refs: Vec<(&str, &str)> = texts.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        let (querier, _) = store(&refs).await;
        for mode in [SearchMode::Hybrid, SearchMode::Vector, SearchMode::Lexical] {
            let options = SearchOptions::new(3).with_mode(mode).with_filter(Some(Filter::folder("docs")));
            let found = querier.search("notes", "flour", &options).await.unwrap();
            let paths: Vec<&str> = found.hits.iter().map(|h| h.chunk.source_path.as_str()).collect();
            assert_eq!(paths, ["docs/far.md"], "{mode}");
        }
    }

    /// A backend without text search, as S3 Vectors is; or, made
    /// [`with_full_text`](Self::with_full_text), one that has it but cannot
    /// score chunks by key, whose full-text searches without a vector
    /// finish only once a vector arm has started. Counts its full-text
    /// searches and signals `started` at each.
    struct VectorOnly {
        inner: Arc<MemoryBackend>,
        full_text: bool,
        searches: std::sync::atomic::AtomicUsize,
        started: Arc<tokio::sync::Notify>,
        vector_arm_started: std::sync::atomic::AtomicBool,
        vector_arm: tokio::sync::Notify,
    }

    impl VectorOnly {
        fn new(inner: Arc<MemoryBackend>) -> Self {
            Self {
                inner,
                full_text: false,
                searches: Default::default(),
                started: Default::default(),
                vector_arm_started: Default::default(),
                vector_arm: Default::default(),
            }
        }

        fn with_full_text(self) -> Self {
            Self { full_text: true, ..self }
        }
    }

    #[tokio::test]
    async fn the_full_text_arm_runs_while_the_query_is_embedded_and_the_vector_arm_searches() {
        let texts = [("a.rs", "fn parse_config() reads the settings"), ("b.md", "settings are read at start")];
        let (_, memory) = store(&texts).await;
        let backend = Arc::new(VectorOnly::new(memory).with_full_text());
        let querier = Querier::new(Arc::new(Words(Some(backend.started.clone()))), backend.clone());
        // Hybrid first: its full-text arm waits for the vector arm to start.
        for mode in [SearchMode::Hybrid, SearchMode::Lexical] {
            let found = querier.search("notes", "settings", &SearchOptions::new(5).with_mode(mode)).await.unwrap();
            assert_eq!(found.lexical, LexicalSource::FullText, "{mode}");
            assert_eq!(found.hits.len(), 2, "{mode}");
            for hit in &found.hits {
                let exact = crate::backend::score(Metric::Cosine, &words("settings"), &words(&hit.chunk.text));
                assert!((hit.score - exact).abs() < 1e-6, "{mode}: {} scored {}", hit.chunk.source_path, hit.score);
            }
        }
        // Hybrid found both hits among its vector candidates; lexical had to
        // search again with the vector, this backend scoring nothing by key.
        assert_eq!(backend.searches.load(std::sync::atomic::Ordering::SeqCst), 3);
        // So do searches of several stores at once.
        let store = Store::open(backend.clone(), "notes").await.unwrap();
        let embedder = Arc::new(Words(Some(backend.started.clone())));
        let targets = [StoreTarget::new(store.clone(), embedder.clone()), StoreTarget::new(store, embedder)];
        let found = search_stores(&targets, "settings", &SearchOptions::new(5)).await.unwrap();
        assert_eq!(found.hits.len(), 4);
    }

    #[async_trait]
    impl VectorBackend for VectorOnly {
        fn name(&self) -> &'static str {
            if self.full_text { "full-text-without-scores" } else { "vector-only" }
        }
        async fn create_store(&self, c: &StoreConfig) -> Result<()> {
            self.inner.create_store(c).await
        }
        async fn delete_store(&self, s: &str) -> Result<()> {
            self.inner.delete_store(s).await
        }
        async fn list_stores(&self) -> Result<Vec<String>> {
            self.inner.list_stores().await
        }
        async fn store_exists(&self, s: &str) -> Result<bool> {
            self.inner.store_exists(s).await
        }
        async fn store_config(&self, s: &str) -> Result<StoreConfig> {
            self.inner.store_config(s).await
        }
        async fn update_store_config(&self, c: &StoreConfig) -> Result<()> {
            self.inner.update_store_config(c).await
        }
        async fn store_info(&self, s: &str) -> Result<crate::types::StoreInfo> {
            self.inner.store_info(s).await
        }
        async fn file_states(&self, s: &str) -> Result<Vec<crate::types::FileState>> {
            self.inner.file_states(s).await
        }
        async fn write(&self, s: &str, b: crate::types::WriteBatch) -> Result<()> {
            self.inner.write(s, b).await
        }
        async fn query(&self, s: &str, r: &QueryRequest) -> Result<Vec<Hit>> {
            self.vector_arm_started.store(true, std::sync::atomic::Ordering::SeqCst);
            self.vector_arm.notify_waiters();
            self.inner.query(s, r).await
        }
        async fn lexical_query(&self, s: &str, r: &LexicalRequest) -> Result<Option<Vec<crate::search::LexicalHit>>> {
            if !self.full_text {
                return Ok(None);
            }
            self.searches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.started.notify_one();
            let vector_arm = self.vector_arm.notified();
            if r.vector.is_none() && !self.vector_arm_started.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::timeout(std::time::Duration::from_secs(5), vector_arm)
                    .await
                    .map_err(|_| Error::InvalidInput("the vector arm waited for the full-text arm".into()))?;
            }
            self.inner.lexical_query(s, r).await
        }
    }

    #[tokio::test]
    async fn without_text_search_hybrid_reranks_vector_candidates_and_lexical_is_refused() {
        let (_, memory) = store(&[("a.md", "bakery sourdough starter"), ("b.md", "unrelated words here")]).await;
        let querier = Querier::new(Arc::new(Words::default()), Arc::new(VectorOnly::new(memory)));
        let found = querier.search("notes", "sourdough", &SearchOptions::new(2)).await.unwrap();
        assert_eq!(found.lexical, LexicalSource::Rerank { candidates: 2 });
        assert_eq!(found.hits[0].chunk.source_path, "a.md");
        assert_eq!(found.hits[0].lexical_rank, Some(1));
        assert!(found.notes[0].contains("no text search"), "{:?}", found.notes);
        let err = querier
            .search("notes", "sourdough", &SearchOptions::new(2).with_mode(SearchMode::Lexical))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no full-text index"), "{err}");
    }

    #[tokio::test]
    async fn max_per_file_draws_from_deeper_candidates() {
        let (querier, backend) = store(&[("a.md", "alpha beta"), ("b.md", "alpha gamma")]).await;
        let more: Vec<VectorRecord> = (1..5)
            .map(|i| {
                let mut r = VectorRecord {
                    chunk: Chunk { key: chunk_key("a.md", i), chunk_index: i, ..sample_chunk() },
                    vector: words("alpha beta"),
                    indexed_at: 0,
                };
                r.chunk.text = "alpha beta".into();
                r
            })
            .collect();
        backend.put("notes", more).await.unwrap();
        let options = SearchOptions::new(2).with_max_per_file(Some(1)).with_mode(SearchMode::Vector);
        let found = querier.search("notes", "alpha beta", &options).await.unwrap();
        let paths: Vec<&str> = found.hits.iter().map(|h| h.chunk.source_path.as_str()).collect();
        assert_eq!(paths, ["a.md", "b.md"]);
    }

    fn sample_chunk() -> Chunk {
        Chunk {
            key: String::new(),
            source_path: "a.md".into(),
            chunk_index: 0,
            total_chunks: 5,
            line_start: 1,
            line_end: 1,
            byte_start: 0,
            byte_end: 1,
            text: String::new(),
            content_hash: "h".into(),
            language: "text".into(),
            metadata: Default::default(),
        }
    }
}
