//! `rag-bench watch`: the time from a file's save to its chunks being
//! queryable, through a real `rag watch` process (the fake Ollama of
//! `rag-testkit` embeds at once), in a tree of 1,000 notes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rag_backend_local::LocalBackend;
use rag_core::{backend::VectorBackend, store::chunk_key};

use crate::median;

/// Median save-to-queryable latency over `saves` saves.
pub async fn bench_watch(dir: &Path, saves: usize) -> Result<()> {
    let rag = crate::rag_binary()?;
    let work = std::path::absolute(dir.join("watch"))?;
    let _ = std::fs::remove_dir_all(&work);
    let (tree, data) = (work.join("notes"), work.join("data"));
    std::fs::create_dir_all(&tree)?;
    for i in 0..1000 {
        std::fs::write(tree.join(format!("n{i:04}.md")), format!("# Note {i}\n\nText of note {i}.\n"))?;
    }
    let ollama = rag_testkit::FakeOllama::start();
    let mut child = Command::new(&rag)
        .args(["watch", "notes", "--store", "notes", "--data-dir"])
        .arg(&data)
        .args(["--ollama-url", &ollama.url()])
        .current_dir(&work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start rag watch")?;
    let backend = LocalBackend::new(&data);
    let result = async {
        // The first run indexes the tree; the watch is on before it starts.
        let started = Instant::now();
        loop {
            match backend.get_chunks("notes", &[chunk_key("notes/n0999.md", 0)]).await {
                Ok(found) if !found.is_empty() => break,
                Ok(_) => {}
                // Not made yet.
                Err(_) => {}
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("rag watch did not index the tree");
            }
            if let Some(status) = child.try_wait()? {
                bail!("rag watch stopped: {status}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut latencies = Vec::new();
        for i in 0..saves {
            let path = format!("notes/saved{i}.md");
            let saved = Instant::now();
            std::fs::write(work.join(&path), format!("# Saved {i}\n\nsaved text {i}\n"))?;
            while backend.get_chunks("notes", &[chunk_key(&path, 0)]).await?.is_empty() {
                if saved.elapsed() > Duration::from_secs(30) {
                    bail!("{path} never became queryable");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            latencies.push(saved.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        Ok(latencies)
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let latencies = result?;
    let (low, high) =
        (latencies.iter().copied().fold(f64::INFINITY, f64::min), latencies.iter().copied().fold(0.0, f64::max));
    println!(
        "rag watch, 1,000-note tree, fake Ollama: save to queryable {:.0} ms median ({saves} saves, {low:.0}-{high:.0} ms); \
         250 ms of it is the quiet time that gathers a burst of events",
        median(latencies)
    );
    Ok(())
}
