//! [`Reader`]: what a query needs of a store (its database and its mapped
//! vector files), and the vector search over them.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rusqlite::{Connection, OptionalExtension};

use rag_core::backend::QueryRequest;
use rag_core::store::{Chunk, Hit, Metric, StoreConfig};
use rag_core::{Error, Result};

use crate::error::{LocalStoreError, io, sql};
use crate::files::{COMPACT_FILE, VECTORS_FILE};
use crate::scan;
use crate::schema::{CHUNK_SELECT, open_db, read_config, row_to_chunk};
use crate::slots::read_at;

/// What a query needs: the database and the mapped vectors.
pub(crate) struct Reader {
    pub(crate) conn: Connection,
    pub(crate) db_path: PathBuf,
    pub(crate) config: StoreConfig,
    pub(crate) map: Option<Mmap>,
    pub(crate) compact: Option<Mmap>,
    /// The exact vectors, for reading a few of them with `pread`.
    pub(crate) exact: Option<File>,
}

/// Maps a file read-only; `None` when it is missing or empty.
pub(crate) fn map_file(path: &Path) -> Result<Option<Mmap>, LocalStoreError> {
    match File::open(path) {
        Ok(file) if file.metadata().map_err(io(path))?.len() > 0 => {
            // SAFETY: a writer only grows these files or writes slots in place; it never
            // shrinks them (`Writer::repair` keeps trailing free slots rather than
            // truncating), so every page of this mapping stays backed by the file for the
            // mapping's life, and a deleted store's files are unlinked, not truncated. A
            // concurrent write changes values we read (a slot being reused), never the
            // mapping's validity, and rows are re-checked against SQLite afterwards.
            Ok(Some(unsafe { Mmap::map(&file) }.map_err(io(path))?))
        }
        Ok(_) => Ok(None),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io(path)(err)),
    }
}

impl Reader {
    pub(crate) fn open(dir: &Path) -> Result<Self, LocalStoreError> {
        let (conn, db_path) = open_db(dir)?;
        let config = read_config(&conn, &db_path, dir)?;
        let map = map_file(&dir.join(VECTORS_FILE))?;
        let compact = map_file(&dir.join(COMPACT_FILE))?;
        let exact = File::open(dir.join(VECTORS_FILE)).ok();
        Ok(Self { conn, db_path, config, map, compact, exact })
    }

    /// The exact vector of one slot, read with `pread` into `buffer`. A few
    /// vectors at random slots are read this way rather than through the
    /// mapping: a page fault there maps a whole large folio of the page
    /// cache (about 1 MiB each here), which cost 850 MB of RSS for the 864
    /// candidates of one query at 1M chunks.
    pub(crate) fn exact_vector<'b>(&self, slot: u64, buffer: &'b mut Vec<u8>) -> Option<&'b [f32]> {
        let dim = self.config.dimension;
        let file = self.exact.as_ref()?;
        buffer.resize(dim * 4 + 4, 0);
        let offset = slot.checked_mul(dim as u64 * 4)?;
        // Leave room to align the floats in the buffer.
        let pad = buffer.as_ptr().align_offset(std::mem::align_of::<f32>());
        let bytes = buffer.get_mut(pad..pad + dim * 4)?;
        read_at(file, bytes, offset).ok()?;
        // SAFETY: any bit pattern is a valid f32, and `pad` aligned the slice.
        let (head, floats, tail) = unsafe { bytes.align_to::<f32>() };
        (head.is_empty() && tail.is_empty() && cfg!(target_endian = "little")).then_some(floats)
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
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let total_slots = floats.len() / dim.max(1);
        let metric = self.config.metric;
        let allowed = match &request.filter {
            Some(filter) => Some(self.slots_passing(filter, total_slots)?),
            None => None,
        };
        let allowed = allowed.as_deref();
        // Candidates come from the int8 copy (a quarter of the bytes to read) and
        // are re-scored exactly from the f32 vectors. Slots freed by a writer that
        // was killed before marking them are not in SQLite: ask for more than k
        // and widen if too many were stale.
        let mut want = request.top_k.saturating_mul(8).saturating_add(64);
        let mut rows = request.top_k.saturating_mul(2).saturating_add(16);
        loop {
            let best = match self.compact_bytes() {
                Some(compact) => {
                    let mut candidates = scan::top_k_compact(compact, dim, &query, metric, want, threads, allowed);
                    let mut buffer = Vec::new();
                    for candidate in &mut candidates {
                        candidate.score = self
                            .exact_vector(candidate.slot, &mut buffer)
                            .map_or(f32::NAN, |vector| scan::exact_score(&query, vector, metric));
                    }
                    candidates.retain(|c| !c.score.is_nan());
                    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.slot.cmp(&b.slot)));
                    candidates
                }
                None => scan::top_k(floats, dim, &query, metric, want, threads, allowed),
            };
            let exhausted = best.len() < want || want >= total_slots;
            // Rows are read for the best few only: enough for k unless many slots were stale.
            let take = best.len().min(rows);
            let hits = self.rows_for(&best[..take])?;
            if hits.len() >= request.top_k || (exhausted && take == best.len()) {
                return Ok(hits.into_iter().take(request.top_k).collect());
            }
            want = want.saturating_mul(4);
            rows = want;
        }
    }

    /// Which slots hold a chunk whose metadata passes `filter`. A filter on
    /// files only (`--path`, `--ext`, language) is decided once per file from
    /// the path index and costs what it matches; any other reads the
    /// filterable columns of every row (never the text or metadata).
    pub(crate) fn slots_passing(&self, filter: &rag_core::filter::Filter, total_slots: usize) -> Result<Vec<bool>> {
        let db = &self.db_path;
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
            let mut paths = self
                .conn
                .prepare_cached("SELECT DISTINCT source_path FROM chunks WHERE source_path >= ?1 AND source_path < ?2")
                .map_err(sql(db))?;
            let mut language = self
                .conn
                .prepare_cached("SELECT language FROM chunks WHERE source_path = ?1 LIMIT 1")
                .map_err(sql(db))?;
            let mut slots =
                self.conn.prepare_cached("SELECT slot FROM chunks WHERE source_path = ?1").map_err(sql(db))?;
            let needs_language = filter.mentions("language");
            let paths: Vec<String> = paths
                .query_map([&low, &high], |r| r.get(0))
                .map_err(sql(db))?
                .collect::<rusqlite::Result<_>>()
                .map_err(sql(db))?;
            for path in paths {
                let lang: String = if needs_language {
                    language.query_row([&path], |r| r.get(0)).map_err(sql(db))?
                } else {
                    String::new()
                };
                if filter.matches(&rag_core::backend::file_filter_metadata(&path, &lang)) {
                    for slot in slots.query_map([&path], |r| r.get::<_, i64>(0)).map_err(sql(db))? {
                        set(slot.map_err(sql(db))?);
                    }
                }
            }
            return Ok(allowed);
        }
        let mut stmt = self
            .conn
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
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {CHUNK_SELECT} FROM chunks WHERE key = ?1"))
            .map_err(sql(&self.db_path))?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let row = stmt.query_row([key], |row| row_to_chunk(row, 0)).optional().map_err(sql(&self.db_path))?;
            out.extend(row.map(|(chunk, _)| chunk));
        }
        Ok(out)
    }

    pub(crate) fn rows_for(&self, best: &[scan::Scored]) -> Result<Vec<Hit>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {CHUNK_SELECT} FROM chunks WHERE slot = ?1"))
            .map_err(sql(&self.db_path))?;
        let mut hits = Vec::with_capacity(best.len());
        for scored in best {
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
