//! `[[responses]]`: the success status a method answers with over REST
//! (default 200), e.g. 201 with a `Location` built from the answer's
//! fields, 204 with no body, 202 — declared per method, service or REST
//! template, like timeouts.

use std::collections::HashMap;

use serde::Deserialize;

/// One declared success answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuccessRule {
    pub status: http::StatusCode,
    /// A path template over the answer's fields (`/v1/{name}`).
    pub location: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponsesConfig {
    pub rules: HashMap<String, SuccessRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    selector: String,
    status: u16,
    #[serde(default)]
    location: Option<String>,
}

pub(super) fn validate(raw: Vec<RawRule>, location: &str, errors: &mut Vec<String>) -> ResponsesConfig {
    let mut rules = HashMap::new();
    for rule in raw {
        let status = match http::StatusCode::from_u16(rule.status) {
            Ok(status) if status.is_success() => status,
            _ => {
                errors.push(format!(
                    "{location}: `responses`: {}: status {} is not a 2xx success status",
                    rule.selector, rule.status
                ));
                continue;
            }
        };
        if status == http::StatusCode::NO_CONTENT && rule.location.is_some() {
            errors.push(format!(
                "{location}: `responses`: {}: a 204 has no body to build a Location from",
                rule.selector
            ));
        }
        if let Some(template) = &rule.location
            && (!template.starts_with('/') || template.matches('{').count() != template.matches('}').count())
        {
            errors.push(format!(
                "{location}: `responses`: {}: location {template:?} is not a path like /v1/{{name}}",
                rule.selector
            ));
        }
        rules.insert(rule.selector, SuccessRule { status, location: rule.location });
    }
    ResponsesConfig { rules }
}

impl ResponsesConfig {
    /// The rule of the most specific selector (method, service, template).
    pub fn for_route<'a>(&self, selectors: impl IntoIterator<Item = Option<&'a str>>) -> Option<&SuccessRule> {
        selectors.into_iter().flatten().find_map(|s| self.rules.get(s))
    }
}

/// The `Location` for a template over the answer's fields: `{a.b}` is the
/// field at that path (proto or JSON names), as text; a missing field
/// leaves the template unusable (`None`).
pub fn location(template: &str, field: impl Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}')? + start;
        out.push_str(&field(&rest[start + 1..end])?);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn locations_fill_fields_into_the_template() {
        let field = |path: &str| match path {
            "name" => Some("shelves/7".to_string()),
            "book.id" => Some("9".to_string()),
            _ => None,
        };
        let cases = [
            ("/v1/{name}", Some("/v1/shelves/7")),
            ("/v1/{name}/books/{book.id}", Some("/v1/shelves/7/books/9")),
            ("/v1/static", Some("/v1/static")),
            ("/v1/{missing}", None),
            ("/v1/{name", None),
        ];
        for (template, expected) in cases {
            assert_eq!(super::location(template, field).as_deref(), expected, "{template}");
        }
    }
}
