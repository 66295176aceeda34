//! The code files: compact copies of the vectors that queries scan, kept
//! beside `vectors.f32` slot for slot. Each is written with the vectors,
//! under the same sync-before-commit and never-shrink rules, and stamped
//! in the commit, so a reader can tell codes that a version of rag without
//! them left stale; a writer fills whatever is missing from the stored
//! vectors ([`crate::writer::Writer::fill_codes`]). They code each vector's
//! difference from the store's centre ([`crate::centre`]).

use rusqlite::Connection;
use std::path::Path;

use crate::bits::{bits_stride, encode_bits};
use crate::error::LocalStoreError;
use crate::files::{BITS_FILE, SIGNS_FILE};
use crate::schema::stamp_is_current;
use crate::signs::{encode_signs, signs_stride};

/// A kind of code file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codes {
    /// Two bits a dimension ([`crate::bits`]): every large query's second
    /// stage, and the first below [`crate::reader`]'s sign stage size.
    TwoBit,
    /// One bit a dimension ([`crate::signs`]): the first stage of a query
    /// of a million slots or more.
    Signs,
}

impl Codes {
    /// Every kind, in the order a writer fills them.
    pub(crate) const ALL: [Codes; 2] = [Codes::TwoBit, Codes::Signs];

    pub(crate) fn file_name(self) -> &'static str {
        match self {
            Self::TwoBit => BITS_FILE,
            Self::Signs => SIGNS_FILE,
        }
    }

    /// Bytes of one slot for `dim` dimensions.
    pub(crate) fn stride(self, dim: usize) -> usize {
        match self {
            Self::TwoBit => bits_stride(dim),
            Self::Signs => signs_stride(dim),
        }
    }

    /// The code of `vector` into `out`: a stored vector (unit length on
    /// cosine stores) less the store's centre ([`crate::centre`]).
    pub(crate) fn encode(self, vector: &[f32], out: &mut Vec<u8>) {
        match self {
            Self::TwoBit => encode_bits(vector, out),
            Self::Signs => encode_signs(vector, out),
        }
    }

    /// The setting that says which commit these codes match: every writer
    /// that keeps them sets it to `updated_at` in its commits, so a commit
    /// by a version of rag that kept no such codes leaves the two apart.
    /// (Versions that kept sign bits in `vectors.b1` stamped
    /// `bits_updated_at`, which this one neither reads nor writes.)
    pub(crate) fn stamp(self) -> &'static str {
        match self {
            Self::TwoBit => "bits2_centred_updated_at",
            Self::Signs => "signs_centred_updated_at",
        }
    }

    /// The stamp of versions of rag that coded the vectors themselves, not
    /// their difference from the store's centre ([`crate::centre`]). Where
    /// it is current, every slot's codes are theirs, all around the origin:
    /// a reader may rank by them, and a writer codes them again whole. A
    /// commit by such a version leaves [`stamp`](Self::stamp) behind, so
    /// codes it adds are never taken for centred ones.
    pub(crate) fn uncentred_stamp(self) -> &'static str {
        match self {
            Self::TwoBit => "bits2_updated_at",
            Self::Signs => "signs_updated_at",
        }
    }

    /// What they are, for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::TwoBit => "two-bit codes",
            Self::Signs => "sign codes",
        }
    }

    /// Whether these codes match the store's last commit and are coded
    /// around the store's recorded centre (see [`Codes::stamp`]).
    pub(crate) fn are_current(self, conn: &Connection, db: &Path) -> Result<bool, LocalStoreError> {
        stamp_is_current(conn, db, self.stamp())
    }

    /// Whether a reader may rank by these codes: they match the store's
    /// last commit, all coded around one centre, the recorded one or (left
    /// by a version without centres) the origin.
    pub(crate) fn may_be_read(self, conn: &Connection, db: &Path) -> Result<bool, LocalStoreError> {
        Ok(self.are_current(conn, db)? || stamp_is_current(conn, db, self.uncentred_stamp())?)
    }
}
