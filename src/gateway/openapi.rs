//! The OpenAPI document of a snapshot under this context's policies: what
//! each binding enforces (success code, who may call it, rate limits) comes
//! from the same resolved policies the request path uses.

use bytes::Bytes;
use prost_reflect::MethodDescriptor;

use super::Context;
use crate::openapi::{Enforcement, Info};
use crate::registry::Snapshot;

impl Context {
    /// The document of `snapshot`, rendered once per snapshot and context.
    /// CPU work: call it off the async workers.
    pub fn openapi_document(&self, snapshot: &Snapshot) -> Bytes {
        let mut cached = self.openapi_document.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((generation, document)) = cached.as_ref()
            && *generation == snapshot.generation
        {
            return document.clone();
        }
        let policies = self.policies(snapshot);
        let enforced = |binding: usize| {
            let Some(route) = policies.of_binding(binding) else { return Enforcement::default() };
            Enforcement {
                success: route.success.as_ref().map(|rule| (rule.status, rule.location.is_some())),
                access: self.auth.access(route.auth.as_ref()),
                rate_limited: route.rate.is_some(),
            }
        };
        let schemes = self.auth.schemes();
        let info = Info {
            version: &self.openapi_version,
            digest: &snapshot.digest,
            generation: snapshot.generation,
            servers: &self.openapi_servers,
            schemes: &schemes,
            enforced: &enforced,
        };
        let methods: Vec<MethodDescriptor> = snapshot.methods.iter().map(|m| m.descriptor.clone()).collect();
        let document = crate::openapi::document(&snapshot.pool, &snapshot.routes, &methods, &info)
            .map(Bytes::from)
            .unwrap_or_default();
        crate::registry::release_freed_memory();
        *cached = Some((snapshot.generation, document.clone()));
        document
    }
}
