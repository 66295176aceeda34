//! What the data folder remembers per store in small JSON files: where a
//! remote store lives (so `rag query "..." --store NAME` needs no repeated
//! flags) and what indexed a store (for `rag mcp`'s `index_status`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rag_core::backend::{create_private_dir, private_file, replace_private_file};
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

impl<T: RecordFile + Serialize + for<'de> Deserialize<'de> + PartialEq + Clone> StoreRecords<T> {
    /// The records of `data_dir` (none when the file does not exist yet). A
    /// damaged file, or a damaged entry, is named in a warning and left out:
    /// it does not stop commands on the stores it does not describe.
    pub fn load(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(T::FILE);
        let stores = match read_records(&path)? {
            Records::Read(stores) => stores,
            Records::Damaged(reason) => {
                tracing::warn!("{}: {reason}; the stores it records are left out until it is fixed", path.display());
                BTreeMap::new()
            }
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

    /// Records (or replaces) what is known of a store.
    pub fn remember(&mut self, store: &str, record: T) -> Result<()> {
        if self.stores.get(store) == Some(&record) {
            return Ok(());
        }
        self.update(|stores| stores.insert(store.to_string(), record.clone()).as_ref() != Some(&record))
    }

    /// Forgets a store (after it was deleted).
    pub fn forget(&mut self, store: &str) -> Result<()> {
        if !self.stores.contains_key(store) {
            return Ok(());
        }
        self.update(|stores| stores.remove(store).is_some())
    }

    /// Changes the file under its lock: read afresh (so another process's
    /// change is kept), changed, and written whole to a temporary file of
    /// this process, synced and renamed over it. A damaged file is first
    /// moved aside (`.damaged-TIME`), not overwritten.
    fn update(&mut self, change: impl FnOnce(&mut BTreeMap<String, T>) -> bool) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let lock_path = self.path.with_extension("json.lock");
        let lock = private_file()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        lock.lock().with_context(|| format!("cannot lock {}", lock_path.display()))?;
        let mut stores = match read_records(&self.path)? {
            Records::Read(stores) => stores,
            Records::Damaged(reason) => {
                let aside = self.path.with_extension(format!("json.damaged-{}", rag_core::store::now_unix()));
                std::fs::rename(&self.path, &aside)
                    .with_context(|| format!("cannot move the damaged {} aside", self.path.display()))?;
                tracing::warn!("{}: {reason}; moved to {} and started anew", self.path.display(), aside.display());
                BTreeMap::new()
            }
        };
        if change(&mut stores) {
            replace_private_file(&self.path, serde_json::to_string_pretty(&stores)?.as_bytes())
                .with_context(|| format!("cannot write {}", self.path.display()))?;
        }
        self.stores = stores;
        Ok(())
    }
}

/// A record file as read: its entries (those that parse), or why the whole
/// file cannot be read.
enum Records<T> {
    Read(BTreeMap<String, T>),
    Damaged(String),
}

fn read_records<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Records<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Records::Read(BTreeMap::new())),
        Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
            return Ok(Records::Damaged("not UTF-8 text".into()));
        }
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    let entries: BTreeMap<String, serde_json::Value> = match serde_json::from_str(&text) {
        Ok(entries) => entries,
        Err(err) => return Ok(Records::Damaged(format!("not valid JSON ({err})"))),
    };
    let mut stores = BTreeMap::new();
    for (store, value) in entries {
        match serde_json::from_value(value) {
            Ok(record) => {
                stores.insert(store, record);
            }
            Err(err) => tracing::warn!("{}: the entry of store {store:?} is damaged ({err}); left out", path.display()),
        }
    }
    Ok(Records::Read(stores))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(bucket: &str) -> RemoteStore {
        RemoteStore {
            backend: "s3vectors".into(),
            bucket: bucket.into(),
            region: None,
            profile: None,
            endpoint_url: None,
        }
    }

    #[test]
    fn writers_at_once_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let data = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        RemoteStores::load(&data).unwrap().remember(&format!("s{t}-{i}"), remote("b")).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(RemoteStores::load(dir.path()).unwrap().all().len(), 160);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_damaged_file_or_entry_is_left_out_and_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RemoteStore::FILE);
        std::fs::write(&path, r#"{"good": {"backend": "s3vectors", "bucket": "b", "region": null, "profile": null, "endpoint_url": null}, "bad": 7}"#).unwrap();
        let records = RemoteStores::load(dir.path()).unwrap();
        assert_eq!(records.all().keys().collect::<Vec<_>>(), ["good"]);

        std::fs::write(&path, "{ not json").unwrap();
        let mut records = RemoteStores::load(dir.path()).unwrap();
        assert!(records.all().is_empty());
        records.remember("new", remote("b")).unwrap();
        assert_eq!(RemoteStores::load(dir.path()).unwrap().all().keys().collect::<Vec<_>>(), ["new"]);
        let aside: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".damaged-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read_to_string(dir.path().join(&aside[0])).unwrap(), "{ not json");
    }

    #[cfg(unix)]
    #[test]
    fn record_files_are_the_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        RemoteStores::load(&data).unwrap().remember("s", remote("b")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join(RemoteStore::FILE)), 0o600);
    }
}
