//! The OpenAPI document: valid OpenAPI 3.1 by an independent validator,
//! stable against a golden file, and following each registration.

mod common;

use std::process::Command;

use common::Harness;
use protogate::pb;
use serde_json::Value;

const GOLDEN: &str = "tests/golden/library.openapi.json";

/// Runs the PyPI `openapi-spec-validator` on a document. A missing tool
/// fails under CI and is a printed skip elsewhere.
fn validate_with_independent_tool(document: &Value) -> bool {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name = format!("protogate-openapi-{}-{n}.json", std::process::id());
    let path = write_temp(&std::env::temp_dir(), &name, document);
    let output = Command::new("python3").args(["-m", "openapi_spec_validator", "--schema", "3.1"]).arg(&path).output();
    let available = output.as_ref().is_ok_and(|o| !String::from_utf8_lossy(&o.stderr).contains("No module named"));
    if !available {
        common::skip("openapi-spec-validator", "pip install openapi-spec-validator");
        return false;
    }
    let output = output.unwrap();
    assert!(
        output.status.success(),
        "invalid OpenAPI: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_file(&path).unwrap();
    true
}

async fn openapi(base: &str) -> Value {
    let response = reqwest::get(format!("{base}/openapi.json")).await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_for_every_field_kind() {
    let h = Harness::start().await;
    let document = openapi(&h.base).await;
    assert_eq!(document["openapi"], "3.1.0");
    validate_with_independent_tool(&document);

    let echo = &document["paths"]["/test/v1/echo"];
    assert_eq!(echo["post"]["operationId"], "EchoService_Echo");
    assert_eq!(
        echo["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/protogate.test.v1.Everything"
    );
    let query: Vec<&str> =
        echo["get"]["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(
        query.contains(&"fNested.child.name") && query.contains(&"rInt32") && !query.contains(&"mString"),
        "{query:?}"
    );
    let everything = &document["components"]["schemas"]["protogate.test.v1.Everything"]["properties"];
    assert_eq!(everything["fInt64"], serde_json::json!({"type": "string", "format": "int64"}));
    assert_eq!(everything["wTimestamp"], serde_json::json!({"type": "string", "format": "date-time"}));
    assert_eq!(everything["mNested"]["additionalProperties"]["$ref"], "#/components/schemas/protogate.test.v1.Nested");
    assert_eq!(everything["fEnum"]["enum"][1], "COLOR_RED");
    let stream = &document["paths"]["/test/v1/stream"]["get"]["responses"]["200"]["content"];
    assert!(stream.get("application/x-ndjson").is_some() && stream.get("text/event-stream").is_some());
    let body = &document["paths"]["/test/v1/body"]["post"]["requestBody"]["content"]["application/octet-stream"];
    assert_eq!(body["schema"]["format"], "binary");

    let echo = &document["paths"]["/test/v1/echo"]["post"]["requestBody"]["content"]["multipart/form-data"];
    assert_eq!(echo["schema"]["properties"]["fBytes"]["format"], "binary");
    assert_eq!(echo["schema"]["properties"]["rBytes"]["items"]["format"], "binary");
    assert_eq!(echo["schema"]["properties"]["fInt32"]["type"], "integer");
    assert_eq!(echo["encoding"]["fNested"]["contentType"], "application/json");
    assert!(echo["schema"]["properties"].get("mString").is_none(), "maps are not parts: {echo}");
}

#[tokio::test]
async fn the_library_document_matches_its_golden_file() {
    let h = Harness::start_with_sets("", vec![("library".to_string(), pb::LIBRARY_DESCRIPTOR_SET.to_vec())]).await;
    let document = openapi(&h.base).await;
    validate_with_independent_tool(&document);
    let text = serde_json::to_string_pretty(&document).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("PROTOGATE_WRITE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        golden == text,
        "{GOLDEN} differs; if the change is intended, refresh it with PROTOGATE_WRITE_GOLDEN=1 cargo test --test openapi"
    );
    let shelf = &document["paths"]["/v1/shelves/{shelves}"];
    assert_eq!(shelf["get"]["operationId"], "LibraryService_GetShelf");
    assert_eq!(shelf["get"]["description"], "Gets a shelf by resource name.");
    assert!(document["paths"]["/v1/shelves/{shelves}/books/{books}:publish"]["post"].is_object());

    // A body with a file field is offered as a form too; path fields are not parts.
    let submit = &document["paths"]["/v1/shelves/{shelves}/books/{books}/cover:submit"]["post"]["requestBody"];
    let form = &submit["content"]["multipart/form-data"]["schema"];
    assert_eq!(form["properties"]["cover"]["format"], "binary");
    assert_eq!(form["properties"]["replace"]["type"], "boolean");
    assert!(form["properties"].get("name").is_none(), "{form}");
    assert!(submit["content"]["application/json"].is_object());
    let create_shelf = &document["paths"]["/v1/shelves"]["post"]["requestBody"]["content"];
    assert!(create_shelf.get("multipart/form-data").is_none(), "no file field, no form: {create_shelf}");
}

#[tokio::test]
async fn the_document_follows_registrations_and_can_be_turned_off() {
    let toml = "[admin]\nlisten = \"127.0.0.1:0\"";
    let h = Harness::start_with_sets(toml, vec![("library".to_string(), pb::LIBRARY_DESCRIPTOR_SET.to_vec())]).await;
    let before = openapi(&h.base).await;
    assert!(before["paths"].get("/test/v1/echo").is_none());
    let url = format!("{}/v1/descriptor-sets/everything?upstream=http://{}", h.admin.as_ref().unwrap(), h.echo_addr);
    let response = h
        .client
        .put(url)
        .header("content-type", "application/octet-stream")
        .body(pb::EVERYTHING_DESCRIPTOR_SET.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let after = openapi(&h.base).await;
    assert!(after["paths"].get("/test/v1/echo").is_some());
    // The API's version stays; the schema it describes is a new one.
    assert_eq!(before["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(before["info"]["version"], after["info"]["version"]);
    let schema = |doc: &Value| doc["info"]["x-protogate-schema"]["digest"].as_str().unwrap_or_default().to_string();
    assert!(schema(&before).starts_with("sha256:"));
    assert_ne!(schema(&before), schema(&after));
    // Nested path variables get names generators accept, the path kept aside.
    let nested = &after["paths"]["/test/v1/nested/{f_nested_child_name}"]["get"]["parameters"][0];
    assert_eq!(
        (&nested["name"], &nested["x-protogate-field"]),
        (&"f_nested_child_name".into(), &"f_nested.child.name".into()),
        "{nested}"
    );
    // Every annotated method appears once, not also as POST /pkg.Service/Method.
    assert!(after["paths"].get("/protogate.test.v1.EchoService/Echo").is_none());

    let docs = h.client.get(h.url("/docs")).send().await.unwrap();
    assert_eq!(docs.headers()["content-type"], "text/html; charset=utf-8");
    assert!(docs.text().await.unwrap().contains("openapi.json"));

    let off = Harness::start_with("[openapi]\nenabled = false").await;
    assert_eq!(off.get_json("/openapi.json").await.0, 404);
}

fn write_temp(dir: &std::path::Path, name: &str, document: &Value) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(document).unwrap()).unwrap();
    path
}

fn run_json(command: &mut Command) -> Value {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("{command:?} printed no JSON ({e}): {stdout}{}", String::from_utf8_lossy(&output.stderr))
    })
}

/// Lints with Redocly's `recommended` and Spectral's `spectral:oas` rule
/// sets: no errors, and no warnings beyond those named here with why.
fn lint(document: &Value, dir: &std::path::Path) {
    // A document with `[openapi]` contact and licence set has no reason
    // left to miss them.
    let about_set = document["info"]["contact"].is_object() && document["info"]["license"].is_object();
    let (Some(redocly), Some(spectral)) =
        (common::npm_tool(".ci/tools", "redocly"), common::npm_tool(".ci/tools", "spectral"))
    else {
        return;
    };
    let path = write_temp(dir, "openapi.json", document);
    let redocly_report =
        run_json(Command::new(redocly).args(["lint", "--format", "json", "--extends", "recommended"]).arg(&path));
    let mut problems: Vec<String> = redocly_report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("redocly {} {}: {}", p["severity"], p["ruleId"], p["message"]))
        .collect();
    let ruleset = dir.join("spectral.yaml");
    std::fs::write(&ruleset, "extends: [\"spectral:oas\"]\n").unwrap();
    let spectral_report =
        run_json(Command::new(spectral).args(["lint", "-q", "-f", "json", "-r"]).arg(&ruleset).arg(&path));
    problems.extend(spectral_report.as_array().unwrap().iter().map(|p| {
        let severity = if p["severity"] == 0 { "error" } else { "warn" };
        format!("spectral \"{severity}\" \"{}\": {} at {}", p["code"].as_str().unwrap(), p["message"], p["path"])
    }));
    // Without `openapi.contact` and `openapi.license` the document has
    // neither; OpenAPI 3.1 lets a bearer requirement list role names (the
    // JWT scopes a rule asks for), which Spectral checks as OAuth scopes.
    const ACCEPTED: [&str; 3] = [
        "spectral \"warn\" \"oas3-operation-security-defined\"",
        "redocly \"warn\" \"info-license\"",
        "spectral \"warn\" \"info-contact\"",
    ];
    let accepted = if about_set { &ACCEPTED[..1] } else { &ACCEPTED[..] };
    problems.retain(|p| !accepted.iter().any(|accepted| p.starts_with(accepted)));
    assert!(problems.is_empty(), "lint problems:\n{}", problems.join("\n"));
}

#[tokio::test]
async fn redocly_and_spectral_find_no_problems() {
    let dir = std::env::temp_dir().join(format!("protogate-lint-{}", std::process::id()));
    let (_server, base) = common::policy_example().await;
    let with_policies = openapi(&base).await;
    assert!(with_policies["components"]["securitySchemes"]["apiKey"].is_object(), "{with_policies}");
    assert_eq!(with_policies["info"]["title"], "Library API");
    assert_eq!(with_policies["info"]["license"]["identifier"], "Apache-2.0");
    lint(&with_policies, &dir.join("policies"));
    let h = Harness::start().await;
    lint(&openapi(&h.base).await, &dir.join("everything"));
    let _ = std::fs::remove_dir_all(dir);
}

/// openapi-typescript generates types from the document; a checked-in
/// openapi-fetch client must type-check against them with `tsc --strict`
/// (including `@ts-expect-error` lines that only hold if the types are
/// precise) and then call the gateway.
// Multi-threaded: the tools run as blocking child processes while the
// gateway serves node's calls.
#[tokio::test(flavor = "multi_thread")]
async fn a_generated_typescript_client_compiles_and_calls_the_gateway() {
    let tools = ["openapi-typescript", "tsc"].map(|name| common::npm_tool("tests/clients", name));
    let [Some(generator), Some(tsc)] = tools else { return };
    let (_server, base) = common::policy_example().await;
    let clients = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let dir = std::env::temp_dir().join(format!("protogate-tsclient-{}", std::process::id()));
    let spec = write_temp(&dir, "openapi.json", &openapi(&base).await);
    std::os::unix::fs::symlink(clients.join("node_modules"), dir.join("node_modules")).unwrap();
    std::fs::write(dir.join("package.json"), r#"{"type": "module"}"#).unwrap();
    std::fs::copy(clients.join("openapi_client.ts"), dir.join("openapi_client.ts")).unwrap();
    let succeed = |command: &mut Command| {
        let output = command.current_dir(&dir).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{command:?}:\n{text}");
        text
    };
    succeed(Command::new(generator).arg(&spec).args(["-o", "library.d.ts"]));
    succeed(Command::new(tsc).args([
        "--strict",
        "--module",
        "nodenext",
        "--target",
        "es2022",
        "--outDir",
        "out",
        "openapi_client.ts",
    ]));
    let output = succeed(Command::new("node").args(["out/openapi_client.js", &base, "billing-demo-key"]));
    assert!(output.contains(r#""shelf":"shelves/1""#), "{output}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Validates `answer` against `schema` with Python's `jsonschema`
/// (installed with openapi-spec-validator), its `$ref`s resolved in
/// `document`'s components.
fn answer_fits_schema(answer: &Value, schema: &Value, document: &Value) {
    let mut root = schema.clone();
    root["components"] = document["components"].clone();
    let dir = std::env::temp_dir().join(format!("protogate-answer-{}", std::process::id()));
    let schema_path = write_temp(&dir, "schema.json", &root);
    let answer_path = write_temp(&dir, "answer.json", answer);
    let script = "import json, sys, jsonschema\n\
                  schema = json.load(open(sys.argv[1])); answer = json.load(open(sys.argv[2]))\n\
                  jsonschema.Draft202012Validator.check_schema(schema)\n\
                  jsonschema.Draft202012Validator(schema).validate(answer)\n";
    let output = Command::new("python3").args(["-c", script]).arg(&schema_path).arg(&answer_path).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named") {
        common::skip("jsonschema", "pip install openapi-spec-validator");
        return;
    }
    assert!(output.status.success(), "the answer does not fit its schema: {stderr}\n{answer}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_composite_is_an_operation_whose_schema_its_answers_fit() {
    // The demo's composite, with a rule on one of its methods: the
    // composite asks what its calls ask.
    let toml = format!(
        "{}\n[auth]\ndefault = \"anonymous\"\n[auth.api_keys]\nkeys = [{{ consumer = \"app\", sha256 = \"{}\" }}]\n\
         [[auth.rules]]\nselector = \"library.v1.LibraryService.GetAuthor\"\nrequire = \"authenticated\"\n",
        include_str!("../examples/compose/overview.toml"),
        // `printf %s key | sha256sum`
        "2c70e12b7a0646f92279f427c7b38e7334d8e5389cff167a1dc30e73f826b683"
    );
    let h = Harness::start_with_sets(&toml, vec![("library".to_string(), pb::LIBRARY_DESCRIPTOR_SET.to_vec())]).await;
    let document = openapi(&h.base).await;
    validate_with_independent_tool(&document);
    lint(&document, &std::env::temp_dir().join(format!("protogate-lint-composite-{}", std::process::id())));

    let operation = &document["paths"]["/v1/shelves/{shelf}:overview"]["get"];
    assert_eq!(operation["operationId"], "composite_v1_shelves_shelf_overview", "{operation}");
    assert_eq!(operation["tags"], serde_json::json!(["composites"]));
    assert_eq!(
        operation["description"],
        "A shelf with its books and their authors\n\nA composite endpoint answered by calls to \
         `library.v1.LibraryService.GetShelf`, `library.v1.LibraryService.ListBooks`, \
         `library.v1.LibraryService.GetAuthor`."
    );
    let parameters: Vec<(&str, &str)> = operation["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
        .collect();
    assert_eq!(parameters, [("shelf", "path")]);
    assert_eq!(operation["security"], serde_json::json!([{ "apiKey": [] }]), "{operation}");
    assert_eq!(
        operation["x-protogate-composite"]["calls"][2],
        serde_json::json!({ "name": "authors", "method": "library.v1.LibraryService.GetAuthor",
                            "optional": true, "forEach": "books.books" })
    );
    let ok = &operation["responses"]["200"];
    assert!(ok["headers"]["Protogate-Partial"].is_object(), "{ok}");
    let schema = &ok["content"]["application/json"]["schema"];
    let properties = &schema["properties"];
    assert_eq!(properties["shelf"]["$ref"], "#/components/schemas/library.v1.Shelf");
    assert_eq!(properties["books"]["items"]["$ref"], "#/components/schemas/library.v1.Book", "{schema}");
    assert_eq!(properties["authors"]["type"], "array");
    assert_eq!(properties["authors"]["items"]["$ref"], "#/components/schemas/library.v1.Author");
    assert_eq!(properties["partial"]["properties"]["authors"]["$ref"], "#/components/schemas/google.rpc.Status");
    assert!(document["components"]["schemas"]["library.v1.Author"].is_object());

    // What the gateway answers fits: whole, and with the optional call failed.
    let answer = |key: Option<&'static str>| {
        let request = h.client.get(h.url("/v1/shelves/1:overview"));
        let request = match key {
            Some(key) => request.header("x-api-key", key),
            None => request,
        };
        async move { common::read_json(request.send().await.unwrap()).await }
    };
    let (status, whole) = answer(Some("key")).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["authors"].as_array().map(Vec::len), Some(3), "{whole}");
    answer_fits_schema(&whole, schema, &document);
    let (status, refused) = answer(None).await;
    assert_eq!(status, 401, "{refused}");
    // A book by an author the backend does not know: GetAuthor fails for it.
    let (status, _) = h.post_json("/v1/shelves/1/books", r#"{"title": "Dune", "author": "Frank Herbert"}"#).await;
    assert_eq!(status, 200);
    let (status, partial) = answer(Some("key")).await;
    assert_eq!((status, partial["partial"]["authors"]["code"].as_i64()), (200, Some(5)), "{partial}");
    assert!(partial.get("authors").is_none(), "{partial}");
    answer_fits_schema(&partial, schema, &document);
}
