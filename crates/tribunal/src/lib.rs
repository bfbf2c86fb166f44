//! The Tribunal node: the instance lifecycle and the wiring of the actors.

pub mod batch;
pub mod cluster;
pub mod cluster_command;
pub mod lifecycle;
pub mod node;
pub mod pipeline;
pub mod probe;
pub mod store;
