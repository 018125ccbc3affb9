//! PR plots.
