//! `[auth]`: API keys, JWT verification keys, identity forwarding and
//! per-route rules, checked whole like the rest of the configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Validated authentication settings.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Whether routes without a rule need credentials.
    pub required_by_default: bool,
    pub api_key_header: String,
    pub api_key_query: Option<String>,
    /// SHA-256 (hex) of each key → consumer name.
    pub api_keys: BTreeMap<String, String>,
    pub jwt: Option<JwtConfig>,
    /// Metadata names the identity is forwarded under (client copies stripped).
    pub forward_consumer: String,
    pub forward_subject: String,
    /// Claim → metadata name.
    pub forward_claims: BTreeMap<String, String>,
    /// A client certificate the TLS listener verified is a credential.
    pub client_certificates: bool,
    pub rules: Vec<RuleConfig>,
}

#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// When not empty, tokens must carry one of these in `aud`.
    pub audiences: Vec<String>,
    pub leeway: Duration,
    /// Tokens without `exp` are refused (on by default).
    pub require_exp: bool,
    pub keys: Vec<KeyConfig>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    pub jwks_refresh: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    #[serde(default)]
    pub kid: Option<String>,
    /// `HS256` … `EdDSA`.
    pub algorithm: String,
    /// For HS*: the shared secret.
    #[serde(default)]
    pub secret: Option<String>,
    /// For RS*, PS*, ES*, EdDSA: the public key.
    #[serde(default)]
    pub pem_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A gRPC method (`pkg.Service.Method`), a service (`pkg.Service`) or a
    /// REST template as written in the rule (`/v1/{name=shelves/*}`).
    pub selector: String,
    #[serde(default = "authenticated")]
    pub require: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawAuth {
    default: String,
    api_keys: RawApiKeys,
    jwt: Option<RawJwt>,
    client_certificates: bool,
    forward: RawForward,
    rules: Vec<RuleConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawApiKeys {
    header: String,
    query: Option<String>,
    keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    consumer: String,
    sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawJwt {
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway: String,
    require_exp: bool,
    keys: Vec<KeyConfig>,
    jwks_file: Option<PathBuf>,
    jwks_url: Option<String>,
    jwks_refresh: String,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawForward {
    consumer: String,
    subject: String,
    claims: BTreeMap<String, String>,
}

fn authenticated() -> String {
    "authenticated".into()
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            default: "anonymous".into(),
            api_keys: RawApiKeys::default(),
            jwt: None,
            client_certificates: false,
            forward: RawForward::default(),
            rules: Vec::new(),
        }
    }
}

impl Default for RawApiKeys {
    fn default() -> Self {
        Self { header: "x-api-key".into(), query: None, keys: Vec::new() }
    }
}

impl Default for RawJwt {
    fn default() -> Self {
        Self {
            issuer: None,
            audiences: Vec::new(),
            leeway: "30s".into(),
            require_exp: true,
            keys: Vec::new(),
            jwks_file: None,
            jwks_url: None,
            jwks_refresh: "5m".into(),
        }
    }
}

impl Default for RawForward {
    fn default() -> Self {
        Self { consumer: "x-consumer".into(), subject: "x-subject".into(), claims: BTreeMap::new() }
    }
}

const ALGORITHMS: [&str; 12] =
    ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// Validates `[auth]`, pushing every problem.
pub(super) fn validate(raw: RawAuth, location: &str, errors: &mut Vec<String>) -> AuthConfig {
    let mut report = |key: &str, problem: String| errors.push(format!("{location}: `auth.{key}`: {problem}"));
    let required_by_default = match raw.default.as_str() {
        "anonymous" => false,
        "authenticated" => true,
        other => {
            report("default", format!("{other:?} is not \"anonymous\" or \"authenticated\""));
            false
        }
    };
    let mut api_keys = BTreeMap::new();
    for key in raw.api_keys.keys {
        let hash = key.sha256.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            report("api_keys.keys", format!("the sha256 of {:?} is not 64 hex digits", key.consumer));
        }
        api_keys.insert(hash, key.consumer);
    }
    let jwt = raw.jwt.map(|jwt| {
        for key in &jwt.keys {
            if !ALGORITHMS.contains(&key.algorithm.as_str()) {
                report(
                    "jwt.keys",
                    format!("{:?} is not a supported algorithm ({})", key.algorithm, ALGORITHMS.join(", ")),
                );
            }
            let hmac = key.algorithm.starts_with("HS");
            if hmac != key.secret.is_some() || hmac == key.pem_file.is_some() {
                report(
                    "jwt.keys",
                    format!("a {} key needs {}", key.algorithm, if hmac { "`secret`" } else { "`pem_file`" }),
                );
            }
        }
        if jwt.keys.is_empty() && jwt.jwks_file.is_none() && jwt.jwks_url.is_none() {
            report("jwt", "set `keys`, `jwks_file` or `jwks_url`".into());
        }
        if jwt.jwks_file.is_some() && jwt.jwks_url.is_some() {
            report("jwt", "`jwks_file` and `jwks_url` exclude each other".into());
        }
        if let Some(url) = &jwt.jwks_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            report("jwt.jwks_url", format!("{url:?} is not an http(s) URL"));
        }
        let mut duration = |key: &str, text: &str| {
            humantime::parse_duration(text)
                .map_err(|e| report(key, format!("{text:?} is not a duration ({e})")))
                .unwrap_or_default()
        };
        JwtConfig {
            leeway: duration("jwt.leeway", &jwt.leeway),
            jwks_refresh: duration("jwt.jwks_refresh", &jwt.jwks_refresh),
            issuer: jwt.issuer,
            audiences: jwt.audiences,
            require_exp: jwt.require_exp,
            keys: jwt.keys,
            jwks_file: jwt.jwks_file,
            jwks_url: jwt.jwks_url,
        }
    });
    for rule in &raw.rules {
        if rule.require != "authenticated" && rule.require != "anonymous" {
            report(
                "rules",
                format!("{}: require {:?} is not \"anonymous\" or \"authenticated\"", rule.selector, rule.require),
            );
        }
    }
    let wants_auth = required_by_default || raw.rules.iter().any(|r| r.require == "authenticated");
    if wants_auth && api_keys.is_empty() && jwt.is_none() && !raw.client_certificates {
        // Otherwise the routes would be open while the config says closed.
        report(
            "rules",
            "routes require authentication but none of `api_keys.keys`, `jwt` or `client_certificates` is configured"
                .into(),
        );
    }
    AuthConfig {
        required_by_default,
        api_key_header: raw.api_keys.header.to_ascii_lowercase(),
        api_key_query: raw.api_keys.query,
        api_keys,
        jwt,
        forward_consumer: raw.forward.consumer.to_ascii_lowercase(),
        forward_subject: raw.forward.subject.to_ascii_lowercase(),
        forward_claims: raw.forward.claims.into_iter().map(|(c, h)| (c, h.to_ascii_lowercase())).collect(),
        client_certificates: raw.client_certificates,
        rules: raw.rules,
    }
}

impl AuthConfig {
    /// Whether any credential is configured at all.
    pub fn enabled(&self) -> bool {
        !self.api_keys.is_empty() || self.jwt.is_some() || self.client_certificates
    }
}
