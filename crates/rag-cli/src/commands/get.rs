//! `rag get`: what a store holds for a hit, read from the store only.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use rag_core::store::ChunkRef;

use crate::cli::GetArgs;
use crate::output;
use crate::session::Session;

/// `rag get`: what a store holds for a hit, from the store only.
pub async fn get(args: GetArgs, data_dir: &Path) -> Result<ExitCode> {
    let target: ChunkRef = args.target.parse()?;
    let session = Session::new(data_dir.to_path_buf(), args.backend.clone(), Default::default());
    let fetched = session.store(&args.store).await?.get(&target, args.context).await?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let out = output::get_json(&args.store, &target, &fetched);
        serde_json::to_writer_pretty(&mut stdout, &out)?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", output::terminal_safe(&output::get_text(&fetched)))?;
    }
    Ok(ExitCode::SUCCESS)
}
