//! [`LocalBackend`]: stores as folders of SQLite plus flat vector files,
//! and its [`VectorBackend`] implementation.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use rag_core::backend::{
    ChunkStamp, FileState, LexicalHit, LexicalRequest, QueryRequest, UnreadableFile, VectorBackend, VectorRecord,
    WriteBatch, WriteLock, file_state,
};
use rag_core::store::{Chunk, Hit, StoreConfig, StoreInfo, now_unix, validate_store_name};
use rag_core::{Error, Result};

use crate::cache::ReaderCache;
use crate::codes::Codes;
use crate::error::{LocalStoreError, io, sql};
use crate::files::{BACKEND, DB_FILE, FORMAT_VERSION, LOCK_FILE, create_private_dir, private_file};
use crate::fulltext::{LEXICAL_TABLE, LEXICAL_VERSION};
use crate::reader::Reader;
use crate::schema::{
    CHUNK_SELECT, SCHEMA, UNREADABLE_TABLE, count_unreadable, has_unreadable_table, open_db, read_config, read_setting,
    row_to_chunk, write_setting,
};
use crate::writer::Writer;

/// The embedded vector store: one folder per store under a data folder.
///
/// Cheap to create. Readers (the SQLite connection and the mapped vector
/// files) stay open between queries and are reopened when another connection
/// has committed since, so a long-lived value (an MCP server, a service)
/// pays for opening a store once, and always sees the latest writes. Writing
/// takes the store's lock (one writer per store across processes) until the
/// [`WriteLock`] of [`VectorBackend::lock_for_writing`] is dropped; direct
/// [`VectorBackend::put`] and [`VectorBackend::delete`] calls without one
/// keep it for the life of this value.
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    writers: Writers,
    readers: Arc<ReaderCache>,
    /// Whether stores are opened for reading on the calling thread
    /// ([`LocalBackend::opening_stores_in_place`]).
    open_in_place: bool,
}

/// The open writer of each store this value writes, shared with the guards
/// that close them.
type Writers = Arc<Mutex<HashMap<String, Arc<Mutex<Writer>>>>>;

/// Closes a store's writer when a [`WriteLock`] is dropped, releasing
/// `write.lock`. A write still in flight holds its own reference to the
/// writer; the lock goes with the last.
struct Release {
    writers: Writers,
    store: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let writer = self.writers.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.store);
        drop(writer);
    }
}

impl LocalBackend {
    /// A backend keeping its stores under `data_dir/stores`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            root: data_dir.into().join("stores"),
            writers: Writers::default(),
            readers: Arc::default(),
            open_in_place: false,
        }
    }

    /// This backend, opening a store for reading (its settings read, its
    /// files mapped: about a millisecond) on the thread that asks for its
    /// configuration ([`VectorBackend::store_config`]), inside the async
    /// call, rather than on a blocking thread. For a program that asks one
    /// question and exits (`rag query`): the first blocking thread of a
    /// process took 0.1 to 4 ms to start here (a new thread on an idle core
    /// of a virtual machine), longer than the open itself. A server should
    /// keep the default, as the open holds its executor's thread.
    ///
    /// ```
    /// use rag_backend_local::LocalBackend;
    /// let backend = LocalBackend::new("/tmp/rag-data").opening_stores_in_place();
    /// # let _ = backend;
    /// ```
    #[must_use]
    pub fn opening_stores_in_place(mut self) -> Self {
        self.open_in_place = true;
        self
    }

    /// The platform's data folder for vector-rag (`~/.local/share/vector-rag`
    /// on Linux, `~/Library/Application Support/vector-rag` on macOS).
    pub fn default_data_dir() -> Option<PathBuf> {
        dirs::data_dir().map(|d| d.join("vector-rag"))
    }

    /// The folder of a store (after checking its name).
    pub fn store_dir(&self, store: &str) -> Result<PathBuf> {
        validate_store_name(store)?;
        Ok(self.root.join(store))
    }

    /// Every record of a store with its vector as stored (unit length on
    /// cosine stores), sorted by key: for exports and tests.
    pub async fn records(&self, store: &str) -> Result<Vec<VectorRecord>> {
        let dir = self.existing_store_dir(store)?;
        blocking(move || {
            let reader = Reader::open(&dir)?;
            let conn = reader.conn();
            let mut stmt = conn
                .prepare(&format!("SELECT slot, {CHUNK_SELECT} FROM chunks ORDER BY key"))
                .map_err(sql(&reader.db_path))?;
            let rows = stmt
                .query_map([], |row| Ok((row.get::<_, i64>(0)?, row_to_chunk(row, 1)?)))
                .map_err(sql(&reader.db_path))?;
            let mut out = Vec::new();
            for row in rows {
                let (slot, (chunk, indexed_at)) = row.map_err(sql(&reader.db_path))?;
                let vector = reader.vector(slot as u64).unwrap_or_default();
                out.push(VectorRecord { chunk, vector, indexed_at });
            }
            Ok(out)
        })
        .await
    }

    fn existing_store_dir(&self, store: &str) -> Result<PathBuf> {
        let dir = self.store_dir(store)?;
        if dir.join(DB_FILE).is_file() {
            Ok(dir)
        } else {
            Err(Error::StoreNotFound { store: store.to_string(), backend: BACKEND.into() })
        }
    }

    fn writer(&self, store: &str) -> Result<Arc<Mutex<Writer>>> {
        let mut writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(writer) = writers.get(store) {
            return Ok(Arc::clone(writer));
        }
        let dir = self.existing_store_dir(store)?;
        let writer = Arc::new(Mutex::new(Writer::open(store, &dir)?));
        writers.insert(store.to_string(), Arc::clone(&writer));
        Ok(writer)
    }
}

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Backend {
        backend: BACKEND.into(),
        message: format!("worker stopped: {e}"),
        source: None,
    })?
}

pub(crate) fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir).map(|entries| entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

#[async_trait]
impl VectorBackend for LocalBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    /// Each write is one durable commit (an fsync of the WAL and of both
    /// vector files): batches of 1,024 chunks keep that cost small, and the
    /// indexer still writes finished files at least every 2 seconds.
    fn full_text_hint(&self) -> &'static str {
        "a local store builds it the next time it is indexed (nothing is re-embedded)"
    }

    fn write_batch_hint(&self) -> usize {
        4096
    }

    async fn create_store(&self, config: &StoreConfig) -> Result<()> {
        let dir = self.store_dir(&config.name)?;
        if config.dimension == 0 || config.dimension > 65_536 {
            return Err(Error::InvalidInput(format!("dimension {} is out of range 1-65536", config.dimension)));
        }
        let root = self.root.clone();
        let config = config.clone();
        blocking(move || {
            if dir.join(DB_FILE).exists() {
                return Err(Error::StoreExists { store: config.name.clone(), backend: BACKEND.into() });
            }
            create_private_dir(&root).map_err(io(&root))?;
            // Build in a scratch folder and rename, so a crash never leaves half
            // a store, and a failure nothing at all.
            let scratch = root.join(format!(".creating-{}-{}", config.name, std::process::id()));
            let _ = fs::remove_dir_all(&scratch);
            let built = build_store(&scratch, &config);
            if built.is_err() {
                let _ = fs::remove_dir_all(&scratch);
            }
            built?;
            match fs::rename(&scratch, &dir) {
                Ok(()) => Ok(()),
                Err(_) if dir.join(DB_FILE).exists() => {
                    let _ = fs::remove_dir_all(&scratch);
                    Err(Error::StoreExists { store: config.name.clone(), backend: BACKEND.into() })
                }
                Err(err) => Err(io(&dir)(err).into()),
            }
        })
        .await
    }

    async fn delete_store(&self, store: &str) -> Result<()> {
        let dir = self.existing_store_dir(store)?;
        self.writers.lock().unwrap_or_else(PoisonError::into_inner).remove(store);
        self.readers.forget(&dir);
        let store = store.to_string();
        blocking(move || {
            let lock_path = dir.join(LOCK_FILE);
            let lock =
                private_file().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
            if let Err(fs::TryLockError::WouldBlock) = lock.try_lock() {
                return Err(Error::StoreBusy { store });
            }
            // Rename first so a half-deleted store is never mistaken for a store.
            let trash = dir.with_file_name(format!(".deleting-{store}-{}", std::process::id()));
            fs::rename(&dir, &trash).map_err(io(&dir))?;
            fs::remove_dir_all(&trash).map_err(io(&trash))?;
            Ok(())
        })
        .await
    }

    async fn list_stores(&self) -> Result<Vec<String>> {
        let root = self.root.clone();
        blocking(move || {
            let entries = match fs::read_dir(&root) {
                Ok(entries) => entries,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(err) => return Err(io(&root)(err).into()),
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().join(DB_FILE).is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| validate_store_name(name).is_ok())
                .collect();
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn store_exists(&self, store: &str) -> Result<bool> {
        Ok(self.store_dir(store)?.join(DB_FILE).is_file())
    }

    /// Through the reader a query will use: a query that reads the settings
    /// first opens the store's database once.
    async fn store_config(&self, store: &str) -> Result<StoreConfig> {
        let dir = self.existing_store_dir(store)?;
        if self.open_in_place {
            return self.readers.with(&dir, |reader| Ok(reader.config.clone()));
        }
        let readers = self.readers.clone();
        blocking(move || readers.with(&dir, |reader| Ok(reader.config.clone()))).await
    }

    async fn update_store_config(&self, config: &StoreConfig) -> Result<()> {
        let dir = self.existing_store_dir(&config.name)?;
        let config = config.clone();
        blocking(move || {
            let (conn, db) = open_db(&dir)?;
            let current = read_config(&conn, &db, &dir)?;
            if current.dimension != config.dimension || current.metric != config.metric {
                return Err(Error::InvalidInput(format!(
                    "store {:?}: dimension and metric are fixed at creation",
                    config.name
                )));
            }
            let json = serde_json::to_string(&config)
                .map_err(|e| Error::InvalidInput(format!("cannot encode settings: {e}")))?;
            write_setting(&conn, &db, "config", &json)?;
            Ok(())
        })
        .await
    }

    async fn store_info(&self, store: &str) -> Result<StoreInfo> {
        let dir = self.existing_store_dir(store)?;
        blocking(move || {
            let (conn, db) = open_db(&dir)?;
            let config = read_config(&conn, &db, &dir)?;
            let (files, chunks): (i64, i64) = conn
                .query_row("SELECT COUNT(DISTINCT source_path), COUNT(*) FROM chunks", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(sql(&db))?;
            let time = |key| -> Result<Option<i64>> { Ok(read_setting(&conn, &db, key)?.and_then(|v| v.parse().ok())) };
            let details = vec![("path".to_string(), dir.display().to_string())];
            let mut info = StoreInfo::new(config, BACKEND);
            info.files = Some(files as u64);
            info.chunks = Some(chunks as u64);
            info.size_bytes = Some(dir_size(&dir));
            info.created_at = time("created_at")?;
            info.updated_at = time("updated_at")?;
            info.unreadable_files = Some(count_unreadable(&conn, &db)? as u64);
            info.details = details;
            Ok(info)
        })
        .await
    }

    /// Opens the store's writer, which takes `write.lock` (and repairs the
    /// vector files); the lock is released when the returned guard drops the
    /// writer, so another process (or another `LocalBackend`) may write then.
    async fn lock_for_writing(&self, store: &str) -> Result<WriteLock> {
        let store = store.to_string();
        let this_writer = self.writers.lock().unwrap_or_else(PoisonError::into_inner).get(&store).cloned();
        if this_writer.is_none() {
            let dir = self.existing_store_dir(&store)?;
            let name = store.clone();
            let writer = blocking(move || Writer::open(&name, &dir)).await?;
            self.writers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(store.clone())
                .or_insert_with(|| Arc::new(Mutex::new(writer)));
        }
        Ok(WriteLock::holding(Release { writers: Arc::clone(&self.writers), store }))
    }

    async fn file_states(&self, store: &str) -> Result<Vec<FileState>> {
        let dir = self.existing_store_dir(store)?;
        blocking(move || {
            let (conn, db) = open_db(&dir)?;
            let mut stmt = conn
                .prepare("SELECT source_path, key, content_hash, total_chunks FROM chunks ORDER BY source_path, key")
                .map_err(sql(&db))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
                })
                .map_err(sql(&db))?;
            // Rows come sorted by path: group them and apply rag-core's rule.
            let mut files: Vec<(String, Vec<(String, String, usize)>)> = Vec::new();
            for row in rows {
                let (path, key, hash, total) = row.map_err(sql(&db))?;
                let stamp = (key, hash, usize::try_from(total).unwrap_or(0));
                match files.last_mut() {
                    Some((last, stamps)) if *last == path => stamps.push(stamp),
                    _ => files.push((path, vec![stamp])),
                }
            }
            Ok(files
                .iter()
                .map(|(path, stamps)| {
                    file_state(
                        path,
                        stamps.iter().map(|(key, hash, total)| ChunkStamp {
                            key,
                            content_hash: hash,
                            total_chunks: *total,
                        }),
                    )
                })
                .collect())
        })
        .await
    }

    async fn write(&self, store: &str, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let writer = match self.writer(store) {
            Ok(writer) => writer,
            Err(err) => return Err(err),
        };
        blocking(move || writer.lock().unwrap_or_else(PoisonError::into_inner).write(batch)).await
    }

    async fn unreadable_files(&self, store: &str) -> Result<Vec<UnreadableFile>> {
        let dir = self.existing_store_dir(store)?;
        blocking(move || {
            let (conn, db) = open_db(&dir)?;
            if !has_unreadable_table(&conn, &db)? {
                return Ok(Vec::new());
            }
            let mut stmt = conn
                .prepare("SELECT path, content_hash, reason, reader FROM unreadable ORDER BY path")
                .map_err(sql(&db))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(UnreadableFile {
                        path: r.get(0)?,
                        content_hash: r.get(1)?,
                        reason: r.get(2)?,
                        reader: r.get(3)?,
                    })
                })
                .map_err(sql(&db))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql(&db))?)
        })
        .await
    }

    async fn remember_unreadable(
        &self,
        store: &str,
        unreadable: Vec<UnreadableFile>,
        forget: Vec<String>,
    ) -> Result<()> {
        let writer = self.writer(store)?;
        blocking(move || {
            Ok(writer.lock().unwrap_or_else(PoisonError::into_inner).remember_unreadable(&unreadable, &forget)?)
        })
        .await
    }

    async fn query(&self, store: &str, request: &QueryRequest) -> Result<Vec<Hit>> {
        let dir = self.existing_store_dir(store)?;
        let request = request.clone();
        let readers = self.readers.clone();
        blocking(move || readers.with(&dir, |reader| reader.query(&request))).await
    }

    async fn lexical_query(&self, store: &str, request: &LexicalRequest) -> Result<Option<Vec<LexicalHit>>> {
        let dir = self.existing_store_dir(store)?;
        let request = request.clone();
        let readers = self.readers.clone();
        blocking(move || readers.with(&dir, |reader| reader.lexical_query(&request))).await
    }

    async fn exact_scores(&self, store: &str, keys: &[String], vector: &[f32]) -> Result<Option<Vec<Option<f32>>>> {
        let dir = self.existing_store_dir(store)?;
        let (keys, vector) = (keys.to_vec(), vector.to_vec());
        let readers = self.readers.clone();
        blocking(move || readers.with(&dir, |reader| reader.exact_scores(&keys, &vector).map(Some))).await
    }

    async fn get_chunks(&self, store: &str, keys: &[String]) -> Result<Vec<Chunk>> {
        let dir = self.existing_store_dir(store)?;
        let keys = keys.to_vec();
        let readers = self.readers.clone();
        blocking(move || readers.with(&dir, |reader| reader.chunks_by_key(&keys))).await
    }
}

/// Writes a new store's database in `scratch`: the schema and its settings.
/// The folder and the database are the owner's only.
fn build_store(scratch: &Path, config: &StoreConfig) -> Result<()> {
    create_private_dir(scratch).map_err(io(scratch))?;
    // SQLite keeps the mode of a database file that exists, and gives its
    // journal the same.
    let db_file = scratch.join(DB_FILE);
    private_file().create_new(true).write(true).open(&db_file).map_err(io(&db_file))?;
    let (conn, db) = open_db(scratch)?;
    conn.execute_batch(SCHEMA).map_err(sql(&db))?;
    conn.execute(UNREADABLE_TABLE, []).map_err(sql(&db))?;
    conn.execute(LEXICAL_TABLE, []).map_err(sql(&db))?;
    let now = now_unix().to_string();
    let json = serde_json::to_string(config).map_err(|e| LocalStoreError::Corrupt {
        path: scratch.to_path_buf(),
        reason: format!("cannot encode settings: {e}"),
    })?;
    for (key, value) in [
        ("config", json.as_str()),
        ("format", FORMAT_VERSION),
        ("lexical_version", LEXICAL_VERSION),
        ("created_at", &now),
        ("updated_at", &now),
    ] {
        write_setting(&conn, &db, key, value)?;
    }
    for codes in Codes::ALL {
        write_setting(&conn, &db, codes.stamp(), &now)?;
    }
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE").map_err(sql(&db))?;
    Ok(())
}

#[cfg(test)]
mod tests;
