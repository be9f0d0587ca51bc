//! Which webhooks a write is sent to: `rules`, `namespaceSelector`, `objectSelector` and
//! `matchConditions`, with kube-apiserver's semantics.

use kube_cel::KubeCelExt as _;
use kube_cel::cel;
use serde_json::Value;

/// The attributes of a write that rules are matched against.
#[derive(Debug, Clone)]
pub(crate) struct Attributes<'a> {
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: &'static str,
    /// API group of the request.
    pub group: &'a str,
    /// API version of the request.
    pub version: &'a str,
    /// Resource plural.
    pub resource: &'a str,
    /// Subresource, empty for the main resource.
    pub subresource: &'a str,
    /// Namespace of the request, empty for cluster-scoped resources.
    pub namespace: &'a str,
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether one `RuleWithOperations` matches the request.
pub(crate) fn rule_matches(rule: &Value, a: &Attributes<'_>) -> bool {
    let listed = |field: &str, want: &str| {
        strings(&rule[field])
            .iter()
            .any(|x| *x == "*" || *x == want)
    };
    if !listed("operations", a.operation)
        || !listed("apiGroups", a.group)
        || !listed("apiVersions", a.version)
    {
        return false;
    }
    let resource_ok = strings(&rule["resources"]).iter().any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == a.resource) && (sub == "*" || sub == a.subresource)
    });
    if !resource_ok {
        return false;
    }
    match rule["scope"].as_str() {
        Some("Cluster") => a.namespace.is_empty(),
        Some("Namespaced") => !a.namespace.is_empty(),
        _ => true,
    }
}

/// Whether a `metav1.LabelSelector` (`matchLabels` and `matchExpressions`) selects these
/// labels. An absent or empty selector selects everything; a malformed one is an error.
pub(crate) fn selector_matches(selector: &Value, labels: Option<&Value>) -> Result<bool, String> {
    if selector.is_null() {
        return Ok(true);
    }
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(m) = selector["matchLabels"].as_object() {
        for (k, v) in m {
            if get(k) != v.as_str() {
                return Ok(false);
            }
        }
    }
    let exprs = selector["matchExpressions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for e in exprs {
        let key = e["key"].as_str().unwrap_or_default();
        let values = strings(&e["values"]);
        let op = e["operator"].as_str().unwrap_or_default();
        let ok = match op {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "matchExpressions[key={key}].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "matchExpressions[key={key}].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                ));
            }
            "In" => get(key).is_some_and(|x| values.contains(&x)),
            "NotIn" => get(key).is_none_or(|x| !values.contains(&x)),
            "Exists" => get(key).is_some(),
            "DoesNotExist" => get(key).is_none(),
            other => {
                return Err(format!(
                    "matchExpressions[key={key}].operator: Unsupported value: {other:?}: supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\""
                ));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The outcome of a webhook's `matchConditions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Conditions {
    /// Every condition is true (or there are none).
    Match,
    /// At least one condition is false.
    NoMatch,
    /// No condition is false but at least one could not be evaluated.
    Error(String),
}

/// Evaluates `matchConditions` (CEL) with the variables `object`, `oldObject` and `request`.
/// The `authorizer` variable is not available.
pub(crate) fn eval_conditions(conditions: &Value, request: &Value) -> Conditions {
    let list = conditions.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return Conditions::Match;
    }
    let mut ctx = cel::Context::default();
    ctx.register_all();
    for (var, value) in [
        ("object", &request["object"]),
        ("oldObject", &request["oldObject"]),
        ("request", request),
    ] {
        match cel::to_value(value) {
            Ok(v) => ctx.add_variable_from_value(var, v),
            Err(e) => return Conditions::Error(format!("cannot convert {var}: {e}")),
        }
    }
    let mut first_error = None;
    for c in list {
        let name = c["name"].as_str().unwrap_or_default();
        let expr = c["expression"].as_str().unwrap_or_default();
        let result = cel::Program::compile(expr)
            .map_err(|e| format!("compilation failed: {e}"))
            .and_then(|p| p.execute(&ctx).map_err(|e| e.to_string()));
        match result {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => return Conditions::NoMatch,
            Ok(other) => {
                first_error.get_or_insert_with(|| {
                    format!(
                        "failed to evaluate match condition {name:?}: expression must evaluate to a bool, got {other:?}"
                    )
                });
            }
            Err(e) => {
                first_error.get_or_insert_with(|| {
                    format!("failed to evaluate match condition {name:?}: {e}")
                });
            }
        }
    }
    first_error.map_or(Conditions::Match, Conditions::Error)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn attrs<'a>(op: &'static str, resource: &'a str, sub: &'a str, ns: &'a str) -> Attributes<'a> {
        Attributes {
            operation: op,
            group: "example.io",
            version: "v1",
            resource,
            subresource: sub,
            namespace: ns,
        }
    }

    #[test]
    fn rules_match_operations_groups_versions_resources_and_scope() {
        let rule = json!({
            "operations": ["CREATE", "UPDATE"],
            "apiGroups": ["example.io"],
            "apiVersions": ["*"],
            "resources": ["widgets"],
        });
        assert!(rule_matches(&rule, &attrs("CREATE", "widgets", "", "ns")));
        assert!(!rule_matches(&rule, &attrs("DELETE", "widgets", "", "ns")));
        assert!(!rule_matches(&rule, &attrs("CREATE", "gadgets", "", "ns")));
        assert!(!rule_matches(
            &rule,
            &attrs("UPDATE", "widgets", "status", "ns")
        ));
        let mut other_group = attrs("CREATE", "widgets", "", "ns");
        other_group.group = "other.io";
        assert!(!rule_matches(&rule, &other_group));

        let status = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
            "resources": ["*/status"]});
        assert!(rule_matches(
            &status,
            &attrs("UPDATE", "widgets", "status", "ns")
        ));
        assert!(!rule_matches(
            &status,
            &attrs("UPDATE", "widgets", "", "ns")
        ));

        let all = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
            "resources": ["*"], "scope": "Cluster"});
        assert!(rule_matches(&all, &attrs("CREATE", "widgets", "", "")));
        assert!(!rule_matches(&all, &attrs("CREATE", "widgets", "", "ns")));
        assert!(!rule_matches(
            &all,
            &attrs("CREATE", "widgets", "scale", "")
        ));

        let sub_any = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
            "resources": ["widgets/*"], "scope": "Namespaced"});
        assert!(rule_matches(
            &sub_any,
            &attrs("CREATE", "widgets", "", "ns")
        ));
        assert!(rule_matches(
            &sub_any,
            &attrs("CREATE", "widgets", "status", "ns")
        ));
        assert!(!rule_matches(&sub_any, &attrs("CREATE", "widgets", "", "")));
    }

    #[test]
    fn selectors_are_equality_and_set_based() {
        let labels = json!({"env": "prod", "tier": "web"});
        let sel = json!({"matchLabels": {"env": "prod"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]});
        assert_eq!(selector_matches(&sel, Some(&labels)), Ok(true));
        let sel =
            json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]});
        assert_eq!(selector_matches(&sel, Some(&labels)), Ok(false));
        let sel = json!({"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]});
        assert_eq!(selector_matches(&sel, Some(&labels)), Ok(true));
        assert_eq!(selector_matches(&sel, None), Ok(true));
        let sel = json!({"matchExpressions": [{"key": "env", "operator": "Exists"}]});
        assert_eq!(selector_matches(&sel, None), Ok(false));
        assert_eq!(selector_matches(&json!({}), None), Ok(true));
        assert_eq!(selector_matches(&Value::Null, None), Ok(true));
        let bad =
            json!({"matchExpressions": [{"key": "env", "operator": "Near", "values": ["x"]}]});
        assert!(selector_matches(&bad, Some(&labels)).is_err());
        let bad = json!({"matchExpressions": [{"key": "env", "operator": "In"}]});
        assert!(selector_matches(&bad, Some(&labels)).is_err());
    }

    #[test]
    fn match_conditions_see_object_and_request() {
        let request = json!({
            "operation": "CREATE",
            "object": {"metadata": {"name": "a", "labels": {"team": "x"}}},
            "oldObject": null,
        });
        let cond = |e: &str| json!([{"name": "c", "expression": e}]);
        assert_eq!(
            eval_conditions(&cond("object.metadata.name == 'a'"), &request),
            Conditions::Match
        );
        assert_eq!(
            eval_conditions(&cond("request.operation == 'UPDATE'"), &request),
            Conditions::NoMatch
        );
        assert!(matches!(
            eval_conditions(&cond("object.metadata.missing == 'a'"), &request),
            Conditions::Error(_)
        ));
        let both = json!([
            {"name": "broken", "expression": "object.nope.x == 1"},
            {"name": "false", "expression": "oldObject != null"},
        ]);
        assert_eq!(eval_conditions(&both, &request), Conditions::NoMatch);
        assert_eq!(eval_conditions(&json!([]), &request), Conditions::Match);
    }
}
