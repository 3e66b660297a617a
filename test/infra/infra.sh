#!/usr/bin/env bash
# Real Apache Kafka and Apache Cassandra for Switchyard's tests, as plain java processes on 127.0.0.1.
#
#   infra.sh fetch    resolve the server jars from Maven Central into a cache (once)
#   infra.sh up       start both servers on fresh data dirs and wait until each answers a real client
#   infra.sh down     stop what `up` started (by recorded PID only) and remove the data dirs
#   infra.sh stop     stop the servers but keep their data (an outage)
#   infra.sh start    start stopped servers again on the data they had, and wait until ready
#   infra.sh pause    freeze the servers (SIGSTOP): they keep their sockets and answer nothing
#   infra.sh resume   let paused servers go on (SIGCONT)
#   infra.sh status   say what runs
#   infra.sh logs     print the tail of both logs
#
# Only processes whose PIDs this script recorded are ever signalled, and only after their command line
# is checked to carry this work dir, so a reused PID is never touched. See test/infra/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

KAFKA_VERSION=3.9.1
CASSANDRA_VERSION=5.0.6
cache=${SWITCHYARD_INFRA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/infra}
work=${SWITCHYARD_INFRA_DIR:-${TMPDIR:-/tmp}/switchyard-infra}
kafka_port=${KAFKA_PORT:-9092}
kafka_controller_port=${KAFKA_CONTROLLER_PORT:-9093}
kafka_secure_port=${KAFKA_SECURE_PORT:-9094}   # SASL_SSL; its CA is $work/kafka/tls/ca.pem
cassandra_port=${CASSANDRA_PORT:-9042}
cassandra_storage_port=${CASSANDRA_STORAGE_PORT:-7000}
ready_timeout=${INFRA_READY_TIMEOUT:-180}
only=${INFRA_ONLY:-kafka cassandra}   # e.g. INFRA_ONLY=kafka infra.sh up

kafka_lib=$cache/kafka-$KAFKA_VERSION/lib
kafka_jvm=(-Xms512m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true
  "-Dlog4j.configuration=file:$work/kafka/log4j.properties" -cp "$kafka_lib/*")
cassandra_lib=$cache/cassandra-$CASSANDRA_VERSION/lib

log() { printf 'infra: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
wants() { [[ " $only " == *" $1 "* ]]; }

check_tools() {
  command -v keytool >/dev/null || die "keytool not found: it comes with the JDK (Debian: apt-get install openjdk-17-jdk-headless)"
  command -v java >/dev/null || die "java not found: install a Java 17 JDK (Debian: apt-get install openjdk-17-jdk-headless)"
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [[ "$v" == 17 || "$v" == 11 ]] || die "java $v found, but Cassandra 5.0 runs on Java 11 or 17 only: install openjdk-17 and put it first on PATH (or set JAVA_HOME)"
}

# fetch_one NAME POM LIBDIR: copy the runtime dependencies of POM into LIBDIR, stamping it when whole.
fetch_one() {
  local name=$1 pom=$2 lib=$3
  if [[ -f "$lib/.complete" ]]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found: install Maven 3 (Debian: apt-get install maven) to fetch the $name jars"
  log "fetching $name jars into $lib (once; later runs reuse the cache)"
  rm -rf "$lib" && mkdir -p "$lib"
  # Cassandra's POM names a systemPath for an optional profiler jar; Maven warns about it, harmlessly.
  if ! mvn -B -q -f "$pom" org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$lib" >"$lib.fetch.log" 2>&1; then
    tail -n 30 "$lib.fetch.log" >&2
    die "fetching $name jars failed (full log: $lib.fetch.log)"
  fi
  touch "$lib/.complete"
}

cmd_fetch() {
  check_tools
  wants kafka && fetch_one kafka "$here/kafka/pom.xml" "$kafka_lib"
  wants cassandra && fetch_one cassandra "$here/cassandra/pom.xml" "$cassandra_lib"
  return 0
}

pid_alive() { # pid_alive NAME: the recorded process runs and is ours
  local f=$work/$1.pid pid
  [[ -f "$f" ]] || return 1
  pid=$(cat "$f")
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$work/$1" # our data dir is on its command line
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_ready() { # wait_ready NAME PORT LOGLINE PROBEKIND
  local name=$1 port=$2 line=$3 kind=$4 deadline=$((SECONDS + ready_timeout))
  while :; do
    if ! pid_alive "$name"; then
      tail -n 60 "$work/$name.log" >&2 || true
      die "$name exited during start-up (log: $work/$name.log)"
    fi
    if port_open "$port" && grep -qF -- "$line" "$work/$name.log" && "$probe" "$kind" "127.0.0.1:$port" >/dev/null 2>&1; then
      log "$name ready on 127.0.0.1:$port after $((SECONDS - start))s"
      return 0
    fi
    if ((SECONDS > deadline)); then
      tail -n 60 "$work/$name.log" >&2 || true
      "$probe" "$kind" "127.0.0.1:$port" >&2 || true
      die "$name not ready after ${ready_timeout}s (log: $work/$name.log)"
    fi
    sleep 1
  done
}

start_kafka() {
  local dir=$work/kafka
  rm -rf "$dir" && mkdir -p "$dir/data" "$dir/tls"
  make_kafka_certificate "$dir"
  sed -e "s#@DATA@#$dir/data#" -e "s#@PORT@#$kafka_port#g" -e "s#@CPORT@#$kafka_controller_port#g" \
    -e "s#@SPORT@#$kafka_secure_port#g" -e "s#@TLS@#$dir/tls#g" \
    "$here/kafka/server.properties" >"$dir/server.properties"
  cp "$here/kafka/log4j.properties" "$dir/log4j.properties"
  java "${kafka_jvm[@]}" kafka.tools.StorageTool format -t 4L6g3nShT-eMCtK--X86sw \
    -c "$dir/server.properties" --ignore-formatted \
    --add-scram 'SCRAM-SHA-512=[name=switchyard,password=switchyard-secret]' >"$work/kafka-format.log" 2>&1 ||
    { cat "$work/kafka-format.log" >&2; die "formatting Kafka storage failed"; }
  run_kafka
}

# run_kafka starts the broker on the formatted data dir, as up and start both need.
run_kafka() {
  nohup java "${kafka_jvm[@]}" kafka.Kafka "$work/kafka/server.properties" >>"$work/kafka.log" 2>&1 </dev/null &
  echo $! >"$work/kafka.pid"
  local i # until the fork has become java, its command line does not name our dir yet
  for ((i = 0; i < 50; i++)); do pid_alive kafka && break; sleep 0.1; done
}

make_kafka_certificate() {
  local dir=$1
  # A fresh self-signed certificate for 127.0.0.1 per start; clients trust it through ca.pem.
  keytool -genkeypair -alias kafka -keyalg RSA -keysize 2048 -validity 30 -dname CN=127.0.0.1 \
    -ext SAN=IP:127.0.0.1,DNS:localhost -storetype PKCS12 -keystore "$dir/tls/kafka.p12" \
    -storepass test-only -keypass test-only >"$work/kafka-tls.log" 2>&1 &&
    keytool -exportcert -rfc -alias kafka -keystore "$dir/tls/kafka.p12" -storepass test-only \
      -file "$dir/tls/ca.pem" >>"$work/kafka-tls.log" 2>&1 ||
    { cat "$work/kafka-tls.log" >&2; die "making the Kafka test certificate failed (keytool)"; }
}

start_cassandra() {
  local dir=$work/cassandra
  rm -rf "$dir" && mkdir -p "$dir/data" "$dir/logs" "$dir/tmp"
  sed -e "s#@DATA@#$dir/data#g" -e "s#@PORT@#$cassandra_port#g" -e "s#@SPORT@#$cassandra_storage_port#g" \
    "$here/cassandra/cassandra.yaml" >"$dir/cassandra.yaml"
  cp "$here/cassandra/logback.xml" "$dir/logback.xml"
  local opens=() m
  for m in java.base/jdk.internal.misc java.base/sun.nio.ch java.base/java.lang java.base/java.util \
    java.base/java.nio java.base/java.io java.base/jdk.internal.ref java.base/jdk.internal.reflect \
    java.base/jdk.internal.math java.base/jdk.internal.module java.base/jdk.internal.util.jar \
    java.base/java.lang.module java.base/jdk.internal.loader java.base/java.lang.reflect \
    java.base/java.lang.ref jdk.unsupported/sun.misc java.sql/java.sql java.rmi/sun.rmi.registry \
    java.rmi/sun.rmi.server java.management/com.sun.jmx.remote.security \
    java.management.rmi/com.sun.jmx.remote.internal.rmi jdk.management/com.sun.management.internal; do
    opens+=("--add-exports=$m=ALL-UNNAMED" "--add-opens=$m=ALL-UNNAMED")
  done
  # JNA unpacks a native library into java.io.tmpdir, which must allow executing: use our own dir.
  nohup java -Xms1G -Xmx1G -Xss256k -XX:+UseG1GC "-javaagent:$cassandra_lib/jamm-0.4.0.jar" \
    "${opens[@]}" -Djava.net.preferIPv4Stack=true -Dchronicle.analytics.disable=true \
    -Djdk.attach.allowAttachSelf=true -Dio.netty.tryReflectionSetAccessible=true \
    "-Djava.io.tmpdir=$dir/tmp" "-Dcassandra.config=file://$dir/cassandra.yaml" \
    "-Dcassandra.storagedir=$dir/data" "-Dcassandra.logdir=$dir/logs" \
    "-Dlogback.configurationFile=$dir/logback.xml" -Dcassandra-foreground=yes \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.unsafesystem=true \
    -cp "$cassandra_lib/*" org.apache.cassandra.service.CassandraDaemon >>"$work/cassandra.log" 2>&1 </dev/null &
  echo $! >"$work/cassandra.pid"
}

build_probe() {
  probe=$cache/probe/probe
  mkdir -p "$cache/probe"
  (cd "$repo" && go build -o "$probe" ./test/infra/probe) || die "building the readiness probe failed"
}

cmd_up() {
  cmd_fetch
  mkdir -p "$work"
  build_probe
  start=$SECONDS
  if wants kafka; then
    if pid_alive kafka; then log "kafka already running (pid $(cat "$work/kafka.pid"))"
    else
      for p in "$kafka_port" "$kafka_secure_port"; do port_open "$p" && die "port $p is taken by a process this script did not start"; done
      start_kafka
    fi
  fi
  if wants cassandra; then
    if pid_alive cassandra; then log "cassandra already running (pid $(cat "$work/cassandra.pid"))"
    else port_open "$cassandra_port" && die "port $cassandra_port is taken by a process this script did not start"; start_cassandra; fi
  fi
  wants kafka && wait_ready kafka "$kafka_port" "Kafka Server started" kafka
  wants cassandra && wait_ready cassandra "$cassandra_port" "Startup complete" cassandra
  return 0
}

stop_one() {
  local name=$1 pid i
  if ! pid_alive "$name"; then rm -f "$work/$name.pid"; return 0; fi
  pid=$(cat "$work/$name.pid")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do pid_alive "$name" || break; sleep 1; done
  if pid_alive "$name"; then log "$name still running after 30s: KILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 1; fi
  rm -f "$work/$name.pid"
}

cmd_down() {
  [[ -d "$work" ]] || return 0
  wants kafka && { stop_one kafka; rm -rf "$work/kafka"; }
  wants cassandra && { stop_one cassandra; rm -rf "$work/cassandra"; }
  return 0
}

# An outage that keeps the data: the servers come back with their topics, offsets and groups.
cmd_stop() {
  [[ -d "$work" ]] || return 0
  wants kafka && stop_one kafka
  wants cassandra && stop_one cassandra
  return 0
}

cmd_start() {
  if wants kafka && ! pid_alive kafka; then
    [[ -f "$work/kafka/server.properties" ]] || die "kafka was never set up here: run up first"
    port_open "$kafka_port" && die "port $kafka_port is taken by a process this script did not start"
    mv -f "$work/kafka.log" "$work/kafka.log.before-stop" 2>/dev/null || true # ready means this run's log line
    build_probe
    start=$SECONDS
    run_kafka
    wait_ready kafka "$kafka_port" "Kafka Server started" kafka
  fi
  wants cassandra && ! pid_alive cassandra && die "start after stop is implemented for kafka only"
  return 0
}

# A hang rather than an outage (a GC pause, a stuck disk): connections stay open, nothing answers.
cmd_signal() { # cmd_signal STOP|CONT
  local n
  for n in $only; do
    pid_alive "$n" || die "$n is not running"
    kill -"$1" "$(cat "$work/$n.pid")"
  done
}

cmd_status() {
  local n
  for n in $only; do
    if pid_alive "$n"; then echo "$n: running (pid $(cat "$work/$n.pid"))"; else echo "$n: stopped"; fi
  done
}

cmd_logs() {
  local n
  for n in $only; do echo "== $work/$n.log"; tail -n "${LINES:-40}" "$work/$n.log" 2>/dev/null || echo "(none)"; done
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  up) cmd_up ;;
  down) cmd_down ;;
  stop) cmd_stop ;;
  start) cmd_start ;;
  pause) cmd_signal STOP ;;
  resume) cmd_signal CONT ;;
  status) cmd_status ;;
  logs) cmd_logs ;;
  *) echo "usage: $0 fetch|up|down|stop|start|pause|resume|status|logs" >&2; exit 2 ;;
esac
