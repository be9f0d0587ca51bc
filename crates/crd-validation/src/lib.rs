//! Validation, defaulting, pruning and CEL evaluation of custom objects against the
//! `openAPIV3Schema` of a `CustomResourceDefinition` version, with the field paths and
//! messages a real Kubernetes API server uses.
