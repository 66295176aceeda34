//! `rag-bench code PACKAGE_DIR...`: code search quality, measured the way
//! CodeSearchNet measured it. Each package's docstrings and doc comments are
//! blanked (lines kept), the stripped files are indexed as `rag index` would
//! index them, and the first sentence of each documented definition is the
//! query. A hit is a result in the definition's file whose lines overlap the
//! definition; Hit@1, Hit@5 and MRR@10 are computed per definition.
//! `scripts/fetch-code-bench.sh` fetches the packages the README reports.

pub mod corpus;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rag_core::{
    embed::Embedder,
    search::{Querier, SearchHit, SearchMode, SearchOptions},
};
use serde_json::Value;

use crate::eval::{STORE, Setup, write_if_changed};
use corpus::{Definition, Lang, strip};

/// Scores of a set of queries: shares of definitions found at rank 1, in the
/// top 5, and the mean reciprocal rank in the top 10.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CodeScores {
    /// Share of queries whose first result is the definition.
    pub hit1: f64,
    /// Share of queries with the definition in the first 5 results.
    pub hit5: f64,
    /// Mean of 1 / rank of the first result that is the definition (0 past 10).
    pub mrr10: f64,
}

impl CodeScores {
    /// The scores of the first-hit ranks (1-based, `None` when not found) of
    /// every query.
    pub fn of(ranks: &[Option<usize>]) -> Self {
        if ranks.is_empty() {
            return Self::default();
        }
        let n = ranks.len() as f64;
        let share = |k: usize| ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n;
        let mrr = ranks.iter().map(|r| r.filter(|&r| r <= 10).map_or(0.0, |r| 1.0 / r as f64)).sum::<f64>() / n;
        Self { hit1: share(1), hit5: share(5), mrr10: mrr }
    }
}

/// The rank (1-based) of the first result that is `definition`: in its file,
/// its lines overlapping the definition's.
pub fn first_hit<'a>(
    results: impl IntoIterator<Item = (&'a str, usize, usize)>,
    definition: &Definition,
) -> Option<usize> {
    results
        .into_iter()
        .position(|(path, start, end)| {
            path == definition.path && start <= definition.line_end && definition.line_start <= end
        })
        .map(|i| i + 1)
}

/// What `rag-bench code` was asked to do.
pub struct CodeArgs {
    /// Package folders (a Python package, a crate's `src`).
    pub packages: Vec<PathBuf>,
    /// Where the stripped files and stores are kept between runs.
    pub work: PathBuf,
    /// The embedder.
    pub embedder: Arc<dyn Embedder>,
    /// Modes to score.
    pub modes: Vec<SearchMode>,
    /// Chunk size; `None` is `rag index`'s default for the model.
    pub chunk_size: Option<usize>,
    /// At most this many queries per package, spread evenly over it.
    pub queries: usize,
    /// Print JSON instead of a table.
    pub json: bool,
    /// Also compare fusion rules on the same candidates.
    pub fusion_study: bool,
    /// Print this many queries of each mode whose first result missed, with
    /// what came first (to see why).
    pub misses: usize,
}

/// One package's set: its name, the definitions asked for.
struct Package {
    name: String,
    root: PathBuf,
    definitions: Vec<Definition>,
    files: usize,
}

/// Strips every `.py` and `.rs` file under `dir` into `root/corpus` and
/// picks the queries.
fn prepare(dir: &Path, work: &Path, variant: &str, queries: usize) -> Result<Package> {
    let name = package_name(dir);
    let root = work.join(format!("{name}-{variant}"));
    let mut definitions = Vec::new();
    let mut files = 0;
    let mut paths = Vec::new();
    collect_files(dir, dir, &mut paths)?;
    paths.sort();
    for relative in paths {
        let Some(lang) = Lang::of(&relative) else { continue };
        let path = dir.join(&relative);
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let stripped = strip(&relative, &text, lang)?;
        write_if_changed(&root.join("corpus").join(&relative), &stripped.text)?;
        files += 1;
        definitions.extend(stripped.definitions.into_iter().map(|mut d| {
            d.path = format!("corpus/{}", d.path);
            d
        }));
    }
    // A sentence shared by several definitions has no single answer.
    let mut counts = std::collections::HashMap::new();
    for d in &definitions {
        *counts.entry(d.query.to_lowercase()).or_insert(0) += 1;
    }
    definitions.retain(|d| counts[&d.query.to_lowercase()] == 1);
    if definitions.is_empty() {
        bail!("{}: no documented definition found", dir.display());
    }
    // Evenly spread, so the sample is the same from run to run.
    if definitions.len() > queries {
        let step = definitions.len() as f64 / queries as f64;
        definitions = (0..queries).map(|i| definitions[(i as f64 * step) as usize].clone()).collect();
    }
    Ok(Package { name, root, definitions, files })
}

/// A package's name: its folder's, or its parent's for a `src` folder.
fn package_name(dir: &Path) -> String {
    let file = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match file(dir) {
        Some(name) if name == "src" => dir.parent().and_then(file).unwrap_or(name),
        Some(name) => name,
        None => "package".into(),
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// One row of the result: a package in one mode.
struct Row {
    package: String,
    mode: SearchMode,
    scores: CodeScores,
    median_ms: f64,
}

/// Runs the benchmark and prints the table (or JSON).
pub async fn run(args: CodeArgs) -> Result<()> {
    let setup = Setup::new(args.embedder.clone(), args.chunk_size, true).await?;
    let mut rows = Vec::new();
    let mut summaries = Vec::new();
    for dir in &args.packages {
        let package = prepare(dir, &args.work, &setup.variant, args.queries)?;
        eprintln!("indexing {} ({} files) with {} ...", package.name, package.files, args.embedder.model());
        let indexed = setup.index(&package.root).await?;
        let querier = Querier::new(setup.embedder.clone(), indexed.backend.clone());
        let config = indexed.backend.store_config(STORE).await?;
        let info = indexed.backend.store_info(STORE).await?;
        summaries.push((
            package.name.clone(),
            package.files,
            info.chunks.unwrap_or(0),
            package.definitions.len(),
            indexed.time,
        ));
        for &mode in &args.modes {
            let mut ranks = Vec::with_capacity(package.definitions.len());
            let mut times = Vec::with_capacity(package.definitions.len());
            for definition in &package.definitions {
                let options = SearchOptions::new(10).with_mode(mode);
                let started = Instant::now();
                let found = querier.search_store(STORE, &config, &definition.query, &options).await?;
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                let rank = first_hit(found.hits.iter().map(hit_lines), definition);
                if rank != Some(1) && ranks.iter().filter(|r| **r != Some(1)).count() < args.misses {
                    eprintln!(
                        "miss ({}): {:?} wants {} {}:{}-{}, rank {rank:?}",
                        mode.as_str(),
                        definition.query,
                        definition.name,
                        definition.path,
                        definition.line_start,
                        definition.line_end
                    );
                    for hit in found.hits.iter().take(3) {
                        let place = hit.chunk.metadata.get("headings").and_then(|h| h.as_str()).unwrap_or("");
                        eprintln!(
                            "    {}:{}-{} ({place})",
                            hit.chunk.source_path, hit.chunk.line_start, hit.chunk.line_end
                        );
                    }
                }
                ranks.push(rank);
            }
            rows.push(Row {
                package: package.name.clone(),
                mode,
                scores: CodeScores::of(&ranks),
                median_ms: crate::median(times),
            });
        }
        if args.fusion_study {
            study_fusion(&package, &setup, indexed.backend.as_ref()).await?;
        }
    }
    if args.json {
        let packages: Vec<Value> = summaries
            .iter()
            .map(|(name, files, chunks, queries, time)| {
                let modes: Vec<Value> = rows
                    .iter()
                    .filter(|r| &r.package == name)
                    .map(|r| {
                        serde_json::json!({
                            "mode": r.mode.as_str(), "hit@1": r.scores.hit1, "hit@5": r.scores.hit5,
                            "mrr@10": r.scores.mrr10, "median_query_ms": r.median_ms,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "package": name, "files": files, "chunks": chunks, "queries": queries,
                    "index_time": time, "modes": modes,
                })
            })
            .collect();
        let out = serde_json::json!({
            "model": args.embedder.model(), "chunk_size": setup.chunk_size, "packages": packages,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("model {}, chunks of at most {} characters", args.embedder.model(), setup.chunk_size);
    for (name, files, chunks, queries, time) in &summaries {
        println!("{name}: {files} files, {chunks} chunks, {queries} queries; index: {time}");
    }
    println!("{:<16} {:<8} {:>6} {:>6} {:>7} {:>10}", "package", "mode", "Hit@1", "Hit@5", "MRR@10", "query ms");
    for r in rows {
        println!(
            "{:<16} {:<8} {:>6.3} {:>6.3} {:>7.3} {:>10.2}",
            r.package,
            r.mode.as_str(),
            r.scores.hit1,
            r.scores.hit5,
            r.scores.mrr10,
            r.median_ms
        );
    }
    Ok(())
}

/// Prints each fusion rule's scores on the same candidates of `package`.
async fn study_fusion(package: &Package, setup: &Setup, backend: &dyn rag_core::backend::VectorBackend) -> Result<()> {
    let rules = crate::fusion::Rule::studied();
    let mut ranks = vec![Vec::new(); rules.len()];
    for definition in &package.definitions {
        let vector = setup.embedder.embed_query(&definition.query).await?;
        let arms = crate::fusion::Arms::fetch(backend, STORE, &definition.query, vector, 100).await?;
        let chunks = arms.chunks();
        for (rule, ranks) in rules.iter().zip(&mut ranks) {
            let fused = rule.fuse(&arms);
            let lines = fused.iter().take(10).map(|key| {
                let chunk = chunks[key];
                (chunk.source_path.as_str(), chunk.line_start, chunk.line_end)
            });
            ranks.push(first_hit(lines, definition));
        }
    }
    for (rule, ranks) in rules.iter().zip(&ranks) {
        let s = CodeScores::of(ranks);
        println!("{:<16} {:<18} {:>6.3} {:>6.3} {:>7.3}", package.name, rule.name(), s.hit1, s.hit5, s.mrr10);
    }
    Ok(())
}

fn hit_lines(hit: &SearchHit) -> (&str, usize, usize) {
    (hit.chunk.source_path.as_str(), hit.chunk.line_start, hit.chunk.line_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(path: &str, lines: (usize, usize)) -> Definition {
        Definition { path: path.into(), name: "f".into(), line_start: lines.0, line_end: lines.1, query: "q".into() }
    }

    #[test]
    fn a_hit_is_the_right_file_with_overlapping_lines() {
        let d = definition("corpus/a.py", (10, 20));
        // Wrong file, then lines before the definition, then one touching its last line.
        let results = [("corpus/b.py", 10, 20), ("corpus/a.py", 1, 9), ("corpus/a.py", 20, 30)];
        assert_eq!(first_hit(results, &d), Some(3));
        assert_eq!(first_hit([("corpus/a.py", 21, 40)], &d), None);
        assert_eq!(first_hit([("corpus/a.py", 12, 13)], &d), Some(1));
    }

    #[test]
    fn scores_match_a_hand_computation() {
        // Ranks 1, 3, 6, none and 11 (past the cut-off):
        // Hit@1 = 1/5, Hit@5 = 2/5, MRR@10 = (1 + 1/3 + 1/6 + 0 + 0) / 5 = 0.3.
        let s = CodeScores::of(&[Some(1), Some(3), Some(6), None, Some(11)]);
        assert!((s.hit1 - 0.2).abs() < 1e-12);
        assert!((s.hit5 - 0.4).abs() < 1e-12);
        assert!((s.mrr10 - 0.3).abs() < 1e-12, "{}", s.mrr10);
        assert_eq!(CodeScores::of(&[]), CodeScores::default());
    }

    #[test]
    fn queries_are_unique_and_spread_over_the_package() {
        let dir = std::env::temp_dir().join(format!("rag-bench-code-{}", std::process::id()));
        let src = dir.join("pkg/src");
        std::fs::create_dir_all(&src).unwrap();
        let mut rust = String::new();
        for i in 0..10 {
            rust.push_str(&format!("/// Returns the number {i} as text.\nfn number_{i}() {{}}\n"));
        }
        rust.push_str("/// Does the same thing twice.\nfn a() {}\n/// Does the same thing twice.\nfn b() {}\n");
        std::fs::write(src.join("lib.rs"), &rust).unwrap();
        std::fs::write(src.join("notes.txt"), "not code").unwrap();
        let package = prepare(&src, &dir.join("work"), "v", 5).unwrap();
        assert_eq!(package.name, "pkg");
        assert_eq!(package.files, 1);
        let names: Vec<&str> = package.definitions.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["number_0", "number_2", "number_4", "number_6", "number_8"]);
        assert_eq!(package.definitions[0].path, "corpus/lib.rs");
        let written = std::fs::read_to_string(package.root.join("corpus/lib.rs")).unwrap();
        assert!(!written.contains("Returns") && written.lines().count() == rust.lines().count());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
