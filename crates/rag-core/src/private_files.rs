//! Files only their owner may read: what a store and its records are made
//! of holds the text of the user's own files.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Creates `dir` and any missing parents for the owner only (0700 on Unix);
/// folders that exist keep their mode.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Options that create a file for the owner only (0600 on Unix); a file that
/// exists keeps its mode. Say how to open it (`.create(true).write(true)`...).
pub fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Replaces `path` with `bytes` whole: written to a temporary file of this
/// process beside it (owner only), synced, renamed over it, and the folder
/// synced, so a reader sees the old content or the new, never a part. The
/// temporary file is removed if any step fails. Writers that may run at
/// once must take turns themselves (a lock).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("record.json");
/// rag_core::backend::replace_private_file(&path, b"{}").unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"{}");
/// ```
pub fn replace_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let scratch = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = private_file().create(true).write(true).truncate(true).open(&scratch)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&scratch, path)?;
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&scratch);
    }
    written
}
