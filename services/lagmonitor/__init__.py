"""Consumer-group lag monitor: offset lag, time lag and Burrow-style status for
every consumer group of the system, served as Prometheus metrics, JSON, a live
web page and a CLI table (DESIGN.md section 5)."""
