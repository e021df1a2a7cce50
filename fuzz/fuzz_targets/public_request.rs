//! Arbitrary requests through the public router, in process: the first
//! byte picks the protocol (REST, Connect unary or streaming, gRPC-Web
//! binary or text), the bytes up to the first newline are the path and
//! query, the rest is the body. This covers path and query parsing
//! (percent-decoding, nested keys, typed values), JSON bodies, Connect
//! envelopes and gRPC-Web framing. Every input must get an answer; the
//! backend address refuses connections, so nothing waits on it.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use http::Request;
use libfuzzer_sys::fuzz_target;
use protogate::config::{Config, Flags};
use protogate::protocol::LiveContext;
use tower::ServiceExt;

struct Setup {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let flags = Flags { upstreams: vec!["http://127.0.0.1:9".into()], ..Flags::default() };
        let config = Config::from_toml("[upstream]\ntimeout = \"50ms\"\nconnect_timeout = \"50ms\"\n", &flags)
            .expect("config");
        let sets = vec![
            ("library".to_string(), protogate::pb::LIBRARY_DESCRIPTOR_SET.to_vec()),
            ("everything".to_string(), protogate::pb::EVERYTHING_DESCRIPTOR_SET.to_vec()),
        ];
        let context = runtime.block_on(protogate::server::build_context(&config, sets)).expect("context");
        let router = runtime.block_on(async { protogate::server::router(LiveContext::new(context), &config) });
        Setup { runtime, router }
    })
}

const CONTENT_TYPES: [(&str, bool); 6] = [
    ("application/json", false),
    ("application/json", true),
    ("application/connect+json", false),
    ("application/connect+proto", false),
    ("application/grpc-web+proto", false),
    ("application/grpc-web-text", false),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let (target, body) = rest.split_at(split);
    let Ok(target) = std::str::from_utf8(target) else { return };
    let (content_type, connect_unary) = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    let method = if selector & 0x80 != 0 { "GET" } else { "POST" };
    let mut request = Request::builder().method(method).uri(format!("/{}", target.trim_start_matches('/')));
    request = request.header("content-type", content_type);
    if connect_unary {
        request = request.header("connect-protocol-version", "1");
    }
    let Ok(request) = request.body(Body::from(body.get(1..).unwrap_or_default().to_vec())) else { return };
    let setup = setup();
    setup.runtime.block_on(async {
        let response = setup.router.clone().oneshot(request).await.expect("infallible");
        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
    });
});
