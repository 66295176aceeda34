//! The SQLite side of a store: its tables, its settings, and reading chunk
//! rows back.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use rag_core::store::{Chunk, StoreConfig};

use crate::error::{LocalStoreError, sql};
use crate::files::DB_FILE;

pub(crate) const SCHEMA: &str = "
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
pub(crate) const UNREADABLE_TABLE: &str = "CREATE TABLE IF NOT EXISTS unreadable (
    path TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    reason TEXT NOT NULL,
    reader TEXT NOT NULL
)";

pub(crate) const CHUNK_COLUMNS: &str = "key, source_path, chunk_index, total_chunks, line_start, line_end, byte_start, \
                             byte_end, content_hash, language, text, metadata, indexed_at";

/// The metadata key of what a chunk carries for its whole file (a note's
/// front matter, up to 64 KiB): stored once per file, on the file's first
/// chunk, and given back to every chunk of the file when read.
pub(crate) const PER_FILE_KEY: &str = "frontmatter";

/// The columns of a chunk row as [`row_to_chunk`] reads them: the stored
/// columns, then the metadata of the file's first chunk (for the later
/// chunks, whose per-file metadata lives there).
pub(crate) const CHUNK_SELECT: &str = "key, source_path, chunk_index, total_chunks, line_start, line_end, byte_start, \
                             byte_end, content_hash, language, text, metadata, indexed_at, \
                             (SELECT first.metadata FROM chunks AS first WHERE chunks.chunk_index > 0 \
                              AND first.source_path = chunks.source_path AND first.chunk_index = 0)";

/// The metadata to store for `chunk`: without its [`PER_FILE_KEY`] where the
/// file's first chunk, written in the same batch as `first`, holds the same.
pub(crate) fn stored_metadata(chunk: &Chunk, first: Option<&Chunk>) -> String {
    let shared = chunk.chunk_index > 0
        && chunk.metadata.get(PER_FILE_KEY).is_some()
        && first.is_some_and(|first| first.metadata.get(PER_FILE_KEY) == chunk.metadata.get(PER_FILE_KEY));
    let mut metadata = chunk.metadata.clone();
    if shared {
        metadata.remove(PER_FILE_KEY);
    }
    serde_json::Value::Object(metadata).to_string()
}

pub(crate) fn row_to_chunk(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<(Chunk, i64)> {
    let usize_at = |i: usize| row.get::<_, i64>(at + i).map(|v| usize::try_from(v).unwrap_or(0));
    let metadata: String = row.get(at + 11)?;
    let mut metadata: rag_core::store::Metadata = serde_json::from_str(&metadata).unwrap_or_default();
    if !metadata.contains_key(PER_FILE_KEY)
        && let Some(first) = row.get::<_, Option<String>>(at + 13)?
        && let Ok(mut first) = serde_json::from_str::<rag_core::store::Metadata>(&first)
        && let Some(shared) = first.remove(PER_FILE_KEY)
    {
        metadata.insert(PER_FILE_KEY.to_string(), shared);
    }
    Ok((
        Chunk::new(row.get::<_, String>(at + 1)?, usize_at(2)?, row.get::<_, String>(at + 10)?)
            .with_key(row.get::<_, String>(at)?)
            .with_total(usize_at(3)?)
            .with_lines(usize_at(4)?, usize_at(5)?)
            .with_bytes(usize_at(6)?, usize_at(7)?)
            .with_content_hash(row.get::<_, String>(at + 8)?)
            .with_language(row.get::<_, String>(at + 9)?)
            .with_metadata(metadata),
        row.get(at + 12)?,
    ))
}

pub(crate) fn open_db(dir: &Path) -> Result<(Connection, PathBuf), LocalStoreError> {
    let path = dir.join(DB_FILE);
    let conn = Connection::open(&path).map_err(sql(&path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(sql(&path))?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sql(&path))?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql(&path))?;
    Ok((conn, path))
}

pub(crate) fn read_setting(conn: &Connection, db: &Path, key: &str) -> Result<Option<String>, LocalStoreError> {
    let mut stmt = conn.prepare_cached("SELECT value FROM settings WHERE key = ?1").map_err(sql(db))?;
    stmt.query_row([key], |r| r.get(0)).optional().map_err(sql(db))
}

pub(crate) fn read_config(conn: &Connection, db: &Path, dir: &Path) -> Result<StoreConfig, LocalStoreError> {
    let corrupt = |reason: String| LocalStoreError::Corrupt { path: dir.to_path_buf(), reason };
    let text = read_setting(conn, db, "config")?.ok_or_else(|| corrupt("no settings recorded".into()))?;
    serde_json::from_str(&text).map_err(|e| corrupt(format!("unreadable settings: {e}")))
}

pub(crate) fn write_setting(conn: &Connection, db: &Path, key: &str, value: &str) -> Result<(), LocalStoreError> {
    conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)", params![key, value])
        .map(|_| ())
        .map_err(sql(db))
}

/// Removes the setting `key`; returns whether there was one.
pub(crate) fn delete_setting(conn: &Connection, db: &Path, key: &str) -> Result<bool, LocalStoreError> {
    conn.execute("DELETE FROM settings WHERE key = ?1", [key]).map(|removed| removed > 0).map_err(sql(db))
}

/// Whether the derived data a `stamp` setting vouches for (a code file,
/// the lengths file) matches the store's last commit: every writer that
/// keeps it sets the stamp to `updated_at` in its commits, so a commit by a
/// version of rag that kept no such data leaves the two apart.
pub(crate) fn stamp_is_current(conn: &Connection, db: &Path, stamp: &str) -> Result<bool, LocalStoreError> {
    let stamped = read_setting(conn, db, stamp)?;
    Ok(stamped.is_some() && stamped == read_setting(conn, db, "updated_at")?)
}

/// Records that the data a `stamp` setting vouches for matches the store
/// as last committed.
pub(crate) fn stamp_as_current(conn: &Connection, db: &Path, stamp: &str) -> Result<(), LocalStoreError> {
    let updated = read_setting(conn, db, "updated_at")?.unwrap_or_default();
    write_setting(conn, db, stamp, &updated)
}

/// Whether the store has the table of unreadable files (stores made before
/// it existed get it from their next writer).
pub(crate) fn has_unreadable_table(conn: &Connection, db: &Path) -> Result<bool, LocalStoreError> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'unreadable')",
        [],
        |r| r.get(0),
    )
    .map_err(sql(db))
}

pub(crate) fn count_unreadable(conn: &Connection, db: &Path) -> Result<i64, LocalStoreError> {
    if !has_unreadable_table(conn, db)? {
        return Ok(0);
    }
    conn.query_row("SELECT COUNT(*) FROM unreadable", [], |r| r.get(0)).map_err(sql(db))
}
