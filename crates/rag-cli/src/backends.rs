//! Which backend a command talks to, and the S3 Vectors settings remembered
//! per store so `rag query "..." --store NAME` needs no repeated flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rag_backend_local::LocalBackend;
use rag_core::VectorBackend;
use serde::{Deserialize, Serialize};

use crate::cli::{BackendArgs, BackendKind};

/// Where a remote store lives, as remembered in `remote-stores.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteStore {
    /// Backend name (`s3vectors`).
    pub backend: String,
    /// Vector bucket.
    pub bucket: String,
    /// AWS region.
    pub region: Option<String>,
    /// AWS profile.
    pub profile: Option<String>,
    /// Endpoint override.
    pub endpoint_url: Option<String>,
}

/// What indexed a store, as remembered in `indexed-sources.json`: enough to
/// walk the same files again and tell what changed (`index_status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedSource {
    /// The folder paths were stored relative to.
    pub root: PathBuf,
    /// The paths, folders and globs given to `rag index`.
    pub patterns: Vec<String>,
    /// `--hidden`.
    pub hidden: bool,
    /// `--no-ignore`.
    pub no_ignore: bool,
}

/// The remembered remote stores of a data folder.
pub type RemoteStores = StoreRecords<RemoteStore>;

/// The remembered sources of the stores of a data folder.
pub type IndexedSources = StoreRecords<IndexedSource>;

/// A small JSON file of facts per store name in the data folder.
pub struct StoreRecords<T> {
    path: PathBuf,
    stores: BTreeMap<String, T>,
}

/// The file each kind of record lives in.
pub trait RecordFile {
    /// Its name in the data folder.
    const FILE: &'static str;
}

impl RecordFile for RemoteStore {
    const FILE: &'static str = "remote-stores.json";
}

impl RecordFile for IndexedSource {
    const FILE: &'static str = "indexed-sources.json";
}

impl<T: RecordFile + Serialize + for<'de> Deserialize<'de> + PartialEq> StoreRecords<T> {
    pub fn load(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(T::FILE);
        let stores = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Self { path, stores })
    }

    pub fn get(&self, store: &str) -> Option<&T> {
        self.stores.get(store)
    }

    pub fn all(&self) -> &BTreeMap<String, T> {
        &self.stores
    }

    /// Records (or replaces) what is known of a store; written atomically.
    pub fn remember(&mut self, store: &str, record: T) -> Result<()> {
        if self.stores.get(store) == Some(&record) {
            return Ok(());
        }
        self.stores.insert(store.to_string(), record);
        self.save()
    }

    pub fn forget(&mut self, store: &str) -> Result<()> {
        if self.stores.remove(store).is_some() {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let scratch = self.path.with_extension("json.tmp");
        std::fs::write(&scratch, serde_json::to_string_pretty(&self.stores)?)
            .with_context(|| format!("cannot write {}", scratch.display()))?;
        std::fs::rename(&scratch, &self.path).with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// An opened backend.
pub enum Backend {
    Local(Arc<LocalBackend>),
    #[cfg(feature = "s3vectors")]
    S3(Arc<rag_backend_s3vectors::S3VectorsBackend>, RemoteStore),
}

impl Backend {
    pub fn as_dyn(&self) -> Arc<dyn VectorBackend> {
        match self {
            Backend::Local(local) => local.clone(),
            #[cfg(feature = "s3vectors")]
            Backend::S3(s3, _) => s3.clone(),
        }
    }

    /// The remote settings to remember for a store, if remote.
    pub fn remote(&self) -> Option<&RemoteStore> {
        match self {
            Backend::Local(_) => None,
            #[cfg(feature = "s3vectors")]
            Backend::S3(_, remote) => Some(remote),
        }
    }
}

/// Opens the backend a command asks for: `--backend`, else S3 Vectors when
/// `--bucket` is given or the store is remembered as remote, else local.
pub async fn open(data_dir: &Path, args: &BackendArgs, store: Option<&str>) -> Result<Backend> {
    let remembered = match store {
        Some(store) => RemoteStores::load(data_dir)?.get(store).cloned(),
        None => None,
    };
    let kind = match args.backend {
        Some(kind) => kind,
        None if args.bucket.is_some() || remembered.is_some() => BackendKind::S3vectors,
        None => BackendKind::Local,
    };
    match kind {
        BackendKind::Local => Ok(Backend::Local(Arc::new(LocalBackend::new(data_dir)))),
        BackendKind::S3vectors => open_s3(data_dir, args, remembered).await,
    }
}

#[cfg(feature = "s3vectors")]
async fn open_s3(data_dir: &Path, args: &BackendArgs, remembered: Option<RemoteStore>) -> Result<Backend> {
    let pick =
        |flag: &Option<String>, saved: Option<&Option<String>>| flag.clone().or_else(|| saved.cloned().flatten());
    let remote = RemoteStore {
        backend: "s3vectors".into(),
        bucket: match (&args.bucket, &remembered) {
            (Some(bucket), _) => bucket.clone(),
            (None, Some(saved)) => saved.bucket.clone(),
            (None, None) => bail!("the s3vectors backend needs --bucket (or RAG_S3_BUCKET)"),
        },
        region: pick(&args.region, remembered.as_ref().map(|r| &r.region)),
        profile: pick(&args.profile, remembered.as_ref().map(|r| &r.profile)),
        endpoint_url: pick(&args.endpoint_url, remembered.as_ref().map(|r| &r.endpoint_url)),
    };
    let config = rag_backend_s3vectors::S3VectorsConfig {
        region: remote.region.clone(),
        profile: remote.profile.clone(),
        endpoint_url: remote.endpoint_url.clone(),
        local_state_dir: Some(data_dir.join("s3vectors")),
        ..rag_backend_s3vectors::S3VectorsConfig::new(remote.bucket.clone())
    };
    let backend = rag_backend_s3vectors::S3VectorsBackend::connect(config).await?;
    let remote = RemoteStore { region: Some(backend.region().to_string()), ..remote };
    Ok(Backend::S3(Arc::new(backend), remote))
}

#[cfg(not(feature = "s3vectors"))]
async fn open_s3(_data_dir: &Path, _args: &BackendArgs, _remembered: Option<RemoteStore>) -> Result<Backend> {
    bail!("this rag was built without S3 Vectors support (cargo feature `s3vectors`)")
}
