//! Pure construction of every object a `ProjectSettings` owns: names, labels, owner
//! references and contents all come from here.
//!
//! | object | name | contents |
//! |---|---|---|
//! | `RoleBinding` per `groupAccess` entry | `<groupName>-<role>` | Group subject → `ClusterRole` `ambient-project-<role>` |
//! | `ServiceAccount` | `ambient-session-trigger` | identity of scheduled-session `CronJobs` |
//! | Role | `ambient-session-trigger` | `agenticsessions` create/get/list/update |
//! | `RoleBinding` | `ambient-session-trigger` | the `ServiceAccount` → the Role |
//! | `LimitRange` | `ambient-default-limits` | container defaults: request 250m/256Mi, limit 2 CPU/4Gi |

use std::collections::BTreeMap;

use agentic_api::sessions::{GROUP, GroupRole, LABEL_MANAGED_NAMESPACE};
use k8s_openapi::{
    api::{
        core::v1::{LimitRange, LimitRangeItem, LimitRangeSpec, ServiceAccount},
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{ObjectMeta, OwnerReference},
    },
};
use kube::{Resource, ResourceExt};

use super::model::{Grant, ProjectSettingsView};

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "agentic-operator";
/// `app.kubernetes.io/managed-by` label key.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/component` label key.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Component label value on every object this controller owns (the watch selector).
pub const COMPONENT: &str = "project-settings";
/// Label telling group `RoleBindings` (`group`) from the scheduled-session RBAC
/// (`session-trigger`); pruning only ever looks at `group`.
pub const LABEL_PROJECT_RBAC: &str = "ambient-code.io/project-rbac";
/// [`LABEL_PROJECT_RBAC`] value of group `RoleBindings`.
pub const RBAC_GROUP: &str = "group";
/// [`LABEL_PROJECT_RBAC`] value of the scheduled-session objects.
pub const RBAC_SESSION_TRIGGER: &str = "session-trigger";
/// Name of the scheduled-session `ServiceAccount`, Role and `RoleBinding`.
pub const SESSION_TRIGGER: &str = "ambient-session-trigger";
/// Name of the namespace `LimitRange`.
pub const LIMIT_RANGE: &str = "ambient-default-limits";
/// Label selector of the watches on owned objects.
pub const CHILD_SELECTOR: &str = "app.kubernetes.io/component=project-settings";
/// Longest object name the API server accepts for RBAC objects.
const MAX_NAME: usize = 253;

/// Everything one `ProjectSettings` should own.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// One `RoleBinding` per grant, in `groupAccess` order.
    pub group_bindings: Vec<RoleBinding>,
    /// The scheduled-session `ServiceAccount`.
    pub trigger_service_account: ServiceAccount,
    /// The scheduled-session Role.
    pub trigger_role: Role,
    /// The scheduled-session `RoleBinding`.
    pub trigger_binding: RoleBinding,
    /// The namespace `LimitRange` (created once, never overwritten).
    pub limit_range: LimitRange,
}

/// The `ClusterRole` a group role binds to: `ambient-project-<role>`.
pub fn cluster_role_for(role: GroupRole) -> String {
    format!("ambient-project-{}", role.as_str())
}

/// Name of a group's `RoleBinding`: `<groupName>-<role>`, as upstream names it, made safe for
/// the API server when the group name is not (`/` and `%` become `-`; names longer than 253
/// characters are cut and end in a hash of the full name, so two groups never collide).
pub fn group_binding_name(group: &str, role: GroupRole) -> String {
    let raw = format!("{group}-{}", role.as_str());
    let mut name: String = raw
        .chars()
        .map(|c| if c == '/' || c == '%' { '-' } else { c })
        .collect();
    if name.len() > MAX_NAME || name != raw {
        let hash = format!("{:08x}", fnv1a(raw.as_bytes()));
        if name.len() > MAX_NAME - 9 {
            let mut cut = MAX_NAME - 9;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name.truncate(cut);
        }
        name = format!("{name}-{hash}");
    }
    name
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The controller owner reference to `ps`, or `None` while it has no `UID`.
pub fn owner_reference(ps: &ProjectSettingsView) -> Option<OwnerReference> {
    let mut owner = ps.controller_owner_ref(&())?;
    owner.block_owner_deletion = Some(true);
    Some(owner)
}

fn labels(kind: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
        (LABEL_COMPONENT.to_owned(), COMPONENT.to_owned()),
        (LABEL_PROJECT_RBAC.to_owned(), kind.to_owned()),
    ]);
    for (k, v) in extra {
        labels.insert((*k).to_owned(), (*v).to_owned());
    }
    labels
}

fn meta(name: &str, namespace: &str, owner: &OwnerReference, kind: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels(kind, &[])),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// Builds every owned object of `ps` from its validated `grants`. `owner` is the controller
/// reference from [`owner_reference`].
pub fn desired(ps: &ProjectSettingsView, grants: &[Grant], owner: &OwnerReference) -> Desired {
    let namespace = ps.namespace().unwrap_or_default();
    let group_bindings = grants
        .iter()
        .map(|grant| RoleBinding {
            metadata: ObjectMeta {
                labels: Some(labels(RBAC_GROUP, &[(LABEL_MANAGED_NAMESPACE, "true")])),
                ..meta(
                    &group_binding_name(&grant.group, grant.role),
                    &namespace,
                    owner,
                    RBAC_GROUP,
                )
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: cluster_role_for(grant.role),
            },
            subjects: Some(vec![Subject {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Group".into(),
                name: grant.group.clone(),
                namespace: None,
            }]),
        })
        .collect();
    let trigger_service_account = ServiceAccount {
        metadata: meta(SESSION_TRIGGER, &namespace, owner, RBAC_SESSION_TRIGGER),
        ..ServiceAccount::default()
    };
    let trigger_role = Role {
        metadata: meta(SESSION_TRIGGER, &namespace, owner, RBAC_SESSION_TRIGGER),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![GROUP.into()]),
            resources: Some(vec!["agenticsessions".into()]),
            verbs: ["create", "get", "list", "update"]
                .iter()
                .map(|v| (*v).to_owned())
                .collect(),
            ..PolicyRule::default()
        }]),
    };
    let trigger_binding = RoleBinding {
        metadata: meta(SESSION_TRIGGER, &namespace, owner, RBAC_SESSION_TRIGGER),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: SESSION_TRIGGER.into(),
        },
        subjects: Some(vec![Subject {
            api_group: None,
            kind: "ServiceAccount".into(),
            name: SESSION_TRIGGER.into(),
            namespace: Some(namespace.clone()),
        }]),
    };
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };
    let limit_range = LimitRange {
        metadata: meta(LIMIT_RANGE, &namespace, owner, "limits"),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default_request: Some(quantities("250m", "256Mi")),
                default: Some(quantities("2", "4Gi")),
                ..LimitRangeItem::default()
            }],
        }),
    };
    Desired {
        group_bindings,
        trigger_service_account,
        trigger_role,
        trigger_binding,
        limit_range,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::project::model::ProjectSettingsViewSpec;

    fn ps() -> ProjectSettingsView {
        ProjectSettingsView {
            metadata: ObjectMeta {
                name: Some("projectsettings".into()),
                namespace: Some("team-a".into()),
                uid: Some("uid-1".into()),
                ..ObjectMeta::default()
            },
            spec: ProjectSettingsViewSpec::default(),
            status: None,
        }
    }

    #[test]
    fn names_follow_upstream_and_stay_valid() {
        assert_eq!(group_binding_name("devs", GroupRole::Edit), "devs-edit");
        assert_eq!(
            group_binding_name("system:authenticated", GroupRole::View),
            "system:authenticated-view"
        );
        let slashed = group_binding_name("org/team", GroupRole::Admin);
        assert!(slashed.starts_with("org-team-admin-"), "{slashed}");
        assert_ne!(slashed, group_binding_name("org-team", GroupRole::Admin));
        let long = group_binding_name(&"g".repeat(400), GroupRole::View);
        assert!(long.len() <= 253, "{}", long.len());
        assert_ne!(long, group_binding_name(&"g".repeat(401), GroupRole::View));
    }

    #[test]
    fn owned_objects_carry_owner_labels_and_upstream_contents() {
        let ps = ps();
        let owner = owner_reference(&ps).unwrap();
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.kind, "ProjectSettings");
        assert_eq!(owner.api_version, "vteam.ambient-code/v1alpha1");
        let grants = vec![
            Grant {
                group: "devs".into(),
                role: GroupRole::Edit,
            },
            Grant {
                group: "ops".into(),
                role: GroupRole::Admin,
            },
        ];
        let d = desired(&ps, &grants, &owner);
        let names: Vec<_> = d
            .group_bindings
            .iter()
            .map(|b| b.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, vec!["devs-edit", "ops-admin"]);
        let rb = &d.group_bindings[1];
        assert_eq!(rb.role_ref.name, "ambient-project-admin");
        assert_eq!(rb.role_ref.kind, "ClusterRole");
        let subject = &rb.subjects.as_ref().unwrap()[0];
        assert_eq!(
            (subject.kind.as_str(), subject.name.as_str()),
            ("Group", "ops")
        );
        let labels = rb.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_MANAGED_NAMESPACE], "true");
        assert_eq!(labels[LABEL_PROJECT_RBAC], RBAC_GROUP);
        assert_eq!(labels[LABEL_COMPONENT], COMPONENT);
        assert_eq!(rb.metadata.owner_references.as_ref().unwrap()[0], owner);

        assert_eq!(
            d.trigger_role.metadata.name.as_deref(),
            Some(SESSION_TRIGGER)
        );
        let rule = &d.trigger_role.rules.as_ref().unwrap()[0];
        assert_eq!(rule.verbs, vec!["create", "get", "list", "update"]);
        assert_eq!(rule.resources.as_ref().unwrap(), &vec!["agenticsessions"]);
        let sa_subject = &d.trigger_binding.subjects.as_ref().unwrap()[0];
        assert_eq!(sa_subject.namespace.as_deref(), Some("team-a"));
        assert_eq!(d.trigger_binding.role_ref.kind, "Role");

        let limits = &d.limit_range.spec.as_ref().unwrap().limits[0];
        assert_eq!(d.limit_range.metadata.name.as_deref(), Some(LIMIT_RANGE));
        assert_eq!(limits.type_, "Container");
        assert_eq!(limits.default.as_ref().unwrap()["memory"].0, "4Gi");
        assert_eq!(limits.default_request.as_ref().unwrap()["cpu"].0, "250m");
    }

    #[test]
    fn no_owner_without_uid() {
        let mut ps = ps();
        ps.metadata.uid = None;
        assert!(owner_reference(&ps).is_none());
    }
}
