//! Wire formats: prost messages for Kafka records (command packs, outcome
//! packs, dead letters) and authenticated peer frames, and the canonical JSON
//! form of outcomes.

pub mod canonical_json;
