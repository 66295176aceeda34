//! Errors of the local store's own machinery (SQLite, files, damage), and
//! how they reach callers.

use std::path::{Path, PathBuf};

use rag_core::Error;

use crate::files::BACKEND;

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

pub(crate) fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> LocalStoreError + '_ {
    move |source| LocalStoreError::Sqlite { path: path.to_path_buf(), source }
}

pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> LocalStoreError + '_ {
    move |source| LocalStoreError::Io { path: path.to_path_buf(), source }
}
