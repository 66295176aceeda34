//! What S3 Vectors has no room for, kept in a folder on this machine: the
//! files of each store that could not be read, so that the indexer does not
//! read them again until they change (see
//! [`VectorBackend::unreadable_files`](rag_core::backend::VectorBackend::unreadable_files)).
//! The record is per machine: another machine indexing the same store tries
//! such a file once itself.

use std::path::PathBuf;

use rag_core::{Error, Result, backend::UnreadableFile};

/// `<dir>/<bucket>/<index>.unreadable.json`, one JSON array per store.
#[derive(Debug, Clone)]
pub(crate) struct LocalState {
    dir: PathBuf,
}

impl LocalState {
    /// The state of the stores of `bucket` under `dir` (bucket and store
    /// names are validated before use, so they are safe file names).
    pub(crate) fn new(dir: PathBuf, bucket: &str) -> Self {
        Self { dir: dir.join(bucket) }
    }

    fn path(&self, store: &str) -> PathBuf {
        self.dir.join(format!("{store}.unreadable.json"))
    }

    /// The remembered files; none when there is no record or it cannot be
    /// read (it is only a cache: the files are then read again).
    pub(crate) fn unreadable(&self, store: &str) -> Vec<UnreadableFile> {
        let path = self.path(store);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                tracing::warn!(path = %path.display(), %err, "ignoring an unreadable record of unreadable files");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        }
    }

    /// Adds `unreadable`, forgets `forget`, and writes the record atomically.
    pub(crate) fn update(&self, store: &str, unreadable: Vec<UnreadableFile>, forget: &[String]) -> Result<()> {
        let mut files = self.unreadable(store);
        files.retain(|f| !forget.contains(&f.path) && !unreadable.iter().any(|u| u.path == f.path));
        files.extend(unreadable);
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let path = self.path(store);
        let failed = |err: std::io::Error| Error::Backend {
            backend: "s3vectors".into(),
            message: format!("cannot keep the record of unreadable files in {}: {err}", path.display()),
            source: None,
        };
        if files.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(failed(err)),
                _ => Ok(()),
            };
        }
        // The owner's only, like the data folder it sits in; writers of one
        // store take turns under its lease.
        rag_core::backend::create_private_dir(&self.dir).map_err(failed)?;
        let json = serde_json::to_vec_pretty(&files).map_err(|e| failed(std::io::Error::other(e)))?;
        rag_core::backend::replace_private_file(&path, &json).map_err(failed)
    }

    /// Forgets everything of a store (it was deleted).
    pub(crate) fn remove(&self, store: &str) {
        let _ = std::fs::remove_file(self.path(store));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, hash: &str) -> UnreadableFile {
        UnreadableFile { path: path.into(), content_hash: hash.into(), reason: "damaged".into(), reader: "r".into() }
    }

    #[cfg(unix)]
    #[test]
    fn the_record_is_its_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = LocalState::new(dir.path().join("state"), "team-vectors");
        state.update("notes", vec![file("a.pdf", "h1")], &[]).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("state/team-vectors")), 0o700);
        assert_eq!(mode(&dir.path().join("state/team-vectors/notes.unreadable.json")), 0o600);
    }

    #[test]
    fn records_are_added_replaced_forgotten_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let state = LocalState::new(dir.path().to_path_buf(), "team-vectors");
        assert!(state.unreadable("notes").is_empty());
        state.update("notes", vec![file("b.pdf", "1"), file("a.pdf", "1")], &[]).unwrap();
        state.update("notes", vec![file("a.pdf", "2")], &["b.pdf".into()]).unwrap();
        let reopened = LocalState::new(dir.path().to_path_buf(), "team-vectors");
        assert_eq!(reopened.unreadable("notes"), [file("a.pdf", "2")]);
        assert!(reopened.unreadable("other").is_empty(), "per store");
        state.update("notes", Vec::new(), &["a.pdf".into()]).unwrap();
        assert!(!dir.path().join("team-vectors/notes.unreadable.json").exists(), "an empty record leaves no file");
        state.update("notes", vec![file("c.pdf", "1")], &[]).unwrap();
        std::fs::write(dir.path().join("team-vectors/notes.unreadable.json"), "{ not json").unwrap();
        assert!(state.unreadable("notes").is_empty(), "a damaged record is ignored");
        state.remove("notes");
        assert!(state.unreadable("notes").is_empty());
    }
}
