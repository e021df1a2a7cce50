//! Composite endpoints: one REST route answered by several gRPC calls.
//! `plan` (pure) checks and plans each composite against a snapshot;
//! `exec` runs a plan over the shared call path. Plans are made once per
//! snapshot and kept until the next one.

pub mod exec;
pub mod plan;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::Method;

use crate::config::CompositeConfig;
use crate::registry::Snapshot;
use crate::route::{Binding, BodyRule, RouteTable};
use crate::transcode::JsonOptions;
pub use exec::{Answer, Inputs};
pub use plan::Plan;

/// The configured composites and their plans for the latest snapshot.
#[derive(Debug)]
pub struct Composites {
    configs: Vec<CompositeConfig>,
    json: JsonOptions,
    planned: ArcSwapOption<Planned>,
}

/// Every composite planned against one snapshot, with their route table;
/// none when the snapshot does not fit them (`problems` says why).
#[derive(Debug)]
pub struct Planned {
    generation: u64,
    pub plans: Vec<Plan>,
    table: RouteTable,
    pub problems: Vec<String>,
}

/// A request that is for a composite: its plan and path variables.
pub struct Found<'a> {
    pub plan: &'a Plan,
    pub variables: Vec<String>,
}

impl Composites {
    pub fn new(configs: Vec<CompositeConfig>, json: JsonOptions) -> Self {
        Self { configs, json, planned: ArcSwapOption::empty() }
    }

    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
    }

    /// Plans every composite against `snapshot`, listing every problem.
    pub fn check(&self, snapshot: &Snapshot) -> Result<(), Vec<String>> {
        self.build(snapshot).map(drop)
    }

    fn build(&self, snapshot: &Snapshot) -> Result<Planned, Vec<String>> {
        let mut plans = Vec::with_capacity(self.configs.len());
        let mut errors = Vec::new();
        for composite in &self.configs {
            match plan::plan(composite, snapshot, &self.json) {
                Ok(plan) => plans.push(plan),
                Err(problems) => errors.extend(problems),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let bindings = plans.iter().enumerate().map(|(index, plan)| binding(index, plan)).collect();
        let table = RouteTable::build(bindings, Vec::new())?;
        Ok(Planned { generation: snapshot.generation, plans, table, problems: Vec::new() })
    }

    /// A change from `current` to `next` must not break composites that fit
    /// `current`; while they do not fit (sets still to be registered), any
    /// change may land.
    pub fn check_change(&self, current: &Snapshot, next: &Snapshot) -> Result<(), Vec<String>> {
        if self.configs.is_empty() || self.check(current).is_err() {
            return Ok(());
        }
        self.check(next)
    }

    /// The plans for `snapshot`, made on first use after a swap. A snapshot
    /// the composites do not fit (a gateway still waiting for its sets)
    /// serves none of them, and says why in the log once.
    pub fn planned(&self, snapshot: &Snapshot) -> Option<Arc<Planned>> {
        if self.configs.is_empty() {
            return None;
        }
        if let Some(planned) = self.planned.load_full()
            && planned.generation == snapshot.generation
        {
            return Some(planned);
        }
        let planned = self.build(snapshot).unwrap_or_else(|problems| {
            tracing::warn!(?problems, "composites do not fit the active snapshot; not serving them");
            Planned { generation: snapshot.generation, plans: Vec::new(), table: RouteTable::default(), problems }
        });
        let planned = Arc::new(planned);
        self.planned.store(Some(planned.clone()));
        Some(planned)
    }
}

impl Planned {
    /// The composite a request is for, if any.
    pub fn find(&self, method: &Method, path: &str) -> Option<Found<'_>> {
        let (index, variables) = self.find_index(method, path)?;
        Some(Found { plan: self.plans.get(index)?, variables })
    }

    /// The index of the plan a request is for, and its path variables.
    pub fn find_index(&self, method: &Method, path: &str) -> Option<(usize, Vec<String>)> {
        let method = if method == Method::HEAD { &Method::GET } else { method };
        let found = self.table.find(method, path).ok()?;
        Some((found.binding.method, found.variables)).filter(|(index, _)| *index < self.plans.len())
    }
}

fn binding(index: usize, plan: &Plan) -> Binding {
    Binding {
        method: index,
        rpc_name: format!("composite {}", plan.route),
        // `config::compose` admits GET routes only.
        http_method: Method::GET,
        template: plan.template.clone(),
        template_text: plan.template_text.clone(),
        path_fields: Vec::new(),
        body: BodyRule::None,
        response_body: None,
        auto_mapped: false,
    }
}

#[cfg(test)]
pub(crate) mod tests;
