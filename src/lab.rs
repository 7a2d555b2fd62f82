//! The built-in lab: a dual-line gateway in network namespaces (scripts/lab.sh, embedded).
