//! `rag query`: one store or several (one embedding per model, hits merged
//! on one ranking), printed for people or as JSON.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use rag_core::filter::Filter;
use rag_core::search::{SearchOptions, check_search};

use crate::cli::QueryArgs;
use crate::output::{self, QueryMetadata, QueryOutput, QueryResult};
use crate::session::{Session, combine_filters};

/// `rag query`: one store, or several (one embedding per model, hits merged on one ranking).
pub async fn query(args: QueryArgs, data_dir: &Path) -> Result<ExitCode> {
    let text = if args.stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read the question from stdin")?;
        text.trim().to_string()
    } else {
        args.text.clone().unwrap_or_default()
    };
    let options = SearchOptions::new(args.top_k)
        .with_mode(args.mode.into())
        .with_filter(combine_filters(
            args.filter.as_deref().map(Filter::from_json).transpose()?,
            args.path.as_deref(),
            &args.ext,
        ))
        .with_lexical_weight(args.lexical_weight)
        .with_max_per_file(args.max_per_file);
    check_search(&text, &options)?;
    let session = Session::new(data_dir.to_path_buf(), args.backend.clone(), args.embedder.clone()).for_one_question();
    // --all-stores searches every store, whatever --store names.
    let named = if args.all_stores { &[][..] } else { &args.stores[..] };
    let stores = session.stores_to_search(named).await?;
    let filter_json = options.filter.as_ref().map(|f| f.as_json().clone());
    let started = Instant::now();
    let targets = session.targets(&stores).await?;
    let found = rag_core::search::search_stores(&targets, &text, &options).await?;
    let elapsed = started.elapsed();
    let results: Vec<QueryResult> = found
        .hits
        .iter()
        .filter(|hit| args.min_score.is_none_or(|min| hit.score >= min))
        .enumerate()
        .map(|(i, hit)| QueryResult::new(i + 1, hit, args.full, args.snippet_length))
        .collect();
    // One store's notes as they are; several stores' each naming its store.
    let several = stores.len() > 1;
    let notes: Vec<String> = found
        .stores
        .iter()
        .flat_map(|(store, answer)| {
            answer.notes.iter().map(move |note| if several { format!("{store}: {note}") } else { note.clone() })
        })
        .collect();
    let mut models: Vec<&str> = Vec::new();
    for target in &targets {
        let model = target.store.config().model.as_str();
        if !models.contains(&model) {
            models.push(model);
        }
    }
    let models = models.join(",");
    let joined = stores.join(",");
    let names: Vec<&str> = stores.iter().map(String::as_str).collect();
    let first = targets[0].store.config();
    let lexical = found.stores.first().map_or(rag_core::search::LexicalSource::None, |(_, answer)| answer.lexical);
    let millis = elapsed.as_secs_f64() * 1000.0;
    let fusion = (options.mode == rag_core::search::SearchMode::Hybrid
        && lexical != rag_core::search::LexicalSource::None)
        .then(|| rag_core::search::Fusion::with_lexical_weight(args.lexical_weight));
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let out = QueryOutput {
            query: &text,
            store: &joined,
            stores: several.then_some(names.as_slice()),
            total_results: results.len(),
            requested_results: args.top_k,
            query_time: elapsed.as_secs_f64(),
            metadata: QueryMetadata {
                backend: targets[0].store.backend().name(),
                model: &models,
                dimension: first.dimension,
                metric: first.metric.as_str(),
                min_score: args.min_score,
                filter: filter_json.as_ref(),
                full: args.full,
                snippet_length: args.snippet_length,
                mode: options.mode.as_str(),
                lexical,
                lexical_weight: args.lexical_weight,
                fusion,
                max_per_file: args.max_per_file,
                notes: &notes,
            },
            backend: targets[0].store.backend().name(),
            model: &models,
            query_time_ms: millis,
            results,
        };
        serde_json::to_writer_pretty(&mut stdout, &out)?;
        writeln!(stdout)?;
    } else {
        for note in &notes {
            eprintln!("note: {note}");
        }
        let how = fusion.map_or_else(|| format!("{} search", options.mode.as_str()), |f| f.to_string());
        let explain = args.explain.then_some(how.as_str());
        let text = output::query_text(&text, &joined, &results, args.top_k, millis, explain);
        write!(stdout, "{}", output::terminal_safe(&text))?;
    }
    stdout.flush()?;
    // The process ends after this: its memory goes back to the system at
    // once, where dropping an in-process model frees its tokenizer's 30,000
    // strings and its tensors one by one (about a tenth of a fresh query).
    // Nothing here is written on drop: the stores were only read.
    std::mem::forget(targets);
    std::mem::forget(session);
    Ok(ExitCode::SUCCESS)
}
