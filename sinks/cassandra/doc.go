// Package cassandra is a router.ResultStore in Apache Cassandra: every delivery outcome, queryable
// by event and by trigger, failed events kept for redrive, old rows expired by TTL. Writes leave
// the delivery path at once through a bounded buffer; when Cassandra cannot take them they wait in
// a local journal and are written, in order, once it answers again. docs/cassandra.md has the
// schema and the reasoning.
package cassandra
