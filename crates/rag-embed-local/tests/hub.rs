//! `hf:ORG/NAME[@REVISION]` models against a loopback Hub that answers as
//! huggingface.co does (rag-testkit's `FakeHub`), through the real `hf-hub`
//! client.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use rag_core::embed::Embedder;
use rag_embed_local::{HubModel, HubOptions, LocalEmbedder};
use rag_testkit::FakeHub;

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert")
}

fn options(hub: &FakeHub, cache: &Path) -> HubOptions {
    HubOptions::new(hub.url(), cache.join("hub"))
}

fn load(name: &str, options: &HubOptions) -> Result<LocalEmbedder, String> {
    LocalEmbedder::load_named_with(name, options).map_err(|e| e.to_string())
}

fn tiny_files(skip: &[&str]) -> Vec<(String, Vec<u8>)> {
    [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ]
    .into_iter()
    .filter(|name| !skip.contains(name))
    .map(|name| (name.to_string(), std::fs::read(tiny().join(name)).unwrap()))
    .collect()
}

fn publish(hub: &FakeHub, repo: &str, files: &[(String, Vec<u8>)]) {
    let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    hub.add_repo(repo, &files);
}

#[tokio::test]
async fn a_hub_model_is_fetched_once_then_used_with_no_network() {
    let cache = tempfile::tempdir().unwrap();
    let hub = FakeHub::start();
    hub.add_folder("test-org/tiny-bert", &tiny());
    let options = options(&hub, cache.path());

    let fetched = load("hf:test-org/tiny-bert", &options).unwrap();
    assert!(fetched.model().starts_with("hf:test-org/tiny-bert#"), "{}", fetched.model());
    let requests = hub.requests();
    assert!(requests.iter().any(|r| r == "/test-org/tiny-bert/resolve/main/1_Pooling/config.json"), "{requests:?}");
    assert!(requests.iter().any(|r| r.starts_with("/cdn/")), "the weights come through the redirect: {requests:?}");
    // The Hub's cache layout, so the Hub's own tools share it.
    let snapshot =
        cache.path().join("hub/models--test-org--tiny-bert/snapshots").join(hub.commit("test-org/tiny-bert"));
    assert!(snapshot.join("model.safetensors").exists() && snapshot.join("1_Pooling/config.json").exists());

    // The same model as from its folder: same vectors, same fingerprint.
    let folder = LocalEmbedder::load(tiny()).unwrap();
    let text = "water the tomatoes in the summer heat";
    assert_eq!(fetched.embed_query(text).await.unwrap(), folder.embed_query(text).await.unwrap());
    assert_eq!(fetched.model().split_once('#').unwrap().1, folder.model().split_once('#').unwrap().1);

    // Offline: the Hub is gone, and the stored name (fingerprint included) loads from the cache.
    drop(hub);
    let again = load(fetched.model(), &options).unwrap();
    assert_eq!(again.model(), fetched.model());
    assert_eq!(again.embed_query(text).await.unwrap(), folder.embed_query(text).await.unwrap());
}

#[tokio::test]
async fn revisions_and_missing_optional_files() {
    let cache = tempfile::tempdir().unwrap();
    let hub = FakeHub::start();
    publish(&hub, "org/bare", &tiny_files(&["modules.json", "sentence_bert_config.json", "1_Pooling/config.json"]));
    let commit = hub.commit("org/bare");
    let options = options(&hub, cache.path());
    let bare = load(&format!("hf:org/bare@{commit}"), &options).unwrap();
    assert!(bare.model().starts_with(&format!("hf:org/bare@{commit}#")), "{}", bare.model());
    // No sentence-transformers files: mean pooling, no normalisation, the model's own window.
    assert_eq!((bare.pooling(), bare.max_tokens()), (rag_embed_local::Pooling::Mean, 64));
    let vector = bare.embed_query("bread").await.unwrap();
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() > 1e-3, "not normalised: {norm}");

    let err = load("hf:org/bare@v9", &options).unwrap_err();
    assert!(err.contains("has no config.json at revision \"v9\": check the revision"), "{err}");
}

#[test]
fn every_failure_is_one_line_that_says_what_to_do() {
    let cache = tempfile::tempdir().unwrap();
    let hub = FakeHub::start();
    publish(&hub, "org/no-weights", &tiny_files(&["model.safetensors"]));
    publish(&hub, "org/no-tokenizer", &tiny_files(&["tokenizer.json"]));
    publish(&hub, "org/gated", &tiny_files(&[]));
    hub.gate("org/gated", "secret");
    publish(&hub, "org/damaged", &tiny_files(&[]));
    hub.corrupt_weights("org/damaged", true);
    let options = options(&hub, cache.path());
    let cases = [
        ("hf:org/missing", "does not exist, or it is gated or private"),
        ("hf:org/no-weights", "has no model.safetensors: rag reads safetensors weights only"),
        ("hf:org/no-tokenizer", "has no tokenizer.json at revision \"main\""),
        ("hf:org/gated", "set HF_TOKEN"),
        ("hf:org/damaged", "does not match its SHA-256"),
        ("hf:org/a/b", "expected hf:ORG/NAME"),
    ];
    for (name, expected) in cases {
        let err = load(name, &options).unwrap_err();
        assert!(err.starts_with(name) && err.contains(expected) && !err.contains('\n'), "{name}: {err}");
    }

    // A token opens the gated model; the damaged download was removed and is fetched anew.
    let mut with_token = options.clone();
    with_token.token = Some("secret".into());
    load("hf:org/gated", &with_token).unwrap();
    hub.corrupt_weights("org/damaged", false);
    load("hf:org/damaged", &options).unwrap();

    // Offline with nothing cached, and a Hub that cannot be reached.
    let mut offline = options.clone();
    offline.offline = true;
    let err = load("hf:org/never-fetched", &offline).unwrap_err();
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let unreachable = HubOptions::new(format!("http://{closed}"), cache.path().join("other"));
    let err = load("hf:org/gated", &unreachable).unwrap_err();
    assert!(err.contains("cannot fetch") && err.contains("HF_ENDPOINT") && !err.contains('\n'), "{err}");
    assert!(HubModel::parse("hf:org/name").unwrap().cached(&cache.path().join("other")).is_none());
}

#[test]
fn names_a_hostile_hub_sends_cannot_reach_outside_the_cache() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let outside = root.path().join("planted");
    let hub = FakeHub::start();
    hub.add_folder("org/model", &tiny());
    let options = options(&hub, &cache);
    let absolute = outside.join("x").display().to_string();
    let cases = [
        (absolute.as_str(), "0123456789abcdef0123456789abcdef01234567"),
        ("../../../planted", "0123456789abcdef0123456789abcdef01234567"),
        ("0123456789abcdef0123456789abcdef01234567", absolute.as_str()),
        ("0123456789abcdef0123456789abcdef01234567", "../../../planted"),
    ];
    for (etag, commit) in cases {
        hub.forge_names("org/model", etag, commit);
        let err = load("hf:org/model", &options).unwrap_err();
        assert!(err.contains("is not a plain name; nothing was written") && !err.contains('\n'), "{err}");
        assert!(!outside.exists(), "{etag} / {commit} planted a file");
        // Nothing at all under the cache but folders.
        let files: Vec<_> = walk(&cache).into_iter().filter(|p| !p.is_dir()).collect();
        assert!(files.is_empty(), "{files:?}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().flat_map(|e| [vec![e.path()], walk(&e.path())]).flatten().collect()
}
