//! Registrar: bounded entity cache, pre-warming and the persistence watermark.
