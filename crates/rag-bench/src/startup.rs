//! `rag-bench startup`: how long `rag --version` and `rag store list` take.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::median;

pub(crate) fn bench_startup(dir: &Path, runs: usize) -> Result<()> {
    let rag = crate::rag_binary()?;
    let data = dir.join("startup-data");
    std::fs::create_dir_all(&data)?;
    println!("start-up of {} ({runs} runs, medians)", rag.display());
    for args in [vec!["--version"], vec!["store", "list"]] {
        let mut times = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let status = Command::new(&rag).args(&args).env("RAG_DATA_DIR", &data).output()?.status;
            times.push(started.elapsed());
            if !status.success() {
                bail!("rag {} failed", args.join(" "));
            }
        }
        let ms: Vec<f64> = times.iter().map(Duration::as_secs_f64).map(|s| s * 1000.0).collect();
        println!("  rag {:<12} {:.2} ms", args.join(" "), median(ms));
    }
    Ok(())
}
