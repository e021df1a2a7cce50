//! Distributed rate limits: the GCRA state of every bucket lives in Redis
//! and one Lua script reads and advances it atomically, on Redis's clock, so
//! every replica draws from the same quota.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::Decision;
use crate::config::{QuotaConfig, RateStoreConfig};
use crate::telemetry::metrics::Metrics;

/// KEYS[1] the bucket; ARGV[1] emission interval (µs), ARGV[2] burst.
/// Returns {1, remaining} when the request conforms, {0, wait µs} when not.
/// The stored value is the theoretical arrival time (µs), expiring once it
/// is in the past, so idle buckets cost nothing.
const GCRA: &str = r#"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat - tolerance > now then
  return {0, tat - tolerance - now}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return {1, math.floor((now + tolerance - tat) / interval)}
"#;

/// The shared counters and whether Redis answers.
pub struct RedisQuotas {
    connection: ArcSwapOption<ConnectionManager>,
    script: redis::Script,
    config: RateStoreConfig,
    metrics: Arc<Metrics>,
    reachable: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// Redis's state for readiness.
#[derive(Debug, Clone)]
pub struct StoreState {
    pub reachable: bool,
    pub falls_back: bool,
    pub error: Option<String>,
}

impl std::fmt::Debug for RedisQuotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQuotas").field("config", &self.config).finish()
    }
}

impl RedisQuotas {
    /// Starts connecting in the background: the gateway serves (on its
    /// fallback) while Redis is not there yet.
    pub fn start(config: RateStoreConfig, metrics: Arc<Metrics>) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(config.redis.as_str()).map_err(|e| format!("{}: {e}", config.redis))?;
        let quotas = Arc::new(Self {
            connection: ArcSwapOption::empty(),
            script: redis::Script::new(GCRA),
            config,
            metrics,
            reachable: AtomicBool::new(false),
            last_error: Mutex::new(Some("not connected yet".into())),
        });
        quotas.metrics.rate_limit_store_up.set(0);
        tokio::spawn(connect(Arc::downgrade(&quotas), client));
        Ok(quotas)
    }

    pub fn falls_back(&self) -> bool {
        self.config.fall_back_to_local
    }

    /// Advances the bucket in Redis; an error means "decide without Redis".
    pub async fn check(&self, key: &str, quota: &QuotaConfig) -> Result<Decision, ()> {
        let Some(connection) = self.connection.load_full() else {
            return Err(());
        };
        let mut connection = ConnectionManager::clone(&connection);
        let interval = (1_000_000 / u64::from(quota.per_second.max(1))).max(1);
        let mut invocation = self.script.key(format!("{}{key}", self.config.key_prefix));
        invocation.arg(interval).arg(quota.burst.max(1));
        let outcome = tokio::time::timeout(self.config.timeout, invocation.invoke_async::<(i64, i64)>(&mut connection));
        match outcome.await {
            Ok(Ok((1, remaining))) => {
                self.mark(None);
                Ok(Decision::Allowed { remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX) })
            }
            Ok(Ok((_, wait_micros))) => {
                self.mark(None);
                Ok(Decision::Refused { wait: Duration::from_micros(u64::try_from(wait_micros).unwrap_or(0)) })
            }
            Ok(Err(e)) => {
                self.mark(Some(e.to_string()));
                Err(())
            }
            Err(_) => {
                self.mark(Some(format!("no answer within {:?}", self.config.timeout)));
                Err(())
            }
        }
    }

    pub fn state(&self) -> StoreState {
        StoreState {
            reachable: self.reachable.load(Ordering::Relaxed),
            falls_back: self.config.fall_back_to_local,
            error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Records whether Redis answered; logs only the transitions.
    fn mark(&self, error: Option<String>) {
        let reachable = error.is_none();
        let was = self.reachable.swap(reachable, Ordering::Relaxed);
        if was != reachable {
            match &error {
                Some(e) => tracing::warn!(error = %e, fallback = self.falls_back(), "rate-limit store unreachable"),
                None => tracing::info!("rate-limit store reachable again"),
            }
            self.metrics.rate_limit_store_up.set(i64::from(reachable));
        }
        if let Ok(mut last) = self.last_error.lock() {
            *last = error;
        }
    }
}

/// Connects, retrying every second until it works or the limiter is gone;
/// after that the connection manager reconnects by itself.
async fn connect(quotas: Weak<RedisQuotas>, client: redis::Client) {
    loop {
        let Some(strong) = quotas.upgrade() else { return };
        let timeout = strong.config.timeout.max(Duration::from_millis(500));
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(strong.config.timeout));
        match ConnectionManager::new_with_config(client.clone(), config).await {
            Ok(connection) => {
                strong.connection.store(Some(Arc::new(connection)));
                strong.mark(None);
                return;
            }
            Err(e) => strong.mark(Some(e.to_string())),
        }
        drop(strong);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
