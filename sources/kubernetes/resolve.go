package kubernetes

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"

	"github.com/switchyard-events/switchyard/router/config"
)

// addresses resolves destination refs the way Knative does: a core Service is its cluster DNS name,
// anything else is Addressable and its URL is status.address.url. Every kind met is watched from
// then on, so a changed address re-resolves (onChange rebuilds the routing).
type addresses struct {
	factory       dynamicinformer.DynamicSharedInformerFactory
	mapper        *restmapper.DeferredDiscoveryRESTMapper
	clusterDomain string
	syncTimeout   time.Duration
	onChange      func()
	ctx           context.Context

	mu       sync.Mutex
	watching map[schema.GroupVersionResource]informers.GenericInformer
}

func (a *addresses) resolve(ref config.ObjectRef) (string, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || ref.Kind == "" {
		return "", fmt.Errorf("a ref needs apiVersion and kind, got %q %q", ref.APIVersion, ref.Kind)
	}
	mapping, err := a.mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: ref.Kind}, gv.Version)
	if meta.IsNoMatchError(err) {
		a.mapper.Reset() // a CRD installed since the last discovery
		mapping, err = a.mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: ref.Kind}, gv.Version)
	}
	if err != nil {
		return "", fmt.Errorf("the cluster has no resource %s %s: %v", ref.APIVersion, ref.Kind, err)
	}
	lister, err := a.lister(mapping.Resource)
	if err != nil {
		return "", err
	}
	obj, err := lister.ByNamespace(ref.Namespace).Get(ref.Name)
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("%s %s/%s not found", ref.Kind, ref.Namespace, ref.Name)
	}
	if err != nil {
		return "", fmt.Errorf("reading %s %s/%s: %v", ref.Kind, ref.Namespace, ref.Name, err)
	}
	if mapping.Resource.Group == "" && mapping.Resource.Resource == "services" {
		return "http://" + ref.Name + "." + ref.Namespace + ".svc." + a.clusterDomain, nil
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return "", fmt.Errorf("%s %s/%s: unexpected object %T", ref.Kind, ref.Namespace, ref.Name, obj)
	}
	url, _, _ := unstructured.NestedString(u.Object, "status", "address", "url")
	if url == "" {
		return "", fmt.Errorf("%s %s/%s is not addressable yet: it has no status.address.url", ref.Kind, ref.Namespace, ref.Name)
	}
	return url, nil
}

// lister returns the cache of a resource, starting its watch on first use.
func (a *addresses) lister(gvr schema.GroupVersionResource) (cache.GenericLister, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	inf, ok := a.watching[gvr]
	if !ok {
		inf = a.factory.ForResource(gvr)
		_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { a.onChange() },
			UpdateFunc: func(_, _ any) { a.onChange() },
			DeleteFunc: func(any) { a.onChange() },
		})
		a.watching[gvr] = inf
		a.factory.Start(a.ctx.Done())
		ctx, cancel := context.WithTimeout(a.ctx, a.syncTimeout)
		defer cancel()
		cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced)
	}
	// An informer that has not synced keeps retrying; a later build finds it ready.
	if !inf.Informer().HasSynced() {
		return nil, fmt.Errorf("cannot list %s yet: Switchyard's service account needs get, list and watch on it", gvr.GroupResource())
	}
	return inf.Lister(), nil
}
