//! Arbiter: deterministic evaluation of commands against entity state, in causal groups.
