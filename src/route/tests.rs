//! Case tables for the route table: precedence, verbs, 404/405, decoding.

use http::Method;

use super::*;

fn binding(method: Method, template: &str, rpc: &str) -> Binding {
    Binding {
        method: 0,
        rpc_name: rpc.to_string(),
        http_method: method,
        template: Template::parse(template).unwrap(),
        template_text: template.to_string(),
        path_fields: Vec::new(),
        body: BodyRule::None,
        response_body: None,
        auto_mapped: false,
    }
}

fn table() -> RouteTable {
    let routes = [
        (Method::GET, "/v1/shelves", "ListShelves"),
        (Method::POST, "/v1/shelves", "CreateShelf"),
        (Method::GET, "/v1/{name=shelves/*}", "GetShelf"),
        (Method::DELETE, "/v1/{name=shelves/*}", "DeleteShelf"),
        (Method::GET, "/v1/shelves/special", "GetSpecial"),
        (Method::GET, "/v1/{name=shelves/*/books/*}", "GetBook"),
        (Method::POST, "/v1/{name=shelves/*/books/*}:publish", "PublishBook"),
        (Method::GET, "/v1/files/{path=**}", "GetFile"),
        (Method::GET, "/v1/files/{path=**}:download", "Download"),
        (Method::GET, "/v1/files/readme", "Readme"),
        (Method::GET, "/v1/{a}/{b}/x", "TwoVars"),
        (Method::GET, "/", "Root"),
        (Method::from_bytes(b"SEARCH").unwrap(), "/v1/shelves", "Search"),
    ];
    let bindings = routes.into_iter().map(|(m, t, r)| binding(m, t, r)).collect();
    RouteTable::build(bindings, vec![binding(Method::POST, "/pkg.Svc/Method", "pkg.Svc.Method")]).unwrap()
}

#[test]
fn matches_by_precedence_with_decoded_variables() {
    let table = table();
    let cases: &[(Method, &str, &str, &[&str])] = &[
        (Method::GET, "/v1/shelves", "ListShelves", &[]),
        (Method::POST, "/v1/shelves", "CreateShelf", &[]),
        (Method::GET, "/v1/shelves/1", "GetShelf", &["shelves/1"]),
        (Method::GET, "/v1/shelves/special", "GetSpecial", &[]),
        (Method::DELETE, "/v1/shelves/special", "DeleteShelf", &["shelves/special"]),
        (Method::GET, "/v1/shelves/1/books/2", "GetBook", &["shelves/1/books/2"]),
        (Method::POST, "/v1/shelves/1/books/2:publish", "PublishBook", &["shelves/1/books/2"]),
        (Method::GET, "/v1/shelves/a:b", "GetShelf", &["shelves/a:b"]),
        (Method::GET, "/v1/files/readme", "Readme", &[]),
        (Method::GET, "/v1/files/a/b/c", "GetFile", &["a/b/c"]),
        (Method::GET, "/v1/files", "GetFile", &[""]),
        (Method::GET, "/v1/files/a/b:download", "Download", &["a/b"]),
        (Method::GET, "/v1/files/a%2Fb/c%20d", "GetFile", &["a%2Fb/c d"]),
        (Method::GET, "/v1/files/a%2fb", "GetFile", &["a%2fb"]),
        (Method::GET, "/v1/x%2Fy/b%20c/x", "TwoVars", &["x/y", "b c"]),
        (Method::GET, "/v1/%E2%9C%93/b/x", "TwoVars", &["✓", "b"]),
        (Method::GET, "/", "Root", &[]),
        (Method::HEAD, "/v1/shelves", "ListShelves", &[]),
        (Method::from_bytes(b"SEARCH").unwrap(), "/v1/shelves", "Search", &[]),
        (Method::POST, "/pkg.Svc/Method", "pkg.Svc.Method", &[]),
    ];
    for (method, path, rpc, variables) in cases {
        let found = table.find(method, path).unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
        assert_eq!(found.binding.rpc_name, *rpc, "{method} {path}");
        assert_eq!(found.variables, *variables, "{method} {path}");
    }
}

#[test]
fn reports_not_found_and_method_not_allowed() {
    let table = table();
    let cases: &[(Method, &str, Result<(), MatchError>)] = &[
        (Method::GET, "/v2/shelves", Err(MatchError::NotFound)),
        (Method::GET, "/v1/shelves/", Err(MatchError::NotFound)),
        (Method::GET, "/v1/shelves/1/books", Err(MatchError::NotFound)),
        (Method::GET, "/v1/shelves/1:unknownVerb", Ok(())),
        (Method::GET, "/v1/shelves/1/books/2:unpublish", Ok(())),
        (
            Method::PUT,
            "/v1/shelves",
            Err(MatchError::MethodNotAllowed(vec![Method::GET, Method::POST, Method::from_bytes(b"SEARCH").unwrap()])),
        ),
        (Method::PATCH, "/v1/shelves/1", Err(MatchError::MethodNotAllowed(vec![Method::DELETE, Method::GET]))),
        (Method::GET, "/v1/shelves/1/books/2:publish", Err(MatchError::MethodNotAllowed(vec![Method::POST]))),
        (Method::GET, "/pkg.Svc/Method", Err(MatchError::MethodNotAllowed(vec![Method::POST]))),
        (
            Method::GET,
            "/v1/%FF/b/x",
            Err(MatchError::BadVariable("path variable \"a\" is not valid UTF-8 once percent-decoded".into())),
        ),
    ];
    for (method, path, expected) in cases {
        let got = table.find(method, path).map(|_| ());
        assert_eq!(&got, expected, "{method} {path}");
    }
}

#[test]
fn a_verb_falls_back_to_the_whole_segment() {
    // "a:b" is a shelf id containing ':' when no route has the verb ":b".
    let table = table();
    let found = table.find(&Method::GET, "/v1/shelves/1/books/2:unpublish").unwrap();
    assert_eq!(found.binding.rpc_name, "GetBook");
    assert_eq!(found.variables, ["shelves/1/books/2:unpublish"]);
}

#[test]
fn conflicts_name_both_methods() {
    let bindings = vec![
        binding(Method::GET, "/v1/{name=shelves/*}", "a.A.Get"),
        binding(Method::GET, "/v1/shelves/{id}", "b.B.Get"),
        binding(Method::GET, "/v1/{name=shelves/*}:x", "c.C.Get"),
        binding(Method::POST, "/v1/shelves/{id}", "d.D.Post"),
        binding(Method::GET, "/v1/{path=**}", "e.E.Get"),
        binding(Method::GET, "/v1/{rest=**}", "f.F.Get"),
    ];
    let errors = RouteTable::build(bindings, Vec::new()).unwrap_err();
    assert_eq!(
        errors,
        [
            "route conflict: GET \"/v1/shelves/{id}\" (b.B.Get) matches the same requests as GET \"/v1/{name=shelves/*}\" (a.A.Get)",
            "route conflict: GET \"/v1/{rest=**}\" (f.F.Get) matches the same requests as GET \"/v1/{path=**}\" (e.E.Get)",
        ]
    );
}

#[test]
fn explicit_routes_win_over_auto_mapped_ones() {
    let table = RouteTable::build(
        vec![binding(Method::POST, "/pkg.Svc/Method", "explicit")],
        vec![binding(Method::POST, "/pkg.Svc/Method", "auto")],
    )
    .unwrap();
    assert_eq!(table.find(&Method::POST, "/pkg.Svc/Method").unwrap().binding.rpc_name, "explicit");
    assert_eq!(table.bindings().len(), 1);
}

#[test]
fn percent_decoding_follows_the_contract() {
    let cases = [
        ("a%20b", false, Some("a b")),
        ("a%2Fb", false, Some("a/b")),
        ("a%2Fb", true, Some("a%2Fb")),
        ("a%2fb", true, Some("a%2fb")),
        ("a%3Ab", true, Some("a:b")),
        // Malformed escapes never get this far: `malformed_escape` refuses them.
        ("%C3%A9", false, Some("é")),
        ("%C3", false, None),
    ];
    for (raw, multi, expected) in cases {
        assert_eq!(table::percent_decode(raw, multi).as_deref(), expected, "{raw}");
    }
    let malformed = [("100%", Some(3)), ("%zz", Some(0)), ("a%4", Some(1)), ("%2F%41", None), ("a+b", None)];
    for (raw, expected) in malformed {
        assert_eq!(table::malformed_escape(raw), expected, "{raw}");
    }
}
