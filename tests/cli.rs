//! The `rag` binary end to end, against the fake Ollama on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;

use serde_json::Value;
use support::{FakeHub, FakeOllama, FakeOpenAi, Run, Workspace, sections};

/// Small chunks so files split into several.
const CHUNKS: [&str; 4] = ["--chunk-size", "400", "--chunk-overlap", "50"];

fn index(ws: &Workspace, paths: &[&str]) -> Run {
    let mut args = vec!["index"];
    args.extend(paths);
    args.extend(["--store", "notes"]);
    args.extend(CHUNKS);
    ws.rag(&args)
}

fn notes_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write("docs/install.md", sections("installation", 4));
    ws.write("docs/usage.md", sections("usage", 3));
    ws.write("src/lib.rs", "/// Parses the configuration file.\npub fn parse_config() {}\n");
    ws
}

fn paths(json: &Value) -> Vec<String> {
    json["results"].as_array().unwrap().iter().map(|r| r["file_path"].as_str().unwrap().to_string()).collect()
}

#[test]
fn index_then_query_finds_the_file_with_the_documented_json() {
    let ws = notes_workspace();
    let run = index(&ws, &["docs", "src"]);
    run.assert_ok();
    assert!(run.stdout().contains("3 new"), "{}", run.stdout());

    let json = ws.query_json("notes", "installation notes", 3);
    for field in ["query", "store", "total_results", "requested_results", "query_time", "metadata", "results"] {
        assert!(json.get(field).is_some(), "missing top-level {field}: {json}");
    }
    assert_eq!(json["backend"], "local");
    assert_eq!(json["model"], "embeddinggemma");
    assert_eq!(json["requested_results"], 3);
    let first = &json["results"][0];
    assert_eq!(first["file_path"], "docs/install.md");
    assert_eq!(first["rank"], 1);
    for field in [
        "score",
        "similarity_level",
        "similarity_description",
        "line_start",
        "line_end",
        "chunk_index",
        "total_chunks",
        "content",
        "word_count",
        "char_count",
        "tags",
        "links",
        "frontmatter",
        "key",
    ] {
        assert!(first.get(field).is_some(), "missing result field {field}: {first}");
    }
    let (start, end) = (first["line_start"].as_u64().unwrap(), first["line_end"].as_u64().unwrap());
    let file = std::fs::read_to_string(ws.work().join("docs/install.md")).unwrap();
    let lines: Vec<&str> = file.lines().collect();
    let content = first["content"].as_str().unwrap();
    assert!(first["truncated"].as_bool().unwrap(), "a 300-character snippet of a longer chunk");
    let full = ws.query_json_full("notes", "installation notes", 1);
    let chunk = full["results"][0]["content"].as_str().unwrap();
    assert!(chunk.starts_with(content));
    let first_line = chunk.lines().next().unwrap();
    let last_line = chunk.lines().last().unwrap();
    assert!(lines[start as usize - 1].contains(first_line), "line {start} does not hold {first_line:?}");
    assert!(lines[end as usize - 1].contains(last_line), "line {end} does not hold {last_line:?}");

    let text = ws.rag(&["query", "installation notes", "--store", "notes", "-k", "2"]);
    text.assert_ok();
    assert!(text.stdout().contains("docs/install.md:"), "{}", text.stdout());
}

#[test]
fn reindex_without_changes_requests_no_embeddings() {
    let ws = notes_workspace();
    index(&ws, &["docs", "src"]).assert_ok();
    ws.ollama.reset_stats();
    let run = index(&ws, &["docs", "src"]);
    run.assert_ok();
    assert_eq!(ws.ollama.stats().embedded_texts, 0);
    assert!(run.stdout().contains("3 unchanged"), "{}", run.stdout());
}

#[test]
fn changing_one_file_reembeds_only_that_file() {
    let ws = notes_workspace();
    index(&ws, &["docs", "src"]).assert_ok();
    let before = ws.records("notes");
    ws.write("docs/usage.md", sections("usage", 1));
    ws.ollama.reset_stats();
    let run = index(&ws, &["docs", "src"]);
    run.assert_ok();
    let after = ws.records("notes");
    let usage_chunks = after.iter().filter(|(c, _)| c.source_path == "docs/usage.md").count();
    assert_eq!(ws.ollama.stats().embedded_texts, usage_chunks);
    assert!(run.stdout().contains("1 changed, 2 unchanged"), "{}", run.stdout());
    let untouched = |records: &[(rag_core::store::Chunk, Vec<f32>)]| -> Vec<String> {
        records.iter().filter(|(c, _)| c.source_path != "docs/usage.md").map(|(c, _)| c.key.clone()).collect()
    };
    assert_eq!(untouched(&before), untouched(&after));
    let old_usage = before.iter().filter(|(c, _)| c.source_path == "docs/usage.md").count();
    assert!(usage_chunks < old_usage, "surplus chunks of the shorter file were deleted");
}

#[test]
fn deleting_a_file_removes_its_chunks() {
    let ws = notes_workspace();
    index(&ws, &["docs", "src"]).assert_ok();
    ws.remove("docs/usage.md");
    let run = index(&ws, &["docs", "src"]);
    run.assert_ok();
    assert!(run.stdout().contains("1 removed"), "{}", run.stdout());
    assert!(ws.records("notes").iter().all(|(c, _)| c.source_path != "docs/usage.md"));
    let json = ws.query_json("notes", "usage notes", 10);
    assert!(!paths(&json).contains(&"docs/usage.md".to_string()));
}

#[test]
fn a_store_of_another_model_or_dimension_is_refused() {
    let ws = Workspace::with_ollama(FakeOllama::with_models(&[("embeddinggemma", 64), ("nomic-embed-text", 32)]));
    ws.write("a.md", "some words");
    ws.rag(&["index", ".", "--store", "notes"]).assert_ok();
    let run = ws.rag(&["index", ".", "--store", "notes", "--model", "nomic-embed-text", "--force"]);
    run.assert_code(1);
    let err = run.stderr();
    assert!(
        err.contains("embeddinggemma") && err.contains("64") && err.contains("nomic-embed-text") && err.contains("32"),
        "{err}"
    );
    let run = ws.rag(&["query", "words", "--store", "notes", "--model", "nomic-embed-text"]);
    run.assert_code(1);
    assert!(run.stderr().contains("cannot be mixed"), "{}", run.stderr());
}

#[test]
fn ollama_down_names_the_url_and_how_to_start_it() {
    let ws = Workspace::new();
    ws.write("a.md", "some words");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let run = ws.rag(&["index", ".", "--store", "notes", "--ollama-url", &url]);
    run.assert_code(1);
    let err = run.stderr();
    assert!(err.contains(&url) && err.contains("ollama serve"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "one message: {err}");
}

#[test]
fn a_missing_model_says_to_pull_it() {
    let ws = Workspace::new();
    ws.write("a.md", "some words");
    let run = ws.rag(&["index", ".", "--store", "notes", "--model", "mxbai-embed-large"]);
    run.assert_code(1);
    assert!(run.stderr().contains("ollama pull mxbai-embed-large"), "{}", run.stderr());
}

#[test]
fn binary_and_invalid_utf8_files_are_reported_while_the_rest_index() {
    let ws = Workspace::new();
    ws.write("good.md", "plain good words");
    ws.write("blob.txt", b"\x7fELF\x00\x00\x01binary bytes");
    ws.write("latin1.txt", b"caf\xe9 cr\xe8me br\xfbl\xe9e");
    let run = ws.rag(&["index", ".", "--store", "notes"]);
    run.assert_ok();
    let out = run.stdout();
    assert!(out.contains("skipped: blob.txt: binary file"), "{out}");
    assert!(out.contains("note: latin1.txt: not valid UTF-8"), "{out}");
    assert!(out.contains("2 new"), "{out}");
    let json = ws.query_json("notes", "cr me", 5);
    assert!(paths(&json).contains(&"latin1.txt".to_string()));
}

#[test]
fn an_unreadable_file_fails_the_run_but_not_the_others() {
    let ws = Workspace::new();
    ws.write("good.md", "plain good words");
    ws.write("secret.md", "hidden words");
    let secret = ws.work().join("secret.md");
    let mut perms = std::fs::metadata(&secret).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o000);
    std::fs::set_permissions(&secret, perms).unwrap();
    if std::fs::read(&secret).is_ok() {
        return; // running as a user that reads anything (root): nothing to test
    }
    let run = ws.rag(&["index", ".", "--store", "notes"]);
    run.assert_code(1);
    assert!(run.stdout().contains("failed: secret.md: cannot read"), "{}", run.stdout());
    assert!(run.stdout().contains("1 new"), "{}", run.stdout());
}

/// Lexical search for a few topics returns exactly the stored chunks that hold the word.
fn lexical_agrees_with_rows(ws: &Workspace) {
    let records = ws.records("notes");
    for topic in ["topic3", "topic41", "topic59"] {
        let run = ws.rag(&["query", topic, "--store", "notes", "--json", "--mode", "lexical", "-k", "50"]);
        run.assert_ok();
        let json: Value = serde_json::from_str(&run.stdout()).unwrap();
        let mut found: Vec<String> =
            json["results"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap().to_string()).collect();
        found.sort();
        let mut expected: Vec<String> = records
            .iter()
            .filter(|(c, _)| c.text.split(|ch: char| !ch.is_alphanumeric()).any(|w| w == topic))
            .map(|(c, _)| c.key.clone())
            .collect();
        expected.sort();
        assert_eq!(found, expected, "{topic}");
    }
}

#[test]
fn kill_9_mid_run_then_rerun_equals_a_clean_run() {
    let ws = Workspace::new();
    for i in 0..60 {
        ws.write(&format!("notes/n{i:02}.md"), sections(&format!("topic{i}"), 3));
    }
    // Finished files are written at least every 2 s: kill after about 3 s of work.
    ws.ollama.set_latency(Duration::from_millis(40));
    let args = ["index", "notes", "--store", "notes", "--batch-size", "2", "--concurrency", "1"];
    let mut args: Vec<&str> = args.to_vec();
    args.extend(CHUNKS);
    let mut child = ws.command(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ws.ollama.stats().embed_requests < 75 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = ws.records("notes");
    assert!(!partial.is_empty(), "some files were written before the kill");
    let partial_len = partial.len();

    // The store answers in its interrupted state, and its full-text index agrees with its rows.
    ws.query_json("notes", "topic3", 3);
    lexical_agrees_with_rows(&ws);

    ws.ollama.set_latency(Duration::ZERO);
    ws.command(&args).output().unwrap();
    let resumed = ws.records("notes");
    lexical_agrees_with_rows(&ws);

    let clean = Workspace::new();
    std::fs::remove_dir_all(clean.work()).unwrap();
    std::fs::rename(ws.work(), clean.work()).unwrap();
    clean.command(&args).output().unwrap();
    let fresh = clean.records("notes");
    assert!(partial_len < fresh.len(), "the kill came before the end ({partial_len} of {} chunks)", fresh.len());
    assert_eq!(resumed.len(), fresh.len());
    for ((a, va), (b, vb)) in resumed.iter().zip(&fresh) {
        assert_eq!(a, b);
        assert!(va.iter().zip(vb).all(|(x, y)| (x - y).abs() < 1e-6), "vector of {} differs", a.key);
    }
}

#[test]
fn queries_beside_index_runs_that_prune_never_crash() {
    let ws = Workspace::new();
    for i in 0..40 {
        ws.write(&format!("notes/n{i:02}.md"), sections(&format!("topic{i}"), 2));
    }
    index(&ws, &["notes"]).assert_ok();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let queries = {
        let (stop, bin, data, work, ollama) = (stop.clone(), support::rag_bin(), ws.data(), ws.work(), ws.ollama.url());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && runs < 2_000 {
                let out = std::process::Command::new(&bin)
                    .args(["query", "topic7 notes", "--store", "notes", "-k", "5"])
                    .current_dir(&work)
                    .env("RAG_DATA_DIR", &data)
                    .env("OLLAMA_HOST", &ollama)
                    .output()
                    .unwrap();
                // Never a signal such as SIGBUS from a mapping cut short, never an error.
                assert!(
                    out.status.success(),
                    "a query failed: {:?}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
                runs += 1;
            }
            runs
        })
    };
    // Index runs that shrink the store (prune) and re-open it, again and again.
    for round in 0..6 {
        for i in 0..40 {
            if (i + round) % 3 == 0 {
                ws.remove(&format!("notes/n{i:02}.md"));
            }
        }
        index(&ws, &["notes"]).assert_ok();
        for i in 0..40 {
            ws.write(&format!("notes/n{i:02}.md"), sections(&format!("topic{i} round{round}"), 2));
        }
        index(&ws, &["notes"]).assert_ok();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let runs = queries.join().unwrap();
    assert!(runs > 0);
}

#[test]
fn a_second_index_of_the_same_store_fails_clearly_while_the_first_runs() {
    let ws = Workspace::new();
    for i in 0..10 {
        ws.write(&format!("n{i}.md"), sections(&format!("t{i}"), 2));
    }
    ws.ollama.set_latency(Duration::from_millis(200));
    let mut first = ws
        .command(&["index", ".", "--store", "notes", "--batch-size", "1", "--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ws.ollama.stats().embed_requests < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Other chunk settings: a refused run must not even record them.
    let second = ws.rag(&["index", ".", "--store", "notes", "--chunk-size", "300", "--chunk-overlap", "20"]);
    let info = ws.rag(&["store", "info", "notes"]).stdout();
    first.kill().unwrap();
    first.wait().unwrap();
    second.assert_code(1);
    assert!(second.stderr().contains("locked by another writer (another `rag index`"), "{}", second.stderr());
    assert!(info.contains("size=1500 overlap=200") && !info.contains("size=300"), "{info}");
}

#[test]
fn dry_run_plans_without_ollama_or_writes() {
    let ws = Workspace::new();
    ws.write("a.md", "words");
    let run = ws.rag(&["index", ".", "--store", "notes", "--dry-run", "--ollama-url", "http://127.0.0.1:9"]);
    run.assert_ok();
    assert!(run.stdout().contains("new      a.md"), "{}", run.stdout());
    assert!(!ws.data().join("stores/notes").exists());

    // A model with a small window lowers the chunk size; a later plan, which
    // asks no model, still finds nothing to re-chunk.
    ws.ollama.set_context_chars(1_600);
    ws.write("b.md", "more words here. ".repeat(200));
    ws.rag(&["index", ".", "--store", "notes"]).assert_ok();
    let info = ws.rag(&["store", "info", "notes"]).stdout();
    assert!(!info.contains("size=1500"), "the window lowered the chunk size: {info}");
    ws.write("c.md", "new words");
    let plan = ws.rag(&["index", ".", "--store", "notes", "--dry-run", "--ollama-url", "http://127.0.0.1:9"]);
    plan.assert_ok();
    assert!(plan.stdout().contains("1 new, 0 changed, 2 unchanged"), "{}", plan.stdout());
}

#[test]
fn a_fresh_query_asks_ollama_once() {
    let ws = notes_workspace();
    index(&ws, &["docs"]).assert_ok();
    ws.ollama.reset_stats();
    ws.query_json("notes", "installation", 3);
    let stats = ws.ollama.stats();
    assert_eq!((stats.show_requests, stats.embed_requests), (0, 1), "the store knows the model's length");
    // A model the server no longer has is still one clear line.
    let gone = Workspace::with_ollama(FakeOllama::with_models(&[]));
    gone.write("a.md", "words");
    std::fs::create_dir_all(gone.data()).unwrap();
    let data = ws.data();
    let run =
        Run(gone.command(&["query", "installation", "--store", "notes"]).env("RAG_DATA_DIR", &data).output().unwrap());
    run.assert_code(1);
    assert!(run.stderr().contains("ollama pull embeddinggemma"), "{}", run.stderr());
}

#[test]
fn query_reads_stdin_and_min_score_may_be_negative() {
    let ws = notes_workspace();
    index(&ws, &["docs", "src"]).assert_ok();
    let mut child = ws
        .command(&["query", "--stdin", "--store", "notes", "--json", "--min-score", "-1", "-k", "50"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"configuration file\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["query"], "configuration file");
    assert_eq!(json["results"][0]["file_path"], "src/lib.rs");
    let records = ws.records("notes").len();
    assert_eq!(json["total_results"].as_u64().unwrap() as usize, records, "nothing hidden at -1");
}

#[test]
fn unknown_stores_and_bad_names_get_clear_errors() {
    let ws = Workspace::new();
    let run = ws.rag(&["query", "x", "--store", "nothing"]);
    run.assert_code(1);
    assert!(run.stderr().contains("store \"nothing\" not found"), "{}", run.stderr());
    // The library's error says what is wrong; the CLI adds what to type.
    let run = ws.rag(&["store", "info", "nothing"]);
    run.assert_code(1);
    assert!(run.stderr().contains("create it with `rag index PATHS --store nothing`"), "{}", run.stderr());
    let run = ws.rag(&["index", ".", "--store", "../escape"]);
    run.assert_code(1);
    assert!(run.stderr().contains("invalid store name"), "{}", run.stderr());
    assert!(!ws.dir.path().join("escape").exists());
}

#[test]
fn store_commands_list_describe_and_delete() {
    let ws = notes_workspace();
    index(&ws, &["docs"]).assert_ok();
    let list = ws.rag(&["store", "list", "--json"]);
    list.assert_ok();
    let stores: Value = serde_json::from_str(&list.stdout()).unwrap();
    assert_eq!(stores[0]["config"]["name"], "notes");
    let info = ws.rag(&["store", "info", "notes"]);
    info.assert_ok();
    assert!(info.stdout().contains("files:      2"), "{}", info.stdout());
    ws.rag(&["store", "delete", "notes"]).assert_code(2);
    ws.rag(&["store", "delete", "notes", "--yes"]).assert_ok();
    assert!(ws.rag(&["store", "list", "--json"]).stdout().trim() == "[]");
    ws.rag(&["store", "create", "empty", "--dimension", "8", "--model", "tiny"]).assert_ok();
    assert!(ws.rag(&["store", "info", "empty"]).stdout().contains("dimension:  8"));
}

#[test]
fn filters_restrict_results_and_bad_filters_are_refused() {
    let ws = notes_workspace();
    index(&ws, &["docs", "src"]).assert_ok();
    let run = ws.rag(&["query", "notes", "--store", "notes", "--json", "-k", "50", "--ext", "rs"]);
    run.assert_ok();
    let json: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(paths(&json), ["src/lib.rs"]);
    let run = ws.rag(&["query", "notes", "--store", "notes", "--json", "-k", "50", "--path", "docs"]);
    let json: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert!(!paths(&json).is_empty() && paths(&json).iter().all(|p| p.starts_with("docs/")));
    let filter = r#"{"$and": [{"source_path": "docs/install.md"}, {"chunk_index": {"$gte": 1}}]}"#;
    let run = ws.rag(&["query", "notes", "--store", "notes", "--json", "-k", "50", "--filter", filter]);
    let json: Value = serde_json::from_str(&run.stdout()).unwrap();
    let results = json["results"].as_array().unwrap();
    assert!(!results.is_empty());
    assert!(results.iter().all(|r| r["file_path"] == "docs/install.md" && r["chunk_index"].as_u64().unwrap() >= 1));
    ws.ollama.reset_stats();
    let run = ws.rag(&["query", "notes", "--store", "notes", "--filter", r#"{"ext": {"$not": "md"}}"#]);
    run.assert_code(1);
    assert!(run.stderr().contains("$not is not supported"), "{}", run.stderr());
    assert_eq!(ws.ollama.stats().embed_requests, 0, "refused before any request");
}

#[test]
fn obsidian_notes_carry_front_matter_tags_links_and_heading_paths() {
    let ws = Workspace::new();
    let note = "---\ntitle: Garden plan\ntags: [garden, spring]\n---\n# Garden\n\nIntro.\n\n## Tomatoes\n\n\
                Water the tomatoes daily #watering and see [[Compost|the compost note]].\n";
    ws.write("vault/garden.md", note);
    ws.rag(&["index", "vault", "--store", "notes"]).assert_ok();
    // Embedded as the note's title plus the heading path, then the chunk.
    let inputs = ws.ollama.last_inputs();
    assert!(inputs[0].starts_with("title: Garden plan | text: Garden\n\n# Garden"), "{inputs:?}");
    let json = ws.query_json("notes", "water the tomatoes", 1);
    let hit = &json["results"][0];
    assert_eq!(hit["file_path"], "vault/garden.md");
    assert_eq!(hit["frontmatter"]["title"], "Garden plan");
    assert_eq!(hit["tags"], serde_json::json!(["garden", "spring", "watering"]));
    assert_eq!(hit["links"], serde_json::json!(["Compost"]));
    assert_eq!(hit["line_start"], 5, "the chunk starts at '# Garden', after the front matter");
    assert!(!hit["content"].as_str().unwrap().contains("title:"), "front matter is not chunked as text");
}

#[test]
fn tables_notebooks_html_and_extensionless_files_are_found_where_they_are() {
    let ws = Workspace::new();
    ws.write("kb/people.csv", "name,field\nAda Lovelace,mathematics\nGrace Hopper,compilers\n");
    let notebook = serde_json::json!({
        "cells": [
            {"cell_type": "markdown", "source": "# Churn study"},
            {"cell_type": "code", "source": "model = fit_gradient_boosting(customers)"},
        ],
        "metadata": {"kernelspec": {"language": "python"}},
    });
    ws.write("kb/churn.ipynb", notebook.to_string());
    ws.write(
        "kb/page.html",
        "<html><body><h1>Release notes</h1><script>track()</script><p>Faster queries.</p></body></html>",
    );
    ws.write("kb/Makefile", "deploy:\n\tscp build/site server:/srv/www\n");
    ws.write("kb/photo.png", b"\x89PNG\r\n\x1a\n\x00\x00");
    ws.write("kb/blob.log", b"\x00\x01\x02binary");
    let run = ws.rag(&["index", "kb", "--store", "notes"]);
    run.assert_ok();
    assert!(run.stdout().contains("4 new"), "{}", run.stdout());
    assert!(run.stdout().contains("skipped: kb/blob.log: binary"), "{}", run.stdout());
    assert!(!run.stdout().contains("photo.png"), "known binary types are not even read");

    let csv = ws.query_json("notes", "Grace Hopper compilers", 1);
    assert_eq!(csv["results"][0]["file_path"], "kb/people.csv");
    assert!(csv["results"][0]["content"].as_str().unwrap().contains("name: Grace Hopper | field: compilers"));
    // The fake embeds bags of words in 64 dimensions, so rank among a few.
    let nb = ws.query_json_full("notes", "churn study model fit gradient boosting customers python", 4);
    let hit = nb["results"].as_array().unwrap().iter().find(|r| r["file_path"] == "kb/churn.ipynb").unwrap();
    let content = hit["content"].as_str().unwrap();
    assert!(content.contains("###### Cell 2 (code)") && content.contains("```python"), "{content}");
    let html = ws.query_json("notes", "release notes faster queries", 1);
    let content = html["results"][0]["content"].as_str().unwrap();
    assert!(content.contains("# Release notes") && !content.contains("track()"), "{content}");
    let make = ws.query_json("notes", "deploy scp server srv www", 1);
    assert_eq!(make["results"][0]["file_path"], "kb/Makefile");
}

fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
    let files: Vec<(&str, &[u8])> = files.iter().map(|(name, body)| (*name, body.as_bytes())).collect();
    rag_testkit::documents::zip(&files)
}

#[test]
fn documents_are_read_natively_and_hits_name_the_slide() {
    let ws = Workspace::new();
    let slide =
        |text: &str| format!(r#"<p:sld xmlns:p="p" xmlns:a="a"><a:p><a:r><a:t>{text}</a:t></a:r></a:p></p:sld>"#);
    let deck = zip_of(&[
        ("ppt/slides/slide1.xml", &slide("Welcome to the quarterly review")),
        ("ppt/slides/slide2.xml", &slide("Churn fell because onboarding emails improved")),
    ]);
    ws.write("docs/review.pptx", deck);
    let doc = r#"<w:document xmlns:w="w"><w:body><w:p><w:r><w:t>Holiday policy: twenty days of leave</w:t></w:r></w:p></w:body></w:document>"#;
    ws.write("docs/policy.docx", zip_of(&[("word/document.xml", doc)]));
    ws.write("docs/broken.docx", b"PK\x03\x04 truncated");
    let run = ws.rag(&["index", "docs", "--store", "notes", "--chunk-size", "80", "--chunk-overlap", "0"]);
    run.assert_code(1);
    let out = run.stdout();
    assert!(out.contains("2 new") && out.contains("1 failed"), "{out}");
    assert!(out.contains("failed: docs/broken.docx: cannot read not a valid zip container"), "{out}");

    let json = ws.query_json("notes", "churn onboarding emails improved", 5);
    let hit = json["results"].as_array().unwrap().iter().find(|r| r["file_path"] == "docs/review.pptx").unwrap();
    assert_eq!(hit["headings"], "Slide 2", "{hit}");
    assert_eq!(hit["location"], serde_json::json!({"slide_start": 2, "slide_end": 2}), "{hit}");
    let json = ws.query_json("notes", "holiday policy leave days", 1);
    assert_eq!(json["results"][0]["file_path"], "docs/policy.docx");
    assert_eq!(json["results"][0]["location"], Value::Null, "a Word file has no pages to name");

    // The broken file is remembered: not read again while it stays the same, still reported.
    let again = ws.rag(&["index", "docs", "--store", "notes", "--chunk-size", "80", "--chunk-overlap", "0"]);
    again.assert_code(1);
    assert!(
        again.stdout().contains("unchanged since, so not read again); --force tries it anyway"),
        "{}",
        again.stdout()
    );
    let info = ws.rag(&["store", "info", "notes"]).stdout();
    assert!(info.contains("unreadable files: 1 (not read again"), "{info}");
    ws.write("docs/broken.docx", b"PK\x03\x04 truncated differently");
    let changed = ws.rag(&["index", "docs", "--store", "notes", "--chunk-size", "80", "--chunk-overlap", "0"]);
    assert!(!changed.stdout().contains("not read again"), "a changed file is read: {}", changed.stdout());
}

/// An .xlsx whose one cell claims a reference a billion rows down: enough
/// for a spreadsheet reader to ask for gigabytes.
fn xlsx_with_cell_ref(reference: &str) -> Vec<u8> {
    let rows = format!(
        r#"<row r="1"><c r="A1" t="inlineStr"><is><t>start</t></is></c></row><row r="1000000000"><c r="{reference}" t="inlineStr"><is><t>far away</t></is></c></row>"#
    );
    rag_testkit::documents::xlsx_with_sheet_data("Data", &rows)
}

#[test]
fn a_document_reader_that_runs_away_fails_its_file_only() {
    let ws = Workspace::new();
    for i in 0..20 {
        ws.write(&format!("notes/n{i}.md"), format!("# Note {i}\n\nplain text number {i}\n"));
    }
    ws.write("sheets/bomb.xlsx", xlsx_with_cell_ref("B1000000000"));
    let run = ws.rag(&["index", ".", "--store", "notes", "--reader-memory", "512"]);
    run.assert_code(1);
    let out = run.stdout();
    assert!(out.contains("20 new") && out.contains("1 failed"), "{out}\n{}", run.stderr());
    assert!(out.contains("failed: sheets/bomb.xlsx: cannot read the reader crashed"), "{out}");
    // The next run does not read it again, and the rest stays indexed.
    let again = ws.rag(&["index", ".", "--store", "notes", "--reader-memory", "512"]);
    again.assert_code(1);
    assert!(again.stdout().contains("not read again"), "{}", again.stdout());
    assert_eq!(ws.records("notes").len(), 20);

    // A reader past its time is stopped.
    let doc =
        r#"<w:document xmlns:w="w"><w:body><w:p><w:r><w:t>Holiday policy</w:t></w:r></w:p></w:body></w:document>"#;
    ws.write("policy.docx", zip_of(&[("word/document.xml", doc)]));
    let slow = ws.rag(&["index", ".", "--store", "notes", "--reader-timeout", "0.000001"]);
    slow.assert_code(1);
    assert!(slow.stdout().contains("policy.docx: cannot read the reader took longer than"), "{}", slow.stdout());
    // With time enough it is read (a changed setting is no change of the file: --force).
    let ok = ws.rag(&["index", ".", "--store", "notes", "--force"]);
    assert!(ok.stdout().contains("failed: sheets/bomb.xlsx"), "{}", ok.stdout());
    assert!(!ok.stdout().contains("policy.docx"), "{}", ok.stdout());
    assert_eq!(ws.query_json("notes", "holiday policy", 1)["results"][0]["file_path"], "policy.docx");
}

/// The largest resident set of any process this test process has waited
/// for (`rag` and, rolled up into it, its document readers), in MiB.
fn peak_rss_of_children_mib() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    u64::try_from(usage.ru_maxrss).unwrap_or(0) / 1024
}

#[test]
fn hostile_spreadsheets_fail_alone_named_and_are_not_read_again() {
    let ws = Workspace::new();
    for i in 0..50 {
        ws.write(&format!("notes/n{i:02}.md"), format!("# Note {i}\n\nplain text number {i}\n"));
    }
    // calamine panics ("capacity overflow") on this cell reference.
    ws.write("sheets/panics.xlsx", xlsx_with_cell_ref("LXQEASV4000000000"));
    // ... asks for tens of GB for these (a far cell, a mutated .xls).
    ws.write("sheets/far-cell.xlsx", xlsx_with_cell_ref("ZZZZZZZZZZZZZZ1"));
    ws.write("sheets/alloc-bomb.xls", include_bytes!("fixtures/hostile/alloc-bomb.xls"));
    // ... and would inflate this one to 260 MiB of cells.
    ws.write("sheets/zip-bomb.xlsx", include_bytes!("fixtures/hostile/zip-bomb.xlsx"));
    let started = std::time::Instant::now();
    let run = ws.rag(&["index", ".", "--store", "notes", "--reader-memory", "512", "--reader-timeout", "30"]);
    let first_run = started.elapsed();
    run.assert_code(1);
    let out = run.stdout();
    assert!(out.contains("50 new") && out.contains("4 failed"), "{out}\n{}", run.stderr());
    for (file, reason) in [
        ("sheets/panics.xlsx", "capacity overflow"),
        ("sheets/far-cell.xlsx", "the reader crashed"),
        ("sheets/alloc-bomb.xls", "the reader crashed"),
        ("sheets/zip-bomb.xlsx", "over the limit of 268435456 (a zip bomb?)"),
    ] {
        let line = out.lines().find(|l| l.contains(file)).unwrap_or_default();
        assert!(line.starts_with("  failed: ") && line.contains(reason), "{file}: {line:?}\n{out}");
    }
    assert_eq!(ws.records("notes").len(), 50);
    let peak = peak_rss_of_children_mib();
    eprintln!("peak RSS of rag and its readers: {peak} MiB");
    assert!(peak < 500, "peak RSS {peak} MiB");
    // Nothing here should come near the time budget (30 s a reader).
    assert!(first_run < std::time::Duration::from_secs(30), "{first_run:?}");

    // The next run reads none of them again, and says so for each.
    let again = ws.rag(&["index", ".", "--store", "notes", "--reader-memory", "512"]);
    again.assert_code(1);
    let out = again.stdout();
    assert!(out.contains("50 unchanged") && out.contains("4 failed"), "{out}");
    assert_eq!(out.matches("not read again); --force tries it anyway").count(), 4, "{out}");
}

#[test]
fn hits_in_pdfs_and_spreadsheets_name_their_page_sheet_and_rows() {
    let ws = Workspace::new();
    let page = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    let report = rag_testkit::documents::pdf(&[
        page(&["Annual report of the garden club"]),
        page(&["Tomatoes need deep watering twice a week in July"]),
        page(&["Members and thanks"]),
    ]);
    ws.write("docs/report.pdf", report);
    let budget = rag_testkit::documents::ods(
        "Budget",
        &[&["item", "cost"], &["seeds", "12"], &["compost delivery truck", "80"], &["gloves", "9"]],
    );
    ws.write("docs/budget.ods", budget);
    let orders = rag_testkit::documents::xlsx(
        "Orders",
        &[&["customer", "product"], &["Ada", "kettle"], &["Grace", "telescope lens cleaning kit"]],
    );
    ws.write("docs/orders.xlsx", orders);
    // Legacy Excel (BIFF8) has no writer in Rust: this 5.6 KB file was written
    // once with Python's xlwt (sheet "Inventory": part | bin, three rows).
    ws.write("docs/inventory.xls", include_bytes!("fixtures/inventory.xls"));
    ws.rag(&["index", "docs", "--store", "notes", "--chunk-size", "60", "--chunk-overlap", "0"]).assert_ok();

    let json = ws.query_json("notes", "tomatoes deep watering twice week july", 1);
    let hit = &json["results"][0];
    assert_eq!(hit["file_path"], "docs/report.pdf", "{json}");
    assert_eq!(hit["location"], serde_json::json!({"page_start": 2, "page_end": 2}), "{hit}");
    assert_eq!(hit["headings"], "Page 2");

    let json = ws.query_json("notes", "compost delivery truck", 1);
    let hit = &json["results"][0];
    assert_eq!(hit["file_path"], "docs/budget.ods", "{json}");
    let location = &hit["location"];
    assert_eq!(location["sheet"], "Budget", "{hit}");
    let (first, last) = (location["row_start"].as_u64().unwrap(), location["row_end"].as_u64().unwrap());
    assert!(first <= 3 && 3 <= last, "the truck is on spreadsheet row 3: {hit}");
    assert!(hit["content"].as_str().unwrap().contains("row 3: item: compost delivery truck | cost: 80"), "{hit}");

    let json = ws.query_json("notes", "inventory part brass hinges garden gate bin", 1);
    let hit = &json["results"][0];
    assert_eq!(hit["file_path"], "docs/inventory.xls", "{json}");
    assert_eq!(hit["location"]["sheet"], "Inventory", "{hit}");
    assert!(
        hit["content"].as_str().unwrap().contains("row 3: part: brass hinges for the garden gate | bin: C7"),
        "{hit}"
    );

    let json = ws.query_json("notes", "orders customer Grace product telescope lens cleaning", 1);
    let hit = &json["results"][0];
    assert_eq!(hit["file_path"], "docs/orders.xlsx", "{json}");
    assert_eq!(hit["location"]["sheet"], "Orders", "{hit}");
    assert!(hit["content"].as_str().unwrap().contains("row 3: customer: Grace | product: telescope"), "{hit}");
}

#[test]
fn chunk_tokens_approximates_two_and_a_half_characters_a_token() {
    let ws = Workspace::new();
    ws.write("a.txt", "word ".repeat(400));
    ws.rag(&["index", ".", "--store", "notes", "--chunk-tokens", "50"]).assert_ok();
    let records = ws.records("notes");
    assert!(records.len() >= 16, "2,000 characters in chunks of at most 125: {}", records.len());
    assert!(records.iter().all(|(c, _)| c.text.chars().count() <= 125));
    let info = ws.rag(&["store", "info", "notes"]);
    assert!(info.stdout().contains("size=125 overlap=31"), "{}", info.stdout());
}

#[test]
fn a_store_keeps_its_chunking_until_other_flags_are_given() {
    let ws = Workspace::new();
    ws.write("a.txt", "word ".repeat(400));
    ws.rag(&["index", ".", "--store", "notes", "--chunk-size", "300", "--chunk-overlap", "30"]).assert_ok();
    let chunks = ws.records("notes").len();
    // Another machine, or a script, without the flags: nothing is re-chunked.
    ws.write("b.txt", "other ".repeat(100));
    let run = ws.rag(&["index", ".", "--store", "notes", "--json"]);
    run.assert_ok();
    let report: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!((report["new"].as_array().unwrap().len(), report["changed"].as_array().unwrap().len()), (1, 0));
    assert!(ws.records("notes").iter().all(|(c, _)| c.text.chars().count() <= 300), "b.txt chunked as the store is");
    let info = ws.rag(&["store", "info", "notes"]).stdout();
    assert!(info.contains("size=300 overlap=30"), "{info}");
    // Asked for, other settings re-chunk every file, and say so.
    let run = ws.rag(&["index", ".", "--store", "notes", "--chunk-size", "600"]);
    run.assert_ok();
    assert!(
        run.stdout().contains("re-chunked: the store was chunked with \"text-splitter/chars size=300 overlap=30"),
        "{}",
        run.stdout()
    );
    assert!(run.stdout().contains("2 changed"), "{}", run.stdout());
    assert!(ws.records("notes").len() < chunks, "larger chunks, fewer of them");
}

#[test]
fn the_chunk_budget_follows_the_models_context_window() {
    let ollama = FakeOllama::start();
    // The fake reports a window of a quarter as many tokens: 500.
    ollama.set_context_chars(2000);
    let ws = Workspace::with_ollama(ollama);
    ws.write("long.md", "A plain sentence of prose that goes on. ".repeat(200));
    ws.rag(&["index", ".", "--store", "notes"]).assert_ok();
    let most = rag_core::chunk::chunk_chars_for_window(500);
    let records = ws.records("notes");
    assert!(records.len() >= 7, "{}", records.len());
    assert!(records.iter().all(|(c, _)| c.text.chars().count() <= most));
    let info = ws.rag(&["store", "info", "notes"]).stdout();
    assert!(info.contains(&format!("size={most} ")), "{info}");
}

fn docx(paragraphs: &[(Option<&str>, &str)]) -> Vec<u8> {
    let body: String = paragraphs
        .iter()
        .map(|(style, text)| {
            let style = style.map_or_else(String::new, |s| format!(r#"<w:pPr><w:pStyle w:val="{s}"/></w:pPr>"#));
            format!("<w:p>{style}<w:r><w:t>{text}</w:t></w:r></w:p>")
        })
        .collect();
    let doc = format!(r#"<w:document xmlns:w="w"><w:body>{body}</w:body></w:document>"#);
    zip_of(&[("word/document.xml", &doc)])
}

#[test]
fn a_short_section_of_a_memo_is_found_first_by_vector_and_hybrid_search() {
    let ws = Workspace::new();
    let filler = "The weekly figures are in line with the plan and nothing needs doing this week.";
    let mut paragraphs = vec![(Some("Heading1"), "Weekly memo")];
    paragraphs.extend(std::iter::repeat_n((None, filler), 12));
    paragraphs.push((Some("Heading2"), "Kitchen"));
    paragraphs.push((None, "The bakery asks for a sourdough starter and rye flour by Friday."));
    paragraphs.push((Some("Heading2"), "Parking"));
    paragraphs.push((None, "Bays three and four are closed for painting."));
    ws.write("memo.docx", docx(&paragraphs));
    ws.write("orders.csv", "item,supplier\nflour,bakery\nsugar,bakery\nbutter,dairy\n");
    ws.rag(&["index", ".", "--store", "notes"]).assert_ok();
    for mode in ["vector", "hybrid"] {
        let run =
            ws.rag(&["query", "bakery sourdough starter rye flour", "--store", "notes", "--json", "--mode", mode]);
        run.assert_ok();
        let json: Value = serde_json::from_str(&run.stdout()).unwrap();
        let top = &json["results"][0];
        assert_eq!(top["file_path"], "memo.docx", "{mode}: {json}");
        assert_eq!(top["headings"], "Weekly memo > Kitchen", "{mode}: {top}");
        assert!(!top["content"].as_str().unwrap().contains("weekly figures"), "the section stands alone: {top}");
    }
}

#[test]
fn hybrid_search_finds_exact_identifiers_and_explains_each_arm() {
    let ws = Workspace::new();
    ws.write(
        "src/config.rs",
        "/// Reads settings.\npub fn load_store_config(path: &Path) -> StoreConfig {\n    todo!()\n}\n",
    );
    ws.write("src/other.rs", "/// Loads and stores things.\npub fn store_things() {}\n");
    ws.write("notes/errors.md", "# Errors\n\nThe build failed with E0502 after the upgrade.\n");
    ws.write("notes/chinese.md", "# 笔记\n\n本文介绍向量检索的原理和实现。\n");
    ws.rag(&["index", ".", "--store", "notes"]).assert_ok();

    let json = ws.query_json("notes", "load_store_config", 3);
    assert_eq!(json["metadata"]["mode"], "hybrid");
    assert_eq!(json["metadata"]["lexical"]["kind"], "full_text");
    let top = &json["results"][0];
    assert_eq!(top["file_path"], "src/config.rs", "{json}");
    assert_eq!(top["lexical_rank"], 1, "{top}");
    assert!(top["fused_score"].as_f64().unwrap() > 0.0 && top["vector_rank"].is_number(), "{top}");
    assert!(top["score"].as_f64().unwrap() <= 1.0, "score stays the cosine: {top}");

    for (query, path) in
        [("StoreConfig", "src/config.rs"), ("E0502", "notes/errors.md"), ("向量检索", "notes/chinese.md")]
    {
        let run = ws.rag(&["query", query, "--store", "notes", "--json", "--mode", "lexical", "-k", "1"]);
        run.assert_ok();
        let json: Value = serde_json::from_str(&run.stdout()).unwrap();
        assert_eq!(paths(&json), [path], "{query}: {json}");
    }

    let run = ws.rag(&["query", "load_store_config", "--store", "notes", "--explain", "-k", "2"]);
    run.assert_ok();
    assert!(run.stdout().contains("lexical #1 (bm25 "), "{}", run.stdout());
    assert!(run.stdout().contains("vector #"), "{}", run.stdout());
}

#[test]
fn odd_queries_get_a_sensible_answer_never_a_crash() {
    let ws = notes_workspace();
    index(&ws, &["docs", "src"]).assert_ok();
    // Only punctuation: vector results, and a note that nothing was searched lexically.
    let run = ws.rag(&["query", "?!? ... ***", "--store", "notes"]);
    run.assert_ok();
    assert!(run.stderr().contains("no words to search for lexically"), "{}", run.stderr());
    assert!(run.stdout().contains("results for"), "{}", run.stdout());
    let run = ws.rag(&["query", "?!?", "--store", "notes", "--mode", "lexical"]);
    run.assert_ok();
    assert!(run.stdout().contains("No results"), "{}", run.stdout());
    // Only stop words: searched as they are.
    ws.rag(&["query", "what is the", "--store", "notes", "--mode", "lexical"]).assert_ok();
    // 100 KB of question: answered.
    let huge = "installation usage notes ".repeat(4_200);
    let json = ws.query_json("notes", &huge, 3);
    assert_eq!(json["total_results"], 3, "{json}");
    // Quotes and FTS syntax are text.
    ws.rag(&["query", r#"" OR NEAR(x y) AND * ^"#, "--store", "notes", "--mode", "lexical"]).assert_ok();
    // Empty, and a bad weight.
    ws.rag(&["query", "  ", "--store", "notes"]).assert_code(1);
    let run = ws.rag(&["query", "usage", "--store", "notes", "--lexical-weight", "-1"]);
    run.assert_code(1);
    assert!(run.stderr().contains("lexical weight"), "{}", run.stderr());
}

#[test]
fn max_per_file_spreads_results_over_files() {
    let ws = notes_workspace();
    index(&ws, &["docs", "src"]).assert_ok();
    let run =
        ws.rag(&["query", "installation usage notes", "--store", "notes", "--json", "-k", "3", "--max-per-file", "1"]);
    run.assert_ok();
    let json: Value = serde_json::from_str(&run.stdout()).unwrap();
    let mut files = paths(&json);
    let count = files.len();
    files.dedup();
    assert_eq!(files.len(), count, "{json}");
    assert!(count >= 2, "{json}");
}

#[test]
fn files_over_the_size_limit_are_skipped_with_the_way_out() {
    let ws = Workspace::new();
    ws.write("small.md", "small note");
    ws.write("huge.log", "line of log text\n".repeat(1000));
    let run = ws.rag(&["index", ".", "--store", "notes", "--max-file-size", "1000"]);
    run.assert_ok();
    assert!(
        run.stdout().contains("skipped: huge.log: 17000 bytes is over the size limit of 1000; raise --max-file-size"),
        "{}",
        run.stdout()
    );
    assert!(run.stdout().contains("1 new"), "{}", run.stdout());
}

#[test]
fn one_query_searches_stores_of_different_models_and_each_hit_names_its_store() {
    let ws = Workspace::with_ollama(FakeOllama::with_models(&[("embeddinggemma", 64), ("nomic-embed-text", 32)]));
    ws.write("garden/tomatoes.md", "# Tomatoes\n\nWater tomatoes daily in the summer heat.\n");
    ws.write("kitchen/bread.md", "# Bread\n\nBake sourdough bread at a high heat.\n");
    ws.rag(&["index", "garden", "--store", "garden"]).assert_ok();
    ws.rag(&["index", "kitchen", "--store", "kitchen", "--model", "nomic-embed-text"]).assert_ok();
    ws.ollama.reset_stats();
    let out = ws.rag(&["query", "heat", "--store", "garden", "--store", "kitchen", "--json", "-k", "5"]);
    out.assert_ok();
    let json: Value = serde_json::from_str(&out.stdout()).unwrap();
    let stores: Vec<&str> = json["results"].as_array().unwrap().iter().map(|r| r["store"].as_str().unwrap()).collect();
    assert!(stores.contains(&"garden") && stores.contains(&"kitchen"), "{json}");
    assert_eq!(json["stores"], serde_json::json!(["garden", "kitchen"]));
    assert_eq!(ws.ollama.stats().embed_requests, 2, "one query embedding per model");
    // --all-stores finds both without naming them; the text names each hit's store.
    let all = ws.rag(&["query", "sourdough", "--all-stores"]);
    all.assert_ok();
    assert!(all.stdout().contains("[kitchen] kitchen/bread.md"), "{}", all.stdout());
    // A store that does not exist is named, with the way out.
    let missing = ws.rag(&["query", "heat", "--store", "garden", "--store", "nothing"]);
    missing.assert_code(1);
    assert!(missing.stderr().contains("\"nothing\" not found"), "{}", missing.stderr());
}

#[test]
fn get_prints_what_the_store_holds_for_a_hit_with_its_neighbours() {
    let ws = notes_workspace();
    index(&ws, &["."]).assert_ok();
    let hit = &ws.query_json("notes", "installation", 1)["results"][0];
    let key = hit["key"].as_str().unwrap().to_string();
    let file = hit["file_path"].as_str().unwrap().to_string();
    let out = ws.rag(&["get", "notes", &key, "--json"]);
    out.assert_ok();
    let json: Value = serde_json::from_str(&out.stdout()).unwrap();
    let chunks = json["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0]["key"], key.as_str());
    assert!(!chunks[0]["content"].as_str().unwrap().is_empty() && chunks[0]["context"] == false);

    // By lines, with one neighbour each side.
    let (start, end) = (hit["line_start"].as_u64().unwrap(), hit["line_end"].as_u64().unwrap());
    let lines = format!("{file}:{start}-{end}");
    let around = ws.rag(&["get", "notes", &lines, "--context", "1", "--json"]);
    around.assert_ok();
    let json: Value = serde_json::from_str(&around.stdout()).unwrap();
    let chunks = json["chunks"].as_array().unwrap();
    assert!(chunks.iter().any(|c| c["key"] == key.as_str() && c["context"] == false), "{json}");
    assert!(chunks.len() >= 2 && chunks.iter().any(|c| c["context"] == true), "{json}");
    let text = ws.rag(&["get", "notes", &lines]);
    assert!(text.stdout().starts_with(&format!("── {file}:")), "{}", text.stdout());

    // What the store does not hold: a clear error, exit 1.
    for (target, says) in [
        ("docs/nothing.md#0", "no chunk with key"),
        ("docs/install.md:9000-9001", "past the end of"),
        ("../etc/passwd:1-2", "'..'"),
        ("docs/install.md:5-2", "must not run backwards"),
    ] {
        let run = ws.rag(&["get", "notes", target]);
        run.assert_code(1);
        assert!(run.stderr().contains(says), "{target}: {}", run.stderr());
    }
    let run = ws.rag(&["get", "notes", &key, "--context", "500"]);
    run.assert_code(1);
    assert!(run.stderr().contains("more than 20"), "{}", run.stderr());
}

#[test]
fn a_model_folder_embeds_in_process_with_no_ollama_anywhere() {
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/rag-embed-local/tests/fixtures/tiny-bert");
    let model = model.canonicalize().unwrap();
    let model = model.to_str().unwrap();
    let ws = Workspace::new();
    ws.write("garden/tomatoes.md", "# Tomatoes\n\nwater the tomatoes in the summer heat\n");
    ws.write("kitchen/bread.md", "# Bread\n\nbake bread in the oven\n");
    let dead = "http://127.0.0.1:9";
    let run = ws.rag(&["index", ".", "--store", "local", "--model", model, "--ollama-url", dead]);
    run.assert_ok();
    assert!(run.stdout().contains("2 new"), "{}", run.stdout());
    assert_eq!(ws.ollama.stats().embed_requests, 0, "nothing went to Ollama");
    // The store remembers the model folder and its weights' fingerprint: no --model needed.
    let out = ws.rag(&["query", "bake bread", "--store", "local", "--json", "--ollama-url", dead]);
    out.assert_ok();
    let json: Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(json["results"][0]["file_path"], "kitchen/bread.md");
    let recorded = json["model"].as_str().unwrap();
    assert!(recorded.starts_with(model) && recorded.contains('#'), "{recorded}");
    // Another model's vectors are refused, naming both.
    let other = ws.rag(&["index", ".", "--store", "local", "--model", "embeddinggemma"]);
    other.assert_code(1);
    assert!(other.stderr().contains("embeddinggemma") && other.stderr().contains("tiny-bert"), "{}", other.stderr());
    // A folder that is not a model: one line naming the file.
    let empty = ws.dir.path().join("empty-model");
    std::fs::create_dir_all(&empty).unwrap();
    let bad = ws.rag(&["index", ".", "--store", "bad", "--model", empty.to_str().unwrap()]);
    bad.assert_code(1);
    assert!(bad.stderr().contains("config.json") && bad.stderr().lines().count() == 1, "{}", bad.stderr());
    // With Ollama down and no model folder, the error says how to do without it.
    let down = ws.rag(&["index", ".", "--store", "gemma", "--ollama-url", dead]);
    down.assert_code(1);
    assert!(down.stderr().contains("--model ./all-MiniLM-L6-v2"), "{}", down.stderr());
    assert!(down.stderr().contains("--model hf:sentence-transformers/all-MiniLM-L6-v2"), "{}", down.stderr());
}

#[test]
fn a_query_refuses_a_model_folder_whose_weights_changed_since_indexing() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/rag-embed-local/tests/fixtures/tiny-bert");
    let ws = Workspace::new();
    let model = ws.dir.path().join("tiny-bert");
    std::fs::create_dir_all(&model).unwrap();
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
        }
    }
    ws.write("kitchen/bread.md", "# Bread\n\nbake bread in the oven\n");
    let model = model.to_str().unwrap();
    ws.rag(&["index", "kitchen", "--store", "local", "--model", model]).assert_ok();
    let hybrid = ws.rag(&["query", "bake bread", "--store", "local", "--json"]);
    hybrid.assert_ok();
    // One weight changes: the model loads (on the query's first embedding)
    // and is refused as another model, naming both.
    let weights = std::path::Path::new(model).join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&weights, bytes).unwrap();
    for mode in ["hybrid", "vector", "lexical"] {
        let refused = ws.rag(&["query", "bake bread", "--store", "local", "--mode", mode]);
        refused.assert_code(1);
        let said = refused.stderr();
        assert!(said.matches(model).count() >= 2 && said.contains("use --model"), "{mode}: {said}");
    }
}

#[test]
fn a_fresh_machine_without_ollama_embeds_in_process_with_no_flags() {
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/rag-embed-local/tests/fixtures/tiny-bert");
    let ws = Workspace::new();
    ws.write("garden/tomatoes.md", "# Tomatoes\n\nwater the tomatoes in the summer heat\n");
    ws.write("kitchen/bread.md", "# Bread\n\nbake bread in the oven\n");
    // The Hub serves the default model (a tiny BERT under its name); no Ollama runs.
    let hub = FakeHub::start();
    hub.add_folder("sentence-transformers/all-MiniLM-L6-v2", &model);
    let no_ollama = "127.0.0.1:9";
    let run = Run(ws
        .command(&["index", ".", "--store", "notes"])
        .env("OLLAMA_HOST", no_ollama)
        .env("HF_ENDPOINT", hub.url())
        .output()
        .unwrap());
    run.assert_ok();
    assert!(run.stdout().contains("2 new"), "{}", run.stdout());
    let said: Vec<String> = run.stderr().lines().filter(|l| l.starts_with("model: ")).map(str::to_string).collect();
    assert_eq!(said.len(), 1, "one line says which model and why: {}", run.stderr());
    assert!(
        said[0].contains("hf:sentence-transformers/all-MiniLM-L6-v2 in this process")
            && said[0].contains("no Ollama at http://127.0.0.1:9"),
        "{}",
        said[0]
    );
    drop(hub);
    // Later commands need no flag, no Hub and no Ollama, and say nothing of the model.
    let query = Run(ws
        .command(&["query", "bake bread", "--store", "notes", "--json"])
        .env("OLLAMA_HOST", no_ollama)
        .output()
        .unwrap());
    query.assert_ok();
    let json: Value = serde_json::from_str(&query.stdout()).unwrap();
    assert_eq!(json["results"][0]["file_path"], "kitchen/bread.md");
    assert!(json["model"].as_str().unwrap().starts_with("hf:sentence-transformers/all-MiniLM-L6-v2#"), "{json}");
    ws.write("kitchen/soup.md", "# Soup\n\nsimmer the soup\n");
    let again = Run(ws.command(&["index", ".", "--store", "notes"]).env("OLLAMA_HOST", no_ollama).output().unwrap());
    again.assert_ok();
    assert!(again.stdout().contains("1 new") && !again.stderr().contains("model: "), "{}", again.stderr());
}

#[test]
fn an_ollama_without_the_default_model_pulls_it_and_goes_on() {
    let ollama = FakeOllama::with_models(&[]);
    ollama.offer_for_pull("embeddinggemma", 64);
    let ws = Workspace::with_ollama(ollama);
    ws.write("notes/kites.md", "# Kites\n\nfly kites on windy days\n");
    let run = ws.rag(&["index", "notes", "--store", "notes"]);
    run.assert_ok();
    let err = run.stderr();
    assert!(err.contains("does not have it yet: pulling it"), "{err}");
    // Not a terminal: one line a step, not a bar.
    assert!(err.contains("  pulling manifest\n") && err.contains("  pulling 8eeb52dfb3bb (593.1 MiB)"), "{err}");
    assert!(err.contains("  success") && err.contains("model: embeddinggemma pulled"), "{err}");
    assert_eq!(ws.ollama.stats().pull_requests, 1);
    let json = ws.query_json("notes", "windy kites", 1);
    assert_eq!(json["model"], "embeddinggemma");
    // A name Ollama cannot pull is one line, and nothing is made.
    let other = FakeOllama::with_models(&[]);
    let ws = Workspace::with_ollama(other);
    ws.write("notes/kites.md", "# Kites\n");
    let run = ws.rag(&["index", "notes", "--store", "notes"]);
    run.assert_code(1);
    assert!(run.stderr().contains("ollama.com/library"), "{}", run.stderr());
    assert!(!ws.data().join("stores/notes").exists());
}

#[test]
fn an_openai_compatible_server_embeds_and_the_store_remembers_it() {
    let ws = Workspace::new();
    ws.write("notes/kites.md", "# Kites\n\nfly kites on windy days\n");
    ws.write("notes/bread.md", "# Bread\n\nbake bread in the oven\n");
    let openai = FakeOpenAi::start();
    let url = openai.url();
    let with_key = |key: &str, args: &[&str]| Run(ws.command(args).env("OPENAI_API_KEY", key).output().unwrap());
    let model = "openai:text-embedding-3-large?dimensions=32";
    let run = with_key("sk-test", &["index", "notes", "--store", "notes", "--model", model, "--embed-url", &url]);
    run.assert_ok();
    assert!(run.stdout().contains("2 new") && run.stdout().contains("tokens: "), "{}", run.stdout());
    assert!(openai.requests().iter().all(|r| r["dimensions"] == 32 && r["model"] == "text-embedding-3-large"));
    // Queries need no --model; the URL comes from OPENAI_BASE_URL as well as the flag.
    // One paid call a query: the store knows the vectors' length.
    let calls = openai.counts().0;
    let query = Run(ws
        .command(&["query", "windy kites", "--store", "notes", "--json"])
        .env("OPENAI_API_KEY", "sk-test")
        .env("OPENAI_BASE_URL", &url)
        .output()
        .unwrap());
    query.assert_ok();
    let json: Value = serde_json::from_str(&query.stdout()).unwrap();
    assert_eq!(json["results"][0]["file_path"], "notes/kites.md");
    assert_eq!(json["model"], model);
    assert_eq!(openai.counts().0, calls + 1);
    // A wrong key: one line, nothing changed.
    ws.write("notes/soup.md", "# Soup\n");
    let wrong = with_key("sk-nope", &["index", "notes", "--store", "notes", "--embed-url", &url]);
    wrong.assert_code(1);
    let err = wrong.stderr();
    assert!(err.contains("refused access") && err.contains("OPENAI_API_KEY") && err.lines().count() == 1, "{err}");
    // Another provider's vectors are refused, naming the store's model.
    let other = ws.rag(&["query", "kites", "--store", "notes", "--model", "embeddinggemma"]);
    other.assert_code(1);
    assert!(other.stderr().contains(model), "{}", other.stderr());
}

#[test]
fn a_hub_model_is_fetched_once_and_later_runs_need_no_network() {
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/rag-embed-local/tests/fixtures/tiny-bert");
    let ws = Workspace::new();
    ws.write("garden/tomatoes.md", "# Tomatoes\n\nwater the tomatoes in the summer heat\n");
    ws.write("kitchen/bread.md", "# Bread\n\nbake bread in the oven\n");
    let hub = FakeHub::start();
    hub.add_folder("test-org/tiny-bert", &model);
    let dead = "http://127.0.0.1:9";
    let with_hub = |args: &[&str]| Run(ws.command(args).env("HF_ENDPOINT", hub.url()).output().unwrap());
    let run = with_hub(&["index", ".", "--store", "hub", "--model", "hf:test-org/tiny-bert", "--ollama-url", dead]);
    run.assert_ok();
    assert!(run.stdout().contains("2 new"), "{}", run.stdout());
    assert!(ws.dir.path().join("hf-home/hub/models--test-org--tiny-bert").is_dir(), "HF_HOME is the cache");
    assert!(!hub.requests().is_empty());
    drop(hub);
    // The Hub is gone (HF_ENDPOINT points at a closed port): the store's model comes from the cache.
    let out = ws.rag(&["query", "bake bread", "--store", "hub", "--json", "--ollama-url", dead]);
    out.assert_ok();
    let json: Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(json["results"][0]["file_path"], "kitchen/bread.md");
    assert!(json["model"].as_str().unwrap().starts_with("hf:test-org/tiny-bert#"), "{}", json["model"]);
    // A model that was never fetched, with no Hub: one line that says what to do.
    let missing = ws.rag(&["index", ".", "--store", "other", "--model", "hf:test-org/other"]);
    missing.assert_code(1);
    let err = missing.stderr();
    assert!(err.contains("hf:test-org/other") && err.contains("HF_ENDPOINT") && err.lines().count() == 1, "{err}");
}

#[test]
fn an_empty_root_keeps_the_store_and_mass_deletion_needs_a_flag() {
    let ws = Workspace::new();
    for i in 0..30 {
        ws.write(&format!("notes/n{i:02}.md"), format!("# Note {i}\n\nnote number {i} about kites\n"));
    }
    ws.rag(&["index", "notes", "--store", "notes"]).assert_ok();
    let stored = |ws: &Workspace| ws.rag(&["query", "kites", "--store", "notes", "--json", "-k", "100"]).stdout();
    let count = |ws: &Workspace| serde_json::from_str::<Value>(&stored(ws)).unwrap()["total_results"].as_u64();

    // An emptied root (an unmounted disk looks the same): nothing deleted, exit 1.
    std::fs::rename(ws.work().join("notes"), ws.work().join("away")).unwrap();
    std::fs::create_dir(ws.work().join("notes")).unwrap();
    let run = ws.rag(&["index", "notes", "--store", "notes"]);
    run.assert_code(1);
    assert!(run.stdout().contains("kept: notes/n00.md: the folder is empty"), "{}", run.stdout());
    assert!(run.stderr().contains("30 stored file(s) were not seen by this run and were kept"), "{}", run.stderr());
    assert_eq!(count(&ws), Some(30));

    // Most files really gone: refused, nothing changed, the flag named.
    std::fs::remove_dir(ws.work().join("notes")).unwrap();
    std::fs::rename(ws.work().join("away"), ws.work().join("notes")).unwrap();
    for i in 0..25 {
        ws.remove(&format!("notes/n{i:02}.md"));
    }
    let refused = ws.rag(&["index", "notes", "--store", "notes"]);
    refused.assert_code(1);
    assert!(refused.stderr().contains("delete the chunks of 25 of the 30 files"), "{}", refused.stderr());
    assert!(refused.stderr().contains("--allow-mass-delete"), "{}", refused.stderr());
    assert_eq!(count(&ws), Some(30));
    let allowed = ws.rag(&["index", "notes", "--store", "notes", "--allow-mass-delete"]);
    allowed.assert_ok();
    assert!(allowed.stdout().contains("25 removed"), "{}", allowed.stdout());
    assert_eq!(count(&ws), Some(5));
}

#[test]
fn files_holding_credentials_are_never_indexed_or_embedded() {
    let ws = Workspace::new();
    // Credentials are split in the source, so this test file holds none itself.
    let aws_key = format!("{}{}", "AKIA", "Q3EGRXN5QDEFGHJK");
    let github_token = format!("gh{}_{}", "p", "0123456789abcdefghijABCDEFGHIJ012345");
    let private_key = format!("-----BEGIN OPENSSH {}-----\nb3BlbnNzaC1rZXktdjEAAAAA\n", "PRIVATE KEY");
    ws.write("notes/kites.md", "# Kites\n\nKites fly in steady wind.\n");
    ws.write("notes/deploy.md", format!("# Deploy\n\nUse the key {aws_key} for the bucket.\n"));
    ws.write("src/client.py", format!("TOKEN = \"{github_token}\"\nprint('kites')\n"));
    ws.write("keys/id_ed25519", &private_key);
    ws.write("keys/server.pem", &private_key);
    ws.write("infra/main.tfstate", "{\"version\": 4, \"resources\": []}\n");
    ws.write("config/credentials.json", "{\"token\": \"kites\"}\n");
    ws.write(".env", "PASSWORD=kites\n");
    ws.write(".ssh/config", "Host kites\n");

    for hidden in [false, true] {
        let mut args = vec!["index", ".", "--store", "notes", "--json"];
        if hidden {
            args.push("--hidden");
        }
        let run = ws.rag(&args);
        run.assert_ok();
        let report: Value = serde_json::from_str(&run.stdout()).unwrap();
        let secret: Vec<&str> = report["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["kind"] == "secret")
            .map(|p| p["path"].as_str().unwrap())
            .collect();
        let mut expected = vec![
            "config/credentials.json",
            "infra/main.tfstate",
            "keys/id_ed25519",
            "keys/server.pem",
            "notes/deploy.md",
            "src/client.py",
        ];
        if hidden {
            expected.extend([".env", ".ssh/config"]);
            expected.sort();
        }
        assert_eq!(secret, expected, "hidden: {hidden}: {}", run.stdout());
        let reason = report["skipped"].as_array().unwrap().iter().find(|p| p["path"] == "notes/deploy.md").unwrap();
        assert!(reason["reason"].as_str().unwrap().contains("holds an AWS access key"), "{reason}");
    }
    let stored: Vec<String> = ws.records("notes").into_iter().map(|(c, _)| c.source_path).collect();
    assert_eq!(stored, ["notes/kites.md"]);
    let sent = ws.ollama.all_inputs().join("\n");
    for secret in [&aws_key, &github_token, "PRIVATE KEY", "PASSWORD"] {
        assert!(!sent.contains(secret), "{secret} reached the embedder");
    }

    // A stored file that comes to hold a credential leaves the store.
    ws.write("notes/kites.md", format!("# Kites\n\nKites fly in steady wind. {github_token}\n"));
    let run = ws.rag(&["index", ".", "--store", "notes"]);
    run.assert_ok();
    assert!(run.stdout().contains("skipped: notes/kites.md: holds a GitHub token"), "{}", run.stdout());
    assert!(ws.records("notes").is_empty());
}

#[test]
fn terminal_control_sequences_in_files_print_escaped() {
    let ws = Workspace::new();
    ws.write("notes/evil\x1b[31mname.md", "# Kites\n\nKites \x1b]0;pwned\x07 fly \x1b[2J in wind.\n");
    ws.rag(&["index", "notes", "--store", "notes"]).assert_ok();
    let query = ws.rag(&["query", "kites fly", "--store", "notes"]);
    query.assert_ok();
    let get = ws.rag(&["get", "notes", "notes/evil\x1b[31mname.md#0"]);
    get.assert_ok();
    for out in [query.stdout(), get.stdout()] {
        assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
        assert!(out.contains("\\x1b]0;pwned\\x07") && out.contains("\\x1b[2J"), "{out}");
    }
    assert!(query.stdout().contains("evil\\x1b[31mname.md"), "{}", query.stdout());
    // JSON carries the text as it is, escaped by JSON itself.
    let json = ws.query_json("notes", "kites fly", 1);
    assert!(json["results"][0]["content"].as_str().unwrap().contains("\x1b[2J"));
}

#[test]
fn a_file_that_only_looks_like_a_secret_is_indexed_when_named() {
    let ws = Workspace::new();
    let private_key = format!("-----BEGIN {}-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n", "PRIVATE KEY");
    ws.write("docs/examples/test-fixture.pem", &private_key);
    ws.write("keys/server.pem", &private_key);
    ws.write("docs/kites.md", "# Kites\n\nKites fly in steady wind.\n");
    let run = ws.rag(&["index", ".", "--store", "notes", "--allow-secrets", "docs/examples/*.pem"]);
    run.assert_ok();
    assert!(run.stdout().contains("skipped: keys/server.pem: looks like"), "{}", run.stdout());
    let mut stored: Vec<String> = ws.records("notes").into_iter().map(|(c, _)| c.source_path).collect();
    stored.dedup();
    assert_eq!(stored, ["docs/examples/test-fixture.pem", "docs/kites.md"]);
    let bad = ws.rag(&["index", ".", "--store", "notes", "--allow-secrets", "docs/[oops"]);
    bad.assert_code(1);
    assert!(bad.stderr().contains("--allow-secrets"), "{}", bad.stderr());
}
