//! [`S3VectorsBackend`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_s3vectors::Client;
use aws_sdk_s3vectors::config::Region;
use aws_sdk_s3vectors::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3vectors::types::{DataType, DistanceMetric, MetadataConfiguration, PutInputVector, VectorData};
use futures::stream::{self, StreamExt, TryStreamExt};
use rag_core::{
    Error, Result,
    backend::{FileState, QueryRequest, UnreadableFile, VectorBackend, WriteBatch},
    store::{Chunk, Hit, Metric, StoreConfig, StoreInfo, validate_store_name},
};
use serde_json::Value;

use crate::convert::{NON_FILTERABLE_KEYS, chunk_from_metadata, document_to_json, json_to_document, record_metadata};
use crate::errors::{Context, Failure};
use crate::limits::{MAX_BATCH, MAX_DIMENSION, MAX_TOP_K, validate_bucket_name, validate_vector};
use crate::local_state::LocalState;
use crate::rate::RateLimiter;

const BACKEND: &str = "s3vectors";
const TAG_MODEL: &str = "rag:model";
const TAG_CHUNKING: &str = "rag:chunking";

/// Where the store lives and how hard to push the service.
#[derive(Debug, Clone)]
pub struct S3VectorsConfig {
    /// Vector bucket holding the stores (one index per store).
    pub bucket: String,
    /// AWS region; `None` takes it from the environment or profile.
    pub region: Option<String>,
    /// AWS profile; `None` uses the default chain.
    pub profile: Option<String>,
    /// Endpoint override, e.g. a local emulator (`AWS_ENDPOINT_URL_S3VECTORS` also works).
    pub endpoint_url: Option<String>,
    /// PutVectors/DeleteVectors requests in flight at once.
    pub write_concurrency: usize,
    /// Most vectors written and deleted per second by this client (the service allows 2,500 per
    /// index, shared by every writer); lowered for a while each time the service refuses a write
    /// for its rate. Zero is no client-side limit.
    pub max_vectors_per_second: f64,
    /// Estimated request size above which a PutVectors batch is cut (the service allows 20 MiB).
    pub max_request_bytes: usize,
    /// Parallel ListVectors segments when reading a store's state (1-16).
    pub list_segments: u32,
    /// Attempts per call in our retry loop (on top of the SDK's own).
    pub max_attempts: u32,
    /// First backoff delay of our retry loop; doubles, with jitter.
    pub initial_backoff: Duration,
    /// Attempts the SDK itself makes per call.
    pub sdk_attempts: u32,
    /// A folder on this machine for what S3 Vectors has no room for: the files
    /// of each store that could not be read, so they are not read again until
    /// they change. `None` keeps nothing: such files are read on every run.
    pub local_state_dir: Option<std::path::PathBuf>,
    /// How a writer's lease on a store is kept: one `rag index` writes a
    /// store at a time, the others wait.
    pub lease: crate::lease::LeaseOptions,
}

impl S3VectorsConfig {
    /// Defaults for a bucket.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            region: None,
            profile: None,
            endpoint_url: None,
            write_concurrency: 8,
            max_vectors_per_second: 2_400.0,
            max_request_bytes: 8 * 1024 * 1024,
            list_segments: 8,
            max_attempts: 6,
            initial_backoff: Duration::from_millis(200),
            sdk_attempts: 3,
            local_state_dir: None,
            lease: crate::lease::LeaseOptions::default(),
        }
    }
}

/// Stores as indexes of an S3 Vectors bucket.
#[derive(Debug)]
pub struct S3VectorsBackend {
    client: Client,
    config: S3VectorsConfig,
    region: String,
    endpoint: String,
    limiter: RateLimiter,
    configs: Mutex<HashMap<String, (StoreConfig, String)>>,
    /// Per store whose lease this client took: set once the lease is lost.
    leases_lost: Mutex<HashMap<String, Arc<std::sync::atomic::AtomicBool>>>,
}

impl S3VectorsBackend {
    /// Loads AWS configuration (environment, profile, SSO, IMDS) with the
    /// overrides of `config`, and makes a client.
    pub async fn connect(config: S3VectorsConfig) -> Result<Self> {
        validate_bucket_name(&config.bucket)?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(config.sdk_attempts.max(1)));
        if let Some(profile) = &config.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        let region = sdk.region().map(ToString::to_string).ok_or_else(|| {
            Error::InvalidInput(
                "no AWS region: pass --region, set AWS_REGION, or set a region in your AWS profile".into(),
            )
        })?;
        Ok(Self::from_client(Client::new(&sdk), config, region))
    }

    /// Wraps a client built elsewhere (tests, custom credentials).
    pub fn from_client(client: Client, config: S3VectorsConfig, region: String) -> Self {
        let endpoint = config.endpoint_url.clone().unwrap_or_else(|| format!("https://s3vectors.{region}.api.aws"));
        let limiter = RateLimiter::new(config.max_vectors_per_second);
        Self {
            client,
            config,
            region,
            endpoint,
            limiter,
            configs: Mutex::new(HashMap::new()),
            leases_lost: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket in use.
    pub fn bucket(&self) -> &str {
        &self.config.bucket
    }

    /// The region in use.
    pub fn region(&self) -> &str {
        &self.region
    }

    fn context<'a>(&'a self, op: &'static str, index: Option<&'a str>) -> Context<'a> {
        Context { op, bucket: &self.config.bucket, index, endpoint: &self.endpoint }
    }

    /// Runs a call with our retry loop; returns the last failure and the
    /// attempts made. `unavailable_attempts` caps retries of 503 (PutVectors
    /// splits its batch instead). A write of `writes` vectors (0 for a read)
    /// waits for the rate limiter before each attempt and tells it when the
    /// service refused it for its rate.
    async fn try_call<T, E, F, Fut>(
        &self,
        unavailable_attempts: u32,
        writes: usize,
        mut send: F,
    ) -> std::result::Result<T, (Failure, u32)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut delay = self.config.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if writes > 0 {
                self.limiter.acquire(writes).await;
            }
            match send().await {
                Ok(value) => return Ok(value),
                Err(err) => {
                    let failure = Failure::from_sdk(err);
                    if writes > 0 && failure.is_throttling() {
                        self.limiter.throttled().await;
                    }
                    let limit = if failure.is_unavailable() { unavailable_attempts } else { self.config.max_attempts };
                    if !failure.is_retryable() || attempt >= limit.max(1) {
                        return Err((failure, attempt));
                    }
                    let wait = jitter(delay);
                    tracing::debug!(attempt, code = ?failure.code, "S3 Vectors call failed; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(Duration::from_secs(20));
                }
            }
        }
    }

    async fn call<T, E, F, Fut>(&self, op: &'static str, index: Option<&str>, send: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.try_call(self.config.max_attempts, 0, send)
            .await
            .map_err(|(failure, attempts)| failure.into_error(&self.context(op, index), attempts))
    }

    /// The store's settings and index ARN, cached after the first read.
    /// Where this machine keeps the unreadable files of the bucket's stores, if anywhere.
    fn local_state(&self) -> Option<LocalState> {
        self.config.local_state_dir.clone().map(|dir| LocalState::new(dir, &self.config.bucket))
    }

    async fn settings(&self, store: &str) -> Result<(StoreConfig, String)> {
        if let Some(found) = self.configs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(store) {
            return Ok(found.clone());
        }
        let (config, arn, _) = self.describe(store).await?;
        Ok((config, arn))
    }

    /// GetIndex and the index's tags, fresh: the settings (remembered for
    /// [`settings`](Self::settings)), the ARN and the index itself.
    async fn describe(&self, store: &str) -> Result<(StoreConfig, String, aws_sdk_s3vectors::types::Index)> {
        validate_store_name(store)?;
        let bucket = &self.config.bucket;
        let output = self
            .call("GetIndex", Some(store), || {
                self.client.get_index().vector_bucket_name(bucket).index_name(store).send()
            })
            .await?;
        let index = output.index.ok_or_else(|| Error::Backend {
            backend: BACKEND.into(),
            message: format!("GetIndex returned no index for {store:?}"),
            source: None,
        })?;
        let arn = index.index_arn().to_string();
        let tags = self
            .call("ListTagsForResource", Some(store), || self.client.list_tags_for_resource().resource_arn(&arn).send())
            .await?;
        let model = tags.tags().get(TAG_MODEL).cloned().ok_or_else(|| {
            Error::InvalidInput(format!(
                "index {store:?} in bucket {bucket:?} has no {TAG_MODEL} tag: it was not created by rag, so its \
                 embedding model is unknown; index into another store name"
            ))
        })?;
        let metric = match index.distance_metric() {
            DistanceMetric::Euclidean => Metric::Euclidean,
            _ => Metric::Cosine,
        };
        let config = StoreConfig::new(store.to_string(), model, usize::try_from(index.dimension()).unwrap_or(0))
            .with_metric(metric)
            .with_chunking(tags.tags().get(TAG_CHUNKING).cloned().unwrap_or_default());
        self.configs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(store.to_string(), (config.clone(), arn.clone()));
        Ok((config, arn, index))
    }

    /// Every key of a store with its metadata (`with_metadata`), read with
    /// parallel ListVectors segments, every page.
    async fn list_all(&self, store: &str, with_metadata: bool) -> Result<Vec<(String, Value)>> {
        let segments = self.config.list_segments.clamp(1, 16);
        let bucket = &self.config.bucket;
        let parts: Vec<Vec<(String, Value)>> = stream::iter(0..segments)
            .map(|segment| async move {
                let mut out = Vec::new();
                let mut token: Option<String> = None;
                loop {
                    let page = self
                        .call("ListVectors", Some(store), || {
                            let mut request = self
                                .client
                                .list_vectors()
                                .vector_bucket_name(bucket)
                                .index_name(store)
                                .max_results(1000)
                                .return_metadata(with_metadata)
                                .return_data(false);
                            if segments > 1 {
                                request = request.segment_count(segments as i32).segment_index(segment as i32);
                            }
                            if let Some(token) = &token {
                                request = request.next_token(token);
                            }
                            request.send()
                        })
                        .await?;
                    for vector in page.vectors() {
                        let metadata = vector.metadata().map_or(Value::Null, document_to_json);
                        out.push((vector.key().to_string(), metadata));
                    }
                    match page.next_token() {
                        Some(next) if !next.is_empty() => token = Some(next.to_string()),
                        _ => return Ok::<_, Error>(out),
                    }
                }
            })
            .buffer_unordered(segments as usize)
            .try_collect()
            .await?;
        // An emulator without segment support answers every segment with everything.
        let mut seen = HashSet::new();
        Ok(parts.into_iter().flatten().filter(|(key, _)| seen.insert(key.clone())).collect())
    }

    /// Counts the vectors of a store with a parallel listing.
    pub async fn count_vectors(&self, store: &str) -> Result<u64> {
        Ok(self.list_all(store, false).await?.len() as u64)
    }

    fn put_batch<'a>(
        &'a self,
        store: &'a str,
        vectors: Vec<PutInputVector>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let bucket = &self.config.bucket;
            let sent = self
                .try_call(2, vectors.len(), || {
                    self.client
                        .put_vectors()
                        .vector_bucket_name(bucket)
                        .index_name(store)
                        .set_vectors(Some(vectors.clone()))
                        .customize()
                        .config_override(writes_retried_by_us())
                        .send()
                })
                .await;
            match sent {
                Ok(_) => Ok(()),
                // 503 on a write can mean the batch exceeds what the index takes now: halve it.
                Err((failure, _)) if failure.is_unavailable() && vectors.len() > 1 => {
                    let mut first = vectors;
                    let second = first.split_off(first.len() / 2);
                    tracing::debug!(size = first.len() + second.len(), "PutVectors kept failing with 503; splitting");
                    self.put_batch(store, first).await?;
                    self.put_batch(store, second).await
                }
                Err((failure, attempts)) => Err(failure.into_error(&self.context("PutVectors", Some(store)), attempts)),
            }
        })
    }
}

#[async_trait]
impl VectorBackend for S3VectorsBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn create_store(&self, config: &StoreConfig) -> Result<()> {
        validate_store_name(&config.name)?;
        if !(1..=MAX_DIMENSION).contains(&config.dimension) {
            return Err(Error::InvalidInput(format!(
                "dimension {} is out of S3 Vectors' range 1-{MAX_DIMENSION}",
                config.dimension
            )));
        }
        // Some emulators let CreateIndex overwrite an index; ask first, as the service would refuse.
        if self.store_exists(&config.name).await? {
            return Err(Error::StoreExists { store: config.name.clone(), backend: BACKEND.into() });
        }
        let bucket = &self.config.bucket;
        match self
            .try_call(self.config.max_attempts, 0, || {
                self.client.create_vector_bucket().vector_bucket_name(bucket).send()
            })
            .await
        {
            Ok(_) => tracing::info!("created vector bucket {bucket:?}"),
            Err((failure, _)) if failure.code.as_deref() == Some("ConflictException") => {}
            Err((failure, attempts)) => {
                return Err(failure.into_error(&self.context("CreateVectorBucket", None), attempts));
            }
        }
        let metadata = MetadataConfiguration::builder()
            .set_non_filterable_metadata_keys(Some(NON_FILTERABLE_KEYS.iter().map(|k| k.to_string()).collect()))
            .build()
            .map_err(|e| Error::InvalidInput(format!("metadata configuration: {e}")))?;
        let metric = match config.metric {
            Metric::Cosine => DistanceMetric::Cosine,
            Metric::Euclidean => DistanceMetric::Euclidean,
        };
        self.call("CreateIndex", Some(&config.name), || {
            self.client
                .create_index()
                .vector_bucket_name(bucket)
                .index_name(&config.name)
                .data_type(DataType::Float32)
                .dimension(config.dimension as i32)
                .distance_metric(metric.clone())
                .metadata_configuration(metadata.clone())
                .tags(TAG_MODEL, &config.model)
                .tags(TAG_CHUNKING, &config.chunking)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn delete_store(&self, store: &str) -> Result<()> {
        validate_store_name(store)?;
        let bucket = &self.config.bucket;
        self.call("DeleteIndex", Some(store), || {
            self.client.delete_index().vector_bucket_name(bucket).index_name(store).send()
        })
        .await?;
        self.configs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(store);
        if let Some(state) = self.local_state() {
            state.remove(store);
        }
        Ok(())
    }

    async fn list_stores(&self) -> Result<Vec<String>> {
        let bucket = &self.config.bucket;
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = match self
                .try_call(self.config.max_attempts, 0, || {
                    self.client.list_indexes().vector_bucket_name(bucket).set_next_token(token.clone()).send()
                })
                .await
            {
                Ok(page) => page,
                Err((failure, _)) if failure.code.as_deref() == Some("NotFoundException") => return Ok(Vec::new()),
                Err((failure, attempts)) => {
                    return Err(failure.into_error(&self.context("ListIndexes", None), attempts));
                }
            };
            names.extend(page.indexes().iter().map(|i| i.index_name().to_string()));
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
        names.retain(|n| validate_store_name(n).is_ok());
        names.sort();
        Ok(names)
    }

    async fn store_exists(&self, store: &str) -> Result<bool> {
        validate_store_name(store)?;
        let bucket = &self.config.bucket;
        match self
            .try_call(self.config.max_attempts, 0, || {
                self.client.get_index().vector_bucket_name(bucket).index_name(store).send()
            })
            .await
        {
            Ok(_) => Ok(true),
            Err((failure, _)) if failure.code.as_deref() == Some("NotFoundException") => Ok(false),
            Err((failure, attempts)) => Err(failure.into_error(&self.context("GetIndex", Some(store)), attempts)),
        }
    }

    /// Read fresh from the index (another machine may have re-chunked or
    /// deleted the store); the reads of this client's writes and queries
    /// reuse it, since dimension and metric never change.
    async fn store_config(&self, store: &str) -> Result<StoreConfig> {
        Ok(self.describe(store).await?.0)
    }

    async fn update_store_config(&self, config: &StoreConfig) -> Result<()> {
        let (current, arn) = self.settings(&config.name).await?;
        if current.dimension != config.dimension || current.metric != config.metric {
            return Err(Error::InvalidInput(format!(
                "store {:?}: dimension and metric are fixed at creation",
                config.name
            )));
        }
        self.call("TagResource", Some(&config.name), || {
            self.client
                .tag_resource()
                .resource_arn(&arn)
                .tags(TAG_MODEL, &config.model)
                .tags(TAG_CHUNKING, &config.chunking)
                .send()
        })
        .await?;
        self.configs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(config.name.clone(), (config.clone(), arn));
        Ok(())
    }

    async fn store_info(&self, store: &str) -> Result<StoreInfo> {
        let (config, arn, index) = self.describe(store).await?;
        let bucket = &self.config.bucket;
        let created = Some(index.creation_time().secs());
        let mut details = vec![
            ("bucket".to_string(), bucket.clone()),
            ("index".to_string(), store.to_string()),
            ("region".to_string(), self.region.clone()),
            ("arn".to_string(), arn),
        ];
        if let Some(mode) = index.index_mode() {
            details.push(("index mode".to_string(), mode.as_str().to_string()));
        }
        if let Some(url) = &self.config.endpoint_url {
            details.push(("endpoint".to_string(), url.clone()));
        }
        let mut info = StoreInfo::new(config, BACKEND);
        info.created_at = created;
        // Unreadable documents are remembered on this machine, not in the bucket.
        if let Some(state) = self.local_state() {
            info.unreadable_files = Some(state.unreadable(store).len() as u64);
            details.push(("unreadable files kept".to_string(), "on this machine".to_string()));
        }
        info.details = details;
        Ok(info)
    }

    fn write_batch_hint(&self) -> usize {
        MAX_BATCH * self.config.write_concurrency.max(1)
    }

    async fn file_states(&self, store: &str) -> Result<Vec<FileState>> {
        let mut by_file: BTreeMap<String, Vec<rag_core::store::Chunk>> = BTreeMap::new();
        for (key, metadata) in self.list_all(store, true).await? {
            let (chunk, _) = chunk_from_metadata(&key, &metadata);
            by_file.entry(chunk.source_path.clone()).or_default().push(chunk);
        }
        Ok(by_file
            .iter()
            .map(|(path, chunks)| {
                rag_core::backend::file_state(
                    path,
                    chunks.iter().map(|c| rag_core::backend::ChunkStamp {
                        key: &c.key,
                        content_hash: &c.content_hash,
                        total_chunks: c.total_chunks,
                    }),
                )
            })
            .collect())
    }

    async fn unreadable_files(&self, store: &str) -> Result<Vec<UnreadableFile>> {
        validate_store_name(store)?;
        Ok(self.local_state().map(|state| state.unreadable(store)).unwrap_or_default())
    }

    async fn remember_unreadable(
        &self,
        store: &str,
        unreadable: Vec<UnreadableFile>,
        forget: Vec<String>,
    ) -> Result<()> {
        validate_store_name(store)?;
        match self.local_state() {
            Some(state) => state.update(store, unreadable, &forget),
            None => Ok(()),
        }
    }

    async fn lock_for_writing(&self, store: &str) -> Result<rag_core::backend::WriteLock> {
        let (_, arn) = self.settings(store).await?;
        let site = crate::lease::LeaseSite { client: self.client.clone(), arn, store: store.to_string() };
        let held = site.acquire(self.config.lease).await?;
        self.leases_lost
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(store.to_string(), held.lost());
        Ok(rag_core::backend::WriteLock::releasing(held))
    }

    fn refuses(&self, chunk: &rag_core::store::Chunk) -> Option<String> {
        crate::convert::refusal(chunk)
    }

    async fn write(&self, store: &str, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let lost = self.leases_lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(store).cloned();
        if lost.is_some_and(|l| l.load(std::sync::atomic::Ordering::SeqCst)) {
            // Another writer took the store over: writing on would mix two runs.
            return Err(Error::StoreBusy { store: store.to_string() });
        }
        let (config, _) = self.settings(store).await?;
        let cosine = config.metric == Metric::Cosine;
        // Everything is checked before the first request.
        let mut vectors = Vec::with_capacity(batch.upserts.len());
        for record in &batch.upserts {
            let what = format!("chunk {} of {}", record.chunk.chunk_index, record.chunk.source_path);
            if record.chunk.key.is_empty() || record.chunk.key.len() > rag_core::store::MAX_KEY_LEN {
                return Err(Error::InvalidInput(format!("{what}: key length must be 1-1024")));
            }
            validate_vector(&record.vector, config.dimension, cosine, &what)?;
            let metadata = record_metadata(record)?;
            let size = record.vector.len() * 20 + metadata.to_string().len() + record.chunk.key.len() + 64;
            let vector = PutInputVector::builder()
                .key(&record.chunk.key)
                .data(VectorData::Float32(record.vector.clone()))
                .metadata(json_to_document(&metadata))
                .build()
                .map_err(|e| Error::InvalidInput(format!("{what}: {e}")))?;
            vectors.push((vector, size));
        }
        let mut batches: Vec<Vec<PutInputVector>> = Vec::new();
        let mut bytes = 0;
        for (vector, size) in vectors {
            let full =
                batches.last().is_none_or(|b| b.len() >= MAX_BATCH || bytes + size > self.config.max_request_bytes);
            if full {
                batches.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            if let Some(last) = batches.last_mut() {
                last.push(vector);
            }
        }
        let concurrency = self.config.write_concurrency.max(1);
        stream::iter(batches)
            .map(|b| self.put_batch(store, b))
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await?;

        let bucket = &self.config.bucket;
        stream::iter(batch.deletes.chunks(MAX_BATCH).map(<[String]>::to_vec))
            .map(|keys| async move {
                self.try_call(self.config.max_attempts, keys.len(), || {
                    self.client
                        .delete_vectors()
                        .vector_bucket_name(bucket)
                        .index_name(store)
                        .set_keys(Some(keys.clone()))
                        .customize()
                        .config_override(writes_retried_by_us())
                        .send()
                })
                .await
                .map(|_| ())
                .map_err(|(failure, attempts)| {
                    failure.into_error(&self.context("DeleteVectors", Some(store)), attempts)
                })
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn query(&self, store: &str, request: &QueryRequest) -> Result<Vec<Hit>> {
        let (config, _) = self.settings(store).await?;
        if !(1..=MAX_TOP_K).contains(&request.top_k) {
            return Err(Error::InvalidInput(format!("top-k must be 1-{MAX_TOP_K} on S3 Vectors")));
        }
        validate_vector(&request.vector, config.dimension, config.metric == Metric::Cosine, "the query")?;
        let bucket = &self.config.bucket;
        let filter = request.filter.as_ref().map(|f| json_to_document(f.as_json()));
        let mut hits = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call("QueryVectors", Some(store), || {
                    self.client
                        .query_vectors()
                        .vector_bucket_name(bucket)
                        .index_name(store)
                        .top_k(request.top_k as i32)
                        .query_vector(VectorData::Float32(request.vector.clone()))
                        .set_filter(filter.clone())
                        .return_metadata(true)
                        .return_distance(true)
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            let metric = match page.distance_metric() {
                Some(DistanceMetric::Euclidean) => Metric::Euclidean,
                Some(_) => Metric::Cosine,
                None => config.metric,
            };
            for vector in page.vectors() {
                let metadata = vector.metadata().map_or(Value::Null, document_to_json);
                let (chunk, indexed_at) = chunk_from_metadata(vector.key(), &metadata);
                let score = metric.score_from_distance(vector.distance().unwrap_or(f32::NAN));
                hits.push(Hit { score, chunk, indexed_at });
            }
            match page.next_token() {
                Some(next) if !next.is_empty() && hits.len() < request.top_k => token = Some(next.to_string()),
                _ => break,
            }
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.chunk.key.cmp(&b.chunk.key)));
        hits.truncate(request.top_k);
        Ok(hits)
    }

    /// GetVectors, 100 keys a call (the service's limit), metadata only.
    async fn get_chunks(&self, store: &str, keys: &[String]) -> Result<Vec<Chunk>> {
        self.settings(store).await?;
        let bucket = &self.config.bucket;
        let mut found: HashMap<String, Chunk> = HashMap::new();
        for batch in keys.chunks(GET_BATCH) {
            let page = self
                .call("GetVectors", Some(store), || {
                    self.client
                        .get_vectors()
                        .vector_bucket_name(bucket)
                        .index_name(store)
                        .set_keys(Some(batch.to_vec()))
                        .return_metadata(true)
                        .return_data(false)
                        .send()
                })
                .await?;
            for vector in page.vectors() {
                let metadata = vector.metadata().map_or(Value::Null, document_to_json);
                let (chunk, _) = chunk_from_metadata(vector.key(), &metadata);
                found.insert(vector.key().to_string(), chunk);
            }
        }
        Ok(keys.iter().filter_map(|key| found.remove(key)).collect())
    }
}

/// Most keys one GetVectors call takes.
const GET_BATCH: usize = 100;

/// Writes are retried by our loop alone, so every refusal for rate reaches
/// the rate limiter instead of being spent in the SDK's own retries.
fn writes_retried_by_us() -> aws_sdk_s3vectors::config::Builder {
    aws_sdk_s3vectors::config::Builder::default().retry_config(RetryConfig::disabled())
}

/// A delay between half and all of `max` ("equal jitter"), so clients that
/// were throttled together do not retry together.
fn jitter(max: Duration) -> Duration {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        ^ u64::from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos()));
    let mut x = seed | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let fraction = (x % 1000) as f64 / 1000.0;
    max.mul_f64(0.5 + fraction / 2.0)
}
