// Package webhook turns providers' webhooks into CloudEvents at POST /webhooks/{namespace}/{name}:
// it verifies each request exactly as its provider specifies (GitHub, GitLab, Stripe, Slack,
// Standard Webhooks, or a configurable generic scheme), answers the providers' handshakes,
// drops redeliveries within a window, maps the payload to a CloudEvent and hands it to a broker
// (through router.Publisher) or a URI. docs/webhooks.md documents every mapping.
package webhook
