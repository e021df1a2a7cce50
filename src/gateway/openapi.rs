//! The OpenAPI document of a snapshot under this context's policies: what
//! each binding enforces (success code, who may call it, rate limits) comes
//! from the same resolved policies the request path uses.

use bytes::Bytes;
use prost_reflect::{Kind, MethodDescriptor};

use super::Context;
use crate::compose::Plan;
use crate::compose::plan::{Part, Reference, Source, Step};
use crate::openapi::{AnswerShape, CallSummary, CompositeOperation, Enforcement, Info};
use crate::registry::Snapshot;

impl Context {
    /// The document of `snapshot`, rendered once per snapshot and context.
    /// CPU work: call it off the async workers.
    pub fn openapi_document(&self, snapshot: &Snapshot) -> Bytes {
        let mut cached = self.openapi_document.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((generation, document)) = cached.as_ref()
            && *generation == snapshot.generation
        {
            return document.clone();
        }
        let policies = self.policies(snapshot);
        let enforced = |binding: usize| {
            let Some(route) = policies.of_binding(binding) else { return Enforcement::default() };
            Enforcement {
                success: route.success.as_ref().map(|rule| (rule.status, rule.location.is_some())),
                access: self.auth.access(route.auth.as_ref()),
                rate_limited: route.rate.is_some(),
            }
        };
        let schemes = self.auth.schemes();
        let info = Info {
            version: &self.openapi_version,
            digest: &snapshot.digest,
            generation: snapshot.generation,
            servers: &self.openapi_servers,
            about: &self.openapi_info,
            schemes: &schemes,
            enforced: &enforced,
        };
        let methods: Vec<MethodDescriptor> = snapshot.methods.iter().map(|m| m.descriptor.clone()).collect();
        let composites = self.composite_operations(snapshot);
        let document = crate::openapi::document(&snapshot.pool, &snapshot.routes, &methods, &composites, &info)
            .map(Bytes::from)
            .unwrap_or_default();
        crate::registry::release_freed_memory();
        *cached = Some((snapshot.generation, document.clone()));
        document
    }

    /// The composites served with `snapshot`, as the document shows them.
    fn composite_operations(&self, snapshot: &Snapshot) -> Vec<CompositeOperation> {
        let Some(planned) = self.composites.planned(snapshot) else { return Vec::new() };
        planned.plans.iter().map(|plan| self.composite_operation(plan, snapshot)).collect()
    }

    fn composite_operation(&self, plan: &Plan, snapshot: &Snapshot) -> CompositeOperation {
        let rule = self.auth.composite_rule_of(Some(&plan.template_text), &plan.methods, snapshot);
        let selectors = [None, None, Some(plan.template_text.as_str())];
        let enforcement = Enforcement {
            success: None,
            access: self.auth.access(rule.as_ref()),
            rate_limited: self.limiter.as_deref().and_then(|l| l.rule_for(selectors, None)).is_some(),
        };
        let calls = plan
            .calls
            .iter()
            .map(|call| CallSummary {
                name: call.name.clone(),
                method: snapshot.methods[call.method].descriptor.full_name().to_string(),
                for_each: call.for_each.as_ref().map(|each| reference_text(plan, each)),
                optional: call.optional,
            })
            .collect();
        CompositeOperation {
            template: plan.template.clone(),
            template_text: plan.template_text.clone(),
            description: plan.description.clone(),
            query: plan.query.clone(),
            calls,
            answer: answer_shape(&plan.response, plan, snapshot),
            enforcement,
        }
    }
}

/// `books.books`: a call's field as the config names it.
fn reference_text(plan: &Plan, reference: &Reference) -> String {
    let head = match reference.source {
        Source::Call(call) => plan.calls.get(call).map_or("", |c| c.name.as_str()),
        _ => "",
    };
    let path = reference.path.iter().map(Step::text);
    std::iter::once(head.to_string()).chain(path).collect::<Vec<_>>().join(".")
}

/// The type of each part of the answer: a call's output message or the
/// field a reference ends at (the planner checked every path), a list for
/// a fan-out's answers.
fn answer_shape(part: &Part, plan: &Plan, snapshot: &Snapshot) -> AnswerShape {
    let reference = match part {
        Part::Object(parts) => {
            return AnswerShape::Object(
                parts.iter().map(|(name, part)| (name.clone(), answer_shape(part, plan, snapshot))).collect(),
            );
        }
        Part::Ref(reference) => reference,
    };
    let Source::Call(index) = reference.source else { return AnswerShape::Object(Vec::new()) };
    let Some(call) = plan.calls.get(index) else { return AnswerShape::Object(Vec::new()) };
    let mut message = snapshot.methods[call.method].descriptor.output();
    let mut shape = AnswerShape::Message(message.clone());
    for step in &reference.path {
        let Some(field) = message.get_field_by_name(&step.proto) else { break };
        if let Kind::Message(nested) = field.kind() {
            message = nested;
        }
        shape = if step.index.is_some() { AnswerShape::Element(field) } else { AnswerShape::Field(field) };
    }
    if call.for_each.is_some() { AnswerShape::List(Box::new(shape)) } else { shape }
}
