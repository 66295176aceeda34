//! Readers kept open between queries, one per store folder, opened again
//! when another connection has committed or the store was made anew. Calls
//! share it: two searches of one store (the two arms of a hybrid query) run
//! side by side, taking its SQLite connection only for what needs it (and a
//! large store's second one for rows, see `Reader::rows_conn`).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;

use rag_core::Result;

use crate::error::sql;
use crate::reader::Reader;

/// Open readers by store folder.
#[derive(Debug, Default)]
pub(crate) struct ReaderCache(Mutex<HashMap<PathBuf, Arc<OpenReader>>>);

/// A reader with what tells whether it is still current.
#[derive(Debug)]
pub(crate) struct OpenReader {
    pub(crate) reader: Reader,
    /// `PRAGMA data_version` when opened: another connection's commit changes it.
    pub(crate) version: i64,
    /// The database file it opened, to notice a store deleted and made anew.
    pub(crate) identity: Option<(u64, u64)>,
}

/// The device and inode of a file, where the platform has them.
pub(crate) fn file_identity(path: &Path) -> Option<(u64, u64)> {
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

pub(crate) fn data_version(conn: &Connection, db: &Path) -> Result<i64> {
    Ok(conn.query_row("PRAGMA data_version", [], |row| row.get(0)).map_err(sql(db))?)
}

impl OpenReader {
    /// Whether no other connection has committed since it opened and the
    /// store was not replaced. While another search holds the connection,
    /// the reader is taken as current: that search checked it as it began.
    fn is_current(&self) -> bool {
        let db = &self.reader.db_path;
        let Some(conn) = self.reader.try_conn() else { return true };
        data_version(&conn, db).ok() == Some(self.version) && file_identity(db) == self.identity
    }
}

impl ReaderCache {
    /// Runs `f` on the open reader of the store at `dir`, opening it or, when
    /// another connection committed since or the store was replaced, opening
    /// it again (a call still running on the old one finishes on it).
    pub(crate) fn with<T>(&self, dir: &Path, f: impl FnOnce(&Reader) -> Result<T>) -> Result<T> {
        let cached = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(dir).cloned();
        let open = match cached {
            Some(open) if open.is_current() => open,
            _ => {
                // Opened without holding the map: other stores' calls go on meanwhile.
                let open = Arc::new(Self::open(dir)?);
                self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(dir.to_path_buf(), open.clone());
                open
            }
        };
        f(&open.reader)
    }

    pub(crate) fn open(dir: &Path) -> Result<OpenReader> {
        let reader = Reader::open(dir)?;
        let version = data_version(&reader.conn(), &reader.db_path)?;
        let identity = file_identity(&reader.db_path);
        Ok(OpenReader { reader, version, identity })
    }

    pub(crate) fn forget(&self, dir: &Path) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(dir);
    }
}
