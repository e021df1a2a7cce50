//! The HttpRule template parser on arbitrary text: it answers every input
//! with a template or a located error, never a panic, and a parsed
//! template's shape parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protogate::route::template::Template;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(template) = Template::parse(text) {
        let _ = template.shape();
        for variable in &template.variables {
            let _ = template.is_multi_segment(variable);
        }
    }
});
