//! One immutable view of everything registered: the descriptor pool, the
//! route table and, per method, the precomputed call (channel, path, types).

use std::collections::BTreeMap;

use http::uri::PathAndQuery;
use prost_reflect::{DescriptorPool, MethodDescriptor};

use crate::route::{Binding, RouteTable, binding};
use crate::upstream::Upstreams;
use crate::upstream::call::Call;

/// Which backend serves which service: a default and per-service overrides.
#[derive(Debug, Clone, Default)]
pub struct UpstreamMap {
    pub default: Option<String>,
    pub services: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct Snapshot {
    pub pool: DescriptorPool,
    pub routes: RouteTable,
    pub methods: Vec<MethodEntry>,
}

/// A gRPC method and everything needed to call it.
#[derive(Debug)]
pub struct MethodEntry {
    pub descriptor: MethodDescriptor,
    pub upstream: String,
    pub call: Call,
}

impl UpstreamMap {
    pub fn for_service(&self, service: &str) -> Option<&str> {
        self.services
            .get(service)
            .or(self.default.as_ref())
            .map(String::as_str)
    }
}

impl Snapshot {
    /// Builds a snapshot from a merged pool, collecting every problem: bad
    /// rules, route conflicts, services without an upstream.
    pub fn build(
        pool: DescriptorPool,
        upstreams: &UpstreamMap,
        channels: &Upstreams,
    ) -> Result<Self, Vec<String>> {
        let (descriptors, routes) = routes(&pool)?;
        let mut errors = Vec::new();
        let mut methods = Vec::with_capacity(descriptors.len());
        for descriptor in descriptors {
            let service = descriptor.parent_service();
            let Some(url) = upstreams.for_service(service.full_name()) else {
                let name = service.full_name();
                let problem = format!(
                    "no upstream for service {name}; pass --upstream URL or --upstream {name}=URL"
                );
                if !errors.contains(&problem) {
                    errors.push(problem);
                }
                continue;
            };
            match channels
                .channel(url)
                .and_then(|channel| call(&descriptor, channel))
            {
                Ok(call) => methods.push(MethodEntry {
                    descriptor,
                    upstream: url.to_string(),
                    call,
                }),
                Err(e) => errors.push(format!("service {}: {e}", service.full_name())),
            }
        }
        if errors.is_empty() {
            Ok(Self {
                pool,
                routes,
                methods,
            })
        } else {
            Err(errors)
        }
    }
}

/// Every method of every service in the pool, and the route table over
/// them (binding `method` indexes the returned list); or every problem.
pub fn routes(pool: &DescriptorPool) -> Result<(Vec<MethodDescriptor>, RouteTable), Vec<String>> {
    let mut errors = Vec::new();
    let mut methods = Vec::new();
    let mut explicit = Vec::new();
    let mut fallback = Vec::new();
    for method in pool
        .services()
        .flat_map(|s| s.methods().collect::<Vec<_>>())
    {
        let index = methods.len();
        match method_bindings(&method, index) {
            Ok(bindings) => explicit.extend(bindings),
            Err(mut e) => errors.append(&mut e),
        }
        match Binding::rpc_path(&method, index) {
            Ok(binding) => fallback.push(binding),
            Err(e) => errors.push(format!("{}: {e}", method.full_name())),
        }
        methods.push(method);
    }
    match RouteTable::build(explicit, fallback) {
        Ok(table) if errors.is_empty() => Ok((methods, table)),
        Ok(_) => Err(errors),
        Err(mut conflicts) => {
            errors.append(&mut conflicts);
            Err(errors)
        }
    }
}

fn method_bindings(method: &MethodDescriptor, index: usize) -> Result<Vec<Binding>, Vec<String>> {
    match binding::http_rule(method) {
        Ok(Some(rule)) => binding::bindings(method, index, &rule),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(vec![format!(
            "{}: {}: {e}",
            method.parent_file().name(),
            method.full_name()
        )]),
    }
}

fn call(method: &MethodDescriptor, channel: tonic::transport::Channel) -> Result<Call, String> {
    let text = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let path = PathAndQuery::try_from(text)
        .map_err(|e| format!("{}: invalid gRPC path: {e}", method.full_name()))?;
    Ok(Call {
        channel,
        path,
        output: method.output(),
    })
}
