//! What the gateway enforces on an operation, as the document states it:
//! who may call it (security schemes and requirements from `[auth]`), the
//! declared success answer, and the refusals the gateway itself can give
//! (400 for bad input, 401/403 from authentication, 429 from rate limits).

use http::StatusCode;
use serde_json::{Map, Value, json};

/// The credentials the gateway accepts, by which the document names its
/// security schemes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schemes {
    /// The header an API key comes in, when API keys are configured.
    pub api_key_header: Option<String>,
    /// The query parameter an API key may come in instead.
    pub api_key_query: Option<String>,
    /// Whether bearer JWTs are verified.
    pub bearer: bool,
    /// Whether a verified client certificate is a credential.
    pub client_certificate: bool,
}

/// Who may call one operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Access {
    /// Authentication is off: the document has no security at all.
    #[default]
    Open,
    /// Anyone; credentials, when sent, are checked and forwarded.
    Optional { scopes: Vec<String>, claims: bool },
    /// Valid credentials, with these scopes (and claims, when `claims`).
    Required { scopes: Vec<String>, claims: bool },
}

/// What the gateway enforces on one binding.
#[derive(Debug, Clone, Default)]
pub struct Enforcement {
    /// The declared success status and whether a `Location` comes with it.
    pub success: Option<(StatusCode, bool)>,
    pub access: Access,
    /// Whether a rate limit applies.
    pub rate_limited: bool,
}

const API_KEY: &str = "apiKey";
const API_KEY_QUERY: &str = "apiKeyQuery";
const BEARER: &str = "bearerAuth";
const MUTUAL_TLS: &str = "clientCertificate";

impl Schemes {
    pub fn is_empty(&self) -> bool {
        self.api_key_header.is_none() && self.api_key_query.is_none() && !self.bearer && !self.client_certificate
    }

    /// `components.securitySchemes`.
    pub fn components(&self) -> Map<String, Value> {
        let mut schemes = Map::new();
        if let Some(header) = &self.api_key_header {
            let scheme = json!({ "type": "apiKey", "in": "header", "name": header, "description": "An API key." });
            schemes.insert(API_KEY.into(), scheme);
        }
        if let Some(query) = &self.api_key_query {
            let scheme = json!({ "type": "apiKey", "in": "query", "name": query, "description": "An API key." });
            schemes.insert(API_KEY_QUERY.into(), scheme);
        }
        if self.bearer {
            let scheme = json!({
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "A JWT; rules may ask for scopes (`scope` or `scp`) and claims.",
            });
            schemes.insert(BEARER.into(), scheme);
        }
        if self.client_certificate {
            let scheme = json!({
                "type": "mutualTLS",
                "description": "A client certificate from the configured CA; its common name is the consumer.",
            });
            schemes.insert(MUTUAL_TLS.into(), scheme);
        }
        schemes
    }

    /// An operation's `security`: any one scheme will do, scopes listed as
    /// the roles OpenAPI 3.1 allows for non-OAuth schemes; an empty
    /// requirement first when credentials are optional.
    fn requirements(&self, access: &Access) -> Value {
        let (optional, scopes) = match access {
            Access::Open => return json!([]),
            Access::Optional { scopes, .. } => (true, scopes),
            Access::Required { scopes, .. } => (false, scopes),
        };
        let mut alternatives = Vec::new();
        if optional {
            alternatives.push(json!({}));
        }
        let names = [
            (self.api_key_header.is_some(), API_KEY),
            (self.api_key_query.is_some(), API_KEY_QUERY),
            (self.bearer, BEARER),
            (self.client_certificate, MUTUAL_TLS),
        ];
        for (_, name) in names.into_iter().filter(|(present, _)| *present) {
            // API keys and certificates carry no scopes: a rule with scopes
            // admits bearer tokens only.
            if name != BEARER && !scopes.is_empty() {
                continue;
            }
            alternatives.push(json!({ name: if name == BEARER { scopes.clone() } else { Vec::new() } }));
        }
        Value::Array(alternatives)
    }
}

/// Writes `enforcement` into `operation`: security, the declared success
/// status, and the gateway's own refusals.
pub fn apply(operation: &mut Value, enforcement: &Enforcement, schemes: &Schemes) {
    if !schemes.is_empty() {
        operation["security"] = schemes.requirements(&enforcement.access);
    }
    let Some(Value::Object(answers)) = operation.get_mut("responses") else { return };
    if let Some((status, location)) = enforcement.success {
        declare_success(answers, status, location);
    }
    answers.insert("400".into(), error("The request is invalid: malformed JSON, query or path, or an unknown field."));
    let (credentials, forbidden) = match &enforcement.access {
        Access::Open => (None, false),
        Access::Optional { scopes, claims } => {
            (Some("The credentials sent are invalid."), !scopes.is_empty() || *claims)
        }
        Access::Required { scopes, claims } => {
            (Some("Credentials are missing or invalid."), !scopes.is_empty() || *claims)
        }
    };
    if let Some(description) = credentials {
        let mut unauthorized = error(description);
        unauthorized["headers"] = json!({ "WWW-Authenticate": { "schema": { "type": "string" } } });
        answers.insert("401".into(), unauthorized);
    }
    if forbidden {
        answers.insert("403".into(), error("The credentials lack a scope or claim this operation asks for."));
    }
    if enforcement.rate_limited {
        let mut limited = error("Too many requests: the rate limit is exhausted.");
        limited["headers"] = json!({
            "Retry-After": { "description": "Seconds until a request may pass.", "schema": { "type": "integer" } },
        });
        answers.insert("429".into(), limited);
    }
}

/// Moves the 200 answer to the declared success status (a 204 has no
/// content; a `Location` is described as a header).
fn declare_success(answers: &mut Map<String, Value>, status: StatusCode, location: bool) {
    let Some(mut ok) = answers.remove("200") else { return };
    if status == StatusCode::NO_CONTENT {
        ok = json!({ "description": "No content" });
    }
    if location {
        ok["headers"] =
            json!({ "Location": { "description": "Where the created resource is", "schema": { "type": "string" } } });
    }
    answers.insert(status.as_u16().to_string(), ok);
}

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/google.rpc.Status" } } },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemes() -> Schemes {
        Schemes {
            api_key_header: Some("x-api-key".into()),
            api_key_query: None,
            bearer: true,
            client_certificate: true,
        }
    }

    /// (access, expected `security`).
    #[test]
    fn security_requirements_follow_the_rule() {
        let scoped = vec!["books:write".to_string()];
        let cases = [
            (Access::Open, json!([])),
            (
                Access::Optional { scopes: vec![], claims: false },
                json!([{}, {"apiKey": []}, {"bearerAuth": []}, {"clientCertificate": []}]),
            ),
            (
                Access::Required { scopes: vec![], claims: false },
                json!([{"apiKey": []}, {"bearerAuth": []}, {"clientCertificate": []}]),
            ),
            (Access::Required { scopes: scoped.clone(), claims: false }, json!([{"bearerAuth": ["books:write"]}])),
            (Access::Optional { scopes: scoped, claims: true }, json!([{}, {"bearerAuth": ["books:write"]}])),
        ];
        for (access, expected) in cases {
            assert_eq!(schemes().requirements(&access), expected, "{access:?}");
        }
    }

    /// (enforcement, the response codes listed).
    #[test]
    fn refusals_the_gateway_gives_are_listed() {
        let required = Access::Required { scopes: vec!["admin".into()], claims: false };
        let created = Some((StatusCode::CREATED, true));
        let cases: [(Enforcement, &[&str]); 4] = [
            (Enforcement::default(), &["200", "400", "default"]),
            (Enforcement { rate_limited: true, ..Enforcement::default() }, &["200", "400", "429", "default"]),
            (Enforcement { access: required, ..Enforcement::default() }, &["200", "400", "401", "403", "default"]),
            (Enforcement { success: created, ..Enforcement::default() }, &["201", "400", "default"]),
        ];
        for (enforcement, codes) in cases {
            let mut operation = json!({ "responses": { "200": { "description": "OK" }, "default": {} } });
            apply(&mut operation, &enforcement, &schemes());
            let mut listed: Vec<&str> =
                operation["responses"].as_object().unwrap().keys().map(String::as_str).collect();
            listed.sort_unstable();
            assert_eq!(listed, codes, "{enforcement:?}");
        }
        let mut operation = json!({ "responses": { "200": { "description": "OK" } } });
        apply(&mut operation, &Enforcement { success: created, ..Enforcement::default() }, &Schemes::default());
        assert_eq!(operation["responses"]["201"]["headers"]["Location"]["schema"]["type"], "string");
        assert!(operation.get("security").is_none(), "no schemes, no per-operation security");
    }
}
