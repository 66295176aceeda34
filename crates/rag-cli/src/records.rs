//! What the data folder remembers per store in small JSON files: where a
//! remote store lives (so `rag query "..." --store NAME` needs no repeated
//! flags) and what indexed a store (for `rag mcp`'s `index_status`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

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
    /// The records of `data_dir` (none when the file does not exist yet).
    pub fn load(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(T::FILE);
        let stores = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Self { path, stores })
    }

    /// What is known of `store`.
    pub fn get(&self, store: &str) -> Option<&T> {
        self.stores.get(store)
    }

    /// Every store's record, by name.
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

    /// Forgets a store (after it was deleted).
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
