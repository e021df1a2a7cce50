//! Setting values at field paths (`book.author.name`) inside a message.

use prost_reflect::{DynamicMessage, FieldDescriptor, Value};

/// Sets (or, for a repeated leaf, appends) `value` at `path`, creating the
/// intermediate messages.
pub fn set(message: &mut DynamicMessage, path: &[FieldDescriptor], value: Value) {
    let Some((leaf, parents)) = path.split_last() else {
        return;
    };
    let mut current = message;
    for field in parents {
        match current.get_field_mut(field) {
            Value::Message(child) => current = child,
            _ => return,
        }
    }
    if leaf.is_list() {
        if let Value::List(items) = current.get_field_mut(leaf) {
            items.push(value);
        }
    } else {
        current.set_field(leaf, value);
    }
}

/// Whether one path is the other or lies inside it.
pub fn overlaps(a: &[FieldDescriptor], b: &[FieldDescriptor]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.number() == y.number())
}
