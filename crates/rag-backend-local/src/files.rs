//! The files of a store folder, and the backend's name in messages.

pub(crate) const BACKEND: &str = "local";
pub(crate) const DB_FILE: &str = "store.db";
pub(crate) const VECTORS_FILE: &str = "vectors.f32";
pub(crate) const COMPACT_FILE: &str = "vectors.i8";
pub(crate) const LOCK_FILE: &str = "write.lock";
pub(crate) const FORMAT_VERSION: &str = "1";
