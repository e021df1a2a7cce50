//! REST requests end to end: routing, path variables, query parameters,
//! bodies, and bad input that must never reach the backend.

#![recursion_limit = "256"]

mod common;

use common::Harness;
use serde_json::json;

#[tokio::test]
async fn routes_by_method_and_template_with_precedence() {
    let h = Harness::start().await;
    let cases: &[(&str, &str, u16, serde_json::Value)] = &[
        ("GET", "/v1/shelves/1", 200, json!({"name": "shelves/1"})),
        ("GET", "/v1/shelves/1/books/2", 200, json!({"name": "shelves/1/books/2"})),
        // additional_bindings: parent from the query string.
        ("GET", "/v1/books?parent=shelves%2F2", 200, json!({"totalSize": 1})),
        (
            "GET",
            "/test/v1/scalars/hi/-9007199254740993/true/COLOR_GREEN/2.5",
            200,
            json!({"fString": "hi", "fInt64": "-9007199254740993", "fBool": true, "fEnum": "COLOR_GREEN", "fDouble": 2.5}),
        ),
        (
            "GET",
            "/test/v1/scalars/x/1/false/2/-1e3",
            200,
            json!({"fString": "x", "fInt64": "1", "fEnum": "COLOR_GREEN", "fDouble": -1000.0}),
        ),
        ("GET", "/test/v1/nested/deep%20name", 200, json!({"fNested": {"child": {"name": "deep name"}}})),
        // Custom verb and multi-segment variables.
        ("GET", "/test/v1/projects/p1/files/f%2Fg:download", 200, json!({"fString": "projects/p1/files/f%2Fg"})),
        ("GET", "/test/v1/files/a/b%20c/d%2Fe", 200, json!({"fString": "a/b c/d%2Fe"})),
        // A single-segment variable is fully decoded, %2F included.
        ("GET", "/test/v1/scalars/a%2Fb%3F/1/true/0/0", 200, json!({"fString": "a/b?", "fInt64": "1", "fBool": true})),
    ];
    for (method, path, status, subset) in cases {
        let request = h.client.request(method.parse().unwrap(), h.url(path));
        let (got_status, body) = common::read_json(request.send().await.unwrap()).await;
        assert_eq!(got_status, *status, "{method} {path}: {body}");
        assert_subset(&body, subset, &format!("{method} {path}"));
    }
}

#[tokio::test]
async fn unmatched_paths_get_404_and_other_methods_405_with_allow() {
    let h = Harness::start().await;
    let (status, body) = h.get_json("/v2/nothing").await;
    assert_eq!((status, body), (404, json!({"code": 5, "message": "no route matches \"/v2/nothing\"", "details": []})));

    let response = h.client.put(h.url("/v1/shelves")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, POST");
    let (_, body) = common::read_json(response).await;
    assert_eq!(body["code"], 12);

    let response = h.client.get(h.url("/v1/shelves/1/books/1:publish")).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.headers()["allow"].to_str().unwrap()), (405, "POST"));
}

#[tokio::test]
async fn custom_http_methods_and_auto_mapped_rpc_paths_work() {
    let h = Harness::start().await;
    let search = h
        .client
        .request("SEARCH".parse().unwrap(), h.url("/test/v1/echo"))
        .header("content-type", "application/json")
        .body(r#"{"fString":"searched"}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = common::read_json(search).await;
    assert_eq!((status, body), (200, json!({"fString": "searched"})));

    let (status, body) = h.post_json("/library.v1.LibraryService/GetBook", r#"{"name":"shelves/2/books/1"}"#).await;
    assert_eq!((status, &body["title"]), (200, &json!("SPQR")));
}

#[tokio::test]
async fn body_star_reads_every_field_kind_in_both_name_forms() {
    let h = Harness::start().await;
    let input = json!({
        "fDouble": 1.5, "f_float": "2.5", "fInt32": -3, "fInt64": "9007199254740993", "fUint32": 4,
        "fUint64": 18446744073709551615u64, "fSint32": -5, "fSint64": "-6", "fFixed32": 7, "fFixed64": "8",
        "fSfixed32": -9, "fSfixed64": -10, "fBool": true, "fString": "héllo", "fBytes": "-_8=",
        "fEnum": 2, "fNested": {"name": "n", "count": 1, "child": {"color": "COLOR_RED"}},
        "rInt32": [1, 2], "rString": ["a"], "rEnum": ["COLOR_BLUE", 1], "rNested": [{"name": "x"}],
        "rBytes": ["AQID"], "rInt64": ["1", 2],
        "mString": {"k": "v"}, "mNested": {"7": {"name": "seven"}}, "mBool": {"true": "5"},
        "oNested": {"name": "one"}, "pInt32": 0, "pString": "",
        "wTimestamp": "2024-01-31T12:00:00.5Z", "wDuration": "1.5s", "wFieldMask": "fString,fNested.name",
        "wStruct": {"a": [1, "b", null]}, "wValue": 3, "wList": [true],
        "wAny": {"@type": "type.googleapis.com/protogate.test.v1.Nested", "name": "inside"},
        "wEmpty": {}, "wBool": false, "wInt32": 0, "wInt64": "12", "wUint32": 1, "wUint64": "2",
        "wFloat": 0.5, "wDouble": "1.25", "wString": "", "wBytes": "AA==", "wNull": null,
    });
    let (status, body) = h.post_json("/test/v1/echo", &input.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let expected = json!({
        "fDouble": 1.5, "fFloat": 2.5, "fInt32": -3, "fInt64": "9007199254740993", "fUint32": 4,
        "fUint64": "18446744073709551615", "fSint32": -5, "fSint64": "-6", "fFixed32": 7, "fFixed64": "8",
        "fSfixed32": -9, "fSfixed64": "-10", "fBool": true, "fString": "héllo", "fBytes": "+/8=",
        "fEnum": "COLOR_GREEN", "fNested": {"name": "n", "count": 1, "child": {"color": "COLOR_RED"}},
        "rInt32": [1, 2], "rString": ["a"], "rEnum": ["COLOR_BLUE", "COLOR_RED"], "rNested": [{"name": "x"}],
        "rBytes": ["AQID"], "rInt64": ["1", "2"],
        "mString": {"k": "v"}, "mNested": {"7": {"name": "seven"}}, "mBool": {"true": "5"},
        "oNested": {"name": "one"}, "pInt32": 0, "pString": "",
        "wTimestamp": "2024-01-31T12:00:00.500Z", "wDuration": "1.500s", "wFieldMask": "fString,fNested.name",
        "wStruct": {"a": [1.0, "b", null]}, "wValue": 3.0, "wList": [true],
        "wAny": {"@type": "type.googleapis.com/protogate.test.v1.Nested", "name": "inside"},
        "wEmpty": {}, "wBool": false, "wInt32": 0, "wInt64": "12", "wUint32": 1, "wUint64": "2",
        "wFloat": 0.5, "wDouble": 1.25, "wString": "", "wBytes": "AA==",
    });
    assert_eq!(body, expected);
}

#[tokio::test]
async fn body_field_binds_one_field_and_the_path_wins() {
    let h = Harness::start().await;
    let response = h
        .client
        .put(h.url("/test/v1/nested/from-path?fString=q"))
        .header("content-type", "application/json")
        .body(r#"{"name":"from-body","count":3}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = common::read_json(response).await;
    assert_eq!((status, body), (200, json!({"fString": "q", "fNested": {"name": "from-path", "count": 3}})));

    // A repeated field as the body.
    let (status, body) = h.post_json("/test/v1/repeated", r#"["x","y"]"#).await;
    assert_eq!((status, body), (200, json!({"rString": ["x", "y"]})));

    // PATCH with body "book" and a FieldMask in the query string.
    let response = h
        .client
        .patch(h.url("/v1/shelves/1/books/2?updateMask=title,page_count"))
        .header("content-type", "application/json")
        .body(r#"{"title":"Earthsea","pageCount":200,"author":"ignored by the mask"}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = common::read_json(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["title"], &body["pageCount"], &body["author"]),
        (&json!("Earthsea"), &json!(200), &json!("Ursula K. Le Guin"))
    );
}

#[tokio::test]
async fn query_parameters_bind_every_kind() {
    let h = Harness::start().await;
    let query = [
        "f_string=a+b%26c",
        "fInt32=-7",
        "fUint64=18446744073709551615",
        "fBool=true",
        "fEnum=COLOR_BLUE",
        "fFloat=Infinity",
        "fBytes=-_8",
        "fNested.name=nested",
        "f_nested.child.count=4",
        "rInt32=1&rInt32=2",
        "rEnum=COLOR_RED&rEnum=3",
        "rBytes=AQID",
        "pInt32=0",
        "wTimestamp=2024-01-31T12:00:00Z",
        "wDuration=90s",
        "wFieldMask=a.bC,d_e",
        "wBool=false",
        "wInt64=-5",
        "wString=s",
        "oInt32=9",
    ]
    .join("&");
    let (status, body) = h.get_json(&format!("/test/v1/echo?{query}")).await;
    assert_eq!(status, 200, "{body}");
    let expected = json!({
        "fString": "a b&c", "fInt32": -7, "fUint64": "18446744073709551615", "fBool": true,
        "fEnum": "COLOR_BLUE", "fFloat": "Infinity", "fBytes": "+/8=",
        "fNested": {"name": "nested", "child": {"count": 4}},
        "rInt32": [1, 2], "rEnum": ["COLOR_RED", "COLOR_BLUE"], "rBytes": ["AQID"], "pInt32": 0,
        "wTimestamp": "2024-01-31T12:00:00Z", "wDuration": "90s", "wFieldMask": "a.bC,dE",
        "wBool": false, "wInt64": "-5", "wString": "s", "oInt32": 9,
    });
    assert_eq!(body, expected);
}

#[tokio::test]
async fn bad_input_is_refused_with_400_naming_it_and_never_reaches_the_backend() {
    let h = Harness::start().await;
    let get_cases: &[(&str, &str)] = &[
        ("/test/v1/echo?nope=1", "unknown query parameter \"nope\""),
        ("/test/v1/echo?fNested.nope=1", "unknown query parameter \"fNested.nope\""),
        (
            "/test/v1/echo?fInt32=abc",
            "invalid value \"abc\" for field \"f_int32\" in the query string: expected a 32-bit integer",
        ),
        (
            "/test/v1/echo?fInt32=2147483648",
            "invalid value \"2147483648\" for field \"f_int32\" in the query string: expected a 32-bit integer",
        ),
        (
            "/test/v1/echo?fUint32=-1",
            "invalid value \"-1\" for field \"f_uint32\" in the query string: expected an unsigned 32-bit integer",
        ),
        (
            "/test/v1/echo?fBool=yes",
            "invalid value \"yes\" for field \"f_bool\" in the query string: expected true or false",
        ),
        (
            "/test/v1/echo?fEnum=PURPLE",
            "invalid value \"PURPLE\" for field \"f_enum\" in the query string: expected a value of enum protogate.test.v1.Color",
        ),
        (
            "/test/v1/echo?fBytes=!!",
            "invalid value \"!!\" for field \"f_bytes\" in the query string: expected standard or URL-safe base64",
        ),
        (
            "/test/v1/echo?fFloat=1e39",
            "invalid value \"1e39\" for field \"f_float\" in the query string: number out of range for a 32-bit float",
        ),
        (
            "/test/v1/echo?wTimestamp=yesterday",
            "invalid value \"yesterday\" for field \"w_timestamp\" in the query string: expected an RFC 3339 timestamp such as 2024-01-31T12:00:00Z",
        ),
        ("/test/v1/echo?fString=a&fString=b", "query parameter \"fString\" is given more than once"),
        ("/test/v1/echo?mString=x", "query parameter \"mString\": map fields cannot be set from the query string"),
        (
            "/test/v1/echo?fNested=x",
            "invalid value \"x\" for field \"f_nested\" in the query string: protogate.test.v1.Nested has no string form; set its fields one by one",
        ),
        ("/test/v1/echo?fString=%FF", "query parameter \"%FF\" is not valid UTF-8 once percent-decoded"),
        (
            "/test/v1/scalars/a/b/true/0/0",
            "invalid value \"b\" for field \"f_int64\" in the URL path: expected a 64-bit integer",
        ),
        ("/test/v1/scalars/%FF/1/true/0/0", "path variable \"f_string\" is not valid UTF-8 once percent-decoded"),
        (
            "/test/v1/nested/x?fNested.child.name=y",
            "query parameter \"fNested.child.name\" sets a field that this route takes from the URL path",
        ),
        (
            "/v1/shelves/1/books/1?name=x",
            "query parameter \"name\" sets a field that this route takes from the URL path",
        ),
    ];
    let mut mismatches = Vec::new();
    for (path, message) in get_cases {
        let (status, body) = h.get_json(path).await;
        if (status, &body) != (400, &json!({"code": 3, "message": message, "details": []})) {
            mismatches.push(format!("GET {path}: {status} {body}"));
        }
    }
    let post_cases: &[(&str, &str, &str)] = &[
        ("/test/v1/echo", "{\"fInt32\": 1", "invalid JSON body: EOF while parsing an object at line 1 column 12"),
        ("/test/v1/echo", "{\"fInt32\": 1}}", "invalid JSON body: trailing characters at line 1 column 14"),
        (
            "/test/v1/echo",
            "{\"unknownField\": 1}",
            "invalid JSON body: unrecognized field name 'unknownField' at line 1 column 15",
        ),
        (
            "/test/v1/echo",
            "{\"fNested\": {\"nope\": 1}}",
            "invalid JSON body: field \"fNested\": unrecognized field name 'nope' at line 1 column 19",
        ),
        (
            "/test/v1/echo",
            "{\"fInt32\": \"abc\"}",
            "invalid JSON body: field \"fInt32\": invalid digit found in string at line 1 column 16",
        ),
        (
            "/test/v1/echo",
            "{\"fInt32\": 2147483648}",
            "invalid JSON body: field \"fInt32\": out of range integral type conversion attempted at line 1 column 21",
        ),
        (
            "/test/v1/echo",
            "{\"rInt32\": [1, \"x\"]}",
            "invalid JSON body: field \"rInt32[1]\": invalid digit found in string at line 1 column 18",
        ),
        ("/test/v1/echo", "[1]", "invalid JSON body: invalid type: sequence, expected a map at line 1 column 0"),
        (
            "/test/v1/nested/x",
            "{\"count\": true}",
            "invalid JSON body: field \"f_nested.count\": invalid type: boolean `true`, expected a 32-bit signed integer at line 1 column 14",
        ),
        ("/test/v1/echo", "\u{0}", "invalid JSON body: expected value at line 1 column 1"),
    ];
    for (path, body, message) in post_cases {
        let method = if path.starts_with("/test/v1/nested") { reqwest::Method::PUT } else { reqwest::Method::POST };
        let response = h
            .client
            .request(method, h.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let (status, got) = common::read_json(response).await;
        if (status, &got) != (400, &json!({"code": 3, "message": message, "details": []})) {
            mismatches.push(format!("{path} {body}: {status} {got}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    let invalid_utf8 = h.client.post(h.url("/test/v1/echo")).body(vec![b'"', 0xFF, b'"']).send().await.unwrap();
    assert_eq!(invalid_utf8.status(), 400);
    let deep = format!("{{\"wValue\":{}1{}}}", "[".repeat(100), "]".repeat(100));
    let (status, body) = h.post_json("/test/v1/echo", &deep).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (400, "invalid JSON body: nested deeper than 64 levels"));
    // `{}` adds nothing and is accepted (tests/interop.rs); a field is not.
    let with_body = h.client.get(h.url("/test/v1/echo")).body(r#"{"fString": "x"}"#).send().await.unwrap();
    let (status, body) = common::read_json(with_body).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (400, "GET /test/v1/echo takes no request body"));
    assert_eq!(h.calls(), 0, "bad input reached the backend");
}

#[tokio::test]
async fn size_limits_and_content_types_are_enforced() {
    let h = Harness::start_with("[limits]\nmax_body_size = 1024\nmax_uri_length = 256").await;
    let big = format!("{{\"fString\":\"{}\"}}", "x".repeat(2000));
    let (status, body) = h.post_json("/test/v1/echo", &big).await;
    assert_eq!(
        (status, body),
        (413, json!({"code": 8, "message": "request body exceeds the limit of 1024 bytes", "details": []}))
    );

    // Without a declared length the limit still holds mid-stream.
    let chunks = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(big.clone().into_bytes())]);
    let streamed = h
        .client
        .post(h.url("/test/v1/echo"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let (status, body) = common::read_json(streamed).await;
    assert_eq!((status, body["code"].as_i64()), (413, Some(8)));

    let long = format!("/test/v1/echo?fString={}", "y".repeat(300));
    let (status, body) = h.get_json(&long).await;
    assert_eq!(status, 414);
    assert_eq!(body["message"], format!("request URI is {} bytes, over the limit of 256", long.len()));

    let form = h
        .client
        .post(h.url("/test/v1/echo"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=1")
        .send()
        .await
        .unwrap();
    let (status, body) = common::read_json(form).await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (415, "unsupported content type \"application/x-www-form-urlencoded\"; send application/json")
    );
    let (status, _) = h.post_json("/test/v1/echo", "{}").await;
    assert_eq!(status, 200);
    let vendor_json = h
        .client
        .post(h.url("/test/v1/echo"))
        .header("content-type", "application/vnd.api+json; charset=utf-8")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(vendor_json.status(), 200);
    assert_eq!(h.calls(), 2);
}

#[tokio::test]
async fn unknown_input_can_be_ignored_by_configuration() {
    let toml = "[json]\nunknown_fields = \"ignore\"\nunknown_query_parameters = \"ignore\"";
    let h = Harness::start_with(toml).await;
    let (status, body) = h.get_json("/test/v1/echo?nope=1&fString=kept").await;
    assert_eq!((status, body), (200, json!({"fString": "kept"})));
    let (status, body) = h.post_json("/test/v1/echo", r#"{"nope": 1, "fString": "kept"}"#).await;
    assert_eq!((status, body), (200, json!({"fString": "kept"})));

    let h = Harness::start_with("[json]\nignored_query_parameters = [\"api_key\"]").await;
    let (status, body) = h.get_json("/test/v1/echo?api_key=secret&fInt32=1").await;
    assert_eq!((status, body), (200, json!({"fInt32": 1})));
    let (status, _) = h.post_json("/test/v1/echo?api_key=secret", "{}").await;
    assert_eq!(status, 200, "ignored parameters are allowed even when the body takes every field");
    let (status, _) = h.get_json("/test/v1/echo?other=1").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn http2_prior_knowledge_clients_are_served() {
    let h = Harness::start().await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = client.get(h.url("/v1/shelves/1")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let (status, body) = common::read_json(response).await;
    assert_eq!((status, &body["theme"]), (200, &json!("Fiction")));
}

fn assert_subset(actual: &serde_json::Value, subset: &serde_json::Value, context: &str) {
    let (Some(actual), Some(subset)) = (actual.as_object(), subset.as_object()) else {
        panic!("{context}: not objects: {actual} / {subset}");
    };
    for (key, value) in subset {
        assert_eq!(actual.get(key), Some(value), "{context}: key {key} in {actual:?}");
    }
}

#[tokio::test]
async fn header_floods_get_431_and_overload_is_shed_with_retry_after() {
    let h = Harness::start_with("[limits]\nmax_header_bytes = 2048\nmax_concurrent_requests = 1").await;
    let response = h.client.get(h.url("/v1/shelves/1")).header("x-flood", "z".repeat(4096)).send().await.unwrap();
    let (status, body) = common::read_json(response).await;
    assert_eq!((status, body["code"].as_i64()), (431, Some(3)));

    // One stream holds the only permit until its body ends.
    let held = h.client.get(h.url("/test/v1/stream?count=2&intervalMs=60000")).send().await.unwrap();
    let mut held = held.bytes_stream();
    use futures_util::StreamExt;
    held.next().await.unwrap().unwrap();
    let shed = h.client.get(h.url("/v1/shelves/1")).send().await.unwrap();
    assert_eq!(shed.headers()["retry-after"], "1");
    let (status, body) = common::read_json(shed).await;
    assert_eq!((status, body["code"].as_i64()), (503, Some(14)));
    let grpc = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let refused = grpc
        .post(h.url("/protogate.test.v1.EchoService/Echo"))
        .header("content-type", "application/grpc")
        .body(vec![0, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.headers()["grpc-status"], "14", "gRPC clients are refused in gRPC's form");

    drop(held);
    let mut status = 0;
    for _ in 0..100 {
        status = h.get_json("/v1/shelves/1").await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "the permit comes back when the stream ends");
}
