//! The lengths file: how many tokens each slot's chunk has in the full-text
//! index, two bytes a slot, so that BM25 reads a scored chunk's length from
//! memory rather than from FTS5's `lexical_docsize` table (a B-tree lookup a
//! chunk: most of a full-text query's time, and at 10M chunks a random read
//! of a 15 GB database). The norms of Lucene and tantivy, for the same reason.
//!
//! Written by the writer with the rows, from FTS5's own count, synced before
//! the commit and stamped in it like the code files ([`crate::codes`]), never
//! shrunk; a store without it, or whose stamp an older rag left behind, gets
//! it from its next writer, and meanwhile is searched as before.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use crate::error::{LocalStoreError, sql};
use crate::schema::stamp_is_current;

/// The setting that says which commit the lengths match.
pub(crate) const LENGTHS_STAMP: &str = "lengths_updated_at";

/// Bytes of one slot.
pub(crate) const LENGTH_STRIDE: usize = 2;

/// The stored length of a chunk of this many tokens or more: its length is
/// then read from FTS5's table, so every length is exact.
pub(crate) const LONG: u16 = u16::MAX;

/// What a slot's chunk of `tokens` tokens stores.
pub(crate) fn encode_length(tokens: u64) -> [u8; LENGTH_STRIDE] {
    u16::try_from(tokens).unwrap_or(LONG).to_le_bytes()
}

/// The length the file `lengths` stores for `slot`; `None` for a chunk too
/// long for it ([`LONG`]) or a slot past its end.
pub(crate) fn stored_length(lengths: &[u8], slot: i64) -> Option<u16> {
    let at = usize::try_from(slot).ok()?.checked_mul(LENGTH_STRIDE)?;
    match lengths.get(at..at.checked_add(LENGTH_STRIDE)?)? {
        &[a, b] => Some(u16::from_le_bytes([a, b])).filter(|&tokens| tokens != LONG),
        _ => None,
    }
}

/// Whether the lengths file matches the store's last commit.
pub(crate) fn lengths_are_current(conn: &Connection, db: &Path) -> Result<bool, LocalStoreError> {
    stamp_is_current(conn, db, LENGTHS_STAMP)
}

/// The token count of the chunk at `slot` as FTS5 keeps it (all columns),
/// `None` when the full-text index has no such row.
pub(crate) fn indexed_length(conn: &Connection, db: &Path, slot: i64) -> Result<Option<u64>, LocalStoreError> {
    let mut stmt = conn.prepare_cached("SELECT sz FROM lexical_docsize WHERE id = ?1").map_err(sql(db))?;
    let sizes: Option<Vec<u8>> = stmt.query_row([slot], |r| r.get(0)).optional().map_err(sql(db))?;
    Ok(sizes.and_then(|sizes| column_sizes_total(&sizes)))
}

/// The sum of a `lexical_docsize` row's column sizes (SQLite varints).
pub(crate) fn column_sizes_total(mut bytes: &[u8]) -> Option<u64> {
    let mut total = 0u64;
    while !bytes.is_empty() {
        let (value, used) = varint(bytes)?;
        total = total.checked_add(value)?;
        bytes = &bytes[used..];
    }
    Some(total)
}

/// The rows and the tokens of every column of the full-text index, from
/// FTS5's averages record (`lexical_data`, id 1: a varint of rows, then one
/// of tokens a column): what its `bm25()` divides by. `None` when the record
/// is missing or not as expected.
pub(crate) fn index_totals(conn: &Connection, db: &Path) -> Result<Option<(u64, u64)>, LocalStoreError> {
    let record: Option<Vec<u8>> = conn
        .prepare_cached("SELECT block FROM lexical_data WHERE id = 1")
        .map_err(sql(db))?
        .query_row([], |r| r.get(0))
        .optional()
        .map_err(sql(db))?;
    let Some(record) = record else { return Ok(None) };
    let Some((rows, used)) = varint(&record) else { return Ok(None) };
    Ok(column_sizes_total(&record[used..]).map(|tokens| (rows, tokens)))
}

/// An SQLite varint (big-endian groups of seven bits, the ninth byte whole)
/// and the bytes it took.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(9) {
        if i == 8 {
            return Some(((value << 8) | u64::from(byte), 9));
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_read_as_sqlite_writes_them() {
        assert_eq!(varint(&[0x05]), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00]), Some((128, 2)));
        assert_eq!(varint(&[0xbd, 0x84, 0x40]), Some((1_000_000, 3)));
        assert_eq!(varint(&[0xff; 9]), Some((u64::MAX, 9)));
        assert_eq!(varint(&[0x81]), None, "cut short");
        assert_eq!(varint(&[]), None);
        assert_eq!(column_sizes_total(&[0x05, 0x81, 0x00]), Some(133));
        assert_eq!(column_sizes_total(&[0x05, 0x81]), None);
    }

    #[test]
    fn long_chunks_store_the_marker() {
        assert_eq!(encode_length(0), [0, 0]);
        assert_eq!(encode_length(300), 300u16.to_le_bytes());
        assert_eq!(encode_length(65_534), 65_534u16.to_le_bytes());
        assert_eq!(encode_length(65_535), LONG.to_le_bytes());
        assert_eq!(encode_length(1 << 40), LONG.to_le_bytes());
        let file: Vec<u8> = [0, 300, 65_534, 65_535, 1 << 20].iter().flat_map(|&t| encode_length(t)).collect();
        let stored: Vec<Option<u16>> = (-1..6).map(|slot| stored_length(&file, slot)).collect();
        assert_eq!(stored, [None, Some(0), Some(300), Some(65_534), None, None, None]);
    }
}
