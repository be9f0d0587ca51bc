//! Component resolution: a `ComponentRef` (`app`, `workflow` or `config` plus `params`) names a
//! cluster-scoped `Component`; its declared `parameters` are checked and defaulted, and its
//! sources become Argo CD Application sources, with the reference's `namespace` and
//! `targetRevision` overrides applied. Nothing is guessed: a missing Component, a bad parameter
//! or a bad override is an error naming it.

use std::collections::BTreeMap;

use agentic_api::labs::{Component, ComponentRef, ComponentSource, ParameterType};
use serde::Serialize;

/// Why a component reference cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComponentError {
    /// Neither `app`, `workflow` nor `config` is set.
    #[error("{field}: set exactly one of app, workflow or config")]
    NoName {
        /// Path of the reference.
        field: String,
    },
    /// More than one of `app`, `workflow`, `config` is set.
    #[error("{field}: set exactly one of app, workflow or config, not {given}")]
    Ambiguous {
        /// Path of the reference.
        field: String,
        /// The keys that were set.
        given: String,
    },
    /// No `Component` of that name exists.
    #[error(
        "{field}: Component {name:?} not found; create it (kubectl get components lists the catalogue)"
    )]
    NotFound {
        /// Path of the reference.
        field: String,
        /// The component name.
        name: String,
    },
    /// The Component exists but does not read as one (stored under a looser schema).
    #[error(
        "{field}: Component {name:?} does not match the expected schema ({problem}); fix or recreate it"
    )]
    Unreadable {
        /// Path of the reference.
        field: String,
        /// The component name.
        name: String,
        /// Why, naming the Component's field.
        problem: String,
    },
    /// A required parameter has no value and no default.
    #[error("{field}.params: Component {component:?} requires parameter {parameter:?}")]
    MissingParameter {
        /// Path of the reference.
        field: String,
        /// The component.
        component: String,
        /// The parameter.
        parameter: String,
    },
    /// A `namespace` override (on the reference or on a Component source) is not a namespace
    /// name.
    #[error(
        "{field}: {value:?} is not a namespace name; allowed: a lowercase DNS label (a-z, 0-9, '-'; at most 63 characters)"
    )]
    BadNamespace {
        /// Path of the field, naming the Component for a source's field.
        field: String,
        /// The value.
        value: String,
        /// Whether the field is the Component's (not the reference's).
        in_component: bool,
    },
    /// The reference's `targetRevision` override is empty.
    #[error(
        "{field}.targetRevision: must not be empty; allowed: a Git branch, tag or commit, or leave the field out"
    )]
    EmptyRevision {
        /// Path of the reference.
        field: String,
    },
    /// A parameter value does not match its declared type.
    #[error(
        "{field}.params.{parameter}: {value:?} is not a valid {type_} for Component {component:?}; allowed: {}",
        allowed_values(type_)
    )]
    BadParameter {
        /// Path of the reference.
        field: String,
        /// The component.
        component: String,
        /// The parameter.
        parameter: String,
        /// The value.
        value: String,
        /// The declared type.
        type_: &'static str,
    },
}

/// What a parameter of declared type `type_` may be, for the message of a bad value.
fn allowed_values(type_: &str) -> &'static str {
    match type_ {
        "int" => "a whole number, e.g. 3",
        "bool" => "true or false",
        _ => "any text",
    }
}

impl ComponentError {
    /// Condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoName { .. }
            | Self::Ambiguous { .. }
            | Self::EmptyRevision { .. }
            | Self::BadNamespace {
                in_component: false,
                ..
            } => "InvalidComponentRef",
            Self::NotFound { .. } => "ComponentNotFound",
            Self::Unreadable { .. }
            | Self::BadNamespace {
                in_component: true, ..
            } => "InvalidComponent",
            Self::MissingParameter { .. } | Self::BadParameter { .. } => "InvalidParameter",
        }
    }
}

/// A Helm parameter of an Application source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppHelmParameter {
    /// Parameter path.
    pub name: String,
    /// Value.
    pub value: String,
    /// Pass the value as a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_string: Option<bool>,
}

/// Helm block of an Application source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppHelm {
    /// Release name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// Values files (Argo CD spells it `valueFiles`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub value_files: Vec<String>,
    /// Parameters, sorted by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<AppHelmParameter>,
    /// Namespace the chart is templated into (`.Release.Namespace`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Kustomize block of an Application source: only the namespace Kustomize sets on every
/// resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppKustomize {
    /// Namespace set on every resource of the kustomization.
    pub namespace: String,
}

/// One Argo CD Application source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSource {
    /// Repository.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Revision.
    pub target_revision: String,
    /// Chart name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// Path in a Git repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `values` when this source only provides `$values` files to a sibling.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub ref_: Option<String>,
    /// Helm settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helm: Option<AppHelm>,
    /// Kustomize settings (a namespace override of a path source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<AppKustomize>,
}

/// The referenced name, or why the reference is malformed.
pub fn ref_name<'a>(r: &'a ComponentRef, field: &str) -> Result<&'a str, ComponentError> {
    let given: Vec<(&str, &str)> = [
        ("app", r.app.as_deref()),
        ("workflow", r.workflow.as_deref()),
        ("config", r.config.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k, v)))
    .collect();
    match given.as_slice() {
        [] => Err(ComponentError::NoName {
            field: field.to_owned(),
        }),
        [(_, name)] => Ok(name),
        more => Err(ComponentError::Ambiguous {
            field: field.to_owned(),
            given: more
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(" and "),
        }),
    }
}

/// The effective parameters of `r` against the declared `parameters` of `component`:
/// user values checked against their type, defaults filled in, required ones enforced.
/// Undeclared parameters pass through unchanged (they are plain Helm paths).
pub fn effective_params(
    r: &ComponentRef,
    component: &Component,
    field: &str,
) -> Result<BTreeMap<String, String>, ComponentError> {
    let name = component.metadata.name.clone().unwrap_or_default();
    let mut out = r.params.clone().unwrap_or_default();
    for p in component.spec.parameters.as_deref().unwrap_or_default() {
        match out.get(&p.name) {
            Some(value) => {
                let type_ = p.type_.unwrap_or_default();
                let ok = match type_ {
                    ParameterType::String => true,
                    ParameterType::Int => value.trim().parse::<i64>().is_ok(),
                    ParameterType::Bool => matches!(value.as_str(), "true" | "false"),
                };
                if !ok {
                    return Err(ComponentError::BadParameter {
                        field: field.to_owned(),
                        component: name,
                        parameter: p.name.clone(),
                        value: value.clone(),
                        type_: type_.as_str(),
                    });
                }
            }
            None => match &p.default {
                Some(d) => {
                    out.insert(p.name.clone(), d.clone());
                }
                None if p.required == Some(true) => {
                    return Err(ComponentError::MissingParameter {
                        field: field.to_owned(),
                        component: name,
                        parameter: p.name.clone(),
                    });
                }
                None => {}
            },
        }
    }
    Ok(out)
}

/// What a `ComponentRef` overrides in every source of its Component.
struct Overrides<'a> {
    /// Effective Helm parameters.
    params: &'a BTreeMap<String, String>,
    /// Namespace replacing each source's own.
    namespace: Option<&'a str>,
    /// Revision of the Git (non-chart) sources.
    target_revision: Option<&'a str>,
}

fn convert_source(
    source: &ComponentSource,
    overrides: &Overrides<'_>,
    values_ref: bool,
) -> AppSource {
    let params = overrides.params;
    let target_revision = match (overrides.target_revision, &source.chart) {
        (Some(revision), None) => revision.to_owned(),
        _ => source
            .target_revision
            .clone()
            .unwrap_or_else(|| "HEAD".to_owned()),
    };
    let mut helm = source.helm.as_ref().map(|h| {
        let mut merged: BTreeMap<String, AppHelmParameter> = h
            .parameters
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    AppHelmParameter {
                        name: p.name.clone(),
                        value: p.value.clone(),
                        force_string: p.force_string,
                    },
                )
            })
            .collect();
        for (k, v) in params {
            merged
                .entry(k.clone())
                .and_modify(|p| p.value.clone_from(v))
                .or_insert_with(|| AppHelmParameter {
                    name: k.clone(),
                    value: v.clone(),
                    force_string: None,
                });
        }
        AppHelm {
            release_name: h.release_name.clone(),
            value_files: h.values_files.clone().unwrap_or_default(),
            parameters: merged.into_values().collect(),
            namespace: None,
        }
    });
    let (chart, path, ref_) = if source.chart.is_some() {
        (source.chart.clone(), None, None)
    } else if values_ref && helm.is_none() {
        (None, None, Some("values".to_owned()))
    } else {
        (None, source.path.clone(), None)
    };
    let mut kustomize = None;
    // A values-only source deploys nothing, so it has no namespace to set.
    if let Some(namespace) = overrides.namespace.or(source.namespace.as_deref())
        && ref_.is_none()
    {
        if helm.is_some() || chart.is_some() {
            helm.get_or_insert_with(|| AppHelm {
                release_name: None,
                value_files: Vec::new(),
                parameters: Vec::new(),
                namespace: None,
            })
            .namespace = Some(namespace.to_owned());
        } else {
            kustomize = Some(AppKustomize {
                namespace: namespace.to_owned(),
            });
        }
    }
    AppSource {
        repo_url: source.repo_url.clone(),
        target_revision,
        chart,
        path,
        ref_,
        helm,
        kustomize,
    }
}

/// Checks the `namespace` and `targetRevision` overrides of `r` (at spec path `field`) and
/// the `namespace` of each source of `component`: an object stored before the schema checked
/// them still gets a message naming the field.
fn check_overrides(
    r: &ComponentRef,
    component: &Component,
    field: &str,
) -> Result<(), ComponentError> {
    use crate::runtime::names::is_dns_label;
    if let Some(ns) = r.namespace.as_deref().filter(|ns| !is_dns_label(ns)) {
        return Err(ComponentError::BadNamespace {
            field: format!("{field}.namespace"),
            value: ns.to_owned(),
            in_component: false,
        });
    }
    if r.target_revision
        .as_deref()
        .is_some_and(|v| v.trim().is_empty())
    {
        return Err(ComponentError::EmptyRevision {
            field: field.to_owned(),
        });
    }
    let name = component.metadata.name.as_deref().unwrap_or_default();
    for (index, source) in component
        .spec
        .sources
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if let Some(ns) = source.namespace.as_deref().filter(|ns| !is_dns_label(ns)) {
            return Err(ComponentError::BadNamespace {
                field: format!("{field}: Component {name:?} spec.sources[{index}].namespace"),
                value: ns.to_owned(),
                in_component: true,
            });
        }
    }
    Ok(())
}

/// What a Component lookup by name finds: nothing, the Component, or why the stored one does
/// not read.
pub type Found = Option<Result<std::sync::Arc<Component>, String>>;

/// Resolves `r` (at spec path `field`) through `lookup` into Application sources.
pub fn resolve(
    r: &ComponentRef,
    field: &str,
    lookup: &dyn Fn(&str) -> Found,
) -> Result<Vec<AppSource>, ComponentError> {
    let name = ref_name(r, field)?;
    let component = lookup(name)
        .ok_or_else(|| ComponentError::NotFound {
            field: field.to_owned(),
            name: name.to_owned(),
        })?
        .map_err(|problem| ComponentError::Unreadable {
            field: field.to_owned(),
            name: name.to_owned(),
            problem,
        })?;
    let params = effective_params(r, &component, field)?;
    check_overrides(r, &component, field)?;
    let overrides = Overrides {
        params: &params,
        namespace: r.namespace.as_deref(),
        target_revision: r.target_revision.as_deref(),
    };
    let sources = component.spec.sources.as_deref().unwrap_or_default();
    let values_ref = sources.iter().any(|s| {
        s.helm.as_ref().is_some_and(|h| {
            h.values_files
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|f| f.starts_with("$values"))
        })
    });
    Ok(sources
        .iter()
        .map(|s| convert_source(s, &overrides, values_ref))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use agentic_api::labs::{ComponentParameter, ComponentSpec};

    use super::*;

    fn component(yaml: &str) -> Arc<Component> {
        Arc::new(serde_yaml::from_str(yaml).unwrap())
    }

    fn catalogue() -> impl Fn(&str) -> Found {
        let web = component(
            r"
apiVersion: experiments.illm.io/v1alpha1
kind: Component
metadata: {name: web}
spec:
  type: app
  sources:
  - repoURL: https://charts.example
    chart: web
    targetRevision: 1.2.3
    helm:
      releaseName: web
      valuesFiles: [$values/components/web/values.yaml]
      parameters:
      - {name: zeta, value: '1', forceString: true}
      - {name: alpha, value: a}
  - repoURL: https://git.example/lab.git
  parameters:
  - {name: replicas, type: int, default: '2'}
  - {name: debug, type: bool}
  - {name: zone, required: true}
",
        );
        move |n: &str| match n {
            "web" => Some(Ok(web.clone())),
            "odd" => Some(Err("spec.sources: invalid type: integer `3`".to_owned())),
            _ => None,
        }
    }

    fn web_ref(params: &[(&str, &str)]) -> ComponentRef {
        ComponentRef {
            app: Some("web".into()),
            params: Some(
                params
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ComponentRef::default()
        }
    }

    #[test]
    fn resolves_sources_with_sorted_parameters_and_values_ref() {
        let lookup = catalogue();
        let sources = resolve(&web_ref(&[("zone", "eu"), ("zeta", "9")]), "f", &lookup).unwrap();
        let yaml = serde_yaml::to_string(&sources).unwrap();
        assert_eq!(
            yaml,
            r"- repoURL: https://charts.example
  targetRevision: 1.2.3
  chart: web
  helm:
    releaseName: web
    valueFiles:
    - $values/components/web/values.yaml
    parameters:
    - name: alpha
      value: a
    - name: replicas
      value: '2'
    - name: zeta
      value: '9'
      forceString: true
    - name: zone
      value: eu
- repoURL: https://git.example/lab.git
  targetRevision: HEAD
  ref: values
"
        );
    }

    #[test]
    fn namespace_and_revision_overrides_reach_the_sources_they_apply_to() {
        let lookup = catalogue();
        let mut r = web_ref(&[("zone", "eu")]);
        r.namespace = Some("shop".into());
        r.target_revision = Some("feature/x".into());
        let sources = resolve(&r, "f", &lookup).unwrap();
        // The chart keeps its chart version and is templated into the namespace; the Git
        // values source follows the branch and, deploying nothing, gets no namespace.
        assert_eq!(sources[0].target_revision, "1.2.3");
        assert_eq!(
            sources[0].helm.as_ref().unwrap().namespace.as_deref(),
            Some("shop")
        );
        assert_eq!(sources[1].target_revision, "feature/x");
        assert_eq!(sources[1].ref_.as_deref(), Some("values"));
        assert!(sources[1].helm.is_none() && sources[1].kustomize.is_none());

        // A path source gets Kustomize's namespace; a chart without a helm block gets one
        // holding only the namespace; the reference's namespace wins over the source's.
        let c = component(
            r"
apiVersion: experiments.illm.io/v1alpha1
kind: Component
metadata: {name: mixed}
spec:
  type: app
  sources:
  - {repoURL: https://git.example/lab.git, path: k8s/db, namespace: db}
  - {repoURL: https://charts.example, chart: cache, targetRevision: 0.4.0}
",
        );
        let lookup = move |_: &str| Some(Ok(c.clone()));
        let mut r = ComponentRef {
            app: Some("mixed".into()),
            ..ComponentRef::default()
        };
        let yaml = serde_yaml::to_string(&resolve(&r, "f", &lookup).unwrap()).unwrap();
        assert_eq!(
            yaml,
            r"- repoURL: https://git.example/lab.git
  targetRevision: HEAD
  path: k8s/db
  kustomize:
    namespace: db
- repoURL: https://charts.example
  targetRevision: 0.4.0
  chart: cache
"
        );
        r.namespace = Some("lab-1".into());
        let sources = resolve(&r, "f", &lookup).unwrap();
        assert_eq!(sources[0].kustomize.as_ref().unwrap().namespace, "lab-1");
        let helm = sources[1].helm.as_ref().unwrap();
        assert_eq!(helm.namespace.as_deref(), Some("lab-1"));
        assert_eq!(
            serde_yaml::to_string(helm).unwrap(),
            "namespace: lab-1\n",
            "a helm block made for the namespace carries nothing else"
        );
    }

    #[test]
    fn bad_overrides_name_their_field() {
        let lookup = catalogue();
        let mut r = web_ref(&[("zone", "eu")]);
        r.namespace = Some("Shop_1".into());
        let err = resolve(&r, "spec.targets[0].components[2]", &lookup).unwrap_err();
        assert_eq!(err.reason(), "InvalidComponentRef");
        assert_eq!(
            err.to_string(),
            "spec.targets[0].components[2].namespace: \"Shop_1\" is not a namespace name; allowed: a lowercase DNS label (a-z, 0-9, '-'; at most 63 characters)"
        );
        r.namespace = Some("a".repeat(64));
        assert!(matches!(
            resolve(&r, "f", &lookup),
            Err(ComponentError::BadNamespace { .. })
        ));
        r.namespace = None;
        r.target_revision = Some(" ".into());
        let err = resolve(&r, "spec.targets[0].components[2]", &lookup).unwrap_err();
        assert_eq!(err.reason(), "InvalidComponentRef");
        assert_eq!(
            err.to_string(),
            "spec.targets[0].components[2].targetRevision: must not be empty; allowed: a Git branch, tag or commit, or leave the field out"
        );

        let c = component(
            r"
apiVersion: experiments.illm.io/v1alpha1
kind: Component
metadata: {name: odd-ns}
spec:
  type: app
  sources:
  - {repoURL: https://git.example/lab.git, path: ok}
  - {repoURL: https://git.example/lab.git, path: bad, namespace: -x}
",
        );
        let r = ComponentRef {
            app: Some("odd-ns".into()),
            ..ComponentRef::default()
        };
        let err = resolve(&r, "spec.targets[1].components[0]", &move |_: &str| {
            Some(Ok(c.clone()))
        })
        .unwrap_err();
        assert_eq!(err.reason(), "InvalidComponent");
        assert_eq!(
            err.to_string(),
            "spec.targets[1].components[0]: Component \"odd-ns\" spec.sources[1].namespace: \"-x\" is not a namespace name; allowed: a lowercase DNS label (a-z, 0-9, '-'; at most 63 characters)"
        );
    }

    #[test]
    fn parameter_checks_name_the_component_and_parameter() {
        let lookup = catalogue();
        let err = resolve(&web_ref(&[]), "spec.targets[0].components[0]", &lookup).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.targets[0].components[0].params: Component \"web\" requires parameter \"zone\""
        );
        assert_eq!(err.reason(), "InvalidParameter");
        let err = resolve(
            &web_ref(&[("zone", "x"), ("replicas", "many")]),
            "f",
            &lookup,
        )
        .unwrap_err();
        assert!(
            matches!(err, ComponentError::BadParameter { ref parameter, type_: "int", .. } if parameter == "replicas")
        );
        assert!(
            err.to_string()
                .ends_with("; allowed: a whole number, e.g. 3"),
            "{err}"
        );
        let err = resolve(&web_ref(&[("zone", "x"), ("debug", "yes")]), "f", &lookup).unwrap_err();
        assert!(matches!(
            err,
            ComponentError::BadParameter { type_: "bool", .. }
        ));
        assert!(
            err.to_string().ends_with("; allowed: true or false"),
            "{err}"
        );
        assert!(resolve(&web_ref(&[("zone", "x"), ("debug", "true")]), "f", &lookup).is_ok());
    }

    #[test]
    fn an_unreadable_component_is_named_with_its_problem() {
        let lookup = catalogue();
        let r = ComponentRef {
            app: Some("odd".into()),
            ..ComponentRef::default()
        };
        let err = resolve(&r, "spec.targets[0].components[0]", &lookup).unwrap_err();
        assert_eq!(err.reason(), "InvalidComponent");
        assert_eq!(
            err.to_string(),
            "spec.targets[0].components[0]: Component \"odd\" does not match the expected schema (spec.sources: invalid type: integer `3`); fix or recreate it"
        );
    }

    #[test]
    fn unknown_component_is_never_guessed() {
        let lookup = catalogue();
        let r = ComponentRef {
            workflow: Some("k6-http-loadgen".into()),
            ..ComponentRef::default()
        };
        let err = resolve(&r, "spec.targets[1].components[0]", &lookup).unwrap_err();
        assert_eq!(err.reason(), "ComponentNotFound");
        assert!(err.to_string().contains("\"k6-http-loadgen\" not found"));
        let err = resolve(&ComponentRef::default(), "x", &lookup).unwrap_err();
        assert!(matches!(err, ComponentError::NoName { .. }));
        let both = ComponentRef {
            app: Some("a".into()),
            config: Some("b".into()),
            ..ComponentRef::default()
        };
        assert_eq!(
            resolve(&both, "x", &lookup).unwrap_err().to_string(),
            "x: set exactly one of app, workflow or config, not app and config"
        );
    }

    #[test]
    fn declared_parameters_without_helm_source_still_validate() {
        let c = Component::new(
            "cfg",
            ComponentSpec {
                description: None,
                type_: agentic_api::labs::ComponentType::Config,
                sources: Some(vec![ComponentSource {
                    repo_url: "https://git.example/x.git".into(),
                    path: Some("cfg".into()),
                    ..ComponentSource::default()
                }]),
                parameters: Some(vec![ComponentParameter {
                    name: "n".into(),
                    type_: Some(ParameterType::Int),
                    ..ComponentParameter::default()
                }]),
                observability: None,
            },
        );
        let r = ComponentRef {
            config: Some("cfg".into()),
            params: Some(BTreeMap::from([("n".to_owned(), "x".to_owned())])),
            ..ComponentRef::default()
        };
        assert!(effective_params(&r, &c, "f").is_err());
        let c = Arc::new(c);
        let ok = ComponentRef {
            config: Some("cfg".into()),
            ..ComponentRef::default()
        };
        let sources = resolve(&ok, "f", &|_| Some(Ok(c.clone()))).unwrap();
        assert_eq!(sources[0].path.as_deref(), Some("cfg"));
        assert_eq!(sources[0].target_revision, "HEAD");
    }
}
