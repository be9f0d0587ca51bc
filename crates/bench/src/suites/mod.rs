//! One module per `bench` subcommand.

pub mod devcluster;
pub mod operator;
