//! The `agentic-operator` binary.

fn main() {}
