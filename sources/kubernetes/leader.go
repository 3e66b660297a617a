package kubernetes

import (
	"context"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseOptions say where and how replicas elect the status writer.
type LeaseOptions struct {
	Namespace, Name string
	// Identity names this replica in the Lease (the pod name, made unique).
	Identity string
	// Duration is how long a silent leader keeps the Lease; renewal and retries follow from it.
	Duration time.Duration
}

// elect campaigns for the Lease until ctx ends. Only status writing depends on leading: every
// replica routes with the same configuration whether it leads or not, so losing the Lease (or the
// API server) never stops events.
func (c *Controller) elect(ctx context.Context) {
	lo := c.opts.Lease
	if lo.Duration <= 0 {
		lo.Duration = 15 * time.Second
	}
	client, err := coordinationv1.NewForConfig(c.opts.Config)
	if err != nil {
		c.logger.Error("leader election disabled: no client; status will not be written", zap.Error(err))
		return
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: lo.Namespace, Name: lo.Name},
		Client:     client,
		LockConfig: resourcelock.ResourceLockConfig{Identity: lo.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   lo.Duration,
			RenewDeadline:   lo.Duration * 2 / 3,
			RetryPeriod:     lo.Duration / 5,
			ReleaseOnCancel: true,
			Name:            lo.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) {
					c.logger.Info("leading: writing status", zap.String("identity", lo.Identity))
					c.leader.Store(true)
					c.Kick()
				},
				OnStoppedLeading: func() {
					c.leader.Store(false)
					c.logger.Info("no longer leading: status left to the new leader", zap.String("identity", lo.Identity))
				},
			},
		})
		if err != nil {
			c.logger.Error("leader election disabled; status will not be written", zap.Error(err))
			return
		}
		le.Run(ctx) // returns when leadership is lost or ctx ends; campaign again
	}
}

// Leading reports whether this replica writes status now.
func (c *Controller) Leading() bool { return c.leader.Load() }
