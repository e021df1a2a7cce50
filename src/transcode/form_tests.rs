//! Case table for `multipart/form-data` parts onto the request message.

use http::Method;

use super::JsonOptions;
use super::form::FormPart;
use super::request::{HttpInput, build_form, form_body};
use super::tests::{everything, pool, table};

/// (name, filename, content type, data) of one part.
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// Builds the request for `method path` from the parts and renders it as
/// JSON, or the error's message.
fn form(method: Method, path: &str, parts: &[Part<'_>], options: &JsonOptions) -> Result<String, String> {
    let pool = pool();
    let table = table(&pool);
    let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
    let found = table.find(&method, path).map_err(|e| format!("{e:?}"))?;
    let parts: Vec<FormPart<'_>> = parts
        .iter()
        .map(|&(name, filename, content_type, data)| FormPart { name, filename, content_type, data })
        .collect();
    let input = HttpInput { variables: &found.variables, query, content_type: None, body: &[] };
    let message = build_form(found.binding, &everything(&pool), input, &parts, options).map_err(|e| e.message)?;
    Ok(serde_json::to_string(&message).unwrap())
}

#[test]
fn form_parts_set_the_fields_they_name() {
    let cases: &[(Method, &str, &[Part<'_>], &str)] = &[
        // Text parts are typed by their field, as query parameters are.
        (
            Method::POST,
            "/test/v1/echo",
            &[
                ("f_int32", None, None, b"-7"),
                ("fBool", None, None, b"true"),
                ("f_enum", None, None, b"COLOR_RED"),
                ("r_int32", None, None, b"1"),
                ("r_int32", None, None, b"2"),
                ("w_timestamp", None, None, b"2024-01-31T12:00:00Z"),
                ("w_int32", None, None, b"5"),
            ],
            r#"{"fInt32":-7,"fBool":true,"fEnum":"COLOR_RED","rInt32":[1,2],"wTimestamp":"2024-01-31T12:00:00Z","wInt32":5}"#,
        ),
        // Bytes take a file's content as it is, not base64.
        (
            Method::POST,
            "/test/v1/echo",
            &[
                ("f_bytes", Some("a.bin"), Some("application/octet-stream"), b"\x00\xff"),
                ("r_bytes", None, None, b"hi"),
            ],
            r#"{"fBytes":"AP8=","rBytes":["aGk="]}"#,
        ),
        // A message field takes JSON; a dotted part then sets inside it.
        (
            Method::POST,
            "/test/v1/echo",
            &[
                ("f_nested", None, Some("application/json"), br#"{"name":"n","color":"COLOR_BLUE"}"#),
                ("f_nested.count", None, None, b"3"),
            ],
            r#"{"fNested":{"name":"n","count":3,"color":"COLOR_BLUE"}}"#,
        ),
        // The body is one field: parts name its fields, the path wins.
        (
            Method::PUT,
            "/test/v1/nested/fromPath",
            &[("name", None, None, b"fromForm"), ("count", None, None, b"2")],
            r#"{"fNested":{"name":"fromPath","count":2}}"#,
        ),
        // No parts: an empty body message, as `{}` is.
        (Method::PUT, "/test/v1/nested/n", &[], r#"{"fNested":{"name":"n"}}"#),
    ];
    for (method, path, parts, expected) in cases {
        let got = form(method.clone(), path, parts, &JsonOptions::default());
        assert_eq!(got.as_deref(), Ok(*expected), "{method} {path} {parts:?}");
    }
}

#[test]
fn form_parts_that_fit_no_field_are_refused_by_name() {
    let cases: &[(Method, &str, &[Part<'_>], &str)] = &[
        (Method::POST, "/test/v1/echo", &[("nope", None, None, b"1")], r#"unknown form part "nope""#),
        (
            Method::POST,
            "/test/v1/echo",
            &[("m_string", None, None, b"x")],
            r#"form part "m_string": map fields cannot be set from a form"#,
        ),
        (
            Method::POST,
            "/test/v1/echo",
            &[("f_int32", None, None, b"1"), ("fInt32", None, None, b"2")],
            r#"form part "fInt32" is given more than once"#,
        ),
        (
            Method::POST,
            "/test/v1/echo",
            &[("o_string", None, None, b"a"), ("o_int32", None, None, b"1")],
            r#"form part "o_int32": o_int32 and o_string are members of the oneof choice; set one"#,
        ),
        (
            Method::POST,
            "/test/v1/echo",
            &[("f_int32", None, None, b"seven")],
            r#"invalid value "seven" for field "f_int32" in form part "f_int32": expected a 32-bit integer"#,
        ),
        (
            Method::POST,
            "/test/v1/echo",
            &[("f_string", Some("x.txt"), None, b"\xff\xfe")],
            r#"form part "f_string" for field "f_string" is not UTF-8 text"#,
        ),
        (
            Method::POST,
            "/test/v1/echo",
            &[("f_nested", None, None, br#"{"count":"many"}"#)],
            r#"form part "f_nested" for field "f_nested" is not a JSON message: field "count": invalid digit found in string at line 1 column 15"#,
        ),
        (
            Method::POST,
            "/test/v1/echo",
            &[("f_nested.child.child.child", None, None, b"x")],
            r#"form part "f_nested.child.child.child"…: nested deeper than 3 levels"#,
        ),
        // A repeated body field is a JSON array; a form cannot be one.
        (
            Method::POST,
            "/test/v1/repeated",
            &[("r_string", None, None, b"x")],
            "POST /test/v1/repeated takes no multipart/form-data body",
        ),
        // The path has the last word; the query may not set the body.
        (
            Method::POST,
            "/test/v1/echo?f_int32=1",
            &[("f_int32", None, None, b"2")],
            r#"query parameter "f_int32" sets a field that this route takes from the request body"#,
        ),
    ];
    let shallow = JsonOptions { max_depth: 3, ..JsonOptions::default() };
    for (method, path, parts, expected) in cases {
        let got = form(method.clone(), path, parts, &shallow);
        assert_eq!(got, Err(expected.to_string()), "{method} {path} {parts:?}");
    }
}

#[test]
fn unknown_parts_are_skipped_when_unknown_fields_are_ignored() {
    let options = JsonOptions { unknown_fields: super::Unknown::Ignore, ..JsonOptions::default() };
    let parts: &[Part<'_>] = &[("nope", None, None, b"1"), ("f_int32", None, None, b"4")];
    assert_eq!(form(Method::POST, "/test/v1/echo", parts, &options).as_deref(), Ok(r#"{"fInt32":4}"#));
}

#[test]
fn only_a_message_body_other_than_http_body_takes_a_form() {
    let pool = pool();
    let table = table(&pool);
    let input = |method: &str| {
        pool.get_service_by_name("protogate.test.v1.EchoService")
            .and_then(|s| s.methods().find(|m| m.name() == method))
            .map(|m| m.input())
            .unwrap()
    };
    let cases = [
        (Method::POST, "/test/v1/echo", "Echo", true),
        (Method::PUT, "/test/v1/nested/n", "Echo", true),
        (Method::POST, "/test/v1/repeated", "Echo", false),
        (Method::POST, "/test/v1/body", "EchoBody", false),
    ];
    for (method, path, rpc, expected) in cases {
        let found = table.find(&method, path).unwrap();
        assert_eq!(form_body(found.binding, &input(rpc)), expected, "{method} {path}");
    }
}
