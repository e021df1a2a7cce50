//! What browsers need: CORS (preflights and exposed headers), stream formats
//! chosen by Accept, client streams from request bodies, and WebSocket.

mod common;

use common::Harness;

const CORS: &str = "[cors]\nallowed_origins = [\"https://app.example.com\", \"http://localhost:*\"]\nexposed_headers = [\"grpc-metadata-colour\"]\nmax_age = \"1h\"";

#[tokio::test]
async fn preflights_and_responses_carry_cors_headers_for_allowed_origins_only() {
    let h = Harness::start_with(CORS).await;
    let preflight = h
        .client
        .request(
            reqwest::Method::OPTIONS,
            h.url("/protogate.test.v1.EchoService/Echo"),
        )
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,connect-protocol-version,grpc-timeout",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    let headers = preflight.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert_eq!(headers["access-control-max-age"], "3600");
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    for header in [
        "x-grpc-web",
        "connect-protocol-version",
        "grpc-timeout",
        "x-user-agent",
    ] {
        assert!(allowed.contains(header), "{allowed}");
    }
    assert_eq!(h.calls(), 0, "a preflight never reaches the backend");

    let response = h
        .client
        .get(h.url("/v1/shelves/1"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(
        exposed.contains("grpc-status") && exposed.contains("grpc-metadata-colour"),
        "{exposed}"
    );

    let foreign = h
        .client
        .get(h.url("/v1/shelves/1"))
        .header("origin", "https://evil.example.org")
        .send()
        .await
        .unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn without_cors_configuration_no_cors_headers_are_sent() {
    let h = Harness::start().await;
    let response = h
        .client
        .get(h.url("/v1/shelves/1"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}
