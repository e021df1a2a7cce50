//! Configuration case tables: defaults, overrides, every error at once.

use super::*;

#[test]
fn defaults_apply_without_a_file() {
    let config = Config::from_toml("", &Flags::default()).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.upstream.timeout, Duration::from_secs(15));
    assert_eq!(config.upstream.max_timeout, Duration::from_secs(300));
    assert_eq!(config.limits.max_body_size, 4 * 1024 * 1024);
    assert_eq!(config.limits.max_uri_length, 8192);
    assert_eq!(config.json.max_depth, 64);
}

#[test]
fn flags_override_the_file() {
    let text = r#"
        listen = "127.0.0.1:1"
        descriptors = ["a.binpb"]
        [upstream]
        default = "http://file:1"
        services = { "a.B" = "http://file:2" }
    "#;
    let flags = Flags {
        listen: Some("127.0.0.1:2".into()),
        descriptors: vec!["b.binpb".into()],
        upstreams: vec!["http://flag:1".into(), "a.B=http://flag:2".into()],
        admin_listen: Some("127.0.0.1:9".into()),
        admin_token: Some("t".into()),
        state_dir: Some("state".into()),
        reflect: vec!["http://backend:1".into()],
        registry: None,
        descriptor_dirs: vec!["sets".into()],
        tls_cert: None,
        tls_key: None,
    };
    let config = Config::from_toml(text, &flags).unwrap();
    assert_eq!(config.registry.reflect, ["http://backend:1"]);
    assert_eq!(config.descriptor_dirs, [PathBuf::from("sets")]);
    assert_eq!(config.listen.to_string(), "127.0.0.1:2");
    assert_eq!(config.descriptors, [PathBuf::from("b.binpb")]);
    assert_eq!(config.upstream.map.default.as_deref(), Some("http://flag:1"));
    assert_eq!(config.upstream.map.for_service("a.B", None), Some("http://flag:2"));
    let admin = config.admin.unwrap();
    assert_eq!(admin.listen.to_string(), "127.0.0.1:9");
    assert_eq!(admin.token.as_deref(), Some("t"));
    assert_eq!(config.registry.state_dir, Some(PathBuf::from("state")));
}

#[test]
fn reports_every_error_at_once() {
    let text = r#"
        listen = "nowhere"
        colour = "blue"
        [upstream]
        default = "ftp://x"
        timeout = "soon"
        max_pending = 0
        services = { "a.B" = "not a url" }
        [json]
        max_depth = 0
        indentation = true
        [limits]
        max_uri_length = 3
        [admin]
        listen = "0.0.0.0:9090"
    "#;
    // Unknown keys and bad values in one pass, unknown keys first.
    let all = Config::from_toml(text, &Flags::default()).unwrap_err().0;
    assert_eq!(all[..2], ["config: unknown key `colour`", "config: unknown key `json.indentation`"]);

    let text = text.replace("colour = \"blue\"", "").replace("indentation = true", "");
    let errors = Config::from_toml(&text, &Flags::default()).unwrap_err().0;
    assert_eq!(all[2..], errors[..], "the same problems as without the unknown keys");
    assert_eq!(
        errors,
        [
            "config: `listen`: \"nowhere\" is not HOST:PORT (e.g. 127.0.0.1:8080)",
            "config: `upstream.default`: upstream URL \"ftp://x\" must start with http://, https:// or dns:///",
            "config: `upstream.services.\"a.B\"`: invalid upstream URL \"not a url\": invalid uri character",
            "config: `upstream.timeout`: \"soon\" is not a duration (expected number at 0)",
            "config: `upstream.max_pending` must be at least 1",
            "config: `json.max_depth` must be at least 1",
            "config: `limits.max_uri_length` must be at least 16",
            "config: `admin.listen`: 0.0.0.0:9090 is not a loopback address, so an admin token is required \
             (--admin-token, PROTOGATE_ADMIN_TOKEN or `admin.token`)",
        ]
    );
}

#[test]
fn registry_stores_exclude_each_other() {
    let text = "[registry]\nredis = \"http://x\"\nstate_dir = \"s\"\nresync_interval = \"often\"";
    let errors = Config::from_toml(text, &Flags::default()).unwrap_err().0;
    assert_eq!(
        errors,
        [
            "config: `registry.resync_interval`: \"often\" is not a duration (expected number at 0)",
            "config: `registry.redis`: \"http://x\" must start with redis:// or rediss://",
            "config: `registry.redis` and `registry.state_dir` exclude each other: Redis already keeps the registry",
        ]
    );
    let config = Config::from_toml("[registry]\nredis = \"redis://127.0.0.1:6379\"", &Flags::default()).unwrap();
    assert_eq!(config.registry.key_prefix, "protogate:");
    assert_eq!(config.registry.resync_interval, Duration::from_secs(5));
    assert_eq!(config.registry.watch_interval, Duration::from_secs(2));
}

#[test]
fn syntax_and_type_errors_name_the_place() {
    let error = Config::from_toml("listen = ", &Flags::default()).unwrap_err().0;
    assert!(error[0].starts_with("config: TOML parse error at line 1, column 10"), "{error:?}");
    let error = Config::from_toml("[limits]\nmax_body_size = \"big\"", &Flags::default()).unwrap_err().0;
    assert!(error[0].contains("line 2"), "{error:?}");
    assert!(error[0].contains("max_body_size"), "{error:?}");
}

#[test]
fn auth_settings_are_checked_whole() {
    let text = r#"
        [auth]
        default = "sometimes"
        [auth.api_keys]
        query = "api_key"
        keys = [{ consumer = "c", sha256 = "nothex" }]
        [auth.jwt]
        leeway = "later"
        keys = [{ algorithm = "HS999", secret = "s" }, { algorithm = "RS256", secret = "s" }]
        [[auth.rules]]
        selector = "a.B"
        require = "maybe"
    "#;
    let errors = Config::from_toml(text, &Flags::default()).unwrap_err().0;
    assert_eq!(
        errors,
        [
            "config: `auth.default`: \"sometimes\" is not \"anonymous\" or \"authenticated\"",
            "config: `auth.api_keys.keys`: the sha256 of \"c\" is not 64 hex digits",
            "config: `auth.jwt.keys`: \"HS999\" is not a supported algorithm (HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)",
            "config: `auth.jwt.keys`: a RS256 key needs `pem_file`",
            "config: `auth.jwt.leeway`: \"later\" is not a duration (expected number at 0)",
            "config: `auth.rules`: a.B: require \"maybe\" is not \"anonymous\" or \"authenticated\"",
        ]
    );
    let open = Config::from_toml("[auth]\ndefault = \"authenticated\"", &Flags::default()).unwrap_err().0;
    assert_eq!(
        open,
        ["config: `auth.rules`: routes require authentication but none of `api_keys.keys`, `jwt` or \
             `client_certificates` is configured"]
    );
    let config = Config::from_toml("[auth.api_keys]\nquery = \"key\"", &Flags::default()).unwrap();
    assert_eq!(config.json.ignored_query_parameters, ["key"], "the key's query parameter is never a request field");
}

#[test]
fn openapi_servers_are_urls_or_paths() {
    let text = r#"[openapi]
servers = ["https://api.example.com/v1", "/gateway", "http://", "api.example.com", "/a b", ""]"#;
    let errors = Config::from_toml(text, &Flags::default()).unwrap_err().0;
    let refused = ["\"http://\"", "\"api.example.com\"", "\"/a b\"", "\"\""]
        .map(|url| format!("config: `openapi.servers`: {url} is not an http(s):// URL or a path starting with /"));
    assert_eq!(errors, refused);
    let good = "[openapi]\nservers = [\"https://api.example.com/v1\", \"/gateway\"]";
    let config = Config::from_toml(good, &Flags::default()).unwrap();
    assert_eq!(config.openapi_servers, ["https://api.example.com/v1", "/gateway"]);
    assert!(Config::from_toml("", &Flags::default()).unwrap().openapi_servers.is_empty());
}

#[test]
fn openapi_info_keys_are_checked_and_written_as_openapi_objects() {
    let good = r#"[openapi]
title = "Library API"
description = "Shelves and books."
contact = { name = "API team", url = "https://example.com/support", email = "api@example.com" }
license = { name = "Apache 2.0", identifier = "Apache-2.0" }"#;
    let info = Config::from_toml(good, &Flags::default()).unwrap().openapi_info;
    assert_eq!((info.title.as_str(), info.description.as_str()), ("Library API", "Shelves and books."));
    assert_eq!(
        info.contact,
        Some(serde_json::json!({"name": "API team", "url": "https://example.com/support", "email": "api@example.com"}))
    );
    assert_eq!(info.license, Some(serde_json::json!({"name": "Apache 2.0", "identifier": "Apache-2.0"})));
    let defaults = Config::from_toml("", &Flags::default()).unwrap().openapi_info;
    assert_eq!((defaults.title.as_str(), &defaults.contact, &defaults.license), ("protogate", &None, &None));

    let cases = [
        ("title = \" \"", "config: `openapi.title` must not be empty"),
        (
            "contact = { url = \"example.com\" }",
            "config: `openapi.contact.url`: \"example.com\" is not an http(s):// URL",
        ),
        ("contact = { email = \"nobody\" }", "config: `openapi.contact.email`: \"nobody\" is not an email address"),
        ("license = { name = \"\" }", "config: `openapi.license.name` must not be empty"),
        (
            "license = { name = \"MIT\", identifier = \"MIT\", url = \"https://mit.edu\" }",
            "config: `openapi.license`: give `identifier` or `url`, not both (OpenAPI 3.1)",
        ),
        (
            "license = { name = \"MIT\", url = \"mit\" }",
            "config: `openapi.license.url`: \"mit\" is not an http(s):// URL",
        ),
    ];
    for (keys, expected) in cases {
        let errors = Config::from_toml(&format!("[openapi]\n{keys}"), &Flags::default()).unwrap_err().0;
        assert_eq!(errors, [expected], "{keys}");
    }
}
