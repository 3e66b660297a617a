package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/admin"
	"github.com/switchyard-events/switchyard/router/broker"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/filter"
	"github.com/switchyard-events/switchyard/router/ingress"
	"github.com/switchyard-events/switchyard/router/metrics"
	"github.com/switchyard-events/switchyard/router/replay"
	"github.com/switchyard-events/switchyard/router/senderauth"
	"github.com/switchyard-events/switchyard/router/tlsfiles"
	"github.com/switchyard-events/switchyard/sinks/cassandra"
	"github.com/switchyard-events/switchyard/sinks/kafka"
	kafkasource "github.com/switchyard-events/switchyard/sources/kafka"
	"github.com/switchyard-events/switchyard/sources/kubernetes"
	"github.com/switchyard-events/switchyard/sources/ping"
	"github.com/switchyard-events/switchyard/sources/webhook"
)

// serveFlags are the flags of serve: the settings overrides it shares with validate and migrate,
// and its own.
type serveFlags struct {
	settingsFlags
	secretsDir string
	profiling  bool
	kube       kubeFlags
}

func runServe(args []string, stdout, stderr io.Writer) int {
	f, code := parseServeFlags(args, stdout, stderr)
	if f == nil {
		return code
	}
	if f.kube.enabled {
		return runServeKubernetes(f, stderr)
	}
	if f.config == "" {
		fmt.Fprintln(stderr, "serve: --config is required (try --config examples/demo.yaml), or --kubernetes")
		return 2
	}
	fingerprint, _ := config.Fingerprint(f.config)
	cfg, err := f.load(config.Sources{})
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	logger, err := newLogger(cfg.Settings.LogFormat, cfg.Settings.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return 2
	}
	defer func() { _ = logger.Sync() }()
	tuneGC(logger, &cfg.Settings)
	if err := serve(f, cfg, fingerprint, nil, logger); err != nil {
		logger.Error("serve failed", zap.Error(err))
		return 1
	}
	return 0
}

// parseServeFlags reads serve's flags and variables; nil and an exit code when they are wrong.
func parseServeFlags(args []string, stdout, stderr io.Writer) (*serveFlags, int) {
	var f serveFlags
	fs := newFlagSet("serve", stdout, stderr)
	f.settingsFlags.register(fs.FlagSet)
	fs.StringVar(&f.secretsDir, "secrets-dir", "/var/run/secrets/switchyard", "where Kubernetes Secrets are mounted: secretKeyRef {name, key} reads {dir}/{name}/{key} (env SWITCHYARD_SECRETS_DIR)")
	fs.BoolVar(&f.profiling, "profiling", false, "serve Go's profiles and execution traces under /debug/pprof/ on the admin address (env SWITCHYARD_PROFILING)")
	f.kube.register(fs.FlagSet)
	set, err := parseWithEnv(fs, args)
	if err != nil {
		if code := exitCode(err); code == 0 {
			return nil, code
		}
		fmt.Fprintln(stderr, "serve:", err)
		return nil, 2
	}
	f.set = set
	return &f, 0
}

func newLogger(format, level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	var zc zap.Config
	switch format {
	case "console":
		zc = zap.NewDevelopmentConfig()
		zc.Development = false
	case "json":
		zc = zap.NewProductionConfig()
	default:
		return nil, fmt.Errorf("unknown log format %q (json or console)", format)
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	// Per-event lines (accepted, routed, each attempt, dead-lettered, not delivered) can come by
	// the thousand a second: each message logs its first 100 a second, then one in 100. What
	// happened to every event stays in the result store and the metrics.
	zc.Sampling = &zap.SamplingConfig{Initial: 100, Thereafter: 100}
	// A log line says what happened and what to do; Go stacks are for bugs, and the few places
	// that log one (a recovered panic) attach it explicitly (zap.Stack).
	zc.DisableStacktrace = true
	zc.EncoderConfig.TimeKey = "ts"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	return zc.Build()
}

// serve wires the components, runs until SIGTERM or SIGINT, and drains.
// ctl, when set, makes the cluster's Knative resources part of the configuration (--kubernetes).
func serve(f *serveFlags, cfg *config.Config, fingerprint string, ctl *kubernetes.Controller, logger *zap.Logger) error {
	// The shutdown watchdog (armed once draining starts) is stopped by the first defer, so that
	// it runs last: the closing steps deferred below (the result store's) are under it too.
	var watchdog *time.Timer
	defer func() {
		if watchdog != nil {
			watchdog.Stop()
		}
	}()
	stopTracing, err := setupTracing(logger)
	if err != nil {
		return err
	}
	defer stopTracing() // after the drain: the last deliveries' spans are exported too
	m := metrics.New()
	m.SetMaxEventTypes(cfg.Settings.MaxEventTypes)
	results, closeResults, err := openResults(cfg, logger, m.Registry)
	if err != nil {
		return err
	}
	defer func() {
		if err := closeResults(); err != nil {
			logger.Error("closing the result store", zap.Error(err))
		}
	}()

	ingressLn, err := net.Listen("tcp", cfg.Settings.Addr)
	if err != nil {
		return fmt.Errorf("listening for ingress: %w", err)
	}
	adminLn, err := net.Listen("tcp", cfg.Settings.AdminAddr)
	if err != nil {
		ingressLn.Close()
		return fmt.Errorf("listening for admin: %w", err)
	}
	scheme := "http"
	if t := cfg.Settings.IngressTLS; t != nil {
		if ingressLn, err = withTLS(ingressLn, t); err != nil {
			adminLn.Close()
			return fmt.Errorf("ingress TLS: %w", err)
		}
		scheme = "https"
	}
	if t := cfg.Settings.AdminTLS; t != nil {
		if adminLn, err = withTLS(adminLn, t); err != nil {
			ingressLn.Close()
			return fmt.Errorf("admin TLS: %w", err)
		}
	}
	brokerBase := scheme + "://" + hostForURL(ingressLn.Addr())

	// The token of this process's deliveries to its own ingress (a trigger's ref to a sink or a
	// broker of the configuration): the event passed sender authentication where it entered, and
	// a token per process never leaves it, so it is good for nothing anywhere else.
	selfToken := make([]byte, 32)
	if _, err := rand.Read(selfToken); err != nil {
		return fmt.Errorf("a token for the router's own deliveries: %w", err)
	}
	internal := base64.RawURLEncoding.EncodeToString(selfToken)
	deliverer := delivery.New(delivery.Options{MaxReplyBytes: cfg.Settings.MaxBodyBytes, MaxResponseHeaderBytes: cfg.Settings.MaxResponseHeaderBytes,
		MaxReplyBytesInFlight: cfg.Settings.MaxReplyBytesInFlight,
		SelfOrigins:           selfOrigins(scheme, cfg.Settings.Addr, ingressLn.Addr()), SelfAuthorization: "Bearer " + internal})
	deliverer.SetDestinationTLS(destinationTLS(cfg.DestinationTLS, f.secretsDir))
	dedup, _ := results.(router.Deduplicator) // the Cassandra store: shared by every replica
	rtr := broker.New(broker.Options{
		Dedup:     dedup,
		Logger:    logger,
		Deliverer: deliverer,
		Results:   results,
		Metrics:   m,
		BrokerURL: func(b router.BrokerRef) string { return brokerBase + "/" + b.Namespace + "/" + b.Name },
		OpenLog:   kafkaLogs(logger, f.secretsDir),
		Archive:   archiver(results),
	})
	rtr.Apply(cfg)
	var served atomic.Pointer[config.Config] // the configuration applied now
	served.Store(cfg)
	m.RegisterQueueDepth(rtr.QueueDepths)
	m.RegisterTriggerLag(rtr.TriggerLags)
	bodies := ingress.NewBodyBudget(cfg.Settings.MaxBodyBytesInFlight)
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchyard_unfinished_event_bytes",
			Help: "Estimated bytes of the events in-memory brokers hold, accepted and not yet final (bounded by spec.ingress.maxUnfinishedBytes)."},
			func() float64 { return float64(rtr.UnfinishedBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchyard_ingress_body_bytes_in_flight",
			Help: "Bytes of request bodies being received (bounded by spec.ingress.maxBodyBytesInFlight)."},
			func() float64 { return float64(bodies.Used()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchyard_reply_bytes_in_flight",
			Help: "Bytes of subscribers' reply bodies being read (bounded by spec.subscribers.maxReplyBytesInFlight)."},
			func() float64 { return float64(deliverer.ReplyBytesInFlight()) }))

	var maxBody atomic.Int64
	maxBody.Store(cfg.Settings.MaxBodyBytes)
	var auth atomic.Pointer[senderauth.Authenticator]
	auth.Store(senderauth.New(cfg.Auth))
	in := ingress.New(ingress.Options{Publisher: rtr, Logger: logger, Metrics: m, MaxBodyBytes: maxBody.Load, Auth: auth.Load, Bodies: bodies, Internal: internal})
	hooks := webhook.New(webhook.Options{Publisher: rtr, Deliverer: deliverer, SecretsDir: f.secretsDir, Logger: logger, Metrics: m, MaxBodyBytes: maxBody.Load, Bodies: bodies, Dedup: dedup})
	hooks.Apply(cfg.Webhooks)
	kafkaSources := kafkasource.NewManager(rtr, deliverer, results, logger, f.secretsDir)
	kafkaSources.Apply(cfg.KafkaSources)
	pingOpts := ping.Options{Publisher: rtr, Deliverer: deliverer, Results: results, Claims: dedup, Metrics: m, Logger: logger}
	if ctl != nil {
		pingOpts.Leading = ctl.Leading // without a shared record, the Lease holder sends
	}
	pingSources := ping.NewManager(pingOpts)
	pingSources.Apply(cfg.PingSources)
	tableSinks := cassandra.NewSinks(logger, maxBody.Load, m.Registry)
	tableSinks.Apply(cfg.Objects[cassandra.SinkKind{}.Kind()], cassandraSpec(cfg))
	defer tableSinks.Close() // after the drain: triggers deliver to sinks through the ingress
	topicSinks := kafka.NewSinks(logger, maxBody.Load, f.secretsDir, m.Registry)
	topicSinks.Apply(cfg.Objects[kafka.SinkKind{}.Kind()], kafkaSpec(cfg))
	defer topicSinks.Close()
	adm := admin.New(results, redriveRoutes{rtr, kafkaSources, pingSources}, m)
	adm.SetAuth(adminAuth(cfg.Settings.AdminAuth))
	adm.SetTraceURL(cfg.Settings.AdminTraceURL)
	sampling, stopSampling := context.WithCancel(context.Background())
	defer stopSampling()
	adm.StartSampling(sampling)
	replays := newReplays(logger, rtr, results, served.Load, f.secretsDir)
	// A dry run's candidate is read for its brokers and triggers only: nothing else it names (key,
	// certificate and secret files, environment variables, JWKS URLs) is read, so an operator
	// cannot probe the host's files through its errors.
	adm.SetReplays(replays, func(name string, data []byte) (*config.Config, error) {
		return config.LoadSources(config.Sources{Documents: []config.Document{{Name: name, Data: data}}, Overrides: f.overrides(),
			Components: components(), Kinds: kinds(), RoutingOnly: true})
	})
	// The admin listener's request bodies get a budget of their own, of the ingress's size: a
	// reader's explain calls cannot spend the producers' budget, nor producers the operators'.
	adm.SetMaxBodyBytesInFlight(cfg.Settings.MaxBodyBytesInFlight)
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchyard_admin_body_bytes_in_flight",
		Help: "Bytes of request bodies the admin listener is receiving (its own budget of spec.ingress.maxBodyBytesInFlight)."},
		func() float64 { return float64(adm.BodyBytesInFlight()) }))
	if cfg.Settings.AdminAuth == nil && !isLoopback(adminLn.Addr()) {
		logger.Warn("the admin API is reachable beyond this host without credentials: set spec.admin.auth (docs/security.md)",
			zap.String("admin", adminLn.Addr().String()))
	}
	if f.profiling {
		adm.EnableProfiling()
	}

	// One listener for producers: webhook sources under /webhooks/{ns}/{name} (vouched for by
	// their own verification), sinks under /sinks/ behind the brokers' sender authentication,
	// brokers elsewhere.
	tableSinksIn := in.Guard(cassandra.SinkPathPrefix, "CassandraSink", tableSinks)
	topicSinksIn := in.Guard(kafka.SinkPathPrefix, "KafkaSink", topicSinks)
	front := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if webhook.Owns(r.URL.Path) {
			hooks.ServeHTTP(w, r)
			return
		}
		if cassandra.Owns(r.URL.Path) {
			tableSinksIn.ServeHTTP(w, r)
			return
		}
		if kafka.OwnsSinkPath(r.URL.Path) {
			topicSinksIn.ServeHTTP(w, r)
			return
		}
		in.ServeHTTP(w, r)
	})
	// Timeouts bound what a slow or stalled client holds: a connection that never finishes its
	// head or body, or idles between requests, is closed (the body bytes it sent are counted by
	// bodies meanwhile). Listener timeouts apply at the next restart.
	st := &cfg.Settings
	ingressSrv := &http.Server{Handler: recoverPanics(front, logger), ReadHeaderTimeout: st.ReadHeaderTimeout, ReadTimeout: st.ReadTimeout, IdleTimeout: st.IdleTimeout}
	adminSrv := &http.Server{Handler: recoverPanics(adm, logger), ReadHeaderTimeout: st.ReadHeaderTimeout, ReadTimeout: st.ReadTimeout, IdleTimeout: st.IdleTimeout}
	serveErr := make(chan error, 2)
	go func() { serveErr <- ingressSrv.Serve(ingressLn) }()
	go func() { serveErr <- adminSrv.Serve(adminLn) }()
	adm.ConfigApplied(time.Now())
	adm.SetReady(true)
	replays.Resume()
	for _, w := range cfg.Warnings {
		logger.Warn("configuration: "+w.Msg, zap.String("at", fmt.Sprintf("%s:%d", w.File, w.Line)))
	}
	for _, s := range cfg.Skipped {
		logger.Info("configuration: left alone: "+s.Why, zap.String("at", fmt.Sprintf("%s:%d", s.File, s.Line)),
			zap.String("kind", s.APIVersion+" "+s.Kind), zap.String("name", s.Namespace+"/"+s.Name))
	}
	logger.Info("switchyard serving", zap.String("version", version), zap.String("ingress", ingressLn.Addr().String()),
		zap.String("admin", adminLn.Addr().String()), zap.Int("brokers", len(cfg.Brokers)), zap.Int("triggers", len(cfg.Triggers)),
		zap.Int("webhook_sources", len(cfg.Webhooks)), zap.Int("ping_sources", len(cfg.PingSources)))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	apply := func(next *config.Config) {
		if next.Settings.Addr != cfg.Settings.Addr || next.Settings.AdminAddr != cfg.Settings.AdminAddr ||
			(cassandraSpec(next) == nil) != (cassandraSpec(cfg) == nil) {
			logger.Warn("listen addresses and the result store apply at the next restart, not on reload")
		}
		rtr.Apply(next)
		served.Store(next)
		hooks.Apply(next.Webhooks)
		kafkaSources.Apply(next.KafkaSources)
		pingSources.Apply(next.PingSources)
		tableSinks.Apply(next.Objects[cassandra.SinkKind{}.Kind()], cassandraSpec(next))
		topicSinks.Apply(next.Objects[kafka.SinkKind{}.Kind()], kafkaSpec(next))
		maxBody.Store(next.Settings.MaxBodyBytes)
		bodies.SetMax(next.Settings.MaxBodyBytesInFlight)
		adm.SetMaxBodyBytesInFlight(next.Settings.MaxBodyBytesInFlight)
		deliverer.SetDestinationTLS(destinationTLS(next.DestinationTLS, f.secretsDir))
		adm.SetAuth(adminAuth(next.Settings.AdminAuth))
		adm.SetTraceURL(next.Settings.AdminTraceURL)
		m.SetMaxEventTypes(next.Settings.MaxEventTypes)
		auth.Store(senderauth.New(next.Auth))
		m.ConfigReloads.WithLabelValues("applied").Inc()
		m.ConfigLastReloadOK.Set(1)
		adm.ConfigApplied(time.Now())
		logger.Info("configuration reloaded", zap.Int("brokers", len(next.Brokers)), zap.Int("triggers", len(next.Triggers)))
	}
	rejected := func(err error) {
		m.ConfigReloads.WithLabelValues("rejected").Inc()
		m.ConfigLastReloadOK.Set(0)
		adm.ConfigRejected(time.Now(), err)
		logger.Error("configuration change rejected; still serving the previous one", zap.Error(err))
	}
	switch {
	case ctl != nil:
		// The controller rebuilds from the cluster and the files; a file change only asks it to.
		if f.config != "" {
			go config.WatchChanges(watchCtx, f.config, fingerprint, cfg.Settings.ReloadInterval, ctl.Kick, rejected)
		}
		ingressURL := f.kube.ingressURL
		if ingressURL == "" {
			ingressURL = brokerBase
		}
		go ctl.Run(watchCtx, ingressURL, apply, rejected)
	default:
		go config.WatchChanges(watchCtx, f.config, fingerprint, cfg.Settings.ReloadInterval, func() {
			next, err := f.load(config.Sources{})
			if err != nil {
				rejected(err)
				return
			}
			apply(next)
		}, rejected)
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("listener failed: %w", err)
	}
	stop()
	stopWatch()
	// Replays stop reading first: what they handed over drains with the rest, and with Cassandra
	// their stored state stays running, for the next process to resume from the checkpoint.
	replays.Close()

	// Drain: unready first so load balancers stop sending, refuse new events with 503, let admitted
	// ones finish within the grace period, record the rest as failed.
	logger.Info("shutting down: draining", zap.Duration("grace", cfg.Settings.ShutdownGrace), zap.Int64("pending", rtr.Pending()))
	// Whatever still hangs after the grace and the closing steps (a client library waiting on a
	// frozen Kafka or Cassandra), the process ends before the kubelet's SIGKILL (the chart allows
	// grace + 15 s): what it acknowledged is then as safe as after a crash, which is the case the
	// durable path is built for, and a restart comes sooner.
	watchdog = time.AfterFunc(cfg.Settings.ShutdownGrace+shutdownOverrun, func() {
		logger.Error("shutdown not finished 10s after the grace period: exiting now, as a crash would (nothing acknowledged is lost: a Kafka-class broker reads uncommitted events again)",
			zap.Duration("grace", cfg.Settings.ShutdownGrace))
		_ = logger.Sync()
		os.Exit(1)
	})
	adm.SetReady(false)
	in.Drain()
	kafkaSources.Stop() // stop reading sources first; what they had sent is committed
	pingSources.Stop()
	if d, ok := results.(router.DrainingStore); ok {
		d.BeginShutdown()
	}
	graceCtx, cancel := context.WithTimeout(context.Background(), cfg.Settings.ShutdownGrace)
	defer cancel()
	aborted := rtr.Shutdown(graceCtx)
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelClose()
	_ = ingressSrv.Shutdown(closeCtx)
	_ = adminSrv.Shutdown(closeCtx)
	logger.Info("stopped", zap.Int64("recorded_as_failed", aborted))
	return nil
}

// redriveRoutes is the admin API's view of the router, with redrives of a KafkaSource's failed
// records and a PingSource's failed ticks (named kafkasource:NAME and pingsource:NAME, as their
// outcomes are) sent to their source managers.
type redriveRoutes struct {
	*broker.Router
	sources *kafkasource.Manager
	pings   *ping.Manager
}

func (r redriveRoutes) Redrive(ctx context.Context, ref router.TriggerRef, q router.RedriveQuery) (int, error) {
	var n int
	var err error
	switch {
	case strings.HasPrefix(ref.Name, kafkasource.OutcomePrefix):
		n, err = r.sources.Redrive(ctx, ref, q)
	case strings.HasPrefix(ref.Name, ping.OutcomePrefix):
		n, err = r.pings.Redrive(ctx, ref, q)
	default:
		return r.Router.Redrive(ctx, ref, q)
	}
	if errors.Is(err, kafkasource.ErrSourceNotFound) || errors.Is(err, ping.ErrSourceNotFound) {
		err = fmt.Errorf("%w: %v", broker.ErrTriggerNotFound, err) // the admin API's 404
	}
	return n, err
}

// shutdownOverrun is how long the closing steps after the grace period (Kafka commits, the result
// store's last writes, the listeners) may take before the watchdog ends the process.
const shutdownOverrun = 10 * time.Second

// kafkaLogs opens the Kafka-backed log of Kafka-class brokers; other brokers run in memory.
func kafkaLogs(logger *zap.Logger, secretsDir string) func(*config.Broker, *config.Config) (router.BrokerLog, error) {
	return func(b *config.Broker, cfg *config.Config) (router.BrokerLog, error) {
		if b.Class != "Kafka" {
			return nil, nil
		}
		spec := kafkaSpec(cfg)
		if spec == nil {
			return nil, fmt.Errorf("broker %s is of class Kafka but no Kafka cluster is configured", b.Ref)
		}
		return kafka.New(spec.LogConfig(b, secretsDir, logger)), nil
	}
}

// recoverPanics answers 500 to a request whose handler panicked, and logs it once with the stack,
// instead of net/http's reset connection and bare stack trace on stderr. A panic is a bug: the
// request is refused (nothing was accepted), the process serves on.
func recoverPanics(next http.Handler, logger *zap.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p) // net/http's own way of aborting a response
				}
				logger.Error("request handler panicked: a bug, the request was refused", zap.String("path", r.URL.Path), zap.Any("panic", p), zap.Stack("stack"))
				http.Error(w, "internal error: the request was not accepted; retry, and report it if it persists", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// withTLS makes ln serve TLS from t's files (read again as they change).
func withTLS(ln net.Listener, t *config.ListenerTLS) (net.Listener, error) {
	auth := tls.RequireAndVerifyClientCert
	if t.ClientAuth == "verify-if-given" {
		auth = tls.VerifyClientCertIfGiven
	}
	cfg, err := tlsfiles.ServerConfig(tlsfiles.Server{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile, ClientAuth: auth})
	if err != nil {
		ln.Close()
		return nil, err
	}
	return tls.NewListener(ln, cfg), nil
}

// destinationTLS is the deliverer's view of the destinations' TLS: client Secrets become the
// files of a mounted kubernetes.io/tls Secret.
func destinationTLS(byURL map[string]config.DestinationTLS, secretsDir string) map[string]tlsfiles.Client {
	out := make(map[string]tlsfiles.Client, len(byURL))
	for u, d := range byURL {
		c := tlsfiles.Client{CAPEM: d.CAPEM, SystemRoots: true} // Knative's CACerts add to the system's roots
		if d.ClientSecret != "" {
			c.CertFile = filepath.Join(secretsDir, d.ClientSecret, "tls.crt")
			c.KeyFile = filepath.Join(secretsDir, d.ClientSecret, "tls.key")
		}
		out[u] = c
	}
	return out
}

// adminAuth is the admin API's view of the configured credentials.
func adminAuth(a *config.AdminAuth) *admin.Auth {
	if a == nil {
		return nil
	}
	return &admin.Auth{Readers: a.Readers, Operators: a.Operators}
}

// isLoopback reports whether a listener accepts connections from this host only.
func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// hostForURL turns a listener address into a host:port usable in a URL (":8080" -> localhost:8080).
func hostForURL(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// selfOrigins are the origins at which URLs reach the ingress listening on ln (configured as
// addr): its address, the host it was configured with, and the loopback names when it listens on
// every interface (a ref to the configuration's own sink or broker resolves to 127.0.0.1).
func selfOrigins(scheme, addr string, ln net.Addr) []string {
	_, port, err := net.SplitHostPort(ln.String())
	if err != nil {
		return nil
	}
	hosts := []string{}
	for _, a := range []string{ln.String(), addr} {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			hosts = append(hosts, "127.0.0.1", "localhost", "::1")
			continue
		}
		hosts = append(hosts, host)
	}
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = scheme + "://" + net.JoinHostPort(h, port)
	}
	return out
}

// archiver is the archive of in-memory brokers: the Cassandra store when it is the result store.
func archiver(results router.ResultStore) router.Archiver {
	a, _ := results.(router.Archiver)
	return a
}

// newReplays runs replays of brokers' archives: an in-memory broker's in the Cassandra store, a
// Kafka-class broker's in its topic; with the Cassandra store, runs are kept there and resumed
// after a restart.
func newReplays(logger *zap.Logger, rtr *broker.Router, results router.ResultStore, served func() *config.Config, secretsDir string) *replay.Manager {
	cassandraArchive, _ := results.(router.ArchiveReader)
	runs, _ := results.(replay.RunStore)
	host, _ := os.Hostname()
	return replay.New(replay.Options{
		Logger:  logger.Named("replay"),
		Deliver: rtr,
		Store:   runs,
		Owner:   fmt.Sprintf("%s/%d", host, os.Getpid()),
		Filters: rtr.TriggerFilters,
		Reader: func(ref router.BrokerRef) (router.ArchiveReader, error) {
			var b *config.Broker
			for _, c := range served().Brokers {
				if c.Ref == ref {
					b = c
				}
			}
			switch {
			case b == nil:
				return nil, fmt.Errorf("%w: %s", router.ErrBrokerNotFound, ref)
			case b.Class == "Kafka":
				spec := kafkaSpec(served())
				if spec == nil {
					return nil, fmt.Errorf("broker %s is of class Kafka but no Kafka cluster is configured", ref)
				}
				var f filter.Filter
				if b.Archive != nil {
					f = b.Archive.Filter
				}
				return replay.Filtered(kafka.New(spec.LogConfig(b, secretsDir, logger)), f), nil
			case b.Archive == nil || b.Archive.Retention == 0 || cassandraArchive == nil:
				return nil, fmt.Errorf("%w (%s)", router.ErrNoArchive, ref)
			}
			return replay.Clamped(cassandraArchive, b.Archive.Retention), nil
		},
	})
}
