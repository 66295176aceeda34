//! The `rag` binary with `--backend s3vectors` against the fake S3 Vectors
//! (and the fake Ollama), all on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use serde_json::Value;
use support::{FakeBedrock, FakeOllama, FakeS3Vectors, Run, Workspace, sections};

const CHUNKS: [&str; 4] = ["--chunk-size", "400", "--chunk-overlap", "50"];

struct S3 {
    ws: Workspace,
    fake: FakeS3Vectors,
}

impl S3 {
    fn new() -> Self {
        Self::with_ollama(FakeOllama::start())
    }

    fn with_ollama(ollama: FakeOllama) -> Self {
        let ws = Workspace::with_ollama(ollama);
        ws.write("docs/install.md", sections("installation", 4));
        ws.write("docs/usage.md", sections("usage", 3));
        ws.write("src/lib.rs", "/// Parses the configuration file.\npub fn parse_config() {}\n");
        Self { ws, fake: FakeS3Vectors::start() }
    }

    fn index(&self, extra: &[&str]) -> Run {
        let url = self.fake.url();
        let mut args = vec![
            "index",
            "docs",
            "src",
            "--store",
            "notes",
            "--backend",
            "s3vectors",
            "--bucket",
            "team-vectors",
            "--endpoint-url",
            &url,
        ];
        args.extend(CHUNKS);
        args.extend(extra);
        self.ws.rag(&args)
    }

    fn query(&self, text: &str, extra: &[&str]) -> Value {
        let mut args = vec!["query", text, "--store", "notes", "--json"];
        if !extra.contains(&"-k") {
            args.extend(["-k", "50"]);
        }
        args.extend(extra);
        let run = self.ws.rag(&args);
        run.assert_ok();
        serde_json::from_str(&run.stdout()).unwrap()
    }
}

fn paths(json: &Value) -> Vec<String> {
    json["results"].as_array().unwrap().iter().map(|r| r["file_path"].as_str().unwrap().to_string()).collect()
}

#[test]
fn index_and_query_on_s3_vectors_then_reuse_the_remembered_bucket() {
    let s3 = S3::new();
    let run = s3.index(&[]);
    run.assert_ok();
    assert!(run.stdout().contains("(s3vectors)") && run.stdout().contains("3 new"), "{}", run.stdout());
    assert!(s3.fake.calls("PutVectors") >= 1);
    let body = &s3.fake.requests("CreateIndex")[0];
    assert_eq!(body["metadataConfiguration"]["nonFilterableMetadataKeys"][0], "text");
    assert_eq!(body["tags"]["rag:model"], "embeddinggemma");

    // No --backend/--bucket/--endpoint-url: the store remembers where it lives.
    let json = s3.query("installation notes", &["--mode", "vector"]);
    assert_eq!(json["backend"], "s3vectors");
    assert_eq!(json["results"][0]["file_path"], "docs/install.md");
    // The same chunk gets the same score on the local store.
    let mut args = vec!["index", "docs", "src", "--store", "notes-local", "--backend", "local"];
    args.extend(CHUNKS);
    s3.ws.rag(&args).assert_ok();
    let run =
        s3.ws.rag(&["query", "installation notes", "--store", "notes-local", "--json", "--mode", "vector", "-k", "1"]);
    run.assert_ok();
    let local: Value = serde_json::from_str(&run.stdout()).unwrap();
    let (a, b) = (&json["results"][0], &local["results"][0]);
    assert_eq!(a["key"], b["key"]);
    let (sa, sb) = (a["score"].as_f64().unwrap(), b["score"].as_f64().unwrap());
    assert!(sa > 0.0 && (sa - sb).abs() < 1e-4, "s3vectors {sa} vs local {sb}");

    let info = s3.ws.rag(&["store", "info", "notes", "--count"]);
    info.assert_ok();
    assert!(
        info.stdout().contains("bucket:     team-vectors") || info.stdout().contains("team-vectors"),
        "{}",
        info.stdout()
    );
    let list = s3.ws.rag(&["store", "list"]);
    assert!(list.stdout().contains("notes") && list.stdout().contains("s3vectors"), "{}", list.stdout());
}

#[test]
fn reindex_sends_no_put_and_changes_touch_only_their_files() {
    let s3 = S3::new();
    s3.index(&[]).assert_ok();
    s3.fake.reset_calls();
    s3.ws.ollama.reset_stats();
    let run = s3.index(&[]);
    run.assert_ok();
    assert_eq!(s3.fake.calls("PutVectors"), 0, "nothing changed, nothing sent");
    assert_eq!(s3.ws.ollama.stats().embedded_texts, 0);
    assert!(s3.fake.calls("ListVectors") >= 1, "state read from the index itself");

    // src/ is now empty: its file is kept unless the deletion is confirmed.
    s3.ws.remove("src/lib.rs");
    let kept = s3.index(&[]);
    kept.assert_code(1);
    assert!(kept.stdout().contains("kept: src/lib.rs") && kept.stdout().contains("0 removed"), "{}", kept.stdout());
    s3.ws.write("docs/usage.md", sections("usage", 1));
    s3.fake.reset_calls();
    let run = s3.index(&["--allow-mass-delete"]);
    run.assert_ok();
    assert!(run.stdout().contains("1 changed") && run.stdout().contains("1 removed"), "{}", run.stdout());
    let put: Vec<String> = s3
        .fake
        .requests("PutVectors")
        .iter()
        .flat_map(|b| {
            b["vectors"].as_array().unwrap().iter().map(|v| v["key"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        })
        .collect();
    assert!(!put.is_empty() && put.iter().all(|k| k.starts_with("docs/usage.md#")), "{put:?}");
    assert!(s3.fake.calls("DeleteVectors") >= 1);
    let json = s3.query("configuration file usage", &[]);
    assert!(!paths(&json).contains(&"src/lib.rs".to_string()));
}

#[test]
fn an_unreadable_document_is_remembered_on_this_machine_for_an_s3_store() {
    let s3 = S3::new();
    s3.ws.write("docs/locked.pdf", b"%PDF-1.4 not really a pdf");
    let first = s3.index(&[]);
    first.assert_code(1);
    assert!(!first.stdout().contains("not read again"), "{}", first.stdout());
    let again = s3.index(&[]);
    again.assert_code(1);
    assert!(
        again.stdout().contains("docs/locked.pdf") && again.stdout().contains("not read again"),
        "{}",
        again.stdout()
    );
    let info = s3.ws.rag(&["store", "info", "notes"]).stdout();
    assert!(info.contains("unreadable files: 1 (not read again") && info.contains("kept: on this machine"), "{info}");
    let record = s3.ws.data().join("s3vectors/team-vectors/notes.unreadable.json");
    assert!(std::fs::read_to_string(&record).unwrap().contains("docs/locked.pdf"));
    s3.ws.remove("docs/locked.pdf");
    s3.index(&[]).assert_ok();
    assert!(!record.exists(), "a file that is gone is forgotten");
}

#[test]
fn a_file_s3_cannot_hold_fails_alone_and_huge_front_matter_is_dropped_not_fatal() {
    let s3 = S3::new();
    // A path whose folders pass the 2 KB of filterable metadata.
    let deep = format!("docs/folder-name{}/deep.md", "/folder-name".repeat(40));
    s3.ws.write(&deep, "# Deep\n\nfar down\n");
    // Front matter of 30 KB: kept on no chunk, the note still indexed.
    let fields: String = (0..1_000).map(|i| format!("field{i}: {}\n", "v".repeat(20))).collect();
    s3.ws.write("docs/big.md", format!("---\ntitle: Big\n{fields}---\n# Big\n\nbody of the big note\n"));
    let run = s3.index(&[]);
    run.assert_code(1);
    let stdout = run.stdout();
    assert!(stdout.contains(&format!("failed: {deep}: chunk 0 cannot be stored")), "{stdout}");
    assert!(stdout.contains("too long or too deep"), "{stdout}");
    let json = s3.query("body of the big note", &["-k", "100"]);
    let big = json["results"].as_array().unwrap().iter().find(|r| r["file_path"] == "docs/big.md").unwrap();
    assert!(big["content"].as_str().unwrap().contains("body of the big note"), "{big}");
    assert!(paths(&json).contains(&"docs/install.md".to_string()));
    assert!(!paths(&json).contains(&deep));
}

#[test]
fn hybrid_on_s3_vectors_reranks_vector_candidates_and_says_so() {
    let s3 = S3::new();
    s3.index(&[]).assert_ok();
    let queries_before = s3.fake.calls("QueryVectors");
    let json = s3.query("parse_config", &["-k", "3"]);
    assert_eq!(s3.fake.calls("QueryVectors") - queries_before, 1, "one vector query serves both arms");
    assert_eq!(json["metadata"]["mode"], "hybrid");
    assert_eq!(json["metadata"]["lexical"]["kind"], "rerank", "{json}");
    assert!(json["metadata"]["notes"][0].as_str().unwrap().contains("no text search"), "{json}");
    let top = &json["results"][0];
    assert_eq!(top["file_path"], "src/lib.rs", "{json}");
    assert_eq!(top["lexical_rank"], 1, "{top}");
    // The request asked for the wider candidate set, with the filter sent to the service.
    let json = s3.query("installation", &["--ext", "md"]);
    assert!(paths(&json).iter().all(|p| p.ends_with(".md")), "{json}");
    let request = s3.fake.requests("QueryVectors").pop().unwrap();
    assert_eq!(request["topK"], 100, "{request}");
    assert!(request["filter"].is_object(), "{request}");

    let run = s3.ws.rag(&["query", "parse_config", "--store", "notes", "--mode", "lexical"]);
    run.assert_code(1);
    assert!(run.stderr().contains("no full-text index") && run.stderr().contains("s3vectors"), "{}", run.stderr());
    // Vector mode is unchanged.
    let json = s3.query("installation notes", &["--mode", "vector", "-k", "2"]);
    assert_eq!(json["metadata"]["lexical"]["kind"], "none");
}

#[test]
fn filters_work_on_s3_vectors() {
    let s3 = S3::new();
    s3.index(&[]).assert_ok();
    let json = s3.query("notes", &["--ext", "rs"]);
    assert_eq!(paths(&json), ["src/lib.rs"]);
    let json = s3.query("notes", &["--path", "docs", "--filter", r#"{"chunk_index": {"$gte": 1}}"#]);
    assert!(!paths(&json).is_empty());
    assert!(
        json["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["file_path"].as_str().unwrap().starts_with("docs/") && r["chunk_index"].as_u64().unwrap() >= 1)
    );
}

#[test]
fn throttling_is_recovered() {
    let s3 = S3::new();
    s3.fake.fail_next("PutVectors", 2, 429, "TooManyRequestsException");
    s3.index(&[]).assert_ok();
    assert_eq!(s3.fake.vector_count("team-vectors", "notes"), {
        let json = s3.query("notes", &[]);
        json["total_results"].as_u64().unwrap() as usize
    });
}

#[test]
fn an_index_of_another_dimension_is_refused() {
    let s3 = S3::new();
    let url = s3.fake.url();
    s3.ws
        .rag(&[
            "store",
            "create",
            "notes",
            "--backend",
            "s3vectors",
            "--bucket",
            "team-vectors",
            "--endpoint-url",
            &url,
            "--dimension",
            "32",
        ])
        .assert_ok();
    let run = s3.index(&[]);
    run.assert_code(1);
    let err = run.stderr();
    assert!(err.contains("32") && err.contains("64") && err.contains("cannot be mixed"), "{err}");
    assert_eq!(s3.fake.calls("PutVectors"), 0);
}

#[test]
fn s3_vectors_needs_a_bucket() {
    let s3 = S3::new();
    let run = s3.ws.rag(&["index", "docs", "--store", "notes", "--backend", "s3vectors"]);
    run.assert_code(1);
    assert!(run.stderr().contains("--bucket"), "{}", run.stderr());
}

#[test]
fn missing_credentials_say_how_to_provide_them() {
    let s3 = S3::new();
    let url = s3.fake.url();
    let out = s3
        .ws
        .command(&["store", "list", "--backend", "s3vectors", "--bucket", "team-vectors", "--endpoint-url", &url])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    let run = Run(out);
    run.assert_code(1);
    assert!(
        run.stderr().contains("no usable AWS credentials") && run.stderr().contains("--profile"),
        "{}",
        run.stderr()
    );
    assert_eq!(s3.fake.calls("ListIndexes"), 0, "nothing unsigned was sent");
}

/// A store's content as comparable rows: key, file, content hash, text.
fn content(fake: &FakeS3Vectors, store: &str) -> Vec<(String, String, String, String)> {
    fake.records("team-vectors", store)
        .into_iter()
        .map(|(key, m)| {
            let field = |name: &str| m[name].as_str().unwrap_or_default().to_string();
            (key, field("source_path"), field("content_hash"), field("text"))
        })
        .collect()
}

fn index_args(url: &str, store: &str) -> Vec<String> {
    ["index", "notes", "--store", store, "--backend", "s3vectors", "--bucket", "team-vectors", "--endpoint-url", url]
        .into_iter()
        .map(str::to_string)
        .chain(CHUNKS.map(str::to_string))
        .collect()
}

#[test]
fn concurrent_writers_take_turns_and_the_store_ends_as_one_clean_run() {
    let s3 = S3::new();
    // The service's per-index write limits, shared by every writer.
    s3.fake.enforce_write_limits(2_500, 1_000);
    let url = s3.fake.url();
    for i in 0..40 {
        s3.ws.write(&format!("notes/n{i:02}.md"), sections(&format!("topic{i}"), 3));
    }
    let spawn_with = |store: &str, chunk_flags: bool| {
        let mut args = index_args(&url, store);
        if !chunk_flags {
            args.retain(|a| !CHUNKS.contains(&a.as_str()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        s3.ws.command(&args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    let spawn = |store: &str| spawn_with(store, true);
    let finish = |child: std::process::Child| {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };

    // Two at once on one tree.
    let (a, b) = (spawn("notes"), spawn("notes"));
    finish(a);
    finish(b);
    let clean = |name: &str| {
        let args = index_args(&url, name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        s3.ws.rag(&args).assert_ok();
        content(&s3.fake, name)
    };
    assert_eq!(content(&s3.fake, "notes"), clean("clean-one"));

    // Three: the tree changes while the first runs (sections removed, files
    // added); the two that start after it see the final tree.
    s3.fake.reset_calls();
    for i in 0..40 {
        s3.ws.write(&format!("notes/n{i:02}.md"), sections(&format!("middle{i}"), 4));
    }
    let a = spawn("notes");
    // The first run is writing (it holds the store) before the tree changes.
    let started = std::time::Instant::now();
    while s3.fake.calls("PutVectors") == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the first run never wrote");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for i in 0..20 {
        s3.ws.write(&format!("notes/n{i:02}.md"), sections(&format!("changed{i}"), 1));
    }
    for i in 40..45 {
        s3.ws.write(&format!("notes/n{i:02}.md"), sections(&format!("topic{i}"), 2));
    }
    // The third runs as another machine would, without the chunk flags: it
    // chunks as the store records, so nothing is re-chunked.
    let (b, c) = (spawn("notes"), spawn_with("notes", false));
    finish(a);
    finish(b);
    finish(c);
    let final_content = content(&s3.fake, "notes");
    assert_eq!(final_content, clean("clean-two"));
    for old in ["topic0 ", "topic39 ", "middle0 ", "middle19 "] {
        assert!(final_content.iter().all(|(_, _, _, text)| !text.contains(old)), "a superseded chunk: {old}");
    }
    // Whichever ran last, a run without the flags writes nothing.
    s3.fake.reset_calls();
    finish(spawn_with("notes", false));
    assert_eq!(s3.fake.calls("PutVectors"), 0, "a run with other defaults re-chunked the store");
    assert_eq!(content(&s3.fake, "notes"), final_content);
}

#[test]
fn the_serverless_path_bedrock_embeddings_into_s3_vectors() {
    let s3 = S3::new();
    let bedrock = FakeBedrock::start();
    let model = "bedrock:amazon.titan-embed-text-v2:0?dimensions=256";
    // --region is the AWS region of the command: S3 Vectors' and Bedrock's.
    let run = s3.index(&["--model", model, "--bedrock-url", &bedrock.url(), "--region", "eu-central-1"]);
    run.assert_ok();
    assert!(run.stdout().contains("3 new") && run.stdout().contains("tokens: "), "{}", run.stdout());
    assert!(run.stdout().contains("at list price"), "{}", run.stdout());
    assert_eq!(s3.ws.ollama.stats().embed_requests, 0, "nothing went to Ollama");
    let calls = bedrock.invocations();
    assert!(
        calls.iter().all(|c| c.signed && c.model_id == "amazon.titan-embed-text-v2:0" && c.body["dimensions"] == 256)
    );
    let regions: Vec<&str> = calls.iter().map(|c| c.region.as_str()).collect();
    assert!(regions.iter().all(|r| *r == "eu-central-1"), "signed for {regions:?}");
    // The endpoint from the SDK's own variable, for queries with no flag.
    let query = Run(s3
        .ws
        .command(&["query", "installation", "--store", "notes", "--json", "-k", "3"])
        .env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", bedrock.url())
        .output()
        .unwrap());
    query.assert_ok();
    let json: Value = serde_json::from_str(&query.stdout()).unwrap();
    assert_eq!(json["model"], model);
    assert_eq!(json["results"][0]["file_path"], "docs/install.md", "{json}");
    // A model not enabled in the region: one line, the run stops, nothing half-written.
    bedrock.disable("cohere.embed-english-v3");
    let refused = s3.ws.rag(&[
        "index",
        "docs",
        "--store",
        "other",
        "--backend",
        "s3vectors",
        "--bucket",
        "team-vectors",
        "--endpoint-url",
        &s3.fake.url(),
        "--model",
        "bedrock:cohere.embed-english-v3",
        "--bedrock-url",
        &bedrock.url(),
    ]);
    refused.assert_code(1);
    let err = refused.stderr();
    // (The harness points AWS_CONFIG_FILE at a missing file, which the SDK warns of.)
    let errors: Vec<&str> = err.lines().filter(|l| !l.contains("WARN config file")).collect();
    assert!(err.contains("Model access") && errors.len() == 1, "{err}");
}
