"""Listening sockets: found in this process or another tree, inherited from systemd,
kept in its fd store, probed, and waited for."""
