// Package floorbench holds BenchmarkFloor, which measures the whole agent
// against the floor (a minimal MQTT responder that execs /bin/true) in the
// same run, through real Mosquitto brokers. Run it with `make bench-floor`;
// docs/performance.md has the figures.
package floorbench
