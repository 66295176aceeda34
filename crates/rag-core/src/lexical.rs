//! Lexical terms and BM25: the words a full-text index keeps for a chunk and
//! looks up for a query, the same on every backend.
//!
//! One tokenizer serves prose, code and text without spaces:
//!
//! - words are lower-cased and stemmed (English Snowball), so `indexes`
//!   finds `index`;
//! - identifiers match their parts and the whole: `snake_case`,
//!   `camelCase`, `HTTPServer` and `Type::method` give the parts (`snake`,
//!   `case`, ...) and the joined whole (`snakecase`, `typemethod`);
//! - Chinese, Japanese and Korean runs, written without spaces, give their
//!   overlapping character pairs (bigrams), the usual CJK indexing, so a
//!   query in those scripts finds a document lexically.
//!
//! Backends with a full-text engine store [`index_terms`] and search with
//! [`query_terms`]; [`Bm25`] scores a set of texts in memory the same way
//! (the memory backend, and lexical re-ranking where a backend has no text
//! search).
//!
//! ```
//! use rag_core::lexical::{query_terms, terms};
//! assert_eq!(terms("parse_config"), ["parseconfig", "pars", "config"]);
//! assert_eq!(terms("HTTPServer"), ["httpserver", "http", "server"]);
//! assert_eq!(terms("向量检索"), ["向量", "量检", "检索"]);
//! assert_eq!(query_terms("how do I rotate the keys?"), ["rotat", "key"]);
//! ```

use std::collections::HashMap;
use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};

use crate::types::Chunk;

/// Tokens longer than this (hashes, base64) are not indexed.
const MAX_TERM_CHARS: usize = 48;
/// A query keeps at most this many distinct terms (a pasted page stays cheap).
pub const MAX_QUERY_TERMS: usize = 64;

static STEMMER: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

/// English words too common to help a lexical search; dropped from queries
/// (unless nothing else is left), kept in the index.
const STOP_WORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because",
    "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing",
    "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here",
    "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most",
    "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "out", "over",
    "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "then",
    "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we",
    "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your",
    "yours",
];

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Chinese, Japanese and Korean characters, which are written without spaces.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF        // Hiragana, Katakana
        | 0x3400..=0x4DBF      // CJK Extension A
        | 0x4E00..=0x9FFF      // CJK Unified Ideographs
        | 0xAC00..=0xD7AF      // Hangul syllables
        | 0xF900..=0xFAFF      // CJK Compatibility Ideographs
        | 0x20000..=0x2FA1F) // Extensions B-F, supplement
}

/// The lexical terms of a text, in order, repeats kept (they count).
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    visit_terms(text, &mut |term| out.push(term.to_string()));
    out
}

/// The terms a full-text index keeps for a chunk: its file name (without the
/// extension, which every file of a kind shares), its heading path and its
/// text, joined by spaces.
pub fn index_terms(chunk: &Chunk) -> String {
    let mut out = String::with_capacity(chunk.text.len() / 2);
    for_each_index_term(chunk, &mut |term| {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(term);
    });
    out
}

fn for_each_index_term(chunk: &Chunk, emit: &mut impl FnMut(&str)) {
    let file_name = chunk.source_path.rsplit('/').next().unwrap_or_default();
    let stem = file_name.rsplit_once('.').map_or(file_name, |(stem, _)| stem);
    visit_terms(stem, emit);
    if let Some(headings) = chunk.metadata.get("headings").and_then(|h| h.as_str()) {
        visit_terms(headings, emit);
    }
    visit_terms(&chunk.text, emit);
}

/// How much more a name a chunk defines weighs in BM25 than a word of its
/// text (a field weight, as BM25F and FTS5 columns have): a query's word that
/// names a function or class points at its definition more surely than one
/// found in some body. Chosen on the project's code benchmark (`rag-bench
/// code`); prose has no names and is not affected.
pub const NAME_WEIGHT: f32 = 4.0;

/// The terms of the names a chunk defines or sits in (its `symbols`
/// metadata, which code chunks carry): the second field of a full-text index,
/// weighted [`NAME_WEIGHT`]. Empty for prose.
///
/// ```
/// use rag_core::lexical::name_terms;
/// use rag_core::store::Chunk;
/// let mut chunk = Chunk::new("src/config.rs", 0, "fn load_config() {}");
/// chunk.metadata.insert("symbols".into(), vec!["load_config"].into());
/// assert_eq!(name_terms(&chunk), "loadconfig load config");
/// ```
pub fn name_terms(chunk: &Chunk) -> String {
    chunk_name_terms(chunk).join(" ")
}

/// [`name_terms`] as a list.
pub fn chunk_name_terms(chunk: &Chunk) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(names) = chunk.metadata.get("symbols").and_then(|s| s.as_array()) {
        for name in names.iter().filter_map(|n| n.as_str()) {
            visit_terms(name, &mut |term| out.push(term.to_string()));
        }
    }
    out
}

/// [`index_terms`] as a list, as an in-memory BM25 ([`Bm25`]) takes them.
pub fn chunk_terms(chunk: &Chunk) -> Vec<String> {
    let mut out = Vec::new();
    for_each_index_term(chunk, &mut |term| out.push(term.to_string()));
    out
}

/// The distinct terms of a query, stop words dropped unless nothing else is
/// left, at most [`MAX_QUERY_TERMS`]. Empty when the query has no word at all
/// (only punctuation).
pub fn query_terms(query: &str) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let mut content: Vec<String> = Vec::new();
    let mut words = Vec::new();
    // Stop words are judged on the raw word, before stemming.
    for word in query.split(|c: char| !is_word_char(c)).filter(|w| !w.is_empty()) {
        words.clear();
        visit_terms(word, &mut |t| words.push(t.to_string()));
        let stop = STOP_WORDS.binary_search(&word.to_lowercase().as_str()).is_ok();
        for term in words.drain(..) {
            if !stop && !content.contains(&term) && content.len() < MAX_QUERY_TERMS {
                content.push(term.clone());
            }
            if !all.contains(&term) && all.len() < MAX_QUERY_TERMS {
                all.push(term);
            }
        }
    }
    // Identifiers joined by `::` or `.` also match as a whole: the only
    // terms of the whole query that its single words did not give.
    for term in terms(query) {
        if !all.contains(&term) && all.len() < MAX_QUERY_TERMS {
            all.push(term.clone());
            if content.len() < MAX_QUERY_TERMS {
                content.push(term);
            }
        }
    }
    if content.is_empty() { all } else { content }
}

/// Calls `emit` with every term of `text`.
fn visit_terms(text: &str, emit: &mut impl FnMut(&str)) {
    // A compound is a run of word characters possibly joined by `::` or `.`
    // (`std::fs::read`, `os.path.join`): its words, then the whole.
    let mut rest = text;
    while let Some(start) = rest.find(is_word_char) {
        rest = &rest[start..];
        let mut end = 0;
        let mut words = 0usize;
        loop {
            let word_end = rest[end..].find(|c| !is_word_char(c)).map_or(rest.len(), |i| end + i);
            words += 1;
            end = word_end;
            let after = &rest[end..];
            let joiner = if after.starts_with("::") {
                2
            } else if after.starts_with('.') || after.starts_with("->") {
                if after.starts_with('.') { 1 } else { 2 }
            } else {
                0
            };
            if joiner > 0 && after[joiner..].starts_with(is_word_char) && words < 8 {
                end += joiner;
            } else {
                break;
            }
        }
        let compound = &rest[..end];
        rest = &rest[end..];
        if words == 1 {
            visit_word(compound, emit);
            continue;
        }
        let mut parts = 0;
        let mut whole = String::new();
        for word in compound.split(|c: char| !is_word_char(c)).filter(|w| !w.is_empty()) {
            parts += 1;
            if !word.chars().any(is_cjk) {
                whole.push_str(&lower(word.chars()));
            }
            visit_word(word, emit);
        }
        if parts > 1 && !whole.is_empty() && whole.chars().count() <= MAX_TERM_CHARS {
            with_stem(&whole, emit);
        }
    }
}

/// One word: CJK runs as bigrams, the rest as an identifier (whole and parts).
fn visit_word(word: &str, emit: &mut impl FnMut(&str)) {
    if word.is_ascii() {
        return visit_run(word, false, emit);
    }
    let mut run_start = 0;
    let mut run_cjk: Option<bool> = None;
    for (i, c) in word.char_indices() {
        let cjk = is_cjk(c);
        if run_cjk.is_some_and(|r| r != cjk) {
            visit_run(&word[run_start..i], run_cjk == Some(true), emit);
            run_start = i;
        }
        run_cjk = Some(cjk);
    }
    if run_start < word.len() {
        visit_run(&word[run_start..], run_cjk == Some(true), emit);
    }
}

fn visit_run(run: &str, cjk: bool, emit: &mut impl FnMut(&str)) {
    // Most words: lower-case ASCII, or capitalised; one part.
    let bytes = run.as_bytes();
    if run.len() <= MAX_TERM_CHARS
        && !bytes.is_empty()
        && bytes[1..].iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && (bytes[0].is_ascii_alphanumeric())
    {
        if bytes[0].is_ascii_uppercase() {
            let mut lower = [0u8; MAX_TERM_CHARS];
            lower[..bytes.len()].copy_from_slice(bytes);
            lower[0] = bytes[0].to_ascii_lowercase();
            // The bytes are ASCII letters and digits.
            if let Ok(lower) = std::str::from_utf8(&lower[..bytes.len()]) {
                with_stem(lower, emit);
            }
        } else {
            with_stem(run, emit);
        }
        return;
    }
    if cjk {
        let chars: Vec<char> = run.chars().collect();
        if chars.len() == 1 {
            emit(&chars[0].to_string());
        }
        for pair in chars.windows(2) {
            emit(&pair.iter().collect::<String>());
        }
        return;
    }
    let parts = identifier_parts(run);
    if parts.len() > 1 {
        let whole: String = parts.iter().flat_map(|p| p.chars()).collect();
        if whole.chars().count() <= MAX_TERM_CHARS {
            with_stem(&whole, emit);
        }
    }
    for part in &parts {
        if part.chars().count() <= MAX_TERM_CHARS {
            with_stem(part, emit);
        }
    }
}

/// The lower-case parts of an identifier: split at `_` and at case changes
/// (`parseHTTPRequest` → `parse`, `http`, `request`).
fn identifier_parts(word: &str) -> Vec<String> {
    let mut parts = Vec::new();
    for piece in word.split('_').filter(|p| !p.is_empty()) {
        let chars: Vec<char> = piece.chars().collect();
        let mut start = 0;
        for i in 1..chars.len() {
            let (prev, cur) = (chars[i - 1], chars[i]);
            let next_lower = chars.get(i + 1).is_some_and(|c| c.is_lowercase());
            let boundary = (prev.is_lowercase() && cur.is_uppercase())
                || (prev.is_uppercase() && cur.is_uppercase() && next_lower);
            if boundary {
                parts.push(lower(chars[start..i].iter().copied()));
                start = i;
            }
        }
        parts.push(lower(chars[start..].iter().copied()));
    }
    parts
}

/// Lower case, letters and digits only: some capitals lower to a letter and a
/// combining mark (`İ` → `i̇`), which a full-text tokenizer would split.
fn lower(chars: impl Iterator<Item = char>) -> String {
    chars.flat_map(char::to_lowercase).filter(|c| c.is_alphanumeric()).collect()
}

/// Stems alphabetic words; numbers and codes (`e0502`, `v2`) stay as they are.
#[cfg(test)]
fn stem(term: &str) -> String {
    let mut out = String::new();
    with_stem(term, &mut |s| out.push_str(s));
    out
}

/// FNV-1a: the stem cache hashes short words, where SipHash's setup dominates.
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

thread_local! {
    /// Stems of the words seen lately on this thread: text repeats its
    /// words, and stemming is most of the cost of tokenizing.
    static STEMS: std::cell::RefCell<FnvMap<String, String>> = std::cell::RefCell::new(FnvMap::default());
}

/// Calls `emit` with the stem of `term` (see [`stem`]).
fn with_stem(term: &str, emit: &mut impl FnMut(&str)) {
    let alphabetic = if term.is_ascii() {
        term.bytes().all(|b| b.is_ascii_alphabetic())
    } else {
        term.chars().all(char::is_alphabetic)
    };
    if !alphabetic {
        return emit(term);
    }
    STEMS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(stemmed) = cache.get(term) {
            return emit(stemmed);
        }
        if cache.len() >= 65_536 {
            cache.clear();
        }
        let stemmed = STEMMER.stem(term).into_owned();
        emit(&stemmed);
        cache.insert(term.to_string(), stemmed);
    })
}

/// BM25 (k1 = 1.2, b = 0.75, the parameters SQLite FTS5 uses) over a set of
/// documents held in memory, with weighted fields the way FTS5 weighs its
/// columns: a term's frequency is the weighted sum of its counts in each
/// field, and a document's length is all its terms.
///
/// ```
/// use rag_core::lexical::{Bm25, query_terms, terms};
/// let docs = [terms("the cat sat"), terms("dogs and cats and more cats"), terms("a bird")];
/// let bm25 = Bm25::new(&docs);
/// let scores = bm25.scores(&query_terms("cats"));
/// assert!(scores[1] > scores[0] && scores[0] > 0.0 && scores[2] == 0.0);
/// ```
#[derive(Debug)]
pub struct Bm25 {
    docs: Vec<HashMap<String, f32>>,
    lengths: Vec<f32>,
    document_frequency: HashMap<String, u32>,
    average_length: f32,
}

impl Bm25 {
    const K1: f32 = 1.2;
    const B: f32 = 0.75;

    /// Statistics of `docs`, each given as its terms.
    pub fn new(docs: &[Vec<String>]) -> Self {
        Self::weighted(docs.iter().map(|doc| [(doc.as_slice(), 1.0)]))
    }

    /// Statistics of chunks as a full-text index keeps them: the text
    /// ([`chunk_terms`]) and, weighing [`NAME_WEIGHT`] times as much, the
    /// names the chunk defines ([`chunk_name_terms`]).
    pub fn for_chunks<'c>(chunks: impl IntoIterator<Item = &'c Chunk>) -> Self {
        let fields: Vec<(Vec<String>, Vec<String>)> =
            chunks.into_iter().map(|c| (chunk_terms(c), chunk_name_terms(c))).collect();
        Self::weighted(fields.iter().map(|(text, names)| [(text.as_slice(), 1.0), (names.as_slice(), NAME_WEIGHT)]))
    }

    /// Statistics of documents given as fields, each its terms and weight.
    fn weighted<'d, F>(docs: impl IntoIterator<Item = F>) -> Self
    where
        F: IntoIterator<Item = (&'d [String], f32)>,
    {
        let mut document_frequency: HashMap<String, u32> = HashMap::new();
        let mut counted = Vec::new();
        let mut lengths = Vec::new();
        for fields in docs {
            let mut counts: HashMap<String, f32> = HashMap::new();
            let mut length = 0;
            for (terms, weight) in fields {
                for term in terms {
                    *counts.entry(term.clone()).or_default() += weight;
                }
                length += terms.len();
            }
            for term in counts.keys() {
                *document_frequency.entry(term.clone()).or_default() += 1;
            }
            lengths.push(length as f32);
            counted.push(counts);
        }
        let average_length = if counted.is_empty() { 0.0 } else { lengths.iter().sum::<f32>() / counted.len() as f32 };
        Self { docs: counted, lengths, document_frequency, average_length }
    }

    /// The BM25 score of every document for the query terms; 0 where none matches.
    pub fn scores(&self, query: &[String]) -> Vec<f32> {
        let n = self.docs.len() as f32;
        let idf: Vec<(&String, f32)> = query
            .iter()
            .filter_map(|term| {
                let df = *self.document_frequency.get(term)? as f32;
                Some((term, (1.0 + (n - df + 0.5) / (df + 0.5)).ln()))
            })
            .collect();
        self.docs
            .iter()
            .zip(&self.lengths)
            .map(|(counts, &length)| {
                let norm = Self::K1 * (1.0 - Self::B + Self::B * length / self.average_length.max(1.0));
                idf.iter()
                    .filter_map(|(term, idf)| {
                        let tf = *counts.get(*term)?;
                        Some(idf * tf * (Self::K1 + 1.0) / (tf + norm))
                    })
                    .sum()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_sorted_for_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn identifiers_match_their_parts_and_the_whole() {
        assert_eq!(terms("snake_case"), ["snakecase", "snake", "case"].map(stem));
        assert_eq!(terms("camelCase"), ["camelcase", "camel", "case"].map(stem));
        assert_eq!(terms("parseHTTPRequest"), ["parsehttprequest", "pars", "http", "request"]);
        // `Type::method` gives both words and the joined whole.
        assert_eq!(terms("Type::method"), ["type", "method", "typemethod"]);
        assert_eq!(terms("os.path.join()"), ["os", "path", "join", "ospathjoin"]);
        // The query side finds the same terms.
        let doc = terms("fn load_store_config(path: &Path) -> StoreConfig");
        for query in ["load_store_config", "store config", "StoreConfig", "loadStoreConfig"] {
            let wanted = query_terms(query);
            assert!(wanted.iter().all(|t| doc.contains(t)), "{query}: {wanted:?} not all in {doc:?}");
        }
    }

    #[test]
    fn text_without_spaces_is_indexed_in_character_pairs() {
        let doc = terms("本文介绍向量检索的原理。ベクトル検索の仕組み");
        for query in ["向量检索", "検索"] {
            let wanted = query_terms(query);
            assert!(!wanted.is_empty());
            assert!(wanted.iter().all(|t| doc.contains(t)), "{query}: {wanted:?}");
        }
        assert_eq!(terms("字"), ["字"]);
        // Mixed scripts split into runs.
        assert_eq!(terms("Rust语言"), ["rust", "语言"]);
    }

    #[test]
    fn queries_drop_stop_words_and_punctuation() {
        assert_eq!(query_terms("What is the rotation of keys?"), ["rotat", "key"]);
        // Only stop words: keep them rather than search for nothing.
        assert_eq!(query_terms("to be or not to be"), ["to", "be", "or", "not"]);
        assert!(query_terms("?!... --- ***").is_empty());
        assert!(query_terms("").is_empty());
        let long = "word ".repeat(20_000) + &(0..500).map(|i| format!("t{i} ")).collect::<String>();
        assert!(query_terms(&long).len() <= MAX_QUERY_TERMS);
    }

    #[test]
    fn overlong_tokens_are_not_indexed() {
        let blob = "a".repeat(200);
        assert!(terms(&blob).is_empty());
        assert_eq!(terms(&format!("{blob} kept")), ["kept"]);
    }

    #[test]
    fn bm25_matches_hand_computed_scores() {
        // Two documents, one term in the first only: idf = ln(1 + (2 - 1 + 0.5) / 1.5) = ln 2.
        let docs = vec![vec!["x".to_string(), "y".to_string()], vec!["y".to_string(), "y".to_string()]];
        let scores = Bm25::new(&docs).scores(&["x".to_string()]);
        // tf 1, length 2 = average: 1 * 2.2 / (1 + 1.2) = 1, times ln 2.
        assert!((scores[0] - 2f32.ln()).abs() < 1e-6, "{scores:?}");
        assert_eq!(scores[1], 0.0);
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;

    /// Random text from an alphabet of the awkward: identifier joiners,
    /// CJK, combining marks, emoji, digits, long runs.
    fn random_text(state: &mut u64, len: usize) -> String {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "_",
            "::",
            ".",
            "->",
            " ",
            "\n",
            "9",
            "é",
            "e\u{301}",
            "字",
            "ー",
            "한",
            "😀",
            "\u{200b}",
            "ß",
            "İ",
            "Σ",
            "ǅ",
            "\u{0}",
            "\"",
            "*",
            "^",
            "NEAR",
            "OR",
            "(",
            "-",
            "aaaaaaaaaaaaaaaaaaaaaaaaaa",
            "𝔘",
            "٣",
        ];
        let mut out = String::new();
        for _ in 0..len {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            out.push_str(PIECES[(*state % PIECES.len() as u64) as usize]);
        }
        out
    }

    #[test]
    fn any_text_gives_bounded_alphanumeric_terms() {
        let mut state = 0x1234_5678_9abc_def1u64;
        for round in 0..3_000 {
            let text = random_text(&mut state, (round % 97) + 1);
            for term in terms(&text) {
                assert!(!term.is_empty(), "{text:?}");
                assert!(term.chars().all(char::is_alphanumeric), "{term:?} from {text:?}");
                // Stems of 48-character words, CJK pairs, or the word itself.
                assert!(term.chars().count() <= MAX_TERM_CHARS, "{term:?}");
            }
            let query = query_terms(&text);
            assert!(query.len() <= MAX_QUERY_TERMS);
            assert!(query.iter().all(|t| !t.is_empty() && t.chars().all(char::is_alphanumeric)), "{query:?}");
        }
    }
}

#[cfg(test)]
mod speed {
    #[test]
    #[ignore = "a measurement: cargo test --release -p rag-core speed -- --ignored --nocapture"]
    fn tokenizing_speed() {
        let text = "## Section 3 of note 17\n\nPlain prose about the topic, with a link or two. ".repeat(200_000);
        let started = std::time::Instant::now();
        let mut out = String::new();
        let mut n = 0;
        super::visit_terms(&text, &mut |t| {
            n += 1;
            out.push_str(t);
            out.push(' ');
        });
        let secs = started.elapsed().as_secs_f64();
        println!("{n} terms, {:.1} MB/s", text.len() as f64 / secs / 1e6);
    }
}
