//! backbone.
