//! What real clients do that the happy path does not: give up mid-call,
//! send an empty Content-Type, send `{}` on a GET, compress their bodies,
//! expect X-Forwarded-* on every protocol. Against the real binary.

mod common;

use std::time::Duration;

use common::process::{Gateway, spawn_gateway};

async fn gateway(upstream: &str, extra: &[&str]) -> Gateway {
    let descriptor = std::env::temp_dir().join(format!("protogate-interop-{}.binpb", common::process::free_port()));
    std::fs::write(&descriptor, protogate::pb::EVERYTHING_DESCRIPTOR_SET).unwrap();
    let descriptor = descriptor.display().to_string();
    let mut args = vec!["serve", "--descriptor", &descriptor, "--upstream", upstream];
    args.extend_from_slice(&["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    args.extend_from_slice(extra);
    spawn_gateway(&args).await
}

async fn hostile_gateway() -> Gateway {
    let backend = common::hostile::serve().await;
    gateway(&format!("http://{backend}"), &[]).await
}

async fn metrics(g: &Gateway) -> String {
    reqwest::get(format!("{}/metrics", g.admin)).await.unwrap().text().await.unwrap()
}

fn value(metrics: &str, prefix: &str) -> f64 {
    metrics.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test]
async fn a_client_that_gives_up_ends_its_request_once_as_cancelled() {
    let g = hostile_gateway().await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap();
    let abandoned = impatient
        .post(format!("{}/test/v1/echo", g.public))
        .header("content-type", "application/json")
        .header("grpc-metadata-x-hostile", "silent")
        .body("{}")
        .send()
        .await;
    assert!(abandoned.is_err(), "the client gave up");
    // A gRPC client with a deadline gives up the same way.
    let channel = tonic::transport::Channel::from_shared(g.public.clone()).unwrap().connect().await.unwrap();
    let mut client = protogate::pb::protogate::test::v1::echo_service_client::EchoServiceClient::new(channel);
    let mut request = tonic::Request::new(protogate::pb::protogate::test::v1::Everything::default());
    request.metadata_mut().insert("x-hostile", "silent".parse().unwrap());
    request.set_timeout(Duration::from_millis(200));
    assert!(client.echo(request).await.is_err(), "the client gave up at its deadline");

    let mut text = String::new();
    for _ in 0..50 {
        text = metrics(&g).await;
        if value(&text, "protogate_requests_in_flight") == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(value(&text, "protogate_requests_in_flight"), 0.0, "{text}");
    let cancelled =
        value(&text, "protogate_requests_total{") - value(&text, "protogate_requests_total{grpc_code=\"0\"");
    assert_eq!(cancelled, 2.0, "each abandoned request counted once: {text}");
    assert!(text.contains("http_status=\"499\""), "{text}");
}

#[tokio::test]
async fn go_style_empty_content_types_and_empty_bodies_on_gets_are_accepted() {
    let g = hostile_gateway().await;
    let client = reqwest::Client::new();
    let response =
        client.post(format!("{}/test/v1/echo", g.public)).header("content-type", "").body("{}").send().await.unwrap();
    assert_eq!(response.status(), 200, "an empty Content-Type is like none");
    for body in ["{}", " { } ", "\n"] {
        let response = client.get(format!("{}/test/v1/metadata", g.public)).body(body).send().await.unwrap();
        assert_eq!(response.status(), 200, "{body:?} on a rule without a body");
    }
    let response = client.get(format!("{}/test/v1/metadata", g.public)).body(r#"{"a": 1}"#).send().await.unwrap();
    assert_eq!(response.status(), 400, "a body with a field stays refused");
}

#[tokio::test]
async fn a_request_body_in_an_unknown_or_broken_encoding_is_refused_naming_it() {
    let g = hostile_gateway().await;
    let send = |encoding: &'static str, body: Vec<u8>| {
        reqwest::Client::new()
            .post(format!("{}/test/v1/echo", g.public))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(body)
            .send()
    };
    let unknown = send("compress", b"{}".to_vec()).await.unwrap();
    assert_eq!(unknown.status(), 415);
    assert!(unknown.text().await.unwrap().contains("Content-Encoding \\\"compress\\\""));
    // A gzip header and nothing after it.
    let truncated = send("gzip", vec![0x1f, 0x8b, 8, 0]).await.unwrap();
    assert_eq!(truncated.status(), 400);
    assert!(truncated.text().await.unwrap().contains("cannot read the request body"));
}

#[tokio::test]
async fn a_repeated_upstream_for_one_service_is_refused_at_start() {
    let output = tokio::process::Command::new(common::process::BIN)
        .args(["serve", "--upstream", "protogate.test.v1.EchoService=http://127.0.0.1:1"])
        .args(["--upstream", "protogate.test.v1.EchoService=http://127.0.0.1:2", "--listen", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("service protogate.test.v1.EchoService is given more than once"), "{stderr}");
}

#[tokio::test]
async fn forwarded_headers_reach_the_backend_from_every_protocol() {
    let h = common::Harness::start().await;
    let rest: serde_json::Value = h.client.get(h.url("/test/v1/metadata")).send().await.unwrap().json().await.unwrap();
    let connect: serde_json::Value = h
        .client
        .post(h.url("/protogate.test.v1.EchoService/EchoMetadata"))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .header("x-forwarded-for", "203.0.113.9")
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(h.base.clone()).unwrap().connect().await.unwrap();
    let mut client = protogate::pb::protogate::test::v1::echo_service_client::EchoServiceClient::new(channel);
    let grpc = client.echo_metadata(()).await.unwrap().into_inner().entries;
    let host = h.base.trim_start_matches("http://");
    assert_eq!(rest["entries"]["x-forwarded-for"], "127.0.0.1", "{rest}");
    assert_eq!(connect["entries"]["x-forwarded-for"], "203.0.113.9, 127.0.0.1", "{connect}");
    assert_eq!(connect["entries"]["x-forwarded-host"], host, "{connect}");
    assert_eq!(grpc.get("x-forwarded-for").map(String::as_str), Some("127.0.0.1"), "{grpc:?}");
    assert_eq!(grpc.get("x-forwarded-host").map(String::as_str), Some(host), "{grpc:?}");
}

/// Runs the connect-node client script against `g`: the code per call.
async fn connect_node(g: &Gateway) -> Option<serde_json::Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
    if !std::path::Path::new(dir).join("node_modules/@connectrpc/connect-node").exists() {
        common::skip("connect-node", "cd tests/clients && npm install");
        return None;
    }
    let sets = std::env::temp_dir().join(format!("protogate-node-{}", common::process::free_port()));
    std::fs::create_dir_all(&sets).unwrap();
    std::fs::write(sets.join("echo.binpb"), protogate::pb::EVERYTHING_DESCRIPTOR_SET).unwrap();
    std::fs::write(sets.join("library.binpb"), protogate::pb::LIBRARY_DESCRIPTOR_SET).unwrap();
    let output = tokio::process::Command::new("node")
        .arg(format!("{dir}/connect_refusals.mjs"))
        .arg(&g.public)
        .arg(sets.join("echo.binpb"))
        .arg(sets.join("library.binpb"))
        .output()
        .await
        .expect("node runs");
    let _ = std::fs::remove_dir_all(&sets);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    Some(serde_json::from_str(stdout.trim()).unwrap())
}

#[tokio::test]
async fn connect_node_reads_every_refusal_with_its_code() {
    let backend = format!("http://{}", common::hostile::serve().await);
    let key = "sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"";
    let config = std::env::temp_dir().join(format!("protogate-interop-{}.toml", common::process::free_port()));
    std::fs::write(
        &config,
        format!("[auth]\ndefault = \"authenticated\"\n[auth.api_keys]\nkeys = [{{ consumer = \"c\", {key} }}]\n"),
    )
    .unwrap();
    let g = gateway(&backend, &["--config", &config.display().to_string()]).await;
    let Some(refused) = connect_node(&g).await else { return };
    for version in ["1.1", "2"] {
        for call in ["server stream", "large unary", "unknown stream"] {
            let got = refused[format!("{version} {call}")].as_str().unwrap_or_default().to_string();
            assert!(got.starts_with("Unauthenticated"), "{version} {call}: {got}");
        }
    }
    let open = gateway(&backend, &[]).await;
    let Some(served) = connect_node(&open).await else { return };
    for version in ["1.1", "2"] {
        let got = served[format!("{version} unknown stream")].as_str().unwrap_or_default().to_string();
        assert!(got.starts_with("Unimplemented: unknown method"), "{version}: {got}");
    }
}

#[tokio::test]
async fn json_options_apply_inside_error_details_too() {
    let h = common::Harness::start_with("[json]\nproto_field_names = true\n").await;
    let (status, body) = h.get_json("/v1/shelves/1/books?pageSize=-1").await;
    assert_eq!(status, 400);
    assert_eq!(body["details"][0]["field_violations"][0]["field"], "page_size", "{body}");
    assert!(body["details"][0].get("fieldViolations").is_none(), "{body}");
    let connect = h
        .client
        .post(h.url("/library.v1.LibraryService/ListBooks"))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .body(r#"{"parent": "shelves/1", "pageSize": -1}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = common::read_json(connect).await;
    assert_eq!(status, 400);
    assert_eq!(body["details"][0]["debug"]["field_violations"][0]["field"], "page_size", "{body}");
}

#[tokio::test]
async fn backend_metadata_reaches_rest_and_connect_clients_with_errors_too() {
    let g = hostile_gateway().await;
    let client = reqwest::Client::new();
    let rest = client
        .post(format!("{}/test/v1/echo", g.public))
        .header("content-type", "application/json")
        .header("grpc-metadata-x-hostile", "error-with-metadata")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 404);
    assert_eq!(rest.headers()["grpc-metadata-x-header-meta"], "h");
    assert_eq!(rest.headers()["grpc-trailer-x-trailer-meta"], "t");
    let connect = client
        .post(format!("{}/protogate.test.v1.EchoService/Echo", g.public))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .header("x-hostile", "error-with-metadata")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(connect.status(), 404);
    assert_eq!(connect.headers()["x-header-meta"], "h");
    assert_eq!(connect.headers()["trailer-x-trailer-meta"], "t");
}

#[tokio::test]
async fn registering_by_reflection_works_against_a_grpcio_server() {
    use tokio::io::AsyncBufReadExt;
    let sets = std::env::temp_dir().join(format!("protogate-grpcio-{}.binpb", common::process::free_port()));
    std::fs::write(&sets, protogate::pb::LIBRARY_DESCRIPTOR_SET).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/grpcio_reflection.py");
    let spawned = tokio::process::Command::new("python3")
        .args([script, &sets.display().to_string(), "library.v1.LibraryService"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut server = spawned.expect("python3 runs");
    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let port = match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
        Ok(Ok(Some(port))) => port,
        _ => {
            let mut stderr = String::new();
            use tokio::io::AsyncReadExt;
            let _ = server.stderr.take().unwrap().read_to_string(&mut stderr).await;
            common::skip(&format!("grpcio ({})", stderr.trim()), "pip install grpcio grpcio-reflection");
            return;
        }
    };
    let g = hostile_gateway().await;
    let started = std::time::Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/descriptor-sets/library:reflect?upstream=http://127.0.0.1:{port}", g.admin))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(text.contains("library.v1.LibraryService"), "{text}");
    let _ = std::fs::remove_file(&sets);
}

#[tokio::test]
async fn a_buf_built_set_registers_next_to_a_protoc_style_one() {
    let Some(buf) = common::npm_tool(".ci/tools", "buf") else { return };
    let out = std::env::temp_dir().join(format!("protogate-buf-{}.binpb", common::process::free_port()));
    let built = tokio::process::Command::new(&buf)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/proto"))
        .args(["build", "--path", "protogate/test/v1", "-o"])
        .arg(&out)
        .output()
        .await
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    // The gateway already holds the library set, whose well-known-type files
    // protox wrote; buf writes the same files with source info.
    let library = std::env::temp_dir().join(format!("protogate-lib-{}.binpb", common::process::free_port()));
    std::fs::write(&library, protogate::pb::LIBRARY_DESCRIPTOR_SET).unwrap();
    let library = library.display().to_string();
    let args = ["serve", "--descriptor", &library, "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0"];
    let g = spawn_gateway(&[&args[..], &["--admin-listen", "127.0.0.1:0"]].concat()).await;
    let response = reqwest::Client::new()
        .put(format!("{}/v1/descriptor-sets/echo", g.admin))
        .header("content-type", "application/octet-stream")
        .body(std::fs::read(&out).unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(status, 201, "{}", response.text().await.unwrap());
    let _ = std::fs::remove_file(&out);
}

#[tokio::test]
async fn a_patch_without_a_field_mask_changes_only_what_its_body_names() {
    let h = common::Harness::start().await;
    let patch = |h: &common::Harness, body: &'static str| {
        h.client.patch(h.url("/v1/shelves/1/books/2")).header("content-type", "application/json").body(body).send()
    };
    let (status, body) = common::read_json(patch(&h, r#"{"title": "Earthsea"}"#).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["title"], &body["author"]), (&"Earthsea".into(), &"Ursula K. Le Guin".into()), "{body}");

    // Off by configuration: the backend sees no mask (here: replace all).
    let h = common::Harness::start_with("[json]\npatch_field_mask = false\n").await;
    let (status, body) = common::read_json(patch(&h, r#"{"title": "Earthsea"}"#).await.unwrap()).await;
    assert_eq!((status, body.get("author")), (200, None), "{body}");
}

/// A set with one good route, one whose template names no field, and one
/// that duplicates the good one.
fn set_with_bad_routes() -> Vec<u8> {
    let text = "syntax = \"proto3\";\npackage mixed.v1;\nimport \"google/api/annotations.proto\";\n\
        message M { string name = 1; }\nservice S {\n\
        rpc Good(M) returns (M) { option (google.api.http) = { get: \"/v1/good/{name}\" }; }\n\
        rpc Bad(M) returns (M) { option (google.api.http) = { get: \"/v1/bad/{nope}\" }; }\n\
        rpc Twin(M) returns (M) { option (google.api.http) = { get: \"/v1/good/{name}\" }; }\n}\n";
    protogate::registry::source::compile_protos(&[("mixed/v1/mixed.proto".into(), text.into())], &[]).unwrap()
}

#[tokio::test]
async fn lenient_routes_serve_what_is_valid_and_report_what_was_skipped() {
    let config = std::env::temp_dir().join(format!("protogate-lenient-{}.toml", common::process::free_port()));
    std::fs::write(&config, "[registry]\nlenient_routes = true\n").unwrap();
    let strict = gateway("http://127.0.0.1:1", &[]).await;
    let lenient = gateway("http://127.0.0.1:1", &["--config", &config.display().to_string()]).await;
    let put = |g: &Gateway| {
        reqwest::Client::new()
            .put(format!("{}/v1/descriptor-sets/mixed", g.admin))
            .header("content-type", "application/octet-stream")
            .body(set_with_bad_routes())
            .send()
    };
    assert!(put(&strict).await.unwrap().status().is_client_error(), "all-or-nothing by default");
    let response = put(&lenient).await.unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    let skipped = body["skippedRoutes"].to_string();
    assert!(skipped.contains("mixed.v1.S.Bad") && skipped.contains("route conflict"), "{body}");
    let routes = body["routes"].to_string();
    assert!(routes.contains("/v1/good/{name}") && !routes.contains("/v1/bad"), "{body}");
    assert!(metrics(&lenient).await.contains("protogate_skipped_routes 2"));

    let file = std::env::temp_dir().join(format!("protogate-mixed-{}.binpb", common::process::free_port()));
    std::fs::write(&file, set_with_bad_routes()).unwrap();
    let validate = |lenient: bool| {
        let mut command = tokio::process::Command::new(common::process::BIN);
        command.arg("validate").arg(&file);
        if lenient {
            command.arg("--lenient");
        }
        command.output()
    };
    assert!(!validate(false).await.unwrap().status.success());
    let output = validate(true).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains("skipped: ") && stdout.contains(", 2 skipped"), "{stdout}");
}

#[tokio::test]
async fn the_grpc_gateway_profile_follows_its_conventions() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = common::Harness::start_with("profile = \"grpc-gateway\"\n[admin]\nlisten = \"127.0.0.1:0\"\n").await;
    // Stream messages wrapped as {"result": …}, defaults emitted.
    let text =
        h.client.get(h.url("/test/v1/stream?count=2&message.fString=s")).send().await.unwrap().text().await.unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["result"]["fString"], "s", "{text}");
    assert_eq!(lines[0]["result"]["fInt32"], 0, "defaults are emitted: {text}");
    // Unknown fields and query parameters ignored, and counted.
    let (status, body) = h.post_json("/test/v1/echo?nope=1", r#"{"fString": "x", "unknownField": 1}"#).await;
    assert_eq!((status, &body["fString"]), (200, &"x".into()), "{body}");
    let metrics =
        h.client.get(format!("{}/metrics", h.admin.as_ref().unwrap())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("protogate_ignored_unknown_input_total 2"), "{metrics}");
    // Trailer metadata as HTTP trailers for a client that sends TE: trailers.
    let mut tcp = tokio::net::TcpStream::connect(h.base.trim_start_matches("http://")).await.unwrap();
    let request = "POST /test/v1/echo HTTP/1.1\r\nhost: x\r\nte: trailers\r\ncontent-type: application/json\r\n\
                   grpc-metadata-echo-trailer-x-done: yes\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains("transfer-encoding: chunked") && head.to_lowercase().contains("trailer: grpc-trailer-x-done"),
        "{answer}"
    );
    assert!(!head.contains("grpc-trailer-x-done: yes"), "not as a header: {answer}");
    assert!(body.contains("grpc-trailer-x-done: yes"), "{answer}");
}

#[tokio::test]
async fn declared_success_codes_answer_201_with_a_location_and_204_without_a_body() {
    let config = "[[responses]]\nselector = \"library.v1.LibraryService.CreateShelf\"\nstatus = 201\nlocation = \"/v1/{name}\"\n\
                  [[responses]]\nselector = \"library.v1.LibraryService.DeleteShelf\"\nstatus = 204\n";
    let h = common::Harness::start_with(config).await;
    let created = h
        .client
        .post(h.url("/v1/shelves?shelfId=new"))
        .header("content-type", "application/json")
        .body(r#"{"theme": "t"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/v1/shelves/new");
    let deleted = h.client.delete(h.url("/v1/shelves/new")).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(deleted.headers().get("content-type").is_none());
    assert!(deleted.bytes().await.unwrap().is_empty());
    // Errors keep their own status; other methods answer 200.
    assert_eq!(h.client.delete(h.url("/v1/shelves/new")).send().await.unwrap().status(), 404);
    assert_eq!(h.get_json("/v1/shelves/1").await.0, 200);
    let (_, document) = h.get_json("/openapi.json").await;
    let create = &document["paths"]["/v1/shelves"]["post"]["responses"];
    assert!(create["201"]["headers"]["Location"].is_object() && create.get("200").is_none(), "{create}");
    assert_eq!(document["paths"]["/v1/shelves/{shelves}"]["delete"]["responses"]["204"]["description"], "No content");
}
