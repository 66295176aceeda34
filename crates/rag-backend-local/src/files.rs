//! The files of a store folder, and the backend's name in messages. Every
//! folder and file a store is made of is its owner's only (0700 and 0600 on
//! Unix): the chunk text is the user's own files.

use std::fs::{DirBuilder, OpenOptions};
use std::path::Path;

pub(crate) const BACKEND: &str = "local";
pub(crate) const DB_FILE: &str = "store.db";
pub(crate) const VECTORS_FILE: &str = "vectors.f32";
pub(crate) const COMPACT_FILE: &str = "vectors.i8";
pub(crate) const LOCK_FILE: &str = "write.lock";
pub(crate) const FORMAT_VERSION: &str = "1";

/// Creates `dir` and any missing parents for the owner only (0700 on Unix);
/// folders that exist keep their mode.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Options that create a file for the owner only (0600 on Unix); a file that
/// exists keeps its mode.
pub(crate) fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}
