//! Which backend a store lives on (`--backend`, `--bucket`, or what the
//! data folder remembers), and opening it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use rag_backend_local::LocalBackend;
use rag_core::backend::VectorBackend;

use crate::cli::{BackendArgs, BackendKind};
use crate::records::{RemoteStore, RemoteStores};

/// Where a command's stores live, resolved from flags and records before
/// anything is opened: two stores at the same location share one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The local stores of the data folder.
    Local,
    /// An S3 Vectors bucket, as flags and records name it.
    S3(RemoteStore),
}

/// An opened backend.
#[derive(Clone)]
pub enum Backend {
    Local(Arc<LocalBackend>),
    #[cfg(feature = "s3vectors")]
    S3(Arc<rag_backend_s3vectors::S3VectorsBackend>, RemoteStore),
}

impl Backend {
    /// The backend as the trait the pipeline takes.
    pub fn as_dyn(&self) -> Arc<dyn VectorBackend> {
        match self {
            Backend::Local(local) => local.clone(),
            #[cfg(feature = "s3vectors")]
            Backend::S3(s3, _) => s3.clone(),
        }
    }

    /// The remote settings to remember for a store, if remote.
    pub fn remote(&self) -> Option<&RemoteStore> {
        match self {
            Backend::Local(_) => None,
            #[cfg(feature = "s3vectors")]
            Backend::S3(_, remote) => Some(remote),
        }
    }
}

/// Where the backend a command asks for is: `--backend`, else S3 Vectors
/// when `--bucket` is given or the store is remembered as remote, else local.
pub fn locate(data_dir: &Path, args: &BackendArgs, store: Option<&str>) -> Result<Location> {
    let remembered = match store {
        Some(store) => RemoteStores::load(data_dir)?.get(store).cloned(),
        None => None,
    };
    let kind = match args.backend {
        Some(kind) => kind,
        None if args.bucket.is_some() || remembered.is_some() => BackendKind::S3vectors,
        None => BackendKind::Local,
    };
    Ok(match kind {
        BackendKind::Local => Location::Local,
        BackendKind::S3vectors => Location::S3(remote_settings(args, remembered)?),
    })
}

/// The S3 Vectors settings: each flag, else what was remembered.
fn remote_settings(args: &BackendArgs, remembered: Option<RemoteStore>) -> Result<RemoteStore> {
    let pick =
        |flag: &Option<String>, saved: Option<&Option<String>>| flag.clone().or_else(|| saved.cloned().flatten());
    Ok(RemoteStore {
        backend: "s3vectors".into(),
        bucket: match (&args.bucket, &remembered) {
            (Some(bucket), _) => bucket.clone(),
            (None, Some(saved)) => saved.bucket.clone(),
            (None, None) => bail!("the s3vectors backend needs --bucket (or RAG_S3_BUCKET)"),
        },
        region: pick(&args.region, remembered.as_ref().map(|r| &r.region)),
        profile: pick(&args.profile, remembered.as_ref().map(|r| &r.profile)),
        endpoint_url: pick(&args.endpoint_url, remembered.as_ref().map(|r| &r.endpoint_url)),
    })
}

/// Opens the backend at `location`; a local one opens its stores on the
/// calling thread when `in_place` ([`LocalBackend::opening_stores_in_place`]).
pub async fn open(data_dir: &Path, location: &Location, in_place: bool) -> Result<Backend> {
    match location {
        Location::Local => {
            let local = LocalBackend::new(data_dir);
            Ok(Backend::Local(Arc::new(if in_place { local.opening_stores_in_place() } else { local })))
        }
        Location::S3(remote) => open_s3(data_dir, remote.clone()).await,
    }
}

#[cfg(feature = "s3vectors")]
async fn open_s3(data_dir: &Path, remote: RemoteStore) -> Result<Backend> {
    let config = rag_backend_s3vectors::S3VectorsConfig {
        region: remote.region.clone(),
        profile: remote.profile.clone(),
        endpoint_url: remote.endpoint_url.clone(),
        local_state_dir: Some(data_dir.join("s3vectors")),
        ..rag_backend_s3vectors::S3VectorsConfig::new(remote.bucket.clone())
    };
    let backend = rag_backend_s3vectors::S3VectorsBackend::connect(config).await?;
    let remote = RemoteStore { region: Some(backend.region().to_string()), ..remote };
    Ok(Backend::S3(Arc::new(backend), remote))
}

#[cfg(not(feature = "s3vectors"))]
async fn open_s3(_data_dir: &Path, _remote: RemoteStore) -> Result<Backend> {
    bail!("this rag was built without S3 Vectors support (cargo feature `s3vectors`)")
}
