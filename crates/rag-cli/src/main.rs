//! `rag`: index your files into a vector store and ask it questions.

fn main() -> std::process::ExitCode {
    rag_cli::main()
}
