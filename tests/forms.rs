//! multipart/form-data uploads with real clients: curl `-F` the way a user
//! does, and a raw socket for a body the gateway refuses while it is still
//! being written.

mod common;

use common::Harness;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs curl with `args` against `url`: (status, body).
async fn curl(url: &str, args: &[&str]) -> (u16, Vec<u8>) {
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .await
        .expect("curl runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let split = output.stdout.iter().rposition(|&b| b == b'\n').unwrap();
    let status = std::str::from_utf8(&output.stdout[split + 1..]).unwrap().parse().unwrap();
    (status, output.stdout[..split].to_vec())
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// An image-sized file of every byte value, so no byte is mangled on the way.
fn cover_file(name: &str, size: usize) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("protogate-form-{}-{name}", std::process::id()));
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&path, data).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_uploads_a_cover_as_a_form_and_the_book_serves_it_back() {
    let h = Harness::start().await;
    let file = cover_file("cover.png", 300 * 1024);
    let cover = format!("cover=@{};type=image/png", file.display());
    let submit = h.url("/v1/shelves/1/books/2/cover:submit");

    let (status, body) = curl(&submit, &["-F", &cover]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let stored = json(&body);
    assert_eq!(stored["name"], "shelves/1/books/2/cover");
    assert_eq!(stored["contentType"], "image/png");
    assert_eq!(stored["sizeBytes"], (300 * 1024).to_string());

    let (status, served) = curl(&h.url("/v1/shelves/1/books/2/cover"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(served, std::fs::read(&file).unwrap(), "the cover comes back byte for byte");

    // A text part is typed as a query parameter is: `replace` is a bool.
    let (status, body) = curl(&submit, &["-F", &cover]).await;
    assert_eq!((status, json(&body)["code"].clone()), (409, Value::from(6)), "a second cover without replace");
    let (status, _) = curl(&submit, &["-F", &cover, "-F", "replace=true"]).await;
    assert_eq!(status, 200);
    let (status, body) = curl(&submit, &["-F", &cover, "-F", "replace=perhaps"]).await;
    assert_eq!(status, 400);
    assert_eq!(
        json(&body)["message"],
        r#"invalid value "perhaps" for field "replace" in form part "replace": expected true or false"#
    );
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_fills_a_body_field_and_a_patch_changes_only_the_parts_sent() {
    let h = Harness::start().await;
    let create = h.url("/v1/shelves/1/books?bookId=formed");
    let (status, body) =
        curl(&create, &["-F", "title=Formed", "-F", "pageCount=120", "-F", "tags=a", "-F", "tags=b"]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let created = json(&body);
    assert_eq!((created["title"].clone(), created["pageCount"].clone()), ("Formed".into(), 120.into()));
    assert_eq!(created["tags"], serde_json::json!(["a", "b"]));

    // No update_mask: the gateway fills it with the parts' fields.
    let (status, body) = curl(&h.url("/v1/shelves/1/books/formed"), &["-X", "PATCH", "-F", "title=Reformed"]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let patched = json(&body);
    assert_eq!((patched["title"].clone(), patched["pageCount"].clone()), ("Reformed".into(), 120.into()));

    let (status, body) = curl(&create, &["-F", "title=x", "-F", "isbn=123"]).await;
    assert_eq!((status, json(&body)["message"].clone()), (400, r#"unknown form part "isbn""#.into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_past_their_limits_are_refused_in_the_protocols_form() {
    let h = Harness::start_with("[limits]\nmax_form_part_size = 65536\nmax_form_parts = 4").await;
    let submit = h.url("/v1/shelves/1/books/2/cover:submit");
    let big = cover_file("big.png", 65537);
    let cover = format!("cover=@{};type=image/png", big.display());
    let (status, body) = curl(&submit, &["-F", &cover]).await;
    assert_eq!(status, 413);
    assert_eq!(json(&body)["message"], r#"form part "cover" exceeds the limit of 65536 bytes"#);

    let many: Vec<String> = (0..5).map(|i| format!("tags=t{i}")).collect();
    let mut args = Vec::new();
    for part in &many {
        args.extend(["-F", part.as_str()]);
    }
    let (status, body) = curl(&h.url("/v1/shelves/1/books"), &args).await;
    assert_eq!((status, json(&body)["message"].clone()), (400, "the form has more than 4 parts".into()));

    let (status, body) = curl(&submit, &["-H", "content-type: multipart/form-data", "--data-binary", "x"]).await;
    assert_eq!(status, 400);
    assert_eq!(json(&body)["message"], "multipart/form-data needs a boundary parameter in its Content-Type");

    // A body that ends inside a part is malformed, not a smaller form.
    let truncated = "--b\r\ncontent-disposition: form-data; name=\"replace\"\r\n\r\ntrue";
    let (status, body) =
        curl(&submit, &["-H", "content-type: multipart/form-data; boundary=b", "--data-binary", truncated]).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(json(&body)["message"].as_str().unwrap().starts_with("invalid multipart/form-data body"), "{body:?}");

    // The gateway keeps serving.
    let (status, _) = curl(&h.url("/v1/shelves/1/books/1"), &[]).await;
    assert_eq!(status, 200);
    let _ = std::fs::remove_file(big);
}

/// An oversized file is refused at the limit, while the client is still
/// sending it: the gateway does not wait for (or buffer) the rest.
#[tokio::test]
async fn an_oversized_part_is_refused_while_its_body_is_still_being_written() {
    let h = Harness::start_with("[limits]\nmax_form_part_size = 65536").await;
    let mut socket = tokio::net::TcpStream::connect(h.base.trim_start_matches("http://")).await.unwrap();
    let head = "POST /v1/shelves/1/books/2/cover:submit HTTP/1.1\r\nhost: gateway\r\n\
                content-type: multipart/form-data; boundary=b\r\ncontent-length: 4000000\r\n\r\n\
                --b\r\ncontent-disposition: form-data; name=\"cover\"; filename=\"c.png\"\r\n\
                content-type: image/png\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    // 128 KiB of the promised 4 MB, then the client stalls.
    socket.write_all(&vec![0x89; 128 * 1024]).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&answer).contains("exceeds the limit") {
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "closed without an answer: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buffer[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "no answer while the body was still being written: {text}");
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}
