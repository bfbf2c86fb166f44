//! Warden: idempotency on stream time; a duplicate key within the TTL gets the stored response.
