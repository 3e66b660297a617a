// Package cehttp is the CloudEvents HTTP binding as Switchyard speaks it: decoding binary, structured
// and batched messages (requests from producers, replies from subscribers) and encoding binary and
// structured ones (deliveries to subscribers and dead-letter sinks). It builds on sdk-go's
// message-level API and adds what sdk-go v2.16.2 leaves out: percent-decoding and -encoding of ce-
// header values, validation, and error messages that name the bad attribute.
package cehttp
