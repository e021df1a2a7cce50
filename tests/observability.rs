//! The access log and Prometheus metrics: one JSON log line per request with
//! transcoding and backend time apart, and `/metrics` read by a real
//! Prometheus text parser (the PyPI `prometheus_client`).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::Harness;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_protogate");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Parses Prometheus text with `prometheus_client` into
/// `[[name, labels, value], …]`, or `None` (a printed skip) outside CI.
/// One sample: metric name, labels, value.
type Sample = (String, serde_json::Map<String, Value>, f64);

fn parse_prometheus(text: &str) -> Option<Vec<Sample>> {
    let script = "import json, sys\nfrom prometheus_client.parser import text_string_to_metric_families\n\
                  print(json.dumps([[s.name, s.labels, s.value] for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    if String::from_utf8_lossy(&output.stderr).contains("No module named 'prometheus_client'") {
        common::skip("prometheus-client", "pip install prometheus-client");
        return None;
    }
    assert!(
        output.status.success(),
        "the Prometheus parser refused the text: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let samples: Vec<Sample> = serde_json::from_slice(&output.stdout).unwrap();
    Some(samples)
}

#[tokio::test]
async fn metrics_count_every_protocol_and_split_latency() {
    let h = Harness::start_with("[admin]\nlisten = \"127.0.0.1:0\"").await;
    assert_eq!(h.get_json("/v1/shelves/1").await.0, 200);
    assert_eq!(h.get_json("/v1/shelves/1").await.0, 200);
    assert_eq!(h.get_json("/v1/shelves/404").await.0, 404);
    assert_eq!(h.get_json("/nowhere").await.0, 404);
    let connect = h
        .client
        .post(h.url("/library.v1.LibraryService/GetShelf"))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .body(r#"{"name": "shelves/2"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(connect.status(), 200);
    connect.bytes().await.unwrap();
    // Metrics are recorded when a response body is done; give the last one a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let text =
        h.client.get(format!("{}/metrics", h.admin.as_ref().unwrap())).send().await.unwrap().text().await.unwrap();
    let Some(samples) = parse_prometheus(&text) else { return };
    let find = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).and_then(Value::as_str) == Some(*v)))
            .map(|(_, _, value)| value)
            .sum()
    };
    let get_shelf =
        [("protocol", "rest"), ("route", "/v1/{name=shelves/*}"), ("rpc", "library.v1.LibraryService.GetShelf")];
    assert_eq!(
        find("protogate_requests_total", &[&get_shelf[..], &[("http_status", "200"), ("grpc_code", "0")]].concat()),
        2.0
    );
    assert_eq!(
        find("protogate_requests_total", &[&get_shelf[..], &[("http_status", "404"), ("grpc_code", "5")]].concat()),
        1.0
    );
    assert_eq!(find("protogate_requests_total", &[("protocol", "rest"), ("route", ""), ("http_status", "404")]), 1.0);
    assert_eq!(
        find("protogate_requests_total", &[("protocol", "connect"), ("rpc", "library.v1.LibraryService.GetShelf")]),
        1.0
    );
    let rpc = [("protocol", "rest"), ("rpc", "library.v1.LibraryService.GetShelf")];
    assert_eq!(find("protogate_backend_duration_seconds_count", &rpc), 3.0);
    assert!(find("protogate_backend_duration_seconds_sum", &rpc) > 0.0);
    assert!(find("protogate_transcode_duration_seconds_sum", &rpc) > 0.0);
    // Connect records its transcoding and backend time the same way.
    let connect = [("protocol", "connect"), ("rpc", "library.v1.LibraryService.GetShelf")];
    assert_eq!(find("protogate_backend_duration_seconds_count", &connect), 1.0);
    assert!(find("protogate_backend_duration_seconds_sum", &connect) > 0.0);
    assert!(find("protogate_transcode_duration_seconds_sum", &connect) > 0.0);
    assert_eq!(find("protogate_requests_in_flight", &[]), 0.0);
    assert_eq!(find("protogate_snapshot_generation", &[]), 1.0);
}

#[tokio::test]
async fn the_access_log_has_one_json_line_per_request_with_split_times() {
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", backend.local_addr().unwrap());
    protogate::example::serve_library(backend);
    // An API key, so the line names the consumer (the key is "k").
    let config = std::env::temp_dir().join(format!("protogate-log-{}.toml", std::process::id()));
    let hash = "8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a";
    // The demo's composite, for its line listing every call.
    let overview = include_str!("../examples/compose/overview.toml");
    let keys = format!("[auth.api_keys]\nkeys = [{{ consumer = \"reporting\", sha256 = \"{hash}\" }}]\n");
    std::fs::write(&config, format!("{overview}\n{keys}")).unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let args = [
        "serve",
        "--log-format",
        "json",
        "--config",
        &config_arg,
        "--descriptor",
        "descriptors/library.binpb",
        "--upstream",
        &upstream,
        "--listen",
        "127.0.0.1:0",
    ];
    let mut child = tokio::process::Command::new(BIN)
        .args(args)
        .current_dir(ROOT)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut address = None;
    while address.is_none() {
        let line: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        address = line["local_addr"].as_str().map(str::to_string);
    }
    let base = format!("http://{}", address.unwrap());
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/shelves/1"))
        .header("x-request-id", "req-42")
        .header("x-api-key", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-42");
    response.bytes().await.unwrap();

    let mut next_access = async || {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let line: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
                if line["target"] == "protogate::access" {
                    return line;
                }
            }
        })
        .await
        .expect("no access log line")
    };
    let access = next_access().await;
    assert_eq!(access["request_id"], "req-42");
    assert_eq!(access["route"], "/v1/{name=shelves/*}");
    assert_eq!(access["rpc"], "library.v1.LibraryService.GetShelf");
    assert_eq!(access["protocol"], "rest");
    assert_eq!(access["status"], 200);
    assert_eq!(access["grpc_code"], "0");
    assert_eq!(access["client"], "127.0.0.1");
    assert_eq!(access["consumer"], "reporting");
    assert!(access["bytes_out"].as_u64().unwrap() > 20, "{access}");
    for field in ["total_us", "transcode_us", "backend_us"] {
        assert!(access[field].is_u64(), "{field} in {access}");
    }
    assert!(access["backend_us"].as_u64() > Some(0), "{access}");
    assert!(access.get("calls").is_none(), "{access}");

    // A composite's line lists each backend call: name, code, time.
    let response = reqwest::Client::new().get(format!("{base}/v1/shelves/1:overview")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    let access = next_access().await;
    assert_eq!((&access["route"], &access["rpc"]), (&json!("/v1/shelves/{shelf}:overview"), &json!("composite")));
    let calls: Vec<(&str, &str)> = access["calls"]
        .as_str()
        .unwrap()
        .split(' ')
        .map(|call| call.split_once(':').unwrap())
        .inspect(|(_, micros)| assert!(micros.parse::<u64>().unwrap() > 0, "{access}"))
        .collect();
    let names: Vec<&str> = calls.iter().map(|(name, _)| *name).collect();
    // Shelf 1 has three books by two authors: each author is asked once.
    assert_eq!(names, ["shelf=0", "books=0", "authors=0", "authors=0"], "{access}");
    assert!(access["backend_us"].as_u64() > Some(0), "{access}");
}

#[tokio::test]
async fn unary_rest_and_connect_calls_take_the_fast_transcoder_and_handovers_are_counted() {
    let h = Harness::start_with("[admin]\nlisten = \"127.0.0.1:0\"").await;
    assert_eq!(h.get_json("/v1/shelves/1").await.0, 200);
    let (status, body) =
        h.post_json("/test/v1/echo", r#"{"fInt64": "7", "rString": ["a"], "mString": {"k": "v"}}"#).await;
    assert_eq!(
        (status, &body["fInt64"], &body["mString"]["k"]),
        (200, &serde_json::json!("7"), &serde_json::json!("v"))
    );
    // An Any is always handed over to prost-reflect, with the same result.
    let any = r#"{"wAny": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1s"}}"#;
    let (status, body) = h.post_json("/test/v1/echo", any).await;
    assert_eq!((status, &body["wAny"]["value"]), (200, &serde_json::json!("1s")), "{body}");
    // Connect JSON takes the same fast path, both ways.
    let connect = h
        .client
        .post(h.url("/protogate.test.v1.EchoService/Echo"))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .body(r#"{"fInt64": "9", "mString": {"k": "w"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(connect.status(), 200);
    let body: serde_json::Value = connect.json().await.unwrap();
    assert_eq!((&body["fInt64"], &body["mString"]["k"]), (&serde_json::json!("9"), &serde_json::json!("w")));
    let count = transcode_counts(&h).await;
    assert_eq!(count("request", "fast"), 2.0, "the echo body, and Connect's");
    assert_eq!(count("request", "handover"), 2.0, "the GET without a body, and the Any");
    assert_eq!(count("response", "fast"), 3.0);
    assert_eq!(count("response", "handover"), 1.0, "the Any");
}

/// `protogate_fast_transcode_total` by (direction, path).
async fn transcode_counts(h: &Harness) -> impl Fn(&str, &str) -> f64 {
    let metrics = h.client.get(format!("{}/metrics", h.admin.as_ref().unwrap())).send().await.unwrap();
    let samples = parse_prometheus(&metrics.text().await.unwrap()).expect("parses");
    move |direction: &str, path: &str| {
        samples
            .iter()
            .find(|(name, labels, _)| {
                name == "protogate_fast_transcode_total"
                    && labels.get("direction").and_then(|v| v.as_str()) == Some(direction)
                    && labels.get("path").and_then(|v| v.as_str()) == Some(path)
            })
            .map_or(0.0, |(_, _, value)| *value)
    }
}

/// Stream messages take the same fast transcoder as unary answers on every
/// protocol; a message it cannot take (an Any) is handed over and still
/// rendered the same way.
#[tokio::test]
async fn stream_messages_take_the_fast_transcoder_on_rest_connect_and_websocket() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let h = Harness::start_with("[admin]\nlisten = \"127.0.0.1:0\"").await;
    let ndjson = h.client.get(h.url("/v1/shelves/1/books:stream")).send().await.unwrap().text().await.unwrap();
    let books: Vec<Value> = ndjson.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(books.len(), 3, "{ndjson}");
    assert_eq!(books[0]["name"], "shelves/1/books/1");

    let connect = |path: &str, json: &str| {
        let mut body = vec![0];
        body.extend_from_slice(&(json.len() as u32).to_be_bytes());
        body.extend_from_slice(json.as_bytes());
        h.client.post(h.url(path)).header("content-type", "application/connect+json").body(body).send()
    };
    let streamed = connect("/library.v1.LibraryService/StreamBooks", r#"{"parent": "shelves/1"}"#).await.unwrap();
    let bytes = streamed.bytes().await.unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains(r#""name":"shelves/1/books/3""#), "{bytes:?}");
    let any = r#"{"message": {"wAny": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1s"}}, "count": 2}"#;
    let echoed = connect("/protogate.test.v1.EchoService/EchoStream", any).await.unwrap().bytes().await.unwrap();
    let text = String::from_utf8_lossy(&echoed);
    assert_eq!(text.matches(r#""value":"1s""#).count(), 2, "{text}");

    let url = format!("{}/v1/shelves/1/books:stream", h.base.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.send(Message::text("{}")).await.unwrap();
    let mut texts = 0;
    while let Some(Ok(message)) = socket.next().await {
        match message {
            Message::Text(text) => {
                assert!(text.contains(r#""name":"shelves/1/books/"#), "{text}");
                texts += 1;
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(texts, 3);
    // A REST client stream: each NDJSON line is a request message, and the
    // one answer renders from wire form.
    let collected = h
        .client
        .post(h.url("/test/v1/collect"))
        .header("content-type", "application/x-ndjson")
        .body("{\"fString\": \"a\"}\n{\"fString\": \"b\"}\n")
        .send()
        .await
        .unwrap();
    let collected: Value = collected.json().await.unwrap();
    assert_eq!(collected["rString"], serde_json::json!(["a", "b"]), "{collected}");

    let count = transcode_counts(&h).await;
    assert_eq!(count("response", "fast"), 10.0, "three books each over REST, Connect and WebSocket; Collect's answer");
    assert_eq!(count("response", "handover"), 2.0, "the two echoed Any messages");
    assert_eq!(count("request", "fast"), 4.0, "Connect's StreamBooks request, the WebSocket's, Collect's two lines");
    assert_eq!(count("request", "handover"), 2.0, "the REST GET without a body, and the Any");
}
