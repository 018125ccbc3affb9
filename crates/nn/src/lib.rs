//! nn glue.
