//! agentic-operator library.
