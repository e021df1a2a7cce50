//! The route a request is for, resolved once for the policy layers and kept
//! in the request's extensions.

use http::{Method, Request};

use crate::gateway::Context;
use crate::protocol::{Protocol, classify};
use crate::telemetry::access::trace_of;

/// A request's gRPC method and REST template, when it has them.
#[derive(Debug, Clone, Default)]
pub struct RouteInfo {
    pub rpc: Option<String>,
    pub template: Option<String>,
    /// A composite's methods: every one it calls.
    pub calls: Vec<String>,
}

/// Who is calling, as authentication established it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub consumer: Option<String>,
    pub subject: Option<String>,
}

impl RouteInfo {
    /// Selectors a rule can name, most specific first: the method, its
    /// service, the REST template.
    pub fn selectors(&self) -> [Option<&str>; 3] {
        let service = self.rpc.as_deref().and_then(|r| r.rsplit_once('.')).map(|(s, _)| s);
        [self.rpc.as_deref(), service, self.template.as_deref()]
    }
}

/// The request's route, resolved on first use.
pub fn route_info<B>(context: &Context, request: &mut Request<B>) -> RouteInfo {
    if let Some(info) = request.extensions().get::<RouteInfo>() {
        return info.clone();
    }
    let snapshot = context.registry.snapshot_for(request.extensions_mut());
    let path = request.uri().path();
    let composite = context.composites.planned(&snapshot);
    let composite = composite.as_ref().and_then(|planned| {
        let found = planned.find(request.method(), path)?;
        let plan = found.plan;
        Some(RouteInfo { rpc: None, template: Some(plan.template_text.clone()), calls: plan.methods.clone() })
    });
    let info = match snapshot.rpc_index.get(path).and_then(|&i| snapshot.methods.get(i)) {
        _ if composite.is_some() => composite.unwrap_or_default(),
        Some(method) => {
            RouteInfo { rpc: Some(method.descriptor.full_name().to_string()), template: None, calls: Vec::new() }
        }
        None => {
            let method = if classify(request) == Protocol::WebSocket { &Method::GET } else { request.method() };
            match snapshot.routes.find(method, path) {
                Ok(found) => RouteInfo {
                    rpc: Some(found.binding.rpc_name.clone()),
                    template: Some(found.binding.template_text.clone()),
                    calls: Vec::new(),
                },
                Err(_) => RouteInfo::default(),
            }
        }
    };
    // Refusals by the policy layers are logged with the route too.
    let trace = trace_of(request.extensions());
    trace.protocol(classify(request).name());
    if let Some(rpc) = &info.rpc {
        trace.route(info.template.as_deref(), rpc);
    } else if let Some(template) = info.template.as_deref().filter(|_| !info.calls.is_empty()) {
        trace.route(Some(template), "composite");
    }
    request.extensions_mut().insert(info.clone());
    info
}
