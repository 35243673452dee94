"""The WCS protocol, sans I/O: message types, codec and the per-session state machine."""
