use std::fs::OpenOptions;

use rusqlite::{Connection, OptionalExtension};

use super::*;
use crate::bits;
use crate::codes::Codes;
use crate::files::{BITS_FILE, COMPACT_FILE, LEGACY_SIGN_BITS_FILE, LENGTHS_FILE, SIGNS_FILE, VECTORS_FILE};
use crate::lengths::{LONG, column_sizes_total};
use crate::scan;
use crate::scan::test_vectors::real_like;
use crate::slots::{SlotFile, write_at};
use rag_core::store::Metric;

fn config(name: &str, dimension: usize, metric: Metric) -> StoreConfig {
    StoreConfig::new(name, "toy", dimension).with_metric(metric).with_chunking("c")
}

fn record(path: &str, index: usize, total: usize, hash: &str, vector: Vec<f32>) -> VectorRecord {
    VectorRecord {
        chunk: Chunk::new(path, index, format!("{path} chunk {index} {hash}"))
            .with_total(total)
            .with_lines(index * 10 + 1, index * 10 + 9)
            .with_bytes(0, 1)
            .with_content_hash(hash),
        vector,
        indexed_at: 1,
    }
}

/// Releases the lock a direct put took: the backend's own lock, taken and
/// dropped.
async fn release(backend: &LocalBackend) {
    drop(backend.lock_for_writing("notes").await.unwrap());
}

async fn store_with(dim: usize, metric: Metric) -> (tempfile::TempDir, LocalBackend) {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::new(dir.path());
    backend.create_store(&config("notes", dim, metric)).await.unwrap();
    (dir, backend)
}

#[tokio::test]
async fn a_reader_kept_open_sees_what_other_writers_commit_and_a_store_made_anew() {
    let (dir, reader) = store_with(2, Metric::Cosine).await;
    let writer = LocalBackend::new(dir.path());
    writer.put("notes", vec![record("a.md", 0, 1, "h", vec![1.0, 0.0])]).await.unwrap();
    release(&writer).await;
    let query = QueryRequest::new(vec![1.0, 0.0], 10);
    assert_eq!(reader.query("notes", &query).await.unwrap().len(), 1);
    // Another writer appends: the open reader's mapping is too short, and it is reopened.
    let more: Vec<VectorRecord> = (0..500).map(|i| record(&format!("b{i}.md"), 0, 1, "h", vec![1.0, 0.5])).collect();
    writer.put("notes", more).await.unwrap();
    release(&writer).await;
    assert_eq!(reader.query("notes", &QueryRequest::new(vec![1.0, 0.0], 1000)).await.unwrap().len(), 501);
    assert_eq!(reader.get_chunks("notes", &["b7.md#0".into()]).await.unwrap().len(), 1);
    // Deleted and made anew elsewhere: the reader follows the new store.
    writer.delete_store("notes").await.unwrap();
    writer.create_store(&config("notes", 2, Metric::Cosine)).await.unwrap();
    writer.put("notes", vec![record("new.md", 0, 1, "h", vec![0.0, 1.0])]).await.unwrap();
    release(&writer).await;
    let hits = reader.query("notes", &query).await.unwrap();
    assert_eq!(hits.iter().map(|h| h.chunk.key.as_str()).collect::<Vec<_>>(), ["new.md#0"]);
}

#[tokio::test]
async fn put_query_overwrite_and_delete() {
    let (_dir, backend) = store_with(3, Metric::Cosine).await;
    backend
        .put(
            "notes",
            vec![
                record("a.md", 0, 2, "h1", vec![1.0, 0.0, 0.0]),
                record("a.md", 1, 2, "h1", vec![0.0, 1.0, 0.0]),
                record("b.md", 0, 1, "h2", vec![0.0, 0.0, 2.0]),
            ],
        )
        .await
        .unwrap();
    let hits = backend.query("notes", &QueryRequest::new(vec![0.0, 0.0, 1.0], 2)).await.unwrap();
    assert_eq!(hits[0].chunk.key, "b.md#0");
    assert!((hits[0].score - 1.0).abs() < 1e-6, "stored vectors are normalised: {}", hits[0].score);

    // Overwrite b.md#0 pointing elsewhere: the old vector must not come back.
    backend.put("notes", vec![record("b.md", 0, 1, "h3", vec![1.0, 0.0, 0.0])]).await.unwrap();
    let hits = backend.query("notes", &QueryRequest::new(vec![0.0, 0.0, 1.0], 10)).await.unwrap();
    assert_eq!(hits.len(), 3, "no orphans after overwrite: {hits:?}");
    assert!(hits.iter().all(|h| h.score < 0.5));

    backend.delete("notes", vec!["a.md#1".into(), "nope#9".into()]).await.unwrap();
    let hits = backend.query("notes", &QueryRequest::new(vec![0.0, 1.0, 0.0], 10)).await.unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.chunk.key != "a.md#1"));
}

fn text_record(path: &str, index: usize, text: &str, vector: Vec<f32>) -> VectorRecord {
    let mut record = record(path, index, 1, "h", vector);
    record.chunk.text = text.into();
    record
}

async fn lexical_keys(backend: &LocalBackend, query: &str, k: usize) -> Vec<String> {
    let request = LexicalRequest::new(rag_core::lexical::query_terms(query), k);
    let hits = backend.lexical_query("notes", &request).await.unwrap().expect("a full-text index");
    hits.into_iter().map(|h| h.hit.chunk.key).collect()
}

#[tokio::test]
async fn the_full_text_index_follows_replaces_and_deletes() {
    let (_dir, backend) = store_with(2, Metric::Cosine).await;
    backend
        .put(
            "notes",
            vec![
                text_record("a.md", 0, "the sourdough starter wants rye flour", vec![1.0, 0.0]),
                text_record("b.md", 0, "parse_config reads settings", vec![0.0, 1.0]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(lexical_keys(&backend, "rye", 5).await, ["a.md#0"]);
    assert_eq!(lexical_keys(&backend, "config", 5).await, ["b.md#0"]);
    // Replacing a chunk replaces its terms: the old words no longer find it.
    backend.put("notes", vec![text_record("a.md", 0, "wheat only", vec![1.0, 0.0])]).await.unwrap();
    assert!(lexical_keys(&backend, "rye", 5).await.is_empty());
    assert_eq!(lexical_keys(&backend, "wheat", 5).await, ["a.md#0"]);
    // Deleting (pruning) removes them.
    backend.delete("notes", vec!["b.md#0".into()]).await.unwrap();
    assert!(lexical_keys(&backend, "parse_config", 5).await.is_empty());
    // A reused slot carries only its new chunk's terms.
    backend.put("notes", vec![text_record("c.md", 0, "kitchen memo", vec![0.0, 1.0])]).await.unwrap();
    assert_eq!(lexical_keys(&backend, "kitchen parse", 5).await, ["c.md#0"]);
}

#[tokio::test]
async fn a_word_in_most_chunks_is_left_out_when_rarer_ones_can_rank() {
    let (_dir, backend) = store_with(2, Metric::Cosine).await;
    // 60 chunks hold "common" (over the test limit of 50 to score); one holds "rare" too.
    let mut records: Vec<VectorRecord> =
        (0..60).map(|i| text_record(&format!("n{i}.md"), 0, "common words", vec![1.0, 0.0])).collect();
    records.push(text_record("x.md", 0, "common rare", vec![1.0, 0.0]));
    backend.put("notes", records).await.unwrap();
    assert_eq!(lexical_keys(&backend, "common rare", 100).await, ["x.md#0"]);
    // Alone, the common word is still searched: the rarest term is always kept.
    assert_eq!(lexical_keys(&backend, "common", 100).await.len(), 61);
    // Words the store does not hold cost nothing and find nothing.
    assert!(lexical_keys(&backend, "absent", 100).await.is_empty());
}

#[tokio::test]
async fn when_every_word_is_common_the_rarest_is_searched() {
    let (_dir, backend) = store_with(2, Metric::Cosine).await;
    // Both over the test limit of 50: "alpha" in 70 chunks, "beta" in 55 of them.
    let records = (0..70)
        .map(|i| {
            let text = if i < 55 { "alpha beta" } else { "alpha" };
            text_record(&format!("n{i}.md"), 0, text, vec![1.0, 0.0])
        })
        .collect();
    backend.put("notes", records).await.unwrap();
    assert_eq!(lexical_keys(&backend, "alpha beta", 100).await.len(), 55, "only beta, the rarer, is searched");
    // Far over it, with the rarer word sorting last: "gamma" in 900 more
    // chunks, "zeta" in 300 of them, so counting stops at neither limit
    // nor first cap.
    let records = (0..900)
        .map(|i| {
            let text = if i % 3 == 0 { "zeta gamma" } else { "gamma" };
            text_record(&format!("m{i}.md"), 0, text, vec![1.0, 0.0])
        })
        .collect();
    backend.put("notes", records).await.unwrap();
    assert_eq!(lexical_keys(&backend, "gamma zeta", 1_000).await.len(), 300, "only zeta, the rarer, is searched");
    assert_eq!(lexical_keys(&backend, "alpha gamma", 1_000).await.len(), 70, "alpha is the rarer");
}

#[tokio::test]
async fn lexical_hits_carry_their_exact_vector_score() {
    let (_dir, backend) = store_with(2, Metric::Cosine).await;
    backend.put("notes", vec![text_record("a.md", 0, "rye flour", vec![3.0, 4.0])]).await.unwrap();
    let request = LexicalRequest::new(vec!["rye".into()], 5).with_vector(Some(vec![1.0, 0.0]));
    let hits = backend.lexical_query("notes", &request).await.unwrap().unwrap();
    assert!((hits[0].hit.score - 0.6).abs() < 1e-6, "{}", hits[0].hit.score);
    assert!(hits[0].bm25 > 0.0);
}

#[tokio::test]
async fn chunks_are_scored_by_key_as_queries_score_them() {
    let (_dir, backend) = store_with(2, Metric::Cosine).await;
    let records = vec![text_record("a.md", 0, "rye", vec![3.0, 4.0]), text_record("b.md", 0, "oat", vec![0.0, 2.0])];
    backend.put("notes", records).await.unwrap();
    let keys = ["b.md#0".to_string(), "gone.md#0".to_string(), "a.md#0".to_string()];
    let scores = backend.exact_scores("notes", &keys, &[1.0, 0.0]).await.unwrap().unwrap();
    assert_eq!(scores.len(), 3);
    assert!(scores[0].is_some_and(|s| s.abs() < 1e-6), "{scores:?}");
    assert_eq!(scores[1], None, "a key the store does not hold");
    assert!(scores[2].is_some_and(|s| (s - 0.6).abs() < 1e-6), "{scores:?}");
    let hits = backend.query("notes", &QueryRequest::new(vec![1.0, 0.0], 2)).await.unwrap();
    assert_eq!(Some(hits[0].score), scores[2], "the same score a query gives");
    let wrong = backend.exact_scores("notes", &keys, &[1.0, 0.0, 0.0]).await.unwrap_err();
    assert!(matches!(wrong, rag_core::Error::DimensionMismatch { .. }), "{wrong}");
    // Many keys, one asked twice: each gets its own chunk's score, in order.
    let records = (0..60).map(|i| text_record(&format!("n{i}.md"), 0, "rye", vec![1.0, i as f32])).collect();
    backend.put("notes", records).await.unwrap();
    let keys: Vec<String> = [59, 3, 59, 0, 17].iter().map(|i| format!("n{i}.md#0")).collect();
    let scores = backend.exact_scores("notes", &keys, &[0.0, 1.0]).await.unwrap().unwrap();
    let expected = [59.0f32, 3.0, 59.0, 0.0, 17.0].map(|i| i / (1.0 + i * i).sqrt());
    for (got, want) in scores.iter().zip(expected) {
        assert!(got.is_some_and(|got| (got - want).abs() < 1e-6), "{scores:?} against {expected:?}");
    }
}

#[tokio::test]
async fn a_folder_alone_passes_the_chunks_under_it_as_the_full_filter_does() {
    let (dir, backend) = store_with(2, Metric::Cosine).await;
    let paths = ["docs/a/x.md", "docs/a/y/z.md", "docs/ab/w.md", "docs/a.md", "docs/a", "other/docs/a/q.md", "a/x.md"];
    let records = paths.iter().enumerate().map(|(i, p)| record(p, 0, 1, "h", vec![1.0, i as f32])).collect();
    backend.put("notes", records).await.unwrap();
    let reader = Reader::open(&dir.path().join("stores/notes")).unwrap();
    let alone = rag_core::filter::Filter::folder("docs/a");
    assert_eq!(alone.only_folder(), Some("docs/a"));
    // The same chunks, decided file by file from their metadata.
    let full = rag_core::filter::Filter::folder("docs/a").and(rag_core::filter::Filter::folder("docs"));
    assert_eq!(full.only_folder(), None);
    let (fast, slow) = (reader.slots_passing(&alone, 7).unwrap(), reader.slots_passing(&full, 7).unwrap());
    assert_eq!(fast, slow);
    let query = QueryRequest::new(vec![1.0, 0.0], 10).with_filter(Some(alone));
    let mut found: Vec<String> =
        backend.query("notes", &query).await.unwrap().into_iter().map(|h| h.chunk.source_path).collect();
    found.sort();
    assert_eq!(found, ["docs/a/x.md", "docs/a/y/z.md"]);
}

#[tokio::test]
async fn both_arms_share_a_filters_slots_until_another_connection_commits() {
    let (dir, backend) = store_with(2, Metric::Cosine).await;
    let records = ["docs/a.md", "src/b.rs"].iter().map(|p| record(p, 0, 1, "h", vec![1.0, 0.0])).collect();
    backend.put("notes", records).await.unwrap();
    let reader = Reader::open(&dir.path().join("stores/notes")).unwrap();
    let docs = rag_core::filter::Filter::folder("docs");
    let first = reader.allowed_slots(&docs, 2).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &reader.allowed_slots(&docs, 2).unwrap()), "computed once");
    let src = reader.allowed_slots(&rag_core::filter::Filter::folder("src"), 2).unwrap();
    assert_ne!(*src, *first, "another filter, another set");
    // Another connection commits (the store keeps its slots): the same
    // filter is decided again.
    let again = reader.allowed_slots(&docs, 2).unwrap();
    assert_eq!(again.iter().filter(|&&f| f).count(), 1);
    let other = Connection::open(dir.path().join("stores/notes/store.db")).unwrap();
    other.execute("UPDATE chunks SET source_path = 'src/a.md' WHERE source_path = 'docs/a.md'", []).unwrap();
    let after = reader.allowed_slots(&docs, 2).unwrap();
    assert!(after.iter().all(|&f| !f), "{after:?}");
    assert!(std::sync::Arc::ptr_eq(&after, &reader.allowed_slots(&docs, 2).unwrap()));
}

#[tokio::test]
async fn a_filter_applies_before_the_lexical_cut() {
    let (_dir, backend) = store_with(2, Metric::Cosine).await;
    // 600 chunks match; the one under docs/ ranks last (longest text, one mention).
    let mut records: Vec<VectorRecord> =
        (0..600).map(|i| text_record(&format!("notes/n{i}.md"), 0, "flour flour flour", vec![1.0, 0.0])).collect();
    records.push(text_record("docs/far.md", 0, &format!("flour {}", "filler ".repeat(300)), vec![1.0, 0.0]));
    backend.put("notes", records).await.unwrap();
    let all = lexical_keys(&backend, "flour", 1000).await;
    assert_eq!(all.last().map(String::as_str), Some("docs/far.md#0"), "ranks last unfiltered");
    let request =
        LexicalRequest::new(vec!["flour".into()], 5).with_filter(Some(rag_core::filter::Filter::folder("docs")));
    let hits = backend.lexical_query("notes", &request).await.unwrap().unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].hit.chunk.key, "docs/far.md#0");
}

#[tokio::test]
async fn a_store_made_before_the_full_text_index_gets_it_from_its_next_writer() {
    let (dir, backend) = store_with(2, Metric::Cosine).await;
    backend.put("notes", vec![text_record("a.md", 0, "rotate the keys", vec![1.0, 0.0])]).await.unwrap();
    drop(backend);
    let db = dir.path().join("stores/notes").join(DB_FILE);
    Connection::open(&db)
        .unwrap()
        .execute_batch("DROP TABLE lexical; DELETE FROM settings WHERE key = 'lexical_version'")
        .unwrap();
    let backend = LocalBackend::new(dir.path());
    let request = LexicalRequest::new(vec!["key".into()], 5);
    assert!(backend.lexical_query("notes", &request).await.unwrap().is_none(), "no index yet");
    // Vector search still works on it.
    assert_eq!(backend.query("notes", &QueryRequest::new(vec![1.0, 0.0], 1)).await.unwrap().len(), 1);
    let _lock = backend.lock_for_writing("notes").await.unwrap();
    assert_eq!(lexical_keys(&backend, "keys", 5).await, ["a.md#0"]);
}

#[tokio::test]
async fn a_name_a_chunk_defines_outranks_its_mentions_and_matches_memory() {
    let (_dir, backend) = store_with(2, Metric::Cosine).await;
    let mut defines = text_record("keys.py", 0, "def rotate_keys(store):\n    store.swap()", vec![1.0, 0.0]);
    defines.chunk.metadata.insert("symbols".into(), vec!["rotate_keys"].into());
    // More mentions, and a shorter chunk: plain BM25 would put it first.
    let calls = text_record("cli.py", 0, "rotate_keys(a)\nrotate_keys(b)", vec![0.0, 1.0]);
    let records = vec![defines, calls];
    backend.put("notes", records.clone()).await.unwrap();
    assert_eq!(lexical_keys(&backend, "rotate keys", 5).await, ["keys.py#0", "cli.py#0"]);
    // Without the names field the caller wins, so the field is what ranks.
    let plain: Vec<Vec<String>> = records.iter().map(|r| rag_core::lexical::chunk_terms(&r.chunk)).collect();
    let query = rag_core::lexical::query_terms("rotate keys");
    let plain = rag_core::lexical::Bm25::new(&plain).scores(&query);
    assert!(plain[1] > plain[0], "{plain:?}");
    // The in-memory BM25 (memory backend, S3 re-ranking) weighs it alike.
    let weighted = rag_core::lexical::Bm25::for_chunks(records.iter().map(|r| &r.chunk)).scores(&query);
    assert!(weighted[0] > weighted[1], "{weighted:?}");
}

/// Each chunk's token count as FTS5 keeps it, by slot.
fn indexed_lengths(store: &Path) -> Vec<(i64, u64)> {
    let conn = Connection::open(store.join(DB_FILE)).unwrap();
    let mut stmt = conn.prepare("SELECT id, sz FROM lexical_docsize ORDER BY id").unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))).unwrap();
    rows.map(|r| r.map(|(slot, sizes)| (slot, column_sizes_total(&sizes).unwrap()))).collect::<Result<_, _>>().unwrap()
}

/// What the lengths file holds for each slot FTS5 has a row of.
fn file_lengths(store: &Path, slots: &[(i64, u64)]) -> Vec<(i64, u64)> {
    let bytes = fs::read(store.join(LENGTHS_FILE)).unwrap();
    slots
        .iter()
        .map(|&(slot, _)| {
            (slot, u64::from(u16::from_le_bytes([bytes[slot as usize * 2], bytes[slot as usize * 2 + 1]])))
        })
        .collect()
}

/// `(slot, score)` lists agree when their scores agree to the bit, in
/// order, and so do the slots of every score above the last (ties at the
/// cut may be any of the tied chunks).
fn assert_same_ranking(ours: &[(i64, f32)], fts5: &[(i64, f32)], what: &str) {
    let scores = |list: &[(i64, f32)]| list.iter().map(|&(_, s)| s.to_bits()).collect::<Vec<_>>();
    assert_eq!(scores(ours), scores(fts5), "{what}: scores");
    let last = ours.last().map_or(f32::INFINITY, |&(_, s)| s);
    let above = |list: &[(i64, f32)]| {
        let mut slots: Vec<i64> = list.iter().filter(|&&(_, s)| s > last).map(|&(slot, _)| slot).collect();
        slots.sort_unstable();
        slots
    };
    assert_eq!(above(ours), above(fts5), "{what}: slots");
}

#[tokio::test]
async fn bm25_from_the_lengths_file_is_fts5s_to_the_bit() {
    let (dir, backend) = store_with(2, Metric::Cosine).await;
    let words = ["salt", "flour", "yeast", "water", "sugar"];
    let records: Vec<VectorRecord> = (0..300)
        .map(|i| {
            let text = format!("{} {} {}", words[i % 5], words[(i / 5) % 5], "filler ".repeat(i % 37 + i / 37));
            let mut record = text_record(&format!("n{i}.md"), 0, &text, vec![1.0, 0.0]);
            if i % 11 == 0 {
                record.chunk.metadata.insert("symbols".into(), vec![format!("{}_mix", words[i % 5])].into());
            }
            record
        })
        .collect();
    backend.put("notes", records.clone()).await.unwrap();
    // Deleted chunks (FTS5 keeps tombstones), rewritten ones in reused slots,
    // and a chunk too long for two bytes.
    backend.delete("notes", (0..300).step_by(7).map(|i| format!("n{i}.md#0")).collect()).await.unwrap();
    let rewritten = records.iter().step_by(14).cloned().map(|mut r| {
        r.chunk.text.push_str(" yeast yeast");
        r
    });
    backend.put("notes", rewritten.collect()).await.unwrap();
    let long = format!("salt {}", "grain ".repeat(70_000));
    backend.put("notes", vec![text_record("long.md", 0, &long, vec![1.0, 0.0])]).await.unwrap();
    release(&backend).await;
    let store = dir.path().join("stores/notes");
    let indexed = indexed_lengths(&store);
    let stored: Vec<(i64, u64)> =
        indexed.iter().map(|&(slot, len)| (slot, if len >= u64::from(LONG) { u64::from(LONG) } else { len })).collect();
    assert_eq!(file_lengths(&store, &indexed), stored, "the file holds FTS5's counts");
    assert!(indexed.iter().any(|&(_, len)| len > u64::from(LONG)), "the long chunk is there");

    let reader = Reader::open(&store).unwrap();
    assert!(reader.lengths.current);
    // "filler" is in nearly every chunk: over the test budget of postings.
    for query in ["salt", "flour yeast", "salt sugar water", "mix", "filler salt", "filler", "grain"] {
        let terms = reader.affordable_terms(&reader.conn(), &rag_core::lexical::query_terms(query)).unwrap();
        assert!(!terms.is_empty(), "{query}");
        for top_k in [1, 10, 1_000] {
            let conn = reader.conn();
            let ours = reader.bm25_with_lengths(&conn, &terms, top_k, |_| true).unwrap();
            let ours = ours.unwrap_or_else(|| panic!("{query}: not answered from the lengths file"));
            let fts5 = reader.bm25_of_fts5(&conn, &terms, top_k, |_| true).unwrap();
            assert!(!fts5.is_empty(), "{query}");
            assert_same_ranking(&ours, &fts5, &format!("{query:?}, top {top_k}"));
            let odd = |slot: i64| slot % 2 == 1;
            let ours = reader.bm25_with_lengths(&conn, &terms, top_k, odd).unwrap().unwrap();
            assert!(ours.iter().all(|&(slot, _)| odd(slot)));
            assert_same_ranking(&ours, &reader.bm25_of_fts5(&conn, &terms, top_k, odd).unwrap(), "filtered");
        }
    }
}

#[tokio::test]
async fn lengths_an_older_rag_left_stale_are_not_used_until_the_next_writer_writes_them() {
    let (dir, backend) = store_with(2, Metric::Cosine).await;
    let records =
        (0..20).map(|i| text_record(&format!("n{i}.md"), 0, &format!("flour {}", "filler ".repeat(i)), vec![1.0, 0.0]));
    backend.put("notes", records.collect()).await.unwrap();
    release(&backend).await;
    let store = dir.path().join("stores/notes");
    let db = store.join(DB_FILE);
    let flour = |reader: &Reader| {
        let terms = reader.affordable_terms(&reader.conn(), &["flour".to_string()]).unwrap();
        reader.bm25_with_lengths(&reader.conn(), &terms, 5, |_| true).unwrap()
    };
    assert!(flour(&Reader::open(&store).unwrap()).is_some());

    // A store made before the file: neither file nor stamp.
    fs::remove_file(store.join(LENGTHS_FILE)).unwrap();
    Connection::open(&db).unwrap().execute("DELETE FROM settings WHERE key = 'lengths_updated_at'", []).unwrap();
    let reader = Reader::open(&store).unwrap();
    assert!(!reader.lengths.current);
    assert!(flour(&reader).is_none(), "FTS5 ranks it meanwhile");
    assert_eq!(lexical_keys(&backend, "flour", 3).await, ["n0.md#0", "n1.md#0", "n2.md#0"], "shortest first");
    drop(backend.lock_for_writing("notes").await.unwrap());
    let indexed = indexed_lengths(&store);
    assert_eq!(file_lengths(&store, &indexed), indexed, "written from the full-text index");
    assert!(flour(&Reader::open(&store).unwrap()).is_some());

    // A commit by an older rag moves `updated_at` past the stamp.
    Connection::open(&db).unwrap().execute("UPDATE settings SET value = '1' WHERE key = 'updated_at'", []).unwrap();
    assert!(!Reader::open(&store).unwrap().lengths.current);
    drop(backend.lock_for_writing("notes").await.unwrap());
    assert!(Reader::open(&store).unwrap().lengths.current);

    // A full-text index rebuilt by a new tokenizer is counted again.
    write_at(&fs::File::options().write(true).open(store.join(LENGTHS_FILE)).unwrap(), &[9; 40], 0).unwrap();
    Connection::open(&db)
        .unwrap()
        .execute_batch("DROP TABLE lexical; DELETE FROM settings WHERE key = 'lexical_version'")
        .unwrap();
    drop(backend.lock_for_writing("notes").await.unwrap());
    assert_eq!(file_lengths(&store, &indexed_lengths(&store)), indexed_lengths(&store));
    assert!(flour(&Reader::open(&store).unwrap()).is_some());
}

#[tokio::test]
async fn a_term_fts5_reads_as_several_words_is_ranked_by_fts5() {
    let (dir, backend) = store_with(2, Metric::Cosine).await;
    backend.put("notes", vec![text_record("a.md", 0, "alpha beta gamma", vec![1.0, 0.0])]).await.unwrap();
    release(&backend).await;
    // FTS5 matches "alpha:beta" as the phrase "alpha beta"; no posting list has that name.
    let reader = Reader::open(&dir.path().join("stores/notes")).unwrap();
    let terms = reader.affordable_terms(&reader.conn(), &["alpha:beta".to_string()]).unwrap();
    assert_eq!(terms, [("alpha:beta".to_string(), 1)]);
    assert!(reader.bm25_with_lengths(&reader.conn(), &terms, 5, |_| true).unwrap().is_none());
    let request = LexicalRequest::new(vec!["alpha:beta".into()], 5);
    let hits = backend.lexical_query("notes", &request).await.unwrap().unwrap();
    assert_eq!(hits.len(), 1, "found as FTS5 reads it");
}

#[tokio::test]
async fn query_syntax_in_terms_is_searched_as_text() {
    let (_dir, backend) = store_with(2, Metric::Cosine).await;
    backend.put("notes", vec![text_record("a.md", 0, "plain words", vec![1.0, 0.0])]).await.unwrap();
    for nasty in [r#"" OR x"#, "NEAR(a b)", "*", "a:b", "'", "AND", "^x"] {
        let request = LexicalRequest::new(vec![nasty.to_string()], 5);
        let hits = backend.lexical_query("notes", &request).await;
        assert!(hits.is_ok(), "{nasty}: {hits:?}");
    }
}

#[tokio::test]
async fn vector_files_never_shrink_under_a_reader_when_a_writer_reopens_after_a_prune() {
    let (dir, backend) = store_with(4, Metric::Cosine).await;
    let records = (0..10).map(|i| record(&format!("f{i}.md"), 0, 1, "h", vec![1.0, i as f32, 0.0, 1.0])).collect();
    backend.put("notes", records).await.unwrap();
    // Prune the files written last: their slots are the tail of the vector files.
    backend.delete("notes", (5..10).map(|i| format!("f{i}.md#0")).collect()).await.unwrap();
    drop(backend);
    let store = dir.path().join("stores/notes");
    let reader = Reader::open(&store).unwrap();
    let lengths = |name: &str| fs::metadata(store.join(name)).unwrap().len();
    let files = [VECTORS_FILE, COMPACT_FILE, BITS_FILE, SIGNS_FILE, LENGTHS_FILE];
    let before = files.map(lengths);
    assert!(before.iter().all(|&len| len > 0));
    // A new writer repairs the store while the reader's mapping is live.
    let writer = LocalBackend::new(dir.path());
    let _lock = writer.lock_for_writing("notes").await.unwrap();
    assert_eq!(files.map(lengths), before, "a mapped file was cut short");
    // Every mapped byte is still backed by the file (a cut file would SIGBUS here).
    let sum: f32 = reader.floats().iter().filter(|x| x.is_finite()).sum();
    assert!(sum > 0.0);
    let hits = reader.query(&QueryRequest::new(vec![1.0, 0.0, 0.0, 1.0], 10)).unwrap();
    assert_eq!(hits.len(), 5);
}

#[tokio::test]
async fn freed_slots_are_reused_and_the_file_does_not_grow() {
    let (dir, backend) = store_with(4, Metric::Cosine).await;
    for round in 0..5 {
        let records = (0..10).map(|i| record("f.txt", i, 10, &format!("r{round}"), vec![1.0, i as f32, 0.0, 1.0]));
        backend.put("notes", records.collect()).await.unwrap();
    }
    let len = fs::metadata(dir.path().join("stores/notes").join(VECTORS_FILE)).unwrap().len();
    assert!(len <= 20 * 16, "vector file grew to {len} bytes for 10 live vectors");
    assert_eq!(backend.records("notes").await.unwrap().len(), 10);
}

#[tokio::test]
async fn file_states_report_partial_files_as_unfinished() {
    let (_dir, backend) = store_with(2, Metric::Cosine).await;
    backend
        .put(
            "notes",
            vec![
                record("whole.md", 0, 1, "h", vec![1.0, 0.0]),
                record("part.md", 0, 3, "h", vec![1.0, 0.0]),
                record("mixed.md", 0, 2, "old", vec![1.0, 0.0]),
                record("mixed.md", 1, 2, "new", vec![1.0, 0.0]),
            ],
        )
        .await
        .unwrap();
    let states = backend.file_states("notes").await.unwrap();
    let hash = |p: &str| states.iter().find(|s| s.path == p).unwrap().content_hash.clone();
    assert_eq!(hash("whole.md").as_deref(), Some("h"));
    assert_eq!(hash("part.md"), None);
    assert_eq!(hash("mixed.md"), None);
}

#[tokio::test]
async fn unreadable_files_are_remembered_across_processes_and_forgotten_on_request() {
    let (dir, backend) = store_with(3, Metric::Cosine).await;
    // A store made before the table existed reads as remembering nothing.
    let db = backend.store_dir("notes").unwrap().join(DB_FILE);
    Connection::open(&db).unwrap().execute_batch("DROP TABLE unreadable").unwrap();
    assert!(backend.unreadable_files("notes").await.unwrap().is_empty());

    let file = |path: &str, hash: &str| UnreadableFile {
        path: path.into(),
        content_hash: hash.into(),
        reason: "encrypted".into(),
        reader: "rag-core 1".into(),
    };
    let _lock = backend.lock_for_writing("notes").await.unwrap();
    backend.remember_unreadable("notes", vec![file("a.pdf", "h1"), file("b.pdf", "h2")], Vec::new()).await.unwrap();
    backend.remember_unreadable("notes", vec![file("a.pdf", "h3")], vec!["b.pdf".into()]).await.unwrap();
    drop(backend);
    let reopened = LocalBackend::new(dir.path());
    assert_eq!(reopened.unreadable_files("notes").await.unwrap(), [file("a.pdf", "h3")]);
}

#[tokio::test]
async fn a_second_writer_is_refused_while_the_first_holds_the_store() {
    let (dir, first) = store_with(2, Metric::Cosine).await;
    let held = first.lock_for_writing("notes").await.unwrap();
    let second = LocalBackend::new(dir.path());
    let err = second.lock_for_writing("notes").await.unwrap_err();
    assert!(matches!(err, Error::StoreBusy { .. }), "{err}");
    // Readers are never blocked.
    assert!(second.query("notes", &QueryRequest::new(vec![1.0, 0.0], 1)).await.unwrap().is_empty());
    // The lock is the guard's, not the backend's: dropping the backend keeps it.
    drop(first);
    assert!(matches!(second.lock_for_writing("notes").await, Err(Error::StoreBusy { .. })));
    drop(held);
    let _lock = second.lock_for_writing("notes").await.unwrap();
}

struct Lengths;

#[async_trait]
impl rag_core::embed::Embedder for Lengths {
    fn model(&self) -> &str {
        "toy"
    }
    fn dimension(&self) -> usize {
        2
    }
    async fn embed_documents(&self, docs: &[rag_core::embed::DocText]) -> Result<Vec<Vec<f32>>> {
        Ok(docs.iter().map(|d| vec![1.0, d.text.len() as f32]).collect())
    }
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        Ok(vec![1.0, query.len() as f32])
    }
}

/// The whole text as one chunk.
struct Whole;

impl rag_core::chunk::Chunker for Whole {
    fn chunk(&self, text: &str, _path: &str, _language: &str) -> Vec<rag_core::chunk::TextChunk> {
        let lines = rag_core::chunk::LineIndex::new(text);
        let end = lines.line_of(text.len().saturating_sub(1));
        let metadata = rag_core::store::Metadata::new();
        vec![rag_core::chunk::TextChunk {
            text: text.into(),
            byte_start: 0,
            byte_end: text.len(),
            line_start: 1,
            line_end: end,
            metadata,
        }]
    }
    fn settings(&self) -> String {
        "whole".into()
    }
}

#[tokio::test]
async fn an_index_run_releases_the_store_when_it_ends() {
    let data = tempfile::tempdir().unwrap();
    let mut notes = rag_core::source::MemorySource::new();
    notes.insert("a.md", rag_core::source::Document::new("some text", "markdown"));
    let notes: Arc<dyn rag_core::source::Source> = Arc::new(notes);
    let backend = Arc::new(LocalBackend::new(data.path()));
    let indexer = rag_core::index::Indexer::new(Arc::new(Lengths), backend.clone(), Arc::new(Whole));
    indexer.index("notes", notes.clone()).await.unwrap();
    // The program still holds `backend`, yet another writer may now take the store.
    let other = LocalBackend::new(data.path());
    let held = other.lock_for_writing("notes").await.unwrap();
    let err = indexer.index("notes", notes.clone()).await.unwrap_err();
    assert!(matches!(err, Error::StoreBusy { .. }), "{err}");
    drop(held);
    indexer.index("notes", notes).await.unwrap();
}

#[tokio::test]
async fn vectors_written_without_a_commit_are_never_returned_and_are_reclaimed() {
    let (dir, backend) = store_with(2, Metric::Cosine).await;
    backend.put("notes", vec![record("a.md", 0, 1, "h", vec![1.0, 0.0])]).await.unwrap();
    drop(backend);
    // Simulate a writer killed after writing a vector but before its commit.
    let vectors = dir.path().join("stores/notes").join(VECTORS_FILE);
    let file = OpenOptions::new().write(true).open(&vectors).unwrap();
    write_at(&file, &[0.0f32, 1.0].iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>(), 8).unwrap();
    let backend = LocalBackend::new(dir.path());
    let hits = backend.query("notes", &QueryRequest::new(vec![0.0, 1.0], 5)).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].chunk.key, "a.md#0");
    let _lock = backend.lock_for_writing("notes").await.unwrap();
    // The orphan slot is freed in place, never cut off (a reader may map the file).
    assert_eq!(fs::metadata(&vectors).unwrap().len(), 16);
    let bytes = fs::read(&vectors).unwrap();
    assert!(f32::from_le_bytes(bytes[8..12].try_into().unwrap()).is_nan(), "marked free");
    backend.put("notes", vec![record("b.md", 0, 1, "h", vec![0.0, 1.0])]).await.unwrap();
    assert_eq!(fs::metadata(&vectors).unwrap().len(), 16, "the freed slot is reused");
    let hits = backend.query("notes", &QueryRequest::new(vec![0.0, 1.0], 5)).await.unwrap();
    assert_eq!(hits[0].chunk.key, "b.md#0");
}

/// Writes `vector` into `slots` of every vector file of the store at
/// `store`, as a writer killed before its commit leaves them: no rows.
fn write_without_rows(store: &Path, vector: &[f32], slots: std::ops::Range<u64>) {
    let dim = vector.len();
    let exact = SlotFile::open(store.join(VECTORS_FILE), dim * 4).unwrap();
    let compact = SlotFile::open(store.join(COMPACT_FILE), scan::compact_stride(dim)).unwrap();
    let codes = Codes::ALL.map(|kind| (kind, SlotFile::open(store.join(kind.file_name()), kind.stride(dim)).unwrap()));
    let mut bytes = Vec::new();
    for slot in slots {
        exact.write(slot, &vector.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>()).unwrap();
        scan::quantize(vector, &mut bytes);
        compact.write(slot, &bytes).unwrap();
        for (kind, file) in &codes {
            kind.encode(vector, &mut bytes);
            file.write(slot, &bytes).unwrap();
        }
    }
}

#[tokio::test]
async fn many_uncommitted_vectors_closer_than_every_row_still_leave_k_real_hits() {
    let (dir, backend) = store_with(4, Metric::Cosine).await;
    let records = (0..10).map(|i| record("a.md", i, 10, "h", vec![1.0, i as f32, 0.5, 0.0])).collect();
    backend.put("notes", records).await.unwrap();
    drop(backend);
    // A killed writer left 200 vectors equal to the query in both files, with no rows.
    let query = vec![0.0f32, 0.0, 0.0, 1.0];
    write_without_rows(&dir.path().join("stores/notes"), &query, 10..210);
    let backend = LocalBackend::new(dir.path());
    let hits = backend.query("notes", &QueryRequest::new(query, 5)).await.unwrap();
    assert_eq!(hits.len(), 5, "{hits:?}");
    assert!(hits.iter().all(|h| h.chunk.source_path == "a.md"));
}

#[tokio::test]
async fn the_last_of_two_upserts_of_a_key_in_one_batch_wins() {
    let (_dir, backend) = store_with(2, Metric::Cosine).await;
    let first = record("a.md", 0, 1, "old", vec![1.0, 0.0]);
    let second = record("a.md", 0, 1, "new", vec![0.0, 1.0]);
    backend.put("notes", vec![first, second]).await.unwrap();
    let records = backend.records("notes").await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].chunk.content_hash, "new");
}

#[tokio::test]
async fn euclidean_scores_use_one_over_one_plus_distance() {
    let (_dir, backend) = store_with(2, Metric::Euclidean).await;
    backend.put("notes", vec![record("a.md", 0, 1, "h", vec![3.0, 4.0])]).await.unwrap();
    let hits = backend.query("notes", &QueryRequest::new(vec![0.0, 0.0], 1)).await.unwrap();
    assert!((hits[0].score - 1.0 / 6.0).abs() < 1e-6);
}

#[tokio::test]
async fn bad_vectors_and_names_are_refused_with_the_culprit_named() {
    let (_dir, backend) = store_with(2, Metric::Cosine).await;
    let err = backend.put("notes", vec![record("z.md", 4, 5, "h", vec![0.0, 0.0])]).await.unwrap_err();
    assert!(err.to_string().contains("chunk 4 of z.md"), "{err}");
    let err = backend.put("notes", vec![record("z.md", 0, 1, "h", vec![1.0])]).await.unwrap_err();
    assert!(matches!(err, Error::DimensionMismatch { expected: 2, actual: 1, .. }), "{err}");
    assert!(matches!(backend.store_exists("../escape").await, Err(Error::InvalidStoreName { .. })));
    let err = backend.query("nothere", &QueryRequest::new(vec![1.0, 0.0], 1)).await.unwrap_err();
    assert!(matches!(err, Error::StoreNotFound { .. }));
}

#[tokio::test]
async fn stores_are_listed_described_and_deleted() {
    let (_dir, backend) = store_with(2, Metric::Cosine).await;
    backend.create_store(&config("other", 2, Metric::Cosine)).await.unwrap();
    assert!(matches!(backend.create_store(&config("other", 2, Metric::Cosine)).await, Err(Error::StoreExists { .. })));
    assert_eq!(backend.list_stores().await.unwrap(), ["notes", "other"]);
    backend.put("notes", vec![record("a.md", 0, 1, "h", vec![1.0, 0.0])]).await.unwrap();
    let info = backend.store_info("notes").await.unwrap();
    assert_eq!((info.files, info.chunks), (Some(1), Some(1)));
    assert!(info.size_bytes.unwrap() > 0);
    backend.delete_store("other").await.unwrap();
    assert_eq!(backend.list_stores().await.unwrap(), ["notes"]);
}

#[cfg(unix)]
#[tokio::test]
async fn a_store_is_its_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let backend = LocalBackend::new(&root);
    backend.create_store(&config("notes", 2, Metric::Cosine)).await.unwrap();
    backend.put("notes", vec![record("a.md", 0, 1, "h", vec![1.0, 0.0])]).await.unwrap();
    release(&backend).await;
    let mode = |path: &std::path::Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let store = root.join("stores/notes");
    assert_eq!(mode(&root), 0o700, "the data folder");
    assert_eq!(mode(&root.join("stores")), 0o700);
    assert_eq!(mode(&store), 0o700);
    let mut files = 0;
    for entry in fs::read_dir(&store).unwrap().flatten() {
        // SQLite removes its shared-memory file when the last connection closes.
        let Ok(metadata) = fs::metadata(entry.path()) else { continue };
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600, "{}", entry.path().display());
        files += 1;
    }
    assert!(files >= 4, "store.db, its journal, both vector files, the lock: {files}");
    // Nothing is left of the scratch folder a store is built in.
    let names: Vec<String> =
        fs::read_dir(root.join("stores")).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
    assert_eq!(names, ["notes"]);
}

#[tokio::test]
async fn front_matter_is_stored_once_a_file_and_read_back_on_every_chunk() {
    let (dir, backend) = store_with(2, Metric::Cosine).await;
    let front_matter = serde_json::json!({ "title": "Trip", "notes": "x".repeat(20_000) });
    let with_front_matter = |index: usize| {
        let mut r = record("trip.md", index, 40, "h1", vec![1.0, index as f32]);
        r.chunk.metadata.insert("frontmatter".into(), front_matter.clone());
        r
    };
    backend.put("notes", (0..40).map(with_front_matter).collect()).await.unwrap();
    let db = dir.path().join("stores/notes").join(crate::files::DB_FILE);
    let stored: i64 =
        Connection::open(&db).unwrap().query_row("SELECT SUM(LENGTH(metadata)) FROM chunks", [], |r| r.get(0)).unwrap();
    assert!(stored < 25_000, "40 chunks hold one copy of a 20 KB front matter, not 40: {stored} bytes");

    let keys: Vec<String> = (0..40).map(|i| format!("trip.md#{i}")).collect();
    let chunks = backend.get_chunks("notes", &keys).await.unwrap();
    assert_eq!(chunks.len(), 40);
    assert!(chunks.iter().all(|c| c.metadata.get("frontmatter") == Some(&front_matter)));
    let hits = backend.query("notes", &QueryRequest::new(vec![0.1, 1.0], 5)).await.unwrap();
    assert!(hits.iter().all(|h| h.chunk.chunk_index > 0 && h.chunk.metadata.get("frontmatter") == Some(&front_matter)));

    // A new version without front matter leaves none behind on any chunk.
    let plain: Vec<VectorRecord> = (0..40).map(|i| record("trip.md", i, 40, "h2", vec![1.0, i as f32])).collect();
    backend.put("notes", plain).await.unwrap();
    let chunks = backend.get_chunks("notes", &keys).await.unwrap();
    assert!(chunks.iter().all(|c| c.metadata.get("frontmatter").is_none()));
}

/// A cosine store "notes" of `count` chunks, `f{i}.md` holding the
/// [`real_like`] vector of seed `i`, and those vectors.
async fn store_of_real_like(dim: usize, count: u64) -> (tempfile::TempDir, LocalBackend, Vec<Vec<f32>>) {
    let (dir, backend) = store_with(dim, Metric::Cosine).await;
    let vectors: Vec<Vec<f32>> = (0..count).map(|i| real_like(i, dim)).collect();
    let records = vectors.iter().enumerate().map(|(i, v)| record(&format!("f{i}.md"), 0, 1, "h", v.clone())).collect();
    backend.put("notes", records).await.unwrap();
    (dir, backend, vectors)
}

#[tokio::test]
async fn the_bit_scan_finds_what_exact_search_finds_with_exact_scores() {
    let dim = 256;
    let (dir, backend, vectors) = store_of_real_like(dim, 6_000).await;
    let store = dir.path().join("stores/notes");
    let reader = Reader::open(&store).unwrap();
    assert!(reader.bits_bytes().is_some(), "the bit codes cover the store");
    let flat = vectors.concat();
    let mut found = 0;
    for seed in 0..20 {
        let query = real_like(1_000_000 + seed, dim);
        let exact = scan::top_k(&flat, dim, &query, Metric::Cosine, 10, 1, None);
        let hits = backend.query("notes", &QueryRequest::new(query.clone(), 10)).await.unwrap();
        assert_eq!(hits.len(), 10);
        for hit in &hits {
            // Every score is the exact cosine, whatever stage found the hit.
            let slot: usize = hit.chunk.source_path[1..hit.chunk.source_path.len() - 3].parse().unwrap();
            let truth = rag_core::backend::score(Metric::Cosine, &query, &vectors[slot]);
            assert!((hit.score - truth).abs() < 1e-5, "{} against {truth}", hit.score);
        }
        found += exact.iter().filter(|e| hits.iter().any(|h| h.chunk.key == format!("f{}.md#0", e.slot))).count();
    }
    assert!(found >= 196, "recall@10 {found} of 200");
}

/// A closed store of 50 chunks of 8 dimensions, `f{i}.md` holding the
/// [`real_like`] vector of seed `i`, with `f7.md` deleted (slot 7 free),
/// and its folder.
async fn fifty_chunks_with_slot_7_free() -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, backend) = store_with(8, Metric::Cosine).await;
    let records = (0..50).map(|i| record(&format!("f{i}.md"), 0, 1, "h", real_like(i, 8))).collect();
    backend.put("notes", records).await.unwrap();
    backend.delete("notes", vec!["f7.md#0".into()]).await.unwrap();
    let store = dir.path().join("stores/notes");
    (dir, store)
}

#[tokio::test]
async fn a_store_made_before_bit_codes_gets_them_from_its_next_writer() {
    let (dir, store) = fifty_chunks_with_slot_7_free().await;
    fs::remove_file(store.join(BITS_FILE)).unwrap();
    // Readers of a store without codes scan the int8 copy, as before.
    let backend = LocalBackend::new(dir.path());
    let query = QueryRequest::new(real_like(3, 8), 3);
    let before = backend.query("notes", &query).await.unwrap();
    assert_eq!(before[0].chunk.key, "f3.md#0");
    // The next writer codes every slot from the stored vectors, no re-embedding.
    drop(backend.lock_for_writing("notes").await.unwrap());
    let reader = Reader::open(&store).unwrap();
    let bits = reader.bits_bytes().expect("the codes cover the store");
    let stride = bits::bits_stride(8);
    assert_eq!(bits.len(), 50 * stride);
    let mut expected = Vec::new();
    bits::encode_bits(&reader.vector(3).unwrap(), &mut expected);
    assert_eq!(&bits[3 * stride..4 * stride], &expected[..]);
    assert!(
        f32::from_le_bytes(bits[7 * stride..7 * stride + 4].try_into().unwrap()).is_nan(),
        "the freed slot is free"
    );
    let after = LocalBackend::new(dir.path()).query("notes", &query).await.unwrap();
    assert_eq!(
        after.iter().map(|h| (&h.chunk.key, h.score)).collect::<Vec<_>>(),
        before.iter().map(|h| (&h.chunk.key, h.score)).collect::<Vec<_>>()
    );
    // A version of rag without codes rewrites slot 3 and commits: the codes
    // no longer match, readers leave them alone and the next writer redoes them.
    let codes = SlotFile::open(store.join(BITS_FILE), stride).unwrap();
    codes.write(3, &vec![0u8; stride]).unwrap();
    let conn = Connection::open(store.join("store.db")).unwrap();
    conn.execute("UPDATE settings SET value = '1' WHERE key = 'updated_at'", []).unwrap();
    drop(conn);
    assert!(Reader::open(&store).unwrap().bits_bytes().is_none(), "stale codes are not scanned");
    drop(LocalBackend::new(dir.path()).lock_for_writing("notes").await.unwrap());
    let reader = Reader::open(&store).unwrap();
    assert_eq!(&reader.bits_bytes().expect("current again")[3 * stride..4 * stride], &expected[..]);
}

/// The code file a writer appends a slot at a time is scanned in huge
/// pages once a block of it is whole, where the kernel has them.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn whole_blocks_of_the_codes_are_scanned_in_huge_pages() {
    use crate::large_pages::BLOCK;
    use crate::large_pages::tests::probe;
    let dim = 4096;
    let stride = bits::bits_stride(dim) as u64;
    let (dir, backend) = store_with(dim, Metric::Cosine).await;
    let supported = probe::supported_in(dir.path());
    let records = |from: usize, to: usize| {
        (from..to).map(|i| record(&format!("f{i}.md"), 0, 1, "h", real_like(i as u64, dim))).collect::<Vec<_>>()
    };
    // Short of a block: nothing is re-cached.
    let first = (BLOCK / stride) as usize - 10;
    backend.put("notes", records(0, first)).await.unwrap();
    let store = dir.path().join("stores/notes");
    let reader = Reader::open(&store).unwrap();
    assert_eq!(probe::scanned_in_huge_pages(reader.bits_bytes().unwrap()), 0);
    drop(reader);
    release(&backend).await;
    // Another writer completes the first block and starts the second.
    let backend = LocalBackend::new(dir.path());
    backend.put("notes", records(first, first + 20)).await.unwrap();
    release(&backend).await;
    let reader = Reader::open(&store).unwrap();
    let huge = probe::scanned_in_huge_pages(reader.bits_bytes().unwrap());
    if supported {
        assert_eq!(huge, BLOCK / 1024, "the whole first block");
    } else {
        eprintln!("this kernel or file system caches no huge pages here");
    }
    let hits = backend.query("notes", &QueryRequest::new(real_like(5, dim), 1)).await.unwrap();
    assert_eq!(hits[0].chunk.key, "f5.md#0");
}

#[tokio::test]
async fn sign_bits_of_an_older_rag_give_way_to_two_bit_codes() {
    let (dir, backend) = store_with(16, Metric::Cosine).await;
    let records = (0..40).map(|i| record(&format!("f{i}.md"), 0, 1, "h", real_like(i, 16))).collect();
    backend.put("notes", records).await.unwrap();
    drop(backend);
    let store = dir.path().join("stores/notes");
    // As the version before left a store: sign bits in vectors.b1 under their
    // own stamp, no two-bit codes and no stamp for them.
    fs::remove_file(store.join(BITS_FILE)).unwrap();
    fs::remove_file(store.join(SIGNS_FILE)).unwrap();
    fs::write(store.join(LEGACY_SIGN_BITS_FILE), vec![7u8; 40 * 24]).unwrap();
    let conn = Connection::open(store.join("store.db")).unwrap();
    for codes in Codes::ALL {
        conn.execute("DELETE FROM settings WHERE key = ?1", [codes.stamp()]).unwrap();
    }
    conn.execute(
        "INSERT INTO settings (key, value) SELECT 'bits_updated_at', value FROM settings WHERE key = 'updated_at'",
        [],
    )
    .unwrap();
    drop(conn);
    let query = QueryRequest::new(real_like(5, 16), 3);
    let before = LocalBackend::new(dir.path()).query("notes", &query).await.unwrap();
    assert_eq!(before[0].chunk.key, "f5.md#0");
    assert!(Reader::open(&store).unwrap().bits_bytes().is_none(), "no two-bit codes yet");
    drop(LocalBackend::new(dir.path()).lock_for_writing("notes").await.unwrap());
    assert!(!store.join(LEGACY_SIGN_BITS_FILE).exists(), "the sign bits are removed once replaced");
    let reader = Reader::open(&store).unwrap();
    assert!(reader.signs_bytes().is_some(), "and the sign codes written");
    let codes = reader.bits_bytes().expect("the next writer wrote the codes");
    let mut expected = Vec::new();
    bits::encode_bits(&reader.vector(5).unwrap(), &mut expected);
    let stride = bits::bits_stride(16);
    assert_eq!(&codes[5 * stride..6 * stride], &expected[..]);
    let after = LocalBackend::new(dir.path()).query("notes", &query).await.unwrap();
    assert_eq!(
        after.iter().map(|h| (&h.chunk.key, h.score)).collect::<Vec<_>>(),
        before.iter().map(|h| (&h.chunk.key, h.score)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn stale_slots_ahead_of_every_row_widen_the_bit_stage_to_the_real_hits() {
    // Enough chunks for the two-bit scan, whose first round re-scores exactly
    // only those within the int8 codes' error of the k-th.
    let (dir, _vectors) = stale_copies_of_the_query_ahead_of(3_000, 32).await;
    let reader = Reader::open(&dir.path().join("stores/notes")).unwrap();
    assert!(reader.bits_bytes().is_some(), "the codes cover the store, stale slots included");
}

#[tokio::test]
async fn stale_slots_ahead_of_every_row_widen_the_int8_stage_to_the_real_hits() {
    // Too few chunks for the two-bit scan: the int8 scan's first round, too,
    // re-scores exactly only those within its error of the k-th.
    let (dir, vectors) = stale_copies_of_the_query_ahead_of(300, 32).await;
    // Queries without stale copies get the exact top 10 with exact scores.
    let backend = LocalBackend::new(dir.path());
    for seed in 0..20 {
        let query = real_like(2_000_000 + seed, 32);
        let exact = scan::top_k(&vectors.concat(), 32, &query, Metric::Cosine, 10, 1, None);
        let hits = backend.query("notes", &QueryRequest::new(query, 10)).await.unwrap();
        let found: Vec<_> = hits.iter().map(|h| (h.chunk.key.clone(), h.score)).collect();
        let expected: Vec<_> = exact.iter().map(|s| (format!("f{}.md#0", s.slot), s.score)).collect();
        assert_eq!(found.len(), 10);
        for ((key, score), (want_key, want_score)) in found.iter().zip(&expected) {
            assert_eq!(key, want_key);
            assert!((score - want_score).abs() < 1e-5, "{score} against {want_score}");
        }
    }
}

/// A store of `count` real-like chunks where a killed writer left 20 copies
/// of a query in every file, with no rows: more than k, fewer than the first
/// round reads. Asserts that the query still gets the real top 5, and
/// returns the store and its vectors.
async fn stale_copies_of_the_query_ahead_of(count: u64, dim: usize) -> (tempfile::TempDir, Vec<Vec<f32>>) {
    let (dir, backend, vectors) = store_of_real_like(dim, count).await;
    drop(backend);
    let store = dir.path().join("stores/notes");
    let query = real_like(9_999_999, dim);
    write_without_rows(&store, &query, count..count + 20);
    let hits = LocalBackend::new(dir.path()).query("notes", &QueryRequest::new(query.clone(), 5)).await.unwrap();
    let expected: Vec<String> = scan::top_k(&vectors.concat(), dim, &query, Metric::Cosine, 5, 1, None)
        .iter()
        .map(|s| format!("f{}.md#0", s.slot))
        .collect();
    assert_eq!(hits.iter().map(|h| h.chunk.key.clone()).collect::<Vec<_>>(), expected);
    (dir, vectors)
}

#[tokio::test]
async fn rows_are_read_while_another_search_holds_the_connection() {
    let (dir, backend) = store_with(2, Metric::Cosine).await;
    let records = (0..5).map(|i| record(&format!("r{i}.md"), 0, 1, "h", vec![1.0, i as f32])).collect();
    backend.put("notes", records).await.unwrap();
    let mut reader = Reader::open(&dir.path().join("stores/notes")).unwrap();
    assert_eq!(reader.spare_from_slots, 65_536, "small stores keep to one connection");
    // As a large store does.
    reader.spare_from_slots = 0;
    let reader = std::sync::Arc::new(reader);
    let best: Vec<scan::Scored> = (0..5).rev().map(|slot| scan::Scored { score: slot as f32, slot }).collect();
    // A full-text search holds the store's connection meanwhile.
    let held = reader.conn();
    let (sent, received) = std::sync::mpsc::channel();
    let rows_reader = reader.clone();
    std::thread::spawn(move || {
        let rows = rows_reader.rows_for(&best, 3).map(|hits| hits.len());
        let _ = sent.send(rows);
    });
    let rows = received.recv_timeout(std::time::Duration::from_secs(20)).expect("rows read without waiting");
    assert_eq!(rows.unwrap(), 3);
    drop(held);
    // With the connection free again, it is the one used.
    assert!(reader.rows_conn().is_ok());
}

#[tokio::test]
async fn a_large_store_scans_its_sign_codes_first_and_finds_what_exact_search_finds() {
    // Enough slots that a top-1 query's sign stage keeps under 1/16 of them.
    let dim = 16;
    let (dir, _backend, vectors) = store_of_real_like(dim, 40_000).await;
    let store = dir.path().join("stores/notes");
    let flat = vectors.concat();
    let queries: Vec<Vec<f32>> = (0..20).map(|seed| real_like(2_000_000 + seed, dim)).collect();
    let by_default = Reader::open(&store).unwrap();
    let mut sign_first = Reader::open(&store).unwrap();
    sign_first.sign_from_slots = 0;
    // The same, its candidates' two-bit codes read with `pread` as a
    // store whose code file is too large to map them is.
    let mut sign_first_read = Reader::open(&store).unwrap();
    sign_first_read.sign_from_slots = 0;
    sign_first_read.mapped_candidates_max_bytes = 0;
    let mut found = 0;
    for query in &queries {
        let read = sign_first_read.query(&QueryRequest::new(query.clone(), 1)).unwrap();
        let exact = scan::top_k(&flat, dim, query, Metric::Cosine, 1, 1, None)[0];
        let hits = sign_first.query(&QueryRequest::new(query.clone(), 1)).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!((&read[0].chunk.key, read[0].score), (&hits[0].chunk.key, hits[0].score), "mapped or read");
        let truth = rag_core::backend::score(Metric::Cosine, query, &vectors[exact.slot as usize]);
        found += usize::from(hits[0].chunk.key == format!("f{}.md#0", exact.slot));
        assert!(hits[0].score <= truth + 1e-5, "no hit is better than the exact best");
        // The same answer as without the sign stage, or a tie.
        let plain = by_default.query(&QueryRequest::new(query.clone(), 1)).unwrap();
        assert!(plain[0].chunk.key == hits[0].chunk.key || (plain[0].score - hits[0].score).abs() < 1e-6);
    }
    assert!(found >= 19, "{found} of 20 exact best found");
    assert!(matches!(sign_first.signs.file.map.get(), Some(Some(_))), "the sign codes were scanned");
    assert!(sign_first.bits_file.get().is_none(), "candidates read through the mapping");
    assert!(matches!(sign_first_read.bits_file.get(), Some(Some(_))), "and with pread");
    assert!(by_default.signs.file.map.get().is_none(), "a store under the size scans the two-bit codes alone");
    assert!(by_default.bits.file.map.get().is_some());
}

#[tokio::test]
async fn a_store_made_before_sign_codes_gets_them_from_its_next_writer() {
    let (dir, store) = fifty_chunks_with_slot_7_free().await;
    // As a version of rag with two-bit codes and no sign codes left it: it
    // committed last, so its two-bit stamp is current and no sign stamp is.
    fs::remove_file(store.join(SIGNS_FILE)).unwrap();
    let conn = Connection::open(store.join("store.db")).unwrap();
    conn.execute("DELETE FROM settings WHERE key = ?1", [Codes::Signs.stamp()]).unwrap();
    drop(conn);
    let bits_before = fs::read(store.join(BITS_FILE)).unwrap();
    let reader = Reader::open(&store).unwrap();
    assert!(reader.signs_bytes().is_none() && reader.bits_bytes().is_some());
    drop(reader);
    drop(LocalBackend::new(dir.path()).lock_for_writing("notes").await.unwrap());
    assert_eq!(fs::read(store.join(BITS_FILE)).unwrap(), bits_before, "the two-bit codes were current");
    let reader = Reader::open(&store).unwrap();
    let signs = reader.signs_bytes().expect("the next writer wrote the sign codes");
    let stride = Codes::Signs.stride(8);
    assert_eq!(signs.len(), 50 * stride);
    let mut expected = Vec::new();
    Codes::Signs.encode(&reader.vector(3).unwrap(), &mut expected);
    assert_eq!(&signs[3 * stride..4 * stride], &expected[..]);
    assert!(f32::from_le_bytes(signs[7 * stride..7 * stride + 4].try_into().unwrap()).is_nan(), "the freed slot");
    // A stale sign stamp alone (a commit by that version again) is redone
    // whole, and the two-bit codes, current, are left alone.
    let codes = SlotFile::open(store.join(SIGNS_FILE), stride).unwrap();
    codes.write(3, &vec![0u8; stride]).unwrap();
    let conn = Connection::open(store.join("store.db")).unwrap();
    conn.execute("UPDATE settings SET value = '1' WHERE key = ?1", [Codes::Signs.stamp()]).unwrap();
    drop(conn);
    assert!(Reader::open(&store).unwrap().signs_bytes().is_none(), "stale sign codes are not scanned");
    drop(LocalBackend::new(dir.path()).lock_for_writing("notes").await.unwrap());
    let reader = Reader::open(&store).unwrap();
    assert_eq!(&reader.signs_bytes().expect("current again")[3 * stride..4 * stride], &expected[..]);
    assert_eq!(fs::read(store.join(BITS_FILE)).unwrap(), bits_before);
}

#[tokio::test]
async fn every_file_holds_each_slot_s_own_vector_when_a_batch_fills_gaps_and_the_end() {
    let dim = 12;
    let (dir, backend) = store_with(dim, Metric::Cosine).await;
    let records = (0..10).map(|i| record(&format!("f{i}.md"), 0, 1, "h", real_like(i, dim))).collect();
    backend.put("notes", records).await.unwrap();
    // Free slots 2, 3 and 7; the next batch fills them, then runs past the end.
    backend.delete("notes", ["f2.md#0", "f3.md#0", "f7.md#0"].map(String::from).to_vec()).await.unwrap();
    let records = (10..16).map(|i| record(&format!("f{i}.md"), 0, 1, "h", real_like(i, dim))).collect();
    backend.put("notes", records).await.unwrap();
    release(&backend).await;
    let store = dir.path().join("stores/notes");
    let conn = Connection::open(store.join("store.db")).unwrap();
    let mut stmt = conn.prepare("SELECT slot, source_path FROM chunks").unwrap();
    let rows: Vec<(u64, String)> =
        stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 13);
    assert_eq!(rows.iter().map(|r| r.0).max(), Some(12), "the gaps were filled first");
    let files = [
        (VECTORS_FILE, dim * 4),
        (COMPACT_FILE, scan::compact_stride(dim)),
        (BITS_FILE, Codes::TwoBit.stride(dim)),
        (SIGNS_FILE, Codes::Signs.stride(dim)),
    ];
    let encode = |name: &str, v: &[f32], out: &mut Vec<u8>| match name {
        VECTORS_FILE => {
            out.clear();
            out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        }
        COMPACT_FILE => scan::quantize(v, out),
        BITS_FILE => Codes::TwoBit.encode(v, out),
        _ => Codes::Signs.encode(v, out),
    };
    let mut expected = Vec::new();
    for (name, stride) in files {
        let bytes = fs::read(store.join(name)).unwrap();
        for (slot, path) in &rows {
            let seed: u64 = path[1..path.len() - 3].parse().unwrap();
            let vector = crate::reader::prepare_vector(Metric::Cosine, &real_like(seed, dim)).unwrap();
            encode(name, &vector, &mut expected);
            let at = *slot as usize * stride;
            assert_eq!(&bytes[at..at + stride], &expected[..], "{name}, slot {slot} ({path})");
        }
    }
}

/// The centre `store`'s codes are coded around, asserting that every live
/// slot's codes of each kind are those of its vector less it.
fn codes_are_around_the_recorded_centre(store: &Path, dim: usize) -> crate::centre::Centre {
    use crate::centre::{Centre, CentreRead};
    let conn = Connection::open(store.join("store.db")).unwrap();
    let CentreRead::Found(centre) = Centre::read(&conn, &store.join("store.db"), dim).unwrap() else {
        panic!("no centre recorded")
    };
    let reader = Reader::open(store).unwrap();
    let live: Vec<u64> = {
        let mut stmt = conn.prepare("SELECT slot FROM chunks").unwrap();
        stmt.query_map([], |r| r.get::<_, i64>(0)).unwrap().map(|s| s.unwrap() as u64).collect()
    };
    let (mut residual, mut expected) = (Vec::new(), Vec::new());
    for (kind, codes) in [(Codes::TwoBit, reader.bits_bytes()), (Codes::Signs, reader.signs_bytes())] {
        let codes = codes.unwrap_or_else(|| panic!("{} not current", kind.describe()));
        let stride = kind.stride(dim);
        for &slot in &live {
            centre.residual(&reader.vector(slot).unwrap(), &mut residual);
            kind.encode(&residual, &mut expected);
            let at = slot as usize * stride;
            assert_eq!(&codes[at..at + stride], &expected[..], "slot {slot} of the {}", kind.describe());
        }
    }
    centre
}

/// A store of as many real-like chunks as a centre is first taken at, its
/// writer closed: its path and its vectors.
async fn store_of_the_centre_s_size(dim: usize) -> (tempfile::TempDir, std::path::PathBuf, Vec<Vec<f32>>) {
    let (dir, backend, vectors) = store_of_real_like(dim, crate::centre::CENTRE_MIN_SLOTS).await;
    release(&backend).await;
    let store = dir.path().join("stores/notes");
    (dir, store, vectors)
}

#[tokio::test]
async fn codes_are_coded_around_the_store_s_centre_taken_again_as_it_doubles() {
    use crate::centre::CENTRE_MIN_SLOTS as MIN;
    let dim = 32;
    let (dir, backend) = store_with(dim, Metric::Cosine).await;
    let store = dir.path().join("stores/notes");
    let put = |from: u64, to: u64| {
        let records = (from..to).map(|i| record(&format!("f{i}"), 0, 1, "h", real_like(i, dim))).collect();
        backend.put("notes", records)
    };
    let mean = |to: u64| -> Vec<f32> {
        let vectors: Vec<Vec<f32>> = (0..to).map(|i| real_like(i, dim)).collect();
        (0..dim).map(|d| (vectors.iter().map(|v| f64::from(v[d])).sum::<f64>() / to as f64) as f32).collect()
    };
    // Under the minimum: the codes are of the vectors themselves.
    put(0, MIN - 1).await.unwrap();
    let conn = Connection::open(store.join("store.db")).unwrap();
    let db = store.join("store.db");
    assert_eq!(crate::centre::Centre::read(&conn, &db, dim).unwrap(), crate::centre::CentreRead::Absent);
    // Past it, the writer codes every slot around the store's mean, of an
    // even sample of the slots.
    put(MIN - 1, MIN + 500).await.unwrap();
    let first = codes_are_around_the_recorded_centre(&store, dim);
    assert_eq!(first.live, MIN + 500);
    for (got, want) in first.values.iter().zip(mean(MIN + 500)) {
        assert!((got - want).abs() < 0.01, "{got} against the mean {want}");
    }
    assert!(first.values.iter().map(|x| x * x).sum::<f32>().sqrt() > 0.2, "these vectors share a part");
    // Short of twice as many: new slots are coded around the same centre.
    put(MIN + 500, 2 * MIN + 900).await.unwrap();
    assert_eq!(codes_are_around_the_recorded_centre(&store, dim), first);
    // Twice as many: a new centre, every slot coded again around it, and
    // queries find what exact search finds.
    put(2 * MIN + 900, 2 * MIN + 1_100).await.unwrap();
    let second = codes_are_around_the_recorded_centre(&store, dim);
    assert_eq!(second.live, 2 * MIN + 1_100);
    assert_ne!(second.values, first.values);
    let vectors: Vec<Vec<f32>> = (0..2 * MIN + 1_100).map(|i| real_like(i, dim)).collect();
    for seed in 0..10 {
        let query = real_like(5_000_000 + seed, dim);
        let exact = scan::top_k(&vectors.concat(), dim, &query, Metric::Cosine, 1, 1, None)[0];
        let hits = backend.query("notes", &QueryRequest::new(query.clone(), 1)).await.unwrap();
        let best = scan::exact_score(&query, &vectors[exact.slot as usize], Metric::Cosine);
        assert!((hits[0].score - best).abs() < 1e-6, "{} against the exact best {best}", hits[0].score);
    }
    // Halved by deletes: coded again around the mean of what is left.
    let keys: Vec<String> = (0..MIN + 600).map(|i| format!("f{i}#0")).collect();
    backend.delete("notes", keys).await.unwrap();
    release(&backend).await;
    drop(LocalBackend::new(dir.path()).lock_for_writing("notes").await.unwrap());
    let third = codes_are_around_the_recorded_centre(&store, dim);
    assert_eq!(third.live, MIN + 500);
}

#[test]
fn a_backend_opening_stores_in_place_needs_no_blocking_thread_to_open_one() {
    let runtime = tokio::runtime::Builder::new_current_thread().max_blocking_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let (dir, backend) = store_with(8, Metric::Cosine).await;
        release(&backend).await;
        let in_place = LocalBackend::new(dir.path()).opening_stores_in_place();
        // The runtime's only blocking thread waits until the store is open:
        // an open that needed one would wait for ever (here, the timeout).
        let (opened, wait) = std::sync::mpsc::channel::<()>();
        let busy = tokio::task::spawn_blocking(move || wait.recv().is_ok());
        let config = tokio::time::timeout(std::time::Duration::from_secs(20), in_place.store_config("notes"))
            .await
            .expect("the open waited for a blocking thread")
            .unwrap();
        assert_eq!((config.name.as_str(), config.dimension), ("notes", 8));
        opened.send(()).unwrap();
        assert!(busy.await.unwrap());
        // Queries still run on a blocking thread, now free.
        let hits = in_place.query("notes", &QueryRequest::new(vec![1.0; 8], 1)).await.unwrap();
        assert!(hits.is_empty(), "an empty store");
    });
}

#[tokio::test]
async fn content_written_over_at_one_size_is_coded_around_a_centre_taken_again() {
    use crate::centre::{CENTRE_MIN_SLOTS as MIN, Centre};
    let dim = 16;
    let (dir, store, _) = store_of_the_centre_s_size(dim).await;
    let first = codes_are_around_the_recorded_centre(&store, dim);
    assert_eq!(first.live, MIN);
    // Every chunk rewritten with a vector whose shared part points the
    // other way: the store neither grows nor shrinks, but its mean turns.
    let backend = LocalBackend::new(dir.path());
    let turned = |i: u64| real_like(i, dim).into_iter().map(|x| -x).collect::<Vec<f32>>();
    let rewrite = |from: u64, to: u64| {
        backend.put("notes", (from..to).map(|i| record(&format!("f{i}.md"), 0, 1, "h2", turned(i))).collect())
    };
    rewrite(0, MIN / 2).await.unwrap();
    assert_eq!(codes_are_around_the_recorded_centre(&store, dim), first, "half written over: the same centre");
    // A writer that opens the store again carries the count on.
    release(&backend).await;
    rewrite(MIN / 2, MIN - 1).await.unwrap();
    assert_eq!(codes_are_around_the_recorded_centre(&store, dim), first, "one short: the same centre");
    rewrite(MIN - 1, MIN).await.unwrap();
    let second = codes_are_around_the_recorded_centre(&store, dim);
    assert_eq!(second.live, MIN);
    for (got, was) in second.values.iter().zip(&first.values) {
        assert!((got + was).abs() < 0.01, "{got}: the mean of the new vectors is {}", -was);
    }
    let conn = Connection::open(store.join("store.db")).unwrap();
    assert_eq!(Centre::read_written(&conn, &store.join("store.db")).unwrap(), 0, "counted again from the new centre");
}

#[tokio::test]
async fn a_writer_killed_while_coding_around_a_new_centre_leaves_codes_no_reader_uses() {
    use crate::centre::{Centre, CentreRead};
    let dim = 8;
    let (dir, store, vectors) = store_of_the_centre_s_size(dim).await;
    let db = store.join("store.db");
    // As a writer killed midway leaves it: the new centre recorded and the
    // stamps withdrawn in one transaction, part of the slots coded again.
    let conn = Connection::open(&db).unwrap();
    let CentreRead::Found(mut centre) = Centre::read(&conn, &db, dim).unwrap() else { panic!("no centre") };
    centre.values.iter_mut().for_each(|x| *x *= 0.5);
    centre.write(&conn, &db).unwrap();
    for codes in Codes::ALL {
        conn.execute("DELETE FROM settings WHERE key = ?1", [codes.stamp()]).unwrap();
    }
    drop(conn);
    let bits = SlotFile::open(store.join(BITS_FILE), bits::bits_stride(dim)).unwrap();
    bits.write(3, &vec![0u8; bits::bits_stride(dim)]).unwrap();
    let reader = Reader::open(&store).unwrap();
    assert!(reader.bits_bytes().is_none() && reader.signs_bytes().is_none(), "no codes are scanned");
    let query = real_like(3, dim);
    let hits = reader.query(&QueryRequest::new(query.clone(), 1)).unwrap();
    let exact = scan::top_k(&vectors.concat(), dim, &query, Metric::Cosine, 1, 1, None)[0];
    assert_eq!(hits[0].chunk.key, format!("f{}.md#0", exact.slot));
    drop(reader);
    // The next writer codes every slot around the recorded centre.
    drop(LocalBackend::new(dir.path()).lock_for_writing("notes").await.unwrap());
    assert_eq!(codes_are_around_the_recorded_centre(&store, dim), centre);
}

#[tokio::test]
async fn a_centre_that_cannot_be_read_is_taken_again_and_every_slot_coded_around_it() {
    let dim = 8;
    let (dir, store, _vectors) = store_of_the_centre_s_size(dim).await;
    let first = codes_are_around_the_recorded_centre(&store, dim);
    let conn = Connection::open(store.join("store.db")).unwrap();
    conn.execute("UPDATE settings SET value = '{\"live\": 70000, \"values\": [0.5]}' WHERE key = 'codes_centre'", [])
        .unwrap();
    drop(conn);
    drop(LocalBackend::new(dir.path()).lock_for_writing("notes").await.unwrap());
    assert_eq!(codes_are_around_the_recorded_centre(&store, dim), first, "the same store, the same mean");
}

#[tokio::test]
async fn codes_a_version_of_rag_without_centres_left_are_coded_again_around_one() {
    let dim = 32;
    let (dir, store, vectors) = store_of_the_centre_s_size(dim).await;
    let centred = codes_are_around_the_recorded_centre(&store, dim);
    // As that version leaves a store it opened for writing and committed
    // nothing to: every slot coded again, of the vectors themselves, under
    // its own stamps, and this version's stamps and centre still there.
    let conn = Connection::open(store.join("store.db")).unwrap();
    for codes in Codes::ALL {
        conn.execute(
            "INSERT INTO settings (key, value) SELECT ?1, value FROM settings WHERE key = 'updated_at'",
            [codes.uncentred_stamp()],
        )
        .unwrap();
    }
    let bits = SlotFile::open(store.join(BITS_FILE), bits::bits_stride(dim)).unwrap();
    let signs = SlotFile::open(store.join(SIGNS_FILE), Codes::Signs.stride(dim)).unwrap();
    let mut code = Vec::new();
    for (slot, vector) in vectors.iter().enumerate() {
        bits::encode_bits(vector, &mut code);
        bits.write(slot as u64, &code).unwrap();
        Codes::Signs.encode(vector, &mut code);
        signs.write(slot as u64, &code).unwrap();
    }
    drop(conn);
    // Readers rank by them (all around one centre, the origin) until the
    // next writer codes them again around the store's own.
    let mut reader = Reader::open(&store).unwrap();
    reader.sign_from_slots = 0;
    assert!(reader.bits_bytes().is_some() && reader.signs_bytes().is_some());
    for seed in 0..10 {
        let query = real_like(5_000_000 + seed, dim);
        let exact = scan::top_k(&vectors.concat(), dim, &query, Metric::Cosine, 1, 1, None)[0];
        let hits = reader.query(&QueryRequest::new(query, 1)).unwrap();
        assert_eq!(hits[0].chunk.key, format!("f{}.md#0", exact.slot));
    }
    drop(reader);
    drop(LocalBackend::new(dir.path()).lock_for_writing("notes").await.unwrap());
    assert_eq!(codes_are_around_the_recorded_centre(&store, dim), centred);
    let conn = Connection::open(store.join("store.db")).unwrap();
    for codes in Codes::ALL {
        let left: Option<String> = conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [codes.uncentred_stamp()], |r| r.get(0))
            .optional()
            .unwrap();
        assert_eq!(left, None, "their stamps are gone with them");
    }
    // A store such a version made: no centre, its stamps alone.
    crate::centre::forget(&conn, &store.join("store.db")).unwrap();
    for codes in Codes::ALL {
        conn.execute("UPDATE settings SET key = ?1 WHERE key = ?2", [codes.uncentred_stamp(), codes.stamp()]).unwrap();
    }
    drop(conn);
    drop(LocalBackend::new(dir.path()).lock_for_writing("notes").await.unwrap());
    assert_eq!(codes_are_around_the_recorded_centre(&store, dim), centred, "the same mean, taken anew");
}
