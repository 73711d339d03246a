//! seal API types.
