//! `rag mcp` driven by a real MCP client: the official Python SDK (`mcp` on
//! PyPI), installed by `scripts/test.sh` into `target/mcp-venv`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;

mod support;

use support::{FakeOllama, Workspace, rag_bin};

/// The Python with the `mcp` SDK: `RAG_MCP_PYTHON`, else `target/mcp-venv`.
fn mcp_python() -> PathBuf {
    if let Some(python) = std::env::var_os("RAG_MCP_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/mcp-venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with the MCP SDK: run scripts/test.sh (it makes target/mcp-venv), or set RAG_MCP_PYTHON"
    );
    venv
}

#[test]
fn an_mcp_client_lists_calls_and_survives_bad_calls() {
    let ws = Workspace::with_ollama(FakeOllama::with_models(&[("embeddinggemma", 64), ("nomic-embed-text", 32)]));
    ws.write("garden/tomatoes.md", "# Tomatoes\n\nWater tomatoes daily in the summer heat.\n");
    ws.write("garden/roses.md", "# Roses\n\nPrune roses in early spring.\n");
    ws.write("kitchen/bread.md", "# Bread\n\nBake sourdough bread at a high heat.\n");
    ws.rag(&["index", "garden", "--store", "garden"]).assert_ok();
    ws.rag(&["index", "kitchen", "--store", "kitchen", "--model", "nomic-embed-text"]).assert_ok();
    // Changes on disk that index_status must see: one new file, one edited.
    ws.write("garden/basil.md", "# Basil\n\nPinch basil tips weekly.\n");
    ws.write("garden/roses.md", "# Roses\n\nPrune roses in late winter.\n");

    let out = Command::new(mcp_python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp/client.py"))
        .arg(rag_bin())
        .arg(ws.work())
        .args(["garden", "kitchen"])
        .env("RAG_DATA_DIR", ws.data())
        .env("OLLAMA_HOST", ws.ollama.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let checks = stdout.lines().filter(|l| l.contains("\"ok\": true")).count();
    assert_eq!(checks, 28, "every check ran and passed:\n{stdout}");
}
