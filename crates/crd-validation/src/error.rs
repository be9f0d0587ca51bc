//! Field errors in the shape and wording of the Kubernetes API server
//! (`k8s.io/apimachinery/pkg/util/validation/field`), and the 422 `Status` body built from them.

use std::fmt::{self, Write as _};

use serde_json::{Map, Value, json};

/// The category of a field error, as in Kubernetes' `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `Invalid value`: the value breaks a constraint (`FieldValueInvalid`).
    Invalid,
    /// `Required value`: a required field is missing (`FieldValueRequired`).
    Required,
    /// `Unsupported value`: the value is not one of an enumeration (`FieldValueNotSupported`).
    NotSupported,
    /// `Too long`: a string exceeds `maxLength` (`FieldValueTooLong`).
    TooLong,
    /// `Too many`: a list or map exceeds `maxItems`/`maxProperties` (`FieldValueTooMany`).
    TooMany,
    /// `Duplicate value`: a repeated set element or map-list key (`FieldValueDuplicate`).
    Duplicate,
    /// `Forbidden`: the field may not be set (`FieldValueForbidden`).
    Forbidden,
    /// `Invalid value` caused by a JSON type mismatch (`FieldValueTypeInvalid`).
    TypeInvalid,
}

impl ErrorKind {
    /// The label that starts the error body, e.g. `Invalid value`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Invalid | ErrorKind::TypeInvalid => "Invalid value",
            ErrorKind::Required => "Required value",
            ErrorKind::NotSupported => "Unsupported value",
            ErrorKind::TooLong => "Too long",
            ErrorKind::TooMany => "Too many",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::Forbidden => "Forbidden",
        }
    }

    /// The `reason` of a `StatusCause`, e.g. `FieldValueInvalid`.
    pub fn cause_reason(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::NotSupported => "FieldValueNotSupported",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// Whether the API server shows the offending value after the label.
    fn shows_value(self) -> bool {
        !matches!(
            self,
            ErrorKind::Required | ErrorKind::Forbidden | ErrorKind::TooLong
        )
    }
}

/// One rejected field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Field path with dots and `[i]` indices, e.g. `spec.targets[0].name`; empty for the
    /// object itself (rendered as `<nil>`, like the API server does).
    pub path: String,
    /// What kind of problem this is.
    pub kind: ErrorKind,
    /// The offending value as the message shows it; `None` renders as `null` for kinds that
    /// show a value, and is omitted for `Too many` (where it is the actual count).
    pub value: Option<Value>,
    /// Human-readable detail after the value; may be empty.
    pub detail: String,
}

impl FieldError {
    /// Creates an error.
    pub fn new(
        path: impl Into<String>,
        kind: ErrorKind,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            path: path.into(),
            kind,
            value,
            detail: detail.into(),
        }
    }

    /// The message without the field path, as in a `StatusCause` (`Required value`,
    /// `Invalid value: 3: ...`).
    pub fn body(&self) -> String {
        let mut s = String::from(self.kind.label());
        if self.kind.shows_value() {
            match (&self.value, self.kind) {
                (None, ErrorKind::TooMany) => {}
                (None, _) => s.push_str(": \"null\""),
                (Some(v), _) => {
                    s.push_str(": ");
                    s.push_str(&go_value(v));
                }
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The path as the API server prints it (`<nil>` for the object itself).
    pub fn display_path(&self) -> &str {
        if self.path.is_empty() {
            "<nil>"
        } else {
            &self.path
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.display_path(), self.body())
    }
}

/// All errors found in one object, in the order they were found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    /// The aggregated message: one error as is, several as `[e1, e2]` (repeated messages
    /// are shown once, like the API server's error aggregate).
    pub fn message(&self) -> String {
        let mut seen: Vec<String> = Vec::new();
        for e in &self.0 {
            let m = e.to_string();
            if !seen.contains(&m) {
                seen.push(m);
            }
        }
        if seen.len() == 1 {
            seen.remove(0)
        } else {
            format!("[{}]", seen.join(", "))
        }
    }

    /// The `422 Invalid` `metav1.Status` the API server answers with for a custom object
    /// `name` of `kind` in API group `group`.
    pub fn to_status(&self, group: &str, kind: &str, name: &str) -> Value {
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let message = if self.0.is_empty() {
            format!("{qualified} {} is invalid", go_quote(name))
        } else {
            format!(
                "{qualified} {} is invalid: {}",
                go_quote(name),
                self.message()
            )
        };
        let causes: Vec<Value> = self
            .0
            .iter()
            .map(|e| {
                json!({
                    "reason": e.kind.cause_reason(),
                    "message": e.body(),
                    "field": e.display_path(),
                })
            })
            .collect();
        let mut details = Map::new();
        if !name.is_empty() {
            details.insert("name".into(), Value::String(name.to_owned()));
        }
        if !group.is_empty() {
            details.insert("group".into(), Value::String(group.to_owned()));
        }
        details.insert("kind".into(), Value::String(kind.to_owned()));
        if !causes.is_empty() {
            details.insert("causes".into(), Value::Array(causes));
        }
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "Invalid",
            "details": Value::Object(details),
            "code": 422
        })
    }

    /// Whether there are no errors.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Iterates over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a FieldErrors {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for FieldErrors {}

/// Quotes a string the way Go's `%q` does (close enough for UTF-8 text).
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Formats a JSON number like Go's `%v` of the decoded `int64`/`float64`.
pub(crate) fn go_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    go_float(f)
}

/// Formats a float like Go's `%v` (shortest representation, exponent for big/small values).
pub(crate) fn go_float(f: f64) -> String {
    let abs = f.abs();
    if f != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{f:e}");
        // Rust renders `1e21`, Go renders `1e+21`; Go pads the exponent to two digits.
        if let Some((mantissa, exp)) = s.split_once('e') {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            let digits = if digits.len() < 2 {
                format!("0{digits}")
            } else {
                digits.to_owned()
            };
            return format!("{mantissa}e{sign}{digits}");
        }
        return s;
    }
    if f.fract() == 0.0 {
        format!("{f:.0}")
    } else {
        format!("{f}")
    }
}

/// Formats a value like the API server prints a bad value: strings quoted, numbers and
/// booleans bare, `null` as `"null"`, and maps/lists in Go's `%#v` syntax.
pub(crate) fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "\"null\"".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => go_quote(s),
        Value::Array(_) | Value::Object(_) => go_syntax(v),
    }
}

/// Go's `%#v` of a decoded JSON value.
fn go_syntax(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => go_quote(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(go_syntax).collect();
            format!("[]interface {{}}{{{}}}", inner.join(", "))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", go_quote(k), go_syntax(&map[k])))
                .collect();
            format!("map[string]interface {{}}{{{}}}", inner.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_like_go() {
        assert_eq!(go_value(&json!(1.5)), "1.5");
        assert_eq!(go_value(&json!(2.0)), "2");
        assert_eq!(go_value(&json!(1e21)), "1e+21");
        assert_eq!(go_value(&json!(0.000_01)), "1e-05");
        assert_eq!(go_value(&json!(-7)), "-7");
        assert_eq!(go_value(&json!("a\"b\n")), "\"a\\\"b\\n\"");
        assert_eq!(go_value(&Value::Null), "\"null\"");
        assert_eq!(go_value(&json!(true)), "true");
        assert_eq!(
            go_value(&json!({"b": [1, "x"], "a": null})),
            "map[string]interface {}{\"a\":interface {}(nil), \"b\":[]interface {}{1, \"x\"}}"
        );
    }

    #[test]
    fn bodies_follow_the_error_kind() {
        let e = |kind, value| FieldError::new("spec.a", kind, value, "d");
        assert_eq!(
            e(ErrorKind::Required, Some(json!(1))).body(),
            "Required value: d"
        );
        assert_eq!(e(ErrorKind::Forbidden, None).body(), "Forbidden: d");
        assert_eq!(
            e(ErrorKind::TooLong, Some(json!("x"))).body(),
            "Too long: d"
        );
        assert_eq!(e(ErrorKind::TooMany, None).body(), "Too many: d");
        assert_eq!(
            e(ErrorKind::TooMany, Some(json!(3))).body(),
            "Too many: 3: d"
        );
        assert_eq!(
            e(ErrorKind::Duplicate, Some(json!("x"))).body(),
            "Duplicate value: \"x\": d"
        );
        assert_eq!(
            e(ErrorKind::Invalid, None).body(),
            "Invalid value: \"null\": d"
        );
        assert_eq!(
            FieldError::new("", ErrorKind::Invalid, Some(json!("object")), "m").to_string(),
            "<nil>: Invalid value: \"object\": m"
        );
    }

    #[test]
    fn repeated_messages_are_aggregated_once() {
        let e = FieldError::new("spec", ErrorKind::Required, None, "");
        assert_eq!(
            FieldErrors(vec![e.clone(), e.clone()]).message(),
            "spec: Required value"
        );
        let other = FieldError::new("x", ErrorKind::Forbidden, None, "no");
        assert_eq!(
            FieldErrors(vec![e, other]).message(),
            "[spec: Required value, x: Forbidden: no]"
        );
    }
}
