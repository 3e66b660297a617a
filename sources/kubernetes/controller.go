// Package kubernetes makes Knative resources in a cluster a configuration source: Brokers of
// Switchyard's class, their Triggers and the KafkaSources that feed them are compiled by the same
// loader as YAML files, and their status is written back so `kubectl get brokers,triggers` tells
// whether they route. See docs/controller-design.md.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/switchyard-events/switchyard/router/config"
)

// DefaultClass is the broker class annotation value Switchyard serves.
const DefaultClass = "Switchyard"

// Options configure a Controller.
type Options struct {
	Config *rest.Config
	// Class is the value of eventing.knative.dev/broker.class this replica serves (DefaultClass).
	Class         string
	ClusterDomain string
	// Build compiles the configuration from the resources' documents and whatever files the caller
	// adds.
	Build func(config.Sources) (*config.Config, error)
	// Lease is where replicas elect the one that writes status.
	Lease  LeaseOptions
	Logger *zap.Logger
	// CRDRecheck is how often to look again for a source's CRD when the cluster did not serve
	// it at Start (default 30s): installing Knative's sources later needs no restart.
	CRDRecheck time.Duration
	// PingSources makes this router run the PingSources that sink into its Brokers. Off where
	// Knative Eventing runs (its adapter sends their ticks already, to our Brokers' addresses);
	// on where Switchyard replaces it.
	PingSources bool
	// Flows makes this router run every Sequence and Parallel of the cluster (docs/flows.md),
	// where Switchyard replaces Knative Eventing (whose Channels run them otherwise).
	Flows bool
	// KafkaClasses makes this router also serve the Brokers of Knative's Kafka and KafkaNamespaced
	// classes, with the cluster and topic settings of the ConfigMap each one's spec.config names
	// (so it watches ConfigMaps). Off where Knative's Kafka broker runs; on where Switchyard
	// replaces it.
	KafkaClasses bool
}

// Controller watches the cluster and keeps the router's configuration and the resources' status
// in step with it.
type Controller struct {
	opts    Options
	client  dynamic.Interface
	factory dynamicinformer.DynamicSharedInformerFactory
	addrs   *addresses
	listers map[schema.GroupVersionResource]cache.GenericLister
	kick    chan struct{}
	leader  atomic.Bool
	// classes are the broker classes served: Options.Class, and Knative's Kafka ones with
	// Options.KafkaClasses.
	classes map[string]bool
	// configMapsNamed are the "ns/name" of the ConfigMaps the Brokers of the last build name in
	// spec.config, so that a change to one of them rebuilds and a change to another does not.
	configMapsNamed atomic.Pointer[map[string]bool]
	logger          *zap.Logger
	// ingressURL is the base of the Broker addresses written to status, e.g.
	// http://switchyard.switchyard.svc.cluster.local; a Broker's URL is {ingressURL}/{ns}/{name}.
	ingressURL string
	apply      func(*config.Config)

	// Written by the build loop only.
	last     *config.Config
	resolved []*resource
	// sources are the source kinds served, each as its versions (PingSources only when Options
	// say so); watched, the version of each that the cluster serves.
	sources [][]schema.GroupVersionResource
	watched []schema.GroupVersionResource
	// missing are the source kinds whose CRD the cluster did not serve at Start; the build loop
	// looks for them every CRDRecheck and starts watching each once it appears.
	missing [][]schema.GroupVersionResource
}

// New connects to the API server; nothing is watched before Start.
func New(opts Options) (*Controller, error) {
	if opts.Class == "" {
		opts.Class = DefaultClass
	}
	if opts.ClusterDomain == "" {
		opts.ClusterDomain = config.DefaultClusterDomain
	}
	if opts.CRDRecheck <= 0 {
		opts.CRDRecheck = 30 * time.Second
	}
	client, err := dynamic.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("kubernetes discovery: %w", err)
	}
	// client-go logs (leader election, watch retries) go through our logger, not klog's stderr.
	klog.SetLogger(zapr.NewLogger(opts.Logger.Named("client-go")))
	c := &Controller{
		opts:    opts,
		client:  client,
		factory: dynamicinformer.NewDynamicSharedInformerFactory(client, 10*time.Minute),
		listers: map[schema.GroupVersionResource]cache.GenericLister{},
		kick:    make(chan struct{}, 1),
		logger:  opts.Logger.Named("kubernetes"),
		classes: map[string]bool{opts.Class: true},
	}
	if opts.KafkaClasses {
		c.classes["Kafka"], c.classes["KafkaNamespaced"] = true, true
	}
	c.sources = [][]schema.GroupVersionResource{kafkaSourceVersions}
	if opts.PingSources {
		c.sources = append(c.sources, pingSourceVersions)
	}
	if opts.Flows {
		c.sources = append(c.sources, sequenceVersions, parallelVersions)
	}
	c.addrs = &addresses{
		factory:       c.factory,
		mapper:        restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco)),
		clusterDomain: opts.ClusterDomain,
		syncTimeout:   5 * time.Second,
		onChange:      c.Kick,
		watching:      map[schema.GroupVersionResource]informers.GenericInformer{},
	}
	return c, nil
}

// Start watches Brokers, Triggers and (when the cluster has their CRDs) sources for as long as
// ctx lasts, waits until their caches are filled or wait ends, and returns the first configuration
// built from them, not yet applied.
func (c *Controller) Start(ctx, wait context.Context) (*config.Config, error) {
	c.addrs.ctx = ctx
	for _, gvr := range []schema.GroupVersionResource{brokersGVR, triggersGVR} {
		known, err := c.served(gvr)
		if err != nil {
			return nil, err
		}
		if !known {
			return nil, fmt.Errorf("the cluster does not serve %s: install Knative Eventing's CRDs (or Switchyard's, test/kubernetes/crds)", gvr.GroupResource())
		}
		c.watch(gvr)
	}
	if c.opts.KafkaClasses {
		c.watchConfigMaps()
	}
	for _, versions := range c.sources {
		gvr, known, err := c.servedVersion(versions)
		if err != nil {
			return nil, err
		}
		if !known {
			c.logger.Info("a source kind is not served by this cluster; watching for its CRD", zap.String("resource", versions[0].GroupResource().String()), zap.Duration("every", c.opts.CRDRecheck))
			c.missing = append(c.missing, versions)
			continue
		}
		c.watch(gvr)
		c.watched = append(c.watched, gvr)
	}
	c.factory.Start(ctx.Done())
	for gvr, ok := range c.factory.WaitForCacheSync(wait.Done()) {
		if !ok {
			return nil, fmt.Errorf("listing %s: %w (may the service account get, list and watch it?)", gvr.GroupResource(), context.Cause(wait))
		}
	}
	cfg, err := c.build()
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// watch registers gvr's informer and lister; the factory's next Start starts it.
func (c *Controller) watch(gvr schema.GroupVersionResource) cache.SharedIndexInformer {
	inf := c.factory.ForResource(gvr)
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.Kick() },
		UpdateFunc: func(old, next any) { c.kickOnChange(old, next) },
		DeleteFunc: func(any) { c.Kick() },
	})
	c.listers[gvr] = inf.Lister()
	return inf.Informer()
}

// watchConfigMaps lists ConfigMaps for the Kafka-class Brokers' spec.config. Only a change to one
// that a Broker of the last build names kicks a rebuild: a cluster's other ConfigMaps change all
// the time.
func (c *Controller) watchConfigMaps() {
	inf := c.factory.ForResource(configMapsGVR)
	kick := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		u, ok := obj.(*unstructured.Unstructured)
		if m := c.configMapsNamed.Load(); ok && m != nil && (*m)[u.GetNamespace()+"/"+u.GetName()] {
			c.Kick()
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    kick,
		UpdateFunc: func(_, next any) { kick(next) },
		DeleteFunc: kick,
	})
	c.listers[configMapsGVR] = inf.Lister()
}

// watchMissingIfServed starts watching the missing sources whose CRD the cluster serves now, and
// reports whether it started any. Called by the build loop only (it owns the listers).
func (c *Controller) watchMissingIfServed(ctx context.Context) bool {
	c.addrs.mapper.Reset() // discovery is cached; a CRD installed since is not in it
	var started []cache.InformerSynced
	still := c.missing[:0]
	for _, versions := range c.missing {
		gvr, known, err := c.servedVersion(versions)
		if err != nil {
			c.logger.Warn("looking for a source's CRD", zap.String("resource", versions[0].GroupResource().String()), zap.Error(err))
		}
		if !known {
			still = append(still, versions)
			continue
		}
		started = append(started, c.watch(gvr).HasSynced)
		c.watched = append(c.watched, gvr)
		c.logger.Info("a source kind is served now; watching it", zap.String("resource", gvr.GroupResource().String()), zap.String("version", gvr.Version))
	}
	c.missing = still
	if len(started) == 0 {
		return false
	}
	c.factory.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), started...) {
		// The lister answers from what it has; the informer keeps trying and kicks a rebuild.
		c.logger.Warn("a source kind is served now, but listing it has not finished")
	}
	return true
}

// servedVersion is the first of versions the API server serves.
func (c *Controller) servedVersion(versions []schema.GroupVersionResource) (schema.GroupVersionResource, bool, error) {
	for _, gvr := range versions {
		known, err := c.served(gvr)
		if err != nil || known {
			return gvr, known, err
		}
	}
	return schema.GroupVersionResource{}, false, nil
}

// served tells whether the API server serves gvr.
func (c *Controller) served(gvr schema.GroupVersionResource) (bool, error) {
	list, err := c.addrs.mapper.ResourcesFor(gvr.GroupVersion().WithResource(gvr.Resource))
	if err != nil && !meta.IsNoMatchError(err) {
		return false, fmt.Errorf("discovering %s: %w", gvr.GroupResource(), err)
	}
	return len(list) > 0, nil
}

// Kick asks for a rebuild; kicks that arrive during one are folded into the next.
func (c *Controller) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// kickOnChange rebuilds for a changed spec (generation), class or other annotation, not for the
// status updates this controller writes itself.
func (c *Controller) kickOnChange(old, next any) {
	o, ok1 := old.(*unstructured.Unstructured)
	n, ok2 := next.(*unstructured.Unstructured)
	if ok1 && ok2 && o.GetGeneration() == n.GetGeneration() && o.GetGeneration() != 0 &&
		reflect.DeepEqual(o.GetAnnotations(), n.GetAnnotations()) && n.GetDeletionTimestamp() == nil {
		return
	}
	c.Kick()
}

// Run rebuilds the configuration on every change and hands it to apply (or its error, which no
// resource can be blamed for, to rejected), until ctx ends; while this
// replica leads it writes status, with Broker addresses under ingressURL. The configuration Start
// returned must have been applied first.
func (c *Controller) Run(ctx context.Context, ingressURL string, apply func(*config.Config), rejected func(error)) {
	c.ingressURL, c.apply = strings.TrimSuffix(ingressURL, "/"), apply
	go c.elect(ctx)
	c.Kick() // the status of Start's build
	var recheck <-chan time.Time
	if len(c.missing) > 0 {
		t := time.NewTicker(c.opts.CRDRecheck)
		defer t.Stop()
		recheck = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-recheck:
			if !c.watchMissingIfServed(ctx) {
				continue
			}
			if len(c.missing) == 0 {
				recheck = nil
			}
		}
		// Let a burst of changes (kubectl apply -f dir) land before building.
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		select {
		case <-c.kick:
		default:
		}
		cfg, err := c.build()
		if err != nil {
			rejected(err)
			continue
		}
		c.apply(cfg)
		if c.leader.Load() {
			c.writeStatus(ctx)
		}
	}
}

// build compiles the resources of our class. A resource with problems is left out and the rest
// compiled again, so one bad Trigger does not hold up the others; the problems go to its status.
// Problems in the caller's files, which no resource can be blamed for, fail the build.
func (c *Controller) build() (*config.Config, error) {
	rs, err := c.ours()
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*resource, len(rs))
	for _, r := range rs {
		byName[r.name] = r
	}
	named := map[string]bool{}
	for _, r := range rs {
		if cm := c.brokerConfigMap(r); cm != "" {
			named[cm] = true
		}
	}
	c.configMapsNamed.Store(&named)
	for {
		var docs []config.Document
		// readers are the Brokers that read each ConfigMap document, to be blamed for its problems.
		readers := map[string][]*resource{}
		failedBrokers := map[string]bool{}
		for _, r := range rs {
			if r.gvr == brokersGVR && r.excluded() {
				failedBrokers[r.key()] = true
			}
		}
		for _, r := range rs {
			if r.gvr != brokersGVR && failedBrokers[r.broker] {
				r.brokerFailed = true
			}
			if r.excluded() {
				continue
			}
			d, err := r.document()
			if err != nil {
				return nil, err
			}
			docs = append(docs, d)
			if cm := c.brokerConfigMap(r); cm != "" {
				name := "ConfigMap " + cm
				if readers[name] == nil {
					if d, ok := c.configMapDocument(cm); ok {
						docs = append(docs, d)
					}
				}
				readers[name] = append(readers[name], r)
			}
		}
		cfg, err := c.opts.Build(config.Sources{Documents: docs, ResolveRef: c.addrs.resolve, ConfigMapsComplete: c.opts.KafkaClasses})
		if err == nil {
			c.last, c.resolved = cfg, rs
			return cfg, nil
		}
		var errs config.Errors
		if !errors.As(err, &errs) {
			return nil, err
		}
		blamed := false
		var others config.Errors
		for _, e := range errs {
			if r, ok := byName[e.File]; ok {
				r.problems = append(r.problems, e)
				blamed = true
			} else if brokers := readers[e.File]; len(brokers) > 0 {
				// A problem in a ConfigMap is each reading Broker's, at its spec.config.
				for _, r := range brokers {
					r.problems = append(r.problems, &config.Error{File: r.name, Path: "spec.config", Msg: e.File + ": " + e.Path + ": " + e.Msg})
				}
				blamed = true
			} else {
				others = append(others, e)
			}
		}
		if len(others) > 0 || !blamed {
			return nil, others
		}
	}
}

// brokerConfigMap is the "ns/name" of the ConfigMap a Kafka-class Broker's spec.config names, or
// "" (another class, or no ConfigMap named).
func (c *Controller) brokerConfigMap(r *resource) string {
	if r.gvr != brokersGVR || !c.opts.KafkaClasses || !isKafkaClass(r.obj.GetAnnotations()[AnnotationBrokerClass]) {
		return ""
	}
	ref, ok, _ := unstructured.NestedStringMap(r.obj.Object, "spec", "config")
	if !ok || ref["kind"] != "ConfigMap" || ref["name"] == "" {
		return ""
	}
	ns := ref["namespace"]
	if ns == "" {
		ns = r.obj.GetNamespace()
	}
	return ns + "/" + ref["name"]
}

// configMapDocument is ConfigMap ns/name as the loader reads it, or false when the cluster has none.
func (c *Controller) configMapDocument(key string) (config.Document, bool) {
	ns, name, _ := strings.Cut(key, "/")
	obj, err := c.listers[configMapsGVR].ByNamespace(ns).Get(name)
	u, ok := obj.(*unstructured.Unstructured)
	if err != nil || !ok {
		return config.Document{}, false
	}
	data, _, _ := unstructured.NestedStringMap(u.Object, "data")
	doc, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "namespace": ns}, "data": data})
	if err != nil {
		return config.Document{}, false
	}
	return config.Document{Name: "ConfigMap " + key, Data: doc}, true
}

// ours lists the Brokers of our class and the Triggers and sources that point at them, in a
// stable order so builds and errors repeat.
func (c *Controller) ours() ([]*resource, error) {
	list := func(gvr schema.GroupVersionResource) ([]*unstructured.Unstructured, error) {
		l, ok := c.listers[gvr]
		if !ok {
			return nil, nil
		}
		objs, err := l.List(labels.Everything())
		if err != nil {
			return nil, err
		}
		out := make([]*unstructured.Unstructured, 0, len(objs))
		for _, o := range objs {
			if u, ok := o.(*unstructured.Unstructured); ok && u.GetDeletionTimestamp() == nil {
				out = append(out, u)
			}
		}
		sort.Slice(out, func(i, j int) bool {
			return out[i].GetNamespace()+"/"+out[i].GetName() < out[j].GetNamespace()+"/"+out[j].GetName()
		})
		return out, nil
	}
	brokers, err := list(brokersGVR)
	if err != nil {
		return nil, err
	}
	var rs []*resource
	mine := map[string]bool{}
	for _, b := range brokers {
		if !c.classes[b.GetAnnotations()[AnnotationBrokerClass]] {
			continue
		}
		r := newResource(b, brokersGVR)
		r.broker = r.key()
		mine[r.key()] = true
		rs = append(rs, r)
	}
	triggers, err := list(triggersGVR)
	if err != nil {
		return nil, err
	}
	exists := make(map[string]bool, len(brokers))
	for _, b := range brokers {
		exists[b.GetNamespace()+"/"+b.GetName()] = true
	}
	// claim takes a Trigger or source that points at broker b when b is ours, or when b is gone
	// and we wrote its status: it is then told so rather than left showing Ready=True.
	claim := func(obj *unstructured.Unstructured, gvr schema.GroupVersionResource, b string) {
		if b == "" || !mine[b] && (exists[b] || statusWrittenBy(obj) != c.opts.Class) {
			return
		}
		r := newResource(obj, gvr)
		r.broker, r.brokerGone = b, !mine[b]
		rs = append(rs, r)
	}
	for _, t := range triggers {
		claim(t, triggersGVR, triggerBroker(t))
	}
	for _, gvr := range c.watched {
		sources, err := list(gvr)
		if err != nil {
			return nil, err
		}
		for _, src := range sources {
			if isFlow(gvr) {
				rs = append(rs, newResource(src, gvr))
				continue
			}
			claim(src, gvr, sinkBroker(src))
		}
	}
	return rs, nil
}

// writeStatus brings every resource's status up to date with the last build; unchanged ones are
// not written. A conflict (someone else updated the object) rebuilds from the newer object.
func (c *Controller) writeStatus(ctx context.Context) {
	now := time.Now()
	for _, r := range c.resolved {
		var next any
		switch r.gvr {
		case brokersGVR:
			st := c.brokerStatus(r)
			next = &st
		case triggersGVR:
			st := c.triggerStatus(r, c.last)
			next = &st
		case sequenceVersions[0], parallelVersions[0]:
			st := c.flowStatus(r)
			next = &st
		default:
			st := c.sourceStatus(r)
			next = &st
		}
		old, _, _ := unstructured.NestedMap(r.obj.Object, "status")
		status, err := withTransitions(next, old, now)
		if err != nil {
			c.logger.Error("building status", zap.String("resource", r.name), zap.Error(err))
			continue
		}
		if sameStatus(old, status) {
			continue
		}
		obj := r.obj.DeepCopy()
		obj.Object["status"] = status
		written, err := c.client.Resource(r.gvr).Namespace(obj.GetNamespace()).UpdateStatus(ctx, obj, metav1.UpdateOptions{})
		switch {
		case err == nil:
			r.obj = written // compare the next status with what is stored now
			c.logger.Debug("status written", zap.String("resource", r.name))
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			c.Kick() // the informer brings the newer object; write again from it
		default:
			c.logger.Warn("writing status", zap.String("resource", r.name), zap.Error(err))
		}
	}
}
