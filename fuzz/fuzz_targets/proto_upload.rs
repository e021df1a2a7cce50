//! What the admin API does with an uploaded `multipart/form-data` body of
//! `.proto` sources: the multipart parser (axum's, as the admin handler
//! uses it) and then the compiler (the nesting check, protox) on the parts.
//! Every input ends in parts or an error, never a panic or a stack overflow.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"))
}

fuzz_target!(|data: &[u8]| {
    // The first byte says whether the input is a whole multipart body or
    // one source file.
    let Some((&mode, input)) = data.split_first() else { return };
    let sources = if mode % 2 == 0 {
        match runtime().block_on(parts(input.to_vec())) {
            Some(sources) => sources,
            None => return,
        }
    } else {
        vec![("fuzz/v1/fuzz.proto".to_string(), String::from_utf8_lossy(input).into_owned())]
    };
    let _ = protogate::registry::source::compile_protos(&sources, &[]);
});

async fn parts(body: Vec<u8>) -> Option<Vec<(String, String)>> {
    let request = http::Request::builder()
        .method("PUT")
        .header("content-type", "multipart/form-data; boundary=X")
        .body(Body::from(body))
        .ok()?;
    let mut multipart = Multipart::from_request(request, &()).await.ok()?;
    let mut sources = Vec::new();
    while let Ok(Some(field)) = multipart.next_field().await {
        let name = field.name().unwrap_or("part.proto").to_string();
        let Ok(text) = field.text().await else { return None };
        sources.push((name, text));
    }
    Some(sources)
}
