//! Command-line arguments. The doc comment of each field is its `--help` text.

use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Seconds a document's reader may take, unless `--reader-timeout` says otherwise.
pub const DEFAULT_READER_TIMEOUT_SECS: f64 = 120.0;

/// MiB a document's reader may use, unless `--reader-memory` says otherwise.
pub const DEFAULT_READER_MEMORY_MIB: u64 = 1024;

/// Index your files into a vector store and ask it questions.
///
/// Embeds with Ollama (default model embeddinggemma) and stores vectors in an
/// embedded local store. Exit codes: 0 success, 1 failure (including an index
/// run in which some files failed), 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "rag", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// More logging on stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// No progress bars and no log lines below errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Folder that holds the local stores [default: the platform data folder, e.g. ~/.local/share/vector-rag].
    #[arg(long, env = "RAG_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Index files, folders or globs into a store (only what changed is re-embedded).
    Index(IndexArgs),
    /// Ask a store a question; prints the most similar chunks.
    Query(QueryArgs),
    /// Create, list, inspect and delete stores.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Print a shell completion script.
    Completion {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Index files, then keep the store current as they change (Ctrl-C stops).
    Watch(IndexArgs),
    /// Serve the stores to agents as Model Context Protocol tools over stdio (search, get, list_stores, index_status).
    Mcp(McpArgs),
    /// Print what a store holds for a hit: by key (`notes/tea.md#3`) or by lines (`notes/tea.md:10-20`).
    Get(GetArgs),
    /// Internal: convert the document on stdin (run by `rag index` in a child process).
    #[command(name = "convert-document", hide = true)]
    ConvertDocument {
        /// The document's extension (pdf, docx, xlsx, ...).
        extension: String,
    },
}

/// Where embeddings come from.
#[derive(Debug, Args, Clone, Default)]
pub struct EmbedderArgs {
    /// Embedding model: an Ollama model name, a sentence-transformers model folder
    /// (./all-MiniLM-L6-v2), hf:ORG/NAME[@REVISION] from the Hugging Face Hub,
    /// fetched once into its cache (HF_HOME, HF_ENDPOINT, HF_TOKEN), or
    /// openai:MODEL[?dimensions=N] on an OpenAI-compatible server, or
    /// bedrock:MODEL_ID[?dimensions=N] on Amazon Bedrock [default: the
    /// store's model; for a new store embeddinggemma through Ollama (pulled if
    /// missing), or hf:sentence-transformers/all-MiniLM-L6-v2 in this process
    /// when Ollama is not running].
    #[arg(long, env = "RAG_MODEL")]
    pub model: Option<String>,

    /// Ollama server URL [default: $OLLAMA_HOST, else http://localhost:11434].
    #[arg(long, value_name = "URL")]
    pub ollama_url: Option<String>,

    /// Base URL of an OpenAI-compatible server for openai:MODEL, up to its
    /// version (http://localhost:1234/v1) [default: $OPENAI_BASE_URL, else
    /// https://api.openai.com/v1]. The key comes from $OPENAI_API_KEY.
    #[arg(long, value_name = "URL")]
    pub embed_url: Option<String>,

    /// Bedrock Runtime endpoint for bedrock:MODEL_ID (a VPC endpoint, a local
    /// stand-in) [default: AWS_ENDPOINT_URL_BEDROCK_RUNTIME, else the region's].
    /// Credentials come from the AWS chain; region and profile from --region
    /// and --profile, else the chain (AWS_REGION, AWS_PROFILE).
    #[arg(long, value_name = "URL")]
    pub bedrock_url: Option<String>,

    /// The AWS region of the command's `--region`, for Bedrock as for S3 Vectors.
    #[arg(skip)]
    pub aws_region: Option<String>,

    /// The AWS profile of the command's `--profile`, for Bedrock as for S3 Vectors.
    #[arg(skip)]
    pub aws_profile: Option<String>,
}

impl EmbedderArgs {
    /// These settings with the AWS region and profile of `backend`, which
    /// Bedrock uses as S3 Vectors does.
    pub fn with_aws_of(mut self, backend: &BackendArgs) -> Self {
        self.aws_region.clone_from(&backend.region);
        self.aws_profile.clone_from(&backend.profile);
        self
    }
}

/// Which store backend, and where S3 Vectors stores live.
#[derive(Debug, Args, Clone, Default)]
pub struct BackendArgs {
    /// Store backend [default: s3vectors when --bucket is given or the store was used with
    /// S3 Vectors before, else local].
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,

    /// S3 Vectors: the vector bucket (created when missing).
    #[arg(long, env = "RAG_S3_BUCKET")]
    pub bucket: Option<String>,

    /// S3 Vectors: AWS region [default: from the AWS environment or profile].
    #[arg(long)]
    pub region: Option<String>,

    /// S3 Vectors: AWS profile [default: the AWS credential chain].
    #[arg(long)]
    pub profile: Option<String>,

    /// S3 Vectors: endpoint URL, e.g. a local emulator (AWS_ENDPOINT_URL_S3VECTORS also works).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

/// Store backends.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum BackendKind {
    /// The embedded store in the data folder.
    Local,
    /// Amazon S3 Vectors.
    S3vectors,
}

/// `rag index`.
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Files, folders and quoted globs ("docs/**/*.md", "src/**/*.{rs,toml}").
    /// Folders are walked for known text formats; .gitignore, .ignore and
    /// .ragignore are honoured.
    #[arg(required = true, value_name = "PATH_OR_GLOB")]
    pub paths: Vec<String>,

    /// Store to index into; created if it does not exist.
    #[arg(short, long, env = "RAG_STORE")]
    pub store: String,

    #[command(flatten)]
    pub embedder: EmbedderArgs,

    #[command(flatten)]
    pub backend: BackendArgs,

    /// Maximum chunk size in characters [default: 1500 for a new store, the
    /// store's own for one that exists]; lowered to fit the model's context
    /// window (2.5 characters a token, less room for the prompt). Given, and
    /// other than the store's, every file is re-chunked.
    #[arg(long, value_name = "CHARS")]
    pub chunk_size: Option<usize>,

    /// Characters shared by neighbouring chunks [default: 200 for a new
    /// store, the store's own for one that exists].
    #[arg(long, value_name = "CHARS")]
    pub chunk_overlap: Option<usize>,

    /// Chunk budget in tokens instead of characters, approximated without a
    /// tokenizer as 2.5 characters a token (sets --chunk-size to 2.5 x N and caps
    /// the overlap at a quarter of it).
    #[arg(long, value_name = "N", conflicts_with = "chunk_size")]
    pub chunk_tokens: Option<usize>,

    /// Re-embed every file, even unchanged ones.
    #[arg(long)]
    pub force: bool,

    /// Keep the chunks of files that are gone from the given paths.
    #[arg(long)]
    pub no_prune: bool,

    /// Let this run delete the chunks of more than half of the store's files
    /// (when that is 20 files or more), and of files stored from a folder
    /// that is now empty; without it such files are kept (an empty folder,
    /// the run exits 1) or the run is refused, in case a root or a mount is
    /// wrong.
    #[arg(long)]
    pub allow_mass_delete: bool,

    /// Index files matching GLOB (a stored path such as `docs/examples/*.pem`;
    /// repeatable) even though they look like they hold credentials. Every
    /// other file is still checked by name and content.
    #[arg(long = "allow-secrets", value_name = "GLOB")]
    pub allow_secrets: Vec<String>,

    /// Show what would be embedded, changed and removed; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Include hidden files and folders.
    #[arg(long)]
    pub hidden: bool,

    /// Do not honour .gitignore/.ignore/.ragignore, and walk build folders (node_modules, target, ...).
    #[arg(long)]
    pub no_ignore: bool,

    /// Store paths relative to this folder [default: the current folder].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Distance metric of a new store.
    #[arg(long, value_enum, default_value_t = MetricArg::Cosine)]
    pub metric: MetricArg,

    /// Texts per embedding request.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=2048).map(usize::from))]
    pub batch_size: usize,

    /// Embedding requests in flight at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64).map(usize::from))]
    pub concurrency: usize,

    /// Skip files larger than this many bytes.
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    pub max_file_size: u64,

    /// Skip files that would make more chunks than this (a million-row table,
    /// years of logs), saying so.
    #[arg(long, default_value_t = rag_core::store::MAX_FILE_CHUNKS, value_name = "CHUNKS")]
    pub max_file_chunks: usize,

    /// Seconds a document (PDF, Office, OpenDocument, EPUB) or large HTML page may take to read; its
    /// reader runs in a child process and is stopped after this.
    #[arg(long, default_value_t = DEFAULT_READER_TIMEOUT_SECS, value_name = "SECS")]
    pub reader_timeout: f64,

    /// Memory (address space) a document's reader may use, in MiB (Unix).
    #[arg(long, default_value_t = DEFAULT_READER_MEMORY_MIB, value_name = "MIB")]
    pub reader_memory: u64,

    /// Print the report as JSON on stdout (no progress bars).
    #[arg(long)]
    pub json: bool,
}

/// `rag mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// The only stores to serve (repeatable); any other is refused [default: every store].
    #[arg(short, long = "store", value_name = "STORE")]
    pub stores: Vec<String>,

    #[command(flatten)]
    pub embedder: EmbedderArgs,

    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `rag get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The store.
    pub store: String,

    /// A chunk's key as hits show it (`path#index`), or `FILE:START-END` (or `FILE:LINE`).
    pub target: String,

    /// Neighbouring chunks to print on each side (at most 20).
    #[arg(short = 'C', long, default_value_t = 0)]
    pub context: usize,

    #[command(flatten)]
    pub backend: BackendArgs,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `rag query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The question (or use --stdin).
    #[arg(required_unless_present = "stdin")]
    pub text: Option<String>,

    /// Store to query; repeat it to search several stores at once (each with
    /// its own model), their hits merged on one ranking.
    #[arg(short, long = "store", env = "RAG_STORE", required_unless_present = "all_stores", value_name = "STORE")]
    pub stores: Vec<String>,

    /// Search every store: the local ones, and the S3 Vectors stores used from this machine.
    #[arg(long)]
    pub all_stores: bool,

    #[command(flatten)]
    pub embedder: EmbedderArgs,

    #[command(flatten)]
    pub backend: BackendArgs,

    /// Number of results.
    #[arg(short = 'k', long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000).map(|v| v as usize))]
    pub top_k: usize,

    /// Print whole chunks instead of snippets.
    #[arg(short = 'F', long)]
    pub full: bool,

    /// Snippet length in characters.
    #[arg(short = 'l', long, default_value_t = 300)]
    pub snippet_length: usize,

    /// Hide results scoring below this (may be negative; nothing is hidden by default).
    #[arg(long, allow_negative_numbers = true)]
    pub min_score: Option<f32>,

    /// Only chunks whose metadata passes this filter (S3 Vectors filter JSON), e.g.
    /// '{"ext": "md", "line_start": {"$lt": 100}}'. Filterable keys: source_path, dirs,
    /// ext, language, chunk_index, total_chunks, line_start, line_end, indexed_at.
    #[arg(long, value_name = "JSON")]
    pub filter: Option<String>,

    /// Only chunks of files under this folder (as stored, e.g. docs/api).
    #[arg(long, value_name = "FOLDER")]
    pub path: Option<String>,

    /// Only files with these extensions (comma-separated or repeated: --ext md,txt).
    #[arg(long, value_delimiter = ',', value_name = "EXT")]
    pub ext: Vec<String>,

    /// Read the question from stdin.
    #[arg(long, conflicts_with = "text")]
    pub stdin: bool,

    /// How to search: hybrid fuses full-text (BM25) and vector ranks; vector and
    /// lexical use one arm. Scores are always the vector similarity.
    #[arg(long, value_enum, default_value_t = ModeArg::Hybrid)]
    pub mode: ModeArg,

    /// Weight of the lexical arm in hybrid fusion (the vector arm weighs 1; 0 turns
    /// the lexical arm off).
    #[arg(long, default_value_t = 1.0, value_name = "W", allow_negative_numbers = true)]
    pub lexical_weight: f32,

    /// At most N results from one file.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    pub max_per_file: Option<usize>,

    /// Show each result's rank and score in each arm.
    #[arg(long)]
    pub explain: bool,

    /// Print one JSON document (schema in the README).
    #[arg(long)]
    pub json: bool,
}

/// `rag store ...`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// List stores.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Create an empty store (`rag index` also creates stores as needed).
    Create {
        /// Store name: 3-63 of a-z, 0-9, '-' and '.', starting and ending with a letter or digit.
        name: String,
        #[command(flatten)]
        embedder: EmbedderArgs,
        /// Vector dimension; when given, Ollama is not asked for it.
        #[arg(long)]
        dimension: Option<usize>,
        /// Distance metric.
        #[arg(long, value_enum, default_value_t = MetricArg::Cosine)]
        metric: MetricArg,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Show a store's model, size and counts.
    Info {
        /// Store name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// S3 Vectors: count the vectors (a parallel listing of the whole index).
        #[arg(long)]
        count: bool,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Delete a store and everything in it.
    Delete {
        /// Store name.
        name: String,
        #[command(flatten)]
        backend: BackendArgs,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(short, long, visible_alias = "force")]
        yes: bool,
    },
}

/// Search modes.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ModeArg {
    /// Full-text and vector ranks fused (reciprocal rank fusion).
    Hybrid,
    /// Nearest vectors only.
    Vector,
    /// Full-text (BM25) only; local stores.
    Lexical,
}

impl From<ModeArg> for rag_core::search::SearchMode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Hybrid => rag_core::search::SearchMode::Hybrid,
            ModeArg::Vector => rag_core::search::SearchMode::Vector,
            ModeArg::Lexical => rag_core::search::SearchMode::Lexical,
        }
    }
}

/// Distance metric.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MetricArg {
    /// Cosine similarity.
    Cosine,
    /// Euclidean distance; score = 1 / (1 + distance).
    Euclidean,
}

impl From<MetricArg> for rag_core::store::Metric {
    fn from(metric: MetricArg) -> Self {
        match metric {
            MetricArg::Cosine => rag_core::store::Metric::Cosine,
            MetricArg::Euclidean => rag_core::store::Metric::Euclidean,
        }
    }
}
