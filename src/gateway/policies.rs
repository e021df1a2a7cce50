//! Every route's policies, resolved once per snapshot generation rather
//! than looked up by selector strings per request: for each method (the
//! paths that name it: gRPC, gRPC-Web, Connect, WebSocket by name) and each
//! REST binding, its timeouts, declared success answer, authentication rule
//! and rate-limit rule. A reload builds a new context, so the table is
//! keyed by both generations.

use std::sync::Arc;

use crate::admission::{Admitted, Target};
use crate::config::{RouteTimeouts, RuleConfig, SuccessRule};
use crate::middleware::rate_limit::RateRule;
use crate::registry::Snapshot;

use super::Context;

/// One route's policies.
#[derive(Debug, Clone, Default)]
pub struct RoutePolicies {
    pub timeouts: RouteTimeouts,
    pub success: Option<SuccessRule>,
    pub auth: Option<RuleConfig>,
    pub rate: Option<RateRule>,
}

/// The policies of every method and binding of one snapshot.
#[derive(Debug)]
pub struct Policies {
    generation: u64,
    methods: Vec<Arc<RoutePolicies>>,
    bindings: Vec<Arc<RoutePolicies>>,
}

impl Policies {
    /// Resolves every method's and binding's policies under `context`.
    pub fn resolve(context: &Context, snapshot: &Snapshot) -> Self {
        let methods = snapshot
            .methods
            .iter()
            .map(|method| {
                let rpc = method.descriptor.full_name();
                let service = method.descriptor.parent_service();
                let selectors = [Some(rpc), Some(service.full_name()), None];
                Arc::new(policies(context, snapshot, rpc, selectors, selectors))
            })
            .collect();
        let bindings = snapshot
            .routes
            .bindings()
            .iter()
            .map(|binding| {
                let rpc = binding.rpc_name.as_str();
                let service = rpc.rsplit_once('.').map(|(service, _)| service);
                // Timeouts and success answers match any binding's template;
                // rate-limit rules name templates of annotated routes only
                // (the auto-mapped one is named by its method).
                let template = Some(binding.template_text.as_str());
                let limited = template.filter(|_| !binding.auto_mapped);
                let rate_selectors = [Some(rpc), service, limited];
                Arc::new(policies(context, snapshot, rpc, [Some(rpc), service, template], rate_selectors))
            })
            .collect();
        Self { generation: snapshot.generation, methods, bindings }
    }

    /// The policies of what a request is for; none for a composite (its
    /// rules combine its calls' and are resolved per request) or nothing.
    pub fn of(&self, admitted: &Admitted) -> Option<&Arc<RoutePolicies>> {
        match &admitted.target {
            Target::Method(index) => self.methods.get(*index),
            Target::Route { binding, .. } => self.bindings.get(*binding),
            Target::Composite { .. } | Target::Own(_) | Target::Nothing(_) => None,
        }
    }

    /// The policies the front door hands on with a request: its route's,
    /// or — for a composite, or nothing matched — the timeouts and rules
    /// that apply to it (a composite's by its template), resolved for this
    /// request.
    pub fn for_request(&self, context: &Context, admitted: &Admitted) -> Arc<RoutePolicies> {
        if let Some(route) = self.of(admitted) {
            return route.clone();
        }
        Arc::new(RoutePolicies {
            timeouts: context.timeouts.for_route(admitted.selectors()),
            success: None,
            auth: context.auth.rule(admitted),
            rate: context.limiter.as_deref().and_then(|l| l.rule_for(admitted.selectors(), admitted.rpc())),
        })
    }

    /// The policies of a REST binding by its index in the route table.
    pub fn of_binding(&self, index: usize) -> Option<&RoutePolicies> {
        self.bindings.get(index).map(|route| &**route)
    }

    /// The policies of a method by its index.
    pub fn of_method(&self, index: usize) -> Option<&RoutePolicies> {
        self.methods.get(index).map(|route| &**route)
    }
}

fn policies(
    context: &Context,
    snapshot: &Snapshot,
    rpc: &str,
    selectors: [Option<&str>; 3],
    rate_selectors: [Option<&str>; 3],
) -> RoutePolicies {
    RoutePolicies {
        timeouts: context.timeouts.for_route(selectors),
        success: context.responses.for_route(selectors).cloned(),
        auth: context.auth.method_rule_of(rpc, snapshot),
        rate: context.limiter.as_deref().and_then(|limiter| limiter.rule_for(rate_selectors, Some(rpc))),
    }
}

impl Context {
    /// The policies of `snapshot`, resolved on first use per generation.
    pub fn policies(&self, snapshot: &Snapshot) -> Arc<Policies> {
        if let Some(cached) = self.policies.load_full().filter(|p| p.generation == snapshot.generation) {
            return cached;
        }
        let resolved = Arc::new(Policies::resolve(self, snapshot));
        self.policies.store(Some(resolved.clone()));
        resolved
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::config::{Config, Flags};

    const CONFIG: &str = r#"
[[timeouts.rules]]
selector = "library.v1.LibraryService.GetShelf"
unary = "2s"
[[timeouts.rules]]
selector = "/v1/books"
unary = "3s"
[[responses]]
selector = "library.v1.LibraryService.CreateShelf"
status = 201
[auth]
[auth.api_keys]
keys = [{ consumer = "billing", sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }]
[[auth.rules]]
selector = "/v1/{name=shelves/*}"
require = "authenticated"
[rate_limit]
per_second = 100
[[rate_limit.rules]]
selector = "/v1/books"
per_second = 5
"#;

    /// (binding template and method, the route's unary deadline in seconds, declared
    /// status, authentication required, rate-limit rule selector).
    #[tokio::test]
    async fn every_binding_and_method_has_its_policies_resolved_once_per_snapshot() {
        let config =
            Config::from_toml(CONFIG, &Flags { upstreams: vec!["http://127.0.0.1:9".into()], ..Flags::default() });
        let sets = vec![("library".to_string(), crate::pb::LIBRARY_DESCRIPTOR_SET.to_vec())];
        let context = crate::gateway::build::build_context(&config.unwrap(), sets).await.unwrap();
        let snapshot = context.registry.snapshot();
        let policies = context.policies(&snapshot);
        assert!(Arc::ptr_eq(&policies, &context.policies(&snapshot)), "resolved once per generation");
        type Case<'a> = (&'a str, &'a str, Option<u64>, Option<u16>, bool, &'a str);
        let cases: [Case; 6] = [
            ("GET", "/v1/{name=shelves/*}", Some(2), None, true, "library.v1.LibraryService.GetShelf"),
            // The template rule protects DeleteShelf too: it shares the template.
            ("DELETE", "/v1/{name=shelves/*}", None, None, true, "library.v1.LibraryService.DeleteShelf"),
            ("POST", "/v1/shelves", None, Some(201), false, "library.v1.LibraryService.CreateShelf"),
            ("GET", "/v1/{parent=shelves/*}/books", None, None, false, "library.v1.LibraryService.ListBooks"),
            ("GET", "/v1/books", Some(3), None, false, "/v1/books"),
            ("POST", "/library.v1.LibraryService/GetShelf", Some(2), None, true, "library.v1.LibraryService.GetShelf"),
        ];
        let bindings = snapshot.routes.bindings();
        for (method, template, unary, status, auth, rate) in cases {
            let index = bindings
                .iter()
                .position(|b| b.http_method == method && b.template_text == template)
                .unwrap_or_else(|| panic!("no binding {method} {template}"));
            let route = &policies.bindings[index];
            assert_eq!(route.timeouts.unary, unary.map(std::time::Duration::from_secs), "{method} {template}");
            assert_eq!(route.success.as_ref().map(|s| s.status.as_u16()), status, "{method} {template}");
            assert_eq!(route.auth.as_ref().is_some_and(|r| r.require == "authenticated"), auth, "{method} {template}");
            assert_eq!(route.rate.as_ref().map(|r| &*r.selector), Some(rate), "{method} {template}");
        }
        // By name (gRPC, Connect): the method's rules, no template's.
        let get_shelf = snapshot.rpc_index["/library.v1.LibraryService/GetShelf"];
        let route = policies.of_method(get_shelf).unwrap();
        assert_eq!(route.timeouts.unary, Some(std::time::Duration::from_secs(2)));
        assert!(route.auth.is_some(), "a template rule protects its method on every path");
        assert_eq!(
            route.rate.as_ref().map(|r| (&*r.selector, r.default)),
            Some(("library.v1.LibraryService.GetShelf", true))
        );
    }
}
