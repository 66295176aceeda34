//! The files of a store folder, and the backend's name in messages. Every
//! folder and file a store is made of is its owner's only (0700 and 0600 on
//! Unix): the chunk text is the user's own files.

pub(crate) use rag_core::backend::{create_private_dir, private_file};

pub(crate) const BACKEND: &str = "local";
pub(crate) const DB_FILE: &str = "store.db";
pub(crate) const VECTORS_FILE: &str = "vectors.f32";
pub(crate) const COMPACT_FILE: &str = "vectors.i8";
pub(crate) const BITS_FILE: &str = "vectors.b2";
pub(crate) const SIGNS_FILE: &str = "vectors.s1";
/// The token count of each slot's chunk in the full-text index ([`crate::lengths`]).
pub(crate) const LENGTHS_FILE: &str = "lexical.len";
/// Where versions of rag before two-bit codes kept sign bits (in another
/// layout than [`SIGNS_FILE`]): removed by the first writer that fills
/// [`BITS_FILE`].
pub(crate) const LEGACY_SIGN_BITS_FILE: &str = "vectors.b1";
pub(crate) const LOCK_FILE: &str = "write.lock";
pub(crate) const FORMAT_VERSION: &str = "1";
