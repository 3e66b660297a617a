// Package delivery sends events to subscribers over HTTP with Knative's delivery semantics: binary or
// structured mode, Prefer: reply, retries with linear or exponential backoff, per-attempt timeouts,
// Retry-After, and the dead-letter sink with the knativeerror* extensions. It decides what each
// response means (Result) but not what happens next: the broker publishes replies and records
// outcomes.
package delivery
