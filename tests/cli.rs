//! The `protogate` binary: `routes`, `serve` (flags and config file, errors
//! reported at once) and `demo`, with every curl line of the README run
//! against a live demo.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_protogate");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn protogate(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(ROOT)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Reads the child's stderr (or stdout) until a line contains `marker`, and
/// returns the text after it up to the next space or comma.
async fn wait_for(child: &mut Child, from_stdout: bool, marker: &str) -> String {
    let line = wait_for_line(child, from_stdout, marker).await;
    token_after(&line, marker)
}

/// The text after `marker` up to the next space or comma.
fn token_after(line: &str, marker: &str) -> String {
    let (_, rest) = line.split_once(marker).unwrap_or_else(|| panic!("{marker:?} not in {line:?}"));
    rest.split([' ', ',']).next().unwrap().to_string()
}

/// Reads the child's stderr (or stdout) until a line contains `marker`.
async fn wait_for_line(child: &mut Child, from_stdout: bool, marker: &str) -> String {
    let lines: Box<dyn tokio::io::AsyncRead + Unpin + Send> =
        if from_stdout { Box::new(child.stdout.take().unwrap()) } else { Box::new(child.stderr.take().unwrap()) };
    let mut lines = BufReader::new(lines).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(marker) {
                return line;
            }
        }
        panic!("the process ended without printing {marker:?}");
    })
    .await
    .expect("the process did not start in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
}

#[tokio::test]
async fn routes_prints_the_route_table() {
    let output = protogate(&["routes", "--descriptor", "descriptors/library.binpb"]).output().await.unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["GET", "/v1/shelves", "library.v1.LibraryService.ListShelves"]
    );
    assert!(stdout.contains("/v1/{name=shelves/*/books/*}:publish"));
    assert!(stdout.contains("/library.v1.LibraryService/GetBook"));
    assert_eq!(lines.len(), 33, "17 bindings and 16 auto-mapped methods");
}

#[tokio::test]
async fn serve_with_flags_serves_the_descriptor_set() {
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    protogate::example::serve_library(backend);
    let upstream = format!("http://{backend_addr}");
    let args =
        ["serve", "--descriptor", "descriptors/library.binpb", "--upstream", &upstream, "--listen", "127.0.0.1:0"];
    let mut child = protogate(&args).spawn().unwrap();
    let addr = wait_for(&mut child, false, "local_addr=").await;
    let body = reqwest::get(format!("http://{addr}/v1/shelves/2")).await.unwrap().text().await.unwrap();
    assert!(body.contains("\"theme\":\"History\""), "{body}");
}

#[tokio::test]
async fn serve_with_a_config_file_holding_everything() {
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    protogate::example::serve_library(backend);
    let dir = tempdir();
    let config = dir.join("gateway.toml");
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndescriptors = [\"{ROOT}/descriptors/library.binpb\"]\n\
         [upstream.services]\n\"library.v1.LibraryService\" = \"http://{backend_addr}\"\n[json]\nproto_field_names = true\n"
    );
    std::fs::write(&config, toml).unwrap();
    let mut child = protogate(&["serve", "--config", config.to_str().unwrap()]).spawn().unwrap();
    let addr = wait_for(&mut child, false, "local_addr=").await;
    let body = reqwest::get(format!("http://{addr}/v1/shelves/1/books/1")).await.unwrap().text().await.unwrap();
    assert!(body.contains("\"page_count\":304"), "{body}");
}

#[tokio::test]
async fn serve_reports_every_problem_and_exits_non_zero() {
    let dir = tempdir();
    let config = dir.join("bad.toml");
    std::fs::write(&config, "listen = \"nowhere\"\nextra = 1\n[limits]\nmax_uri = 3\n").unwrap();
    let output = protogate(&["serve", "--config", config.to_str().unwrap()]).output().await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("unknown key `extra`") && stderr.contains("unknown key `limits.max_uri`"), "{stderr}");

    let output = protogate(&[
        "serve",
        "--descriptor",
        "descriptors/library.binpb",
        "--descriptor",
        "missing.binpb",
        "--listen",
        "127.0.0.1:0",
    ])
    .output()
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("missing.binpb: No such file"), "{stderr}");

    let output = protogate(&["serve", "--descriptor", "descriptors/library.binpb", "--listen", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("no upstream for service library.v1.LibraryService"), "{stderr}");
}

#[tokio::test]
async fn every_readme_curl_line_works_against_the_demo() {
    let mut child = protogate(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--backend-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .spawn()
    .unwrap();
    let line = wait_for_line(&mut child, true, "gateway on ").await;
    let (base, admin) = (token_after(&line, "gateway on "), token_after(&line, "admin API on "));
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let section = readme.split("## Try it against the demo").nth(1).unwrap().split("\n## ").next().unwrap();
    let lines: Vec<&str> = section.lines().filter(|l| l.starts_with("curl ")).collect();
    assert!(lines.len() >= 10, "the README lost its examples");
    let work = tempdir();
    for line in lines {
        let (command, expected) = match line.split_once("  # ") {
            Some((command, comment)) => (command.trim(), comment.split([' ', ',']).next().unwrap_or("").to_string()),
            None => (line, "200".to_string()),
        };
        let command = command.replace("http://127.0.0.1:8080", &base).replace("http://127.0.0.1:9090", &admin);
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("{command} -sS -o /dev/null -w '%{{http_code}}'"))
            .current_dir(&work)
            .output()
            .await
            .unwrap();
        let status = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{line}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(status, expected, "{line}");
    }
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("protogate-cli-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

#[tokio::test]
async fn a_kill_during_registrations_loses_nothing_acknowledged() {
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", backend.local_addr().unwrap());
    protogate::example::serve_library(backend);
    let state = tempdir();
    let state_arg = state.to_str().unwrap().to_string();
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token",
        "T",
        "--state-dir",
        &state_arg,
        "--upstream",
        &upstream,
    ];
    let mut child = protogate(&args).spawn().unwrap();
    let admin = wait_for(&mut child, false, "admin_addr=").await;
    let client = reqwest::Client::new();
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let child = std::sync::Arc::new(tokio::sync::Mutex::new(child));
    // Eight registrations in flight at a time; SIGKILL once 20 are acknowledged.
    let registrations = (0..80).map(|i| {
        let (client, admin, acknowledged, child) = (client.clone(), admin.clone(), acknowledged.clone(), child.clone());
        async move {
            let response = client
                .put(format!("http://{admin}/v1/descriptor-sets/crash{i}"))
                .bearer_auth("T")
                .header("content-type", "application/octet-stream")
                .body(crash_set(i))
                .send()
                .await;
            if response.is_ok_and(|r| r.status() == 201) {
                let count = {
                    let mut acknowledged = acknowledged.lock().unwrap();
                    acknowledged.push(format!("crash{i}"));
                    acknowledged.len()
                };
                if count == 20 {
                    let _ = child.lock().await.start_kill();
                }
            }
        }
    });
    futures_util::StreamExt::collect::<Vec<()>>(futures_util::StreamExt::buffer_unordered(
        futures_util::stream::iter(registrations),
        8,
    ))
    .await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 20 && acknowledged.len() < 80, "the kill came too late: {acknowledged:?}");
    let _ = child.lock().await.wait().await;

    let mut restarted = protogate(&args).spawn().unwrap();
    let admin = wait_for(&mut restarted, false, "admin_addr=").await;
    let listed: serde_json::Value = client
        .get(format!("http://{admin}/v1/descriptor-sets"))
        .bearer_auth("T")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<String> =
        listed["sets"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
    for name in &acknowledged {
        assert!(names.contains(name), "{name} was acknowledged but lost; kept {names:?}");
    }
    std::fs::remove_dir_all(&state).unwrap();
}

/// A small descriptor set with its own package and route.
fn crash_set(i: usize) -> Vec<u8> {
    let source = format!(
        "syntax = \"proto3\";\npackage crash{i}.v1;\nimport \"google/api/annotations.proto\";\nmessage R {{ string id = 1; }}\n\
         service S {{ rpc Get(R) returns (R) {{ option (google.api.http) = {{ get: \"/crash/{i}/{{id}}\" }}; }} }}\n"
    );
    protogate::registry::source::compile_protos(&[(format!("crash{i}.proto"), source)], &[]).unwrap()
}

#[tokio::test]
async fn validate_checks_sets_and_proto_files_like_registration() {
    let output = protogate(&["validate", "descriptors/library.binpb"]).output().await.unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "ok: 16 methods, 17 annotated routes\n");

    let dir = tempdir();
    let proto = dir.join("bad.proto");
    std::fs::write(
        &proto,
        "syntax = \"proto3\";\npackage bad.v1;\nimport \"google/api/annotations.proto\";\nmessage R { string name = 1; }\n\
         service S {\n  rpc A(R) returns (R) { option (google.api.http) = { get: \"/v1/{nam\" }; }\n\
         rpc B(R) returns (R) { option (google.api.http) = { get: \"/v1/shelves/{name}\" }; }\n}\n",
    )
    .unwrap();
    let output = protogate(&["validate", "descriptors/library.binpb", proto.to_str().unwrap()]).output().await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("bad.v1.S.A: GET \"/v1/{nam\": expected '}'"), "{stderr}");
    assert!(stderr.contains("route conflict: GET \"/v1/shelves/{name}\""), "{stderr}");
}

#[test]
fn the_bundled_protos_let_a_service_outside_the_repository_build() {
    // As a newcomer would: an empty directory, the README's command, their own .proto.
    let dir = std::env::temp_dir().join(format!("protogate-own-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_protogate")).arg("protos").arg(&dir).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(dir.join("google/api/annotations.proto").exists());
    std::fs::write(
        dir.join("hello.proto"),
        "syntax = \"proto3\";\npackage hello.v1;\nimport \"google/api/annotations.proto\";\n\
         message Hi { string name = 1; }\n\
         service Greeter { rpc Greet(Hi) returns (Hi) { option (google.api.http) = { get: \"/v1/hi/{name}\" }; } }\n",
    )
    .unwrap();
    // protoc's job, done by protox here: every import resolves inside `dir`.
    let mut compiler = protox::Compiler::new([&dir]).unwrap();
    compiler.include_imports(true);
    compiler.open_file("hello.proto").expect("compiles against the written protos");
    let out = dir.join("hello.binpb");
    std::fs::write(&out, compiler.encode_file_descriptor_set()).unwrap();
    let routes = std::process::Command::new(env!("CARGO_BIN_EXE_protogate"))
        .args(["routes", "--descriptor"])
        .arg(&out)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&routes.stdout);
    assert!(table.contains("/v1/hi/{name}") && table.contains("hello.v1.Greeter.Greet"), "{table}");
    std::fs::remove_dir_all(&dir).unwrap();
}
