//! Readers kept open between queries, a few per store folder, opened again
//! when another connection has committed or the store was made anew. Each
//! call takes a reader of its own, so two searches of one store (the two
//! arms of a hybrid query) run side by side: a reader's SQLite connection
//! serves one thread at a time.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;

use rag_core::Result;

use crate::error::sql;
use crate::reader::Reader;

/// Idle open readers by store folder.
#[derive(Debug, Default)]
pub(crate) struct ReaderCache(Mutex<HashMap<PathBuf, Arc<Mutex<Vec<OpenReader>>>>>);

/// Idle readers kept per store: enough for the arms of a hybrid query and
/// a few concurrent callers; a busier moment opens more and drops them.
const IDLE_READERS: usize = 4;

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

impl ReaderCache {
    /// Runs `f` on an open reader of the store at `dir`: an idle one that is
    /// still current (no other connection committed since it opened, and the
    /// store was not replaced), or a new one. The reader is idle again after.
    pub(crate) fn with<T>(&self, dir: &Path, f: impl FnOnce(&Reader) -> Result<T>) -> Result<T> {
        let pool = self.0.lock().unwrap_or_else(PoisonError::into_inner).entry(dir.to_path_buf()).or_default().clone();
        let idle = std::iter::from_fn(|| pool.lock().unwrap_or_else(PoisonError::into_inner).pop()).find(|open| {
            let db = &open.reader.db_path;
            data_version(&open.reader.conn, db).ok() == Some(open.version) && file_identity(db) == open.identity
        });
        let open = match idle {
            Some(open) => open,
            None => Self::open(dir)?,
        };
        let answer = f(&open.reader);
        let mut idle = pool.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_READERS {
            idle.push(open);
        }
        answer
    }

    pub(crate) fn open(dir: &Path) -> Result<OpenReader> {
        let reader = Reader::open(dir)?;
        let version = data_version(&reader.conn, &reader.db_path)?;
        let identity = file_identity(&reader.db_path);
        Ok(OpenReader { reader, version, identity })
    }

    pub(crate) fn forget(&self, dir: &Path) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(dir);
    }
}
