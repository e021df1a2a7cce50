//! JSON Web Key Sets from a file or a URL: read at start (a file) or fetched
//! in the background (a URL), refreshed every `jwt.jwks_refresh`, and re-read
//! at once — at most once a second — when a token names an unknown `kid`.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};

/// A key a token may be verified with, bound to one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// Where the set comes from.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Url(String),
}

/// The current key set and how to refresh it.
pub struct Jwks {
    source: Option<Source>,
    keys: RwLock<Arc<Vec<VerifyingKey>>>,
    last_read: Mutex<Option<Instant>>,
    /// One read at a time; waiters find the fresh set.
    reading: Arc<tokio::sync::Mutex<()>>,
    /// Built only for a URL source.
    http: Option<reqwest::Client>,
}

/// The shortest gap between two reads triggered by unknown `kid`s.
const MIN_GAP: Duration = Duration::from_secs(1);
/// How long the request that names a new `kid` waits for the re-read.
const UNKNOWN_KID_WAIT: Duration = Duration::from_millis(500);

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish()
    }
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("source", &self.source).finish()
    }
}

impl Jwks {
    /// Reads a file set now (so a bad file stops the start or the reload);
    /// a URL is fetched by `spawn_refresh`.
    pub fn new(file: Option<PathBuf>, url: Option<String>) -> Result<Self, String> {
        let source = file.map(Source::File).or(url.map(Source::Url));
        let http = match &source {
            Some(Source::Url(_)) => Some(
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .map_err(|e| format!("cannot build the JWKS client: {e}"))?,
            ),
            _ => None,
        };
        let jwks = Self {
            source,
            keys: RwLock::new(Arc::new(Vec::new())),
            last_read: Mutex::new(None),
            reading: Arc::new(tokio::sync::Mutex::new(())),
            http,
        };
        if let Some(Source::File(path)) = &jwks.source {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            jwks.install(&text)?;
        }
        Ok(jwks)
    }

    /// The keys in force.
    pub fn keys(&self) -> Arc<Vec<VerifyingKey>> {
        self.keys.read().map(|k| k.clone()).unwrap_or_default()
    }

    /// Re-reads the set for an unknown `kid`, unless it was read within the
    /// last second or a read is under way. The read runs on its own task;
    /// requests wait for it (theirs or one under way) at most
    /// `UNKNOWN_KID_WAIT`, so a slow key endpoint never queues requests,
    /// each holding a concurrency permit, behind it (the 6th waited 29.5 s):
    /// past that they are answered from the keys at hand.
    pub async fn refresh_for_unknown_kid(self: &Arc<Self>) {
        if self.source.is_none() {
            return;
        }
        let Ok(reading) = self.reading.clone().try_lock_owned() else {
            let _ = tokio::time::timeout(UNKNOWN_KID_WAIT, self.reading.lock()).await;
            return;
        };
        let recent = self.last_read.lock().ok().and_then(|r| *r).is_some_and(|at| at.elapsed() < MIN_GAP);
        if recent {
            return;
        }
        let jwks = self.clone();
        let read = tokio::spawn(async move {
            let _reading = reading;
            if let Err(e) = jwks.read().await {
                tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys");
            }
        });
        let _ = tokio::time::timeout(UNKNOWN_KID_WAIT, read).await;
    }

    /// Refreshes every `interval` (and first at once) while the set is in use.
    pub fn spawn_refresh(self: &Arc<Self>, interval: Duration) {
        if self.source.is_none() {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let interval = interval.max(MIN_GAP);
        tokio::spawn(async move {
            loop {
                let Some(jwks) = weak.upgrade() else { return };
                let _reading = jwks.reading.lock().await;
                if let Err(e) = jwks.read().await {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys");
                }
                drop(_reading);
                drop(jwks);
                tokio::time::sleep(interval).await;
            }
        });
    }

    async fn read(&self) -> Result<(), String> {
        if let Ok(mut last) = self.last_read.lock() {
            *last = Some(Instant::now());
        }
        let text = match &self.source {
            None => return Ok(()),
            Some(Source::File(path)) => {
                tokio::fs::read_to_string(path).await.map_err(|e| format!("{}: {e}", path.display()))?
            }
            Some(Source::Url(url)) => self.fetch(url).await?,
        };
        self.install(&text)
    }

    async fn fetch(&self, url: &str) -> Result<String, String> {
        let http = self.http.as_ref().ok_or_else(|| format!("{url}: no HTTP client"))?;
        let response = http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        response.text().await.map_err(|e| format!("{url}: {e}"))
    }

    /// Parses a set and swaps it in whole.
    fn install(&self, text: &str) -> Result<(), String> {
        let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                // A key without `alg` could be tried with any algorithm: skip it.
                let algorithm = Algorithm::from_str(&jwk.common.key_algorithm?.to_string()).ok()?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some(VerifyingKey { kid: jwk.common.key_id.clone(), algorithm, key })
            })
            .collect();
        if let Ok(mut current) = self.keys.write() {
            *current = Arc::new(keys);
        }
        Ok(())
    }
}
