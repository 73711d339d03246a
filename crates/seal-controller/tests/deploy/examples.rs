//! The walk-throughs of `examples/`, each run as a user would follow it.
