//! The view of a `ProjectSettings` object this controller reads, and the validation of its
//! `spec.groupAccess`.
//!
//! The view is lenient on purpose: a role outside `admin`/`edit`/`view` (stored before the CRD
//! had its enum, or written against an older CRD), or any other shape a looser schema let
//! through, must become a condition on that object, not a decoding failure that stalls the
//! watch of every `ProjectSettings` in the cluster.

use std::{collections::BTreeMap, fmt};

use agentic_api::sessions::{GroupRole, ProjectSettings, ProjectSettingsStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `ProjectSettings` object as this controller reads it (same kind, lenient `spec`).
#[derive(Resource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[resource(inherit = ProjectSettings)]
pub struct ProjectSettingsView {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// The parts of the spec this controller uses.
    #[serde(default)]
    pub spec: ProjectSettingsViewSpec,
    /// Observed state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ProjectSettingsStatus>,
}

/// `spec` of [`ProjectSettingsView`]: only `groupAccess`, as written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSettingsViewSpec {
    /// `spec.groupAccess`, any JSON: its shape is checked by [`validate`], so that a value
    /// stored under a looser schema (not a list, a number for a role) becomes a problem named
    /// on this object instead of a decoding failure.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub group_access: Value,
}

/// A validated group grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The group.
    pub group: String,
    /// Its role.
    pub role: GroupRole,
}

/// One problem in a `ProjectSettings` spec, naming the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    /// JSON path of the field, e.g. `spec.groupAccess[1].role`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a spec (never empty when returned as an error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSpec(pub Vec<FieldProblem>);

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for InvalidSpec {}

/// A JSON value's type, for messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The allowed roles, for messages.
fn allowed_roles() -> String {
    GroupRole::ALL
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks `spec.groupAccess`: it is a list of objects; every entry needs a group name and a
/// known role, and each group may appear once (two roles for one group would be ambiguous,
/// and a repeated entry is almost always a mistake).
pub fn validate(spec: &ProjectSettingsViewSpec) -> Result<Vec<Grant>, InvalidSpec> {
    let entries: &[Value] = match &spec.group_access {
        Value::Null => &[],
        Value::Array(entries) => entries,
        other => {
            return Err(InvalidSpec(vec![FieldProblem {
                field: "spec.groupAccess".into(),
                message: format!(
                    "must be a list of {{groupName, role}} entries; found {}",
                    json_type(other)
                ),
            }]));
        }
    };
    let mut problems = Vec::new();
    let mut grants = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let base = format!("spec.groupAccess[{index}]");
        if !entry.is_object() {
            problems.push(FieldProblem {
                field: base,
                message: format!(
                    "must be an object with groupName and role; found {}",
                    json_type(entry)
                ),
            });
            continue;
        }
        let mut ok = true;
        let group = match &entry["groupName"] {
            Value::String(group) => group.as_str(),
            Value::Null => "",
            other => {
                problems.push(FieldProblem {
                    field: format!("{base}.groupName"),
                    message: format!("must be a string; found {}", json_type(other)),
                });
                ok = false;
                ""
            }
        };
        if !ok {
            // The group is not a string; nothing more to say about it.
        } else if group.trim().is_empty() {
            problems.push(FieldProblem {
                field: format!("{base}.groupName"),
                message: "must name a group; it is empty".into(),
            });
            ok = false;
        } else if let Some(first) = seen.get(group) {
            problems.push(FieldProblem {
                field: format!("{base}.groupName"),
                message: format!(
                    "group {group:?} is already listed at spec.groupAccess[{first}]; list each group once with a single role"
                ),
            });
            ok = false;
        } else {
            seen.insert(group, index);
        }
        let role = match &entry["role"] {
            Value::String(role) => {
                let parsed = role.parse::<GroupRole>().ok();
                if parsed.is_none() {
                    problems.push(FieldProblem {
                        field: format!("{base}.role"),
                        message: format!("unknown role {role:?}; allowed: {}", allowed_roles()),
                    });
                }
                parsed
            }
            other => {
                problems.push(FieldProblem {
                    field: format!("{base}.role"),
                    message: format!(
                        "must be one of {}; found {}",
                        allowed_roles(),
                        json_type(other)
                    ),
                });
                None
            }
        };
        if let (true, Some(role)) = (ok, role) {
            grants.push(Grant {
                group: group.to_owned(),
                role,
            });
        }
    }
    if problems.is_empty() {
        Ok(grants)
    } else {
        Err(InvalidSpec(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(entries: &[(&str, &str)]) -> ProjectSettingsViewSpec {
        ProjectSettingsViewSpec {
            group_access: entries
                .iter()
                .map(|(g, r)| serde_json::json!({"groupName": g, "role": r}))
                .collect(),
        }
    }

    #[test]
    fn valid_entries_become_grants_in_order() {
        let grants = validate(&spec(&[("devs", "edit"), ("ops", "admin")])).unwrap();
        assert_eq!(
            grants,
            vec![
                Grant {
                    group: "devs".into(),
                    role: GroupRole::Edit
                },
                Grant {
                    group: "ops".into(),
                    role: GroupRole::Admin
                },
            ]
        );
        assert_eq!(validate(&spec(&[])).unwrap(), vec![]);
    }

    #[test]
    fn unknown_role_names_the_field_and_the_allowed_values() {
        let err = validate(&spec(&[("devs", "edit"), ("ops", "owner")])).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].field, "spec.groupAccess[1].role");
        assert!(err.0[0].message.contains("\"owner\""), "{err}");
        assert!(err.0[0].message.contains("admin, edit, view"), "{err}");
    }

    #[test]
    fn duplicate_group_points_at_the_first_entry() {
        let err = validate(&spec(&[
            ("devs", "edit"),
            ("ops", "view"),
            ("devs", "admin"),
        ]))
        .unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].field, "spec.groupAccess[2].groupName");
        assert!(err.0[0].message.contains("spec.groupAccess[0]"), "{err}");
    }

    #[test]
    fn empty_group_and_every_problem_reported() {
        let err = validate(&spec(&[("", "edit"), ("x", "")])).unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["spec.groupAccess[0].groupName", "spec.groupAccess[1].role"]
        );
        assert!(err.to_string().contains("; "));
    }

    #[test]
    fn view_decodes_roles_the_typed_enum_rejects() {
        let view: ProjectSettingsView = serde_json::from_value(serde_json::json!({
            "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "ProjectSettings",
            "metadata": {"name": "projectsettings", "namespace": "a"},
            "spec": {"groupAccess": [{"groupName": "g", "role": "superuser"}]}
        }))
        .unwrap();
        assert_eq!(view.spec.group_access[0]["role"], "superuser");
        let no_spec: ProjectSettingsView = serde_json::from_value(serde_json::json!({
            "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "ProjectSettings",
            "metadata": {"name": "projectsettings", "namespace": "a"}
        }))
        .unwrap();
        assert!(no_spec.spec.group_access.is_null());
        assert_eq!(validate(&no_spec.spec).unwrap(), vec![]);
    }

    fn problems(group_access: Value) -> Vec<String> {
        validate(&ProjectSettingsViewSpec { group_access })
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn shapes_a_looser_schema_let_through_are_named_problems() {
        use serde_json::json;
        assert_eq!(
            problems(json!("everyone")),
            vec!["spec.groupAccess: must be a list of {groupName, role} entries; found a string"]
        );
        assert_eq!(
            problems(json!([{"groupName": 7, "role": 1}, "devs"])),
            vec![
                "spec.groupAccess[0].groupName: must be a string; found a number",
                "spec.groupAccess[0].role: must be one of admin, edit, view; found a number",
                "spec.groupAccess[1]: must be an object with groupName and role; found a string",
            ]
        );
        assert_eq!(
            problems(json!([{"groupName": "devs"}])),
            vec!["spec.groupAccess[0].role: must be one of admin, edit, view; found null"]
        );
        // The whole object reads whatever the spec holds.
        let view: ProjectSettingsView = serde_json::from_value(json!({
            "metadata": {"name": "projectsettings", "namespace": "a"},
            "spec": {"groupAccess": {"devs": "edit"}, "inactivityTimeoutSeconds": "soon"}
        }))
        .unwrap();
        assert!(validate(&view.spec).is_err());
    }
}
