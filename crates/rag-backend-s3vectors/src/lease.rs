//! One writer at a time on an S3 Vectors store: a lease recorded in the
//! index's own tags (`rag:writer` = `OWNER EXPIRES`), taken when free or
//! lapsed, renewed while the run lasts, given back at its end.
//!
//! S3 Vectors has no conditional write, so taking the lease is
//! write-then-confirm: a writer tags the index, waits [`settle`](LeaseOptions::settle)
//! and reads the tag back; of two writers that tag at once, the one whose tag
//! stands goes on and the other waits. Each writer reads the tag before it
//! writes its own, so the settle time only needs to exceed one round trip.
//! A writer whose lease was taken over (it stalled past the expiry) finds out
//! at its next renewal and stops writing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_s3vectors::Client;
use rag_core::backend::{ReleaseLock, async_trait};
use rag_core::store::now_unix;
use rag_core::{Error, Result};

/// The tag holding the lease.
pub(crate) const TAG_LEASE: &str = "rag:writer";

/// How the lease is kept.
#[derive(Debug, Clone, Copy)]
pub struct LeaseOptions {
    /// How long a lease lasts unless renewed (renewed every third of it).
    pub ttl: Duration,
    /// How long a writer waits after tagging before it reads the tag back.
    pub settle: Duration,
    /// Longest a writer waits for another's lease before giving up with
    /// [`Error::StoreBusy`].
    pub max_wait: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(60), settle: Duration::from_secs(1), max_wait: Duration::from_secs(30 * 60) }
    }
}

/// A lease as the tag records it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recorded {
    owner: String,
    expires: i64,
}

impl Recorded {
    fn parse(value: &str) -> Option<Self> {
        let (owner, expires) = value.rsplit_once(' ')?;
        Some(Self { owner: owner.to_string(), expires: expires.parse().ok()? })
    }

    fn tag(&self) -> String {
        format!("{} {}", self.owner, self.expires)
    }
}

/// A name for this writer, unique across machines and runs, in the
/// characters tag values allow.
fn owner_name() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "host".into());
    let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')).take(64).collect();
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{host}:{}:{nonce:08x}", std::process::id())
}

/// Where the lease lives.
#[derive(Clone)]
pub(crate) struct LeaseSite {
    pub(crate) client: Client,
    pub(crate) arn: String,
    pub(crate) store: String,
}

impl LeaseSite {
    async fn read(&self) -> Result<Option<Recorded>> {
        let tags = self
            .client
            .list_tags_for_resource()
            .resource_arn(&self.arn)
            .send()
            .await
            .map_err(|e| self.failed("read", &e.into_service_error().to_string()))?;
        Ok(tags.tags().get(TAG_LEASE).and_then(|v| Recorded::parse(v)))
    }

    async fn write(&self, lease: &Recorded) -> Result<()> {
        self.client
            .tag_resource()
            .resource_arn(&self.arn)
            .tags(TAG_LEASE, lease.tag())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.failed("record", &e.into_service_error().to_string()))
    }

    fn failed(&self, what: &str, why: &str) -> Error {
        Error::Backend {
            backend: "s3vectors".into(),
            message: format!("cannot {what} the write lease of store {:?}: {why}", self.store),
            source: None,
        }
    }

    /// Takes the lease, waiting while another writer holds it.
    pub(crate) async fn acquire(self, options: LeaseOptions) -> Result<HeldLease> {
        let owner = owner_name();
        let ttl = i64::try_from(options.ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        let started = std::time::Instant::now();
        let mut said = false;
        loop {
            match self.read().await? {
                Some(other) if other.owner != owner && other.expires > now_unix() => {
                    if started.elapsed() >= options.max_wait {
                        return Err(Error::StoreBusy { store: self.store.clone() });
                    }
                    if !said {
                        tracing::warn!(
                            "store {:?} is being written by {}; waiting for its run to end (its lease lapses in {} s)",
                            self.store,
                            other.owner,
                            other.expires - now_unix()
                        );
                        said = true;
                    }
                    tokio::time::sleep(options.settle.max(Duration::from_millis(200))).await;
                }
                _ => {
                    self.write(&Recorded { owner: owner.clone(), expires: now_unix() + ttl }).await?;
                    tokio::time::sleep(options.settle).await;
                    if self.read().await?.is_some_and(|l| l.owner == owner) {
                        break;
                    }
                }
            }
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn(renew(self.clone(), owner.clone(), ttl, lost.clone()));
        Ok(HeldLease { site: self, owner, lost, renewer })
    }
}

/// Renews the lease every third of its life; marks it lost when another
/// writer's tag stands in its place.
async fn renew(site: LeaseSite, owner: String, ttl: i64, lost: Arc<AtomicBool>) {
    let every = Duration::from_secs(u64::try_from(ttl / 3).unwrap_or(1).max(1));
    loop {
        tokio::time::sleep(every).await;
        match site.read().await {
            Ok(Some(current)) if current.owner != owner => {
                tracing::error!("store {:?}: the write lease was taken over by {}", site.store, current.owner);
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // A failed read or renewal is tried again; the lease lasts three periods.
            Ok(_) => {
                let _ = site.write(&Recorded { owner: owner.clone(), expires: now_unix() + ttl }).await;
            }
            Err(err) => tracing::warn!("{err}"),
        }
    }
}

/// The lease, held: renewed in the background until released.
pub(crate) struct HeldLease {
    site: LeaseSite,
    owner: String,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl HeldLease {
    /// The flag a writer checks before each write.
    pub(crate) fn lost(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

#[async_trait]
impl ReleaseLock for HeldLease {
    async fn release(self: Box<Self>) {
        self.renewer.abort();
        // Given back only if still ours; a lapsed lease may be another's now.
        if let Ok(Some(current)) = self.site.read().await
            && current.owner == self.owner
        {
            let removed =
                self.site.client.untag_resource().resource_arn(&self.site.arn).tag_keys(TAG_LEASE).send().await;
            if let Err(err) = removed {
                tracing::warn!(
                    "store {:?}: cannot give the write lease back ({}); it lapses on its own",
                    self.site.store,
                    err.into_service_error()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_read_back_as_written() {
        let lease = Recorded { owner: "box-1.local:42:00ff00ff".into(), expires: 1_800_000_000 };
        assert_eq!(Recorded::parse(&lease.tag()), Some(lease));
        assert_eq!(Recorded::parse("garbage"), None);
        let owner = owner_name();
        assert!(owner.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':')), "{owner}");
    }
}
