//! Admission happens once per request, however many policies read it: a
//! REST request with authentication and rate limits on, sent through the
//! real router to the example backend, is classified and matched once.

use std::cell::Cell;

use http::{Method, Request};
use tower::ServiceExt;

use super::{Protocol, Target, classify};
use crate::config::{Config, Flags};
use crate::route::table::MATCHES;

thread_local! {
    /// `admit` calls on this thread.
    pub static ADMISSIONS: Cell<usize> = const { Cell::new(0) };
}

const POLICIES: &str = r#"
[auth]
default = "authenticated"
[auth.api_keys]
keys = [{ consumer = "billing", sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }]
[[auth.rules]]
selector = "/v1/{name=shelves/*}"
require = "authenticated"
[rate_limit]
per_second = 1000
[[rate_limit.rules]]
selector = "library.v1.LibraryService.GetShelf"
per_second = 1000
"#;

#[test]
fn a_rest_request_under_auth_and_rate_limits_is_classified_and_matched_once() {
    // One thread: the counters are per thread.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = listener.local_addr().unwrap();
        let _backend = crate::example::serve_library(listener);
        let flags = Flags { upstreams: vec![format!("http://{backend}")], ..Flags::default() };
        let config = Config::from_toml(POLICIES, &flags).unwrap();
        let sets = vec![("library".to_string(), crate::pb::LIBRARY_DESCRIPTOR_SET.to_vec())];
        let context = crate::gateway::build::build_context(&config, sets).await.unwrap();
        let router = crate::server::router(crate::gateway::LiveContext::new(context), &config);
        let (admitted, matched) = (ADMISSIONS.with(Cell::get), MATCHES.with(Cell::get));
        let request = Request::get("/v1/shelves/1").header("x-api-key", "test").body(axum::body::Body::empty());
        let response = router.clone().oneshot(request.unwrap()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("ratelimit-remaining"), "the rate limit ran");
        assert_eq!(ADMISSIONS.with(Cell::get) - admitted, 1, "admitted once");
        assert_eq!(MATCHES.with(Cell::get) - matched, 1, "matched once");
        // A refused request is admitted once too, and refused in its form.
        let refused = Request::get("/v1/shelves/1").body(axum::body::Body::empty()).unwrap();
        let response = router.oneshot(refused).await.unwrap();
        assert_eq!(response.status(), 401);
        assert!(response.headers().contains_key("www-authenticate"));
        assert_eq!(ADMISSIONS.with(Cell::get) - admitted, 2);
    });
}

#[test]
fn protocols_are_classified_by_content_type_and_connect_markers() {
    type Case<'a> = (Method, &'a str, &'a [(&'a str, &'a str)], Protocol);
    let cases: [Case; 9] = [
        (Method::POST, "/v1/shelves", &[("content-type", "application/json")], Protocol::Rest),
        (Method::POST, "/p.S/M", &[("content-type", "application/grpc")], Protocol::Grpc),
        (Method::POST, "/p.S/M", &[("content-type", "application/grpc+proto")], Protocol::Grpc),
        (Method::POST, "/p.S/M", &[("content-type", " Application/GRPC-Web+proto")], Protocol::GrpcWeb),
        (Method::POST, "/p.S/M", &[("content-type", "application/grpc-web-text")], Protocol::GrpcWeb),
        (Method::POST, "/p.S/M", &[("content-type", "application/connect+json")], Protocol::Connect),
        (
            Method::POST,
            "/p.S/M",
            &[("content-type", "application/json"), ("connect-protocol-version", "1")],
            Protocol::Connect,
        ),
        (Method::GET, "/p.S/M?connect=v1&encoding=json", &[], Protocol::Connect),
        (Method::GET, "/v1/stream", &[("upgrade", "websocket")], Protocol::WebSocket),
    ];
    for (method, uri, headers, expected) in cases {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        assert_eq!(classify(&request.body(()).unwrap()), expected, "{uri} {headers:?}");
    }
}

#[tokio::test]
async fn targets_resolve_by_method_name_route_or_nothing() {
    let snapshot = std::sync::Arc::new(crate::compose::tests::snapshot());
    let composites = crate::compose::Composites::new(Vec::new(), Default::default());
    let on = super::OwnServices { reflection: true, health: true };
    let admit_with = |own, method: Method, uri: &str, content_type: &str| {
        let request = Request::builder().method(method).uri(uri).header("content-type", content_type);
        super::admit(snapshot.clone(), &composites, own, &mut request.body(()).unwrap())
    };
    let admit = |method: Method, uri: &str, content_type: &str| admit_with(on, method, uri, content_type);
    let grpc = admit(Method::POST, "/library.v1.LibraryService/GetShelf", "application/grpc");
    assert!(matches!(grpc.target, Target::Method(_)));
    assert_eq!(grpc.selectors(), [Some("library.v1.LibraryService.GetShelf"), Some("library.v1.LibraryService"), None]);
    let rest = admit(Method::GET, "/v1/shelves/7", "application/json");
    assert_eq!(rest.binding().map(|(_, v)| v.to_vec()), Some(vec!["shelves/7".to_string()]));
    assert_eq!(rest.template(), Some("/v1/{name=shelves/*}"));
    let auto = admit(Method::POST, "/library.v1.LibraryService/GetShelf", "application/json");
    assert_eq!(auto.rpc(), Some("library.v1.LibraryService.GetShelf"));
    assert_eq!(auto.template(), None, "the auto-mapped route is named by its method");
    let missing = admit(Method::GET, "/v2/nothing", "application/json");
    assert!(matches!(missing.target, Target::Nothing(crate::route::MatchError::NotFound)));
    let unknown = admit(Method::POST, "/library.v1.LibraryService/Nope", "application/grpc");
    assert!(matches!(unknown.target, Target::Nothing(_)));
    let wrong_method = admit(Method::PATCH, "/v1/shelves/7", "application/json");
    assert!(matches!(wrong_method.target, Target::Nothing(crate::route::MatchError::MethodNotAllowed(_))));

    let health = admit(Method::POST, "/grpc.health.v1.Health/Check", "application/grpc");
    assert!(matches!(health.target, Target::Own(super::OwnService::HealthCheck)));
    assert_eq!(health.selectors(), [Some("grpc.health.v1.Health.Check"), Some("grpc.health.v1.Health"), None]);
    let web = admit(Method::POST, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "application/grpc-web");
    assert!(matches!(web.target, Target::Own(super::OwnService::ReflectionV1)));
    let off = super::OwnServices { reflection: false, health: true };
    let reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
    assert!(matches!(admit_with(off, Method::POST, reflection, "application/grpc").target, Target::Nothing(_)));
    let rest = admit(Method::POST, "/grpc.health.v1.Health/Check", "application/json");
    assert!(matches!(rest.target, Target::Nothing(_)), "only gRPC and gRPC-Web reach the own services");
}
