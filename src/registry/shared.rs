//! Registrations shared by replicas through Redis. The manifest (sets and
//! versions, without bytes) and content-addressed blobs live under a key
//! prefix; a write is a compare-and-set of the whole manifest in one Lua
//! script, so two replicas never overwrite each other's acknowledged
//! registrations; every write is announced on a pub/sub channel.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::sets::{RegisteredSet, Sets, digest};

/// Writes `next` only if the manifest still equals `base` (or is absent and
/// `base` is empty): KEYS[1] manifest, KEYS[2..] new blobs; ARGV[1] base,
/// ARGV[2] next, ARGV[3..] blob bytes then blob keys to delete.
const COMPARE_AND_SET: &str = r#"
local current = redis.call('GET', KEYS[1])
if current == false then current = '' end
if current ~= ARGV[1] then return 0 end
local blobs = #KEYS - 1
for i = 1, blobs do redis.call('SET', KEYS[i + 1], ARGV[i + 2]) end
for i = blobs + 3, #ARGV do redis.call('DEL', ARGV[i]) end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"#;

#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    connection: ConnectionManager,
    prefix: String,
    compare_and_set: Arc<redis::Script>,
}

/// Whether a compare-and-set write landed.
#[derive(Debug, PartialEq, Eq)]
pub enum Saved {
    Yes,
    /// Another replica changed the registry first; reload and retry.
    Conflict,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish()
    }
}

impl RedisStore {
    /// Connects (the connection manager reconnects by itself later).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("{url}: {e}"))?;
        // Redis's 500 ms default is too tight for a busy machine storing a
        // large set; a dead server still fails fast on connect.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let connection = client.get_connection_manager_with_config(config).await.map_err(|e| format!("{url}: {e}"))?;
        Ok(Self {
            client,
            connection,
            prefix: prefix.to_string(),
            compare_and_set: Arc::new(redis::Script::new(COMPARE_AND_SET)),
        })
    }

    fn manifest_key(&self) -> String {
        format!("{}manifest", self.prefix)
    }

    fn blob_key(&self, digest: &str) -> String {
        format!("{}blob:{digest}", self.prefix)
    }

    pub fn channel(&self) -> String {
        format!("{}changes", self.prefix)
    }

    /// The shared sets, blobs included and checked against their digests.
    pub async fn load(&self) -> Result<Sets, String> {
        let mut connection = self.connection.clone();
        let manifest: Option<String> = connection.get(self.manifest_key()).await.map_err(|e| e.to_string())?;
        let Some(manifest) = manifest.filter(|m| !m.is_empty()) else {
            return Ok(Sets::new());
        };
        let sets: Vec<RegisteredSet> = serde_json::from_str(&manifest).map_err(|e| format!("shared manifest: {e}"))?;
        let mut loaded = Sets::new();
        for mut set in sets {
            for version in &mut set.versions {
                let key = self.blob_key(&version.digest);
                let bytes: Option<Vec<u8>> = connection.get(&key).await.map_err(|e| e.to_string())?;
                let bytes = bytes.ok_or_else(|| format!("shared blob {key} is missing"))?;
                if digest(&bytes) != version.digest {
                    return Err(format!("shared blob {key} does not match its digest"));
                }
                version.bytes = Arc::new(bytes);
            }
            loaded.insert(set.name.clone(), set);
        }
        Ok(loaded)
    }

    /// Writes `next` if the shared manifest is still `base`, then announces it.
    pub async fn save(&self, base: &Sets, next: &Sets) -> Result<Saved, String> {
        let base_json = manifest_json(base)?;
        let next_json = manifest_json(next)?;
        let digests = |sets: &Sets| -> Vec<String> {
            sets.values().filter(|s| !s.from_file).flat_map(|s| s.versions.iter().map(|v| v.digest.clone())).collect()
        };
        let (old, new) = (digests(base), digests(next));
        let added: Vec<&RegisteredSet> = next.values().filter(|s| !s.from_file).collect();
        let mut script = self.compare_and_set.prepare_invoke();
        script.key(self.manifest_key());
        let mut blobs = Vec::new();
        for version in added.iter().flat_map(|s| &s.versions).filter(|v| !old.contains(&v.digest)) {
            if !blobs.contains(&version.digest) {
                script.key(self.blob_key(&version.digest));
                blobs.push(version.digest.clone());
            }
        }
        script.arg(base_json).arg(next_json);
        for digest in &blobs {
            let bytes = added
                .iter()
                .flat_map(|s| &s.versions)
                .find(|v| v.digest == *digest)
                .map(|v| v.bytes.as_slice())
                .unwrap_or_default();
            script.arg(bytes);
        }
        for gone in old.iter().filter(|d| !new.contains(d)) {
            script.arg(self.blob_key(gone));
        }
        let mut connection = self.connection.clone();
        let landed: i64 = script.invoke_async(&mut connection).await.map_err(|e| e.to_string())?;
        if landed == 0 {
            return Ok(Saved::Conflict);
        }
        let _: i64 = connection.publish(self.channel(), "changed").await.map_err(|e| e.to_string())?;
        Ok(Saved::Yes)
    }

    /// A stream that yields whenever a replica announces a change; it ends
    /// when the connection drops.
    pub async fn subscribe(&self) -> Result<impl futures_util::Stream<Item = ()> + Send + use<>, String> {
        let mut pubsub = self.client.get_async_pubsub().await.map_err(|e| e.to_string())?;
        pubsub.subscribe(self.channel()).await.map_err(|e| e.to_string())?;
        Ok(pubsub.into_on_message().map(|_| ()))
    }
}

/// Keeps a registry in step with the shared store: reloads on every
/// announcement, and every `resync` in case announcements were missed (pub/sub
/// does not replay what a dropped connection missed).
pub fn spawn_follower(
    registry: Arc<super::Registry>,
    store: RedisStore,
    resync: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            let mut changes = match store.subscribe().await {
                Ok(changes) => Some(Box::pin(changes)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to registry changes; retrying");
                    None
                }
            };
            follow(&registry).await;
            loop {
                let next = async {
                    match changes.as_mut() {
                        Some(changes) => changes.next().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    message = next => match message {
                        Some(()) => follow(&registry).await,
                        None => break,
                    },
                    _ = tokio::time::sleep(resync) => {
                        follow(&registry).await;
                        if changes.is_none() {
                            break;
                        }
                    }
                    _ = stopped(&mut shutdown) => return,
                }
            }
        }
    });
}

async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn follow(registry: &super::Registry) {
    if let Err(e) = registry.follow_store().await {
        tracing::warn!(error = ?e, "cannot follow the shared registry; keeping the current snapshot");
    }
}

/// The manifest as stored: API sets only, in name order; empty when none,
/// so "no manifest" and "no sets" compare equal.
fn manifest_json(sets: &Sets) -> Result<String, String> {
    let shared: Vec<&RegisteredSet> = sets.values().filter(|s| !s.from_file).collect();
    if shared.is_empty() {
        return Ok(String::new());
    }
    serde_json::to_string(&shared).map_err(|e| e.to_string())
}
