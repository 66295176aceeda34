//! [`Writer`]: the single writer of a store. It holds the lock file, puts
//! new vectors in free slots and syncs them before the SQLite transaction
//! that points chunks at them commits, so a crash at any point leaves a
//! store that opens and answers.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::ops::Range;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use rag_core::backend::{UnreadableFile, VectorRecord, WriteBatch};
use rag_core::lexical::{index_terms, name_terms};
use rag_core::store::{StoreConfig, now_unix};
use rag_core::{Error, Result};

use crate::centre::{Centre, CentreRead};
use crate::codes::Codes;
use crate::error::{LocalStoreError, io, sql};
use crate::files::{COMPACT_FILE, LEGACY_SIGN_BITS_FILE, LENGTHS_FILE, LOCK_FILE, VECTORS_FILE};
use crate::fulltext::{build_lexical_index, has_current_lexical_index};
use crate::large_pages;
use crate::lengths::{
    LENGTH_STRIDE, LENGTHS_STAMP, column_sizes_total, encode_length, indexed_length, lengths_are_current,
};
use crate::reader::prepare_vector;
use crate::scan;
use crate::schema::{
    CHUNK_COLUMNS, UNREADABLE_TABLE, delete_setting, open_db, read_config, stamp_as_current, stored_metadata,
    write_setting,
};
use crate::slots::{SlotFile, decode_floats, read_at};

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
    /// Their codes, one file a kind ([`Codes::ALL`]): what a query scans.
    pub(crate) codes: [CodeFile; 2],
    /// What the codes are coded around ([`crate::centre`]).
    pub(crate) centre: Centre,
    /// Vectors written since [`centre`](Self::centre) was taken, as the
    /// settings count them ([`Centre::is_due`]).
    pub(crate) centre_written: u64,
    /// Whether every slot's codes are coded around [`centre`](Self::centre),
    /// so a commit may stamp them current: false from the transaction that
    /// records a new centre until every slot is coded again around it.
    pub(crate) codes_coded: bool,
    /// Each slot's token count in the full-text index ([`crate::lengths`]).
    pub(crate) lengths: SlotFile,
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
        let [two_bit, signs] = Codes::ALL;
        let codes = [CodeFile::open(dir, two_bit, config.dimension)?, CodeFile::open(dir, signs, config.dimension)?];
        let lengths = SlotFile::open(dir.join(LENGTHS_FILE), LENGTH_STRIDE)?;
        // A version without centres stamped the codes it wrote with its own
        // stamp, which this one removes at every open: where one is found,
        // such a version wrote since (coding the vectors themselves, even if
        // it committed nothing), and every slot is coded again below.
        for codes in Codes::ALL {
            if delete_setting(&conn, &db_path, codes.uncentred_stamp())? {
                delete_setting(&conn, &db_path, codes.stamp())?;
            }
        }
        let (centre, centre_usable) = match Centre::read(&conn, &db_path, config.dimension)? {
            CentreRead::Found(centre) => (centre, true),
            CentreRead::Absent => (Centre::origin(config.dimension), true),
            CentreRead::Unusable => (Centre::origin(config.dimension), false),
        };
        let centre_written = Centre::read_written(&conn, &db_path)?;
        let mut writer = Writer {
            _lock: lock,
            conn,
            db_path,
            exact,
            compact,
            codes,
            centre,
            centre_written,
            codes_coded: centre_usable,
            lengths,
            config,
            free: Vec::new(),
            next_slot: 0,
        };
        writer.repair()?;
        if !has_current_lexical_index(&writer.conn, &writer.db_path)? {
            let chunks = build_lexical_index(&mut writer.conn, &writer.db_path)?;
            tracing::info!(chunks, "built the full-text index of store {store:?}");
        }
        writer.fill_lengths()?;
        Ok(writer)
    }

    /// Rebuilds the free list from SQLite (the truth) and marks every slot no
    /// row points at as free, undoing whatever a killed writer left behind.
    /// Then codes whatever the code files lack ([`fill_codes`](Self::fill_codes)),
    /// around a new centre when one is due ([`centre_if_due`](Self::centre_if_due)).
    pub(crate) fn repair(&mut self) -> Result<(), LocalStoreError> {
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
        let mut end = self.exact.slots()?.max(self.compact.slots()?);
        for codes in &self.codes {
            end = end.max(codes.file.slots()?);
        }
        self.free = (0..end).rev().filter(|s| !live.contains(s)).collect();
        self.next_slot = end;
        // Before the free slots are marked, which would lengthen a code file
        // that lacks them.
        if !self.codes_coded {
            tracing::warn!("the centre of the codes is unreadable; coding every slot around a new one");
            self.centre_codes()?;
        } else if !self.centre_if_due()? {
            self.fill_codes()?;
        }
        for &slot in &self.free {
            self.mark_free(slot)?;
        }
        Ok(())
    }

    /// Live vectors: the slots in use.
    fn live(&self) -> u64 {
        self.next_slot.saturating_sub(self.free.len() as u64)
    }

    /// Codes every slot around a centre taken now when one is due
    /// ([`Centre::is_due`]); returns whether it did.
    pub(crate) fn centre_if_due(&mut self) -> Result<bool, LocalStoreError> {
        if !self.centre.is_due(self.live(), self.centre_written) {
            return Ok(false);
        }
        self.centre_codes()?;
        Ok(true)
    }

    /// Takes the centre of the store as it is now, records it and
    /// withdraws the codes' stamps in one transaction, then codes every
    /// slot around it and stamps them again ([`fill_codes`](Self::fill_codes)).
    /// Killed in between, the store's next writer finds the codes stale and
    /// codes them whole around the recorded centre; readers meanwhile scan
    /// the int8 codes.
    fn centre_codes(&mut self) -> Result<(), LocalStoreError> {
        let live = self.live();
        let free: HashSet<u64> = self.free.iter().copied().collect();
        let centre = Centre::sample(&self.exact, self.config.dimension, self.exact.slots()?, &free, live)?;
        let db = self.db_path.clone();
        self.codes_coded = false;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql(&db))?;
        centre.write(&tx, &db)?;
        Centre::write_written(&tx, &db, 0)?;
        for codes in Codes::ALL {
            delete_setting(&tx, &db, codes.stamp())?;
        }
        tx.commit().map_err(sql(&db))?;
        self.centre = centre;
        self.centre_written = 0;
        tracing::info!(live, "coding every slot's codes around the store's centre");
        self.fill_codes()
    }

    pub(crate) fn mark_free(&self, slot: u64) -> Result<(), LocalStoreError> {
        for codes in &self.codes {
            codes.file.mark_free(slot)?;
        }
        self.compact.mark_free(slot)?;
        self.exact.mark_free(slot)
    }

    /// Writes the codes of every slot of the vector file that a code file
    /// lacks: a store made before a kind of code existed (or with the sign
    /// bits of an older rag) gets it from its next writer, from the vectors
    /// it holds, without re-embedding, each vector read once for every kind
    /// missing it. A code file last written by a version of rag that kept no
    /// such codes (its commit left the stamp behind) is written again
    /// whole. (A writer killed mid-write leaves slots no row points at; they
    /// are coded here and freed by `repair` after.)
    pub(crate) fn fill_codes(&mut self) -> Result<(), LocalStoreError> {
        let end = self.exact.slots()?;
        let mut have = [0u64; 2];
        for (codes, have) in self.codes.iter().zip(&mut have) {
            let current = codes.kind.are_current(&self.conn, &self.db_path)?;
            *have = if current { codes.file.slots()?.min(end) } else { 0 };
            if !current && *have >= end {
                // Nothing to write (no vectors): stamped, so no write at every open.
                codes.stamp(&self.conn, &self.db_path)?;
            }
        }
        let from = have.iter().copied().min().unwrap_or(end);
        if from >= end {
            self.codes_coded = true;
            return Ok(());
        }
        let dim = self.config.dimension;
        let mut raw = Vec::new();
        // A block of slots at a time: one read of the vectors and one write
        // a kind, each block's vectors coded on every core.
        for block in (from..end).step_by(FILL_BLOCK_SLOTS) {
            let block_end = (block + FILL_BLOCK_SLOTS as u64).min(end);
            raw.resize((block_end - block) as usize * dim * 4, 0);
            read_at(&self.exact.file, &mut raw, block * self.exact.stride).map_err(io(&self.exact.path))?;
            for (codes, &have) in self.codes.iter().zip(&have) {
                // The part of the block this kind lacks.
                let first = have.clamp(block, block_end);
                if first == block_end {
                    continue;
                }
                let vectors = &raw[(first - block) as usize * dim * 4..];
                codes.file.write(first, &code_in_parallel(codes.kind, &self.centre, vectors, dim))?;
            }
        }
        for (codes, &have) in self.codes.iter_mut().zip(&have) {
            if have >= end {
                continue;
            }
            codes.file.sync()?;
            codes.recached = codes.recached.min(large_pages::whole_blocks(0, have * codes.file.stride).end);
            codes.recache();
            tracing::info!(slots = end - have, "wrote the {} of the stored vectors", codes.kind.describe());
            codes.stamp(&self.conn, &self.db_path)?;
            if codes.kind == Codes::TwoBit {
                // The sign bits of an older rag are of no use now. A reader of that
                // version mapping them keeps its mapping; it finds none next time.
                let old = codes.file.path.with_file_name(LEGACY_SIGN_BITS_FILE);
                match fs::remove_file(&old) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(io(&old)(err)),
                    _ => {}
                }
            }
        }
        self.codes_coded = true;
        Ok(())
    }

    /// Writes the lengths file whole from the full-text index when it is
    /// not current: a store made before it, one an older rag committed to
    /// since, or one whose index was just rebuilt. One sequential read of
    /// FTS5's sizes and one write (20 MB at 10M chunks); slots no row uses
    /// get 0, which no query reads.
    pub(crate) fn fill_lengths(&mut self) -> Result<(), LocalStoreError> {
        if lengths_are_current(&self.conn, &self.db_path)? {
            return Ok(());
        }
        let db = &self.db_path;
        let mut bytes = vec![0u8; usize::try_from(self.next_slot).unwrap_or(0) * LENGTH_STRIDE];
        let mut chunks = 0u64;
        {
            let mut stmt = self.conn.prepare("SELECT id, sz FROM lexical_docsize").map_err(sql(db))?;
            let mut rows = stmt.query([]).map_err(sql(db))?;
            while let Some(row) = rows.next().map_err(sql(db))? {
                let (slot, sizes): (i64, Vec<u8>) = (row.get(0).map_err(sql(db))?, row.get(1).map_err(sql(db))?);
                let Ok(at) = usize::try_from(slot).map(|slot| slot * LENGTH_STRIDE) else { continue };
                if bytes.len() < at + LENGTH_STRIDE {
                    bytes.resize(at + LENGTH_STRIDE, 0);
                }
                let tokens = column_sizes_total(&sizes).unwrap_or(u64::MAX);
                bytes[at..at + LENGTH_STRIDE].copy_from_slice(&encode_length(tokens));
                chunks += 1;
            }
        }
        if !bytes.is_empty() {
            self.lengths.write(0, &bytes)?;
            self.lengths.sync()?;
        }
        stamp_as_current(&self.conn, db, LENGTHS_STAMP)?;
        tracing::info!(chunks, "wrote the full-text lengths of the chunks stored before them");
        Ok(())
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
                for codes in &mut self.codes {
                    codes.recache();
                }
                // Every vector is coded again a bounded number of times
                // as the store grows: once a doubling.
                self.centre_if_due()?;
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

    /// Writes the vectors into their new slots, with their int8 and other
    /// codes, and syncs the files: done before the rows that point at them
    /// are committed.
    pub(crate) fn write_vectors(&self, vectors: &[Vec<f32>], slots: &[u64]) -> Result<(), LocalStoreError> {
        // Slots come from the free list lowest first, then from the end of
        // the files, so a batch is mostly runs of consecutive slots: each run
        // is one write a file, where a write a slot and file was the larger
        // part of a fresh index's time in the writer (four files, 50,000
        // chunks: 200,000 calls).
        debug_assert_eq!(vectors.len(), slots.len(), "one slot a vector");
        let (mut exact, mut compact, mut codes) = (Vec::new(), Vec::new(), [Vec::new(), Vec::new()]);
        let (mut bytes, mut residual) = (Vec::new(), Vec::with_capacity(self.config.dimension));
        let mut at = 0;
        for run in slots.chunk_by(|a, b| a.checked_add(1) == Some(*b)) {
            exact.clear();
            compact.clear();
            codes.iter_mut().for_each(Vec::clear);
            for vector in &vectors[at..at + run.len()] {
                exact.extend(vector.iter().flat_map(|x| x.to_le_bytes()));
                scan::quantize(vector, &mut bytes);
                compact.extend_from_slice(&bytes);
                self.centre.residual(vector, &mut residual);
                for (file, out) in self.codes.iter().zip(&mut codes) {
                    file.kind.encode(&residual, &mut bytes);
                    out.extend_from_slice(&bytes);
                }
            }
            at += run.len();
            self.exact.write(run[0], &exact)?;
            self.compact.write(run[0], &compact)?;
            for (file, bytes) in self.codes.iter().zip(&codes) {
                file.file.write(run[0], bytes)?;
            }
        }
        if !vectors.is_empty() {
            self.exact.sync()?;
            self.compact.sync()?;
            for codes in &self.codes {
                codes.file.sync()?;
            }
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
        let mut lengths = Vec::with_capacity(slots.len());
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
                // FTS5's own count, written just now (a chunk too long for
                // the file stores the marker that sends a query to FTS5's).
                lengths.push(encode_length(indexed_length(&tx, &db, slot as i64)?.unwrap_or(u64::MAX)));
            }
        }
        // Synced before the commit, as the vectors are: a committed row's
        // length is on the disk. Its slot was free, so no committed row
        // reads what this overwrites.
        write_lengths(&self.lengths, slots, &lengths)?;
        let stamp = now_unix().to_string();
        write_setting(&tx, &db, "updated_at", &stamp)?;
        if self.codes_coded {
            for codes in Codes::ALL {
                write_setting(&tx, &db, codes.stamp(), &stamp)?;
            }
        }
        write_setting(&tx, &db, LENGTHS_STAMP, &stamp)?;
        // Counted from the first centre on; before it, the store's size
        // alone decides when one is taken.
        let written = (self.centre.live > 0).then(|| self.centre_written.saturating_add(batch.upserts.len() as u64));
        if let Some(written) = written {
            Centre::write_written(&tx, &db, written)?;
        }
        tx.commit().map_err(sql(&db))?;
        self.centre_written = written.unwrap_or(self.centre_written);
        Ok(freed)
    }
}

/// Slots [`Writer::fill_codes`] reads and codes at a time (12 MB of
/// vectors at 768 dimensions).
const FILL_BLOCK_SLOTS: usize = 4096;

/// The codes of `kind` of the vectors in `raw` (little-endian `f32`, `dim`
/// a vector), each less `centre`, back to back into `out`, split among the
/// cores. A free slot (NaN) keeps a free code (NaN factor).
fn code_in_parallel(kind: Codes, centre: &Centre, raw: &[u8], dim: usize) -> Vec<u8> {
    let vectors = raw.len() / (dim * 4).max(1);
    on_every_core(vectors, 128, |part| {
        let (mut vector, mut residual, mut code) = (vec![0.0f32; dim], Vec::with_capacity(dim), Vec::new());
        let mut out = Vec::with_capacity(part.len() * kind.stride(dim));
        for raw in raw[part.start * dim * 4..part.end * dim * 4].chunks_exact(dim * 4) {
            decode_floats(raw, &mut vector);
            centre.residual(&vector, &mut residual);
            kind.encode(&residual, &mut code);
            if vector.first().is_some_and(|x| x.is_nan()) {
                code[..4].copy_from_slice(&f32::NAN.to_le_bytes());
            }
            out.extend_from_slice(&code);
        }
        out
    })
}

/// Runs `part` on one contiguous range of `0..len` per core (at most 8,
/// none shorter than `min_len`) and joins what they return, in order; the
/// writer's own thread takes a single range. A part's panic is resumed
/// here, so nothing is silently left out.
fn on_every_core<R: Send>(len: usize, min_len: usize, part: impl Fn(Range<usize>) -> Vec<R> + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let threads = cores.min(len.div_ceil(min_len.max(1))).max(1);
    if threads == 1 {
        return part(0..len);
    }
    let per = len.div_ceil(threads);
    let part = &part;
    std::thread::scope(|scope| {
        let parts: Vec<_> =
            (0..len).step_by(per).map(|start| scope.spawn(move || part(start..(start + per).min(len)))).collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

/// Writes the lengths of chunks stored in `slots`, a call a run of
/// consecutive slots, and syncs the file.
fn write_lengths(file: &SlotFile, slots: &[u64], lengths: &[[u8; LENGTH_STRIDE]]) -> Result<(), LocalStoreError> {
    debug_assert_eq!(slots.len(), lengths.len(), "one length a slot");
    let mut bytes = Vec::new();
    let mut at = 0;
    for run in slots.chunk_by(|a, b| a.checked_add(1) == Some(*b)) {
        bytes.clear();
        lengths[at..at + run.len()].iter().for_each(|length| bytes.extend_from_slice(length));
        at += run.len();
        file.write(run[0], &bytes)?;
    }
    if !slots.is_empty() {
        file.sync()?;
    }
    Ok(())
}

/// A code file as the writer keeps it.
#[derive(Debug)]
pub(crate) struct CodeFile {
    pub(crate) kind: Codes,
    pub(crate) file: SlotFile,
    /// Where the blocks of the file this writer has not yet re-cached in
    /// huge pages begin ([`large_pages`]).
    recached: u64,
}

impl CodeFile {
    fn open(dir: &Path, kind: Codes, dim: usize) -> Result<Self, LocalStoreError> {
        let file = SlotFile::open(dir.join(kind.file_name()), kind.stride(dim))?;
        // A block the last writer left part-written is re-cached once full.
        let recached = large_pages::whole_blocks(0, file.len()?).end;
        Ok(Self { kind, file, recached })
    }

    /// Re-caches in huge pages the whole blocks of the file completed since
    /// this writer last did, once they are synced: written a slot at a time,
    /// the page cache holds them in small pages, which a fresh query maps 16
    /// at a fault ([`large_pages`]). Best effort.
    fn recache(&mut self) {
        let blocks = match self.file.len() {
            Ok(len) => large_pages::whole_blocks(self.recached, len),
            Err(_) => return,
        };
        if let Err(err) = large_pages::recache(&self.file.file, blocks.clone()) {
            tracing::debug!("cannot re-cache {} in huge pages: {err}", self.file.path.display());
        }
        self.recached = blocks.end;
    }

    /// Records that the codes match the store as last committed.
    fn stamp(&self, conn: &Connection, db: &Path) -> Result<(), LocalStoreError> {
        stamp_as_current(conn, db, self.kind.stamp())
    }
}

/// The full-text terms of each record, computed on every core: the writer
/// is one thread, and tokenizing is the larger part of its work.
pub(crate) fn terms_in_parallel(records: &[VectorRecord]) -> Vec<(String, String)> {
    on_every_core(records.len(), 32, |part| {
        records[part].iter().map(|r| (index_terms(&r.chunk), name_terms(&r.chunk))).collect()
    })
}
