//! The HttpRule path template grammar (google/api/http.proto):
//!
//! ```text
//! Template = "/" [ Segments ] [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```

use std::fmt;

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub segments: Vec<Segment>,
    pub verb: Option<String>,
    pub variables: Vec<Variable>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    Single,
    /// `**`: zero or more segments; only last.
    Multi,
}

/// A variable capturing template segments `start..end` into a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub field_path: Vec<String>,
    pub start: usize,
    pub end: usize,
}

/// A template syntax error at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        Parser { text, pos: 0, segments: Vec::new(), variables: Vec::new() }.parse()
    }

    /// Whether a variable covers more than one path segment (a `**` or
    /// several segments), which decides how its value is percent-decoded.
    pub fn is_multi_segment(&self, variable: &Variable) -> bool {
        variable.end - variable.start != 1 || self.segments[variable.start] == Segment::Multi
    }

    /// The template with variables replaced by their patterns: two templates
    /// with the same shape match the same paths.
    pub fn shape(&self) -> String {
        let mut shape = String::new();
        for segment in &self.segments {
            shape.push('/');
            match segment {
                Segment::Literal(literal) => shape.push_str(literal),
                Segment::Single => shape.push('*'),
                Segment::Multi => shape.push_str("**"),
            }
        }
        if shape.is_empty() {
            shape.push('/');
        }
        if let Some(verb) = &self.verb {
            shape.push(':');
            shape.push_str(verb);
        }
        shape
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.message, self.offset)
    }
}

impl std::error::Error for TemplateError {}

impl Parser<'_> {
    fn parse(mut self) -> Result<Template, TemplateError> {
        if !self.eat('/') {
            return Err(self.error("a template must start with '/'"));
        }
        if !self.at_end() && self.peek() != Some(':') {
            self.parse_segments(false)?;
        }
        let verb = if self.eat(':') { Some(self.parse_literal("a verb after ':'")?) } else { None };
        if let Some(c) = self.peek() {
            return Err(self.error(&format!("unexpected {c:?}")));
        }
        Ok(Template { segments: self.segments, verb, variables: self.variables })
    }

    fn parse_segments(&mut self, in_variable: bool) -> Result<(), TemplateError> {
        loop {
            self.parse_segment(in_variable)?;
            if !self.eat('/') {
                return Ok(());
            }
        }
    }

    fn parse_segment(&mut self, in_variable: bool) -> Result<(), TemplateError> {
        if self.segments.last() == Some(&Segment::Multi) {
            return Err(self.error("'**' must be the last segment"));
        }
        match self.peek() {
            Some('*') => {
                self.pos += 1;
                let segment = if self.eat('*') { Segment::Multi } else { Segment::Single };
                self.segments.push(segment);
            }
            Some('{') if in_variable => return Err(self.error("nested variables are not allowed")),
            Some('{') => self.parse_variable()?,
            _ => {
                let literal = self.parse_literal("a segment")?;
                self.segments.push(Segment::Literal(literal));
            }
        }
        Ok(())
    }

    fn parse_variable(&mut self) -> Result<(), TemplateError> {
        let open = self.pos;
        self.pos += 1;
        let field_path = self.parse_field_path()?;
        let start = self.segments.len();
        if self.eat('=') {
            self.parse_segments(true)?;
        } else {
            self.segments.push(Segment::Single);
        }
        if !self.eat('}') {
            return Err(self.error("expected '}'"));
        }
        if self.variables.iter().any(|v| v.field_path == field_path) {
            return Err(TemplateError {
                offset: open,
                message: format!("variable {:?} is bound twice", field_path.join(".")),
            });
        }
        self.variables.push(Variable { field_path, start, end: self.segments.len() });
        Ok(())
    }

    fn parse_field_path(&mut self) -> Result<Vec<String>, TemplateError> {
        let mut path = Vec::new();
        loop {
            let start = self.pos;
            while let Some(c) = self.peek() {
                let ok = c.is_ascii_alphabetic() || c == '_' || (self.pos > start && c.is_ascii_digit());
                if !ok {
                    break;
                }
                self.pos += 1;
            }
            if self.pos == start {
                return Err(self.error("expected a field name"));
            }
            path.push(self.text[start..self.pos].to_string());
            if !self.eat('.') {
                return Ok(path);
            }
        }
    }

    fn parse_literal(&mut self, what: &str) -> Result<String, TemplateError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == '%' {
                let hex = self.text.get(self.pos + 1..self.pos + 3);
                if !hex.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())) {
                    return Err(self.error("'%' must be followed by two hex digits"));
                }
                self.pos += 3;
            } else if is_literal_char(c) {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
        if self.pos == start {
            return Err(self.error(&format!("expected {what}")));
        }
        Ok(self.text[start..self.pos].to_string())
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn at_end(&self) -> bool {
        self.pos == self.text.len()
    }

    fn eat(&mut self, c: char) -> bool {
        let matched = self.peek() == Some(c);
        if matched {
            self.pos += 1;
        }
        matched
    }

    fn error(&self, message: &str) -> TemplateError {
        let found = match self.peek() {
            None => "end of template".to_string(),
            Some(c) => format!("{c:?}"),
        };
        let message =
            if message.starts_with("expected") { format!("{message}, found {found}") } else { message.to_string() };
        TemplateError { offset: self.pos, message }
    }
}

/// RFC 3986 unreserved and sub-delims characters, less the ones the grammar
/// uses (`*`, `=`) and with `@`.
fn is_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()+,;@".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Segment {
        Segment::Literal(s.into())
    }

    fn var(path: &str, start: usize, end: usize) -> Variable {
        Variable { field_path: path.split('.').map(String::from).collect(), start, end }
    }

    #[test]
    fn parses_every_form_of_the_grammar() {
        use Segment::{Multi, Single};
        type Case = (&'static str, Vec<Segment>, Option<&'static str>, Vec<Variable>);
        let cases: Vec<Case> = vec![
            ("/", vec![], None, vec![]),
            ("/v1/shelves", vec![lit("v1"), lit("shelves")], None, vec![]),
            // Examples from the HttpRule documentation.
            ("/v1/{name=messages/*}", vec![lit("v1"), lit("messages"), Single], None, vec![var("name", 1, 3)]),
            (
                "/v1/messages/{message_id}",
                vec![lit("v1"), lit("messages"), Single],
                None,
                vec![var("message_id", 2, 3)],
            ),
            (
                "/v1/messages/{message_id}/{sub.subfield}",
                vec![lit("v1"), lit("messages"), Single, Single],
                None,
                vec![var("message_id", 2, 3), var("sub.subfield", 3, 4)],
            ),
            (
                "/v1/users/{user_id}/messages/{message_id}",
                vec![lit("v1"), lit("users"), Single, lit("messages"), Single],
                None,
                vec![var("user_id", 2, 3), var("message_id", 4, 5)],
            ),
            (
                "/v1/{name=shelves/*/books/*}",
                vec![lit("v1"), lit("shelves"), Single, lit("books"), Single],
                None,
                vec![var("name", 1, 5)],
            ),
            ("/v1/{name=**}", vec![lit("v1"), Multi], None, vec![var("name", 1, 2)]),
            ("/v1/**", vec![lit("v1"), Multi], None, vec![]),
            ("/v1/*/x", vec![lit("v1"), Single, lit("x")], None, vec![]),
            (
                "/v1/{name=shelves/*}:publish",
                vec![lit("v1"), lit("shelves"), Single],
                Some("publish"),
                vec![var("name", 1, 3)],
            ),
            ("/v1/books:batchGet", vec![lit("v1"), lit("books")], Some("batchGet"), vec![]),
            (
                "/v1/{name=files/**}:download",
                vec![lit("v1"), lit("files"), Multi],
                Some("download"),
                vec![var("name", 1, 3)],
            ),
            ("/:verb", vec![], Some("verb"), vec![]),
            ("/v1/a%2Fb/x-y_z.~!$&'()+,;@", vec![lit("v1"), lit("a%2Fb"), lit("x-y_z.~!$&'()+,;@")], None, vec![]),
        ];
        for (text, segments, verb, variables) in cases {
            let template = Template::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(template.segments, segments, "{text}");
            assert_eq!(template.verb.as_deref(), verb, "{text}");
            assert_eq!(template.variables, variables, "{text}");
        }
    }

    #[test]
    fn reports_errors_with_their_offset() {
        let cases = [
            ("", "a template must start with '/' at offset 0"),
            ("v1/x", "a template must start with '/' at offset 0"),
            ("/v1/", "expected a segment, found end of template at offset 4"),
            ("/v1//x", "expected a segment, found '/' at offset 4"),
            ("/v1/{name", "expected '}', found end of template at offset 9"),
            ("/v1/{}", "expected a field name, found '}' at offset 5"),
            ("/v1/{1abc}", "expected a field name, found '1' at offset 5"),
            ("/v1/{a.}", "expected a field name, found '}' at offset 7"),
            ("/v1/{a=}", "expected a segment, found '}' at offset 7"),
            ("/v1/{a={b}}", "nested variables are not allowed at offset 7"),
            ("/v1/{a}/{a}", "variable \"a\" is bound twice at offset 8"),
            ("/v1/**/x", "'**' must be the last segment at offset 7"),
            ("/v1/{a=**}/x", "'**' must be the last segment at offset 11"),
            ("/v1/{a=**/x}", "'**' must be the last segment at offset 10"),
            ("/v1/x:", "expected a verb after ':', found end of template at offset 6"),
            ("/v1/x:a:b", "unexpected ':' at offset 7"),
            ("/v1/x?q=1", "unexpected '?' at offset 5"),
            ("/v1/x%zz", "'%' must be followed by two hex digits at offset 5"),
            ("/v1/***", "unexpected '*' at offset 6"),
            ("/v1/x}", "unexpected '}' at offset 5"),
        ];
        for (text, expected) in cases {
            let error = Template::parse(text).expect_err(text);
            assert_eq!(error.to_string(), expected, "{text}");
        }
    }

    #[test]
    fn shape_ignores_variable_names() {
        let a = Template::parse("/v1/{name=shelves/*}:x").unwrap();
        let b = Template::parse("/v1/shelves/{id}:x").unwrap();
        assert_eq!(a.shape(), "/v1/shelves/*:x");
        assert_eq!(a.shape(), b.shape());
        assert_eq!(Template::parse("/").unwrap().shape(), "/");
    }

    #[test]
    fn multi_segment_variables_are_recognised() {
        let t = Template::parse("/v1/{a}/{b=x/*}/{c=**}").unwrap();
        let multi: Vec<bool> = t.variables.iter().map(|v| t.is_multi_segment(v)).collect();
        assert_eq!(multi, [false, true, true]);
    }
}
