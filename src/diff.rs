//! Typed diff of desired against live state, restricted to owned objects.
