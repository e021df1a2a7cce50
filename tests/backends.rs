//! Several endpoints per upstream against real backends that die, come
//! back, answer slowly or never: balancing, ejection and readmission, safe
//! retries under a budget, the call limit, DNS-named endpoints.

mod common;

use std::time::Duration;

use common::fleet::Member;
use futures_util::StreamExt;
use protogate::config::{Config, Flags};
use protogate::{pb, server};
use serde_json::Value;

struct Gateway {
    server: server::Server,
    base: String,
    admin: String,
    client: reqwest::Client,
}

impl Gateway {
    async fn start(toml: &str) -> Self {
        let flags =
            Flags { listen: Some("127.0.0.1:0".into()), admin_listen: Some("127.0.0.1:0".into()), ..Flags::default() };
        let config = Config::from_toml(toml, &flags).unwrap();
        let sets = vec![("library".to_string(), pb::LIBRARY_DESCRIPTOR_SET.to_vec())];
        let server = server::start_with_sets(&config, sets).await.unwrap();
        Self {
            base: format!("http://{}", server.local_addr),
            admin: format!("http://{}", server.admin_addr.unwrap()),
            server,
            client: reqwest::Client::new(),
        }
    }

    /// `total` GETs of a shelf, `concurrency` at a time: their statuses.
    async fn load(&self, total: usize, concurrency: usize) -> Vec<u16> {
        let url = format!("{}/v1/shelves/1", self.base);
        futures_util::stream::iter(0..total)
            .map(|_| {
                let (client, url) = (self.client.clone(), url.clone());
                async move { client.get(&url).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await
    }

    async fn readyz(&self) -> Value {
        self.client.get(format!("{}/readyz", self.admin)).send().await.unwrap().json().await.unwrap()
    }

    /// The sum of a metric's samples whose labels contain `labels`.
    async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self.client.get(format!("{}/metrics", self.admin)).send().await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(labels))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn spec(members: &[&Member]) -> String {
    members.iter().map(|m| m.url()).collect::<Vec<_>>().join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_every_endpoint() {
    let members = [Member::start(0), Member::start(0), Member::start(0)];
    let gateway =
        Gateway::start(&format!("[upstream]\ndefault = {:?}", spec(&members.iter().collect::<Vec<_>>()))).await;
    let statuses = gateway.load(600, 16).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let calls: Vec<usize> = members.iter().map(Member::calls).collect();
    // An even split is 200 each; p2c keeps every share well above 100.
    assert!(calls.iter().all(|c| *c >= 100), "{calls:?}");
    assert_eq!(calls.iter().sum::<usize>(), 600);
    gateway.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_gets_a_smaller_share() {
    let members = [Member::start(0), Member::start(0), Member::start(50)];
    let toml =
        format!("[upstream]\ndefault = [{:?}, {:?}, {:?}]", members[0].url(), members[1].url(), members[2].url());
    let gateway = Gateway::start(&toml).await;
    let statuses = gateway.load(400, 16).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let calls: Vec<usize> = members.iter().map(Member::calls).collect();
    assert!(calls[2] * 3 < calls[0].min(calls[1]), "the slow endpoint got too much: {calls:?}");
    gateway.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_endpoint_fails_no_idempotent_call_is_ejected_and_comes_back() {
    let mut members = [Member::start(0), Member::start(0), Member::start(0)];
    let toml = format!(
        "[upstream]\ndefault = {:?}\n[upstream.health]\ninterval = \"200ms\"\n\
         [upstream.ejection]\nconsecutive_failures = 2\nbase_time = \"1s\"",
        spec(&members.iter().collect::<Vec<_>>())
    );
    let gateway = Gateway::start(&toml).await;
    let victim = members[1].url();
    let load = {
        let (client, url) = (gateway.client.clone(), format!("{}/v1/shelves/1", gateway.base));
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
            let mut statuses = Vec::new();
            while tokio::time::Instant::now() < deadline {
                let batch = (0..8).map(|_| client.get(&url).send());
                for response in futures_util::future::join_all(batch).await {
                    statuses.push(response.map(|r| r.status().as_u16()).unwrap_or(0));
                }
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    members[1].kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ready = gateway.readyz().await;
    let state = ready["endpoints"][spec(&members.iter().collect::<Vec<_>>())][&victim].as_str().unwrap().to_string();
    assert!(state.starts_with("unreachable") || state.starts_with("ejected"), "{ready}");
    assert_eq!(ready["status"], "ready", "two endpoints still serve: {ready}");
    let calls_while_dead = members[1].calls();
    members[1].restart();
    let statuses = load.await.unwrap();
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(failed, 0, "{failed} of {} calls failed", statuses.len());
    assert!(members[1].calls() > calls_while_dead, "the restarted endpoint was never readmitted");
    let ready = gateway.readyz().await;
    assert_eq!(ready["endpoints"][spec(&members.iter().collect::<Vec<_>>())][&victim], "serving", "{ready}");
    gateway.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_max_requests_fail_fast_with_retry_after() {
    let slow = Member::start(400);
    let toml = format!("[upstream]\ndefault = {:?}\nmax_requests = 2", slow.url());
    let gateway = Gateway::start(&toml).await;
    let url = format!("{}/v1/shelves/1", gateway.base);
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls = (0..8).map(|_| {
        let (client, url, order) = (gateway.client.clone(), url.clone(), order.clone());
        async move {
            let response = client.get(&url).send().await.unwrap();
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            order.lock().unwrap().push(response.status().as_u16());
            (response.status().as_u16(), retry_after)
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let refused: Vec<_> = results.iter().filter(|(status, _)| *status == 503).collect();
    assert_eq!(refused.len(), 6, "{results:?}");
    assert!(refused.iter().all(|(_, retry_after)| retry_after.as_deref() == Some("1")), "{results:?}");
    // The refusals did not queue behind the slow calls: they all came first.
    assert_eq!(&order.lock().unwrap()[..6], &[503; 6]);
    assert_eq!(gateway.metric("protogate_upstream_overloaded_total", "").await, 6.0);
    gateway.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stay_within_the_budget_when_every_endpoint_fails() {
    let dead: Vec<String> = (0..3)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", listener.local_addr().unwrap())
        })
        .collect();
    let toml = format!(
        "[upstream]\ndefault = {:?}\n[upstream.retry]\nattempts = 3\nbudget_percent = 20\nmin_per_second = 0\n\
         [upstream.ejection]\nconsecutive_failures = 0",
        dead.join(",")
    );
    let gateway = Gateway::start(&toml).await;
    let statuses = gateway.load(50, 4).await;
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    let retries = gateway.metric("protogate_upstream_retries_total", "").await;
    let attempts = gateway.metric("protogate_upstream_attempts_total", "").await;
    let refused = gateway.metric("protogate_upstream_retry_budget_exhausted_total", "").await;
    assert!(retries > 0.0 && retries <= 10.0, "retries {retries}");
    assert_eq!(attempts, 50.0 + retries);
    assert!(refused > 0.0, "the budget never refused a retry");
    gateway.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_never_left_is_retried_on_another_endpoint() {
    let live = Member::start(0);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    // POST creates: not idempotent, so only never-sent calls may be retried.
    let toml = format!("[upstream]\ndefault = \"{dead},{}\"\n[upstream.health]\ninterval = \"0s\"", live.url());
    let gateway = Gateway::start(&toml).await;
    for i in 0..20 {
        let response = gateway
            .client
            .post(format!("{}/v1/shelves?shelfId=retry{i}", gateway.base))
            .json(&serde_json::json!({"theme": "retry"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    assert_eq!(live.calls(), 20);
    gateway.server.shutdown().await.unwrap();
}

/// Native gRPC is passed through with its body streaming, so it cannot be
/// re-sent from a copy: a call that never left (no connection to the dead
/// endpoint) comes back from the transport and goes to another endpoint.
/// CreateShelf is not idempotent; only the unsent attempt is repeated.
#[tokio::test]
async fn a_pass_through_call_that_never_left_is_retried_on_another_endpoint() {
    use pb::library::v1::library_service_client::LibraryServiceClient;
    use pb::library::v1::{CreateShelfRequest, Shelf};
    let live = Member::start(0);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let toml = format!(
        "[upstream]\ndefault = \"{dead},{}\"\n[upstream.health]\ninterval = \"0s\"\n[upstream.ejection]\nconsecutive_failures = 0",
        live.url()
    );
    let gateway = Gateway::start(&toml).await;
    let mut client = LibraryServiceClient::connect(gateway.base.clone()).await.unwrap();
    for i in 0..20 {
        let shelf = Shelf { name: String::new(), theme: "pass-through".into(), ..Default::default() };
        let request = CreateShelfRequest { shelf: Some(shelf), shelf_id: format!("pass{i}") };
        client.create_shelf(request).await.unwrap_or_else(|status| panic!("call {i}: {status:?}"));
    }
    assert_eq!(live.calls(), 20, "each call reached the backend once");
    assert!(gateway.metric("protogate_upstream_retries_total", "").await > 0.0, "the dead endpoint was tried");
    gateway.server.shutdown().await.unwrap();
}

/// A listener that never accepts, its accept queue filled: a connect to it
/// hangs (the kernel drops the SYN) until the caller gives up.
async fn unanswered_endpoint() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) if held.len() < 64 => held.push(stream),
            _ => break,
        }
    }
    (listener, held)
}

/// Calls waiting for a connection that does not open are capped: past
/// `max_pending` they fail at once with 503 and `Retry-After` instead of
/// queueing until the connect timeout.
#[tokio::test]
async fn calls_past_max_pending_fail_fast_while_a_connect_hangs() {
    let (listener, _held) = unanswered_endpoint().await;
    let url = format!("http://{}", listener.local_addr().unwrap());
    let toml = format!(
        "[upstream]\ndefault = \"{url}\"\nmax_pending = 2\nconnect_timeout = \"30s\"\n[upstream.health]\ninterval = \"0s\"\n[upstream.retry]\nattempts = 1"
    );
    let gateway = Gateway::start(&toml).await;
    let calls = (0..8).map(|i| {
        let client = gateway.client.clone();
        let url = format!("{}/v1/shelves/{i}", gateway.base);
        async move { client.get(&url).send().await.unwrap() }
    });
    let mut calls: futures_util::stream::FuturesUnordered<_> = calls.collect();
    // Six of the eight cannot wait: they are answered while two still wait
    // for the connection (up to the 30 s connect timeout).
    for _ in 0..6 {
        let response = calls.next().await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
    }
    assert_eq!(gateway.metric("protogate_upstream_overloaded_total", "").await, 6.0);
    drop(calls);
}

/// Names in /etc/hosts stand in for a DNS server: the resolver the gateway
/// uses reads it on every lookup.
struct HostsEntry {
    name: String,
    original: String,
}

impl HostsEntry {
    fn set(name: &str, addresses: &[&str]) -> Option<Self> {
        let original = std::fs::read_to_string("/etc/hosts").ok()?;
        let entry = Self { name: name.to_string(), original };
        entry.write(addresses).ok()?;
        Some(entry)
    }

    fn write(&self, addresses: &[&str]) -> std::io::Result<()> {
        let mut text = self.original.clone();
        for address in addresses {
            text.push_str(&format!("\n{address} {}\n", self.name));
        }
        std::fs::write("/etc/hosts", text)
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        let _ = std::fs::write("/etc/hosts", &self.original);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_endpoints_that_appear_and_disappear_are_followed() {
    // Two backends on one port, at 127.0.0.2 and 127.0.0.3.
    let probe = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let (second, third) = (format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}"));
    let members = [Member::start_at(second.parse().unwrap()), Member::start_at(third.parse().unwrap())];
    let name = format!("protogate-dns-test-{port}");
    let Some(hosts) = HostsEntry::set(&name, &["127.0.0.2"]) else {
        common::skip("a writable /etc/hosts", "run the tests as root");
        return;
    };
    let toml = format!("[upstream]\ndefault = \"dns:///{name}:{port}\"\ndns_refresh = \"100ms\"");
    let gateway = Gateway::start(&toml).await;
    assert!(gateway.load(20, 4).await.iter().all(|s| *s == 200));
    assert_eq!((members[0].calls(), members[1].calls()), (20, 0));

    hosts.write(&["127.0.0.2", "127.0.0.3"]).unwrap();
    wait_for_endpoints(&gateway, 2).await;
    assert!(gateway.load(100, 8).await.iter().all(|s| *s == 200));
    assert!(members[1].calls() > 10, "the added address got no calls: {}", members[1].calls());

    hosts.write(&["127.0.0.3"]).unwrap();
    wait_for_endpoints(&gateway, 1).await;
    let before = members[0].calls();
    assert!(gateway.load(20, 4).await.iter().all(|s| *s == 200));
    assert_eq!(members[0].calls(), before, "the removed address still got calls");
    drop(hosts);
    gateway.server.shutdown().await.unwrap();
}

async fn wait_for_endpoints(gateway: &Gateway, count: usize) {
    for _ in 0..100 {
        let ready = gateway.readyz().await;
        let listed = ready["endpoints"].as_object().and_then(|e| e.values().next()).and_then(Value::as_object);
        if listed.is_some_and(|endpoints| endpoints.len() == count) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never saw {count} endpoints: {}", gateway.readyz().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_lets_every_accepted_request_finish() {
    let slow = Member::start(300);
    let descriptor = concat!(env!("CARGO_MANIFEST_DIR"), "/descriptors/library.binpb");
    let upstream = slow.url();
    let args = ["serve", "--descriptor", descriptor, "--upstream", &upstream, "--listen", "127.0.0.1:0"];
    let mut gateway = common::process::spawn_gateway(&[&args[..], &["--admin-listen", "127.0.0.1:0"]].concat()).await;
    let url = format!("{}/v1/shelves/1", gateway.public);
    // Each on its own connection: HTTP/1.1 clients see the drain as a close
    // after their answer, HTTP/2 ones as a GOAWAY.
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = if i % 2 == 0 {
                    reqwest::Client::builder().http1_only().build().unwrap()
                } else {
                    reqwest::Client::builder().http2_prior_knowledge().build().unwrap()
                };
                client.get(&url).send().await.map(|r| r.status().as_u16())
            })
        })
        .collect();
    // Every call has reached the slow backend before the signal.
    for _ in 0..500 {
        if slow.calls() >= 20 || calls.iter().any(|c| c.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if slow.calls() < 20 {
        let done: Vec<_> = futures_util::future::join_all(calls).await.into_iter().map(|c| c.unwrap()).collect();
        panic!("{} calls reached the backend; the calls ended with {done:?}", slow.calls());
    }
    let pid = gateway.child.id().unwrap() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 200, "an accepted request was cut short by the drain");
    }
    let exit = tokio::time::timeout(Duration::from_secs(10), gateway.child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(reqwest::get(&url).await.is_err(), "the listener still accepts after the drain");
}
