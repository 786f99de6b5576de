"""The sd_notify protocol: the wire format, the socket to the manager, the sender."""
