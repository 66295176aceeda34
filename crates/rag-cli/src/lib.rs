//! The `rag` command as a library: [`main`] parses the process arguments and
//! runs. It is a thin layer over the library crates (argument parsing,
//! progress and output); everything it does is available to Rust programs
//! through `rag-core` and the backend and embedder crates.

mod backends;
mod cli;
mod commands;
mod embedders;
mod errors;
mod first_use;
mod isolate;
mod mcp;
mod output;
mod progress;
mod records;
mod session;
mod signals;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};
use rag_backend_local::LocalBackend;

use cli::{Cli, Command};

/// Runs `rag` with the process arguments and returns its exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ConvertDocument { extension } = &cli.command {
        return isolate::serve(extension);
    }
    init_logging(cli.verbose, cli.quiet);
    output::set_quiet(cli.quiet);
    // A query does one thing at a time on its own thread (its searches run
    // on tokio's blocking threads): a pool of workers would only be started,
    // and woken to drive the embedder's connection, then stopped.
    let mut builder = match cli.command {
        Command::Query(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", errors::error_chain(&err));
            ExitCode::FAILURE
        }
    };
    // A run stopped by a signal may leave a file's reader thread waiting on
    // its child: exit without waiting (the child dies with this process).
    runtime.shutdown_background();
    code
}

/// Log lines on stderr at the level `-v`/`-q` ask for (`RUST_LOG` overrides).
fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose >= 2)
        .without_time()
        .init();
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let data_dir = match &cli.data_dir {
        Some(dir) => dir.clone(),
        None => LocalBackend::default_data_dir()
            .context("no data folder on this platform; pass --data-dir or set RAG_DATA_DIR")?,
    };
    match cli.command {
        Command::Index(args) => commands::index::index(args, &data_dir, cli.quiet, cli.verbose).await,
        Command::Query(args) => commands::query::query(args, &data_dir).await,
        Command::Get(args) => commands::get::get(args, &data_dir).await,
        Command::Watch(args) => watch::watch(args, &data_dir).await,
        Command::Mcp(args) => {
            let options =
                mcp::McpOptions { data_dir, backend: args.backend, embedder: args.embedder, stores: args.stores };
            mcp::serve(options).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Store(command) => commands::store::store(command, &data_dir).await,
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "rag", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::ConvertDocument { extension } => Ok(isolate::serve(&extension)),
    }
}
