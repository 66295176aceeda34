//! The full-text (BM25) index of a store: an FTS5 table written with the
//! chunk rows, built for stores made before it, and searched by [`Reader`].

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use rag_core::Result;
use rag_core::backend::{LexicalHit, LexicalRequest};
use rag_core::lexical::{NAME_WEIGHT, index_terms, name_terms};

use rag_core::store::Hit;

use crate::bm25::{Postings, best_bm25};
use crate::error::{LocalStoreError, sql};
use crate::lengths::{LENGTHS_STAMP, index_totals, indexed_length, stored_length};
use crate::reader::Reader;
use crate::schema::{CHUNK_SELECT, delete_setting, read_setting, row_to_chunk, write_setting};

/// The full-text index: one row per chunk, its rowid the chunk's slot, its
/// columns the chunk's lexical terms ([`index_terms`]) and the names it
/// defines ([`name_terms`]), computed in Rust so every backend tokenizes
/// alike. Contentless: the text lives in `chunks` only. Written in the same
/// transactions as the chunk rows, so it agrees with them after any crash.
pub(crate) const LEXICAL_TABLE: &str = "CREATE VIRTUAL TABLE IF NOT EXISTS lexical USING fts5(\
    terms, names, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 0')";

/// At most about this many chunks are scored by one full-text query (see
/// `Reader::affordable_terms`).
pub(crate) const MAX_POSTINGS: i64 = if cfg!(test) { 50 } else { 20_000 };

/// Version of the terms in the full-text index; a store whose index was built
/// by another tokenizer gets it rebuilt by its next writer.
pub(crate) const LEXICAL_VERSION: &str = "4";

/// Whether the store has a full-text index built by this version's tokenizer.
pub(crate) fn has_current_lexical_index(conn: &Connection, db: &Path) -> Result<bool, LocalStoreError> {
    let exists: bool = conn
        .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lexical')", [], |r| {
            r.get(0)
        })
        .map_err(sql(db))?;
    Ok(exists && read_setting(conn, db, "lexical_version")?.as_deref() == Some(LEXICAL_VERSION))
}

/// Builds (or rebuilds) the full-text index from the chunk rows, in one
/// transaction: what an existing store gets on its next write, without
/// re-embedding anything.
pub(crate) fn build_lexical_index(conn: &mut Connection, db: &Path) -> Result<u64, LocalStoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql(db))?;
    tx.execute_batch("DROP TABLE IF EXISTS lexical").map_err(sql(db))?;
    tx.execute(LEXICAL_TABLE, []).map_err(sql(db))?;
    let mut count = 0;
    {
        let mut stmt = tx.prepare(&format!("SELECT slot, {CHUNK_SELECT} FROM chunks")).map_err(sql(db))?;
        let mut insert =
            tx.prepare("INSERT INTO lexical (rowid, terms, names) VALUES (?1, ?2, ?3)").map_err(sql(db))?;
        let mut rows = stmt.query([]).map_err(sql(db))?;
        while let Some(row) = rows.next().map_err(sql(db))? {
            let slot: i64 = row.get(0).map_err(sql(db))?;
            let (chunk, _) = row_to_chunk(row, 1).map_err(sql(db))?;
            insert.execute(params![slot, index_terms(&chunk), name_terms(&chunk)]).map_err(sql(db))?;
            count += 1;
        }
    }
    write_setting(&tx, db, "lexical_version", LEXICAL_VERSION)?;
    // The lengths were counted by the index just dropped.
    delete_setting(&tx, db, LENGTHS_STAMP)?;
    tx.commit().map_err(sql(db))?;
    Ok(count)
}

/// An FTS5 query matching any of `terms`, each quoted so no term can be read
/// as query syntax.
pub(crate) fn match_any(terms: &[String]) -> String {
    terms.iter().map(|t| format!("\"{}\"", t.replace('"', "\"\""))).collect::<Vec<_>>().join(" OR ")
}

impl Reader {
    /// BM25 search of the full-text index; `None` when the store has none yet.
    pub(crate) fn lexical_query(&self, request: &LexicalRequest) -> Result<Option<Vec<LexicalHit>>> {
        if !has_current_lexical_index(&self.conn(), &self.db_path)? {
            return Ok(None);
        }
        if request.terms.is_empty() || request.top_k == 0 {
            return Ok(Some(Vec::new()));
        }
        let dim = self.config.dimension;
        let query = request.vector.as_deref().map(|vector| self.prepare_query(vector)).transpose()?;
        let floats = self.floats();
        // The filter takes the connection itself: before this search holds it.
        let allowed = match &request.filter {
            Some(filter) => Some(self.allowed_slots(filter, floats.len() / dim.max(1))?),
            None => None,
        };
        let conn = self.conn();
        let terms = self.affordable_terms(&conn, &request.terms)?;
        if terms.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let passes = |slot: i64| {
            allowed
                .as_ref()
                .is_none_or(|allowed| usize::try_from(slot).ok().and_then(|s| allowed.get(s)).copied().unwrap_or(false))
        };
        let best = match self.bm25_with_lengths(&conn, &terms, request.top_k, passes)? {
            Some(best) => best,
            None => self.bm25_of_fts5(&conn, &terms, request.top_k, passes)?,
        };
        let mut read = conn
            .prepare_cached(&format!("SELECT {CHUNK_SELECT} FROM chunks WHERE slot = ?1"))
            .map_err(sql(&self.db_path))?;
        // Exact scores when asked for, read together; a rowid that is no
        // slot (never negative here) gets NaN, as an unreadable vector does.
        let scores = match &query {
            Some(query) => {
                let slots: Vec<u64> = best.iter().map(|&(slot, _)| u64::try_from(slot).unwrap_or(u64::MAX)).collect();
                self.exact_scores_at(&slots, query)
            }
            None => vec![f32::NAN; best.len()],
        };
        let mut hits = Vec::with_capacity(best.len());
        for ((slot, bm25), score) in best.into_iter().zip(scores) {
            let row = read.query_row([slot], |row| row_to_chunk(row, 0)).optional().map_err(sql(&self.db_path))?;
            let Some((chunk, indexed_at)) = row else { continue };
            hits.push(LexicalHit { hit: Hit { score, chunk, indexed_at }, bm25 });
        }
        Ok(Some(hits))
    }

    /// The best `top_k` chunks holding any of `terms` by FTS5's `bm25()`,
    /// computed by FTS5: a B-tree lookup of each matching chunk's length.
    pub(crate) fn bm25_of_fts5(
        &self,
        conn: &Connection,
        terms: &[(String, i64)],
        top_k: usize,
        passes: impl Fn(i64) -> bool,
    ) -> Result<Vec<(i64, f32)>> {
        let db = &self.db_path;
        // bm25() is lower-is-better; the names column weighs NAME_WEIGHT
        // times the text, as the in-memory BM25 weighs it; the filter applies
        // before the cut.
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT rowid, bm25(lexical, 1.0, {NAME_WEIGHT:?}) AS score FROM lexical WHERE lexical MATCH ?1 \
                 ORDER BY score"
            ))
            .map_err(sql(db))?;
        let terms: Vec<String> = terms.iter().map(|(term, _)| term.clone()).collect();
        let mut rows = stmt.query([match_any(&terms)]).map_err(sql(db))?;
        let mut best = Vec::with_capacity(top_k);
        while let Some(row) = rows.next().map_err(sql(db))? {
            let slot: i64 = row.get(0).map_err(sql(db))?;
            let rank: f64 = row.get(1).map_err(sql(db))?;
            if passes(slot) {
                best.push((slot, -rank as f32));
                if best.len() == top_k {
                    break;
                }
            }
        }
        Ok(best)
    }

    /// The same as [`bm25_of_fts5`](Self::bm25_of_fts5), computed here
    /// ([`best_bm25`]) from the terms' postings (FTS5's `fts5vocab`) and
    /// the lengths file, with no read of the database for each chunk
    /// scored (a fresh full-text query at 1M chunks: 16 ms against 29).
    /// `None` when it cannot answer exactly as FTS5 would: no current
    /// lengths file, no averages record, or a term whose postings do not
    /// number what matching it counted (a term FTS5 would read as several
    /// tokens).
    pub(crate) fn bm25_with_lengths(
        &self,
        conn: &Connection,
        terms: &[(String, i64)],
        top_k: usize,
        passes: impl Fn(i64) -> bool,
    ) -> Result<Option<Vec<(i64, f32)>>> {
        if !self.bm25_from_lengths {
            return Ok(None);
        }
        let db = &self.db_path;
        let Some(lengths) = self.lengths.bytes() else { return Ok(None) };
        let Some((rows, tokens)) = index_totals(conn, db)? else { return Ok(None) };
        conn.execute_batch(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.lexical_instances USING fts5vocab(main, lexical, instance)",
        )
        .map_err(sql(db))?;
        let name_weight: f64 = format!("{NAME_WEIGHT:?}").parse().unwrap_or(1.0);
        let mut instances =
            conn.prepare_cached("SELECT doc, col FROM temp.lexical_instances WHERE term = ?1").map_err(sql(db))?;
        let mut postings = Vec::with_capacity(terms.len());
        for (term, counted) in terms {
            let mut list = Postings::default();
            let mut rows = instances.query([term]).map_err(sql(db))?;
            while let Some(row) = rows.next().map_err(sql(db))? {
                let slot: i64 = row.get(0).map_err(sql(db))?;
                let weight =
                    if row.get_ref(1).map_err(sql(db))?.as_str().ok() == Some("names") { name_weight } else { 1.0 };
                match list.slots.last_mut() {
                    Some((last, freq)) if *last == slot => *freq += weight,
                    _ => list.slots.push((slot, weight)),
                }
            }
            // A count over the cap ([`affordable_terms`]) says "more than".
            let found = i64::try_from(list.slots.len()).unwrap_or(i64::MAX);
            if found != *counted && !(*counted > MAX_POSTINGS && found >= *counted) {
                tracing::debug!(term, found, counted, "postings differ from the match; FTS5 ranks this query");
                return Ok(None);
            }
            postings.push(list);
        }
        drop(instances);
        let length = |slot: i64| -> Result<f64> {
            match stored_length(lengths, slot) {
                Some(tokens) => Ok(f64::from(tokens)),
                // Too long for the file, or written after it was mapped.
                None => Ok(indexed_length(conn, db, slot)?.unwrap_or(0) as f64),
            }
        };
        let best = best_bm25(&postings, rows, tokens, top_k, passes, length)?;
        Ok(Some(best.into_iter().map(|(slot, score)| (slot, score as f32)).collect()))
    }

    /// The query terms that occur in the store, rarest first, as many as keep
    /// the chunks to score under [`MAX_POSTINGS`]: BM25 is computed for every
    /// chunk holding any term, so a word found in most chunks would cost a
    /// pass over the store while adding almost nothing to the ranking (its
    /// IDF is near zero). The rarest term is always kept. The way
    /// Elasticsearch's `cutoff_frequency` treats common terms.
    ///
    /// A term's count is taken by stepping through its chunks and stopping
    /// past the budget, so a common word costs what the budget does rather
    /// than a pass over its millions of chunks (fts5vocab's count reads the
    /// whole list: about 100 ms a query at 10M chunks). Only when every term
    /// is over the budget are they counted further, to keep the rarest.
    /// Each kept term comes with its count: exact up to [`MAX_POSTINGS`], a
    /// lower bound past it.
    pub(crate) fn affordable_terms(&self, conn: &Connection, terms: &[String]) -> Result<Vec<(String, i64)>> {
        let db = &self.db_path;
        let mut capped = conn
            .prepare_cached("SELECT count(*) FROM (SELECT rowid FROM lexical WHERE lexical MATCH ?1 LIMIT ?2)")
            .map_err(sql(db))?;
        let mut counted: Vec<(i64, &String)> = Vec::with_capacity(terms.len());
        for term in terms {
            let count: i64 = capped
                .query_row(params![match_any(std::slice::from_ref(term)), MAX_POSTINGS + 1], |r| r.get(0))
                .map_err(sql(db))?;
            if count > 0 {
                counted.push((count, term));
            }
        }
        // Every term over the budget: only the rarest is kept. They are
        // counted again under a cap that grows fourfold until one ends
        // under it; the rest, over the cap, are all commoner. Each round
        // costs the terms times the cap, so the search costs a few times
        // what the rarest term's chunks do, where counting every term to
        // its end (fts5vocab) cost all their lists: 500 ms at 10M chunks
        // when all five words of a query were common.
        let mut cap = MAX_POSTINGS;
        while !counted.is_empty() && counted.iter().all(|(count, _)| *count > cap) && cap < i64::MAX / 4 {
            cap *= 4;
            for (count, term) in &mut counted {
                *count = capped
                    .query_row(params![match_any(std::slice::from_ref(*term)), cap + 1], |r| r.get(0))
                    .map_err(sql(db))?;
            }
        }
        counted.sort();
        let mut total = 0;
        let mut kept = Vec::with_capacity(counted.len());
        for (count, term) in counted {
            if !kept.is_empty() && total + count > MAX_POSTINGS {
                tracing::debug!(term, count, "common query term left out of the full-text search");
                continue;
            }
            total += count;
            kept.push((term.clone(), count));
        }
        Ok(kept)
    }
}
