//! The query side: embed a question, fetch the nearest chunks.

use std::sync::Arc;

use crate::backend::VectorBackend;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::index::check_model;
use crate::types::{Hit, QueryRequest, SimilarityLevel, StoreConfig};

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
        if text.trim().is_empty() {
            return Err(Error::InvalidInput("the query is empty".into()));
        }
        if top_k == 0 {
            return Err(Error::InvalidInput("top-k must be at least 1".into()));
        }
        check_model(config, self.embedder.as_ref())?;
        let vector = self.embedder.embed_query(text).await?;
        if vector.len() != config.dimension {
            return Err(Error::DimensionMismatch {
                context: format!("query embedding from {:?}", self.embedder.model()),
                expected: config.dimension,
                actual: vector.len(),
            });
        }
        self.backend.query(store, &QueryRequest::new(vector, top_k).with_filter(filter)).await
    }
}

impl Hit {
    /// The similarity level of this hit's score.
    pub fn level(&self) -> SimilarityLevel {
        SimilarityLevel::from_score(self.score)
    }
}
