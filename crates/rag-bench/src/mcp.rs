//! `rag-bench mcp`: the latency of a warm `search` through `rag mcp`, a real
//! server process spoken to over stdio with JSON-RPC as an agent does, beside
//! the fresh-process figure of `rag-bench query`.
//!
//! The store's model is served by the loopback fake Ollama of `rag-testkit`;
//! its round trip is measured on its own and subtracted, so the figure
//! excludes the query embedding as `rag-bench query` does.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rag_core::embed::Embedder;
use serde_json::{Value, json};

use crate::query::{ensure_store, synthetic_query};
use crate::{DIM, median};

/// A `rag mcp` child and its pipes.
struct Server {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next_id: u64,
}

impl Server {
    fn start(rag: &Path, data: &Path, ollama: &str) -> Result<Self> {
        let mut child = Command::new(rag)
            .args(["mcp", "--data-dir"])
            .arg(data)
            .args(["--ollama-url", ollama])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", rag.display()))?;
        let input = child.stdin.take().context("no stdin")?;
        let output = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut server = Self { child, input, output, next_id: 1 };
        server.call(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "rag-bench", "version": "0"}}),
        )?;
        server.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(server)
    }

    fn send(&mut self, message: &Value) -> Result<()> {
        writeln!(self.input, "{message}")?;
        self.input.flush()?;
        Ok(())
    }

    /// Sends a request and waits for its response.
    fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.output.read_line(&mut line)? == 0 {
                bail!("rag mcp closed its output");
            }
            let message: Value = serde_json::from_str(&line)?;
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    bail!("{method} failed: {error}");
                }
                return Ok(message["result"].clone());
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Warm `search` latency through `rag mcp` at each size, per mode.
pub async fn bench_mcp(dir: &Path, sizes: &[usize], calls: usize) -> Result<()> {
    let rag = crate::rag_binary()?;
    let ollama = rag_testkit::FakeOllama::with_models(&[("synthetic", DIM)]);
    // The fake's own round trip, measured as rag mcp's embedder client makes it.
    let embedder = rag_embed_ollama::OllamaEmbedder::connect(
        rag_embed_ollama::OllamaConfig::new("synthetic").with_url(&ollama.url()),
    )
    .await?;
    let mut embed = Vec::new();
    for i in 0..calls.max(20) {
        let started = Instant::now();
        embedder.embed_query(&synthetic_query(i as u64, 5)).await?;
        embed.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let embed = median(embed);
    println!(
        "warm `search` through rag mcp over stdio (768 dims, k 10, {calls} calls after 3 warm-up calls, medians; \
         the fake embedding round trip of {embed:.2} ms is subtracted)"
    );
    println!("{:>10} {:>8} {:>14} {:>14}", "chunks", "mode", "call ms", "search ms");
    for &size in sizes {
        let data = crate::query::store_folder(dir, size, DIM);
        ensure_store(&data, "bench", size, DIM).await?;
        let mut server = Server::start(&rag, &data, &ollama.url())?;
        for mode in ["vector", "hybrid"] {
            let mut times = Vec::new();
            for i in 0..calls + 3 {
                let args =
                    json!({"query": synthetic_query(1000 + i as u64, 5), "stores": ["bench"], "k": 10, "mode": mode});
                let started = Instant::now();
                let result = server.call("tools/call", json!({"name": "search", "arguments": args}))?;
                let elapsed = started.elapsed().as_secs_f64() * 1000.0;
                if result["isError"] == true {
                    bail!("search failed: {result}");
                }
                if i >= 3 {
                    times.push(elapsed);
                }
            }
            let call = median(times);
            println!("{size:>10} {mode:>8} {call:>14.2} {:>14.2}", (call - embed).max(0.0));
        }
    }
    Ok(())
}
