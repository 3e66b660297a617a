package config

import (
	"time"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/filter"
	"github.com/switchyard-events/switchyard/router/senderauth"
)

// Config is a loaded, validated configuration: what the router runs. It is immutable once Load
// returns it.
type Config struct {
	Settings Settings
	Brokers  []*Broker
	Triggers []*Trigger
	// Auth are the sender-authentication policies, secrets read.
	Auth []senderauth.Policy
	// Files are the files read, in the order read.
	Files []string
}

// Settings are the router's own settings, from SwitchyardConfig or defaults.
type Settings struct {
	Addr          string
	AdminAddr     string
	MaxBodyBytes  int64
	QueueSize     int
	MaxTTL        int32
	ClusterDomain string
	// TriggerConcurrency and TriggerPending are the per-trigger defaults.
	TriggerConcurrency int
	TriggerPending     int
	MaxOutcomes        int
	ShutdownGrace      time.Duration
	ReloadInterval     time.Duration
	LogFormat          string
	LogLevel           string
}

// Defaults of Settings and of delivery, used where the configuration says nothing.
const (
	DefaultAddr               = ":8080"
	DefaultAdminAddr          = ":9090"
	DefaultMaxBodyBytes       = 4 << 20
	DefaultQueueSize          = 10000
	DefaultMaxTTL             = 255
	DefaultClusterDomain      = "cluster.local"
	DefaultTriggerConcurrency = 64
	DefaultTriggerPending     = 256
	DefaultMaxOutcomes        = 100000
	DefaultShutdownGrace      = 30 * time.Second
	DefaultReloadInterval     = 2 * time.Second
	DefaultRetry              = 10
	DefaultBackoffDelay       = 200 * time.Millisecond
	DefaultTimeout            = 30 * time.Second
)

// Broker is one configured broker.
type Broker struct {
	Ref router.BrokerRef
	// Class is the value of eventing.knative.dev/broker.class, "" when absent.
	Class string
	// File and Line locate the manifest.
	File string
	Line int
}

// Trigger is one configured trigger, resolved: its filter compiled, its subscriber a URL, its
// delivery merged from defaults, broker and trigger.
type Trigger struct {
	Ref        router.TriggerRef
	Broker     router.BrokerRef
	Filter     filter.Filter
	Subscriber string
	Delivery   delivery.Policy
	// Ordered delivers one event at a time, each after the previous one's final outcome.
	Ordered bool
	// Concurrency bounds the trigger's deliveries in flight (1 when Ordered).
	Concurrency int
	// Pending bounds events waiting for a free delivery slot.
	Pending int
	// RateLimit is the most events per second started towards the subscriber; 0 is unlimited.
	RateLimit float64
	File      string
	Line      int
}
