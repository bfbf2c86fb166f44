//! The Tribunal node: the instance lifecycle and the wiring of the actors.

pub mod lifecycle;
pub mod pipeline;
