//! The pluggable domain trait and the inventory domain (Receive, Ship, Transfer).
