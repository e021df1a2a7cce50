//! What a request is, decided once at the front door: its protocol, the
//! registry snapshot it is served from, and its target — the gRPC method
//! its path names, the REST binding it matches with the path variables, a
//! composite, or nothing. Policies and the protocol handler all read this
//! one `Admitted`; none classifies or matches again.

#[cfg(test)]
mod tests;

use std::sync::Arc;

use http::header::CONTENT_TYPE;
use http::{Method, Request};

use crate::compose::plan::Plan;
use crate::compose::{Composites, Planned};
use crate::registry::{MethodEntry, Snapshot};
use crate::route::{Binding, MatchError};
use crate::telemetry::access::trace_of;

/// The protocols spoken on the public listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    GrpcWeb,
    Connect,
    WebSocket,
    Rest,
}

impl Protocol {
    /// The name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::GrpcWeb => "grpc-web",
            Self::Connect => "connect",
            Self::WebSocket => "websocket",
            Self::Rest => "rest",
        }
    }

    /// Whether the path names the method (`/pkg.Service/Method`).
    fn names_method(self) -> bool {
        matches!(self, Self::Grpc | Self::GrpcWeb | Self::Connect)
    }
}

/// Classifies a request by its content type and Connect's markers (the
/// `Connect-Protocol-Version` header, a `connect+` streaming type, or
/// `connect=v1` on a GET).
pub fn classify<B>(request: &Request<B>) -> Protocol {
    let content_type = request.headers().get(CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or(b"");
    let content_type = content_type.trim_ascii_start();
    let starts =
        |prefix: &[u8]| content_type.len() >= prefix.len() && content_type[..prefix.len()].eq_ignore_ascii_case(prefix);
    if is_upgrade(request) {
        Protocol::WebSocket
    } else if starts(b"application/grpc-web") {
        Protocol::GrpcWeb
    } else if starts(b"application/grpc") {
        Protocol::Grpc
    } else if starts(b"application/connect+")
        || request.headers().contains_key("connect-protocol-version")
        || request.method() == Method::GET
            && request.uri().query().is_some_and(|q| q.split('&').any(|p| p == "connect=v1"))
    {
        Protocol::Connect
    } else {
        Protocol::Rest
    }
}

/// A WebSocket upgrade (RFC 6455 over HTTP/1.1).
pub fn is_upgrade<B>(request: &Request<B>) -> bool {
    request.method() == Method::GET
        && request
            .headers()
            .get(http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// What a request is for.
#[derive(Debug)]
pub enum Target {
    /// The method the path names (gRPC, gRPC-Web, Connect, WebSocket).
    Method(usize),
    /// A REST binding, by its index in the route table, and the values of
    /// its path variables.
    Route { binding: usize, variables: Vec<String> },
    /// A composite endpoint, its plan and path variables.
    Composite { planned: Arc<Planned>, plan: usize, variables: Vec<String> },
    /// One of the gateway's own gRPC services (reflection, health).
    Own(OwnService),
    /// Nothing; why, for the protocol to answer (404, 405 with `Allow`, a
    /// bad path variable, an unknown method).
    Nothing(MatchError),
}

/// The gRPC services the gateway answers itself, from its own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnService {
    ReflectionV1,
    ReflectionV1Alpha,
    HealthCheck,
    HealthWatch,
}

impl OwnService {
    const ALL: [Self; 4] = [Self::ReflectionV1, Self::ReflectionV1Alpha, Self::HealthCheck, Self::HealthWatch];

    /// The method's path, as gRPC sends it.
    pub fn path(self) -> &'static str {
        match self {
            Self::ReflectionV1 => "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            Self::ReflectionV1Alpha => "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            Self::HealthCheck => "/grpc.health.v1.Health/Check",
            Self::HealthWatch => "/grpc.health.v1.Health/Watch",
        }
    }

    /// The full method name, as rules select it.
    pub fn rpc(self) -> &'static str {
        match self {
            Self::ReflectionV1 => "grpc.reflection.v1.ServerReflection.ServerReflectionInfo",
            Self::ReflectionV1Alpha => "grpc.reflection.v1alpha.ServerReflection.ServerReflectionInfo",
            Self::HealthCheck => "grpc.health.v1.Health.Check",
            Self::HealthWatch => "grpc.health.v1.Health.Watch",
        }
    }

    fn is_reflection(self) -> bool {
        matches!(self, Self::ReflectionV1 | Self::ReflectionV1Alpha)
    }
}

/// Which of the gateway's own gRPC services are on (`[grpc]` in the
/// config). They take precedence over a registered set naming the same
/// service: the gateway answers for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnServices {
    pub reflection: bool,
    pub health: bool,
}

impl OwnServices {
    fn find(self, path: &str) -> Option<OwnService> {
        OwnService::ALL
            .into_iter()
            .find(|s| s.path() == path && if s.is_reflection() { self.reflection } else { self.health })
    }
}

/// A request as the front door admitted it.
#[derive(Debug)]
pub struct Admitted {
    pub protocol: Protocol,
    pub snapshot: Arc<Snapshot>,
    pub target: Target,
}

impl Admitted {
    /// The gRPC method called, when there is exactly one.
    pub fn method(&self) -> Option<&MethodEntry> {
        let index = match &self.target {
            Target::Method(index) => *index,
            Target::Route { binding, .. } => self.snapshot.routes.bindings().get(*binding)?.method,
            Target::Composite { .. } | Target::Own(_) | Target::Nothing(_) => return None,
        };
        self.snapshot.methods.get(index)
    }

    /// The REST binding matched, with its path variables.
    pub fn binding(&self) -> Option<(&Binding, &[String])> {
        match &self.target {
            Target::Route { binding, variables } => Some((self.snapshot.routes.bindings().get(*binding)?, variables)),
            _ => None,
        }
    }

    /// The composite matched, with its path variables.
    pub fn composite(&self) -> Option<(&Plan, &[String])> {
        match &self.target {
            Target::Composite { planned, plan, variables } => Some((planned.plans.get(*plan)?, variables)),
            _ => None,
        }
    }

    /// The full method name, when one method is called.
    pub fn rpc(&self) -> Option<&str> {
        match &self.target {
            Target::Own(service) => Some(service.rpc()),
            _ => self.method().map(|m| m.descriptor.full_name()),
        }
    }

    /// The route template the request came by: a REST binding's (not the
    /// auto-mapped `POST /pkg.Svc/Method`, which the method names), or a
    /// composite's.
    pub fn template(&self) -> Option<&str> {
        if let Some((plan, _)) = self.composite() {
            return Some(&plan.template_text);
        }
        self.binding().filter(|(b, _)| !b.auto_mapped).map(|(b, _)| b.template_text.as_str())
    }

    /// Selectors a rule can name, most specific first: the method, its
    /// service, the route template.
    pub fn selectors(&self) -> [Option<&str>; 3] {
        let rpc = self.rpc();
        let service = rpc.and_then(|r| r.rsplit_once('.')).map(|(s, _)| s);
        [rpc, service, self.template()]
    }

    /// Every method a composite calls; empty otherwise.
    pub fn calls(&self) -> &[String] {
        self.composite().map_or(&[], |(plan, _)| &plan.methods)
    }
}

/// Admits a request: classifies it, pins the registry snapshot on it (every
/// later reader gets the same one) and resolves its target. The access
/// record learns the protocol and route here, so refusals are logged with
/// them too.
pub fn admit<B>(
    snapshot: Arc<Snapshot>,
    composites: &Composites,
    own: OwnServices,
    request: &mut Request<B>,
) -> Admitted {
    #[cfg(test)]
    tests::ADMISSIONS.with(|n| n.set(n.get() + 1));
    let protocol = classify(request);
    request.extensions_mut().insert(snapshot.clone());
    let own = matches!(protocol, Protocol::Grpc | Protocol::GrpcWeb).then(|| own.find(request.uri().path())).flatten();
    let target = match own {
        Some(service) => Target::Own(service),
        None => resolve(protocol, &snapshot, composites, request),
    };
    let admitted = Admitted { protocol, snapshot, target };
    let trace = trace_of(request.extensions());
    trace.protocol(protocol.name());
    match (admitted.rpc(), admitted.composite()) {
        (Some(rpc), _) => {
            let template = admitted.binding().map(|(b, _)| b.template_text.as_str());
            trace.route(template, rpc);
        }
        (None, Some((plan, _))) => trace.route(Some(&plan.template_text), "composite"),
        (None, None) => {}
    }
    admitted
}

fn resolve<B>(protocol: Protocol, snapshot: &Snapshot, composites: &Composites, request: &Request<B>) -> Target {
    let path = request.uri().path();
    let by_name = snapshot.rpc_index.get(path).copied();
    match (protocol, by_name) {
        (Protocol::Grpc | Protocol::GrpcWeb | Protocol::Connect | Protocol::WebSocket, Some(index)) => {
            Target::Method(index)
        }
        (protocol, None) if protocol.names_method() => Target::Nothing(MatchError::NotFound),
        (Protocol::WebSocket, None) => route(snapshot, &Method::GET, path),
        _ => {
            if let Some(planned) = composites.planned(snapshot)
                && let Some((plan, variables)) = planned.find_index(request.method(), path)
            {
                return Target::Composite { planned, plan, variables };
            }
            route(snapshot, request.method(), path)
        }
    }
}

fn route(snapshot: &Snapshot, method: &Method, path: &str) -> Target {
    match snapshot.routes.find(method, path) {
        Ok(found) => Target::Route { binding: found.index, variables: found.variables },
        Err(error) => Target::Nothing(error),
    }
}
