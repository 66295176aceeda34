//! The centre the code files are encoded around. A model's vectors share a
//! large common part (all-MiniLM-L6-v2's chunks of a source tree: a mean
//! of length 0.57 against unit vectors), and a code of the raw vector
//! spends its bits on that part, the same for every vector, where the
//! estimate needs the part that tells them apart. So a writer codes each
//! vector's difference from the store's mean, as RaBitQ codes its
//! difference from a centroid: ⟨q, v⟩ = ⟨q, centre⟩ + ⟨q, v − centre⟩, and
//! the first term is one number for the whole query, so ranking by the
//! second's estimate ranks by the first's too; readers need not know the
//! centre. On 286,347 MiniLM chunks with Cranfield's query texts (far from
//! the data), the sign codes' best 8 × √n held 99.24% of the exact top 10
//! raw and 99.82% centred, and the whole query through the sign stage found
//! 98.84% and 99.60% (`rag-bench codes`, docs/benchmarks.md).
//!
//! The centre is worth what its sample is: in a simulation of these codes,
//! the mean of the first 20,000 chunks of that store (in the order they
//! were indexed) kept no more than raw codes did, and the mean of every
//! 64th chunk all that the whole mean did. So it is the mean of vectors
//! sampled evenly over every slot, and a writer takes it again, coding
//! every slot again, whenever the store has doubled or halved since, or
//! had as many vectors written as it held then ([`Centre::is_due`]): each
//! vector is coded a bounded number of times for each time it is written.
//! It is kept in the settings; codes around two
//! centres are never read as one set, as the writer withdraws the codes'
//! stamps in the transaction that records a new centre and stamps them
//! again once every slot is coded around it.

use rusqlite::Connection;
use std::collections::HashSet;
use std::path::Path;

use crate::error::{LocalStoreError, io};
use crate::schema::{read_setting, write_setting};
use crate::slots::{SlotFile, decode_floats, read_at};

/// The setting that holds the centre, as JSON.
const SETTING: &str = "codes_centre";

/// The setting that counts the vectors written since the centre was taken
/// ([`Centre::is_due`]); missing or unreadable, none.
const WRITTEN_SETTING: &str = "codes_centre_written";

/// Below this many live vectors the codes stay around the origin. Smaller
/// stores gain little: their queries re-rank a larger share of the store
/// (two-bit codes of the vectors themselves kept 99.96% of the exact top 10
/// at 16,384 MiniLM chunks and 99.87% at 65,536, around the mean 100%), and
/// re-coding as they double from 1,024 cost 16% of a 50,000-chunk first
/// index (`rag-bench index`).
pub(crate) const CENTRE_MIN_SLOTS: u64 = 65_536;

/// The most vectors a centre is the mean of, read evenly over the slots
/// (the mean of 4,474 of 286,347 kept all that the whole mean did).
pub(crate) const CENTRE_SAMPLE: u64 = 16_384;

/// What the codes of a store are the codes of: each vector less `values`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Centre {
    /// The vector subtracted (zeros: the origin).
    pub(crate) values: Vec<f32>,
    /// Live vectors in the store when it was taken (0 for the origin).
    pub(crate) live: u64,
}

impl Centre {
    /// The origin of `dim` dimensions: codes of the vectors themselves.
    pub(crate) fn origin(dim: usize) -> Self {
        Self { values: vec![0.0; dim], live: 0 }
    }

    /// The centre a store's settings hold ([`CentreRead`]): absent, found,
    /// or there but unusable (unreadable, or of another dimension).
    pub(crate) fn read(conn: &Connection, db: &Path, dim: usize) -> Result<CentreRead, LocalStoreError> {
        let Some(text) = read_setting(conn, db, SETTING)? else { return Ok(CentreRead::Absent) };
        let value: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        let live = value.as_ref().and_then(|v| v["live"].as_u64());
        let values: Option<Vec<f32>> = value
            .as_ref()
            .and_then(|v| v["values"].as_array())
            .and_then(|values| values.iter().map(|x| x.as_f64().map(|x| x as f32).filter(|x| x.is_finite())).collect());
        Ok(match (values, live) {
            (Some(values), Some(live)) if values.len() == dim => CentreRead::Found(Centre { values, live }),
            _ => CentreRead::Unusable,
        })
    }

    /// Records this centre in `conn`'s settings (inside the caller's
    /// transaction, if it has one).
    pub(crate) fn write(&self, conn: &Connection, db: &Path) -> Result<(), LocalStoreError> {
        // Each f32 is written as the f64 it widens to, so it reads back to the bit.
        let values: Vec<f64> = self.values.iter().copied().map(f64::from).collect();
        let text = serde_json::json!({ "live": self.live, "values": values }).to_string();
        write_setting(conn, db, SETTING, &text)
    }

    /// Whether a store of `live` vectors, `written` of them written since
    /// this centre was taken, should be coded around a centre taken now: it
    /// has [`CENTRE_MIN_SLOTS`], and this centre was taken from fewer than
    /// half as many or more than twice as many, or as many were written
    /// since as it held then (content replaced at one size moves the mean
    /// as growth does). Each re-coding follows writes or deletes of at
    /// least half as many vectors as it codes.
    pub(crate) fn is_due(&self, live: u64, written: u64) -> bool {
        live >= CENTRE_MIN_SLOTS
            && (self.live == 0 || live >= self.live.saturating_mul(2) || live * 2 <= self.live || written >= self.live)
    }

    /// The vectors written since the store's centre was taken, as its
    /// settings count them; none when the count is missing or unreadable
    /// (it only decides when a centre is taken again).
    pub(crate) fn read_written(conn: &Connection, db: &Path) -> Result<u64, LocalStoreError> {
        Ok(read_setting(conn, db, WRITTEN_SETTING)?.and_then(|text| text.parse().ok()).unwrap_or(0))
    }

    /// Records `written` as the vectors written since the centre was taken
    /// (inside the caller's transaction: a commit's writes and the count
    /// that includes them land together).
    pub(crate) fn write_written(conn: &Connection, db: &Path, written: u64) -> Result<(), LocalStoreError> {
        write_setting(conn, db, WRITTEN_SETTING, &written.to_string())
    }

    /// The mean of up to [`CENTRE_SAMPLE`] vectors read evenly over the
    /// first `end` slots of `exact`, passing over `free` ones and any
    /// marked free (NaN), recorded as taken from `live` vectors. When none
    /// is read (every slot sampled free), the origin, still recorded as
    /// taken from `live`, so it is not taken again at every commit.
    pub(crate) fn sample(
        exact: &SlotFile,
        dim: usize,
        end: u64,
        free: &HashSet<u64>,
        live: u64,
    ) -> Result<Self, LocalStoreError> {
        let step = end.div_ceil(CENTRE_SAMPLE).max(1);
        let mut sum = vec![0.0f64; dim];
        let (mut raw, mut vector) = (vec![0u8; dim * 4], vec![0.0f32; dim]);
        let mut count = 0u64;
        for slot in (0..end).step_by(step as usize).filter(|slot| !free.contains(slot)) {
            read_at(&exact.file, &mut raw, slot * exact.stride).map_err(io(&exact.path))?;
            decode_floats(&raw, &mut vector);
            if vector.first().is_some_and(|x| x.is_nan()) {
                continue;
            }
            sum.iter_mut().zip(&vector).for_each(|(total, &x)| *total += f64::from(x));
            count += 1;
        }
        if count == 0 {
            return Ok(Self { live, ..Self::origin(dim) });
        }
        let values = sum.iter().map(|total| (total / count as f64) as f32).collect();
        Ok(Self { values, live })
    }

    /// `vector` less the centre, into `out`.
    pub(crate) fn residual(&self, vector: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(vector.iter().zip(&self.values).map(|(x, c)| x - c));
    }
}

/// What [`Centre::read`] found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CentreRead {
    /// No centre: codes of the vectors themselves.
    Absent,
    /// The centre the codes were coded around.
    Found(Centre),
    /// A setting that cannot be the centre: the codes cannot be trusted.
    Unusable,
}

/// Removes the centre from `conn`'s settings (tests: a store as a version
/// of rag without centres left it).
#[cfg(test)]
pub(crate) fn forget(conn: &Connection, db: &Path) -> Result<(), LocalStoreError> {
    crate::schema::delete_setting(conn, db, SETTING).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database holding an empty settings table, as a store's has: its
    /// folder (kept while in use), its path and a connection.
    fn settings_db() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)").unwrap();
        (dir, db, conn)
    }

    #[test]
    fn a_centre_is_due_past_the_minimum_after_the_store_doubles_or_halves_or_is_written_over() {
        let origin = Centre::origin(4);
        assert!(!origin.is_due(CENTRE_MIN_SLOTS - 1, 0));
        assert!(origin.is_due(CENTRE_MIN_SLOTS, 0));
        let taken = Centre { values: vec![0.1; 4], live: 500_000 };
        assert!(!taken.is_due(500_000, 0));
        assert!(!taken.is_due(999_999, 499_999));
        assert!(taken.is_due(1_000_000, 500_000));
        assert!(!taken.is_due(250_001, 0));
        assert!(taken.is_due(250_000, 0));
        // The same size, its vectors written over once.
        assert!(!taken.is_due(500_000, 499_999));
        assert!(taken.is_due(500_000, 500_000));
        // Shrunk under the minimum: left as it is.
        assert!(!taken.is_due(CENTRE_MIN_SLOTS - 1, 500_000));
    }

    #[test]
    fn the_count_of_vectors_written_reads_back_and_is_none_when_unreadable() {
        let (_dir, db, conn) = settings_db();
        assert_eq!(Centre::read_written(&conn, &db).unwrap(), 0);
        Centre::write_written(&conn, &db, 123_456).unwrap();
        assert_eq!(Centre::read_written(&conn, &db).unwrap(), 123_456);
        write_setting(&conn, &db, WRITTEN_SETTING, "lots").unwrap();
        assert_eq!(Centre::read_written(&conn, &db).unwrap(), 0);
    }

    #[test]
    fn the_residual_is_the_vector_less_the_centre() {
        let centre = Centre { values: vec![0.5, -0.25, 0.0], live: 2_000 };
        let mut out = vec![9.0; 7];
        centre.residual(&[1.0, 1.0, f32::NAN], &mut out);
        assert_eq!(&out[..2], &[0.5, 1.25]);
        assert!(out[2].is_nan(), "a free slot stays free");
    }

    #[test]
    fn a_sample_is_the_mean_of_the_slots_it_reads_passing_over_free_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = SlotFile::open(dir.path().join("v.f32"), 8).unwrap();
        let vectors = [[1.0f32, 2.0], [f32::NAN, f32::NAN], [3.0, -2.0], [5.0, 0.0]];
        for (slot, v) in vectors.iter().enumerate() {
            file.write(slot as u64, &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>()).unwrap();
        }
        let centre = Centre::sample(&file, 2, 4, &HashSet::new(), 3).unwrap();
        assert_eq!(centre, Centre { values: vec![3.0, 0.0], live: 3 });
        // A slot the free list holds that a killed writer left unmarked.
        let centre = Centre::sample(&file, 2, 4, &HashSet::from([3]), 2).unwrap();
        assert_eq!(centre, Centre { values: vec![2.0, 0.0], live: 2 });
        let empty = SlotFile::open(dir.path().join("e.f32"), 8).unwrap();
        assert_eq!(Centre::sample(&empty, 2, 0, &HashSet::new(), 0).unwrap(), Centre::origin(2));
        // Every slot sampled free: the origin, not due again until the store
        // doubles or halves.
        let none = Centre::sample(&file, 2, 4, &HashSet::from([0, 2, 3]), 70_000).unwrap();
        assert_eq!(none, Centre { values: vec![0.0, 0.0], live: 70_000 });
        assert!(!none.is_due(70_000, 0));
    }

    #[test]
    fn a_centre_reads_back_as_written_and_an_unusable_one_says_so() {
        let (_dir, db, conn) = settings_db();
        assert_eq!(Centre::read(&conn, &db, 3).unwrap(), CentreRead::Absent);
        let centre = Centre { values: vec![0.1, -1.0e-7, 0.333_333_34], live: 70_000 };
        centre.write(&conn, &db).unwrap();
        assert_eq!(Centre::read(&conn, &db, 3).unwrap(), CentreRead::Found(centre), "to the bit");
        assert_eq!(Centre::read(&conn, &db, 4).unwrap(), CentreRead::Unusable, "another dimension");
        write_setting(&conn, &db, SETTING, "{\"values\":[1.0").unwrap();
        assert_eq!(Centre::read(&conn, &db, 3).unwrap(), CentreRead::Unusable);
        forget(&conn, &db).unwrap();
        assert_eq!(Centre::read(&conn, &db, 3).unwrap(), CentreRead::Absent);
    }

    /// Recall@10 of the best `candidates` of `vectors` by their sign codes,
    /// coded around `centre`, for `queries`.
    fn sign_recall(vectors: &[Vec<f32>], centre: &Centre, queries: &[Vec<f32>], candidates: usize) -> f64 {
        let dim = centre.values.len();
        let (mut residual, mut code, mut codes) = (Vec::new(), Vec::new(), Vec::new());
        for v in vectors {
            centre.residual(v, &mut residual);
            crate::signs::encode_signs(&residual, &mut code);
            codes.extend_from_slice(&code);
        }
        let flat = vectors.concat();
        let mut found = 0;
        for query in queries {
            let exact = crate::scan::top_k(&flat, dim, query, rag_core::store::Metric::Cosine, 10, 1, None);
            let best = crate::signs::top_k_signs(&codes, dim, query, candidates, 1, None);
            let best: HashSet<u64> = best.iter().map(|s| s.slot).collect();
            found += exact.iter().filter(|s| best.contains(&s.slot)).count();
        }
        found as f64 / (queries.len() * 10) as f64
    }

    #[test]
    fn sign_codes_of_vectors_that_share_a_part_rank_better_around_their_centre() {
        use crate::scan::test_vectors::{real_like, unit};
        // Every seventh dimension shifted, as a model's vectors share a
        // part; queries from anywhere, as query texts far from the data.
        let (dim, count) = (96, 20_000);
        let vectors: Vec<Vec<f32>> = (0..count).map(|i| real_like(i, dim)).collect();
        let queries: Vec<Vec<f32>> = (0..40).map(|i| unit(1_000_000 + i, dim)).collect();
        let dir = tempfile::tempdir().unwrap();
        let file = SlotFile::open(dir.path().join("v.f32"), dim * 4).unwrap();
        let bytes: Vec<u8> = vectors.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
        file.write(0, &bytes).unwrap();
        let centre = Centre::sample(&file, dim, count, &HashSet::new(), count).unwrap();
        let (raw, centred) =
            (sign_recall(&vectors, &Centre::origin(dim), &queries, 400), sign_recall(&vectors, &centre, &queries, 400));
        eprintln!("recall@10 of the best 400 by sign codes: raw {raw:.3}, centred {centred:.3}");
        assert!(centred > raw + 0.05, "raw {raw}, centred {centred}");
    }
}
