//! Gateway: the HTTP API that submits commands and answers with their agreed outcome.
