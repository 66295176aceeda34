//! [`Reader`]: what a query needs of a store (its database and its mapped
//! vector files), and the vector search over them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use memmap2::Mmap;
use rusqlite::{Connection, OptionalExtension};

use rag_core::backend::QueryRequest;
use rag_core::store::{Chunk, Hit, Metric, StoreConfig};
use rag_core::{Error, Result};

use crate::bits::{BitCodes, top_k_bits, top_k_bits_among};
use crate::codes::Codes;
use crate::error::{LocalStoreError, io, sql};
use crate::files::{COMPACT_FILE, LENGTHS_FILE, VECTORS_FILE};
use crate::large_pages;
use crate::lengths::lengths_are_current;
use crate::scan;
use crate::schema::{CHUNK_SELECT, open_db, read_config, row_to_chunk};
use crate::signs::{sign_candidates, top_k_signs};
use crate::slots::{Wait, read_at_if};

/// What a query needs: the database and the mapped vectors. Shared by
/// concurrent searches of one store: the vector files are read without a
/// lock, and the connection is taken only for what needs SQLite (a hybrid
/// query's full-text arm runs while its vector arm scans; in a large store
/// the vector arm's rows are read on a second connection meanwhile).
pub(crate) struct Reader {
    conn: Mutex<Connection>,
    /// A second connection for reading rows while another search holds the
    /// first ([`rows_conn`](Self::rows_conn)), opened the first time one does.
    spare: OnceLock<Mutex<Connection>>,
    /// The slots from which a store opens the spare connection:
    /// [`SPARE_CONNECTION_MIN_SLOTS`] (tests lower it).
    pub(crate) spare_from_slots: usize,
    /// The slots from which a query scans the sign codes first:
    /// [`SIGN_STAGE_MIN_SLOTS`] (tests lower it).
    pub(crate) sign_from_slots: usize,
    /// The largest two-bit code file whose sign-stage candidates are read
    /// through the mapping: [`MAPPED_CANDIDATES_MAX_BYTES`] (tests lower it).
    pub(crate) mapped_candidates_max_bytes: usize,
    pub(crate) db_path: PathBuf,
    pub(crate) config: StoreConfig,
    pub(crate) map: Option<Mmap>,
    pub(crate) compact: Option<Mmap>,
    /// The two-bit codes, which a vector query scans when they cover every
    /// slot: mapped by the first query that needs them, so a full-text
    /// query never maps them.
    pub(crate) bits: MappedCodes,
    /// The sign codes, which a large store's vector query scans first; so mapped.
    pub(crate) signs: MappedCodes,
    /// The slots the last filter passed: the two arms of a filtered hybrid
    /// search ask for the same set.
    last_filter: Mutex<Option<PassedFilter>>,
    /// The store's folder.
    pub(crate) dir: PathBuf,
    /// The exact vectors, for reading a few of them with `pread`.
    pub(crate) exact: Option<File>,
    /// The int8 codes, for re-scoring a query's candidates with `pread`.
    pub(crate) compact_file: Option<File>,
    /// The two-bit codes, for reading the sign stage's candidates with
    /// `pread`: opened by the first query that runs it.
    pub(crate) bits_file: OnceLock<Option<File>>,
    /// The lengths file ([`crate::lengths`]), mapped by the first
    /// full-text query.
    pub(crate) lengths: StampedFile,
    /// Whether full-text queries compute BM25 here from the lengths file
    /// when it is current (tests turn it off to compare with FTS5's).
    pub(crate) bm25_from_lengths: bool,
}

/// A file derived from the chunks that a stamp setting vouches for (a code
/// file, the lengths file), as a reader keeps it: whether it matches the
/// last commit (else it is not used), and its mapping, made by the first
/// query that needs it.
pub(crate) struct StampedFile {
    path: PathBuf,
    pages: Pages,
    pub(crate) current: bool,
    pub(crate) map: OnceLock<Option<Mmap>>,
}

impl StampedFile {
    fn new(path: PathBuf, pages: Pages, current: bool) -> Self {
        Self { path, pages, current, map: OnceLock::new() }
    }

    /// The file's bytes when it is current, mapped the first time (without
    /// populating: a scan's threads fault its pages in side by side); `None`
    /// when it is stale, missing or cannot be mapped.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        self.map
            .get_or_init(|| {
                if !self.current {
                    return None;
                }
                map_file(&self.path, self.pages)
                    .inspect_err(|err| tracing::debug!("cannot map {}: {err}; not using it", self.path.display()))
                    .ok()
                    .flatten()
            })
            .as_deref()
    }
}

/// A code file as a reader keeps it: its kind and the file, mapped in huge
/// pages where the kernel can ([`large_pages`]), so a fault maps 2 MiB
/// rather than 64 KiB.
pub(crate) struct MappedCodes {
    kind: Codes,
    pub(crate) file: StampedFile,
}

impl MappedCodes {
    fn new(kind: Codes, dir: &Path, conn: &Connection, db: &Path) -> Result<Self, LocalStoreError> {
        let current = kind.may_be_read(conn, db)?;
        Ok(Self { kind, file: StampedFile::new(dir.join(kind.file_name()), Pages::Huge, current) })
    }

    /// The codes when they are current and cover `floats` (the exact
    /// file's length in floats) of `dim` dimensions.
    fn bytes(&self, dim: usize, floats: usize) -> Option<&[u8]> {
        let stride = self.kind.stride(dim);
        let codes = self.file.bytes()?;
        let slots = codes.len() / stride;
        (slots * dim >= floats).then(|| &codes[..slots * stride])
    }
}

/// How many candidates the two-bit scan hands to the int8 re-scoring, for
/// `want` re-scored ones out of `slots`: twice as many, and at least
/// `0.5 × √slots`. The codes rank roughly, and the true neighbours'
/// estimates fall among more look-alikes as a store grows. On random
/// vectors of 768 dimensions (the hardest case), recall@10 of the scan
/// alone reached 0.994 at 100 candidates of 100,000 and 1.0 at 200 of
/// 1,000,000 for stored vectors as queries (`rag-bench codes`); for random
/// queries, the whole query's recall@10 at 1,000,000 was 0.995 with 300 and
/// 1.0 with 500 (`rag-bench query`). Real model vectors need fewer. (Sign
/// bits needed 2,000 and 4,000.)
pub(crate) fn bit_candidates(want: usize, slots: usize) -> usize {
    want.saturating_mul(BIT_OVERSAMPLING).max(slots.isqrt().saturating_mul(BIT_ROOT_TENTHS) / 10)
}

/// See [`bit_candidates`].
const BIT_OVERSAMPLING: usize = 2;
/// See [`bit_candidates`]: tenths of the square root.
const BIT_ROOT_TENTHS: usize = 5;
/// Threads that read a query's candidates from the int8 file: more than
/// the cores, because a read of a page the cache no longer holds waits on
/// the disk, and the disk serves several at once (at 1M chunks, 300
/// mostly uncached reads took 4.3 ms on 2 threads and 3.0 ms on 8).
const READ_THREADS: usize = 8;
/// The bit stage runs when it keeps at most one slot in this many; in a
/// smaller store the int8 scan is as quick and exact enough.
const BIT_STAGE_MIN_CUT: usize = 8;

/// Stores of at least this many slots scan the sign codes first
/// ([`Reader::sign_stage`]). In memory on two threads, the sign stage and
/// the two-bit ranking of its candidates took 1.42 ms against 1.43 for the
/// two-bit scan at 250,000 slots of 384 dimensions, 2.54 against 2.96 at
/// 500,000 (`rag-bench scan`; 768 dimensions: 2.16 / 2.33, 3.56 / 4.63).
const SIGN_STAGE_MIN_SLOTS: usize = 500_000;

/// The largest two-bit code file whose sign-stage candidates are read
/// through its mapping. Mapped, a candidate costs a page fault or less (1
/// ms for 8,000 at 1M × 768 in huge pages, where `pread` took 4), but its
/// page then counts in the query's memory, a huge page each: the whole
/// file at 10M × 384 (1.1 GB). Read, 25,000 cost 11 to 16 ms there in
/// either kind of page, where faults cost 24 to 79 ms in small ones.
const MAPPED_CANDIDATES_MAX_BYTES: usize = 512 << 20;

/// The sign stage runs when it keeps at most one slot in this many.
const SIGN_STAGE_MIN_CUT: usize = 16;

/// Stores of at least this many slots read a query's rows on a second
/// connection while another search holds the first ([`Reader::rows_conn`]).
const SPARE_CONNECTION_MIN_SLOTS: usize = 65_536;

/// The pages a file is asked to be cached and mapped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pages {
    /// Huge pages where the kernel can, for a file queries scan whole
    /// ([`large_pages::advise_scanned_whole`]).
    Huge,
    /// Whatever the kernel's readahead makes them.
    AsRead,
}

/// Maps a file read-only, in `pages`; `None` when it is missing or empty.
pub(crate) fn map_file(path: &Path, pages: Pages) -> Result<Option<Mmap>, LocalStoreError> {
    match File::open(path) {
        Ok(file) if file.metadata().map_err(io(path))?.len() > 0 => {
            // SAFETY: a writer only grows these files or writes slots in place; it never
            // shrinks them (`Writer::repair` keeps trailing free slots rather than
            // truncating), so every page of this mapping stays backed by the file for the
            // mapping's life, and a deleted store's files are unlinked, not truncated. A
            // concurrent write changes values we read (a slot being reused), never the
            // mapping's validity, and rows are re-checked against SQLite afterwards.
            let map = unsafe { Mmap::map(&file) }.map_err(io(path))?;
            if pages == Pages::Huge {
                large_pages::advise_scanned_whole(&map);
            }
            Ok(Some(map))
        }
        Ok(_) => Ok(None),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io(path)(err)),
    }
}

impl Reader {
    pub(crate) fn open(dir: &Path) -> Result<Self, LocalStoreError> {
        let (conn, db_path) = open_db(dir)?;
        // The settings below in one read transaction: one snapshot of the
        // store (a stamp and the commit it is compared with agree), and one
        // taking of SQLite's read lock where each statement took its own
        // (about a tenth of opening a store).
        let read = conn.unchecked_transaction().map_err(sql(&db_path))?;
        let config = read_config(&conn, &db_path, dir)?;
        let map = map_file(&dir.join(VECTORS_FILE), Pages::AsRead)?;
        // Scanned whole when the bit stage does not run (small or euclidean
        // stores); its candidates are read with `pread`, not through it.
        let compact = map_file(&dir.join(COMPACT_FILE), Pages::Huge)?;
        // Codes a writer of an older rag left stale are not used.
        let bits = MappedCodes::new(Codes::TwoBit, dir, &conn, &db_path)?;
        let signs = MappedCodes::new(Codes::Signs, dir, &conn, &db_path)?;
        let exact = File::open(dir.join(VECTORS_FILE)).ok();
        let compact_file = File::open(dir.join(COMPACT_FILE)).ok();
        let lengths = StampedFile::new(dir.join(LENGTHS_FILE), Pages::AsRead, lengths_are_current(&conn, &db_path)?);
        read.finish().map_err(sql(&db_path))?;
        Ok(Self {
            conn: Mutex::new(conn),
            spare: OnceLock::new(),
            spare_from_slots: SPARE_CONNECTION_MIN_SLOTS,
            sign_from_slots: SIGN_STAGE_MIN_SLOTS,
            mapped_candidates_max_bytes: MAPPED_CANDIDATES_MAX_BYTES,
            db_path,
            config,
            map,
            compact,
            bits,
            signs,
            last_filter: Mutex::new(None),
            dir: dir.to_path_buf(),
            exact,
            compact_file,
            bits_file: OnceLock::new(),
            lengths,
            bm25_from_lengths: true,
        })
    }

    /// The store's connection, for as long as the guard lives.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection when no other search holds it now.
    pub(crate) fn try_conn(&self) -> Option<MutexGuard<'_, Connection>> {
        match self.conn.try_lock() {
            Ok(conn) => Some(conn),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// A connection to read rows with: the store's own when it is free or
    /// the store is small, else a second one. The two arms of a hybrid query
    /// both read SQLite, and the vector arm's rows waited for the whole
    /// full-text search: 75 to 326 ms at 10M chunks for its 100 rows, most
    /// of it waiting; SQLite's WAL lets the two read side by side. A store
    /// under [`SPARE_CONNECTION_MIN_SLOTS`] keeps to one connection, so a
    /// query opens its database once (`tests/opens.rs`): there the wait is
    /// shorter than opening another.
    pub(crate) fn rows_conn(&self) -> Result<MutexGuard<'_, Connection>, LocalStoreError> {
        let slots = self.floats().len() / self.config.dimension.max(1);
        if slots < self.spare_from_slots {
            return Ok(self.conn());
        }
        if let Some(conn) = self.try_conn() {
            return Ok(conn);
        }
        if self.spare.get().is_none() {
            // Two callers may both open one; the second's is dropped.
            let _ = self.spare.set(Mutex::new(open_db(&self.dir)?.0));
        }
        let spare = self.spare.get().unwrap_or(&self.conn);
        Ok(spare.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The exact scores for `query` (prepared by
    /// [`prepare_query`](Self::prepare_query)) of the vectors at `slots`, in
    /// order; NaN where one cannot be read. Read as a query's candidates are
    /// ([`score_exactly`](Self::score_exactly)).
    pub(crate) fn exact_scores_at(&self, slots: &[u64], query: &[f32]) -> Vec<f32> {
        let mut scored: Vec<scan::Scored> = slots.iter().map(|&slot| scan::Scored { score: f32::NAN, slot }).collect();
        self.score_exactly(&mut scored, query);
        scored.into_iter().map(|s| s.score).collect()
    }

    /// `candidates` re-scored on their int8 codes, and the widest error
    /// bound among them ([`scan::CompactQuery::error_bound`]). The codes are
    /// read with `pread` (through the mapping, each random slot faulted in a
    /// large folio of the page cache: 200 MB of RSS for 4,000 candidates),
    /// as [`score_candidates`] does. Slots that cannot be read are left out.
    fn rescore_on_int8(&self, mut candidates: Vec<scan::Scored>, query: &[f32]) -> (Vec<scan::Scored>, f32) {
        let Some(file) = self.compact_file.as_ref() else { return (Vec::new(), 0.0) };
        let query = scan::CompactQuery::new(query, self.config.metric);
        let stride = scan::compact_stride(self.config.dimension);
        let bound = score_candidates(&mut candidates, 16, |candidate, buffer, wait| {
            buffer.resize(stride, 0);
            candidate.score =
                match candidate.slot.checked_mul(stride as u64).map(|at| read_at_if(file, buffer, at, wait)) {
                    Some(Ok(false)) => return None,
                    Some(Ok(true)) => query.estimate(buffer).unwrap_or(f32::NAN),
                    _ => f32::NAN,
                };
            Some(if candidate.score.is_nan() { 0.0 } else { query.error_bound(buffer) })
        });
        candidates.retain(|c| !c.score.is_nan());
        (candidates, bound)
    }

    /// The two-bit code file when it is current and covers every slot of
    /// the exact one ([`MappedCodes::bytes`]).
    pub(crate) fn bits_bytes(&self) -> Option<&[u8]> {
        self.bits.bytes(self.config.dimension, self.floats().len())
    }

    /// The sign code file when it is current and covers every slot of the
    /// exact one ([`MappedCodes::bytes`]).
    pub(crate) fn signs_bytes(&self) -> Option<&[u8]> {
        self.signs.bytes(self.config.dimension, self.floats().len())
    }

    /// The sign codes to scan first, and where to read their candidates'
    /// two-bit codes (`bits`, mapped), for a query that wants `wanted`
    /// two-bit candidates out of `slots`: when the store has at least
    /// [`sign_from_slots`](Self::sign_from_slots) slots, the sign stage
    /// keeps at most one in [`SIGN_STAGE_MIN_CUT`], and the codes cover the
    /// store. Below that, the two-bit scan alone is as quick. The
    /// candidates are read through the mapping when the two-bit file is at
    /// most [`mapped_candidates_max_bytes`](Self::mapped_candidates_max_bytes),
    /// else with `pread`.
    fn sign_stage<'a>(&'a self, wanted: usize, slots: usize, bits: &'a [u8]) -> Option<(&'a [u8], BitCodes<'a>)> {
        let worth =
            slots >= self.sign_from_slots && sign_candidates(wanted, slots).saturating_mul(SIGN_STAGE_MIN_CUT) <= slots;
        if !worth {
            return None;
        }
        let signs = self.signs_bytes()?;
        if bits.len() <= self.mapped_candidates_max_bytes {
            return Some((signs, BitCodes::InMemory(bits)));
        }
        let file = self.bits_file.get_or_init(|| File::open(self.dir.join(Codes::TwoBit.file_name())).ok()).as_ref()?;
        Some((signs, BitCodes::File { file, slots: bits.len() / Codes::TwoBit.stride(self.config.dimension) }))
    }

    /// The compact file when it covers every slot of the exact one.
    pub(crate) fn compact_bytes(&self) -> Option<&[u8]> {
        let stride = scan::compact_stride(self.config.dimension);
        let compact = self.compact.as_deref()?;
        let slots = compact.len() / stride;
        (slots * self.config.dimension >= self.floats().len()).then(|| &compact[..slots * stride])
    }

    pub(crate) fn floats(&self) -> &[f32] {
        let Some(map) = &self.map else { return &[] };
        let whole = map.len() / (self.config.dimension * 4) * self.config.dimension * 4;
        // SAFETY: any bit pattern is a valid f32; the map is page-aligned, so the
        // prefix is empty and the slice is exactly the whole vectors.
        let (prefix, floats, _) = unsafe { map[..whole].align_to::<f32>() };
        if prefix.is_empty() { floats } else { &[] }
    }

    pub(crate) fn vector(&self, slot: u64) -> Option<Vec<f32>> {
        let dim = self.config.dimension;
        let start = usize::try_from(slot).ok()?.checked_mul(dim)?;
        self.floats().get(start..start + dim).map(<[f32]>::to_vec)
    }

    /// A query vector checked against the store and prepared as its vectors are.
    pub(crate) fn prepare_query(&self, vector: &[f32]) -> Result<Vec<f32>> {
        if vector.len() != self.config.dimension {
            return Err(Error::DimensionMismatch {
                context: format!("query of store {:?}", self.config.name),
                expected: self.config.dimension,
                actual: vector.len(),
            });
        }
        prepare_vector(self.config.metric, vector)
            .map_err(|reason| Error::InvalidInput(format!("query vector {reason}")))
    }

    pub(crate) fn query(&self, request: &QueryRequest) -> Result<Vec<Hit>> {
        let dim = self.config.dimension;
        let query = self.prepare_query(&request.vector)?;
        let floats = self.floats();
        let threads = cores();
        let total_slots = floats.len() / dim.max(1);
        let metric = self.config.metric;
        let allowed = match &request.filter {
            Some(filter) => Some(self.allowed_slots(filter, total_slots)?),
            None => None,
        };
        let allowed = allowed.as_deref().map(Vec::as_slice);
        // Candidates come from the bit codes (1/30 of the bytes to read; in
        // a large store, the best of the sign codes', half that),
        // are re-scored on the int8 codes, and the best of those exactly from
        // the f32 vectors. A store whose bit codes do not cover it yet, a
        // euclidean one (signs rank unit vectors; raw ones may share most of
        // theirs) and a small one (where the bit stage would keep much of the
        // store) scan the int8 codes; one without either, the vectors. Slots
        // freed by a writer that was killed before marking them are not in
        // SQLite: ask for more than k and widen if too many were stale.
        let mut want = request.top_k.saturating_mul(8).saturating_add(64);
        let mut first_round = true;
        loop {
            let mut cut_short = false;
            let bit_stage = metric == Metric::Cosine
                && bit_candidates(want, total_slots).saturating_mul(BIT_STAGE_MIN_CUT) <= total_slots;
            let bits = if bit_stage { self.bits_bytes() } else { None };
            let best = match (bits, self.compact_bytes()) {
                (Some(bits), Some(_)) => {
                    let wanted = bit_candidates(want, total_slots);
                    let candidates = match self.sign_stage(wanted, total_slots, bits) {
                        Some((signs, codes)) => {
                            let first = sign_candidates(wanted, total_slots);
                            let first = top_k_signs(signs, dim, &query, first, threads, allowed);
                            top_k_bits_among(codes, dim, &query, metric, &first, wanted, threads)
                        }
                        None => top_k_bits(bits, dim, &query, metric, wanted, threads, allowed),
                    };
                    let (mut rescored, bound) = self.rescore_on_int8(candidates, &query);
                    rescored.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.slot.cmp(&b.slot)));
                    rescored.truncate(want);
                    if first_round {
                        cut_short = keep_within_error(&mut rescored, request.top_k, bound);
                    }
                    self.rescore_exactly(rescored, &query)
                }
                (_, Some(compact)) => {
                    let mut candidates = scan::top_k_compact(compact, dim, &query, metric, want, threads, allowed);
                    // The int8 estimates are dot products: their error bound
                    // holds for cosine scores only.
                    if first_round && metric == Metric::Cosine {
                        let bound = int8_error_bound(compact, dim, &candidates, &query);
                        cut_short = keep_within_error(&mut candidates, request.top_k, bound);
                    }
                    self.rescore_exactly(candidates, &query)
                }
                _ => scan::top_k(floats, dim, &query, metric, want, threads, allowed),
            };
            let exhausted = !cut_short && (best.len() < want || want >= total_slots);
            // Rows are read best first until k are found: each is a few
            // random pages of the database, so stale slots cost a read each
            // and nothing else does.
            let hits = self.rows_for(&best, request.top_k)?;
            if hits.len() >= request.top_k || exhausted {
                return Ok(hits);
            }
            want = want.saturating_mul(4);
            first_round = false;
        }
    }

    /// `candidates` with their exact scores (read by `pread`), best first;
    /// slots whose vector cannot be read are left out.
    /// The reads run on up to [`READ_THREADS`] threads, as the int8 ones do.
    fn rescore_exactly(&self, mut candidates: Vec<scan::Scored>, query: &[f32]) -> Vec<scan::Scored> {
        self.score_exactly(&mut candidates, query);
        candidates.retain(|c| !c.score.is_nan());
        candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.slot.cmp(&b.slot)));
        candidates
    }

    /// Gives each of `candidates` its exact score (NaN for a slot whose
    /// vector cannot be read), read with `pread` as [`score_candidates`]
    /// reads. Vectors at random slots are read this way rather than through
    /// the mapping: a page fault there maps a whole large folio of the page
    /// cache (about 1 MiB each here), which cost 850 MB of RSS for the 864
    /// candidates of one query at 1M chunks.
    fn score_exactly(&self, candidates: &mut [scan::Scored], query: &[f32]) {
        let (metric, dim) = (self.config.metric, self.config.dimension);
        let Some(file) = self.exact.as_ref() else {
            candidates.iter_mut().for_each(|c| c.score = f32::NAN);
            return;
        };
        score_candidates(candidates, 8, |candidate, buffer, wait| {
            candidate.score = read_vector(file, dim, candidate.slot, buffer, wait)
                .ok()?
                .map_or(f32::NAN, |vector| scan::exact_score(query, vector, metric));
            Some(0.0)
        });
    }

    /// [`slots_passing`](Self::slots_passing), computed once for the last
    /// filter asked: a second caller with the same filter waits for the
    /// first and shares its answer.
    pub(crate) fn allowed_slots(
        &self,
        filter: &rag_core::filter::Filter,
        total_slots: usize,
    ) -> Result<Arc<Vec<bool>>> {
        let key = filter.as_json().to_string();
        let mut last = self.last_filter.lock().unwrap_or_else(PoisonError::into_inner);
        let version = crate::cache::data_version(&self.conn(), &self.db_path)?;
        if let Some(passed) = last.as_ref()
            && passed.filter == key
            && passed.version == version
            && passed.allowed.len() == total_slots
        {
            return Ok(passed.allowed.clone());
        }
        let allowed = Arc::new(self.slots_passing(filter, total_slots)?);
        *last = Some(PassedFilter { filter: key, version, allowed: allowed.clone() });
        Ok(allowed)
    }

    /// Which slots hold a chunk whose metadata passes `filter`. A filter on
    /// files only (`--path`, `--ext`, language) is decided once per file from
    /// the path index and costs what it matches; any other reads the
    /// filterable columns of every row (never the text or metadata).
    pub(crate) fn slots_passing(&self, filter: &rag_core::filter::Filter, total_slots: usize) -> Result<Vec<bool>> {
        let db = &self.db_path;
        let conn = self.conn();
        let mut allowed = vec![false; total_slots];
        let mut set = |slot: i64| {
            if let Some(flag) = usize::try_from(slot).ok().and_then(|s| allowed.get_mut(s)) {
                *flag = true;
            }
        };
        if filter.is_per_file() {
            // Under a required folder, only the paths in its range of the index.
            let (low, high) = match filter.required_folder() {
                Some(folder) => (format!("{folder}/"), format!("{folder}0")),
                None => (String::new(), String::from("\u{10FFFF}")),
            };
            // One pass over the folder's range of the path index (it holds
            // each chunk's slot), deciding once per file; one read
            // transaction, where a statement per file took and dropped the
            // database's read lock each time (about 1 s at 10M chunks). A
            // folder and nothing else passes every chunk in its range: no
            // file is looked at.
            let decide_files = filter.only_folder().is_none();
            let read = conn.unchecked_transaction().map_err(sql(db))?;
            let mut chunks = conn
                .prepare_cached("SELECT source_path, slot FROM chunks WHERE source_path >= ?1 AND source_path < ?2")
                .map_err(sql(db))?;
            let mut language =
                conn.prepare_cached("SELECT language FROM chunks WHERE source_path = ?1 LIMIT 1").map_err(sql(db))?;
            let needs_language = filter.mentions("language");
            let mut rows = chunks.query([&low, &high]).map_err(sql(db))?;
            let mut file: Option<(String, bool)> = None;
            while let Some(row) = rows.next().map_err(sql(db))? {
                if !decide_files {
                    set(row.get(1).map_err(sql(db))?);
                    continue;
                }
                let path = row.get_ref(0).and_then(|v| Ok(v.as_str()?)).map_err(sql(db))?;
                let passes = match &file {
                    Some((current, passes)) if current == path => *passes,
                    _ => {
                        let lang: String = if needs_language {
                            language.query_row([path], |r| r.get(0)).map_err(sql(db))?
                        } else {
                            String::new()
                        };
                        let passes = filter.matches(&rag_core::backend::file_filter_metadata(path, &lang));
                        file = Some((path.to_string(), passes));
                        passes
                    }
                };
                if passes {
                    set(row.get(1).map_err(sql(db))?);
                }
            }
            drop(rows);
            read.commit().map_err(sql(db))?;
            return Ok(allowed);
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT slot, source_path, language, chunk_index, total_chunks, line_start, line_end, indexed_at \
                 FROM chunks",
            )
            .map_err(sql(db))?;
        let mut rows = stmt.query([]).map_err(sql(db))?;
        let mut file: Option<(String, String, serde_json::Map<String, serde_json::Value>)> = None;
        while let Some(row) = rows.next().map_err(sql(db))? {
            let (path, lang): (String, String) = (row.get(1).map_err(sql(db))?, row.get(2).map_err(sql(db))?);
            if file.as_ref().is_none_or(|(p, l, _)| *p != path || *l != lang) {
                let meta = rag_core::backend::file_filter_metadata(&path, &lang);
                file = Some((path, lang, meta));
            }
            let Some((_, _, meta)) = file.as_mut() else { continue };
            for (i, key) in ["chunk_index", "total_chunks", "line_start", "line_end", "indexed_at"].iter().enumerate() {
                let value: i64 = row.get(3 + i).map_err(sql(db))?;
                meta.insert((*key).to_string(), value.into());
            }
            if filter.matches(meta) {
                set(row.get(0).map_err(sql(db))?);
            }
        }
        Ok(allowed)
    }

    /// The chunks under `keys`, in that order, leaving out keys not held.
    pub(crate) fn chunks_by_key(&self, keys: &[String]) -> Result<Vec<Chunk>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {CHUNK_SELECT} FROM chunks WHERE key = ?1"))
            .map_err(sql(&self.db_path))?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let row = stmt.query_row([key], |row| row_to_chunk(row, 0)).optional().map_err(sql(&self.db_path))?;
            out.extend(row.map(|(chunk, _)| chunk));
        }
        Ok(out)
    }

    /// The exact similarity to `vector` of the chunks under `keys`, in order;
    /// `None` for a key the store does not hold (see
    /// [`VectorBackend::exact_scores`](rag_core::backend::VectorBackend::exact_scores)).
    ///
    /// The vectors are read as a query's candidates are ([`score_candidates`]):
    /// a hybrid query's full-text hits are mostly not among its vector
    /// candidates, so their vectors are at random places the cache may not
    /// hold, and one blocking read after another cost 10 to 27 ms for 50
    /// hits at 1M chunks.
    pub(crate) fn exact_scores(&self, keys: &[String], vector: &[f32]) -> Result<Vec<Option<f32>>> {
        let query = self.prepare_query(vector)?;
        let slots: Vec<Option<u64>> = {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached("SELECT slot FROM chunks WHERE key = ?1").map_err(sql(&self.db_path))?;
            keys.iter()
                .map(|key| {
                    let slot: Option<i64> =
                        stmt.query_row([key], |row| row.get(0)).optional().map_err(sql(&self.db_path))?;
                    Ok(slot.and_then(|slot| u64::try_from(slot).ok()))
                })
                .collect::<Result<_>>()?
        };
        let held: Vec<u64> = slots.iter().flatten().copied().collect();
        let mut scores = self.exact_scores_at(&held, &query).into_iter();
        Ok(slots.into_iter().map(|slot| slot.and_then(|_| scores.next()).filter(|s| !s.is_nan())).collect())
    }

    /// The hits of the first `limit` slots of `best` that have a row, in
    /// order; slots without one (freed by a writer that was killed before it
    /// marked them) are passed over.
    pub(crate) fn rows_for(&self, best: &[scan::Scored], limit: usize) -> Result<Vec<Hit>> {
        let conn = self.rows_conn()?;
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {CHUNK_SELECT} FROM chunks WHERE slot = ?1"))
            .map_err(sql(&self.db_path))?;
        let mut hits = Vec::with_capacity(limit.min(best.len()));
        for scored in best {
            if hits.len() >= limit {
                break;
            }
            let row = stmt
                .query_row([scored.slot as i64], |row| row_to_chunk(row, 0))
                .optional()
                .map_err(sql(&self.db_path))?;
            if let Some((chunk, indexed_at)) = row {
                hits.push(Hit { score: scored.score, chunk, indexed_at });
            }
        }
        Ok(hits)
    }
}

/// The slots a filter passed, the filter (as JSON) and the database's
/// `data_version` they were read at (another connection's commit changes it).
#[derive(Debug)]
struct PassedFilter {
    filter: String,
    version: i64,
    allowed: Arc<Vec<bool>>,
}

/// The cores this process may use, read once: each reading parses the
/// cgroup's CPU quota from /proc and /sys (30 to 100 µs here).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Keeps of `candidates` (best first by their int8 estimates) those that
/// may be among the best `k` once scored exactly: within twice the
/// estimates' error `bound` of the k-th. Whether any were left out: a round
/// cut short this way widens, as one that met stale slots does, when its
/// rows do not give `k` hits.
fn keep_within_error(candidates: &mut Vec<scan::Scored>, k: usize, bound: f32) -> bool {
    let Some(kth) = candidates.get(k.saturating_sub(1)) else { return false };
    let floor = kth.score - 2.0 * bound;
    let keep = candidates.partition_point(|c| c.score >= floor);
    let cut = keep < candidates.len();
    candidates.truncate(keep);
    cut
}

/// The widest error bound of the int8 estimates of `candidates`, from the
/// mapped compact file the scan just read.
fn int8_error_bound(compact: &[u8], dim: usize, candidates: &[scan::Scored], query: &[f32]) -> f32 {
    let stride = scan::compact_stride(dim);
    let query = scan::CompactQuery::new(query, Metric::Cosine);
    candidates
        .iter()
        .filter_map(|c| {
            let start = usize::try_from(c.slot).ok()?.checked_mul(stride)?;
            compact.get(start..start + stride)
        })
        .map(|slot| query.error_bound(slot))
        .fold(0.0, f32::max)
}

/// Scores every candidate with `score_one`, which reads its bytes with
/// `pread` as `Wait` allows, sets its score (NaN when unreadable) and
/// returns its error bound, or `None` when asked not to wait and the page
/// cache does not hold its bytes. Those in the cache are scored on this
/// thread; the rest on up to [`READ_THREADS`] threads of at least
/// `min_part` each. Returns the widest bound.
///
/// Starting a thread costs more than a few hundred cached reads here (8
/// threads started and joined: 0.5 to 3 ms; 288 cached reads of 392 bytes:
/// 0.3 ms), so threads are kept for reads that wait on the disk.
fn score_candidates(
    candidates: &mut [scan::Scored],
    min_part: usize,
    score_one: impl Fn(&mut scan::Scored, &mut Vec<u8>, Wait) -> Option<f32> + Sync,
) -> f32 {
    let mut buffer = Vec::new();
    let mut widest = 0.0f32;
    let mut uncached = Vec::new();
    for (i, candidate) in candidates.iter_mut().enumerate() {
        match score_one(candidate, &mut buffer, Wait::No) {
            Some(bound) => widest = widest.max(bound),
            None => uncached.push(i),
        }
    }
    if uncached.is_empty() {
        return widest;
    }
    let mut waiting: Vec<scan::Scored> = uncached.iter().map(|&i| candidates[i]).collect();
    let score_part = |part: &mut [scan::Scored]| {
        let mut buffer = Vec::new();
        part.iter_mut().filter_map(|candidate| score_one(candidate, &mut buffer, Wait::Yes)).fold(0.0, f32::max)
    };
    let per_thread = waiting.len().div_ceil(READ_THREADS).max(min_part).max(1);
    let bound = if per_thread >= waiting.len() {
        score_part(&mut waiting)
    } else {
        let score_part = &score_part;
        std::thread::scope(|scope| {
            let parts: Vec<_> =
                waiting.chunks_mut(per_thread).map(|part| scope.spawn(move || score_part(part))).collect();
            parts
                .into_iter()
                .map(|part| part.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .fold(0.0, f32::max)
        })
    };
    for (&i, candidate) in uncached.iter().zip(waiting) {
        candidates[i] = candidate;
    }
    widest.max(bound)
}

/// The vector of `slot` in the exact file `file` of `dim` dimensions, read
/// with `pread` into `buffer` (see [`Reader::score_exactly`]): `Ok(None)`
/// when it cannot be read, `Err(NotCached)` when `wait` is [`Wait::No`] and
/// the page cache does not hold it.
fn read_vector<'b>(
    file: &File,
    dim: usize,
    slot: u64,
    buffer: &'b mut Vec<u8>,
    wait: Wait,
) -> std::result::Result<Option<&'b [f32]>, NotCached> {
    buffer.resize(dim * 4 + 4, 0);
    let Some(offset) = slot.checked_mul(dim as u64 * 4) else { return Ok(None) };
    // Leave room to align the floats in the buffer.
    let pad = buffer.as_ptr().align_offset(std::mem::align_of::<f32>());
    let Some(bytes) = buffer.get_mut(pad..pad + dim * 4) else { return Ok(None) };
    match read_at_if(file, bytes, offset, wait) {
        Ok(true) => {}
        Ok(false) => return Err(NotCached),
        Err(_) => return Ok(None),
    }
    // SAFETY: any bit pattern is a valid f32, and `pad` aligned the slice.
    let (head, floats, tail) = unsafe { bytes.align_to::<f32>() };
    Ok((head.is_empty() && tail.is_empty() && cfg!(target_endian = "little")).then_some(floats))
}

/// A read that would have waited on the disk.
#[derive(Debug)]
struct NotCached;

/// Unit length for cosine (so search is a dot product); as is for euclidean.
pub(crate) fn prepare_vector(metric: Metric, vector: &[f32]) -> std::result::Result<Vec<f32>, String> {
    if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
        return Err(format!("has a non-finite value at position {i}"));
    }
    match metric {
        Metric::Euclidean => Ok(vector.to_vec()),
        Metric::Cosine => {
            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm == 0.0 {
                Err("is all zeros, which has no direction for cosine similarity".into())
            } else {
                Ok(vector.iter().map(|x| x / norm).collect())
            }
        }
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("db_path", &self.db_path).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_the_cache_lacks_are_read_on_threads_and_put_back_in_place() {
        for (count, uncached_every) in [(10, 3), (200, 2), (200, 1), (5, 100)] {
            let mut candidates: Vec<scan::Scored> = (0..count).map(|slot| scan::Scored { score: 0.0, slot }).collect();
            let threads = Mutex::new(std::collections::HashSet::new());
            let bound = score_candidates(&mut candidates, 8, |candidate, _buffer, wait| {
                if wait == Wait::No && candidate.slot % uncached_every == 0 {
                    return None;
                }
                threads.lock().unwrap().insert(std::thread::current().id());
                // Slot 3 cannot be read; every other scores its own number.
                candidate.score = if candidate.slot == 3 { f32::NAN } else { candidate.slot as f32 };
                Some(candidate.slot as f32 / 1000.0)
            });
            for (slot, candidate) in candidates.iter().enumerate() {
                assert_eq!(candidate.slot, slot as u64, "order kept");
                assert!(candidate.score == slot as f32 || (slot == 3 && candidate.score.is_nan()), "{candidate:?}");
            }
            assert_eq!(bound, (count - 1) as f32 / 1000.0, "the widest bound");
            let waited = count.div_ceil(uncached_every) as usize;
            let here = std::thread::current().id();
            let spawned = threads.lock().unwrap().iter().filter(|&&id| id != here).count();
            assert_eq!(spawned, if waited > 8 { waited.div_ceil(waited.div_ceil(READ_THREADS).max(8)) } else { 0 });
        }
    }
}
