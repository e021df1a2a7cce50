//! One immutable view of everything registered: the descriptor pool, the
//! route table and, per method, the precomputed call (channel, path, types).

use std::collections::HashMap;
use std::sync::Arc;

use http::uri::PathAndQuery;
use prost_reflect::{DescriptorPool, MethodDescriptor};

use super::LoadErrors;
use super::sets::Sets;
use super::source;
use crate::route::{Binding, RouteTable, binding};
use crate::transcode::fast::Plans;
use crate::upstream::Upstreams;
use crate::upstream::call::Call;

pub use crate::config::UpstreamMap;

#[derive(Debug)]
pub struct Snapshot {
    /// Counts swaps since start; a new snapshot has a higher one.
    pub generation: u64,
    pub pool: DescriptorPool,
    pub routes: RouteTable,
    pub methods: Vec<MethodEntry>,
    /// `/package.Service/Method` → index in `methods`, for gRPC, gRPC-Web
    /// and Connect.
    pub rpc_index: HashMap<Box<str>, usize>,
    /// Transcoding plans for every message of the pool.
    pub plans: Arc<Plans>,
    /// Routes left out in lenient mode, each with its reason.
    pub skipped: Vec<String>,
    /// `sha256:…` over the active version of every set: names this schema.
    pub digest: String,
}

/// A gRPC method and everything needed to call it.
#[derive(Debug)]
pub struct MethodEntry {
    pub descriptor: MethodDescriptor,
    /// The registered set the method's file came from.
    pub set: String,
    pub upstream: String,
    pub call: Call,
    /// `idempotency_level = NO_SIDE_EFFECTS`: Connect may call it with GET.
    pub side_effect_free: bool,
    /// Plans of the input and output messages.
    pub input_plan: Option<usize>,
    pub output_plan: Option<usize>,
}

impl Snapshot {
    /// The endpoint pools behind the methods of `service` (every service
    /// when none), each once.
    pub fn pools(&self, service: Option<&str>) -> Vec<&Arc<crate::upstream::Pool>> {
        let mut pools: Vec<&Arc<crate::upstream::Pool>> = Vec::new();
        let methods = self.methods.iter();
        for method in methods.filter(|m| service.is_none_or(|s| m.descriptor.parent_service().full_name() == s)) {
            let pool = method.call.channel.pool();
            if !pools.iter().any(|known| Arc::ptr_eq(known, pool)) {
                pools.push(pool);
            }
        }
        pools
    }

    /// An empty snapshot: no routes, every request a 404.
    pub fn empty() -> Self {
        let pool = source::bundled_pool().unwrap_or_default();
        let routes = RouteTable::default();
        let plans = Arc::new(Plans::compile(&pool));
        let (methods, rpc_index, skipped, digest) = (Vec::new(), HashMap::new(), Vec::new(), String::new());
        Self { generation: 0, pool, routes, methods, rpc_index, plans, skipped, digest }
    }

    /// Builds a snapshot from the active version of every set, collecting
    /// every problem: bad sets, bad rules, route conflicts, services
    /// without an upstream.
    pub fn build(
        sets: &Sets,
        upstreams: &UpstreamMap,
        channels: &Upstreams,
        generation: u64,
    ) -> Result<Self, LoadErrors> {
        Self::build_with(sets, upstreams, channels, generation, false)
    }

    /// Like `build`; `lenient` serves every valid route and leaves out (and
    /// lists in `skipped`) invalid or conflicting ones instead of refusing.
    pub fn build_with(
        sets: &Sets,
        upstreams: &UpstreamMap,
        channels: &Upstreams,
        generation: u64,
        lenient: bool,
    ) -> Result<Self, LoadErrors> {
        let active: Vec<(String, &[u8])> =
            sets.values().filter_map(|set| Some((set.name.clone(), set.active_version()?.bytes.as_slice()))).collect();
        let merged = source::merge(&active)?;
        let (descriptors, routes, skipped) = if lenient {
            routes_skipping(&merged.pool)
        } else {
            let (descriptors, routes) = routes(&merged.pool)?;
            (descriptors, routes, Vec::new())
        };
        let plans = Arc::new(Plans::compile(&merged.pool));
        let mut errors = Vec::new();
        let mut methods = Vec::with_capacity(descriptors.len());
        for descriptor in descriptors {
            let service = descriptor.parent_service();
            let owner = merged.owners.get(service.parent_file().name()).map(|&i| active[i].0.as_str());
            let set = owner.and_then(|name| sets.get(name));
            let url = upstreams.for_service(service.full_name(), set.and_then(|s| s.upstream.as_deref()));
            let Some(url) = url else {
                let name = service.full_name();
                let problem = format!("no upstream for service {name}; pass --upstream URL or --upstream {name}=URL");
                if !errors.contains(&problem) {
                    errors.push(problem);
                }
                continue;
            };
            match channels.channel(url).and_then(|channel| call(&descriptor, channel, channels.max_message_size)) {
                Ok(call) => methods.push(MethodEntry {
                    side_effect_free: side_effect_free(&descriptor),
                    input_plan: plans.message_index(descriptor.input().full_name()),
                    // An HttpBody answer goes out raw, never as JSON.
                    output_plan: Some(descriptor.output())
                        .filter(|output| !crate::transcode::wkt::is_http_body(output))
                        .and_then(|output| plans.message_index(output.full_name())),
                    descriptor,
                    set: owner.unwrap_or_default().to_string(),
                    upstream: url.to_string(),
                    call,
                }),
                Err(e) => errors.push(format!("service {}: {e}", service.full_name())),
            }
        }
        if !errors.is_empty() {
            return Err(LoadErrors::invalid(errors));
        }
        let rpc_index = methods.iter().enumerate().map(|(i, m)| (Box::from(m.call.path.path()), i)).collect();
        let digest = schema_digest(sets);
        Ok(Self { generation, pool: merged.pool, routes, methods, rpc_index, plans, skipped, digest })
    }
}

/// One digest for the active versions of all sets (by name, in order).
fn schema_digest(sets: &Sets) -> String {
    let active = sets.values().filter_map(|set| Some(format!("{}={};", set.name, set.active_version()?.digest)));
    super::sets::digest(active.collect::<String>().as_bytes())
}

/// Every method of every service in the pool, and the route table over
/// them (binding `method` indexes the returned list); or every problem.
pub fn routes(pool: &DescriptorPool) -> Result<(Vec<MethodDescriptor>, RouteTable), LoadErrors> {
    let (methods, explicit, fallback, mut errors) = all_bindings(pool);
    match RouteTable::build(explicit, fallback) {
        Ok(table) if errors.is_empty() => Ok((methods, table)),
        Ok(_) => Err(LoadErrors::invalid(errors)),
        Err(mut conflicts) => {
            errors.append(&mut conflicts);
            Err(LoadErrors { messages: errors, conflict: true, too_large: false })
        }
    }
}

/// Like `routes`, serving what is valid: a method whose rule is invalid
/// keeps only its auto-mapped path, and a binding that conflicts with an
/// earlier one is left out; each is listed with its reason.
pub fn routes_skipping(pool: &DescriptorPool) -> (Vec<MethodDescriptor>, RouteTable, Vec<String>) {
    let (methods, explicit, fallback, mut skipped) = all_bindings(pool);
    let (table, mut conflicts) = RouteTable::build_skipping(explicit, fallback);
    skipped.append(&mut conflicts);
    (methods, table, skipped)
}

type AllBindings = (Vec<MethodDescriptor>, Vec<Binding>, Vec<Binding>, Vec<String>);

/// Every method, its explicit and auto-mapped bindings, and the problems of
/// the rules that could not be bound.
fn all_bindings(pool: &DescriptorPool) -> AllBindings {
    let mut errors = Vec::new();
    let mut methods = Vec::new();
    let mut explicit = Vec::new();
    let mut fallback = Vec::new();
    for method in pool.services().flat_map(|s| s.methods().collect::<Vec<_>>()) {
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
    (methods, explicit, fallback, errors)
}

fn side_effect_free(method: &MethodDescriptor) -> bool {
    const NO_SIDE_EFFECTS: i32 = 1;
    idempotency_level(method) == NO_SIDE_EFFECTS
}

/// `idempotency_level`: 0 unknown, 1 NO_SIDE_EFFECTS, 2 IDEMPOTENT.
fn idempotency_level(method: &MethodDescriptor) -> i32 {
    let options = method.options();
    match options.get_field_by_name("idempotency_level").as_deref() {
        Some(prost_reflect::Value::EnumNumber(level)) => *level,
        _ => 0,
    }
}

fn method_bindings(method: &MethodDescriptor, index: usize) -> Result<Vec<Binding>, Vec<String>> {
    match binding::http_rule(method) {
        Ok(Some(rule)) => binding::bindings(method, index, &rule),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(vec![format!("{}: {}: {e}", method.parent_file().name(), method.full_name())]),
    }
}

fn call(method: &MethodDescriptor, channel: crate::upstream::Backend, max_message_size: usize) -> Result<Call, String> {
    let service = method.parent_service();
    let text = format!("/{}/{}", service.full_name(), method.name());
    let path = PathAndQuery::try_from(text).map_err(|e| format!("{}: invalid gRPC path: {e}", method.full_name()))?;
    let idempotent = idempotency_level(method) != 0;
    Ok(Call { channel, path, output: method.output(), max_message_size, idempotent })
}
