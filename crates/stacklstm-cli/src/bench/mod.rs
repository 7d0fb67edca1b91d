//! Support for `stacklstm bench`: the shared workload table and the measuring harness.

pub mod probe;
pub mod workload;
