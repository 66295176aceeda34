//! [`FakeS3Vectors`]: an S3 Vectors stand-in on loopback.
//!
//! restJson1 as the service speaks it: `POST /<Operation>` with a JSON body,
//! tags at `/tags/{arn}`, errors as a status with `x-amzn-errortype` and
//! `{"message": ...}`. It keeps buckets, indexes, vectors and tags in memory,
//! searches exactly (cosine distance `1 - cos`, euclidean distance), pages
//! QueryVectors (100 a page) and ListVectors (`maxResults`, `nextToken`,
//! `segmentCount`/`segmentIndex`), evaluates filters, checks the limits the
//! service checks, and can be told to be slow or to answer 429/503.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

use crate::LoopbackServer;

#[derive(Debug, Default)]
struct Index {
    arn: String,
    dimension: usize,
    metric: String,
    non_filterable: Vec<String>,
    created: f64,
    vectors: BTreeMap<String, (Vec<f32>, Value)>,
}

#[derive(Debug, Default)]
struct Shared {
    buckets: BTreeMap<String, BTreeMap<String, Index>>,
    tags: HashMap<String, BTreeMap<String, String>>,
    latency: Duration,
    failures: VecDeque<(String, u16, String)>,
    calls: HashMap<String, usize>,
    requests: Vec<(String, Value)>,
    query_page: usize,
    /// Per-index write limits (vectors, requests per second), when enforced.
    write_limits: Option<(usize, usize)>,
    /// Writes of the last second per index: when, and how many vectors.
    recent_writes: HashMap<String, VecDeque<(std::time::Instant, usize)>>,
}

/// An S3 Vectors stand-in on `127.0.0.1`, running on its own thread until dropped.
pub struct FakeS3Vectors {
    server: LoopbackServer,
    shared: Arc<Mutex<Shared>>,
}

impl FakeS3Vectors {
    /// Starts an empty service.
    pub fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared { query_page: 100, ..Shared::default() }));
        let app = Router::new()
            .route("/tags/{*arn}", any(tags))
            .route("/{operation}", any(operation))
            // The service's request payload limit.
            .layer(axum::extract::DefaultBodyLimit::max(20 * 1024 * 1024))
            .with_state(Arc::clone(&shared));
        Self { server: LoopbackServer::start(app, 2), shared }
    }

    /// Endpoint URL, e.g. `http://127.0.0.1:43123`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// How many times an operation was called (failed calls included).
    pub fn calls(&self, operation: &str) -> usize {
        self.shared.lock().unwrap().calls.get(operation).copied().unwrap_or(0)
    }

    /// Zeroes the call counts and forgets recorded requests.
    pub fn reset_calls(&self) {
        let mut shared = self.shared.lock().unwrap();
        shared.calls.clear();
        shared.requests.clear();
    }

    /// The JSON bodies received for an operation, oldest first.
    pub fn requests(&self, operation: &str) -> Vec<Value> {
        self.shared.lock().unwrap().requests.iter().filter(|(op, _)| op == operation).map(|(_, b)| b.clone()).collect()
    }

    /// Delays every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().unwrap().latency = latency;
    }

    /// Results per QueryVectors page.
    pub fn set_query_page(&self, size: usize) {
        self.shared.lock().unwrap().query_page = size.max(1);
    }

    /// The next `count` calls of `operation` fail with `status` and error type `code`.
    pub fn fail_next(&self, operation: &str, count: usize, status: u16, code: &str) {
        let mut shared = self.shared.lock().unwrap();
        for _ in 0..count {
            shared.failures.push_back((operation.to_string(), status, code.to_string()));
        }
    }

    /// Enforces the service's write limits per index, shared by every writer:
    /// a PutVectors or DeleteVectors that would pass `vectors_per_second`
    /// vectors or `requests_per_second` requests in the last second gets 429
    /// `TooManyRequestsException`, as S3 Vectors answers (2,500 and 1,000).
    pub fn enforce_write_limits(&self, vectors_per_second: usize, requests_per_second: usize) {
        self.shared.lock().unwrap().write_limits = Some((vectors_per_second, requests_per_second));
    }

    /// Writes refused for passing the write limits so far.
    pub fn throttled(&self) -> usize {
        self.calls("throttled")
    }

    /// Every vector's key and metadata in an index, sorted by key.
    pub fn records(&self, bucket: &str, index: &str) -> Vec<(String, Value)> {
        let shared = self.shared.lock().unwrap();
        shared
            .buckets
            .get(bucket)
            .and_then(|b| b.get(index))
            .map(|i| i.vectors.iter().map(|(key, (_, metadata))| (key.clone(), metadata.clone())).collect())
            .unwrap_or_default()
    }

    /// Number of vectors in an index.
    pub fn vector_count(&self, bucket: &str, index: &str) -> usize {
        let shared = self.shared.lock().unwrap();
        shared.buckets.get(bucket).and_then(|b| b.get(index)).map_or(0, |i| i.vectors.len())
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [("x-amzn-errortype", code), ("content-type", "application/json")],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

fn validation(message: &str) -> Response {
    error(400, "ValidationException", message)
}

fn not_found(message: &str) -> Response {
    error(404, "NotFoundException", message)
}

async fn before(shared: &Arc<Mutex<Shared>>, operation: &str, body: &Value) -> Option<Response> {
    let latency = {
        let mut shared = shared.lock().unwrap();
        *shared.calls.entry(operation.to_string()).or_default() += 1;
        shared.requests.push((operation.to_string(), body.clone()));
        shared.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut shared = shared.lock().unwrap();
    let position = shared.failures.iter().position(|(op, _, _)| op == operation)?;
    let (_, status, code) = shared.failures.remove(position)?;
    Some(error(status, &code, "injected failure"))
}

async fn operation(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(operation): Path<String>,
    method: Method,
    body: String,
) -> Response {
    if method != Method::POST {
        return error(405, "ValidationException", "use POST");
    }
    let body: Value = if body.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str(&body) {
            Ok(value) => value,
            Err(err) => return validation(&format!("malformed JSON: {err}")),
        }
    };
    if let Some(response) = before(&shared, &operation, &body).await {
        return response;
    }
    let mut shared = shared.lock().unwrap();
    let bucket = body["vectorBucketName"].as_str().unwrap_or_default().to_string();
    let index_name = body["indexName"].as_str().unwrap_or_default().to_string();
    if let (Some((vectors_limit, requests_limit)), "PutVectors" | "DeleteVectors") =
        (shared.write_limits, operation.as_str())
    {
        let count = body["vectors"].as_array().or(body["keys"].as_array()).map_or(0, Vec::len);
        let now = std::time::Instant::now();
        let window = shared.recent_writes.entry(format!("{bucket}/{index_name}")).or_default();
        while window.front().is_some_and(|(at, _)| now.duration_since(*at) >= Duration::from_secs(1)) {
            window.pop_front();
        }
        let vectors: usize = window.iter().map(|(_, n)| n).sum();
        if vectors + count > vectors_limit || window.len() + 1 > requests_limit {
            *shared.calls.entry("throttled".into()).or_default() += 1;
            return error(429, "TooManyRequestsException", "write rate of the index exceeded");
        }
        window.push_back((now, count));
    }
    match operation.as_str() {
        "CreateVectorBucket" => {
            if shared.buckets.contains_key(&bucket) {
                return error(409, "ConflictException", "the vector bucket already exists");
            }
            shared.buckets.insert(bucket, BTreeMap::new());
            ok(json!({}))
        }
        "CreateIndex" => {
            let Some(indexes) = shared.buckets.get_mut(&bucket) else { return not_found("vector bucket not found") };
            if indexes.contains_key(&index_name) {
                return error(409, "ConflictException", "the index already exists");
            }
            let dimension = body["dimension"].as_u64().unwrap_or(0) as usize;
            if !(1..=4096).contains(&dimension) {
                return validation("dimension must be between 1 and 4096");
            }
            let metric = body["distanceMetric"].as_str().unwrap_or_default().to_string();
            if metric != "cosine" && metric != "euclidean" {
                return validation("distanceMetric must be cosine or euclidean");
            }
            let non_filterable: Vec<String> = body["metadataConfiguration"]["nonFilterableMetadataKeys"]
                .as_array()
                .map(|keys| keys.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let arn = format!("arn:aws:s3vectors:us-east-1:123456789012:bucket/{bucket}/index/{index_name}");
            let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as f64;
            indexes.insert(
                index_name,
                Index { arn: arn.clone(), dimension, metric, non_filterable, created, vectors: BTreeMap::new() },
            );
            let tags: BTreeMap<String, String> = body["tags"]
                .as_object()
                .map(|t| t.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                .unwrap_or_default();
            shared.tags.insert(arn.clone(), tags);
            ok(json!({ "indexArn": arn }))
        }
        "GetIndex" => match find_index(&shared, &bucket, &index_name) {
            Err(response) => response,
            Ok(index) => ok(json!({ "index": {
                "vectorBucketName": bucket,
                "indexName": index_name,
                "indexArn": index.arn,
                "creationTime": index.created,
                "dataType": "float32",
                "dimension": index.dimension,
                "distanceMetric": index.metric,
                "metadataConfiguration": { "nonFilterableMetadataKeys": index.non_filterable },
            }})),
        },
        "ListIndexes" => {
            let Some(indexes) = shared.buckets.get(&bucket) else { return not_found("vector bucket not found") };
            let max = body["maxResults"].as_u64().unwrap_or(500) as usize;
            let start: usize = body["nextToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
            let all: Vec<Value> = indexes
                .iter()
                .map(|(name, index)| {
                    json!({ "vectorBucketName": bucket, "indexName": name, "indexArn": index.arn, "creationTime": index.created })
                })
                .collect();
            let page: Vec<Value> = all.iter().skip(start).take(max).cloned().collect();
            let mut out = json!({ "indexes": page });
            if start + max < all.len() {
                out["nextToken"] = json!((start + max).to_string());
            }
            ok(out)
        }
        "DeleteIndex" => {
            let Some(indexes) = shared.buckets.get_mut(&bucket) else { return not_found("vector bucket not found") };
            match indexes.remove(&index_name) {
                Some(index) => {
                    shared.tags.remove(&index.arn);
                    ok(json!({}))
                }
                None => not_found("index not found"),
            }
        }
        "PutVectors" => put_vectors(&mut shared, &bucket, &index_name, &body),
        "GetVectors" => {
            let index = match find_index(&shared, &bucket, &index_name) {
                Ok(index) => index,
                Err(response) => return response,
            };
            let keys = body["keys"].as_array().cloned().unwrap_or_default();
            if keys.is_empty() || keys.len() > 100 {
                return validation("keys must hold 1 to 100 keys");
            }
            let vectors: Vec<Value> = keys
                .iter()
                .filter_map(|k| k.as_str())
                .filter_map(|key| index.vectors.get(key).map(|v| output_vector(key, v, &body)))
                .collect();
            ok(json!({ "vectors": vectors }))
        }
        "ListVectors" => list_vectors(&shared, &bucket, &index_name, &body),
        "DeleteVectors" => {
            let Some(index) = shared.buckets.get_mut(&bucket).and_then(|b| b.get_mut(&index_name)) else {
                return not_found("index not found");
            };
            let keys = body["keys"].as_array().cloned().unwrap_or_default();
            if keys.is_empty() || keys.len() > 500 {
                return validation("keys must hold 1 to 500 keys");
            }
            for key in keys.iter().filter_map(|k| k.as_str()) {
                index.vectors.remove(key);
            }
            ok(json!({}))
        }
        "QueryVectors" => query_vectors(&shared, &bucket, &index_name, &body),
        other => error(400, "UnknownOperationException", &format!("unknown operation {other}")),
    }
}

#[allow(clippy::result_large_err)]
fn find_index<'a>(shared: &'a Shared, bucket: &str, index: &str) -> Result<&'a Index, Response> {
    let indexes = shared.buckets.get(bucket).ok_or_else(|| not_found("vector bucket not found"))?;
    indexes.get(index).ok_or_else(|| not_found("index not found"))
}

fn output_vector(key: &str, (data, metadata): &(Vec<f32>, Value), body: &Value) -> Value {
    let mut out = json!({ "key": key });
    if body["returnData"].as_bool() == Some(true) {
        out["data"] = json!({ "float32": data });
    }
    if body["returnMetadata"].as_bool() == Some(true) {
        out["metadata"] = metadata.clone();
    }
    out
}

fn put_vectors(shared: &mut Shared, bucket: &str, index_name: &str, body: &Value) -> Response {
    let Some(index) = shared.buckets.get_mut(bucket).and_then(|b| b.get_mut(index_name)) else {
        return not_found("index not found");
    };
    let vectors = body["vectors"].as_array().cloned().unwrap_or_default();
    if vectors.is_empty() || vectors.len() > 500 {
        return validation("vectors must hold 1 to 500 vectors");
    }
    let mut accepted = Vec::with_capacity(vectors.len());
    for vector in &vectors {
        let key = vector["key"].as_str().unwrap_or_default();
        if key.is_empty() || key.len() > 1024 {
            return validation("key length must be 1 to 1024");
        }
        let data: Vec<f32> = vector["data"]["float32"]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN) as f32).collect())
            .unwrap_or_default();
        if data.len() != index.dimension {
            return validation(&format!("vector {key} has dimension {}, the index {}", data.len(), index.dimension));
        }
        if data.iter().any(|x| !x.is_finite()) || (index.metric == "cosine" && data.iter().all(|x| *x == 0.0)) {
            return validation(&format!("vector {key} has invalid values"));
        }
        let metadata = vector.get("metadata").cloned().unwrap_or(json!({}));
        if metadata.to_string().len() > 40 * 1024 {
            return validation("metadata exceeds 40 KB");
        }
        if let Some(map) = metadata.as_object() {
            let filterable: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(k, _)| !index.non_filterable.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if Value::Object(filterable).to_string().len() > 2048 {
                return validation("filterable metadata exceeds 2 KB");
            }
        }
        accepted.push((key.to_string(), data, metadata));
    }
    for (key, data, metadata) in accepted {
        index.vectors.insert(key, (data, metadata));
    }
    ok(json!({}))
}

fn list_vectors(shared: &Shared, bucket: &str, index_name: &str, body: &Value) -> Response {
    let index = match find_index(shared, bucket, index_name) {
        Ok(index) => index,
        Err(response) => return response,
    };
    let max = body["maxResults"].as_u64().unwrap_or(500) as usize;
    if !(1..=1000).contains(&max) {
        return validation("maxResults must be 1 to 1000");
    }
    let segments = body["segmentCount"].as_u64().unwrap_or(1) as usize;
    let segment = body["segmentIndex"].as_u64().unwrap_or(0) as usize;
    if !(1..=16).contains(&segments) || segment >= segments {
        return validation("segmentCount must be 1 to 16 and segmentIndex below it");
    }
    let start: usize = body["nextToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
    let mine: Vec<(&String, &(Vec<f32>, Value))> =
        index.vectors.iter().enumerate().filter(|(i, _)| i % segments == segment).map(|(_, kv)| kv).collect();
    let page: Vec<Value> = mine.iter().skip(start).take(max).map(|(k, v)| output_vector(k, v, body)).collect();
    let mut out = json!({ "vectors": page });
    if start + max < mine.len() {
        out["nextToken"] = json!((start + max).to_string());
    }
    ok(out)
}

fn query_vectors(shared: &Shared, bucket: &str, index_name: &str, body: &Value) -> Response {
    let index = match find_index(shared, bucket, index_name) {
        Ok(index) => index,
        Err(response) => return response,
    };
    let Some(top_k) = body["topK"].as_u64().map(|k| k as usize) else { return validation("topK is required") };
    if !(1..=10_000).contains(&top_k) {
        return validation("topK must be 1 to 10000");
    }
    let query: Vec<f32> = body["queryVector"]["float32"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN) as f32).collect())
        .unwrap_or_default();
    if query.len() != index.dimension {
        return validation(&format!("query vector has dimension {}, the index {}", query.len(), index.dimension));
    }
    let filter = match body.get("filter") {
        None | Some(Value::Null) => None,
        Some(filter) => {
            if let Some(key) = filter_keys(filter).into_iter().find(|k| index.non_filterable.contains(k)) {
                return validation(&format!("cannot filter on non-filterable metadata key {key}"));
            }
            match rag_core::filter::Filter::parse(filter.clone()) {
                Ok(filter) => Some(filter),
                Err(err) => return validation(&format!("invalid filter: {err}")),
            }
        }
    };
    let mut scored: Vec<(f32, &String, &Value)> = index
        .vectors
        .iter()
        .filter(|(_, (_, metadata))| filter.as_ref().is_none_or(|f| metadata.as_object().is_some_and(|m| f.matches(m))))
        .map(|(key, (data, metadata))| (distance(&index.metric, &query, data), key, metadata))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    scored.truncate(top_k);
    let start: usize = body["nextToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
    let page_size = shared.query_page;
    let page: Vec<Value> = scored
        .iter()
        .skip(start)
        .take(page_size)
        .map(|(d, key, metadata)| {
            let mut out = json!({ "key": key });
            if body["returnDistance"].as_bool() == Some(true) {
                out["distance"] = json!(d);
            }
            if body["returnMetadata"].as_bool() == Some(true) {
                out["metadata"] = (*metadata).clone();
            }
            out
        })
        .collect();
    let mut out = json!({ "vectors": page, "distanceMetric": index.metric });
    if start + page_size < scored.len() {
        out["nextToken"] = json!((start + page_size).to_string());
    }
    ok(out)
}

fn filter_keys(filter: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(map) = filter.as_object() {
        for (key, value) in map {
            if key == "$and" || key == "$or" {
                for item in value.as_array().into_iter().flatten() {
                    keys.extend(filter_keys(item));
                }
            } else {
                keys.push(key.clone());
            }
        }
    }
    keys
}

fn distance(metric: &str, a: &[f32], b: &[f32]) -> f32 {
    if metric == "euclidean" {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
    } else {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norms = a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt();
        1.0 - dot / norms
    }
}

async fn tags(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(arn): Path<String>,
    method: Method,
    uri: Uri,
    _headers: HeaderMap,
    body: String,
) -> Response {
    let operation = match method {
        Method::GET => "ListTagsForResource",
        Method::POST => "TagResource",
        Method::DELETE => "UntagResource",
        _ => return error(405, "ValidationException", "unsupported method"),
    };
    let body: Value = serde_json::from_str(&body).unwrap_or(json!({}));
    if let Some(response) = before(&shared, operation, &body).await {
        return response;
    }
    let mut shared = shared.lock().unwrap();
    let Some(tags) = shared.tags.get_mut(&arn) else { return not_found("resource not found") };
    match method {
        Method::GET => ok(json!({ "tags": tags })),
        Method::POST => {
            for (key, value) in body["tags"].as_object().into_iter().flatten() {
                tags.insert(key.clone(), value.as_str().unwrap_or_default().to_string());
            }
            ok(json!({}))
        }
        _ => {
            let query = uri.query().unwrap_or_default();
            for pair in query.split('&') {
                if let Some(key) = pair.strip_prefix("tagKeys=") {
                    tags.remove(&key.replace("%3A", ":"));
                }
            }
            ok(json!({}))
        }
    }
}
