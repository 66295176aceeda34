//! BM25 computed here from the query terms' posting lists, as FTS5's
//! `bm25()` computes it (same constants, IDF, field weights and order of
//! operations, so the same scores to the bit), with each chunk's length
//! read from the lengths file ([`crate::lengths`]) instead of one B-tree
//! lookup a scored chunk.

/// BM25's term-frequency saturation, as FTS5 sets it.
const K1: f64 = 1.2;
/// BM25's length normalisation, as FTS5 sets it.
const B: f64 = 0.75;

/// One query term's postings: each chunk (slot) that holds it, in slot
/// order, with its frequency there weighted by field.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Postings {
    pub(crate) slots: Vec<(i64, f64)>,
}

/// FTS5's inverse document frequency of a term found in `hits` of `rows`
/// chunks: `ln((N - n + 0.5) / (n + 0.5))`, at least 1e-6.
pub(crate) fn idf(rows: u64, hits: usize) -> f64 {
    let (rows, hits) = (rows as f64, hits as f64);
    let idf = ((rows - hits + 0.5) / (hits + 0.5)).ln();
    if idf <= 0.0 { 1e-6 } else { idf }
}

/// The `top_k` best chunks holding any of the terms, by BM25 over an index
/// of `rows` chunks and `tokens` tokens, best first (ties by slot). Chunks
/// `passes` refuses are left out before the cut; `length` gives a chunk's
/// token count (it is asked only for chunks that pass).
pub(crate) fn best_bm25<E>(
    terms: &[Postings],
    rows: u64,
    tokens: u64,
    top_k: usize,
    passes: impl Fn(i64) -> bool,
    mut length: impl FnMut(i64) -> Result<f64, E>,
) -> Result<Vec<(i64, f64)>, E> {
    if rows == 0 || top_k == 0 {
        return Ok(Vec::new());
    }
    let avgdl = tokens as f64 / rows as f64;
    let idfs: Vec<f64> = terms.iter().map(|t| idf(rows, t.slots.len())).collect();
    let mut heads = vec![0usize; terms.len()];
    let mut scored = Vec::with_capacity(terms.iter().map(|t| t.slots.len()).max().unwrap_or(0));
    let mut freqs_at = Vec::with_capacity(terms.len());
    // The terms' lists merged by slot: each chunk scored once.
    loop {
        let next = terms.iter().zip(&heads).filter_map(|(t, &at)| t.slots.get(at).map(|&(slot, _)| slot)).min();
        let Some(slot) = next else { break };
        freqs_at.clear();
        for (i, (term, at)) in terms.iter().zip(&mut heads).enumerate() {
            if let Some(&(s, freq)) = term.slots.get(*at)
                && s == slot
            {
                freqs_at.push((i, freq));
                *at += 1;
            }
        }
        if !passes(slot) {
            continue;
        }
        let d = length(slot)?;
        let mut score = 0.0;
        for &(i, freq) in &freqs_at {
            score += idfs[i] * ((freq * (K1 + 1.0)) / (freq + K1 * (1.0 - B + B * d / avgdl)));
        }
        scored.push((slot, score));
    }
    let best_first = |a: &(i64, f64), b: &(i64, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if scored.len() > top_k {
        scored.select_nth_unstable_by(top_k - 1, best_first);
        scored.truncate(top_k);
    }
    scored.sort_unstable_by(best_first);
    Ok(scored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postings(slots: &[(i64, f64)]) -> Postings {
        Postings { slots: slots.to_vec() }
    }

    #[test]
    fn scores_follow_the_formula_and_rank_best_first() {
        // 10 chunks of 100 tokens on average; "a" in 2 of them, "b" in 1.
        let terms = [postings(&[(3, 1.0), (7, 2.0)]), postings(&[(7, 4.0)])];
        let lengths = |slot: i64| Ok::<_, ()>(if slot == 3 { 50.0 } else { 200.0 });
        let best = best_bm25(&terms, 10, 1000, 10, |_| true, lengths).unwrap();
        let one = |idf: f64, f: f64, d: f64| idf * (f * 2.2) / (f + 1.2 * (0.25 + 0.75 * d / 100.0));
        let (idf_a, idf_b) = (((10.0 - 2.0 + 0.5) / 2.5f64).ln(), ((10.0 - 1.0 + 0.5) / 1.5f64).ln());
        let seven = one(idf_a, 2.0, 200.0) + one(idf_b, 4.0, 200.0);
        let three = one(idf_a, 1.0, 50.0);
        assert_eq!(best.len(), 2);
        assert_eq!(best[0].0, 7);
        assert!((best[0].1 - seven).abs() < 1e-12, "{} against {seven}", best[0].1);
        assert_eq!(best[1].0, 3);
        assert!((best[1].1 - three).abs() < 1e-12);
    }

    #[test]
    fn the_filter_applies_before_the_cut_and_ties_go_by_slot() {
        let terms = [postings(&[(1, 1.0), (2, 1.0), (5, 1.0), (9, 1.0)])];
        let mut asked = Vec::new();
        let best = best_bm25(
            &terms,
            100,
            1000,
            2,
            |slot| slot != 1,
            |slot| {
                asked.push(slot);
                Ok::<_, ()>(10.0)
            },
        )
        .unwrap();
        assert_eq!(best.iter().map(|b| b.0).collect::<Vec<_>>(), vec![2, 5]);
        assert_eq!(asked, vec![2, 5, 9], "no length read for a chunk the filter refuses");
    }

    #[test]
    fn a_common_term_keeps_a_tiny_positive_idf_and_errors_pass_through() {
        assert_eq!(idf(10, 9), 1e-6);
        assert!(idf(10, 1) > 1.0);
        let terms = [postings(&[(4, 1.0)])];
        assert_eq!(best_bm25(&terms, 10, 100, 5, |_| true, |_| Err::<f64, _>("unreadable")), Err("unreadable"));
        assert!(best_bm25(&terms, 0, 0, 5, |_| true, |_| Ok::<_, ()>(1.0)).unwrap().is_empty());
        assert!(best_bm25(&[], 10, 100, 5, |_| true, |_| Ok::<_, ()>(1.0)).unwrap().is_empty());
    }
}
