//! Load-time validation: every problem reported, with its location.

use std::sync::Arc;

use super::sets::{RegisteredSet, Sets};
use super::snapshot::{self, Snapshot, UpstreamMap};
use super::source;
use crate::upstream::Upstreams;

const HEADER: &str = "syntax = \"proto3\";\npackage t.v1;\nimport \"google/api/annotations.proto\";\n";

fn proto(body: &str) -> String {
    format!(
        "{HEADER}message Req {{ string name = 1; repeated string tags = 2; Inner inner = 3; Req self = 4; }}\n\
         message Inner {{ string id = 1; }}\nmessage Resp {{ string out = 1; }}\n{body}"
    )
}

fn method(rule: &str) -> String {
    proto(&format!("service S {{ rpc M(Req) returns (Resp) {{ option (google.api.http) = {{ {rule} }}; }} }}"))
}

fn load_errors(files: &[(&str, String)]) -> Vec<String> {
    let sources: Vec<(String, String)> = files.iter().map(|(n, s)| (n.to_string(), s.clone())).collect();
    let set = source::compile_protos(&sources, &[]).expect("test protos compile");
    let merged = source::merge(&[("set".to_string(), set)]).expect("set merges");
    snapshot::routes(&merged.pool).err().map(|e| e.messages).unwrap_or_default()
}

#[test]
fn bad_rules_are_reported_with_their_location() {
    let at = "t.proto: t.v1.S.M";
    let cases = [
        (r#"get: "/v1/{name""#, format!("{at}: GET \"/v1/{{name\": expected '}}', found end of template at offset 9")),
        (
            r#"get: "/v1/{nope}""#,
            format!("{at}: GET \"/v1/{{nope}}\": path variable \"nope\": no field \"nope\" in t.v1.Req"),
        ),
        (r#"get: "/v1/{tags}""#, format!("{at}: GET \"/v1/{{tags}}\": path variable \"tags\" is a repeated field")),
        (
            r#"get: "/v1/{inner}""#,
            format!("{at}: GET \"/v1/{{inner}}\": path variable \"inner\" is a message (t.v1.Inner)"),
        ),
        (
            r#"get: "/v1/{name.x}""#,
            format!("{at}: GET \"/v1/{{name.x}}\": path variable \"name.x\": \"name\" is not a message"),
        ),
        (
            r#"post: "/v1/x" body: "missing""#,
            format!("{at}: POST \"/v1/x\": body field \"missing\" is not a field of t.v1.Req"),
        ),
        (
            r#"post: "/v1/x" body: "inner.id""#,
            format!("{at}: POST \"/v1/x\": body field \"inner.id\" is not a field of t.v1.Req"),
        ),
        (
            r#"get: "/v1/x" response_body: "gone""#,
            format!("{at}: GET \"/v1/x\": response_body field \"gone\" is not a field of t.v1.Resp"),
        ),
        (
            r#"custom: { kind: "BAD KIND" path: "/v1/x" }"#,
            format!("{at}: custom kind \"BAD KIND\" is not an HTTP method"),
        ),
        (r#"body: "*""#, format!("{at}: http rule has no pattern (get, put, post, delete, patch or custom)")),
        (
            r#"get: "/v1/a" additional_bindings { get: "/v1/b" additional_bindings { get: "/v1/c" } }"#,
            format!("{at}: additional_bindings must not be nested"),
        ),
    ];
    for (rule, expected) in cases {
        assert_eq!(load_errors(&[("t.proto", method(rule))]), [expected], "{rule}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let service = proto(
        "service S {\n\
           rpc A(Req) returns (Resp) { option (google.api.http) = { get: \"/v1/{\" }; }\n\
           rpc B(Req) returns (Resp) { option (google.api.http) = { get: \"/v1/{zzz}\" }; }\n\
           rpc C(Req) returns (Resp) { option (google.api.http) = { get: \"/v1/{name=items/*}\" }; }\n\
           rpc D(Req) returns (Resp) { option (google.api.http) = { get: \"/v1/items/{name}\" }; }\n\
         }",
    );
    let errors = load_errors(&[("t.proto", service)]);
    assert_eq!(
        errors,
        [
            "t.proto: t.v1.S.A: GET \"/v1/{\": expected a field name, found end of template at offset 5",
            "t.proto: t.v1.S.B: GET \"/v1/{zzz}\": path variable \"zzz\": no field \"zzz\" in t.v1.Req",
            "route conflict: GET \"/v1/items/{name}\" (t.v1.S.D) matches the same requests as GET \"/v1/{name=items/*}\" (t.v1.S.C)",
        ]
    );
}

#[test]
fn conflicts_across_files_name_both_methods() {
    let other = format!(
        "{HEADER}import \"t.proto\";\nservice Other {{ rpc N(Req) returns (Resp) {{ option (google.api.http) = {{ get: \"/v1/{{name}}\" }}; }} }}"
    );
    let errors = load_errors(&[("t.proto", method(r#"get: "/v1/{name}""#)), ("other.proto", other)]);
    assert_eq!(
        errors,
        [
            "route conflict: GET \"/v1/{name}\" (t.v1.Other.N) matches the same requests as GET \"/v1/{name}\" (t.v1.S.M)"
        ]
    );
}

#[test]
fn broken_sets_and_missing_upstreams_are_reported() {
    let errors =
        source::merge(&[("a.binpb".into(), b"not protobuf".to_vec()), ("b.binpb".into(), vec![0x0a, 0x05, 0x0a])])
            .unwrap_err()
            .messages;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("a.binpb: "), "{errors:?}");
    assert!(errors[1].starts_with("b.binpb: "), "{errors:?}");

    // A set built without --include_imports lacks its dependencies.
    let lonely = prost_types::FileDescriptorSet {
        file: vec![prost_types::FileDescriptorProto {
            name: Some("lonely.proto".into()),
            dependency: vec!["missing/dep.proto".into()],
            ..Default::default()
        }],
    };
    let errors =
        source::merge(&[("lonely.binpb".into(), prost::Message::encode_to_vec(&lonely))]).unwrap_err().messages;
    assert!(errors[0].starts_with("lonely.binpb: ") && errors[0].contains("missing/dep.proto"), "{errors:?}");

    let set = source::compile_protos(&[("t.proto".into(), method(r#"get: "/v1/x""#))], &[]).unwrap();
    let mut sets = sets_of(&[("t", set)]);
    sets.values_mut().for_each(|s| s.upstream = None);
    let errors = Snapshot::build(&sets, &UpstreamMap::default(), &channels(), 1).unwrap_err();
    assert_eq!(errors.messages, ["no upstream for service t.v1.S; pass --upstream URL or --upstream t.v1.S=URL"]);
}

#[test]
fn imports_resolve_only_against_sources_and_bundled_files() {
    let with_import = format!("{HEADER}import \"etc/passwd.proto\";\n");
    let errors = source::compile_protos(&[("t.proto".into(), with_import)], &[]).unwrap_err();
    assert!(errors[0].contains("etc/passwd.proto"), "{errors:?}");
    let wkt = format!("{HEADER}import \"google/protobuf/timestamp.proto\";\nimport \"google/rpc/status.proto\";\n");
    assert!(source::compile_protos(&[("t.proto".into(), wkt)], &[]).is_ok());
}

fn channels() -> Upstreams {
    Upstreams::new(crate::config::PoolSettings::default(), 4 << 20).unwrap()
}

fn sets_of(sets: &[(&str, Vec<u8>)]) -> Sets {
    sets.iter()
        .map(|(name, bytes)| {
            let mut set = RegisteredSet {
                name: name.to_string(),
                upstream: Some(format!("http://{name}.internal:1")),
                versions: Vec::new(),
                active: 0,
                from_file: false,
            };
            set.push(Arc::new(bytes.clone()), 5);
            (name.to_string(), set)
        })
        .collect()
}

#[tokio::test]
async fn sets_bring_their_upstream_and_must_agree_on_shared_files() {
    let common = format!("{HEADER}message Shared {{ string id = 1; }}\n");
    let changed = format!("{HEADER}message Shared {{ int64 id = 1; }}\n");
    let a = format!(
        "{HEADER}import \"common.proto\";\nservice A {{ rpc M(Shared) returns (Shared) {{ option (google.api.http) = {{ get: \"/a/{{id}}\" }}; }} }}"
    );
    let b = a.replace("service A", "service B").replace("/a/", "/b/");
    let set_a = source::compile_protos(&[("a.proto".into(), a), ("common.proto".into(), common.clone())], &[]).unwrap();
    let set_b = source::compile_protos(&[("b.proto".into(), b.clone()), ("common.proto".into(), common)], &[]).unwrap();
    let map = UpstreamMap { default: None, services: [("t.v1.B".to_string(), "http://override:1".to_string())].into() };
    let snapshot = Snapshot::build(&sets_of(&[("a", set_a.clone()), ("b", set_b)]), &map, &channels(), 7).unwrap();
    let upstreams: Vec<(&str, &str)> = snapshot.methods.iter().map(|m| (m.set.as_str(), m.upstream.as_str())).collect();
    assert_eq!(upstreams, [("a", "http://a.internal:1"), ("b", "http://override:1")]);
    assert_eq!(snapshot.generation, 7);

    let set_b =
        source::compile_protos(&[("b.proto".into(), b.clone()), ("common.proto".into(), changed)], &[]).unwrap();
    let errors = Snapshot::build(&sets_of(&[("a", set_a.clone()), ("b", set_b)]), &map, &channels(), 8).unwrap_err();
    assert_eq!(
        errors.messages,
        ["b: file \"common.proto\" differs from the one in a: message Shared is defined differently"]
    );

    // Other comments and file options (as buf writes them) are the same file.
    let commented =
        format!("{HEADER}option java_package = \"x\";\n// Shared things.\nmessage Shared {{ string id = 1; }}\n");
    let set_b = source::compile_protos(&[("b.proto".into(), b), ("common.proto".into(), commented)], &[]).unwrap();
    assert!(Snapshot::build(&sets_of(&[("a", set_a), ("b", set_b)]), &map, &channels(), 9).is_ok());
}
