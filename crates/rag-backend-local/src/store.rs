//! [`LocalBackend`]: stores as folders of SQLite plus a flat vector file.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use memmap2::Mmap;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use rag_core::lexical::index_terms;
use rag_core::{
    Chunk, ChunkStamp, Error, FileState, Hit, LexicalHit, LexicalRequest, Metric, QueryRequest, Result, StoreConfig,
    StoreInfo, UnreadableFile, VectorBackend, VectorRecord, WriteBatch, file_state, now_unix, validate_store_name,
};

use crate::scan;

const BACKEND: &str = "local";
const DB_FILE: &str = "store.db";
const VECTORS_FILE: &str = "vectors.f32";
const COMPACT_FILE: &str = "vectors.i8";
const LOCK_FILE: &str = "write.lock";
const FORMAT_VERSION: &str = "1";

/// Errors of the local store's own machinery; they reach callers as
/// [`rag_core::Error::Backend`] with this as the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalStoreError {
    /// SQLite failed.
    #[error("database error in {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file of the store could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The store's files disagree with what this version expects.
    #[error("store at {} is damaged or from another version: {reason}", path.display())]
    Corrupt {
        /// The store folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl From<LocalStoreError> for Error {
    fn from(err: LocalStoreError) -> Self {
        let message = match &err {
            LocalStoreError::Sqlite { .. } => "database error",
            LocalStoreError::Io { .. } => "file error",
            LocalStoreError::Corrupt { .. } => "damaged store",
        };
        Error::backend(BACKEND, format!("{message}: {err}"), err)
    }
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> LocalStoreError + '_ {
    move |source| LocalStoreError::Sqlite { path: path.to_path_buf(), source }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> LocalStoreError + '_ {
    move |source| LocalStoreError::Io { path: path.to_path_buf(), source }
}

/// The embedded vector store: one folder per store under a data folder.
///
/// Cheap to create. Readers (the SQLite connection and the mapped vector
/// files) stay open between queries and are reopened when another connection
/// has committed since, so a long-lived value (an MCP server, a service)
/// pays for opening a store once, and always sees the latest writes. Writing takes the store's
/// lock (one writer per store across processes) until the indexer's run ends
/// ([`VectorBackend::end_indexing`]); direct [`VectorBackend::put`] and
/// [`VectorBackend::delete`] calls keep it for the life of this value.
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    writers: Mutex<HashMap<String, Arc<Mutex<Writer>>>>,
    readers: Arc<ReaderCache>,
}

/// Open readers by store folder.
#[derive(Debug, Default)]
struct ReaderCache(Mutex<HashMap<PathBuf, Arc<Mutex<OpenReader>>>>);

/// A reader with what tells whether it is still current.
#[derive(Debug)]
struct OpenReader {
    reader: Reader,
    /// `PRAGMA data_version` when opened: another connection's commit changes it.
    version: i64,
    /// The database file it opened, to notice a store deleted and made anew.
    identity: Option<(u64, u64)>,
}

/// The device and inode of a file, where the platform has them.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

fn data_version(conn: &Connection, db: &Path) -> Result<i64> {
    Ok(conn.query_row("PRAGMA data_version", [], |row| row.get(0)).map_err(sql(db))?)
}

impl ReaderCache {
    /// Runs `f` on an open reader of the store at `dir`, opening it or, when
    /// another connection committed since or the store was replaced, opening
    /// it again.
    fn with<T>(&self, dir: &Path, f: impl FnOnce(&Reader) -> Result<T>) -> Result<T> {
        let entry = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(dir).cloned();
        if let Some(entry) = entry {
            let mut open = entry.lock().unwrap_or_else(PoisonError::into_inner);
            let db = open.reader.db_path.clone();
            let current =
                data_version(&open.reader.conn, &db).ok() == Some(open.version) && file_identity(&db) == open.identity;
            if current {
                return f(&open.reader);
            }
            *open = Self::open(dir)?;
            return f(&open.reader);
        }
        let open = Self::open(dir)?;
        let entry = Arc::new(Mutex::new(open));
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(dir.to_path_buf(), entry.clone());
        let open = entry.lock().unwrap_or_else(PoisonError::into_inner);
        f(&open.reader)
    }

    fn open(dir: &Path) -> Result<OpenReader> {
        let reader = Reader::open(dir)?;
        let version = data_version(&reader.conn, &reader.db_path)?;
        let identity = file_identity(&reader.db_path);
        Ok(OpenReader { reader, version, identity })
    }

    fn forget(&self, dir: &Path) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(dir);
    }
}

impl LocalBackend {
    /// A backend keeping its stores under `data_dir/stores`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self { root: data_dir.into().join("stores"), writers: Mutex::new(HashMap::new()), readers: Arc::default() }
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
            let mut stmt = reader
                .conn
                .prepare(&format!("SELECT slot, {CHUNK_COLUMNS} FROM chunks ORDER BY key"))
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

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Backend {
        backend: BACKEND.into(),
        message: format!("worker stopped: {e}"),
        source: None,
    })?
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    slot INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    source_path TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    total_chunks INTEGER NOT NULL,
    line_start INTEGER NOT NULL,
    line_end INTEGER NOT NULL,
    byte_start INTEGER NOT NULL,
    byte_end INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    language TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    indexed_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks (source_path);
";

/// The table of files that could not be read: made with the store, and by
/// the next writer of a store made before it existed.
const UNREADABLE_TABLE: &str = "CREATE TABLE IF NOT EXISTS unreadable (
    path TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    reason TEXT NOT NULL,
    reader TEXT NOT NULL
)";

/// The full-text index: one row per chunk, its rowid the chunk's slot, its
/// text the chunk's lexical terms ([`index_terms`], computed in Rust so every
/// backend tokenizes alike). Contentless: the text lives in `chunks` only.
/// Written in the same transactions as the chunk rows, so it agrees with
/// them after any crash.
const LEXICAL_TABLE: &str = "CREATE VIRTUAL TABLE IF NOT EXISTS lexical USING fts5(\
    terms, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 0')";

/// At most about this many chunks are scored by one full-text query (see
/// `Reader::affordable_terms`).
const MAX_POSTINGS: i64 = if cfg!(test) { 50 } else { 20_000 };

/// Version of the terms in the full-text index; a store whose index was built
/// by another tokenizer gets it rebuilt by its next writer.
const LEXICAL_VERSION: &str = "3";

const CHUNK_COLUMNS: &str = "key, source_path, chunk_index, total_chunks, line_start, line_end, byte_start, \
                             byte_end, content_hash, language, text, metadata, indexed_at";

fn row_to_chunk(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<(Chunk, i64)> {
    let usize_at = |i: usize| row.get::<_, i64>(at + i).map(|v| usize::try_from(v).unwrap_or(0));
    let metadata: String = row.get(at + 11)?;
    Ok((
        Chunk {
            key: row.get(at)?,
            source_path: row.get(at + 1)?,
            chunk_index: usize_at(2)?,
            total_chunks: usize_at(3)?,
            line_start: usize_at(4)?,
            line_end: usize_at(5)?,
            byte_start: usize_at(6)?,
            byte_end: usize_at(7)?,
            content_hash: row.get(at + 8)?,
            language: row.get(at + 9)?,
            text: row.get(at + 10)?,
            metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        },
        row.get(at + 12)?,
    ))
}

fn open_db(dir: &Path) -> Result<(Connection, PathBuf), LocalStoreError> {
    let path = dir.join(DB_FILE);
    let conn = Connection::open(&path).map_err(sql(&path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(sql(&path))?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sql(&path))?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql(&path))?;
    Ok((conn, path))
}

fn read_setting(conn: &Connection, db: &Path, key: &str) -> Result<Option<String>, LocalStoreError> {
    conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(sql(db))
}

fn read_config(conn: &Connection, db: &Path, dir: &Path) -> Result<StoreConfig, LocalStoreError> {
    let corrupt = |reason: String| LocalStoreError::Corrupt { path: dir.to_path_buf(), reason };
    let text = read_setting(conn, db, "config")?.ok_or_else(|| corrupt("no settings recorded".into()))?;
    serde_json::from_str(&text).map_err(|e| corrupt(format!("unreadable settings: {e}")))
}

fn write_setting(conn: &Connection, db: &Path, key: &str, value: &str) -> Result<(), LocalStoreError> {
    conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)", params![key, value])
        .map(|_| ())
        .map_err(sql(db))
}

/// Whether the store has the table of unreadable files (stores made before
/// it existed get it from their next writer).
fn has_unreadable_table(conn: &Connection, db: &Path) -> Result<bool, LocalStoreError> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'unreadable')",
        [],
        |r| r.get(0),
    )
    .map_err(sql(db))
}

fn count_unreadable(conn: &Connection, db: &Path) -> Result<i64, LocalStoreError> {
    if !has_unreadable_table(conn, db)? {
        return Ok(0);
    }
    conn.query_row("SELECT COUNT(*) FROM unreadable", [], |r| r.get(0)).map_err(sql(db))
}

/// Whether the store has a full-text index built by this version's tokenizer.
fn has_current_lexical_index(conn: &Connection, db: &Path) -> Result<bool, LocalStoreError> {
    let exists: bool = conn
        .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lexical')", [], |r| {
            r.get(0)
        })
        .map_err(sql(db))?;
    Ok(exists && read_setting(conn, db, "lexical_version")?.as_deref() == Some(LEXICAL_VERSION))
}

/// Builds (or rebuilds) the full-text index from the chunk rows, in one
/// transaction: what an existing store gets on its next write, without
/// re-embedding anything.
fn build_lexical_index(conn: &mut Connection, db: &Path) -> Result<u64, LocalStoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql(db))?;
    tx.execute_batch("DROP TABLE IF EXISTS lexical").map_err(sql(db))?;
    tx.execute(LEXICAL_TABLE, []).map_err(sql(db))?;
    let mut count = 0;
    {
        let mut stmt = tx.prepare(&format!("SELECT slot, {CHUNK_COLUMNS} FROM chunks")).map_err(sql(db))?;
        let mut insert = tx.prepare("INSERT INTO lexical (rowid, terms) VALUES (?1, ?2)").map_err(sql(db))?;
        let mut rows = stmt.query([]).map_err(sql(db))?;
        while let Some(row) = rows.next().map_err(sql(db))? {
            let slot: i64 = row.get(0).map_err(sql(db))?;
            let (chunk, _) = row_to_chunk(row, 1).map_err(sql(db))?;
            insert.execute(params![slot, index_terms(&chunk)]).map_err(sql(db))?;
            count += 1;
        }
    }
    write_setting(&tx, db, "lexical_version", LEXICAL_VERSION)?;
    tx.commit().map_err(sql(db))?;
    Ok(count)
}

/// An FTS5 query matching any of `terms`, each quoted so no term can be read
/// as query syntax.
fn match_any(terms: &[String]) -> String {
    terms.iter().map(|t| format!("\"{}\"", t.replace('"', "\"\""))).collect::<Vec<_>>().join(" OR ")
}

/// What a query needs: the database and the mapped vectors.
struct Reader {
    conn: Connection,
    db_path: PathBuf,
    config: StoreConfig,
    map: Option<Mmap>,
    compact: Option<Mmap>,
    /// The exact vectors, for reading a few of them with `pread`.
    exact: Option<File>,
}

/// Maps a file read-only; `None` when it is missing or empty.
fn map_file(path: &Path) -> Result<Option<Mmap>, LocalStoreError> {
    match File::open(path) {
        Ok(file) if file.metadata().map_err(io(path))?.len() > 0 => {
            // SAFETY: a writer only grows these files or writes slots in place; it never
            // shrinks them (`Writer::repair` keeps trailing free slots rather than
            // truncating), so every page of this mapping stays backed by the file for the
            // mapping's life, and a deleted store's files are unlinked, not truncated. A
            // concurrent write changes values we read (a slot being reused), never the
            // mapping's validity, and rows are re-checked against SQLite afterwards.
            Ok(Some(unsafe { Mmap::map(&file) }.map_err(io(path))?))
        }
        Ok(_) => Ok(None),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io(path)(err)),
    }
}

impl Reader {
    fn open(dir: &Path) -> Result<Self, LocalStoreError> {
        let (conn, db_path) = open_db(dir)?;
        let config = read_config(&conn, &db_path, dir)?;
        let map = map_file(&dir.join(VECTORS_FILE))?;
        let compact = map_file(&dir.join(COMPACT_FILE))?;
        let exact = File::open(dir.join(VECTORS_FILE)).ok();
        Ok(Self { conn, db_path, config, map, compact, exact })
    }

    /// The exact vector of one slot, read with `pread` into `buffer`. A few
    /// vectors at random slots are read this way rather than through the
    /// mapping: a page fault there maps a whole large folio of the page
    /// cache (about 1 MiB each here), which cost 850 MB of RSS for the 864
    /// candidates of one query at 1M chunks.
    fn exact_vector<'b>(&self, slot: u64, buffer: &'b mut Vec<u8>) -> Option<&'b [f32]> {
        let dim = self.config.dimension;
        let file = self.exact.as_ref()?;
        buffer.resize(dim * 4 + 4, 0);
        let offset = slot.checked_mul(dim as u64 * 4)?;
        // Leave room to align the floats in the buffer.
        let pad = buffer.as_ptr().align_offset(std::mem::align_of::<f32>());
        let bytes = buffer.get_mut(pad..pad + dim * 4)?;
        read_at(file, bytes, offset).ok()?;
        // SAFETY: any bit pattern is a valid f32, and `pad` aligned the slice.
        let (head, floats, tail) = unsafe { bytes.align_to::<f32>() };
        (head.is_empty() && tail.is_empty() && cfg!(target_endian = "little")).then_some(floats)
    }

    /// The compact file when it covers every slot of the exact one.
    fn compact_bytes(&self) -> Option<&[u8]> {
        let stride = scan::compact_stride(self.config.dimension);
        let compact = self.compact.as_deref()?;
        let slots = compact.len() / stride;
        (slots * self.config.dimension >= self.floats().len()).then(|| &compact[..slots * stride])
    }

    fn floats(&self) -> &[f32] {
        let Some(map) = &self.map else { return &[] };
        let whole = map.len() / (self.config.dimension * 4) * self.config.dimension * 4;
        // SAFETY: any bit pattern is a valid f32; the map is page-aligned, so the
        // prefix is empty and the slice is exactly the whole vectors.
        let (prefix, floats, _) = unsafe { map[..whole].align_to::<f32>() };
        if prefix.is_empty() { floats } else { &[] }
    }

    fn vector(&self, slot: u64) -> Option<Vec<f32>> {
        let dim = self.config.dimension;
        let start = usize::try_from(slot).ok()?.checked_mul(dim)?;
        self.floats().get(start..start + dim).map(<[f32]>::to_vec)
    }

    /// A query vector checked against the store and prepared as its vectors are.
    fn prepare_query(&self, vector: &[f32]) -> Result<Vec<f32>> {
        if vector.len() != self.config.dimension {
            return Err(Error::DimensionMismatch {
                context: format!("query of store {:?}", self.config.name),
                expected: self.config.dimension,
                actual: vector.len(),
            });
        }
        prepare_vector(self.config.metric, vector)
            .map_err(|reason| Error::InvalidInput(format!("query vector {reason}")))
    }

    fn query(&self, request: &QueryRequest) -> Result<Vec<Hit>> {
        let dim = self.config.dimension;
        let query = self.prepare_query(&request.vector)?;
        let floats = self.floats();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let total_slots = floats.len() / dim.max(1);
        let metric = self.config.metric;
        let allowed = match &request.filter {
            Some(filter) => Some(self.slots_passing(filter, total_slots)?),
            None => None,
        };
        let allowed = allowed.as_deref();
        // Candidates come from the int8 copy (a quarter of the bytes to read) and
        // are re-scored exactly from the f32 vectors. Slots freed by a writer that
        // was killed before marking them are not in SQLite: ask for more than k
        // and widen if too many were stale.
        let mut want = request.top_k.saturating_mul(8).saturating_add(64);
        let mut rows = request.top_k.saturating_mul(2).saturating_add(16);
        loop {
            let best = match self.compact_bytes() {
                Some(compact) => {
                    let mut candidates = scan::top_k_compact(compact, dim, &query, metric, want, threads, allowed);
                    let mut buffer = Vec::new();
                    for candidate in &mut candidates {
                        candidate.score = self
                            .exact_vector(candidate.slot, &mut buffer)
                            .map_or(f32::NAN, |vector| scan::exact_score(&query, vector, metric));
                    }
                    candidates.retain(|c| !c.score.is_nan());
                    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.slot.cmp(&b.slot)));
                    candidates
                }
                None => scan::top_k(floats, dim, &query, metric, want, threads, allowed),
            };
            let exhausted = best.len() < want || want >= total_slots;
            // Rows are read for the best few only: enough for k unless many slots were stale.
            let take = best.len().min(rows);
            let hits = self.rows_for(&best[..take])?;
            if hits.len() >= request.top_k || (exhausted && take == best.len()) {
                return Ok(hits.into_iter().take(request.top_k).collect());
            }
            want = want.saturating_mul(4);
            rows = want;
        }
    }

    /// Which slots hold a chunk whose metadata passes `filter`. A filter on
    /// files only (`--path`, `--ext`, language) is decided once per file from
    /// the path index and costs what it matches; any other reads the
    /// filterable columns of every row (never the text or metadata).
    fn slots_passing(&self, filter: &rag_core::Filter, total_slots: usize) -> Result<Vec<bool>> {
        let db = &self.db_path;
        let mut allowed = vec![false; total_slots];
        let mut set = |slot: i64| {
            if let Some(flag) = usize::try_from(slot).ok().and_then(|s| allowed.get_mut(s)) {
                *flag = true;
            }
        };
        if filter.is_per_file() {
            // Under a required folder, only the paths in its range of the index.
            let (low, high) = match filter.required_folder() {
                Some(folder) => (format!("{folder}/"), format!("{folder}0")),
                None => (String::new(), String::from("\u{10FFFF}")),
            };
            let mut paths = self
                .conn
                .prepare_cached("SELECT DISTINCT source_path FROM chunks WHERE source_path >= ?1 AND source_path < ?2")
                .map_err(sql(db))?;
            let mut language = self
                .conn
                .prepare_cached("SELECT language FROM chunks WHERE source_path = ?1 LIMIT 1")
                .map_err(sql(db))?;
            let mut slots =
                self.conn.prepare_cached("SELECT slot FROM chunks WHERE source_path = ?1").map_err(sql(db))?;
            let needs_language = filter.mentions("language");
            let paths: Vec<String> = paths
                .query_map([&low, &high], |r| r.get(0))
                .map_err(sql(db))?
                .collect::<rusqlite::Result<_>>()
                .map_err(sql(db))?;
            for path in paths {
                let lang: String = if needs_language {
                    language.query_row([&path], |r| r.get(0)).map_err(sql(db))?
                } else {
                    String::new()
                };
                if filter.matches(&rag_core::file_filter_metadata(&path, &lang)) {
                    for slot in slots.query_map([&path], |r| r.get::<_, i64>(0)).map_err(sql(db))? {
                        set(slot.map_err(sql(db))?);
                    }
                }
            }
            return Ok(allowed);
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT slot, source_path, language, chunk_index, total_chunks, line_start, line_end, indexed_at \
                 FROM chunks",
            )
            .map_err(sql(db))?;
        let mut rows = stmt.query([]).map_err(sql(db))?;
        let mut file: Option<(String, String, serde_json::Map<String, serde_json::Value>)> = None;
        while let Some(row) = rows.next().map_err(sql(db))? {
            let (path, lang): (String, String) = (row.get(1).map_err(sql(db))?, row.get(2).map_err(sql(db))?);
            if file.as_ref().is_none_or(|(p, l, _)| *p != path || *l != lang) {
                let meta = rag_core::file_filter_metadata(&path, &lang);
                file = Some((path, lang, meta));
            }
            let Some((_, _, meta)) = file.as_mut() else { continue };
            for (i, key) in ["chunk_index", "total_chunks", "line_start", "line_end", "indexed_at"].iter().enumerate() {
                let value: i64 = row.get(3 + i).map_err(sql(db))?;
                meta.insert((*key).to_string(), value.into());
            }
            if filter.matches(meta) {
                set(row.get(0).map_err(sql(db))?);
            }
        }
        Ok(allowed)
    }

    /// BM25 search of the full-text index; `None` when the store has none yet.
    fn lexical_query(&self, request: &LexicalRequest) -> Result<Option<Vec<LexicalHit>>> {
        if !has_current_lexical_index(&self.conn, &self.db_path)? {
            return Ok(None);
        }
        if request.terms.is_empty() || request.top_k == 0 {
            return Ok(Some(Vec::new()));
        }
        let dim = self.config.dimension;
        let query = request.vector.as_deref().map(|vector| self.prepare_query(vector)).transpose()?;
        let floats = self.floats();
        let allowed = match &request.filter {
            Some(filter) => Some(self.slots_passing(filter, floats.len() / dim.max(1))?),
            None => None,
        };
        let terms = self.affordable_terms(&request.terms)?;
        if terms.is_empty() {
            return Ok(Some(Vec::new()));
        }
        // bm25() is lower-is-better; the filter applies before the cut.
        let mut stmt = self
            .conn
            .prepare_cached("SELECT rowid, bm25(lexical) FROM lexical WHERE lexical MATCH ?1 ORDER BY rank")
            .map_err(sql(&self.db_path))?;
        let mut rows = stmt.query([match_any(&terms)]).map_err(sql(&self.db_path))?;
        let mut best = Vec::with_capacity(request.top_k);
        while let Some(row) = rows.next().map_err(sql(&self.db_path))? {
            let slot: i64 = row.get(0).map_err(sql(&self.db_path))?;
            let rank: f64 = row.get(1).map_err(sql(&self.db_path))?;
            let passes = allowed.as_ref().is_none_or(|allowed| {
                usize::try_from(slot).ok().and_then(|s| allowed.get(s)).copied().unwrap_or(false)
            });
            if passes {
                best.push((slot, -rank as f32));
                if best.len() == request.top_k {
                    break;
                }
            }
        }
        drop(rows);
        let mut read = self
            .conn
            .prepare_cached(&format!("SELECT {CHUNK_COLUMNS} FROM chunks WHERE slot = ?1"))
            .map_err(sql(&self.db_path))?;
        let mut hits = Vec::with_capacity(best.len());
        let mut buffer = Vec::new();
        for (slot, bm25) in best {
            let row = read.query_row([slot], |row| row_to_chunk(row, 0)).optional().map_err(sql(&self.db_path))?;
            let Some((chunk, indexed_at)) = row else { continue };
            let score = match &query {
                Some(query) => u64::try_from(slot)
                    .ok()
                    .and_then(|slot| self.exact_vector(slot, &mut buffer))
                    .map_or(f32::NAN, |v| scan::exact_score(query, v, self.config.metric)),
                None => f32::NAN,
            };
            hits.push(LexicalHit { hit: Hit { score, chunk, indexed_at }, bm25 });
        }
        Ok(Some(hits))
    }

    /// The query terms that occur in the store, rarest first, as many as keep
    /// the chunks to score under [`MAX_POSTINGS`]: BM25 is computed for every
    /// chunk holding any term, so a word found in most chunks would cost a
    /// pass over the store while adding almost nothing to the ranking (its
    /// IDF is near zero). The rarest term is always kept. The way
    /// Elasticsearch's `cutoff_frequency` treats common terms.
    fn affordable_terms(&self, terms: &[String]) -> Result<Vec<String>> {
        let db = &self.db_path;
        self.conn
            .execute_batch(
                "CREATE VIRTUAL TABLE IF NOT EXISTS temp.lexical_vocab USING fts5vocab(main, lexical, 'row')",
            )
            .map_err(sql(db))?;
        let mut df = self.conn.prepare_cached("SELECT doc FROM temp.lexical_vocab WHERE term = ?1").map_err(sql(db))?;
        let mut counted: Vec<(i64, &String)> = Vec::with_capacity(terms.len());
        for term in terms {
            let count: Option<i64> = df.query_row([term], |r| r.get(0)).optional().map_err(sql(db))?;
            if let Some(count) = count.filter(|c| *c > 0) {
                counted.push((count, term));
            }
        }
        counted.sort();
        let mut total = 0;
        let mut kept = Vec::with_capacity(counted.len());
        for (count, term) in counted {
            if !kept.is_empty() && total + count > MAX_POSTINGS {
                tracing::debug!(term, count, "common query term left out of the full-text search");
                continue;
            }
            total += count;
            kept.push(term.clone());
        }
        Ok(kept)
    }

    /// The chunks under `keys`, in that order, leaving out keys not held.
    fn chunks_by_key(&self, keys: &[String]) -> Result<Vec<Chunk>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {CHUNK_COLUMNS} FROM chunks WHERE key = ?1"))
            .map_err(sql(&self.db_path))?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let row = stmt.query_row([key], |row| row_to_chunk(row, 0)).optional().map_err(sql(&self.db_path))?;
            out.extend(row.map(|(chunk, _)| chunk));
        }
        Ok(out)
    }

    fn rows_for(&self, best: &[scan::Scored]) -> Result<Vec<Hit>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {CHUNK_COLUMNS} FROM chunks WHERE slot = ?1"))
            .map_err(sql(&self.db_path))?;
        let mut hits = Vec::with_capacity(best.len());
        for scored in best {
            let row = stmt
                .query_row([scored.slot as i64], |row| row_to_chunk(row, 0))
                .optional()
                .map_err(sql(&self.db_path))?;
            if let Some((chunk, indexed_at)) = row {
                hits.push(Hit { score: scored.score, chunk, indexed_at });
            }
        }
        Ok(hits)
    }
}

/// Unit length for cosine (so search is a dot product); as is for euclidean.
fn prepare_vector(metric: Metric, vector: &[f32]) -> std::result::Result<Vec<f32>, String> {
    if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
        return Err(format!("has a non-finite value at position {i}"));
    }
    match metric {
        Metric::Euclidean => Ok(vector.to_vec()),
        Metric::Cosine => {
            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm == 0.0 {
                Err("is all zeros, which has no direction for cosine similarity".into())
            } else {
                Ok(vector.iter().map(|x| x / norm).collect())
            }
        }
    }
}

/// A file of fixed-size slots, the first four bytes of each an `f32` that is
/// NaN when the slot is free.
#[derive(Debug)]
struct SlotFile {
    file: File,
    path: PathBuf,
    stride: u64,
}

impl SlotFile {
    fn open(path: PathBuf, stride: usize) -> Result<Self, LocalStoreError> {
        let file =
            OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path).map_err(io(&path))?;
        Ok(Self { file, path, stride: stride as u64 })
    }

    fn slots(&self) -> Result<u64, LocalStoreError> {
        Ok(self.file.metadata().map_err(io(&self.path))?.len() / self.stride)
    }

    fn write(&self, slot: u64, bytes: &[u8]) -> Result<(), LocalStoreError> {
        write_at(&self.file, bytes, slot * self.stride).map_err(io(&self.path))
    }

    fn mark_free(&self, slot: u64) -> Result<(), LocalStoreError> {
        self.write(slot, &f32::NAN.to_le_bytes())
    }

    fn sync(&self) -> Result<(), LocalStoreError> {
        self.file.sync_data().map_err(io(&self.path))
    }
}

/// The single writer of a store: holds the lock file and the free-slot list.
#[derive(Debug)]
struct Writer {
    _lock: File,
    conn: Connection,
    db_path: PathBuf,
    /// The vectors as `f32`: exact scores and the truth.
    exact: SlotFile,
    /// The same vectors as int8 codes: what a query scans.
    compact: SlotFile,
    config: StoreConfig,
    free: Vec<u64>,
    next_slot: u64,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("db_path", &self.db_path).finish_non_exhaustive()
    }
}

impl Writer {
    fn open(store: &str, dir: &Path) -> Result<Self> {
        let lock_path = dir.join(LOCK_FILE);
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::StoreBusy { store: store.to_string() }),
            Err(fs::TryLockError::Error(err)) => return Err(io(&lock_path)(err).into()),
        }
        let (conn, db_path) = open_db(dir)?;
        // Full durability: once a commit returns, a power cut cannot lose it,
        // so the slots it freed may be reused at once.
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql(&db_path))?;
        let config = read_config(&conn, &db_path, dir)?;
        let exact = SlotFile::open(dir.join(VECTORS_FILE), config.dimension * 4)?;
        let compact = SlotFile::open(dir.join(COMPACT_FILE), scan::compact_stride(config.dimension))?;
        let mut writer = Writer { _lock: lock, conn, db_path, exact, compact, config, free: Vec::new(), next_slot: 0 };
        writer.repair()?;
        if !has_current_lexical_index(&writer.conn, &writer.db_path)? {
            let chunks = build_lexical_index(&mut writer.conn, &writer.db_path)?;
            tracing::info!(chunks, "built the full-text index of store {store:?}");
        }
        Ok(writer)
    }

    /// Rebuilds the free list from SQLite (the truth) and marks every slot no
    /// row points at as free, undoing whatever a killed writer left behind.
    fn repair(&mut self) -> Result<(), LocalStoreError> {
        let slots = self.exact.slots()?.min(self.compact.slots()?);
        // Rows whose vectors never reached the disk (power loss): drop them, so
        // their files look incomplete and are re-indexed.
        let lost =
            self.conn.execute("DELETE FROM chunks WHERE slot >= ?1", [slots as i64]).map_err(sql(&self.db_path))?;
        if lost > 0 && has_current_lexical_index(&self.conn, &self.db_path)? {
            self.conn.execute("DELETE FROM lexical WHERE rowid >= ?1", [slots as i64]).map_err(sql(&self.db_path))?;
        }
        if lost > 0 {
            tracing::warn!(rows = lost, "dropped chunks whose vectors were lost; their files will be re-indexed");
        }
        let live: HashSet<u64> = {
            let mut stmt = self.conn.prepare("SELECT slot FROM chunks").map_err(sql(&self.db_path))?;
            let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).map_err(sql(&self.db_path))?;
            rows.map(|r| r.map(|s| s as u64)).collect::<rusqlite::Result<_>>().map_err(sql(&self.db_path))?
        };
        // The files never shrink: a query in another process may be scanning
        // a mapping of them, and reading past a shortened file is SIGBUS.
        // Slots past the last live one stay, free (NaN) and first in line.
        let end = self.exact.slots()?.max(self.compact.slots()?);
        self.free = (0..end).rev().filter(|s| !live.contains(s)).collect();
        for &slot in &self.free {
            self.mark_free(slot)?;
        }
        self.next_slot = end;
        Ok(())
    }

    fn mark_free(&self, slot: u64) -> Result<(), LocalStoreError> {
        self.compact.mark_free(slot)?;
        self.exact.mark_free(slot)
    }

    fn allocate(&mut self) -> u64 {
        self.free.pop().unwrap_or_else(|| {
            self.next_slot += 1;
            self.next_slot - 1
        })
    }

    fn write(&mut self, mut batch: WriteBatch) -> Result<()> {
        let dim = self.config.dimension;
        // The last of several upserts of one key wins, as it would in separate writes.
        let mut seen = HashSet::new();
        if batch.upserts.iter().any(|r| !seen.insert(r.chunk.key.clone())) {
            let mut last: HashMap<String, VectorRecord> = HashMap::new();
            let mut order = Vec::new();
            for record in batch.upserts.drain(..) {
                if last.insert(record.chunk.key.clone(), record.clone()).is_none() {
                    order.push(record.chunk.key);
                }
            }
            batch.upserts = order.into_iter().filter_map(|key| last.remove(&key)).collect();
        }
        let mut prepared = Vec::with_capacity(batch.upserts.len());
        for record in &batch.upserts {
            if record.vector.len() != dim {
                return Err(Error::DimensionMismatch {
                    context: format!("chunk {} of {}", record.chunk.chunk_index, record.chunk.source_path),
                    expected: dim,
                    actual: record.vector.len(),
                });
            }
            let vector = prepare_vector(self.config.metric, &record.vector).map_err(|reason| {
                Error::InvalidInput(format!(
                    "the vector of chunk {} of {} {reason}",
                    record.chunk.chunk_index, record.chunk.source_path
                ))
            })?;
            prepared.push(vector);
        }
        let allocated: Vec<u64> = prepared.iter().map(|_| self.allocate()).collect();
        // The full-text terms are computed on the other cores while this
        // thread writes and syncs the vectors.
        let outcome = std::thread::scope(|scope| {
            let upserts = &batch.upserts;
            let terms = scope.spawn(move || terms_in_parallel(upserts));
            let written = self.write_vectors(&prepared, &allocated);
            let terms = terms.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            written?;
            self.commit(&batch, &terms, &allocated)
        });
        match outcome {
            Ok(freed) => {
                for slot in freed {
                    self.mark_free(slot)?;
                    self.free.push(slot);
                }
                Ok(())
            }
            Err(err) => {
                for &slot in &allocated {
                    let _ = self.mark_free(slot);
                    self.free.push(slot);
                }
                Err(err.into())
            }
        }
    }

    /// Records files that could not be read and forgets others, in one transaction.
    fn remember_unreadable(&mut self, unreadable: &[UnreadableFile], forget: &[String]) -> Result<(), LocalStoreError> {
        let db = self.db_path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql(&db))?;
        tx.execute(UNREADABLE_TABLE, []).map_err(sql(&db))?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM unreadable WHERE path = ?1").map_err(sql(&db))?;
            for path in forget {
                delete.execute([path]).map_err(sql(&db))?;
            }
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO unreadable (path, content_hash, reason, reader) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql(&db))?;
            for file in unreadable {
                insert.execute(params![file.path, file.content_hash, file.reason, file.reader]).map_err(sql(&db))?;
            }
        }
        tx.commit().map_err(sql(&db))
    }

    /// Writes the vectors into their new slots and syncs both files: done
    /// before the rows that point at them are committed.
    fn write_vectors(&self, vectors: &[Vec<f32>], slots: &[u64]) -> Result<(), LocalStoreError> {
        let mut bytes = Vec::with_capacity(self.exact.stride as usize);
        for (vector, &slot) in vectors.iter().zip(slots) {
            bytes.clear();
            bytes.extend(vector.iter().flat_map(|x| x.to_le_bytes()));
            self.exact.write(slot, &bytes)?;
            scan::quantize(vector, &mut bytes);
            self.compact.write(slot, &bytes)?;
        }
        if !vectors.is_empty() {
            self.exact.sync()?;
            self.compact.sync()?;
        }
        Ok(())
    }

    /// Commits the rows (and their full-text terms) of vectors already
    /// written; returns the slots the committed rows no longer use.
    fn commit(&mut self, batch: &WriteBatch, terms: &[String], slots: &[u64]) -> Result<Vec<u64>, LocalStoreError> {
        let db = self.db_path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql(&db))?;
        let mut freed = Vec::new();
        {
            let mut find = tx.prepare_cached("SELECT slot FROM chunks WHERE key = ?1").map_err(sql(&db))?;
            let mut delete = tx.prepare_cached("DELETE FROM chunks WHERE key = ?1").map_err(sql(&db))?;
            let mut unindex = tx.prepare_cached("DELETE FROM lexical WHERE rowid = ?1").map_err(sql(&db))?;
            let mut index =
                tx.prepare_cached("INSERT INTO lexical (rowid, terms) VALUES (?1, ?2)").map_err(sql(&db))?;
            let mut insert = tx
                .prepare_cached(&format!(
                    "INSERT INTO chunks (slot, {CHUNK_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ))
                .map_err(sql(&db))?;
            let upserted: HashSet<&str> = batch.upserts.iter().map(|r| r.chunk.key.as_str()).collect();
            for key in batch.deletes.iter().map(String::as_str).chain(upserted.iter().copied()) {
                if let Some(slot) = find.query_row([key], |r| r.get::<_, i64>(0)).optional().map_err(sql(&db))? {
                    delete.execute([key]).map_err(sql(&db))?;
                    unindex.execute([slot]).map_err(sql(&db))?;
                    freed.push(slot as u64);
                }
            }
            for ((record, &slot), terms) in batch.upserts.iter().zip(slots).zip(terms) {
                let c = &record.chunk;
                let metadata = serde_json::Value::Object(c.metadata.clone()).to_string();
                insert
                    .execute(params![
                        slot as i64,
                        c.key,
                        c.source_path,
                        c.chunk_index as i64,
                        c.total_chunks as i64,
                        c.line_start as i64,
                        c.line_end as i64,
                        c.byte_start as i64,
                        c.byte_end as i64,
                        c.content_hash,
                        c.language,
                        c.text,
                        metadata,
                        record.indexed_at,
                    ])
                    .map_err(sql(&db))?;
                index.execute(params![slot as i64, terms]).map_err(sql(&db))?;
            }
        }
        write_setting(&tx, &db, "updated_at", &now_unix().to_string())?;
        tx.commit().map_err(sql(&db))?;
        Ok(freed)
    }
}

/// The full-text terms of each record, computed on every core: the writer
/// is one thread, and tokenizing is the larger part of its work.
fn terms_in_parallel(records: &[VectorRecord]) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    if threads == 1 || records.len() < 64 {
        return records.iter().map(|r| index_terms(&r.chunk)).collect();
    }
    let per = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = records
            .chunks(per)
            .map(|part| scope.spawn(move || part.iter().map(|r| index_terms(&r.chunk)).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

#[cfg(unix)]
fn read_at(file: &File, bytes: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, bytes, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut bytes: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, bytes, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        bytes = &mut bytes[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(windows)]
fn write_at(file: &File, mut bytes: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, bytes, offset)?;
        bytes = &bytes[n..];
        offset += n as u64;
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
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
            fs::create_dir_all(&root).map_err(io(&root))?;
            // Build in a scratch folder and rename, so a crash never leaves half a store.
            let scratch = root.join(format!(".creating-{}-{}", config.name, std::process::id()));
            let _ = fs::remove_dir_all(&scratch);
            fs::create_dir_all(&scratch).map_err(io(&scratch))?;
            {
                let (conn, db) = open_db(&scratch)?;
                conn.execute_batch(SCHEMA).map_err(sql(&db))?;
                conn.execute(UNREADABLE_TABLE, []).map_err(sql(&db))?;
                conn.execute(LEXICAL_TABLE, []).map_err(sql(&db))?;
                let now = now_unix().to_string();
                let json = serde_json::to_string(&config).map_err(|e| LocalStoreError::Corrupt {
                    path: scratch.clone(),
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
                conn.pragma_update(None, "wal_checkpoint", "TRUNCATE").map_err(sql(&db))?;
            }
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
                OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
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

    async fn store_config(&self, store: &str) -> Result<StoreConfig> {
        let dir = self.existing_store_dir(store)?;
        blocking(move || {
            let (conn, db) = open_db(&dir)?;
            Ok(read_config(&conn, &db, &dir)?)
        })
        .await
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
            let mut details = vec![("path".to_string(), dir.display().to_string())];
            let unreadable = count_unreadable(&conn, &db)?;
            if unreadable > 0 {
                let note = format!("{unreadable} (not read again until they change; `rag index --force` retries)");
                details.push(("unreadable files".into(), note));
            }
            Ok(StoreInfo {
                config,
                backend: BACKEND.into(),
                files: Some(files as u64),
                chunks: Some(chunks as u64),
                size_bytes: Some(dir_size(&dir)),
                created_at: time("created_at")?,
                updated_at: time("updated_at")?,
                details,
            })
        })
        .await
    }

    async fn begin_indexing(&self, store: &str) -> Result<()> {
        let store = store.to_string();
        // Opening the writer takes the lock and repairs the vector file.
        let this_writer = {
            let writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
            writers.get(&store).cloned()
        };
        if this_writer.is_none() {
            let dir = self.existing_store_dir(&store)?;
            let name = store.clone();
            let writer = blocking(move || Writer::open(&name, &dir)).await?;
            self.writers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(store)
                .or_insert_with(|| Arc::new(Mutex::new(writer)));
        }
        Ok(())
    }

    /// Closes the store's writer, which releases `write.lock`: another
    /// process (or another `LocalBackend`) may write the store from now on.
    async fn end_indexing(&self, store: &str) -> Result<()> {
        let writer = self.writers.lock().unwrap_or_else(PoisonError::into_inner).remove(store);
        // A write still in flight holds its own reference; the lock goes with the last.
        drop(writer);
        Ok(())
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

    async fn get_chunks(&self, store: &str, keys: &[String]) -> Result<Vec<Chunk>> {
        let dir = self.existing_store_dir(store)?;
        let keys = keys.to_vec();
        let readers = self.readers.clone();
        blocking(move || readers.with(&dir, |reader| reader.chunks_by_key(&keys))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rag_core::chunk_key;

    fn config(name: &str, dimension: usize, metric: Metric) -> StoreConfig {
        StoreConfig { name: name.into(), model: "toy".into(), dimension, metric, chunking: "c".into() }
    }

    fn record(path: &str, index: usize, total: usize, hash: &str, vector: Vec<f32>) -> VectorRecord {
        VectorRecord {
            chunk: Chunk {
                key: chunk_key(path, index),
                source_path: path.into(),
                chunk_index: index,
                total_chunks: total,
                line_start: index * 10 + 1,
                line_end: index * 10 + 9,
                byte_start: 0,
                byte_end: 1,
                text: format!("{path} chunk {index} {hash}"),
                content_hash: hash.into(),
                language: "text".into(),
                metadata: Default::default(),
            },
            vector,
            indexed_at: 1,
        }
    }

    async fn store_with(dim: usize, metric: Metric) -> (tempfile::TempDir, LocalBackend) {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        backend.create_store(&config("notes", dim, metric)).await.unwrap();
        (dir, backend)
    }

    #[tokio::test]
    async fn a_reader_kept_open_sees_what_other_writers_commit_and_a_store_made_anew() {
        let (dir, reader) = store_with(2, Metric::Cosine).await;
        let writer = LocalBackend::new(dir.path());
        writer.put("notes", vec![record("a.md", 0, 1, "h", vec![1.0, 0.0])]).await.unwrap();
        writer.end_indexing("notes").await.unwrap();
        let query = QueryRequest::new(vec![1.0, 0.0], 10);
        assert_eq!(reader.query("notes", &query).await.unwrap().len(), 1);
        // Another writer appends: the open reader's mapping is too short, and it is reopened.
        let more: Vec<VectorRecord> =
            (0..500).map(|i| record(&format!("b{i}.md"), 0, 1, "h", vec![1.0, 0.5])).collect();
        writer.put("notes", more).await.unwrap();
        writer.end_indexing("notes").await.unwrap();
        assert_eq!(reader.query("notes", &QueryRequest::new(vec![1.0, 0.0], 1000)).await.unwrap().len(), 501);
        assert_eq!(reader.get_chunks("notes", &["b7.md#0".into()]).await.unwrap().len(), 1);
        // Deleted and made anew elsewhere: the reader follows the new store.
        writer.delete_store("notes").await.unwrap();
        writer.create_store(&config("notes", 2, Metric::Cosine)).await.unwrap();
        writer.put("notes", vec![record("new.md", 0, 1, "h", vec![0.0, 1.0])]).await.unwrap();
        writer.end_indexing("notes").await.unwrap();
        let hits = reader.query("notes", &query).await.unwrap();
        assert_eq!(hits.iter().map(|h| h.chunk.key.as_str()).collect::<Vec<_>>(), ["new.md#0"]);
    }

    #[tokio::test]
    async fn put_query_overwrite_and_delete() {
        let (_dir, backend) = store_with(3, Metric::Cosine).await;
        backend
            .put(
                "notes",
                vec![
                    record("a.md", 0, 2, "h1", vec![1.0, 0.0, 0.0]),
                    record("a.md", 1, 2, "h1", vec![0.0, 1.0, 0.0]),
                    record("b.md", 0, 1, "h2", vec![0.0, 0.0, 2.0]),
                ],
            )
            .await
            .unwrap();
        let hits = backend.query("notes", &QueryRequest::new(vec![0.0, 0.0, 1.0], 2)).await.unwrap();
        assert_eq!(hits[0].chunk.key, "b.md#0");
        assert!((hits[0].score - 1.0).abs() < 1e-6, "stored vectors are normalised: {}", hits[0].score);

        // Overwrite b.md#0 pointing elsewhere: the old vector must not come back.
        backend.put("notes", vec![record("b.md", 0, 1, "h3", vec![1.0, 0.0, 0.0])]).await.unwrap();
        let hits = backend.query("notes", &QueryRequest::new(vec![0.0, 0.0, 1.0], 10)).await.unwrap();
        assert_eq!(hits.len(), 3, "no orphans after overwrite: {hits:?}");
        assert!(hits.iter().all(|h| h.score < 0.5));

        backend.delete("notes", vec!["a.md#1".into(), "nope#9".into()]).await.unwrap();
        let hits = backend.query("notes", &QueryRequest::new(vec![0.0, 1.0, 0.0], 10)).await.unwrap();
        assert_eq!(hits.len(), 2);
        assert!(hits.iter().all(|h| h.chunk.key != "a.md#1"));
    }

    fn text_record(path: &str, index: usize, text: &str, vector: Vec<f32>) -> VectorRecord {
        let mut record = record(path, index, 1, "h", vector);
        record.chunk.text = text.into();
        record
    }

    async fn lexical_keys(backend: &LocalBackend, query: &str, k: usize) -> Vec<String> {
        let request = LexicalRequest::new(rag_core::lexical::query_terms(query), k);
        let hits = backend.lexical_query("notes", &request).await.unwrap().expect("a full-text index");
        hits.into_iter().map(|h| h.hit.chunk.key).collect()
    }

    #[tokio::test]
    async fn the_full_text_index_follows_replaces_and_deletes() {
        let (_dir, backend) = store_with(2, Metric::Cosine).await;
        backend
            .put(
                "notes",
                vec![
                    text_record("a.md", 0, "the sourdough starter wants rye flour", vec![1.0, 0.0]),
                    text_record("b.md", 0, "parse_config reads settings", vec![0.0, 1.0]),
                ],
            )
            .await
            .unwrap();
        assert_eq!(lexical_keys(&backend, "rye", 5).await, ["a.md#0"]);
        assert_eq!(lexical_keys(&backend, "config", 5).await, ["b.md#0"]);
        // Replacing a chunk replaces its terms: the old words no longer find it.
        backend.put("notes", vec![text_record("a.md", 0, "wheat only", vec![1.0, 0.0])]).await.unwrap();
        assert!(lexical_keys(&backend, "rye", 5).await.is_empty());
        assert_eq!(lexical_keys(&backend, "wheat", 5).await, ["a.md#0"]);
        // Deleting (pruning) removes them.
        backend.delete("notes", vec!["b.md#0".into()]).await.unwrap();
        assert!(lexical_keys(&backend, "parse_config", 5).await.is_empty());
        // A reused slot carries only its new chunk's terms.
        backend.put("notes", vec![text_record("c.md", 0, "kitchen memo", vec![0.0, 1.0])]).await.unwrap();
        assert_eq!(lexical_keys(&backend, "kitchen parse", 5).await, ["c.md#0"]);
    }

    #[tokio::test]
    async fn a_word_in_most_chunks_is_left_out_when_rarer_ones_can_rank() {
        let (_dir, backend) = store_with(2, Metric::Cosine).await;
        // 60 chunks hold "common" (over the test limit of 50 to score); one holds "rare" too.
        let mut records: Vec<VectorRecord> =
            (0..60).map(|i| text_record(&format!("n{i}.md"), 0, "common words", vec![1.0, 0.0])).collect();
        records.push(text_record("x.md", 0, "common rare", vec![1.0, 0.0]));
        backend.put("notes", records).await.unwrap();
        assert_eq!(lexical_keys(&backend, "common rare", 100).await, ["x.md#0"]);
        // Alone, the common word is still searched: the rarest term is always kept.
        assert_eq!(lexical_keys(&backend, "common", 100).await.len(), 61);
        // Words the store does not hold cost nothing and find nothing.
        assert!(lexical_keys(&backend, "absent", 100).await.is_empty());
    }

    #[tokio::test]
    async fn lexical_hits_carry_their_exact_vector_score() {
        let (_dir, backend) = store_with(2, Metric::Cosine).await;
        backend.put("notes", vec![text_record("a.md", 0, "rye flour", vec![3.0, 4.0])]).await.unwrap();
        let request = LexicalRequest::new(vec!["rye".into()], 5).with_vector(Some(vec![1.0, 0.0]));
        let hits = backend.lexical_query("notes", &request).await.unwrap().unwrap();
        assert!((hits[0].hit.score - 0.6).abs() < 1e-6, "{}", hits[0].hit.score);
        assert!(hits[0].bm25 > 0.0);
    }

    #[tokio::test]
    async fn a_filter_applies_before_the_lexical_cut() {
        let (_dir, backend) = store_with(2, Metric::Cosine).await;
        // 600 chunks match; the one under docs/ ranks last (longest text, one mention).
        let mut records: Vec<VectorRecord> =
            (0..600).map(|i| text_record(&format!("notes/n{i}.md"), 0, "flour flour flour", vec![1.0, 0.0])).collect();
        records.push(text_record("docs/far.md", 0, &format!("flour {}", "filler ".repeat(300)), vec![1.0, 0.0]));
        backend.put("notes", records).await.unwrap();
        let all = lexical_keys(&backend, "flour", 1000).await;
        assert_eq!(all.last().map(String::as_str), Some("docs/far.md#0"), "ranks last unfiltered");
        let request = LexicalRequest::new(vec!["flour".into()], 5).with_filter(Some(rag_core::Filter::folder("docs")));
        let hits = backend.lexical_query("notes", &request).await.unwrap().unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].hit.chunk.key, "docs/far.md#0");
    }

    #[tokio::test]
    async fn a_store_made_before_the_full_text_index_gets_it_from_its_next_writer() {
        let (dir, backend) = store_with(2, Metric::Cosine).await;
        backend.put("notes", vec![text_record("a.md", 0, "rotate the keys", vec![1.0, 0.0])]).await.unwrap();
        drop(backend);
        let db = dir.path().join("stores/notes").join(DB_FILE);
        Connection::open(&db)
            .unwrap()
            .execute_batch("DROP TABLE lexical; DELETE FROM settings WHERE key = 'lexical_version'")
            .unwrap();
        let backend = LocalBackend::new(dir.path());
        let request = LexicalRequest::new(vec!["key".into()], 5);
        assert!(backend.lexical_query("notes", &request).await.unwrap().is_none(), "no index yet");
        // Vector search still works on it.
        assert_eq!(backend.query("notes", &QueryRequest::new(vec![1.0, 0.0], 1)).await.unwrap().len(), 1);
        backend.begin_indexing("notes").await.unwrap();
        assert_eq!(lexical_keys(&backend, "keys", 5).await, ["a.md#0"]);
    }

    #[tokio::test]
    async fn query_syntax_in_terms_is_searched_as_text() {
        let (_dir, backend) = store_with(2, Metric::Cosine).await;
        backend.put("notes", vec![text_record("a.md", 0, "plain words", vec![1.0, 0.0])]).await.unwrap();
        for nasty in [r#"" OR x"#, "NEAR(a b)", "*", "a:b", "'", "AND", "^x"] {
            let request = LexicalRequest::new(vec![nasty.to_string()], 5);
            let hits = backend.lexical_query("notes", &request).await;
            assert!(hits.is_ok(), "{nasty}: {hits:?}");
        }
    }

    #[tokio::test]
    async fn vector_files_never_shrink_under_a_reader_when_a_writer_reopens_after_a_prune() {
        let (dir, backend) = store_with(4, Metric::Cosine).await;
        let records = (0..10).map(|i| record(&format!("f{i}.md"), 0, 1, "h", vec![1.0, i as f32, 0.0, 1.0])).collect();
        backend.put("notes", records).await.unwrap();
        // Prune the files written last: their slots are the tail of the vector files.
        backend.delete("notes", (5..10).map(|i| format!("f{i}.md#0")).collect()).await.unwrap();
        drop(backend);
        let store = dir.path().join("stores/notes");
        let reader = Reader::open(&store).unwrap();
        let lengths = |name: &str| fs::metadata(store.join(name)).unwrap().len();
        let before = (lengths(VECTORS_FILE), lengths(COMPACT_FILE));
        // A new writer repairs the store while the reader's mapping is live.
        let writer = LocalBackend::new(dir.path());
        writer.begin_indexing("notes").await.unwrap();
        assert_eq!((lengths(VECTORS_FILE), lengths(COMPACT_FILE)), before, "a mapped file was cut short");
        // Every mapped byte is still backed by the file (a cut file would SIGBUS here).
        let sum: f32 = reader.floats().iter().filter(|x| x.is_finite()).sum();
        assert!(sum > 0.0);
        let hits = reader.query(&QueryRequest::new(vec![1.0, 0.0, 0.0, 1.0], 10)).unwrap();
        assert_eq!(hits.len(), 5);
    }

    #[tokio::test]
    async fn freed_slots_are_reused_and_the_file_does_not_grow() {
        let (dir, backend) = store_with(4, Metric::Cosine).await;
        for round in 0..5 {
            let records = (0..10).map(|i| record("f.txt", i, 10, &format!("r{round}"), vec![1.0, i as f32, 0.0, 1.0]));
            backend.put("notes", records.collect()).await.unwrap();
        }
        let len = fs::metadata(dir.path().join("stores/notes").join(VECTORS_FILE)).unwrap().len();
        assert!(len <= 20 * 16, "vector file grew to {len} bytes for 10 live vectors");
        assert_eq!(backend.records("notes").await.unwrap().len(), 10);
    }

    #[tokio::test]
    async fn file_states_report_partial_files_as_unfinished() {
        let (_dir, backend) = store_with(2, Metric::Cosine).await;
        backend
            .put(
                "notes",
                vec![
                    record("whole.md", 0, 1, "h", vec![1.0, 0.0]),
                    record("part.md", 0, 3, "h", vec![1.0, 0.0]),
                    record("mixed.md", 0, 2, "old", vec![1.0, 0.0]),
                    record("mixed.md", 1, 2, "new", vec![1.0, 0.0]),
                ],
            )
            .await
            .unwrap();
        let states = backend.file_states("notes").await.unwrap();
        let hash = |p: &str| states.iter().find(|s| s.path == p).unwrap().content_hash.clone();
        assert_eq!(hash("whole.md").as_deref(), Some("h"));
        assert_eq!(hash("part.md"), None);
        assert_eq!(hash("mixed.md"), None);
    }

    #[tokio::test]
    async fn unreadable_files_are_remembered_across_processes_and_forgotten_on_request() {
        let (dir, backend) = store_with(3, Metric::Cosine).await;
        // A store made before the table existed reads as remembering nothing.
        let db = backend.store_dir("notes").unwrap().join(DB_FILE);
        Connection::open(&db).unwrap().execute_batch("DROP TABLE unreadable").unwrap();
        assert!(backend.unreadable_files("notes").await.unwrap().is_empty());

        let file = |path: &str, hash: &str| UnreadableFile {
            path: path.into(),
            content_hash: hash.into(),
            reason: "encrypted".into(),
            reader: "rag-core 1".into(),
        };
        backend.begin_indexing("notes").await.unwrap();
        backend.remember_unreadable("notes", vec![file("a.pdf", "h1"), file("b.pdf", "h2")], Vec::new()).await.unwrap();
        backend.remember_unreadable("notes", vec![file("a.pdf", "h3")], vec!["b.pdf".into()]).await.unwrap();
        drop(backend);
        let reopened = LocalBackend::new(dir.path());
        assert_eq!(reopened.unreadable_files("notes").await.unwrap(), [file("a.pdf", "h3")]);
    }

    #[tokio::test]
    async fn a_second_writer_is_refused_while_the_first_holds_the_store() {
        let (dir, first) = store_with(2, Metric::Cosine).await;
        first.begin_indexing("notes").await.unwrap();
        let second = LocalBackend::new(dir.path());
        let err = second.begin_indexing("notes").await.unwrap_err();
        assert!(matches!(err, Error::StoreBusy { .. }), "{err}");
        // Readers are never blocked.
        assert!(second.query("notes", &QueryRequest::new(vec![1.0, 0.0], 1)).await.unwrap().is_empty());
        drop(first);
        second.begin_indexing("notes").await.unwrap();
    }

    struct Lengths;

    #[async_trait]
    impl rag_core::Embedder for Lengths {
        fn model(&self) -> &str {
            "toy"
        }
        fn dimension(&self) -> usize {
            2
        }
        async fn embed_documents(&self, docs: &[rag_core::DocText]) -> Result<Vec<Vec<f32>>> {
            Ok(docs.iter().map(|d| vec![1.0, d.text.len() as f32]).collect())
        }
        async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
            Ok(vec![1.0, query.len() as f32])
        }
    }

    /// The whole text as one chunk.
    struct Whole;

    impl rag_core::Chunker for Whole {
        fn chunk(&self, text: &str, _path: &str, _language: &str) -> Vec<rag_core::TextChunk> {
            let lines = rag_core::LineIndex::new(text);
            let end = lines.line_of(text.len().saturating_sub(1));
            let metadata = rag_core::Metadata::new();
            vec![rag_core::TextChunk {
                text: text.into(),
                byte_start: 0,
                byte_end: text.len(),
                line_start: 1,
                line_end: end,
                metadata,
            }]
        }
        fn settings(&self) -> String {
            "whole".into()
        }
    }

    #[tokio::test]
    async fn an_index_run_releases_the_store_when_it_ends() {
        let data = tempfile::tempdir().unwrap();
        let mut notes = rag_core::MemorySource::new();
        notes.insert("a.md", rag_core::Document::new("some text", "markdown"));
        let notes: Arc<dyn rag_core::Source> = Arc::new(notes);
        let backend = Arc::new(LocalBackend::new(data.path()));
        let indexer = rag_core::Indexer::new(Arc::new(Lengths), backend.clone(), Arc::new(Whole));
        let options = rag_core::IndexOptions::default();
        indexer.index("notes", notes.clone(), &options, &rag_core::NoProgress).await.unwrap();
        // The program still holds `backend`, yet another writer may now take the store.
        let other = LocalBackend::new(data.path());
        other.begin_indexing("notes").await.unwrap();
        let err = indexer.index("notes", notes.clone(), &options, &rag_core::NoProgress).await.unwrap_err();
        assert!(matches!(err, Error::StoreBusy { .. }), "{err}");
        other.end_indexing("notes").await.unwrap();
        indexer.index("notes", notes, &options, &rag_core::NoProgress).await.unwrap();
    }

    #[tokio::test]
    async fn vectors_written_without_a_commit_are_never_returned_and_are_reclaimed() {
        let (dir, backend) = store_with(2, Metric::Cosine).await;
        backend.put("notes", vec![record("a.md", 0, 1, "h", vec![1.0, 0.0])]).await.unwrap();
        drop(backend);
        // Simulate a writer killed after writing a vector but before its commit.
        let vectors = dir.path().join("stores/notes").join(VECTORS_FILE);
        let file = OpenOptions::new().write(true).open(&vectors).unwrap();
        write_at(&file, &[0.0f32, 1.0].iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>(), 8).unwrap();
        let backend = LocalBackend::new(dir.path());
        let hits = backend.query("notes", &QueryRequest::new(vec![0.0, 1.0], 5)).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].chunk.key, "a.md#0");
        backend.begin_indexing("notes").await.unwrap();
        // The orphan slot is freed in place, never cut off (a reader may map the file).
        assert_eq!(fs::metadata(&vectors).unwrap().len(), 16);
        let bytes = fs::read(&vectors).unwrap();
        assert!(f32::from_le_bytes(bytes[8..12].try_into().unwrap()).is_nan(), "marked free");
        backend.put("notes", vec![record("b.md", 0, 1, "h", vec![0.0, 1.0])]).await.unwrap();
        assert_eq!(fs::metadata(&vectors).unwrap().len(), 16, "the freed slot is reused");
        let hits = backend.query("notes", &QueryRequest::new(vec![0.0, 1.0], 5)).await.unwrap();
        assert_eq!(hits[0].chunk.key, "b.md#0");
    }

    #[tokio::test]
    async fn many_uncommitted_vectors_closer_than_every_row_still_leave_k_real_hits() {
        let (dir, backend) = store_with(4, Metric::Cosine).await;
        let records = (0..10).map(|i| record("a.md", i, 10, "h", vec![1.0, i as f32, 0.5, 0.0])).collect();
        backend.put("notes", records).await.unwrap();
        drop(backend);
        // A killed writer left 200 vectors equal to the query in both files, with no rows.
        let store = dir.path().join("stores/notes");
        let exact = SlotFile::open(store.join(VECTORS_FILE), 16).unwrap();
        let compact = SlotFile::open(store.join(COMPACT_FILE), scan::compact_stride(4)).unwrap();
        let query = vec![0.0f32, 0.0, 0.0, 1.0];
        let mut bytes = Vec::new();
        for slot in 10..210 {
            exact.write(slot, &query.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>()).unwrap();
            scan::quantize(&query, &mut bytes);
            compact.write(slot, &bytes).unwrap();
        }
        let backend = LocalBackend::new(dir.path());
        let hits = backend.query("notes", &QueryRequest::new(query, 5)).await.unwrap();
        assert_eq!(hits.len(), 5, "{hits:?}");
        assert!(hits.iter().all(|h| h.chunk.source_path == "a.md"));
    }

    #[tokio::test]
    async fn the_last_of_two_upserts_of_a_key_in_one_batch_wins() {
        let (_dir, backend) = store_with(2, Metric::Cosine).await;
        let first = record("a.md", 0, 1, "old", vec![1.0, 0.0]);
        let second = record("a.md", 0, 1, "new", vec![0.0, 1.0]);
        backend.put("notes", vec![first, second]).await.unwrap();
        let records = backend.records("notes").await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].chunk.content_hash, "new");
    }

    #[tokio::test]
    async fn euclidean_scores_use_one_over_one_plus_distance() {
        let (_dir, backend) = store_with(2, Metric::Euclidean).await;
        backend.put("notes", vec![record("a.md", 0, 1, "h", vec![3.0, 4.0])]).await.unwrap();
        let hits = backend.query("notes", &QueryRequest::new(vec![0.0, 0.0], 1)).await.unwrap();
        assert!((hits[0].score - 1.0 / 6.0).abs() < 1e-6);
    }

    #[tokio::test]
    async fn bad_vectors_and_names_are_refused_with_the_culprit_named() {
        let (_dir, backend) = store_with(2, Metric::Cosine).await;
        let err = backend.put("notes", vec![record("z.md", 4, 5, "h", vec![0.0, 0.0])]).await.unwrap_err();
        assert!(err.to_string().contains("chunk 4 of z.md"), "{err}");
        let err = backend.put("notes", vec![record("z.md", 0, 1, "h", vec![1.0])]).await.unwrap_err();
        assert!(matches!(err, Error::DimensionMismatch { expected: 2, actual: 1, .. }), "{err}");
        assert!(matches!(backend.store_exists("../escape").await, Err(Error::InvalidStoreName { .. })));
        let err = backend.query("nothere", &QueryRequest::new(vec![1.0, 0.0], 1)).await.unwrap_err();
        assert!(matches!(err, Error::StoreNotFound { .. }));
    }

    #[tokio::test]
    async fn stores_are_listed_described_and_deleted() {
        let (_dir, backend) = store_with(2, Metric::Cosine).await;
        backend.create_store(&config("other", 2, Metric::Cosine)).await.unwrap();
        assert!(matches!(
            backend.create_store(&config("other", 2, Metric::Cosine)).await,
            Err(Error::StoreExists { .. })
        ));
        assert_eq!(backend.list_stores().await.unwrap(), ["notes", "other"]);
        backend.put("notes", vec![record("a.md", 0, 1, "h", vec![1.0, 0.0])]).await.unwrap();
        let info = backend.store_info("notes").await.unwrap();
        assert_eq!((info.files, info.chunks), (Some(1), Some(1)));
        assert!(info.size_bytes.unwrap() > 0);
        backend.delete_store("other").await.unwrap();
        assert_eq!(backend.list_stores().await.unwrap(), ["notes"]);
    }
}
