//! `[timeouts]`: per-route deadlines for unary calls, and for streams an idle
//! timeout between messages and a total lifetime.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

/// One route's timeouts; unset fields fall back to the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteTimeouts {
    pub unary: Option<Duration>,
    pub stream_idle: Option<Duration>,
    pub stream_lifetime: Option<Duration>,
}

/// The defaults and the rules by selector.
#[derive(Debug, Clone, Default)]
pub struct TimeoutsConfig {
    pub default: RouteTimeouts,
    pub rules: HashMap<String, RouteTimeouts>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawTimeouts {
    stream_idle: Option<String>,
    stream_lifetime: Option<String>,
    rules: Vec<RawRule>,
}

/// A stream whose backend stops answering (or never starts) ends after
/// this by default: without it, only TCP keep-alive (~45 s on Linux with
/// the upstream's HTTP/2 pings, or never) or the client's deadline ended it.
/// Five minutes is Envoy's stream idle timeout.
pub const DEFAULT_STREAM_IDLE: &str = "5m";

impl Default for RawTimeouts {
    fn default() -> Self {
        Self { stream_idle: Some(DEFAULT_STREAM_IDLE.into()), stream_lifetime: None, rules: Vec::new() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    selector: String,
    unary: Option<String>,
    stream_idle: Option<String>,
    stream_lifetime: Option<String>,
}

pub(super) fn validate(raw: RawTimeouts, location: &str, errors: &mut Vec<String>) -> TimeoutsConfig {
    let mut duration = |key: &str, text: Option<&String>| -> Option<Duration> {
        let text = text?;
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => None,
            Ok(d) => Some(d),
            Err(e) => {
                errors.push(format!("{location}: `timeouts.{key}`: {text:?} is not a duration ({e})"));
                None
            }
        }
    };
    let default = RouteTimeouts {
        unary: None,
        stream_idle: duration("stream_idle", raw.stream_idle.as_ref()),
        stream_lifetime: duration("stream_lifetime", raw.stream_lifetime.as_ref()),
    };
    let rules = raw
        .rules
        .iter()
        .map(|rule| {
            let timeouts = RouteTimeouts {
                unary: duration("rules.unary", rule.unary.as_ref()),
                stream_idle: duration("rules.stream_idle", rule.stream_idle.as_ref()),
                stream_lifetime: duration("rules.stream_lifetime", rule.stream_lifetime.as_ref()),
            };
            (rule.selector.clone(), timeouts)
        })
        .collect();
    TimeoutsConfig { default, rules }
}

impl TimeoutsConfig {
    /// The timeouts of the most specific matching rule over the defaults.
    pub fn for_route<'a>(&self, selectors: impl IntoIterator<Item = Option<&'a str>>) -> RouteTimeouts {
        let rule = selectors.into_iter().flatten().find_map(|s| self.rules.get(s));
        match rule {
            Some(rule) => RouteTimeouts {
                unary: rule.unary.or(self.default.unary),
                stream_idle: rule.stream_idle.or(self.default.stream_idle),
                stream_lifetime: rule.stream_lifetime.or(self.default.stream_lifetime),
            },
            None => self.default,
        }
    }
}
