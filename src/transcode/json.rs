//! Cheap checks on raw JSON before it is parsed.

/// Whether `bytes` nests objects and arrays deeper than `max` levels. One
/// pass over the bytes, string contents skipped, so a hostile body is refused
/// before any recursive parsing starts.
pub fn exceeds_depth(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    for b in outside_strings(bytes) {
        match b {
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The bytes of JSON text outside string contents; each string shows as its
/// two quotes. One pass, no parsing: for the cheap checks before a parse.
pub fn outside_strings(bytes: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let (mut in_string, mut escaped) = (false, false);
    bytes.iter().copied().filter(move |&b| {
        if !in_string {
            in_string = b == b'"';
            return true;
        }
        match (escaped, b) {
            (true, _) => escaped = false,
            (false, b'\\') => escaped = true,
            (false, b'"') => {
                in_string = false;
                return true;
            }
            _ => {}
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nesting_outside_strings() {
        let cases: &[(&str, usize, bool)] = &[
            ("{}", 1, false),
            ("{\"a\":[1]}", 1, true),
            ("{\"a\":[1]}", 2, false),
            ("{\"a\":\"[[[[\"}", 1, false),
            ("{\"a\":\"\\\"[[[\"}", 1, false),
            ("[[[]]]", 2, true),
            ("[][][]", 1, false),
        ];
        for (json, max, expected) in cases {
            assert_eq!(exceeds_depth(json.as_bytes(), *max), *expected, "{json} max {max}");
        }
    }
}
