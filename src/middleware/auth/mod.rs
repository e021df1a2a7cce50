//! Authentication and authorization for every protocol: API keys (stored as
//! SHA-256 hashes) and JWT bearer tokens (jsonwebtoken; each key bound to one
//! algorithm, so `alg: none` and algorithm confusion are refused), rules per
//! gRPC method, service or REST template, and the identity forwarded to the
//! backend as metadata — client-sent copies stripped first.

pub mod certificate;
mod jwks;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::Request;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use self::jwks::{Jwks, VerifyingKey};
use crate::registry::Snapshot;
use arc_swap::ArcSwapOption;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::admission::{Admitted, Protocol};
use crate::config::{AuthConfig, RuleConfig};
use crate::error::Error;
use crate::openapi::{Access, Schemes};
use crate::registry::sets::hex;
use crate::telemetry::access::trace_of;
use crate::telemetry::metrics::Metrics;

/// The configured checks, shared by every request.
#[derive(Debug)]
pub struct Authenticator {
    config: AuthConfig,
    metrics: Arc<Metrics>,
    /// Rules by method or service.
    rules: HashMap<String, RuleConfig>,
    /// Rules by REST template, in config order; each protects its method.
    template_rules: Vec<RuleConfig>,
    /// Those rules by the method their template belongs to, for one
    /// snapshot generation (rebuilt when the registry changes).
    template_methods: ArcSwapOption<(u64, HashMap<String, RuleConfig>)>,
    static_keys: Vec<VerifyingKey>,
    jwks: Arc<Jwks>,
}

/// Who is calling.
#[derive(Debug, Default)]
struct Identity {
    consumer: Option<String>,
    claims: Map<String, Value>,
}

impl Authenticator {
    /// Reads every configured key, reporting every unreadable one.
    pub fn new(config: AuthConfig, metrics: Arc<Metrics>) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let mut static_keys = Vec::new();
        for key in config.jwt.iter().flat_map(|j| &j.keys) {
            match static_key(key) {
                Ok(k) => static_keys.push(k),
                Err(e) => errors.push(format!("auth.jwt.keys ({}): {e}", key.kid.as_deref().unwrap_or(&key.algorithm))),
            }
        }
        let (template_rules, named): (Vec<_>, Vec<_>) =
            config.rules.iter().cloned().partition(|r| r.selector.starts_with('/'));
        let rules = named.into_iter().map(|r| (r.selector.clone(), r)).collect();
        let jwt = config.jwt.as_ref();
        let jwks = Jwks::new(jwt.and_then(|j| j.jwks_file.clone()), jwt.and_then(|j| j.jwks_url.clone()))
            .map_err(|e| errors.push(format!("auth.jwt: {e}")))
            .ok();
        match jwks {
            Some(jwks) if errors.is_empty() => {
                let jwks = Arc::new(jwks);
                jwks.spawn_refresh(jwt.map(|j| j.jwks_refresh).unwrap_or_default());
                let template_methods = ArcSwapOption::empty();
                Ok(Self { config, metrics, rules, template_rules, template_methods, static_keys, jwks })
            }
            _ => Err(errors),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }

    /// The credentials accepted, as the OpenAPI document names them.
    pub fn schemes(&self) -> Schemes {
        let keys = !self.config.api_keys.is_empty();
        Schemes {
            api_key_header: Some(self.config.api_key_header.clone()).filter(|_| keys),
            api_key_query: self.config.api_key_query.clone().filter(|_| keys),
            bearer: self.config.jwt.is_some(),
            client_certificate: self.config.client_certificates,
        }
    }

    /// Who may call a route with `rule`, as the OpenAPI document says it.
    pub fn access(&self, rule: Option<&RuleConfig>) -> Access {
        if !self.enabled() {
            return Access::Open;
        }
        let required = rule.map_or(self.config.required_by_default, |r| r.require == "authenticated");
        let scopes = rule.map(|r| r.scopes.clone()).unwrap_or_default();
        let claims = rule.is_some_and(|r| !r.claims.is_empty());
        if required { Access::Required { scopes, claims } } else { Access::Optional { scopes, claims } }
    }

    /// The rule for a request's method: one naming the method, else its
    /// service, else one naming a REST template of the method — whatever
    /// path the request came by (another binding, `POST /pkg.Svc/Method`,
    /// Connect, gRPC), so no path to a protected method is left open.
    pub fn rule(&self, admitted: &Admitted) -> Option<RuleConfig> {
        if !admitted.calls().is_empty() {
            return self.composite_rule(admitted);
        }
        let [rpc, service, _] = admitted.selectors();
        self.method_rule(rpc, service, &admitted.snapshot)
    }

    /// The rule of a method, by its full name, whatever path calls it.
    pub fn method_rule_of(&self, rpc: &str, snapshot: &Snapshot) -> Option<RuleConfig> {
        if !self.enabled() {
            return None;
        }
        let service = rpc.rsplit_once('.').map(|(service, _)| service);
        self.method_rule(Some(rpc), service, snapshot)
    }

    fn method_rule(&self, rpc: Option<&str>, service: Option<&str>, snapshot: &Snapshot) -> Option<RuleConfig> {
        if let Some(rule) = [rpc, service].into_iter().flatten().find_map(|selector| self.rules.get(selector)) {
            return Some(rule.clone());
        }
        let rpc = rpc.filter(|_| !self.template_rules.is_empty())?;
        let cached = self.template_methods.load();
        if let Some(cached) = cached.as_deref()
            && cached.0 == snapshot.generation
        {
            return cached.1.get(rpc).cloned();
        }
        let by_method = self.rules_by_method(snapshot);
        let rule = by_method.get(rpc).cloned();
        self.template_methods.store(Some(Arc::new((snapshot.generation, by_method))));
        rule
    }

    /// Template rules by the method each template is bound to; several for
    /// one method combine to the strictest (any requires authentication,
    /// every scope and claim).
    fn rules_by_method(&self, snapshot: &Snapshot) -> HashMap<String, RuleConfig> {
        let mut by_method: HashMap<String, RuleConfig> = HashMap::new();
        for rule in &self.template_rules {
            let methods = snapshot.routes.bindings().iter().filter(|b| b.template_text == rule.selector);
            for binding in methods {
                match by_method.get_mut(&binding.rpc_name) {
                    Some(combined) => strictest(combined, rule),
                    None => {
                        by_method.insert(binding.rpc_name.clone(), rule.clone());
                    }
                }
            }
        }
        by_method
    }

    /// A composite asks what every method it calls asks, and what a rule
    /// naming its own template asks: no call goes around its method's rule.
    fn composite_rule(&self, admitted: &Admitted) -> Option<RuleConfig> {
        self.composite_rule_of(admitted.template(), admitted.calls(), &admitted.snapshot)
    }

    /// The rule of a composite by its template and the methods it calls.
    pub fn composite_rule_of(
        &self,
        template: Option<&str>,
        calls: &[String],
        snapshot: &Snapshot,
    ) -> Option<RuleConfig> {
        let own = template.and_then(|t| self.template_rules.iter().find(|r| r.selector == t));
        let calls = calls.iter().filter_map(|rpc| {
            let service = rpc.rsplit_once('.').map(|(service, _)| service);
            self.method_rule(Some(rpc), service, snapshot)
        });
        own.cloned().into_iter().chain(calls).reduce(|mut combined, rule| {
            strictest(&mut combined, &rule);
            combined
        })
    }

    fn identify(&self, request: &Request) -> Result<Option<Identity>, Error> {
        let headers = request.headers();
        if let Some(bearer) = bearer(request)
            && self.config.jwt.is_some()
        {
            return self.verify_jwt(bearer).map(Some);
        }
        let from_query = self.config.api_key_query.as_deref().and_then(|name| query_value(request, name));
        let key = headers
            .get(self.config.api_key_header.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or(from_query);
        match key {
            Some(key) if !self.config.api_keys.is_empty() => {
                let hash = hex(&Sha256::digest(key.as_bytes()));
                let consumer = self.config.api_keys.get(&hash).ok_or_else(|| unauthenticated("invalid API key"))?;
                Ok(Some(Identity { consumer: Some(consumer.clone()), claims: Map::new() }))
            }
            _ => Ok(self.certificate_identity(request)),
        }
    }

    /// A client certificate the listener verified, when it counts as a
    /// credential: the consumer is its common name; its subject and common
    /// name are the claims `sub` and `cn`, for rules and forwarding.
    fn certificate_identity(&self, request: &Request) -> Option<Identity> {
        if !self.config.client_certificates {
            return None;
        }
        let certificate = request.extensions().get::<std::sync::Arc<certificate::ClientCertificate>>()?;
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(certificate.subject.clone()));
        if let Some(cn) = &certificate.common_name {
            claims.insert("cn".into(), Value::String(cn.clone()));
        }
        Some(Identity { consumer: Some(certificate.consumer().to_string()), claims })
    }

    /// Whether the bearer token names a `kid` no key has (then the key set
    /// is re-read before verifying).
    fn names_unknown_kid(&self, request: &Request) -> bool {
        let Some(Ok(header)) = bearer(request).map(jsonwebtoken::decode_header) else { return false };
        let jwks = self.jwks.keys();
        header.kid.is_some() && self.candidates(&header, &jwks).next().is_none()
    }

    fn verify_jwt(&self, token: &str) -> Result<Identity, Error> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthenticated("malformed bearer token"))?;
        // RFC 7515: a `crit` extension the verifier does not understand
        // makes the token invalid; protogate understands none.
        if header.crit.is_some() {
            return Err(unauthenticated("invalid bearer token: unsupported critical header"));
        }
        let jwks = self.jwks.keys();
        let candidates = self.candidates(&header, &jwks);
        let jwt = self.config.jwt.as_ref().ok_or_else(|| unauthenticated("bearer tokens are not accepted"))?;
        let mut last = unauthenticated("no key verifies this token");
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation(jwt, key.algorithm)) {
                Ok(data) => return Ok(Identity { consumer: None, claims: data.claims }),
                Err(e) => last = unauthenticated(&format!("invalid bearer token: {e}")),
            }
        }
        Err(last)
    }

    /// Keys that may verify a token: same algorithm, and same kid when both
    /// have one.
    fn candidates<'a>(
        &'a self,
        header: &'a jsonwebtoken::Header,
        jwks: &'a [VerifyingKey],
    ) -> impl Iterator<Item = &'a VerifyingKey> {
        self.static_keys.iter().chain(jwks).filter(|k| k.algorithm == header.alg).filter(|k| {
            match (&k.kid, &header.kid) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
        })
    }

    /// Scopes (`scope` or `scp`) and claims a rule asks for.
    fn authorize(rule: &RuleConfig, identity: &Identity) -> Result<(), Error> {
        let scopes: Vec<&str> = match identity.claims.get("scope").or(identity.claims.get("scp")) {
            Some(Value::String(s)) => s.split_whitespace().collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if let Some(missing) = rule.scopes.iter().find(|s| !scopes.contains(&s.as_str())) {
            return Err(Error::client(Code::PermissionDenied, format!("missing scope {missing:?}")));
        }
        for (claim, expected) in &rule.claims {
            let actual = identity.claims.get(claim).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
            if actual.as_deref() != Some(expected.as_str()) {
                return Err(Error::client(Code::PermissionDenied, format!("claim {claim:?} does not allow this call")));
            }
        }
        Ok(())
    }
}

/// Adds `rule`'s demands to `combined`: authentication if either asks,
/// every scope and claim of both.
fn strictest(combined: &mut RuleConfig, rule: &RuleConfig) {
    if rule.require == "authenticated" {
        combined.require = rule.require.clone();
    }
    for scope in &rule.scopes {
        if !combined.scopes.contains(scope) {
            combined.scopes.push(scope.clone());
        }
    }
    combined.claims.extend(rule.claims.clone());
}

/// What a token must satisfy: a configured issuer or audience makes that
/// claim required (a token without it, or with `null`, is refused), and
/// `exp` is required unless `require_exp = false`.
fn validation(jwt: &crate::config::JwtConfig, algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = jwt.leeway.as_secs();
    validation.validate_nbf = true;
    let mut required = Vec::new();
    if jwt.require_exp {
        required.push("exp");
    }
    if let Some(issuer) = &jwt.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    if jwt.audiences.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&jwt.audiences);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    validation
}

impl Authenticator {
    /// Establishes who is calling and whether they may: a refusal is 401
    /// with a `WWW-Authenticate` challenge, or 403. The identity goes to
    /// the backend as metadata (client-sent copies stripped first) and to
    /// the rate limiter as the request's `Caller`.
    /// `rule` is the request's, resolved with the route's other policies.
    pub async fn admit(
        &self,
        admitted: &Admitted,
        rule: Option<&RuleConfig>,
        request: &mut Request,
    ) -> Result<(), Error> {
        if !self.enabled() {
            return Ok(());
        }
        strip_forwarded(&self.config, request.headers_mut());
        let required = rule.as_ref().map_or(self.config.required_by_default, |r| r.require == "authenticated");
        if self.config.jwt.is_some() && self.names_unknown_kid(request) {
            self.jwks.refresh_for_unknown_kid().await;
        }
        let identity = match self.identify(request).map_err(|e| self.challenge(e))? {
            Some(identity) => identity,
            None if required => return Err(self.challenge(unauthenticated("credentials are required"))),
            None => return Ok(()),
        };
        let subject = identity.claims.get("sub").and_then(Value::as_str).map(str::to_string);
        if let Some(who) = identity.consumer.as_deref().or(subject.as_deref()) {
            trace_of(request.extensions()).consumer(who);
        }
        if let Some(rule) = rule
            && let Err(error) = Authenticator::authorize(rule, &identity)
        {
            self.metrics.auth_rejected.with_label_values(&["forbidden"]).inc();
            return Err(error);
        }
        forward(&self.config, &identity, admitted.protocol, request.headers_mut());
        request.extensions_mut().insert(Caller { consumer: identity.consumer.clone(), subject });
        Ok(())
    }

    /// A 401 with the challenge header, counted.
    fn challenge(&self, mut error: Error) -> Error {
        self.metrics.auth_rejected.with_label_values(&["unauthenticated"]).inc();
        error.set_header(WWW_AUTHENTICATE, "Bearer realm=\"protogate\"");
        error
    }
}

/// Who is calling, as authentication established it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub consumer: Option<String>,
    pub subject: Option<String>,
}

/// Removes client-sent copies of the identity metadata.
fn strip_forwarded(config: &AuthConfig, headers: &mut http::HeaderMap) {
    let names = [&config.forward_consumer, &config.forward_subject].into_iter().chain(config.forward_claims.values());
    for name in names {
        headers.remove(name.as_str());
        headers.remove(format!("grpc-metadata-{name}").as_str());
    }
}

/// Adds the identity as metadata: plain headers are metadata for gRPC and
/// Connect; REST and WebSocket carry metadata as `Grpc-Metadata-*`.
fn forward(config: &AuthConfig, identity: &Identity, protocol: Protocol, headers: &mut http::HeaderMap) {
    let prefix = if matches!(protocol, Protocol::Rest | Protocol::WebSocket) { "grpc-metadata-" } else { "" };
    let subject = identity.claims.get("sub").and_then(Value::as_str);
    let mut values: Vec<(&str, String)> = Vec::new();
    if let Some(consumer) = &identity.consumer {
        values.push((&config.forward_consumer, consumer.clone()));
    }
    if let Some(subject) = subject {
        values.push((&config.forward_subject, subject.to_string()));
    }
    for (claim, name) in &config.forward_claims {
        if let Some(value) = identity.claims.get(claim) {
            values.push((name, value.as_str().map_or_else(|| value.to_string(), str::to_string)));
        }
    }
    for (name, value) in values {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(format!("{prefix}{name}")), HeaderValue::try_from(value)) {
            headers.insert(name, value);
        }
    }
}

fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::trim)
}

fn unauthenticated(message: &str) -> Error {
    Error::client(Code::Unauthenticated, message)
}

fn query_value(request: &Request, name: &str) -> Option<String> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned())
    })
}

fn static_key(key: &crate::config::KeyConfig) -> Result<VerifyingKey, String> {
    let algorithm = Algorithm::from_str(&key.algorithm).map_err(|e| e.to_string())?;
    let decoding = match (&key.secret, &key.pem_file) {
        (Some(secret), _) => DecodingKey::from_secret(secret.as_bytes()),
        (None, Some(path)) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            match &key.algorithm[..2] {
                "RS" | "PS" => DecodingKey::from_rsa_pem(&pem),
                "ES" => DecodingKey::from_ec_pem(&pem),
                _ => DecodingKey::from_ed_pem(&pem),
            }
            .map_err(|e| format!("{}: {e}", path.display()))?
        }
        (None, None) => return Err("no secret or pem_file".into()),
    };
    Ok(VerifyingKey { kid: key.kid.clone(), algorithm, key: decoding })
}
