//! Routing: the HttpRule template grammar, rules → bindings, and the route
//! table. Pure: no I/O, no message bodies.

pub mod binding;
pub mod table;
pub mod template;

pub use binding::{Binding, BodyRule, FieldPath};
pub use table::{MatchError, RouteMatch, RouteTable};
pub use template::{Template, TemplateError};

#[cfg(test)]
mod tests;
