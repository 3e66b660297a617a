// Package config reads Switchyard's configuration: a stream of Kubernetes-style YAML documents in a
// file or a directory. Knative's eventing.knative.dev/v1 Broker and Trigger manifests are read as
// users already have them; switchyard.dev/v1alpha1 SwitchyardConfig carries our own settings.
//
// The YAML types (manifest.go) are kept apart from what they compile into (Config, model.go).
// Decoding is strict and validation walks everything once, reporting every problem as
// "file:line: field.path: message". Load is the single entry point, used by `serve`, `validate` and
// the reload watcher alike.
package config
