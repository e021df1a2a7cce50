//! Composite endpoints against a real library backend that records when
//! each call started and ended: concurrency, dependencies, bounded and
//! deduplicated fan-out, failures required and optional, the one deadline,
//! registry changes that would break a composite, identity on every call.

mod common;

use common::fleet::{Member, Received};
use protogate::config::{Config, Flags};
use protogate::{pb, server};
use serde_json::{Value, json};

const OVERVIEW: &str = include_str!("../examples/compose/overview.toml");

struct Gateway {
    server: server::Server,
    base: String,
    admin: String,
    client: reqwest::Client,
}

async fn gateway(toml: &str, backend: &Member) -> Gateway {
    gateway_with(toml, backend, vec![("library".to_string(), pb::LIBRARY_DESCRIPTOR_SET.to_vec())]).await
}

async fn gateway_with(toml: &str, backend: &Member, sets: Vec<(String, Vec<u8>)>) -> Gateway {
    let flags = Flags {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        upstreams: vec![backend.url()],
        ..Flags::default()
    };
    let config = Config::from_toml(toml, &flags).unwrap();
    let server = server::start_with_sets(&config, sets).await.unwrap();
    Gateway {
        base: format!("http://{}", server.local_addr),
        admin: format!("http://{}", server.admin_addr.unwrap()),
        server,
        client: reqwest::Client::new(),
    }
}

impl Gateway {
    async fn get(&self, path: &str) -> (u16, Option<String>, Value) {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        let partial = response.headers().get("protogate-partial").map(|v| v.to_str().unwrap().to_string());
        (response.status().as_u16(), partial, response.json().await.unwrap())
    }
}

fn calls_to(log: &[Received], method: &str) -> Vec<Received> {
    log.iter().filter(|r| r.path.ends_with(&format!("/{method}"))).cloned().collect()
}

/// The most calls that were in flight at one moment.
fn most_in_flight(calls: &[Received]) -> usize {
    let mut events: Vec<(std::time::Instant, i32)> =
        calls.iter().flat_map(|c| [(c.started, 1), (c.ended.unwrap(), -1)]).collect();
    events.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0, 0);
    for (_, change) in events {
        now += change;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_overview_waits_for_what_it_references_and_asks_each_author_once() {
    let backend = Member::start(30);
    let gateway = gateway(OVERVIEW, &backend).await;
    let (status, partial, body) = gateway.get("/v1/shelves/1:overview").await;
    assert_eq!((status, partial), (200, None), "{body}");
    assert_eq!(body["shelf"]["name"], "shelves/1");
    assert_eq!(body["books"].as_array().unwrap().len(), 3);
    let authors: Vec<&str> = body["authors"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    // One answer per book, in book order; two distinct authors asked once each.
    assert_eq!(authors, ["authors/Ursula K. Le Guin", "authors/Ursula K. Le Guin", "authors/Stanisław Lem"]);
    let log = backend.log.lock().unwrap().clone();
    let (shelf, books, author_calls) =
        (calls_to(&log, "GetShelf"), calls_to(&log, "ListBooks"), calls_to(&log, "GetAuthor"));
    assert_eq!((shelf.len(), books.len(), author_calls.len()), (1, 1, 2));
    assert!(books[0].started >= shelf[0].ended.unwrap(), "books started before the shelf it references");
    assert!(author_calls.iter().all(|a| a.started >= books[0].ended.unwrap()));
    // Each backend call is timed under its composite and name.
    let metrics = gateway.client.get(format!("{}/metrics", gateway.admin)).send().await.unwrap().text().await.unwrap();
    for (call, count) in [("shelf", 1), ("books", 1), ("authors", 2)] {
        let series = format!(
            "protogate_composite_call_duration_seconds_count{{call=\"{call}\",grpc_code=\"0\",\
             route=\"/v1/shelves/{{shelf}}:overview\"}} {count}\n"
        );
        assert!(metrics.contains(&series), "no {series} in\n{metrics}");
    }
    gateway.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_picks_one_element_of_a_repeated_field() {
    let backend = Member::start(0);
    let toml = r#"
[[compose]]
route = "GET /v1/shelves/{shelf}:first"
[[compose.calls]]
name = "books"
method = "library.v1.LibraryService.ListBooks"
request = { parent = "shelves/{shelf}" }
[[compose.calls]]
name = "author"
method = "library.v1.LibraryService.GetAuthor"
request = { name = "authors/{books.books[2].author}" }
[compose.response]
first = "books.books[0].title"
third = "books.books[2]"
author = "author.displayName"
"#;
    let gateway = gateway(toml, &backend).await;
    let (status, _, body) = gateway.get("/v1/shelves/1:first").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["first"], "The Left Hand of Darkness", "{body}");
    assert_eq!((&body["third"]["author"], &body["author"]), (&json!("Stanisław Lem"), &json!("Stanisław Lem")));
    let asked: Vec<Received> = calls_to(&backend.log.lock().unwrap(), "GetAuthor");
    assert_eq!(asked.len(), 1);
    gateway.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_calls_overlap_and_a_fan_out_keeps_its_bound() {
    let backend = Member::start(0);
    let seed = gateway("", &backend).await;
    // 50 books on a new shelf, by 25 authors: the fan-out dedupes to 25.
    let client = &seed.client;
    client.post(format!("{}/v1/shelves?shelfId=big", seed.base)).json(&json!({"theme": "many"})).send().await.unwrap();
    for i in 0..50 {
        let book = json!({"title": format!("Book {i}"), "author": format!("Author {}", i % 25)});
        let response = client.post(format!("{}/v1/shelves/big/books", seed.base)).json(&book).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    seed.server.shutdown().await.unwrap();
    backend.delay_ms.store(40, std::sync::atomic::Ordering::SeqCst);
    backend.log.lock().unwrap().clear();
    let toml = r#"
[[compose]]
route = "GET /v1/shelves/{shelf}:wide"
max_concurrency = 8
query = ["size"]
[[compose.calls]]
name = "shelf"
method = "library.v1.LibraryService.GetShelf"
request = { name = "shelves/{shelf}" }
[[compose.calls]]
name = "all"
method = "library.v1.LibraryService.ListShelves"
[[compose.calls]]
name = "books"
method = "library.v1.LibraryService.ListBooks"
request = { parent = "shelves/{shelf}", page_size = "{size}" }
[[compose.calls]]
name = "authors"
method = "library.v1.LibraryService.GetAuthor"
for_each = "books.books"
request = { name = "authors/{item.author}" }
optional = true
[compose.response]
shelf = "shelf"
count = { shelves = "all.shelves" }
authors = "authors"
"#;
    let gateway = gateway(toml, &backend).await;
    let (status, partial, body) = gateway.get("/v1/shelves/big:wide?size=100").await;
    // The authors are unknown to the library: the optional part fails.
    assert_eq!((status, partial.as_deref()), (200, Some("authors")), "{body}");
    assert_eq!(body["partial"]["authors"]["code"], 5, "{body}");
    assert!(body.get("authors").is_none() && body["shelf"]["name"] == "shelves/big", "{body}");
    assert!(body["count"]["shelves"].as_array().unwrap().len() >= 3, "{body}");
    let log = backend.log.lock().unwrap().clone();
    let roots: Vec<Received> =
        [calls_to(&log, "GetShelf"), calls_to(&log, "ListShelves"), calls_to(&log, "ListBooks")].concat();
    assert_eq!(roots.len(), 3);
    assert_eq!(most_in_flight(&roots), 3, "the three independent calls did not overlap: {roots:?}");
    let authors = calls_to(&log, "GetAuthor");
    assert_eq!(authors.len(), 25, "each distinct request goes once");
    assert_eq!(most_in_flight(&authors), 8, "max_concurrency bounds the fan-out");

    // A malformed input is the client's 400, and no backend is called.
    backend.log.lock().unwrap().clear();
    let (status, _, body) = gateway.get("/v1/shelves/big:wide?size=lots").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("page_size")
            || body["message"].as_str().unwrap().contains("pageSize"),
        "{body}"
    );
    let (status, _, _) = gateway.get("/v1/shelves/big:wide?color=red").await;
    assert_eq!(status, 400);
    assert!(backend.log.lock().unwrap().is_empty());
    gateway.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_failure_or_the_deadline_fails_the_whole_answer() {
    let backend = Member::start(0);
    let gateway = gateway(OVERVIEW, &backend).await;
    let (status, _, body) = gateway.get("/v1/shelves/9:overview").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["message"], "call \"shelf\" (library.v1.LibraryService.GetShelf) failed: shelves/9 not found",
        "{body}"
    );
    backend.delay_ms.store(300, std::sync::atomic::Ordering::SeqCst);
    let response = gateway
        .client
        .get(format!("{}/v1/shelves/1:overview", gateway.base))
        .header("grpc-timeout", "400m")
        .send()
        .await
        .unwrap();
    // Shelf then books take 600 ms: the second call runs out of time.
    assert_eq!(response.status(), 504);
    gateway.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_change_that_breaks_a_composite_is_refused() {
    let backend = Member::start(0);
    // Started empty: the composite waits for its methods to be registered.
    let gateway = gateway_with(OVERVIEW, &backend, Vec::new()).await;
    assert_eq!(gateway.get("/v1/shelves/1:overview").await.0, 404);
    let put = |set: &'static [u8]| {
        gateway
            .client
            .put(format!("{}/v1/descriptor-sets/library", gateway.admin))
            .header("content-type", "application/octet-stream")
            .body(set.to_vec())
            .send()
    };
    assert_eq!(put(pb::LIBRARY_DESCRIPTOR_SET).await.unwrap().status(), 201);
    assert_eq!(gateway.get("/v1/shelves/1:overview").await.0, 200);
    // Replacing the library's set with one without its methods.
    let response = put(pb::EVERYTHING_DESCRIPTOR_SET).await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert!(status == 409 || status == 400, "{status} {body}");
    let text = body.to_string();
    assert!(text.contains("unknown method library.v1.LibraryService.GetShelf"), "{body}");
    assert_eq!(gateway.get("/v1/shelves/1:overview").await.0, 200, "the composite still serves");
    gateway.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sub_call_carries_the_callers_identity_and_method_rules_apply() {
    let backend = Member::start(0);
    let auth = r#"
[auth.api_keys]
keys = [{ consumer = "mobile", sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }]
[[auth.rules]]
selector = "library.v1.LibraryService.GetAuthor"
require = "authenticated"
"#;
    let gateway = gateway(&format!("{OVERVIEW}{auth}"), &backend).await;
    // GetAuthor needs a caller, so the composite that calls it does too.
    assert_eq!(gateway.get("/v1/shelves/2:overview").await.0, 401);
    let response = gateway
        .client
        .get(format!("{}/v1/shelves/2:overview", gateway.base))
        .header("x-api-key", "test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let log = backend.log.lock().unwrap().clone();
    let library_calls: Vec<&Received> = log.iter().filter(|r| r.path.starts_with("/library.v1")).collect();
    assert_eq!(library_calls.len(), 3);
    assert!(library_calls.iter().all(|r| r.consumer.as_deref() == Some("mobile")), "{library_calls:?}");
    gateway.server.shutdown().await.unwrap();
}

#[test]
fn the_readme_shows_the_composite_the_demo_serves() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(readme.contains(OVERVIEW), "README.md's Composition section must quote examples/compose/overview.toml");
}
