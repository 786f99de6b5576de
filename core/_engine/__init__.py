"""The readiness engine: one service's phase and everything that follows from it
(the wait, the watchdog, the drain, the shutdown delay, the endpoints' answers)."""
