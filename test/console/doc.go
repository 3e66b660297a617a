// Package console tests Switchyard's web console in a real headless Chromium (Debian's package,
// driven with chromedp) against the built binary: SWITCHYARD_BIN, as `make test` sets it. It is a
// module of its own so that chromedp stays out of the router's dependencies.
package console
