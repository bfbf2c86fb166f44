//! Clerk: authenticated agreement between instances; publishes only on required_copies matching copies.
