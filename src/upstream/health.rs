//! Backend health for readiness: the standard `grpc.health.v1.Health/Check`,
//! cached briefly so probes do not turn into a load of their own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Backend as Channel;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// One backend's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Serving,
    /// The backend has no health service; it answered, so it is up.
    NoHealthService,
    NotServing,
    Unreachable(String),
}

/// Cached health checks.
#[derive(Debug)]
pub struct HealthChecks {
    ttl: Duration,
    timeout: Duration,
    cache: Mutex<HashMap<String, (Instant, Health)>>,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Serving | Self::NoHealthService)
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Serving => "serving".into(),
            Self::NoHealthService => "up (no grpc.health.v1 service)".into(),
            Self::NotServing => "not serving".into(),
            Self::Unreachable(reason) => format!("unreachable: {reason}"),
        }
    }
}

impl HealthChecks {
    pub fn new(ttl: Duration, timeout: Duration) -> Self {
        Self { ttl, timeout, cache: Mutex::new(HashMap::new()) }
    }

    /// The backend's health, from the cache when fresh.
    pub async fn check(&self, url: &str, channel: Channel) -> Health {
        if let Ok(cache) = self.cache.lock()
            && let Some((at, health)) = cache.get(url)
            && at.elapsed() < self.ttl
        {
            return health.clone();
        }
        let health = self.ask(channel).await;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(url.to_string(), (Instant::now(), health.clone()));
        }
        health
    }

    async fn ask(&self, channel: Channel) -> Health {
        let mut client = HealthClient::new(channel);
        let request = client.check(HealthCheckRequest { service: String::new() });
        match tokio::time::timeout(self.timeout, request).await {
            Err(_) => Health::Unreachable(format!("no answer within {:?}", self.timeout)),
            Ok(Ok(reply)) if reply.get_ref().status == ServingStatus::Serving as i32 => Health::Serving,
            Ok(Ok(_)) => Health::NotServing,
            Ok(Err(status)) if status.code() == Code::Unimplemented => Health::NoHealthService,
            Ok(Err(status)) => Health::Unreachable(status.code().description().to_string()),
        }
    }
}
