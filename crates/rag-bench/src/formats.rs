//! `rag-bench formats`: extraction and chunking throughput per document
//! format, in memory.

use std::time::Instant;

use anyhow::{Context, Result};
use rag_ingest::TextChunker;

use crate::index::{markdown_body, rust_body, text_body};
use crate::median;

/// Extraction and chunking throughput per format, in memory (no disk, no
/// embedding): what the indexer does to each file before embedding.
pub(crate) fn bench_formats(runs: usize) -> Result<()> {
    use rag_core::chunk::Chunker;
    let chunker = TextChunker::default();
    let samples: Vec<(&str, &str, Vec<u8>)> = vec![
        ("markdown, 10 MB", "notes.md", fill(10, |i| markdown_body(i).into_bytes())),
        ("Rust source, 10 MB", "lib.rs", fill(10, |i| rust_body(i).into_bytes())),
        (
            "Python source",
            "mod.py",
            fill(4, |i| {
                (0..20)
                    .map(|f| format!("def step_{i}_{f}(x):\n    y = x * {f}\n    return y ^ (y >> 7)\n\n\n"))
                    .collect::<String>()
                    .into_bytes()
            }),
        ),
        ("plain text", "log.txt", fill(4, |i| text_body(i).into_bytes())),
        ("CSV", "table.csv", {
            let mut csv = b"id,name,city,amount\n".to_vec();
            csv.extend(fill(4, |i| format!("{i},Customer {i},City {},{}.50\n", i % 97, i % 1000).into_bytes()));
            csv
        }),
        ("HTML", "page.html", {
            let mut html = b"<html><body>".to_vec();
            html.extend(fill(4, |i| {
                format!("<h2>Part {i}</h2><p>{}</p><script>x({i})</script>", "Plain prose about it. ".repeat(20))
                    .into_bytes()
            }));
            html.extend(b"</body></html>");
            html
        }),
        ("Word .docx", "report.docx", docx_sample(4)),
        ("PDF", "paper.pdf", pdf_sample(300)),
    ];
    println!("extraction + chunking (1500/200), in memory, {runs} runs, medians");
    println!(
        "  {:<22} {:>7}  {:>7}  {:>9}  {:>9}  {:>9}  chunks",
        "format", "file MB", "text MB", "time", "file MB/s", "text MB/s"
    );
    for (label, name, bytes) in samples {
        let path = std::path::Path::new(name);
        let mut times = Vec::new();
        let (mut chunks, mut text) = (0, 0);
        for _ in 0..runs {
            let started = Instant::now();
            let extracted = rag_ingest::extract(path, &bytes).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            chunks = chunker.chunk(&extracted.text[extracted.body.clone()], name, &extracted.language).len();
            times.push(started.elapsed().as_secs_f64());
            text = extracted.body.len();
        }
        let t = median(times);
        let (file_mb, text_mb) = (bytes.len() as f64 / 1e6, text as f64 / 1e6);
        println!(
            "  {label:<22} {file_mb:>7.1}  {text_mb:>7.1}  {t:>7.3} s  {:>9.1}  {:>9.1}  {chunks}",
            file_mb / t,
            text_mb / t
        );
    }
    // The floor under code chunking: tree-sitter's parse alone, file by file.
    let files: Vec<String> = (0..1800).map(rust_body).collect();
    let bytes: usize = files.iter().map(String::len).sum();
    let mut parser = tree_sitter::Parser::new();
    parser.set_language(&tree_sitter::Language::new(tree_sitter_rust::LANGUAGE))?;
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        for file in &files {
            parser.parse(file, None).context("tree-sitter gave up")?;
        }
        times.push(started.elapsed().as_secs_f64());
    }
    let t = median(times);
    let mb = bytes as f64 / 1e6;
    println!(
        "  {:<22} {mb:>7.1}  {mb:>7.1}  {t:>7.3} s  {:>9.1}  {:>9.1}  (tree-sitter-rust parse alone)",
        "Rust, parse only",
        mb / t,
        mb / t
    );
    Ok(())
}

/// Repeats `piece(i)` until about `mb` megabytes.
pub(crate) fn fill(mb: usize, piece: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(mb * 1_000_000 + 10_000);
    let mut i = 0;
    while out.len() < mb * 1_000_000 {
        out.extend(piece(i));
        i += 1;
    }
    out
}

pub(crate) fn docx_sample(mb: usize) -> Vec<u8> {
    let body = fill(mb, |i| {
        format!(
            "<w:p><w:pPr><w:pStyle w:val=\"Heading2\"/></w:pPr><w:r><w:t>Section {i}</w:t></w:r></w:p><w:p><w:r><w:t>{}</w:t></w:r></w:p>",
            "Plain prose about the topic. ".repeat(12)
        )
        .into_bytes()
    });
    let xml = format!(r#"<w:document xmlns:w="w"><w:body>{}</w:body></w:document>"#, String::from_utf8_lossy(&body));
    rag_testkit::documents::zip(&[("word/document.xml", xml.as_bytes())])
}

pub(crate) fn pdf_sample(pages: usize) -> Vec<u8> {
    let pages: Vec<Vec<String>> = (0..pages)
        .map(|page| (0..40).map(|line| format!("Page {page} line {line}: ordinary words of a report.")).collect())
        .collect();
    rag_testkit::documents::pdf(&pages)
}
