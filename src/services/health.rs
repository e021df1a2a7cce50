//! `grpc.health.v1.Health` for the gateway: the empty service name is the
//! gateway itself (serving while it answers), a service of the active
//! snapshot is as healthy as its upstream (some endpoint up and passing
//! its own health check), and any other name is unknown — NOT_FOUND for
//! Check, SERVICE_UNKNOWN (the call kept open) for Watch, as the health
//! protocol says. Once the gateway drains, everything is NOT_SERVING and
//! each Watch says so and ends, so clients move away and the drain is not
//! held open by watchers.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::registry::{Registry, Snapshot};

/// How often a Watch looks again. Endpoint checks behind it run at most
/// every 2 s per upstream however many watchers there are.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct HealthService {
    registry: Arc<Registry>,
}

impl HealthService {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

type Watch = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        if *self.registry.draining().borrow() {
            return Ok(Response::new(HealthCheckResponse { status: ServingStatus::NotServing.into() }));
        }
        let snapshot = self.registry.snapshot();
        match status_of(&snapshot, &service).await {
            Some(status) => Ok(Response::new(HealthCheckResponse { status: status.into() })),
            None => Err(Status::not_found(format!("unknown service {service:?}"))),
        }
    }

    type WatchStream = Watch;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<Watch>, Status> {
        let service = request.into_inner().service;
        let registry = self.registry.clone();
        // Each round follows the registry, so a service registered later
        // turns from unknown to its upstream's state.
        let draining = registry.draining();
        let changes = futures_util::stream::unfold(Some((None, draining)), move |state| {
            let (registry, service) = (registry.clone(), service.clone());
            async move {
                let (last, mut draining): (Option<ServingStatus>, _) = state?;
                loop {
                    if *draining.borrow_and_update() {
                        let status = ServingStatus::NotServing;
                        // Said once, then the call ends.
                        let said = (last != Some(status)).then(|| HealthCheckResponse { status: status.into() });
                        return said.map(|response| (Ok(response), None));
                    }
                    if last.is_some() {
                        tokio::select! {
                            () = tokio::time::sleep(WATCH_INTERVAL) => {}
                            _ = draining.changed() => continue,
                        }
                    }
                    let now = status_of(&registry.snapshot(), &service).await.unwrap_or(ServingStatus::ServiceUnknown);
                    if last != Some(now) {
                        return Some((Ok(HealthCheckResponse { status: now.into() }), Some((Some(now), draining))));
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(changes)))
    }
}

/// A service's state, none when the snapshot does not front it.
async fn status_of(snapshot: &Snapshot, service: &str) -> Option<ServingStatus> {
    if service.is_empty() {
        return Some(ServingStatus::Serving);
    }
    let pools = snapshot.pools(Some(service));
    if pools.is_empty() {
        return None;
    }
    futures_util::future::join_all(pools.iter().map(|pool| pool.ensure_checked())).await;
    Some(if pools.iter().all(|pool| pool.is_ready()) { ServingStatus::Serving } else { ServingStatus::NotServing })
}
