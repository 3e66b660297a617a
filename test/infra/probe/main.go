// Command probe answers whether a Kafka broker or a Cassandra node really serves clients: it makes one
// real round trip with the same client libraries Switchyard uses. test/infra/infra.sh calls it to
// decide that a server it started is ready.
//
//	probe kafka 127.0.0.1:9092
//	probe cassandra 127.0.0.1:9042
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/IBM/sarama"
	"github.com/gocql/gocql"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: probe kafka|cassandra HOST:PORT")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "kafka":
		err = probeKafka(os.Args[2])
	case "cassandra":
		err = probeCassandra(os.Args[2])
	default:
		err = fmt.Errorf("unknown server kind %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

// probeKafka asks the cluster for its controller and brokers: that needs a finished KRaft election.
func probeKafka(addr string) error {
	cfg := sarama.NewConfig()
	cfg.Net.DialTimeout = 2 * time.Second
	cfg.Metadata.Retry.Max = 0
	admin, err := sarama.NewClusterAdmin([]string{addr}, cfg)
	if err != nil {
		return fmt.Errorf("connecting to kafka %s: %w", addr, err)
	}
	defer admin.Close()
	brokers, controller, err := admin.DescribeCluster()
	if err != nil {
		return fmt.Errorf("describing kafka cluster: %w", err)
	}
	fmt.Printf("kafka: %d broker(s), controller %d\n", len(brokers), controller)
	return nil
}

// probeCassandra reads the node's release version over CQL protocol v4.
func probeCassandra(addr string) error {
	cluster := gocql.NewCluster(addr)
	cluster.ProtoVersion = 4
	cluster.Timeout = 5 * time.Second
	cluster.ConnectTimeout = 2 * time.Second
	cluster.DisableInitialHostLookup = true
	session, err := cluster.CreateSession()
	if err != nil {
		return fmt.Errorf("connecting to cassandra %s: %w", addr, err)
	}
	defer session.Close()
	var version string
	if err := session.Query("SELECT release_version FROM system.local").Scan(&version); err != nil {
		return fmt.Errorf("querying cassandra: %w", err)
	}
	fmt.Printf("cassandra: release %s\n", version)
	return nil
}
