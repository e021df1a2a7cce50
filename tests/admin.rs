//! The admin API end to end: registration by curl-shaped requests, every
//! refusal leaving the running snapshot untouched, versions, rollback,
//! deletion, persistence across restarts, and swaps under load.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::Harness;
use protogate::pb;
use serde_json::{Value, json};

const TOKEN: &str = "test-token";

fn config(extra: &str) -> String {
    format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n{extra}")
}

async fn library_only(extra: &str) -> Harness {
    let sets = vec![("library".to_string(), pb::LIBRARY_DESCRIPTOR_SET.to_vec())];
    Harness::start_with_sets(&config(extra), sets).await
}

/// An admin request with the token; returns status and JSON body.
async fn admin(h: &Harness, method: &str, path: &str, body: Option<(&str, Vec<u8>)>) -> (u16, Value) {
    let url = format!("{}{path}", h.admin.as_ref().unwrap());
    let mut request = h.client.request(method.parse().unwrap(), url).bearer_auth(TOKEN);
    if let Some((content_type, bytes)) = body {
        request = request.header("content-type", content_type).body(bytes);
    }
    common::read_json(request.send().await.unwrap()).await
}

fn everything() -> Option<(&'static str, Vec<u8>)> {
    Some(("application/octet-stream", pb::EVERYTHING_DESCRIPTOR_SET.to_vec()))
}

#[tokio::test]
async fn a_registered_set_is_live_at_once_and_replacing_it_makes_a_version() {
    let h = library_only("").await;
    let (status, _) = h.get_json("/test/v1/echo?fInt32=1").await;
    assert_eq!(status, 404);

    let path = format!("/v1/descriptor-sets/everything?upstream=http://{}", h.echo_addr);
    let (status, body) = admin(&h, "PUT", &path, everything()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "everything");
    assert_eq!(body["version"], 1);
    assert!(body["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(body["services"], json!(["protogate.test.v1.EchoService"]));
    assert!(
        body["routes"]
            .as_array()
            .unwrap()
            .contains(&json!({"method": "POST", "path": "/test/v1/echo", "rpc": "protogate.test.v1.EchoService.Echo"}))
    );

    let (status, body) = h.get_json("/test/v1/echo?fInt32=1").await;
    assert_eq!((status, body), (200, json!({"fInt32": 1})));

    let (status, body) = admin(&h, "PUT", &path, everything()).await;
    assert_eq!((status, &body["version"]), (200, &json!(1)), "identical bytes are not a new version");

    let (status, body) = admin(&h, "GET", "/v1/descriptor-sets", None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["sets"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["everything", "library"]);
    let (status, routes) = admin(&h, "GET", "/v1/routes", None).await;
    assert_eq!(status, 200);
    assert!(routes["routes"].as_array().unwrap().iter().any(|r| r["path"] == "/v1/shelves" && r["set"] == "library"));
}

#[tokio::test]
async fn every_call_needs_the_token() {
    let h = library_only("").await;
    for (method, path) in [
        ("GET", "/v1/descriptor-sets"),
        ("PUT", "/v1/descriptor-sets/x"),
        ("GET", "/v1/routes"),
        ("DELETE", "/v1/descriptor-sets/library"),
    ] {
        let url = format!("{}{path}", h.admin.as_ref().unwrap());
        let response = h.client.request(method.parse().unwrap(), &url).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"protogate-admin\"");
        let response = h.client.request(method.parse().unwrap(), &url).send().await.unwrap();
        assert_eq!(response.status(), 401, "{method} {path} without a token");
    }
    // The admin API is never reachable on the public listener.
    let (status, _) = h.get_json("/v1/descriptor-sets").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_uploads_are_refused_with_every_problem_and_change_nothing() {
    let h = library_only("").await;
    let (status, body) =
        admin(&h, "PUT", "/v1/descriptor-sets/junk", Some(("application/octet-stream", b"\x0a\x05\x0a".to_vec())))
            .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0].as_str().unwrap().split(':').next(), Some("junk"));

    let broken = [(
        "bad.proto",
        "syntax = \"proto3\";\npackage bad.v1;\nimport \"google/api/annotations.proto\";\nmessage R { string name = 1; }\nservice S {\n  rpc A(R) returns (R) { option (google.api.http) = { get: \"/bad/{name\" }; }\n  rpc B(R) returns (R) { option (google.api.http) = { get: \"/bad/{nope}\" }; }\n}\n",
    )];
    let (status, body) = upload(&h, "bad", &broken, "").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"],
        json!([
            "bad.proto: bad.v1.S.A: GET \"/bad/{name\": expected '}', found end of template at offset 10",
            "bad.proto: bad.v1.S.B: GET \"/bad/{nope}\": path variable \"nope\": no field \"nope\" in bad.v1.R",
        ])
    );

    let conflicting = [(
        "clash.proto",
        "syntax = \"proto3\";\npackage clash.v1;\nimport \"google/api/annotations.proto\";\nmessage R { string name = 1; }\nservice S { rpc Get(R) returns (R) { option (google.api.http) = { get: \"/v1/{name=shelves/*}\" }; } }\n",
    )];
    let (status, body) = upload(&h, "clash", &conflicting, "?upstream=http://127.0.0.1:1").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["errors"],
        json!([
            "route conflict: GET \"/v1/{name=shelves/*}\" (library.v1.LibraryService.GetShelf) matches the same requests as GET \"/v1/{name=shelves/*}\" (clash.v1.S.Get)"
        ])
    );

    let (status, body) =
        upload(&h, "noimport", &[("x.proto", "syntax = \"proto3\";\nimport \"/etc/passwd\";\n")], "").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = admin(&h, "PUT", "/v1/descriptor-sets/bad%20name", everything()).await;
    assert_eq!(status, 400);
    let (status, _) = admin(&h, "PUT", "/v1/descriptor-sets/x?upstream=ftp://nowhere", everything()).await;
    assert_eq!(status, 400);
    let (status, _) = admin(&h, "PUT", "/v1/descriptor-sets/x", Some(("text/plain", b"hi".to_vec()))).await;
    assert_eq!(status, 415);
    let (status, body) = admin(&h, "DELETE", "/v1/descriptor-sets/library", None).await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (409, "library comes from a --descriptor file; change the file instead")
    );

    let (_, sets) = admin(&h, "GET", "/v1/descriptor-sets", None).await;
    assert_eq!(sets["sets"].as_array().unwrap().len(), 1, "nothing was registered");
    let (status, _) = h.get_json("/v1/shelves/1").await;
    assert_eq!(status, 200, "the running snapshot still serves");
}

#[tokio::test]
async fn proto_sources_compile_with_bundled_and_registered_imports() {
    let h = library_only("").await;
    let common = "syntax = \"proto3\";\npackage shop.v1;\nmessage Item { string id = 1; }\n";
    let (status, body) = upload(&h, "common", &[("shop/v1/common.proto", common)], "").await;
    assert_eq!(status, 201, "{body}");
    let service = "syntax = \"proto3\";\npackage shop.v1;\nimport \"google/api/annotations.proto\";\nimport \"shop/v1/common.proto\";\nservice Shop { rpc GetItem(Item) returns (Item) { option (google.api.http) = { get: \"/shop/v1/items/{id}\" }; } }\n";
    let path = format!("?upstream=http://{}", h.library_addr);
    let (status, body) = upload(&h, "shop", &[("shop/v1/shop.proto", service)], &path).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["routes"],
        json!([{"method": "GET", "path": "/shop/v1/items/{id}", "rpc": "shop.v1.Shop.GetItem"}])
    );
    // The route is live; the library backend does not implement shop.v1.Shop.
    let (status, body) = h.get_json("/shop/v1/items/7").await;
    assert_eq!((status, &body["code"]), (501, &json!(12)));
}

#[tokio::test]
async fn versions_roll_back_and_deletion_removes_routes() {
    let h = library_only("[registry]\nmax_versions = 2").await;
    let v1 = [("v.proto", versioned("/v/one"))];
    let v2 = [("v.proto", versioned("/v/two"))];
    let v3 = [("v.proto", versioned("/v/three"))];
    let upstream = format!("?upstream=http://{}", h.echo_addr);
    for files in [&v1, &v2, &v3] {
        let (status, _) = upload(&h, "v", files, &upstream).await;
        assert!(status == 200 || status == 201);
    }
    let (_, versions) = admin(&h, "GET", "/v1/descriptor-sets/v/versions", None).await;
    let numbers: Vec<u64> =
        versions["versions"].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!((numbers, &versions["active"]), (vec![2, 3], &json!(3)), "two versions kept");

    let (status, body) = admin(&h, "POST", "/v1/descriptor-sets/v:rollback?version=2", None).await;
    assert_eq!((status, &body["version"]), (200, &json!(2)));
    assert_eq!(h.get_json("/v/two").await.0, 501, "version 2's route is back (the echo backend lacks the method)");
    assert_eq!(h.get_json("/v/three").await.0, 404);
    let (status, _) = admin(&h, "POST", "/v1/descriptor-sets/v:rollback?version=1", None).await;
    assert_eq!(status, 404, "version 1 was pruned");

    let (status, _) = admin(&h, "DELETE", "/v1/descriptor-sets/v", None).await;
    assert_eq!(status, 200);
    assert_eq!(h.get_json("/v/two").await.0, 404);
    let (status, _) = admin(&h, "GET", "/v1/descriptor-sets/v", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn registrations_survive_a_restart_with_the_same_state_dir() {
    let dir = std::env::temp_dir().join(format!("protogate-admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let extra = format!("[registry]\nstate_dir = \"{}\"", dir.display());
    let mut h = library_only(&extra).await;
    let path = format!("/v1/descriptor-sets/everything?upstream=http://{}", h.echo_addr);
    let (status, _) = admin(&h, "PUT", &path, everything()).await;
    assert_eq!(status, 201);
    h.server.take().unwrap().shutdown().await.unwrap();

    let h2 = library_only(&extra).await;
    let (_, body) = admin(&h2, "GET", "/v1/descriptor-sets/everything", None).await;
    assert_eq!(body["upstream"], format!("http://{}", h.echo_addr));
    // The stored upstream points at the first harness's echo backend, still running.
    let (status, body) = h2.get_json("/test/v1/echo?fString=kept").await;
    assert_eq!((status, body), (200, json!({"fString": "kept"})));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn swaps_under_load_fail_no_request() {
    let h = Arc::new(library_only("").await);
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (h, stop, served) = (h.clone(), stop.clone(), served.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = h.get_json("/v1/shelves/1").await;
                assert_eq!(status, 200, "{body}");
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let upstream = format!("?upstream=http://{}", h.echo_addr);
    for round in 0..10 {
        let files = [("v.proto", versioned(&format!("/v/r{round}")))];
        let (status, _) = upload(&h, "v", &files, &upstream).await;
        assert!(status == 200 || status == 201);
        if round % 3 == 0 {
            assert_eq!(admin(&h, "DELETE", "/v1/descriptor-sets/v", None).await.0, 200);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert!(served.load(Ordering::Relaxed) > 0);
}

fn versioned(route: &str) -> String {
    format!(
        "syntax = \"proto3\";\npackage ver.v1;\nimport \"google/api/annotations.proto\";\nmessage R {{ string name = 1; }}\n\
         service V {{ rpc Get(R) returns (R) {{ option (google.api.http) = {{ get: \"{route}\" }}; }} }}\n"
    )
}

/// A multipart upload of .proto files, each part named by its import path.
async fn upload<T: AsRef<str>>(h: &Harness, name: &str, files: &[(&str, T)], query: &str) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new();
    for (path, text) in files {
        let part = reqwest::multipart::Part::text(text.as_ref().to_string()).file_name(path.to_string());
        form = form.part(path.to_string(), part);
    }
    let url = format!("{}/v1/descriptor-sets/{name}{query}", h.admin.as_ref().unwrap());
    let response = h.client.put(url).bearer_auth(TOKEN).multipart(form).send().await.unwrap();
    common::read_json(response).await
}

#[tokio::test]
async fn descriptor_files_and_directories_reload_on_change() {
    let dir = std::env::temp_dir().join(format!("protogate-watch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("library.binpb"), pb::LIBRARY_DESCRIPTOR_SET).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a descriptor set").unwrap();
    let h = Harness::start_with_sets("", Vec::new()).await;
    let flags = protogate::config::Flags {
        listen: Some("127.0.0.1:0".into()),
        upstreams: vec![
            format!("http://{}", h.library_addr),
            format!("protogate.test.v1.EchoService=http://{}", h.echo_addr),
        ],
        descriptor_dirs: vec![dir.clone()],
        ..Default::default()
    };
    let config = protogate::config::Config::from_toml("[registry]\nwatch_interval = \"50ms\"", &flags).unwrap();
    let server = protogate::server::start(&config).await.unwrap();
    let base = format!("http://{}", server.local_addr);
    let status = |path: &str| {
        let url = format!("{base}{path}");
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/v1/shelves/1").await, 200);
    assert_eq!(status("/test/v1/echo").await, 404);

    std::fs::write(dir.join("everything.pb"), pb::EVERYTHING_DESCRIPTOR_SET).unwrap();
    eventually(|| status("/test/v1/echo"), 200).await;

    // A broken file is refused as a whole; the running snapshot stays.
    std::fs::write(dir.join("broken.binpb"), b"\x0a\x05\x0a").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(status("/test/v1/echo").await, 200);
    std::fs::remove_file(dir.join("broken.binpb")).unwrap();

    std::fs::remove_file(dir.join("library.binpb")).unwrap();
    eventually(|| status("/v1/shelves/1"), 404).await;
    assert_eq!(status("/test/v1/echo").await, 200);
    server.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn eventually<F, Fut>(probe: F, expected: u16)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    for _ in 0..200 {
        if probe().await == expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("never answered {expected}");
}

#[tokio::test]
async fn readiness_asks_every_upstream_for_its_health() {
    let h = Harness::start_with("[admin]\nlisten = \"127.0.0.1:0\"").await;
    let url = format!("{}/readyz", h.admin.as_ref().unwrap());
    let response = h.client.get(&url).send().await.unwrap();
    let (status, body) = common::read_json(response).await;
    assert_eq!((status, &body["status"]), (200, &json!("ready")), "{body}");
    assert_eq!(body["upstreams"][format!("http://{}", h.library_addr)], "serving");
    assert_eq!(body["upstreams"][format!("http://{}", h.echo_addr)], "up (no grpc.health.v1 service)");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let flags = protogate::config::Flags {
        listen: Some("127.0.0.1:0".into()),
        upstreams: vec![dead.clone()],
        admin_listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let config = protogate::config::Config::from_toml("", &flags).unwrap();
    let sets = vec![("library".to_string(), pb::LIBRARY_DESCRIPTOR_SET.to_vec())];
    let server = protogate::server::start_with_sets(&config, sets).await.unwrap();
    let response = reqwest::get(format!("http://{}/readyz", server.admin_addr.unwrap())).await.unwrap();
    let (status, body) = common::read_json(response).await;
    assert_eq!((status, &body["status"]), (503, &json!("not ready")), "{body}");
    assert!(body["upstreams"][&dead].as_str().unwrap().starts_with("unreachable"), "{body}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_endpoints_are_on_the_public_listener_only_when_configured() {
    let h = Harness::start().await;
    assert_eq!(h.get_json("/healthz").await.0, 404);
    assert_eq!(h.get_json("/readyz").await.0, 404);

    let h = Harness::start_with("[health]\npublic = true").await;
    let (status, body) = h.get_json("/healthz").await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")));
    let (status, body) = h.get_json("/readyz").await;
    assert_eq!((status, &body["status"]), (200, &json!("ready")), "{body}");
    assert_eq!(body["upstreams"][format!("http://{}", h.library_addr)], "serving");
}
