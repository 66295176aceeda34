//! [`Writer`]: the single writer of a store. It holds the lock file, puts
//! new vectors in free slots and syncs them before the SQLite transaction
//! that points chunks at them commits, so a crash at any point leaves a
//! store that opens and answers.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use rag_core::backend::{UnreadableFile, VectorRecord, WriteBatch};
use rag_core::lexical::{index_terms, name_terms};
use rag_core::store::{StoreConfig, now_unix};
use rag_core::{Error, Result};

use crate::bits::{bits_stride, encode_bits};
use crate::error::{LocalStoreError, io, sql};
use crate::files::{BITS_FILE, COMPACT_FILE, LOCK_FILE, SIGN_BITS_FILE, VECTORS_FILE};
use crate::fulltext::{build_lexical_index, has_current_lexical_index};
use crate::large_pages;
use crate::reader::prepare_vector;
use crate::scan;
use crate::schema::{
    BITS_STAMP, CHUNK_COLUMNS, UNREADABLE_TABLE, bits_are_current, open_db, read_config, read_setting, stored_metadata,
    write_setting,
};
use crate::slots::{SlotFile, read_at};

/// The single writer of a store: holds the lock file and the free-slot list.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) _lock: File,
    pub(crate) conn: Connection,
    pub(crate) db_path: PathBuf,
    /// The vectors as `f32`: exact scores and the truth.
    pub(crate) exact: SlotFile,
    /// The same vectors as int8 codes: what re-scores a query's candidates.
    pub(crate) compact: SlotFile,
    /// Their two-bit codes: what a query scans.
    pub(crate) bits: SlotFile,
    /// Where the blocks of `bits` this writer has not yet re-cached in huge
    /// pages begin ([`large_pages`]).
    pub(crate) bits_recached: u64,
    pub(crate) config: StoreConfig,
    pub(crate) free: Vec<u64>,
    pub(crate) next_slot: u64,
}

impl Writer {
    pub(crate) fn open(store: &str, dir: &Path) -> Result<Self> {
        let lock_path = dir.join(LOCK_FILE);
        let lock = crate::files::private_file()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::StoreBusy { store: store.to_string() }),
            Err(fs::TryLockError::Error(err)) => return Err(io(&lock_path)(err).into()),
        }
        let (conn, db_path) = open_db(dir)?;
        // Full durability: once a commit returns, a power cut cannot lose it,
        // so the slots it freed may be reused at once.
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql(&db_path))?;
        let config = read_config(&conn, &db_path, dir)?;
        let exact = SlotFile::open(dir.join(VECTORS_FILE), config.dimension * 4)?;
        let compact = SlotFile::open(dir.join(COMPACT_FILE), scan::compact_stride(config.dimension))?;
        let bits = SlotFile::open(dir.join(BITS_FILE), bits_stride(config.dimension))?;
        // A block the last writer left part-written is re-cached once full.
        let bits_recached = large_pages::whole_blocks(0, bits.len()?).end;
        let mut writer = Writer {
            _lock: lock,
            conn,
            db_path,
            exact,
            compact,
            bits,
            bits_recached,
            config,
            free: Vec::new(),
            next_slot: 0,
        };
        writer.repair()?;
        if !has_current_lexical_index(&writer.conn, &writer.db_path)? {
            let chunks = build_lexical_index(&mut writer.conn, &writer.db_path)?;
            tracing::info!(chunks, "built the full-text index of store {store:?}");
        }
        Ok(writer)
    }

    /// Rebuilds the free list from SQLite (the truth) and marks every slot no
    /// row points at as free, undoing whatever a killed writer left behind.
    pub(crate) fn repair(&mut self) -> Result<(), LocalStoreError> {
        self.fill_bits()?;
        let slots = self.exact.slots()?.min(self.compact.slots()?);
        // Rows whose vectors never reached the disk (power loss): drop them, so
        // their files look incomplete and are re-indexed.
        let lost =
            self.conn.execute("DELETE FROM chunks WHERE slot >= ?1", [slots as i64]).map_err(sql(&self.db_path))?;
        if lost > 0 && has_current_lexical_index(&self.conn, &self.db_path)? {
            self.conn.execute("DELETE FROM lexical WHERE rowid >= ?1", [slots as i64]).map_err(sql(&self.db_path))?;
        }
        if lost > 0 {
            tracing::warn!(rows = lost, "dropped chunks whose vectors were lost; their files will be re-indexed");
        }
        let live: HashSet<u64> = {
            let mut stmt = self.conn.prepare("SELECT slot FROM chunks").map_err(sql(&self.db_path))?;
            let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).map_err(sql(&self.db_path))?;
            rows.map(|r| r.map(|s| s as u64)).collect::<rusqlite::Result<_>>().map_err(sql(&self.db_path))?
        };
        // The files never shrink: a query in another process may be scanning
        // a mapping of them, and reading past a shortened file is SIGBUS.
        // Slots past the last live one stay, free (NaN) and first in line.
        let end = self.exact.slots()?.max(self.compact.slots()?).max(self.bits.slots()?);
        self.free = (0..end).rev().filter(|s| !live.contains(s)).collect();
        for &slot in &self.free {
            self.mark_free(slot)?;
        }
        self.next_slot = end;
        Ok(())
    }

    pub(crate) fn mark_free(&self, slot: u64) -> Result<(), LocalStoreError> {
        self.bits.mark_free(slot)?;
        self.compact.mark_free(slot)?;
        self.exact.mark_free(slot)
    }

    /// Writes the two-bit codes of every slot of the vector file that has
    /// none: a store made before these codes existed (or with the sign bits
    /// of an older rag) gets them from its next writer,
    /// from the vectors it holds, without re-embedding. A store last written
    /// by a version of rag that kept no codes (its commit left the stamp
    /// behind) has all of them written again. (A writer killed mid-write
    /// leaves slots no row points at; they are coded here and freed by
    /// `repair` after.)
    pub(crate) fn fill_bits(&mut self) -> Result<(), LocalStoreError> {
        let current = bits_are_current(&self.conn, &self.db_path)?;
        let (have, end) = (if current { self.bits.slots()? } else { 0 }, self.exact.slots()?);
        if have >= end {
            // Stamped already, the common case: no write at every open.
            return if current { Ok(()) } else { self.stamp_bits() };
        }
        self.bits_recached = self.bits_recached.min(large_pages::whole_blocks(0, have * self.bits.stride).end);
        let dim = self.config.dimension;
        let mut raw = vec![0u8; dim * 4];
        let mut vector = vec![0.0f32; dim];
        let mut code = Vec::with_capacity(bits_stride(dim));
        for slot in have..end {
            read_at(&self.exact.file, &mut raw, slot * self.exact.stride).map_err(io(&self.exact.path))?;
            for (value, bytes) in vector.iter_mut().zip(raw.chunks_exact(4)) {
                *value = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            }
            encode_bits(&vector, &mut code);
            if vector.first().is_some_and(|x| x.is_nan()) {
                code[..4].copy_from_slice(&f32::NAN.to_le_bytes());
            }
            self.bits.write(slot, &code)?;
        }
        self.bits.sync()?;
        self.recache_bits();
        tracing::info!(slots = end - have, "wrote the two-bit codes of vectors stored before them");
        self.stamp_bits()?;
        // The sign bits of an older rag are of no use now. A reader of that
        // version mapping them keeps its mapping; it finds none next time.
        let old = self.bits.path.with_file_name(SIGN_BITS_FILE);
        match fs::remove_file(&old) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io(&old)(err)),
            _ => Ok(()),
        }
    }

    /// Re-caches in huge pages the whole blocks of the two-bit code file
    /// completed since this writer last did, once they are synced: written
    /// a slot at a time, the page cache holds them in small pages, which a
    /// fresh query maps 16 at a fault ([`large_pages`]). Best effort.
    fn recache_bits(&mut self) {
        let blocks = match self.bits.len() {
            Ok(len) => large_pages::whole_blocks(self.bits_recached, len),
            Err(_) => return,
        };
        if let Err(err) = large_pages::recache(&self.bits.file, blocks.clone()) {
            tracing::debug!("cannot re-cache {} in huge pages: {err}", self.bits.path.display());
        }
        self.bits_recached = blocks.end;
    }

    /// Records that the bit codes match the store as last committed.
    fn stamp_bits(&self) -> Result<(), LocalStoreError> {
        let updated = read_setting(&self.conn, &self.db_path, "updated_at")?.unwrap_or_default();
        write_setting(&self.conn, &self.db_path, BITS_STAMP, &updated)
    }

    pub(crate) fn allocate(&mut self) -> u64 {
        self.free.pop().unwrap_or_else(|| {
            self.next_slot += 1;
            self.next_slot - 1
        })
    }

    pub(crate) fn write(&mut self, mut batch: WriteBatch) -> Result<()> {
        let dim = self.config.dimension;
        // The last of several upserts of one key wins, as it would in separate writes.
        let mut seen = HashSet::new();
        if batch.upserts.iter().any(|r| !seen.insert(r.chunk.key.clone())) {
            let mut last: HashMap<String, VectorRecord> = HashMap::new();
            let mut order = Vec::new();
            for record in batch.upserts.drain(..) {
                if last.insert(record.chunk.key.clone(), record.clone()).is_none() {
                    order.push(record.chunk.key);
                }
            }
            batch.upserts = order.into_iter().filter_map(|key| last.remove(&key)).collect();
        }
        let mut prepared = Vec::with_capacity(batch.upserts.len());
        for record in &batch.upserts {
            if record.vector.len() != dim {
                return Err(Error::DimensionMismatch {
                    context: format!("chunk {} of {}", record.chunk.chunk_index, record.chunk.source_path),
                    expected: dim,
                    actual: record.vector.len(),
                });
            }
            let vector = prepare_vector(self.config.metric, &record.vector).map_err(|reason| {
                Error::InvalidInput(format!(
                    "the vector of chunk {} of {} {reason}",
                    record.chunk.chunk_index, record.chunk.source_path
                ))
            })?;
            prepared.push(vector);
        }
        let allocated: Vec<u64> = prepared.iter().map(|_| self.allocate()).collect();
        // The full-text terms are computed on the other cores while this
        // thread writes and syncs the vectors.
        let outcome = std::thread::scope(|scope| {
            let upserts = &batch.upserts;
            let terms = scope.spawn(move || terms_in_parallel(upserts));
            let written = self.write_vectors(&prepared, &allocated);
            let terms = terms.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            written?;
            self.commit(&batch, &terms, &allocated)
        });
        match outcome {
            Ok(freed) => {
                for slot in freed {
                    self.mark_free(slot)?;
                    self.free.push(slot);
                }
                self.recache_bits();
                Ok(())
            }
            Err(err) => {
                for &slot in &allocated {
                    let _ = self.mark_free(slot);
                    self.free.push(slot);
                }
                Err(err.into())
            }
        }
    }

    /// Records files that could not be read and forgets others, in one transaction.
    pub(crate) fn remember_unreadable(
        &mut self,
        unreadable: &[UnreadableFile],
        forget: &[String],
    ) -> Result<(), LocalStoreError> {
        let db = self.db_path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql(&db))?;
        tx.execute(UNREADABLE_TABLE, []).map_err(sql(&db))?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM unreadable WHERE path = ?1").map_err(sql(&db))?;
            for path in forget {
                delete.execute([path]).map_err(sql(&db))?;
            }
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO unreadable (path, content_hash, reason, reader) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql(&db))?;
            for file in unreadable {
                insert.execute(params![file.path, file.content_hash, file.reason, file.reader]).map_err(sql(&db))?;
            }
        }
        tx.commit().map_err(sql(&db))
    }

    /// Writes the vectors into their new slots and syncs the three files: done
    /// before the rows that point at them are committed.
    pub(crate) fn write_vectors(&self, vectors: &[Vec<f32>], slots: &[u64]) -> Result<(), LocalStoreError> {
        let mut bytes = Vec::with_capacity(self.exact.stride as usize);
        for (vector, &slot) in vectors.iter().zip(slots) {
            bytes.clear();
            bytes.extend(vector.iter().flat_map(|x| x.to_le_bytes()));
            self.exact.write(slot, &bytes)?;
            scan::quantize(vector, &mut bytes);
            self.compact.write(slot, &bytes)?;
            encode_bits(vector, &mut bytes);
            self.bits.write(slot, &bytes)?;
        }
        if !vectors.is_empty() {
            self.exact.sync()?;
            self.compact.sync()?;
            self.bits.sync()?;
        }
        Ok(())
    }

    /// Commits the rows (and their full-text terms) of vectors already
    /// written; returns the slots the committed rows no longer use.
    pub(crate) fn commit(
        &mut self,
        batch: &WriteBatch,
        terms: &[(String, String)],
        slots: &[u64],
    ) -> Result<Vec<u64>, LocalStoreError> {
        let db = self.db_path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql(&db))?;
        let mut freed = Vec::new();
        {
            let mut find = tx.prepare_cached("SELECT slot FROM chunks WHERE key = ?1").map_err(sql(&db))?;
            let mut delete = tx.prepare_cached("DELETE FROM chunks WHERE key = ?1").map_err(sql(&db))?;
            let mut unindex = tx.prepare_cached("DELETE FROM lexical WHERE rowid = ?1").map_err(sql(&db))?;
            let mut index =
                tx.prepare_cached("INSERT INTO lexical (rowid, terms, names) VALUES (?1, ?2, ?3)").map_err(sql(&db))?;
            let mut insert = tx
                .prepare_cached(&format!(
                    "INSERT INTO chunks (slot, {CHUNK_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ))
                .map_err(sql(&db))?;
            let upserted: HashSet<&str> = batch.upserts.iter().map(|r| r.chunk.key.as_str()).collect();
            for key in batch.deletes.iter().map(String::as_str).chain(upserted.iter().copied()) {
                if let Some(slot) = find.query_row([key], |r| r.get::<_, i64>(0)).optional().map_err(sql(&db))? {
                    delete.execute([key]).map_err(sql(&db))?;
                    unindex.execute([slot]).map_err(sql(&db))?;
                    freed.push(slot as u64);
                }
            }
            // Front matter is stored once a file, on its first chunk.
            let firsts: HashMap<&str, &rag_core::store::Chunk> = batch
                .upserts
                .iter()
                .filter(|r| r.chunk.chunk_index == 0)
                .map(|r| (r.chunk.source_path.as_str(), &r.chunk))
                .collect();
            for ((record, &slot), (terms, names)) in batch.upserts.iter().zip(slots).zip(terms) {
                let c = &record.chunk;
                let metadata = stored_metadata(c, firsts.get(c.source_path.as_str()).copied());
                insert
                    .execute(params![
                        slot as i64,
                        c.key,
                        c.source_path,
                        c.chunk_index as i64,
                        c.total_chunks as i64,
                        c.line_start as i64,
                        c.line_end as i64,
                        c.byte_start as i64,
                        c.byte_end as i64,
                        c.content_hash,
                        c.language,
                        c.text,
                        metadata,
                        record.indexed_at,
                    ])
                    .map_err(sql(&db))?;
                index.execute(params![slot as i64, terms, names]).map_err(sql(&db))?;
            }
        }
        let stamp = now_unix().to_string();
        write_setting(&tx, &db, "updated_at", &stamp)?;
        write_setting(&tx, &db, BITS_STAMP, &stamp)?;
        tx.commit().map_err(sql(&db))?;
        Ok(freed)
    }
}

/// The full-text terms of each record, computed on every core: the writer
/// is one thread, and tokenizing is the larger part of its work.
pub(crate) fn terms_in_parallel(records: &[VectorRecord]) -> Vec<(String, String)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let both = |r: &VectorRecord| (index_terms(&r.chunk), name_terms(&r.chunk));
    if threads == 1 || records.len() < 64 {
        return records.iter().map(both).collect();
    }
    let per = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> =
            records.chunks(per).map(|part| scope.spawn(move || part.iter().map(both).collect::<Vec<_>>())).collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}
