//! The Tribunal node: the instance lifecycle and the wiring of the actors.

pub mod batch;
pub mod lifecycle;
pub mod pipeline;
pub mod cluster;
pub mod node;
pub mod probe;
pub mod store;
pub mod cluster_command;
