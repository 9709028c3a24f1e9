//! Series selection: label matchers (`{env="prod",pod=~"api-.*"}`), the
//! legacy query form `app.cpu{...}`, and profile types.

use regex::Regex;
use thiserror::Error;

/// A series' labels, sorted by name. Always holds `service_name`; `__name__`
/// names the profile family (`process_cpu`, `memory`, ...) when known.
pub use firewatch_profile::{Labels, SERVICE_NAME};
/// The label naming the profile family (Pyroscope's `__name__`).
pub const PROFILE_NAME: &str = "__name__";

/// A query that could not be parsed, with the byte position of the problem.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("query syntax error at position {position}: {message}")]
pub struct SelectorError {
    /// 0-based byte offset into the query text.
    pub position: usize,
    /// What was expected or wrong.
    pub message: String,
}

/// How a matcher compares a label's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    NotEq,
    /// `=~`, a regular expression matching the whole value.
    Regex,
    /// `!~`
    NotRegex,
}

/// One `name op "value"` condition. A missing label reads as "".
#[derive(Clone, Debug)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: Op,
    /// Value or pattern.
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    /// A matcher; regular expressions are anchored to the whole value.
    pub fn new(name: &str, op: Op, value: &str) -> Result<Matcher, String> {
        let regex = match op {
            Op::Regex | Op::NotRegex => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("invalid regular expression {value:?}: {e}"))?,
            ),
            Op::Eq | Op::NotEq => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    /// `name = value`.
    pub fn eq(name: &str, value: &str) -> Matcher {
        Matcher {
            name: name.to_owned(),
            op: Op::Eq,
            value: value.to_owned(),
            regex: None,
        }
    }

    /// Whether a series with these labels passes.
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (self.op, &self.regex) {
            (Op::Eq, _) => v == self.value,
            (Op::NotEq, _) => v != self.value,
            (Op::Regex, Some(r)) => r.is_match(v),
            (Op::NotRegex, Some(r)) => !r.is_match(v),
            (_, None) => false,
        }
    }
}

/// Whether every matcher passes.
pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// What a query asks for: which profile type, of which series.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The profile type (`cpu`, `alloc_space`, or a full
    /// `process_cpu:cpu:nanoseconds:cpu:nanoseconds` id).
    pub profile_type: ProfileType,
    /// Conditions on series labels (the service is a `service_name` matcher).
    pub matchers: Vec<Matcher>,
}

/// A profile type: the sample type to read (`cpu`, `alloc_space`, ...),
/// optionally narrowed to a unit and a profile family (`__name__`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProfileType {
    /// Profile family, e.g. `process_cpu` (any when `None`).
    pub name: Option<String>,
    /// Sample type kind, e.g. `cpu`.
    pub kind: String,
    /// Sample type unit, e.g. `nanoseconds` (any when `None`).
    pub unit: Option<String>,
}

impl ProfileType {
    /// Parses `cpu` or Pyroscope's `name:kind:unit:period_kind:period_unit`.
    pub fn parse(text: &str) -> Result<ProfileType, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        match parts.as_slice() {
            [kind] if valid(kind) => Ok(ProfileType {
                name: None,
                kind: (*kind).to_owned(),
                unit: None,
            }),
            [name, kind, unit, ..]
                if parts.len() <= 5 && valid(name) && valid(kind) && valid(unit) =>
            {
                Ok(ProfileType {
                    name: Some((*name).to_owned()),
                    kind: (*kind).to_owned(),
                    unit: Some((*unit).to_owned()),
                })
            }
            _ => Err(format!(
                "invalid profile type {text:?}: expected a sample type such as `cpu` or `name:type:unit:period_type:period_unit`"
            )),
        }
    }
}

/// Parses the legacy query form `app.type{matchers}` (both parts optional:
/// `app.cpu`, `{service_name="app"}` with `default_type`, `app.cpu{env="x"}`;
/// without a type in the text or `default_type`, `cpu`).
/// The app name becomes a `service_name` matcher.
pub fn parse_query(text: &str, default_type: Option<&str>) -> Result<Query, SelectorError> {
    let text_trim = text.trim_end();
    let brace = text_trim.find('{');
    let head = &text_trim[..brace.unwrap_or(text_trim.len())];
    let lead = head.len() - head.trim_start().len();
    let head = head.trim();
    let mut matchers = match brace {
        Some(b) => parse_matchers_at(&text_trim[b..], b)?,
        None => Vec::new(),
    };
    let err = |position: usize, message: String| SelectorError { position, message };
    // Without a type in the text or a parameter, CPU: what a user who
    // typed `{}` or `app` most likely wants.
    let default = || default_type.unwrap_or("cpu").to_owned();
    let (app, kind) = if head.is_empty() {
        (None, default())
    } else if let Some((app, kind)) = head.rsplit_once('.') {
        if app.is_empty() {
            return Err(err(lead, "missing application name before `.`".into()));
        }
        (Some(app), kind.to_owned())
    } else {
        (Some(head), default())
    };
    let profile_type = ProfileType::parse(&kind).map_err(|m| err(lead, m))?;
    if let Some(app) = app {
        if app.contains(|c: char| c.is_whitespace() || c == '"') {
            return Err(err(lead, format!("invalid application name {app:?}")));
        }
        matchers.insert(0, Matcher::eq(SERVICE_NAME, app));
    }
    Ok(Query {
        profile_type,
        matchers,
    })
}

/// Parses `{name="value", name2=~"re", ...}` (an empty `{}` is allowed).
pub fn parse_matchers(text: &str) -> Result<Vec<Matcher>, SelectorError> {
    parse_matchers_at(text, 0)
}

fn parse_matchers_at(text: &str, base: usize) -> Result<Vec<Matcher>, SelectorError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let err = |i: usize, message: &str| SelectorError {
        position: base + i,
        message: message.to_owned(),
    };
    let skip_ws = |i: &mut usize| {
        while *i < bytes.len() && bytes[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if bytes.get(i) != Some(&b'{') {
        return Err(err(i, "expected `{`"));
    }
    i += 1;
    let mut out = Vec::new();
    loop {
        skip_ws(&mut i);
        if bytes.get(i) == Some(&b'}') {
            i += 1;
            break;
        }
        let start = i;
        while i < bytes.len()
            && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.')
        {
            i += 1;
        }
        if start == i || bytes[start].is_ascii_digit() {
            return Err(err(start, "expected a label name"));
        }
        // Ingest stores dots in label names as underscores
        // (`ingest::limits::sanitize_label_name`), so a matcher on
        // `otel.scope.name` finds what `otel.scope.name` was sent as.
        let name = text[start..i].replace('.', "_");
        skip_ws(&mut i);
        let op = match (bytes.get(i), bytes.get(i + 1)) {
            (Some(b'='), Some(b'~')) => (Op::Regex, 2),
            (Some(b'!'), Some(b'=')) => (Op::NotEq, 2),
            (Some(b'!'), Some(b'~')) => (Op::NotRegex, 2),
            (Some(b'='), _) => (Op::Eq, 1),
            _ => return Err(err(i, "expected `=`, `!=`, `=~` or `!~`")),
        };
        i += op.1;
        skip_ws(&mut i);
        let quote_at = i;
        let value = parse_string(text, &mut i).map_err(|m| err(quote_at, &m))?;
        let matcher = Matcher::new(&name, op.0, &value).map_err(|m| err(quote_at, &m))?;
        out.push(matcher);
        skip_ws(&mut i);
        match bytes.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {
                i += 1;
                break;
            }
            _ => return Err(err(i, "expected `,` or `}`")),
        }
    }
    skip_ws(&mut i);
    if i != bytes.len() {
        return Err(err(i, "unexpected text after `}`"));
    }
    Ok(out)
}

/// A double- or single-quoted string with `\"`, `\\`, `\n`, `\t` escapes.
fn parse_string(text: &str, i: &mut usize) -> Result<String, String> {
    let quote = match text[*i..].chars().next() {
        Some(q @ ('"' | '\'' | '`')) => q,
        _ => return Err("expected a quoted value".into()),
    };
    let mut out = String::new();
    let mut chars = text[*i + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            c if c == quote => {
                *i += 1 + k + c.len_utf8();
                return Ok(out);
            }
            '\\' if quote != '`' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, c)) => out.push(c),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn legacy_query_with_matchers() {
        let q = parse_query(
            r#"checkout.cpu{env="prod", pod=~"api-.*", zone!="b"}"#,
            None,
        )
        .unwrap();
        assert_eq!(q.profile_type.kind, "cpu");
        assert_eq!(q.matchers.len(), 4);
        assert!(matches_all(
            &q.matchers,
            &labels(&[
                ("service_name", "checkout"),
                ("env", "prod"),
                ("pod", "api-7")
            ])
        ));
        assert!(!matches_all(
            &q.matchers,
            &labels(&[
                ("service_name", "checkout"),
                ("env", "prod"),
                ("pod", "xapi-7")
            ])
        ));
        assert!(!matches_all(
            &q.matchers,
            &labels(&[
                ("service_name", "checkout"),
                ("env", "prod"),
                ("pod", "api-1"),
                ("zone", "b")
            ])
        ));
    }

    #[test]
    fn dotted_app_names_split_at_the_last_dot() {
        let q = parse_query("my.app.alloc_space", None).unwrap();
        assert_eq!(q.matchers, vec![Matcher::eq(SERVICE_NAME, "my.app")]);
        assert_eq!(q.profile_type.kind, "alloc_space");
    }

    #[test]
    fn selector_form_with_a_profile_type_parameter() {
        let q = parse_query(
            r#"{service_name="checkout"}"#,
            Some("process_cpu:cpu:nanoseconds:cpu:nanoseconds"),
        )
        .unwrap();
        assert_eq!(q.profile_type.name.as_deref(), Some("process_cpu"));
        assert_eq!(q.profile_type.unit.as_deref(), Some("nanoseconds"));
        assert_eq!(q.matchers, vec![Matcher::eq(SERVICE_NAME, "checkout")]);
    }

    #[test]
    fn errors_carry_positions() {
        // A trailing comma is allowed, as in PromQL; a missing value is not.
        assert!(parse_query(r#"app.cpu{env="prod",}"#, None).is_ok());
        let e = parse_query(r#"app.cpu{env=}"#, None).unwrap_err();
        assert_eq!(
            (e.position, e.message.as_str()),
            (12, "expected a quoted value")
        );
        let e = parse_query(r#"app.cpu{env~"prod"}"#, None).unwrap_err();
        assert_eq!(
            (e.position, e.message.as_str()),
            (11, "expected `=`, `!=`, `=~` or `!~`")
        );
        let e = parse_query(r#"app.cpu{env="prod"#, None).unwrap_err();
        assert_eq!(e.message, "unterminated string");
        let e = parse_query(r#"app.cpu{env=~"(("}"#, None).unwrap_err();
        assert!(e.message.starts_with("invalid regular expression"), "{e}");
        // `{}` without a type parameter is every service's CPU.
        let q = parse_query("{}", None).unwrap();
        assert_eq!((q.profile_type.kind.as_str(), q.matchers.len()), ("cpu", 0));
    }

    #[test]
    fn dotted_label_names_match_their_stored_form() {
        let m = parse_matchers(r#"{otel.scope.name="sdk", env="test"}"#).unwrap();
        assert_eq!(m[0], Matcher::eq("otel_scope_name", "sdk"));
        assert!(matches_all(
            &m,
            &labels(&[("otel_scope_name", "sdk"), ("env", "test")])
        ));
    }

    #[test]
    fn missing_labels_read_as_empty() {
        let m = parse_matchers(r#"{env!="prod", team=""}"#).unwrap();
        assert!(matches_all(&m, &labels(&[])));
    }
}
