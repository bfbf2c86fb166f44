//! The shared vocabulary of `spec/core.allium` and the wire formats.
//!
//! - [`position`]: where a command sits in the input log, and stream time;
//! - [`envelope`]: the canonical outcome bytes every instance compares, and
//!   the digest over one record's outputs;
//! - [`records`]: the prost messages carried by Kafka records (command
//!   packs on the input topic, publications on the outcome topic, dead
//!   letters);
//! - [`canonical_json`]: the JSON writer behind the envelope and domain bodies.

pub mod canonical_json;
pub mod envelope;
pub mod peer;
pub mod position;
pub mod records;
