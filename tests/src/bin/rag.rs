//! The `rag` binary, built inside this package so that its tests always run
//! the current code (cargo rebuilds it with them).

fn main() -> std::process::ExitCode {
    rag_cli::main()
}
