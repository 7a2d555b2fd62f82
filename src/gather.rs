//! Collect live facts from a host in one round trip and parse them into typed state.
