//! Gateway: the HTTP API that submits commands and answers with their
//! agreed outcome (`spec/gateway.allium`).
//!
//! - [`validation`]: pure checks from (content type, body) to a command or
//!   the first problem, in the spec's order;
//! - [`core`]: the deterministic core ([`core::GatewayCore`]): packing per
//!   partition ([`packer`]), the waiting-submission table ([`waiting`]),
//!   observed publications ([`outcomes`]) and the key index ([`key_index`]);
//! - [`http`]: the actix-web application over a [`node::NodeHandle`];
//! - [`metrics`]: a minimal Prometheus registry the node renders;
//! - [`shell`]: the real node handle: the core in an actix actor, packs
//!   produced to Kafka, the outcome topic read on its own thread, the
//!   HTTP server.

pub mod config;
pub mod core;
pub mod error;
pub mod http;
pub mod key_index;
pub mod metrics;
pub mod node;
pub mod outcomes;
pub mod packer;
pub mod shell;
pub mod validation;
pub mod waiting;

#[cfg(test)]
mod test_support;
