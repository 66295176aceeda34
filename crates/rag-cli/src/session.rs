//! The one place that turns arguments into what a command needs: opened
//! backends, store handles, embedders and filters, each made once per
//! process. Every command and the MCP server ask a [`Session`], so they
//! open stores the same way and say the same things when something is
//! missing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use rag_core::embed::Embedder;
use rag_core::filter::Filter;
use rag_core::search::StoreTarget;
use rag_core::store::Store;
use tokio::sync::Mutex;

use crate::backends::{self, Backend, Location};
use crate::cli::{BackendArgs, EmbedderArgs};
use crate::embedders;
use crate::records::RemoteStores;

/// What a run of `rag` has opened, shared by its commands (and by every
/// call of the MCP server).
pub struct Session {
    data_dir: PathBuf,
    backend_args: BackendArgs,
    embedder_args: EmbedderArgs,
    /// Opened backends by location: stores in one place share one backend
    /// (one reader cache, one AWS configuration).
    backends: Mutex<Vec<(Location, Backend)>>,
    /// Opened stores by name.
    stores: Mutex<HashMap<String, Store>>,
    /// One query embedder per model.
    embedders: Mutex<HashMap<String, Arc<dyn Embedder>>>,
    /// The only stores this session may open, when limited (`rag mcp --store`).
    only: Option<Vec<String>>,
    /// Whether local stores are opened on the calling thread
    /// ([`Session::for_one_question`]).
    open_in_place: bool,
}

impl Session {
    /// A session over the stores of `data_dir`, opening backends as
    /// `backend_args` say and embedders as `embedder_args` say.
    pub fn new(data_dir: PathBuf, backend_args: BackendArgs, embedder_args: EmbedderArgs) -> Self {
        Self {
            data_dir,
            embedder_args: embedder_args.with_aws_of(&backend_args),
            backend_args,
            backends: Mutex::default(),
            stores: Mutex::default(),
            embedders: Mutex::default(),
            only: None,
            open_in_place: false,
        }
    }

    /// The same session for a process that asks one question and exits
    /// (`rag query`): local stores are opened on the calling thread, where
    /// starting a blocking thread for it cost more than the open
    /// ([`rag_backend_local::LocalBackend::opening_stores_in_place`]).
    pub fn for_one_question(mut self) -> Self {
        self.open_in_place = true;
        self
    }

    /// The same session limited to `stores` (none: no limit): any other
    /// store is refused by name, and the store list holds only these.
    pub fn serving_only(mut self, stores: Vec<String>) -> Self {
        self.only = (!stores.is_empty()).then_some(stores);
        self
    }

    /// The data folder (local stores and the records of remote ones).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The backend `store` lives on (or, without a store, the one the flags
    /// name), opened on first use.
    pub async fn backend(&self, store: Option<&str>) -> Result<Backend> {
        let location = backends::locate(&self.data_dir, &self.backend_args, store)?;
        let mut opened = self.backends.lock().await;
        if let Some((_, backend)) = opened.iter().find(|(at, _)| *at == location) {
            return Ok(backend.clone());
        }
        let backend = backends::open(&self.data_dir, &location, self.open_in_place).await?;
        opened.push((location, backend.clone()));
        Ok(backend)
    }

    /// Every store that can be searched, sorted: those of the backend the
    /// flags name and, when that is the local one, the remote stores used
    /// from this machine.
    pub async fn all_stores(&self) -> Result<Vec<String>> {
        if let Some(only) = &self.only {
            let mut names = only.clone();
            names.sort();
            names.dedup();
            return Ok(names);
        }
        let backend = self.backend(None).await?;
        let mut names = backend.as_dyn().list_stores().await?;
        if backend.remote().is_none() {
            names.extend(RemoteStores::load(&self.data_dir)?.all().keys().cloned());
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The stores to search: `named` without repeats, or every store when
    /// none is named. Refuses when there is none at all.
    pub async fn stores_to_search(&self, named: &[String]) -> Result<Vec<String>> {
        let mut stores = if named.is_empty() { self.all_stores().await? } else { named.to_vec() };
        let mut seen = std::collections::HashSet::new();
        stores.retain(|s| seen.insert(s.clone()));
        if stores.is_empty() {
            bail!("there are no stores yet; create one with `rag index PATHS --store NAME`");
        }
        Ok(stores)
    }

    /// The store `name`, opened on first use (its name checked and its
    /// settings read once). A missing store is named with the stores there are.
    pub async fn store(&self, name: &str) -> Result<Store> {
        if let Some(only) = self.only.as_ref().filter(|only| !only.iter().any(|s| s == name)) {
            bail!("store {name:?} is not served here (this server serves {})", only.join(", "));
        }
        if let Some(store) = self.stores.lock().await.get(name) {
            return Ok(store.clone());
        }
        let backend = self.backend(Some(name)).await?.as_dyn();
        let store = match Store::open(backend.clone(), name).await {
            Ok(store) => store,
            Err(rag_core::Error::StoreNotFound { .. }) => {
                let known = backend.list_stores().await.unwrap_or_default();
                let known = if known.is_empty() {
                    "there are no stores yet".to_string()
                } else {
                    format!("stores: {}", known.join(", "))
                };
                bail!(
                    "store {name:?} not found on the {} backend ({known}); create it with `rag index PATHS --store {name}`",
                    backend.name()
                );
            }
            Err(err) => return Err(err.into()),
        };
        self.stores.lock().await.insert(name.to_string(), store.clone());
        Ok(store)
    }

    /// The model to embed with for `store`: `--model`, else the store's own.
    pub fn model_for(&self, store: &Store) -> String {
        self.embedder_args.model.clone().unwrap_or_else(|| store.config().model.clone())
    }

    /// The query embedder of `store`, connected (or loaded) on first use and
    /// kept, one per model. The store's own model is taken at the length the
    /// store records, asking its server nothing first; another `--model` is
    /// connected as for indexing (and refused by the search if it differs).
    pub async fn embedder(&self, store: &Store) -> Result<Arc<dyn Embedder>> {
        let model = self.model_for(store);
        let mut embedders = self.embedders.lock().await;
        if let Some(embedder) = embedders.get(&model) {
            return Ok(embedder.clone());
        }
        let embedder = if model == store.config().model {
            embedders::connect_for_queries(&self.embedder_args, store.config()).await?
        } else {
            embedders::connect(&self.embedder_args, model.clone(), 1, 1).await?
        };
        embedders.insert(model, embedder.clone());
        Ok(embedder)
    }

    /// Each store opened with an embedder of its model: what
    /// [`rag_core::search::search_stores`] searches.
    pub async fn targets(&self, stores: &[String]) -> Result<Vec<StoreTarget>> {
        let mut targets = Vec::with_capacity(stores.len());
        for name in stores {
            let store = self.store(name).await?;
            let embedder = self.embedder(&store).await?;
            targets.push(StoreTarget::new(store, embedder));
        }
        Ok(targets)
    }
}

/// A metadata filter, a folder and extensions combined into one filter
/// (`None` when none is given), as `rag query` and the MCP `search` tool
/// take them.
pub fn combine_filters(filter: Option<Filter>, folder: Option<&str>, extensions: &[String]) -> Option<Filter> {
    let mut parts = Vec::new();
    parts.extend(filter);
    if let Some(folder) = folder.filter(|f| !f.is_empty()) {
        parts.push(Filter::folder(folder));
    }
    if !extensions.is_empty() {
        parts.push(Filter::extensions(extensions));
    }
    parts.into_iter().reduce(Filter::and)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rag_backend_local::LocalBackend;
    use rag_core::backend::VectorBackend;
    use rag_core::store::StoreConfig;

    #[tokio::test]
    async fn a_limited_session_serves_only_its_stores_and_names_them() {
        let data = tempfile::tempdir().unwrap();
        let local = LocalBackend::new(data.path());
        for name in ["alpha", "bravo"] {
            local.create_store(&StoreConfig::new(name, "toy", 2)).await.unwrap();
        }
        let open = Session::new(data.path().into(), BackendArgs::default(), EmbedderArgs::default());
        assert_eq!(open.all_stores().await.unwrap(), ["alpha", "bravo"]);
        let limited = Session::new(data.path().into(), BackendArgs::default(), EmbedderArgs::default())
            .serving_only(vec!["alpha".into()]);
        assert_eq!(limited.all_stores().await.unwrap(), ["alpha"]);
        assert_eq!(limited.store("alpha").await.unwrap().config().model, "toy");
        let refused = limited.store("bravo").await.unwrap_err().to_string();
        assert_eq!(refused, "store \"bravo\" is not served here (this server serves alpha)");
        let missing = open.store("charlie").await.unwrap_err().to_string();
        assert!(missing.contains("not found on the local backend (stores: alpha, bravo)"), "{missing}");
    }

    #[test]
    fn filters_combine_into_one_and_none_is_none() {
        assert_eq!(combine_filters(None, None, &[]), None);
        assert_eq!(combine_filters(None, Some(""), &[]), None, "an empty folder is no filter");
        let folder = combine_filters(None, Some("docs"), &[]);
        assert_eq!(folder, Some(Filter::folder("docs")));
        let all = combine_filters(Filter::from_json(r#"{"language": "rust"}"#).ok(), Some("src"), &["rs".into()]);
        let expected = Filter::from_json(r#"{"language": "rust"}"#)
            .map(|f| f.and(Filter::folder("src")).and(Filter::extensions(&["rs".to_string()])))
            .ok();
        assert_eq!(all, expected);
    }
}
