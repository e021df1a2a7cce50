//! Case tables for the pure transcoding core: text values, query binding,
//! request building and response rendering.

use http::Method;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage, Value};

use super::request::{HttpInput, build};
use super::response::{Rendered, render};
use super::{JsonOptions, value};
use crate::pb::EVERYTHING_DESCRIPTOR_SET;
use crate::registry::{snapshot, source};
use crate::route::RouteTable;

pub(super) fn pool() -> DescriptorPool {
    source::merge(&[("everything".to_string(), EVERYTHING_DESCRIPTOR_SET)]).unwrap().pool
}

pub(super) fn everything(pool: &DescriptorPool) -> MessageDescriptor {
    pool.get_message_by_name("protogate.test.v1.Everything").unwrap()
}

pub(super) fn table(pool: &DescriptorPool) -> RouteTable {
    snapshot::routes(pool).unwrap().1
}

/// Builds the request for `method path` with a query and JSON body, and
/// renders it back as JSON for comparison.
fn transcode(method: Method, path: &str, body: &str) -> Result<String, String> {
    let pool = pool();
    let table = table(&pool);
    let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
    let found = table.find(&method, path).map_err(|e| format!("{e:?}"))?;
    let input = HttpInput { variables: &found.variables, query, content_type: None, body: body.as_bytes() };
    let message = build(found.binding, &everything(&pool), input, &JsonOptions::default()).map_err(|e| e.message)?;
    Ok(serde_json::to_string(&message).unwrap())
}

#[test]
fn text_values_parse_by_field_kind() {
    let pool = pool();
    let message = everything(&pool);
    let kind = |name: &str| message.get_field_by_name(name).unwrap().kind();
    let ok: &[(&str, &str, Value)] = &[
        ("f_double", "-1.5e3", Value::F64(-1500.0)),
        ("f_double", "Infinity", Value::F64(f64::INFINITY)),
        ("f_float", "0.25", Value::F32(0.25)),
        ("f_int32", "-2147483648", Value::I32(i32::MIN)),
        ("f_int64", "-9223372036854775808", Value::I64(i64::MIN)),
        ("f_uint32", "4294967295", Value::U32(u32::MAX)),
        ("f_uint64", "18446744073709551615", Value::U64(u64::MAX)),
        ("f_sint32", "-3", Value::I32(-3)),
        ("f_fixed64", "7", Value::U64(7)),
        ("f_bool", "true", Value::Bool(true)),
        ("f_bool", "0", Value::Bool(false)),
        ("f_string", "any text", Value::String("any text".into())),
        ("f_bytes", "AQID", Value::Bytes(vec![1, 2, 3].into())),
        ("f_bytes", "-_8", Value::Bytes(vec![0xfb, 0xff].into())),
        ("f_bytes", "+/8=", Value::Bytes(vec![0xfb, 0xff].into())),
        ("f_enum", "COLOR_RED", Value::EnumNumber(1)),
        ("f_enum", "42", Value::EnumNumber(42)),
    ];
    for (field, text, expected) in ok {
        assert_eq!(value::parse_scalar(&kind(field), text).as_ref(), Ok(expected), "{field}={text}");
    }
    let err: &[(&str, &str, &str)] = &[
        ("f_double", "inf", "expected a number"),
        ("f_double", "", "expected a number"),
        ("f_float", "3.5e38", "number out of range for a 32-bit float"),
        ("f_int32", "1.0", "expected a 32-bit integer"),
        ("f_int64", "9223372036854775808", "expected a 64-bit integer"),
        ("f_uint64", "-1", "expected an unsigned 64-bit integer"),
        ("f_bool", "TRUE", "expected true or false"),
        ("f_bytes", "a", "expected standard or URL-safe base64"),
        ("f_enum", "RED", "expected a value of enum protogate.test.v1.Color"),
        ("w_duration", "5 minutes", "expected a duration in seconds such as 1.5s"),
        ("w_field_mask", "a,,b c", "expected comma-separated field paths, found \"b c\""),
        ("w_struct", "{}", "google.protobuf.Struct has no string form; set its fields one by one"),
    ];
    for (field, text, expected) in err {
        assert_eq!(value::parse_scalar(&kind(field), text), Err(expected.to_string()), "{field}={text}");
    }
}

#[test]
fn requests_combine_body_query_and_path() {
    let cases: &[(Method, &str, &str, Result<&str, &str>)] = &[
        (Method::GET, "/test/v1/echo?fInt32=1&rString=a&rString=b", "", Ok(r#"{"fInt32":1,"rString":["a","b"]}"#)),
        (
            Method::GET,
            "/test/v1/echo?f_nested.child.name=x&fNested.count=2",
            "",
            Ok(r#"{"fNested":{"count":2,"child":{"name":"x"}}}"#),
        ),
        (
            Method::GET,
            "/test/v1/echo?wInt32=5&wBytes=AQ&wTimestamp=1970-01-01T00:00:01Z",
            "",
            Ok(r#"{"wTimestamp":"1970-01-01T00:00:01Z","wInt32":5,"wBytes":"AQ=="}"#),
        ),
        (Method::GET, "/test/v1/echo?", "", Ok("{}")),
        (
            Method::GET,
            "/test/v1/echo?&&fBool",
            "",
            Err("invalid value \"\" for field \"f_bool\" in the query string: expected true or false"),
        ),
        (Method::GET, "/test/v1/echo?fString=", "", Ok("{}")),
        (Method::POST, "/test/v1/echo", r#"{"fInt32": 3}"#, Ok(r#"{"fInt32":3}"#)),
        (Method::POST, "/test/v1/echo", "  ", Ok("{}")),
        (
            Method::POST,
            "/test/v1/echo?fInt32=3",
            "{}",
            Err("query parameter \"fInt32\" sets a field that this route takes from the request body"),
        ),
        (
            Method::PUT,
            "/test/v1/nested/p?fInt32=9",
            r#"{"count": 1}"#,
            Ok(r#"{"fInt32":9,"fNested":{"name":"p","count":1}}"#),
        ),
        (
            Method::PUT,
            "/test/v1/nested/p?fNested.count=1",
            "{}",
            Err("query parameter \"fNested.count\" sets a field that this route takes from the request body"),
        ),
        (
            Method::POST,
            "/test/v1/repeated",
            r#"["a", 1]"#,
            Err("invalid JSON body: field \"r_string\": invalid type: integer `1`, expected a string"),
        ),
        (
            Method::GET,
            "/test/v1/scalars/s/1/true/COLOR_RED/0.5?fInt32=2",
            "",
            Ok(r#"{"fDouble":0.5,"fInt32":2,"fInt64":"1","fBool":true,"fString":"s","fEnum":"COLOR_RED"}"#),
        ),
        (
            Method::GET,
            "/test/v1/scalars/s/1/true/7/0.5",
            "",
            Ok(r#"{"fDouble":0.5,"fInt64":"1","fBool":true,"fString":"s","fEnum":7}"#),
        ),
        // Malformed escapes are refused where they are, not passed on.
        (
            Method::GET,
            "/test/v1/echo?fString=100%",
            "",
            Err("query parameter \"100%\" has a malformed percent-escape at byte 3"),
        ),
        (
            Method::GET,
            "/test/v1/echo?f%zzString=x",
            "",
            Err("query parameter \"f%zzString\" has a malformed percent-escape at byte 1"),
        ),
        (
            Method::GET,
            "/test/v1/files/a%4",
            "",
            Err("BadVariable(\"the URL path has a malformed percent-escape at byte 16: \\\"/test/v1/files/a%4\\\"\")"),
        ),
        // The query keeps the body's oneof rule: one member at most.
        (
            Method::GET,
            "/test/v1/echo?oString=a&oInt32=1",
            "",
            Err("query parameter \"oInt32\": o_int32 and o_string are members of the oneof choice; set one"),
        ),
    ];
    for (method, path, body, expected) in cases {
        let got = transcode(method.clone(), path, body);
        assert_eq!(got.as_deref(), expected.map_err(String::from).as_deref(), "{method} {path} {body}");
    }
}

#[test]
fn responses_render_whole_messages_fields_and_http_bodies() {
    let pool = pool();
    let descriptor = everything(&pool);
    let json = r#"{"fNested": {"name": "n"}, "rString": ["a"], "fInt64": "5", "mString": {"k": "v"}}"#;
    let message =
        DynamicMessage::deserialize(descriptor.clone(), &mut serde_json::Deserializer::from_str(json)).unwrap();
    let field = |name: &str| descriptor.get_field_by_name(name).unwrap();
    let options = JsonOptions::default();
    let cases: &[(Option<&str>, &str)] = &[
        (None, r#"{"fInt64":"5","fNested":{"name":"n"},"rString":["a"],"mString":{"k":"v"}}"#),
        (Some("f_nested"), r#"{"name":"n"}"#),
        (Some("r_string"), r#"["a"]"#),
        (Some("f_int64"), r#""5""#),
        (Some("m_string"), r#"{"k":"v"}"#),
        (Some("f_bool"), "false"),
        (Some("w_timestamp"), r#""1970-01-01T00:00:00Z""#),
    ];
    for (response_body, expected) in cases {
        let body = response_body.map(field);
        let rendered = render(&message, body.as_ref(), &options, false).unwrap();
        assert_eq!(rendered, Rendered::Json(expected.as_bytes().to_vec()), "{response_body:?}");
    }
    let http_body = pool.get_message_by_name("google.api.HttpBody").unwrap();
    let mut raw = DynamicMessage::new(http_body);
    raw.set_field_by_name("content_type", Value::String("text/csv".into()));
    raw.set_field_by_name("data", Value::Bytes("a,b\n".into()));
    assert_eq!(raw.descriptor().full_name(), "google.api.HttpBody");
    assert_eq!(
        render(&raw, None, &options, false).unwrap(),
        Rendered::Raw { content_type: "text/csv".into(), data: "a,b\n".into() }
    );
}
