//! Config reload (SIGHUP or the admin API): the file is read and validated
//! whole; an invalid one is rejected with every problem listed and the
//! running config kept. A valid one becomes a new context, swapped in whole:
//! requests in flight finish under the policies they started with.

use std::sync::Arc;

use tokio::sync::Mutex;

use super::LiveContext;
use super::build::policy_context;
use crate::config::{Config, ConfigErrors};

/// Reloads the running gateway's config.
#[derive(Debug)]
pub struct Reloader {
    live: Arc<LiveContext>,
    /// The config in force; the lock also keeps reloads one at a time.
    running: Mutex<Config>,
}

/// A reload that took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Changed settings that only a restart applies (listeners, the
    /// registry, upstream channels, CORS); the running values stay.
    pub restart_required: Vec<&'static str>,
}

/// A reload that did not take effect; the running config is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// The gateway was not started from a config file.
    NoFile,
    Invalid(Vec<String>),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoFile => write!(f, "the gateway was started without --config; there is no file to reload"),
            Self::Invalid(errors) => write!(f, "config rejected, running config kept:\n{}", errors.join("\n")),
        }
    }
}

impl Reloader {
    pub fn new(live: Arc<LiveContext>, running: Config) -> Self {
        Self { live, running: Mutex::new(running) }
    }

    /// The context in force.
    pub fn live(&self) -> &Arc<LiveContext> {
        &self.live
    }

    /// Re-reads the file the gateway started from, with the same flags.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let mut running = self.running.lock().await;
        let Some(source) = running.source.clone() else {
            return self.outcome(Err(ReloadError::NoFile));
        };
        let loaded = tokio::task::spawn_blocking(move || Config::load(Some(&source.file), &source.flags)).await;
        let next = match loaded {
            Ok(Ok(next)) => next,
            Ok(Err(ConfigErrors(errors))) => return self.outcome(Err(ReloadError::Invalid(errors))),
            Err(e) => return self.outcome(Err(ReloadError::Invalid(vec![format!("reading the config failed: {e}")]))),
        };
        let applied = self.apply(&mut running, next);
        self.outcome(applied)
    }

    /// Swaps in a context built from `next`; the registry, metrics and
    /// health cache carry over.
    fn apply(&self, running: &mut Config, next: Config) -> Result<Reloaded, ReloadError> {
        let current = self.live.current();
        let context =
            policy_context(&next, current.registry.clone(), current.metrics.clone()).map_err(ReloadError::Invalid)?;
        self.live.replace(context);
        // Pools outlive reloads (the registry holds them): their settings
        // are swapped in place.
        current.registry.upstreams().update(next.upstream.pool.clone());
        let restart_required = restart_required(running, &next);
        *running = next;
        Ok(Reloaded { restart_required })
    }

    fn outcome(&self, outcome: Result<Reloaded, ReloadError>) -> Result<Reloaded, ReloadError> {
        let metrics = &self.live.current().metrics;
        match &outcome {
            Ok(reloaded) => {
                metrics.config_reloads.with_label_values(&["applied"]).inc();
                tracing::info!(restart_required = ?reloaded.restart_required, "config reloaded");
            }
            Err(error) => {
                metrics.config_reloads.with_label_values(&["rejected"]).inc();
                tracing::error!(%error, "config reload rejected");
            }
        }
        outcome
    }
}

/// Settings whose change a reload cannot apply.
fn restart_required(old: &Config, new: &Config) -> Vec<&'static str> {
    let changed = [
        ("listen", old.listen != new.listen),
        ("descriptors", old.descriptors != new.descriptors || old.descriptor_dirs != new.descriptor_dirs),
        ("upstream.default/services", old.upstream.map != new.upstream.map),
        ("upstream.connect_timeout", old.upstream.connect_timeout != new.upstream.connect_timeout),
        ("upstream.tls", old.upstream.pool.tls != new.upstream.pool.tls),
        ("upstream.max_message_size", old.upstream.max_message_size != new.upstream.max_message_size),
        ("registry", old.registry != new.registry),
        ("admin", old.admin != new.admin),
        ("cors", old.cors != new.cors),
        ("compression", old.compression != new.compression),
        ("tracing", old.tracing != new.tracing),
    ];
    changed.into_iter().filter(|(_, changed)| *changed).map(|(name, _)| name).collect()
}
