//! Validation, defaulting, pruning and CEL evaluation of custom objects against the
//! `openAPIV3Schema` of a `CustomResourceDefinition` version, with the field paths and
//! messages a real Kubernetes API server uses. Pure: JSON in, JSON or errors out, no I/O.
//!
//! # Public interface
//!
//! - [`structural_problems`]`(schema) -> Vec<String>`: why an `openAPIV3Schema` is not
//!   structural (or otherwise refused by the API server); empty means acceptable. Each message
//!   starts with the path of the offending schema node.
//! - [`Schema::new`]`(open_api_v3_schema) -> Result<Schema, SchemaError>`: checks the schema
//!   is structural and compiles it once (patterns, CEL rules via kube-cel).
//! - [`Schema::admit`]`(&mut obj, old) -> Result<Admitted, FieldErrors>`: in the API server's
//!   order, prunes unknown fields (keeping `apiVersion`, `kind`, `metadata` at the root),
//!   drops non-nullable `null`s, applies defaults, then validates (`OpenAPI` keywords,
//!   `x-kubernetes-list-type` invariants, and `x-kubernetes-validations` CEL rules unless an
//!   earlier error blocks them). [`Admitted::pruned`] lists the dropped field paths;
//!   [`Admitted::unknown_field_messages`] gives the `Warning` texts and
//!   [`Admitted::strict_error_status`] the 400 answer under `fieldValidation=Strict`.
//! - [`FieldError`] / [`FieldErrors`]: errors rendered like the API server
//!   (`spec.x: Invalid value: 1.5: spec.x in body should be less than or equal to 1`), and
//!   [`FieldErrors::to_status`] builds the `422 Invalid` `metav1.Status` body.
//!
//! ```
//! use serde_json::json;
//!
//! let schema = crd_validation::Schema::new(&json!({
//!     "type": "object",
//!     "properties": {"spec": {"type": "object", "properties": {
//!         "replicas": {"type": "integer", "default": 1, "maximum": 5}
//!     }}}
//! }))
//! .unwrap();
//! let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "spec": {"extra": true}});
//! let admitted = schema.admit(&mut obj, None).unwrap();
//! assert_eq!(admitted.pruned, ["spec.extra"]);
//! assert_eq!(obj["spec"]["replicas"], 1);
//!
//! let mut bad = json!({"spec": {"replicas": 9}});
//! let errors = schema.admit(&mut bad, None).unwrap_err();
//! assert_eq!(
//!     errors.to_string(),
//!     "spec.replicas: Invalid value: 9: spec.replicas in body should be less than or equal to 5"
//! );
//! ```

mod error;
mod formats;
mod schema;
mod structural;

pub use error::{ErrorKind, FieldError, FieldErrors};
pub use schema::{Admitted, RULES_NOT_CHECKED, Schema, SchemaError};
pub use structural::structural_problems;
