//! Usher: consumes the input partitions in order, hands each command on, tracks consumed offsets.
