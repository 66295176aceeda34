//! The weights' fingerprint (BLAKE3 of `model.safetensors`), remembered by
//! the file's identity so a fresh `rag query` does not hash 90 MB again.
//!
//! One small file per weights file under the user's cache folder
//! (`~/.cache/vector-rag/fingerprints/`, owner-only), named by the hash of
//! the weights' path, holding the identity it was computed for: size,
//! modification and change times (nanoseconds), inode and device. Any of
//! those changing (a new download, a copy, an edit in place) means hashing
//! again; a change time cannot be set back by a user, so a file swapped for
//! another of the same size and modification time is still noticed.

use std::path::{Path, PathBuf};

/// Where fingerprints are kept: `None` when there is no cache folder
/// (hashing every time is then the fallback).
fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("RAG_FINGERPRINT_CACHE")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("vector-rag").join("fingerprints")))
}

/// The identity of the file behind `metadata`, as one line.
fn identity(metadata: &std::fs::Metadata) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        format!(
            "{} {}.{} {}.{} {} {}",
            metadata.len(),
            metadata.mtime(),
            metadata.mtime_nsec(),
            metadata.ctime(),
            metadata.ctime_nsec(),
            metadata.ino(),
            metadata.dev()
        )
    }
    #[cfg(not(unix))]
    {
        let modified = metadata.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        format!("{} {:?}", metadata.len(), modified)
    }
}

/// The fingerprint of the weights at `path` (open as `file`, mapped as
/// `weights`): remembered when the file is the one it was computed for,
/// else hashed and remembered.
pub fn fingerprint(path: &Path, file: &std::fs::File, weights: &[u8]) -> String {
    let identity = file.metadata().map(|m| identity(&m)).ok();
    let entry = cache_dir().zip(std::path::absolute(path).ok()).map(|(dir, absolute)| {
        let name = blake3::hash(absolute.as_os_str().as_encoded_bytes()).to_hex();
        dir.join(&name[..32])
    });
    if let (Some(entry), Some(identity)) = (&entry, &identity)
        && let Ok(text) = std::fs::read_to_string(entry)
        && let Some((kept, fingerprint)) = text.trim_end().rsplit_once(' ')
        && kept == identity
        && fingerprint.len() == 64
        && fingerprint.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return fingerprint.to_string();
    }
    let fingerprint = blake3::hash(weights).to_hex().to_string();
    if let (Some(entry), Some(identity)) = (entry, identity) {
        // A cache that cannot be written only costs the hash next time.
        let written = entry.parent().map_or(Ok(()), rag_core::backend::create_private_dir).and_then(|()| {
            rag_core::backend::replace_private_file(&entry, format!("{identity} {fingerprint}\n").as_bytes())
        });
        if let Err(err) = written {
            tracing::debug!("cannot remember the weights' fingerprint in {}: {err}", entry.display());
        }
    }
    fingerprint
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_fingerprint_is_remembered_for_the_same_file_only() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY (test): nextest runs each test in a process of its own; under
        // `cargo test` another test reading it only moves its cache here.
        unsafe { std::env::set_var("RAG_FINGERPRINT_CACHE", dir.path().join("cache")) };
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, b"weights one").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let first = fingerprint(&path, &file, b"weights one");
        assert_eq!(first, blake3::hash(b"weights one").to_hex().to_string());
        // Remembered: the bytes given are not hashed again.
        assert_eq!(fingerprint(&path, &file, b"anything"), first);
        // Another file at the same path (a new download): hashed again.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"weights two").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        assert_eq!(fingerprint(&path, &file, b"weights two"), blake3::hash(b"weights two").to_hex().to_string());
        // A damaged cache entry is not trusted.
        for entry in std::fs::read_dir(dir.path().join("cache")).unwrap() {
            std::fs::write(entry.unwrap().path(), "garbage").unwrap();
        }
        assert_eq!(fingerprint(&path, &file, b"weights two"), blake3::hash(b"weights two").to_hex().to_string());
    }
}
