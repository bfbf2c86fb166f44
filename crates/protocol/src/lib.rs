//! Wire formats: prost messages for Kafka records (command packs, outcome packs, dead letters) and authenticated peer frames.
