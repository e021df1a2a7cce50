//! Each protocol's renderer, one case table: a refusal's code, HTTP status
//! override and headers come out in the protocol's own form.

use http::HeaderMap;
use http_body_util::BodyExt;
use tonic::Code;

use super::render;
use crate::admission::Protocol;
use crate::error::Error;

fn refusals() -> Vec<(&'static str, Error)> {
    let mut unauthenticated = Error::client(Code::Unauthenticated, "credentials are required");
    unauthenticated.set_header(http::header::WWW_AUTHENTICATE, "Bearer realm=\"protogate\"");
    let mut limited = Error::client(Code::ResourceExhausted, "rate limit exceeded; retry in 2s");
    limited.http_status = Some(http::StatusCode::TOO_MANY_REQUESTS);
    limited.retry_after = Some(2);
    limited.set_header(http::HeaderName::from_static("ratelimit-remaining"), "0");
    let mut shed = Error::client(Code::Unavailable, "the gateway is at capacity; retry shortly");
    shed.http_status = Some(http::StatusCode::SERVICE_UNAVAILABLE);
    shed.retry_after = Some(1);
    vec![
        ("401", unauthenticated),
        ("429", limited),
        ("405", Error::method_not_allowed("PATCH", "/v1/shelves/1", "GET, DELETE".into())),
        ("503", shed),
        ("404", Error::not_found("/v2/nothing")),
    ]
}

async fn rendered(protocol: Protocol, error: &Error, content_type: &str) -> (u16, HeaderMap, String) {
    let headers = HeaderMap::from_iter([(http::header::CONTENT_TYPE, content_type.parse().unwrap())]);
    let response = render(protocol, error, &headers);
    let (parts, body) = response.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (parts.status.as_u16(), parts.headers, body)
}

/// (refusal, REST status and body, Connect status and body, gRPC status
/// code and message) for every refusal; every form carries the refusal's
/// headers.
#[tokio::test]
async fn every_protocol_renders_every_refusal_in_its_own_form() {
    let expected = [
        (
            "401",
            401,
            r#"{"code":16,"message":"credentials are required","details":[]}"#,
            r#"{"code":"unauthenticated","message":"credentials are required"}"#,
            "16",
            "credentials%20are%20required",
        ),
        (
            "429",
            429,
            r#"{"code":8,"message":"rate limit exceeded; retry in 2s","details":[]}"#,
            r#"{"code":"resource_exhausted","message":"rate limit exceeded; retry in 2s"}"#,
            "8",
            "rate%20limit%20exceeded;%20retry%20in%202s",
        ),
        (
            "405",
            405,
            r#"{"code":12,"message":"method PATCH is not allowed on \"/v1/shelves/1\"; allowed: GET, DELETE","details":[]}"#,
            r#"{"code":"unimplemented","message":"method PATCH is not allowed on \"/v1/shelves/1\"; allowed: GET, DELETE"}"#,
            "12",
            "method%20PATCH%20is%20not%20allowed%20on%20%22/v1/shelves/1%22;%20allowed:%20GET,%20DELETE",
        ),
        (
            "503",
            503,
            r#"{"code":14,"message":"the gateway is at capacity; retry shortly","details":[]}"#,
            r#"{"code":"unavailable","message":"the gateway is at capacity; retry shortly"}"#,
            "14",
            "the%20gateway%20is%20at%20capacity;%20retry%20shortly",
        ),
        (
            "404",
            404,
            r#"{"code":5,"message":"no route matches \"/v2/nothing\"","details":[]}"#,
            r#"{"code":"not_found","message":"no route matches \"/v2/nothing\""}"#,
            "5",
            "no%20route%20matches%20%22/v2/nothing%22",
        ),
    ];
    let carried = |name: &str| -> Vec<(&'static str, &'static str)> {
        match name {
            "401" => vec![("www-authenticate", "Bearer realm=\"protogate\"")],
            "429" => vec![("retry-after", "2"), ("ratelimit-remaining", "0")],
            "405" => vec![("allow", "GET, DELETE")],
            "503" => vec![("retry-after", "1")],
            _ => vec![],
        }
    };
    for ((name, error), (case, status, rest, connect, code, message)) in refusals().into_iter().zip(expected) {
        assert_eq!(name, case);
        let forms = [
            (Protocol::Rest, "application/json", status, rest, "application/json"),
            (Protocol::Connect, "application/json", status, connect, "application/json"),
            (Protocol::Grpc, "application/grpc", 200, "", "application/grpc"),
            (Protocol::GrpcWeb, "application/grpc-web-text", 200, "", "application/grpc-web-text"),
            (Protocol::GrpcWeb, "application/grpc-web+proto", 200, "", "application/grpc-web+proto"),
        ];
        for (protocol, asked, status, body, content_type) in forms {
            let (got_status, headers, got_body) = rendered(protocol, &error, asked).await;
            let what = format!("{name} {protocol:?} {asked}");
            assert_eq!((got_status, got_body.as_str()), (status, body), "{what}");
            assert_eq!(headers["content-type"], content_type, "{what}");
            if matches!(protocol, Protocol::Grpc | Protocol::GrpcWeb) {
                assert_eq!(
                    (&headers["grpc-status"], &headers["grpc-message"]),
                    (&code.parse().unwrap(), &message.parse().unwrap()),
                    "{what}"
                );
            }
            for (header, value) in carried(name) {
                assert_eq!(headers.get(header).map(|v| v.to_str().unwrap()), Some(value), "{what}: {header}");
            }
        }
    }
}
