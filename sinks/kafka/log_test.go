package kafka

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/brokerlogtest"
	"github.com/switchyard-events/switchyard/test/testenv"
)

// TestContract runs the BrokerLog contract every log keeps, against the real Kafka: each case on a
// topic of its own.
func TestContract(t *testing.T) {
	brokers := testenv.Kafka(t)
	brokerlogtest.Run(t, func(t *testing.T) router.BrokerLog {
		topic := fmt.Sprintf("contract-%d", time.Now().UnixNano())
		return New(Config{Brokers: []string{brokers}, Topic: topic, Group: topic, Partitions: 3, Logger: zaptest.NewLogger(t)})
	},
		// sarama's metrics registry runs one ticker for the whole process.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	)
}
