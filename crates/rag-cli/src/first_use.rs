//! An in-process model that loads when a query first needs it, so that a
//! search's full-text arm runs while the weights load.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rag_core::embed::{DocText, Embedder};
use rag_core::store::{StoreConfig, check_model};
use rag_core::{Error, Result, async_trait};
use tokio::sync::OnceCell;

/// The in-process embedder of a store's own model, loaded on its first
/// embedding. Until then it answers with the store's model and dimension;
/// a loaded model that is not the store's (its weights changed since the
/// store was written) is refused then as [`Error::ModelMismatch`], as a
/// model loaded up front would have been.
pub struct LoadedOnFirstUse {
    store: StoreConfig,
    loaded: OnceCell<Arc<dyn Embedder>>,
    load: Loader,
}

/// Loads a model by name.
type Loader = Box<dyn Fn(String) -> Loading + Send + Sync>;

/// A model being loaded.
type Loading = Pin<Box<dyn Future<Output = anyhow::Result<Arc<dyn Embedder>>> + Send>>;

impl LoadedOnFirstUse {
    /// The model `store` records, to be loaded by `load` when first used.
    pub fn new<F, Fut>(store: &StoreConfig, load: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<Arc<dyn Embedder>>> + Send + 'static,
    {
        Self { store: store.clone(), loaded: OnceCell::new(), load: Box::new(move |model| Box::pin(load(model))) }
    }

    async fn embedder(&self) -> Result<&Arc<dyn Embedder>> {
        self.loaded
            .get_or_try_init(|| async {
                let loaded = (self.load)(self.store.model.clone()).await.map_err(into_library_error)?;
                check_model(&self.store, loaded.as_ref())?;
                Ok(loaded)
            })
            .await
    }
}

/// The library error inside a load's error, or the whole chain as an
/// embedder error.
fn into_library_error(err: anyhow::Error) -> Error {
    match err.downcast::<Error>() {
        Ok(err) => err,
        Err(err) => Error::Embedder { message: format!("{err:#}"), source: None },
    }
}

#[async_trait]
impl Embedder for LoadedOnFirstUse {
    fn model(&self) -> &str {
        self.loaded.get().map_or(&self.store.model, |e| e.model())
    }

    fn dimension(&self) -> usize {
        self.loaded.get().map_or(self.store.dimension, |e| e.dimension())
    }

    fn max_batch_size(&self) -> usize {
        self.loaded.get().map_or(1, |e| e.max_batch_size())
    }

    fn max_concurrency(&self) -> usize {
        1
    }

    fn context_tokens(&self) -> Option<usize> {
        self.loaded.get().and_then(|e| e.context_tokens())
    }

    async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
        self.embedder().await?.embed_documents(docs).await
    }

    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        self.embedder().await?.embed_query(query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Four-dimensional vectors of text lengths, under `model`.
    struct Lengths(String);

    #[async_trait]
    impl Embedder for Lengths {
        fn model(&self) -> &str {
            &self.0
        }
        fn dimension(&self) -> usize {
            4
        }
        async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
            Ok(docs.iter().map(|d| vec![d.text.len() as f32, 1.0, 0.0, 0.0]).collect())
        }
        async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
            Ok(vec![query.len() as f32, 1.0, 0.0, 0.0])
        }
    }

    fn counting(loads: Arc<AtomicUsize>, loaded_as: &'static str) -> LoadedOnFirstUse {
        LoadedOnFirstUse::new(&StoreConfig::new("notes", "./model#abc", 4), move |_model| {
            loads.fetch_add(1, Ordering::SeqCst);
            async move { Ok(Arc::new(Lengths(loaded_as.into())) as Arc<dyn Embedder>) }
        })
    }

    #[tokio::test]
    async fn loads_once_on_the_first_embedding_and_answers_as_the_store_until_then() {
        let loads = Arc::new(AtomicUsize::new(0));
        let embedder = counting(loads.clone(), "./model#abc");
        assert_eq!((embedder.model(), embedder.dimension()), ("./model#abc", 4));
        assert_eq!(loads.load(Ordering::SeqCst), 0, "nothing loaded before a query");
        assert_eq!(embedder.embed_query("abc").await.unwrap(), [3.0, 1.0, 0.0, 0.0]);
        assert_eq!(embedder.embed_query("abcd").await.unwrap()[0], 4.0);
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_model_whose_weights_changed_is_refused_when_it_loads() {
        let embedder = counting(Arc::new(AtomicUsize::new(0)), "./model#def");
        let err = embedder.embed_query("abc").await.unwrap_err();
        assert!(matches!(&err, Error::ModelMismatch { model, .. } if model == "./model#def"), "{err}");
    }

    #[tokio::test]
    async fn a_load_that_fails_says_why_and_keeps_the_library_error() {
        let store = StoreConfig::new("notes", "./model#abc", 4);
        let missing = LoadedOnFirstUse::new(&store, |_model| async {
            Err(anyhow::Error::new(Error::InvalidInput("no config.json in ./model".into())))
        });
        assert!(matches!(missing.embed_query("abc").await, Err(Error::InvalidInput(_))));
        let other = LoadedOnFirstUse::new(&store, |_model| async { Err(anyhow::anyhow!("disk on fire")) });
        let err = other.embed_query("abc").await.unwrap_err();
        assert!(matches!(&err, Error::Embedder { message, .. } if message == "disk on fire"), "{err}");
    }
}
