package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/sources/kubernetes"
)

// kubeFlags are serve's flags of controller mode.
type kubeFlags struct {
	enabled                                  bool
	kubeconfig, class, ingressURL            string
	leaseNamespace, leaseName, leaseIdentity string
	leaseDuration, crdRecheck                time.Duration
	pingSources, flows, kafkaClasses         bool
}

func (k *kubeFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&k.enabled, "kubernetes", false, "also take Brokers of our class, their Triggers and KafkaSources (PingSources with --run-ping-sources) from the cluster, and write their status (env SWITCHYARD_KUBERNETES)")
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file for --kubernetes; default: $KUBECONFIG, else the pod's service account (env SWITCHYARD_KUBECONFIG)")
	fs.StringVar(&k.class, "broker-class", kubernetes.DefaultClass, "the eventing.knative.dev/broker.class value this router serves (env SWITCHYARD_BROKER_CLASS)")
	fs.StringVar(&k.ingressURL, "ingress-url", "", "base URL of the ingress Service, written to Broker status.address.url as {url}/{ns}/{name}; default: the listen address (env SWITCHYARD_INGRESS_URL)")
	fs.StringVar(&k.leaseNamespace, "lease-namespace", "", "namespace of the status writer's Lease; default: $POD_NAMESPACE, else the service account's (env SWITCHYARD_LEASE_NAMESPACE)")
	fs.StringVar(&k.leaseName, "lease-name", "switchyard-status-writer", "name of the Lease replicas elect the status writer with (env SWITCHYARD_LEASE_NAME)")
	fs.StringVar(&k.leaseIdentity, "lease-identity", "", "this replica's name in the Lease; default: the host name and a random suffix (env SWITCHYARD_LEASE_IDENTITY)")
	fs.DurationVar(&k.leaseDuration, "lease-duration", 15*time.Second, "how long a silent status writer keeps the Lease (env SWITCHYARD_LEASE_DURATION)")
	fs.DurationVar(&k.crdRecheck, "crd-recheck-interval", 30*time.Second, "how often to look again for a source's CRD (KafkaSource, PingSource) when the cluster did not serve it at start (env SWITCHYARD_CRD_RECHECK_INTERVAL)")
	fs.BoolVar(&k.flows, "run-flows", false, "with --kubernetes, run the cluster's Sequences and Parallels and write their status; leave off where Knative Eventing runs them (docs/flows.md) (env SWITCHYARD_RUN_FLOWS)")
	fs.BoolVar(&k.kafkaClasses, "serve-kafka-classes", false, "with --kubernetes, also serve Brokers of Knative's Kafka and KafkaNamespaced classes, with the bootstrap.servers and topic settings of the ConfigMap each one's spec.config names; leave off where Knative's Kafka broker runs (docs/kubernetes.md) (env SWITCHYARD_SERVE_KAFKA_CLASSES)")
	fs.BoolVar(&k.pingSources, "run-ping-sources", false, "with --kubernetes, run the PingSources that sink into our Brokers; leave off where Knative Eventing runs them (docs/pingsource.md) (env SWITCHYARD_RUN_PING_SOURCES)")
}

func (k *kubeFlags) restConfig() (*rest.Config, error) {
	path := k.kubeconfig
	if path == "" {
		path = os.Getenv("KUBECONFIG")
	}
	if path == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", path)
}

func (k *kubeFlags) lease() kubernetes.LeaseOptions {
	ns := k.leaseNamespace
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			ns = strings.TrimSpace(string(b))
		}
	}
	if ns == "" {
		ns = "default"
	}
	id := k.leaseIdentity
	if id == "" {
		host, _ := os.Hostname()
		suffix := make([]byte, 4)
		_, _ = rand.Read(suffix)
		id = host + "_" + hex.EncodeToString(suffix) // a restarted pod is a new candidate
	}
	return kubernetes.LeaseOptions{Namespace: ns, Name: k.leaseName, Identity: id, Duration: k.leaseDuration}
}

// runServeKubernetes is serve in controller mode: the first configuration comes from the cluster
// (and --config's files, if given), so logging is set up from the flags alone.
func runServeKubernetes(f *serveFlags, stderr io.Writer) int {
	logger, err := newLogger(f.logFormat, f.logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return 2
	}
	defer func() { _ = logger.Sync() }()
	tuneGC(logger, nil)
	rc, err := f.kube.restConfig()
	if err != nil {
		fmt.Fprintln(stderr, "serve: --kubernetes:", err)
		return 2
	}
	ctl, err := kubernetes.New(kubernetes.Options{
		Config:       rc,
		Class:        f.kube.class,
		Build:        f.load,
		Lease:        f.kube.lease(),
		CRDRecheck:   f.kube.crdRecheck,
		PingSources:  f.kube.pingSources,
		Flows:        f.kube.flows,
		KafkaClasses: f.kube.kafkaClasses,
		Logger:       logger,
	})
	if err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return 1
	}
	fingerprint := ""
	if f.config != "" {
		fingerprint, _ = config.Fingerprint(f.config)
	}
	// The controller's watches live as long as the process; serve handles the signals that end it.
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	startCtx, cancelStart := context.WithTimeout(ctx, time.Minute)
	defer cancelStart()
	cfg, err := ctl.Start(ctx, startCtx)
	if err != nil {
		printConfigError(stderr, fmt.Errorf("--kubernetes: %w", err))
		return 1
	}
	if err := serve(f, cfg, fingerprint, ctl, logger); err != nil {
		logger.Error("serve failed", zap.Error(err))
		return 1
	}
	return 0
}
