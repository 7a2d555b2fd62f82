//! Turn a diff into remote commands (ip -batch, iptables-restore --noflush, files) and run them.
