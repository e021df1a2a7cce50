//! The gRPC services the gateway answers itself on the public listener:
//! server reflection (v1 and v1alpha) over exactly the services of the
//! active snapshot, so grpcurl, `buf curl` and Postman discover what the
//! gateway fronts; and `grpc.health.v1.Health`, answering for the gateway
//! (the empty name) and for each service by its upstream's health, so
//! Kubernetes gRPC probes and clients' health checking work against it.
//! They are tonic's servers (tonic-reflection's, tonic-health's
//! generated one) behind the same front door — auth and rate limits
//! select them by name like any method.

mod health;
mod reflection;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

pub use self::health::HealthService;
pub use self::reflection::Reflection;
use crate::admission::{OwnService, Protocol};
use crate::registry::Snapshot;

/// A tonic server, type-erased.
type Server = BoxCloneSyncService<Request<tonic::body::Body>, Response<tonic::body::Body>, Infallible>;

/// The gateway's own services, shared by every request of one context.
#[derive(Debug)]
pub struct OwnServers {
    reflection: Reflection,
    health: Server,
}

impl OwnServers {
    pub fn new(registry: Arc<crate::registry::Registry>) -> Self {
        let health = tonic_health::pb::health_server::HealthServer::new(HealthService::new(registry));
        Self { reflection: Reflection::default(), health: BoxCloneSyncService::new(health) }
    }

    /// Answers one call of an own service, over gRPC or gRPC-Web, from
    /// the snapshot the request was admitted with.
    pub async fn serve(
        &self,
        service: OwnService,
        protocol: Protocol,
        snapshot: &Snapshot,
        request: Request<Body>,
    ) -> Response<Body> {
        let server = match service {
            OwnService::ReflectionV1 => self.reflection.v1(snapshot),
            OwnService::ReflectionV1Alpha => self.reflection.v1alpha(snapshot),
            OwnService::HealthCheck | OwnService::HealthWatch => self.health.clone(),
        };
        let response = match protocol {
            Protocol::GrpcWeb => tonic_web::GrpcWebLayer::new().layer(server).oneshot(request).await,
            _ => server.oneshot(request.map(tonic::body::Body::new)).await,
        };
        match response {
            Ok(response) => response.map(Body::new),
            Err(never) => match never {},
        }
    }
}
