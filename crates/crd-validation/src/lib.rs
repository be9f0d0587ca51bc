//! Validation, defaulting, pruning and CEL evaluation of custom objects against the
//! `openAPIV3Schema` of a `CustomResourceDefinition` version, with the field paths and
//! messages a real Kubernetes API server uses.
//!
//! # Public interface
//!
//! - [`structural_problems`]`(schema) -> Vec<String>`: why an `openAPIV3Schema` is not
//!   structural; empty means structural. Each message starts with the JSON path of the node.
//! - [`Schema::new`]`(open_api_v3_schema) -> Result<Schema, SchemaError>`: compiles a schema
//!   once (patterns, CEL rules).
//! - [`Schema::admit`]`(&mut obj, old) -> Result<Admitted, FieldErrors>`: prunes unknown
//!   fields, applies defaults, then validates (OpenAPI keywords, list types, CEL rules), in
//!   the order the API server uses. [`Admitted::pruned`] lists the dropped field paths.
//! - [`FieldError`] / [`FieldErrors`]: errors rendered like the API server
//!   (`spec.x: Invalid value: ...`), and [`FieldErrors::to_status`] builds the 422
//!   `metav1.Status` body.

use std::fmt;

use serde_json::Value;

/// Reasons why `schema` is not a structural schema; empty when it is structural.
pub fn structural_problems(schema: &Value) -> Vec<String> {
    let _ = schema;
    Vec::new()
}

/// A schema that could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The schema is not structural.
    #[error("schema is not structural: {}", .0.join("; "))]
    NotStructural(Vec<String>),
    /// A `pattern` is not a valid regular expression.
    #[error("{path}.pattern: invalid regular expression {pattern:?}: {reason}")]
    Pattern {
        /// Path of the schema node.
        path: String,
        /// The rejected pattern.
        pattern: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An `x-kubernetes-validations` rule does not compile.
    #[error("{path}.x-kubernetes-validations[{index}].rule: compilation failed: {reason}")]
    Cel {
        /// Path of the schema node.
        path: String,
        /// Index of the rule in the node's list.
        index: usize,
        /// Compiler message.
        reason: String,
    },
}

/// A compiled `openAPIV3Schema`.
#[derive(Debug, Clone)]
pub struct Schema {
    root: Value,
}

/// What admission changed in an accepted object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admitted {
    /// Paths of fields removed because the schema does not know them (`spec.foo`).
    pub pruned: Vec<String>,
}

impl Schema {
    /// Compiles an `openAPIV3Schema`.
    pub fn new(open_api_v3_schema: &Value) -> Result<Schema, SchemaError> {
        Ok(Schema {
            root: open_api_v3_schema.clone(),
        })
    }

    /// Prunes, defaults and validates `obj` in place; `old` is the stored object on update.
    pub fn admit(&self, obj: &mut Value, old: Option<&Value>) -> Result<Admitted, FieldErrors> {
        let _ = (&self.root, obj, old);
        Ok(Admitted::default())
    }
}

/// The category of a field error, as in Kubernetes' `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `Invalid value`.
    Invalid,
    /// `Required value`.
    Required,
    /// `Unsupported value`.
    NotSupported,
    /// `Too long`.
    TooLong,
    /// `Too many`.
    TooMany,
    /// `Duplicate value`.
    Duplicate,
    /// `Forbidden`.
    Forbidden,
    /// `Invalid value` for a type mismatch.
    TypeInvalid,
}

/// One rejected field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Field path with dots and `[i]` indices, e.g. `spec.targets[0].name`.
    pub path: String,
    /// What kind of problem this is.
    pub kind: ErrorKind,
    /// The offending value, when the message shows one.
    pub value: Option<Value>,
    /// Human-readable detail.
    pub detail: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}: {}", self.path, self.kind, self.detail)
    }
}

/// All errors found in one object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    /// The 422 `metav1.Status` the API server answers with.
    pub fn to_status(&self, group: &str, kind: &str, name: &str) -> Value {
        serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("{kind}.{group} \"{name}\" is invalid"),
            "reason": "Invalid",
            "details": {"name": name, "group": group, "kind": kind, "causes": []},
            "code": 422
        })
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "[{}]", parts.join(", "))
    }
}

impl std::error::Error for FieldErrors {}
