//! Streaming evaluation of model outputs (filled in below).
