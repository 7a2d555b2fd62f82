//! Intent → tera templates → text → the same parsers as live state.
