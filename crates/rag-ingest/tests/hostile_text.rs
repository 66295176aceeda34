//! Text formats are untrusted bytes too: mutated markdown (with front
//! matter), HTML, CSV, notebooks and source files must decode and chunk, or
//! fail with a reason, and never panic, overflow the stack or run away. A
//! bounded, seeded loop; a failure prints the seed and mutation to replay.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use rag_core::chunk::Chunker;
use rag_ingest::{ExtractError, TextChunker, extract};
use rag_testkit::fuzz::Rng;

/// Rounds per seed; `RAG_FUZZ_ROUNDS` asks for a longer run.
fn rounds() -> u64 {
    rag_testkit::fuzz::rounds(30)
}

/// Well-formed files of each format the walk reads as text.
const SEEDS: &[(&str, &str)] = &[
    (
        "note.md",
        "---\ntitle: Plan\ntags: [a, b]\nbase: &b {x: 1, y: [2, 3]}\nmore: *b\n---\n# Plan\n\nSee [[Other]] #tag\n\n## Steps\n\n```rust\nfn main() {}\n```\n\n- one\n- two\n",
    ),
    (
        "page.html",
        "<!DOCTYPE html><html><head><title>T</title><style>p{}</style></head><body><h1>Title</h1><div><p>One<p>Two<ul><li>a<li>b</ul><table><tr><td>1<td>2</table><script>let x = '<div>';</script></div></body></html>",
    ),
    ("table.csv", "name,born,notes\nAda,1815,\"first, programmer\"\nGrace,1906,\"multi\nline\"\n"),
    (
        "cells.ipynb",
        r##"{"cells":[{"cell_type":"markdown","source":["# Analysis\n","text"]},{"cell_type":"code","source":"df = load()\n"}],"metadata":{"kernelspec":{"language":"python"}}}"##,
    ),
    (
        "lib.rs",
        "/// Docs.\npub struct S { a: u32 }\n\nimpl S {\n    /// New.\n    pub fn new() -> Self { Self { a: 1 } }\n}\n\nmod inner {\n    fn f() { let s = \"}\"; }\n}\n",
    ),
    (
        "app.py",
        "import os\n\nclass A:\n    \"\"\"Doc.\"\"\"\n    def f(self, x):\n        return [x for x in range(3)]\n\ndef g():\n    pass\n",
    ),
];

/// Pieces that make parsers recurse, alias, nest or lose their place.
const TOKENS: &[&str] = &[
    "<div>",
    "</div>",
    "<b>",
    "<table>",
    "<!--",
    "-->",
    "<script>",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "&a ",
    "*a",
    "&b [*a, *a, *a]",
    "---\n",
    "\"",
    "'",
    ",",
    "\n",
    "\r\n",
    "```",
    "#",
    "\t",
    "\u{feff}",
    "\u{fffd}",
    "\0",
    "\\",
    ":",
    "!!binary ",
    "%YAML 1.2\n",
    "? ",
    "|\n",
    "<<: *b\n",
];

/// One mutation of `bytes`, described for the failure message.
fn mutate(bytes: &mut Vec<u8>, rng: &mut Rng) -> String {
    let at = rng.below(bytes.len() + 1);
    match rng.below(6) {
        0 => {
            let token = TOKENS[rng.below(TOKENS.len())];
            let most = if rng.below(8) == 0 { 5_000 } else { 8 };
            let times = 1 + rng.below(most);
            let inserted = token.repeat(times);
            bytes.splice(at..at, inserted.bytes());
            format!("insert {token:?} x{times} at {at}")
        }
        1 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            let old = bytes[i];
            bytes[i] = rng.next() as u8;
            format!("byte {i}: {old} -> {}", bytes[i])
        }
        2 if at < bytes.len() => {
            let end = (at + 1 + rng.below(64)).min(bytes.len());
            bytes.drain(at..end);
            format!("delete {at}..{end}")
        }
        3 if at < bytes.len() => {
            let end = (at + 1 + rng.below(256)).min(bytes.len());
            let slice = bytes[at..end].to_vec();
            let times = 1 + rng.below(200);
            for _ in 0..times {
                bytes.splice(end..end, slice.iter().copied());
            }
            format!("repeat {at}..{end} x{times}")
        }
        4 => {
            bytes.truncate(at);
            format!("truncate at {at}")
        }
        _ => {
            let long = "x".repeat(1 + rng.below(200_000));
            bytes.splice(at..at, long.bytes());
            format!("a line of {} bytes at {at}", long.len())
        }
    }
}

#[test]
fn mutated_text_files_decode_and_chunk_or_fail_with_a_reason() {
    let chunker = TextChunker::default();
    let (mut read, mut refused) = (0, 0);
    for (index, (name, seed)) in SEEDS.iter().enumerate() {
        for round in 0..rounds() {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((index as u64) << 32 | round));
            let mut bytes = seed.as_bytes().to_vec();
            let what: Vec<String> = (0..1 + rng.below(4)).map(|_| mutate(&mut bytes, &mut rng)).collect();
            let started = Instant::now();
            // `RAG_FUZZ_ONLY=table.csv:49` replays one round, its bytes kept in
            // target/fuzz-replay for a closer look.
            if let Ok(only) = std::env::var("RAG_FUZZ_ONLY") {
                if only != format!("{name}:{round}") {
                    continue;
                }
                let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-replay");
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(name), &bytes).unwrap();
                eprintln!("{name} round {round}: {what:?}");
            }
            let outcome = std::panic::catch_unwind(|| match extract(Path::new(name), &bytes) {
                Ok(document) => {
                    let body = &document.text[document.body.clone()];
                    let pieces = chunker.chunk(body, name, &document.language);
                    for piece in &pieces {
                        assert!(piece.byte_end <= body.len() && piece.byte_start <= piece.byte_end);
                    }
                    true
                }
                Err(ExtractError::Unreadable(reason)) => {
                    assert!(!reason.is_empty());
                    false
                }
                Err(_) => false,
            });
            if std::env::var("RAG_FUZZ_TRACE").is_ok() {
                eprintln!("{name} round {round}: {:?}", started.elapsed());
            }
            let Ok(was_read) = outcome else {
                panic!("{name} round {round} panicked after: {what:?}");
            };
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{name} round {round} took {:?} after: {what:?}",
                started.elapsed()
            );
            if was_read {
                read += 1;
            } else {
                refused += 1;
            }
        }
    }
    assert!(read > 100, "the mutations keep most files readable: {read} read, {refused} refused");
}
