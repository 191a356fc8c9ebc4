#!/usr/bin/env bash
# Fetch Kafka's command-line tools (org.apache.kafka:kafka-tools and kafka_2.13, whose
# kafka.admin.ConfigCommand is kafka-configs.sh in 4.1) with their runtime dependencies from
# Maven Central into a cache directory, for tests/compat. Idempotent: a cache that is complete
# (its .complete stamp names the same coordinates) is left alone, so a warm run costs nothing.
#
# The first argument names a set of jars, each cached in its own directory:
#   tools    (default) the CLI tools: tests/compat/test_kafka_cli.py
#   connect  Kafka Connect's runtime and the FileStream connectors: tests/compat/test_connect.py
#   streams  Kafka Streams and the Java client: tests/compat/test_streams.py
#   broker   the broker and its storage tool (kafka_2.13: kafka.Kafka, kafka.tools.StorageTool)
#            with log4j2 behind slf4j, so a broker's log says why it stopped:
#            tests/bench/kafka_peer.py (make bench --peer kafka)
#
#   tests/compat/fetch_kafka.sh [SET]      -> prints the directory holding the jars
#   KAFKA_TOOLS_VERSION=4.1.1 KAFKA_TOOLS_CACHE=/some/dir tests/compat/fetch_kafka.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
version="${KAFKA_TOOLS_VERSION:-4.1.1}"
set_name="${1:-tools}"
case "$set_name" in
  tools)
    artifacts="org.apache.kafka:kafka-tools:$version org.apache.kafka:kafka_2.13:$version org.slf4j:slf4j-nop:1.7.36"
    default_cache="$root/.ci/cache/kafka-$version" ;;
  connect)
    artifacts="org.apache.kafka:connect-runtime:$version org.apache.kafka:connect-file:$version org.apache.kafka:connect-json:$version org.slf4j:slf4j-simple:1.7.36"
    default_cache="$root/.ci/cache/kafka-connect-$version" ;;
  streams)
    artifacts="org.apache.kafka:kafka-streams:$version org.apache.kafka:kafka-clients:$version org.slf4j:slf4j-nop:1.7.36"
    default_cache="$root/.ci/cache/kafka-streams-$version" ;;
  broker)
    artifacts="org.apache.kafka:kafka_2.13:$version org.apache.logging.log4j:log4j-slf4j-impl:2.24.3"
    default_cache="$root/.ci/cache/kafka-broker-$version" ;;
  *) echo "unknown jar set '$set_name': expected tools, connect, streams or broker" >&2; exit 2 ;;
esac
if [[ "$set_name" == tools ]]; then
  cache="${KAFKA_TOOLS_CACHE:-$default_cache}"
else
  cache="$default_cache"
fi
stamp="$cache/.complete"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$artifacts" ]]; then
  echo "$cache/lib"
  exit 0
fi
command -v mvn >/dev/null || { echo "mvn is not installed (apt-get install maven)" >&2; exit 1; }
rm -rf "$cache/lib" "$stamp"
mkdir -p "$cache"
deps=""
for a in $artifacts; do
  IFS=: read -r g n v <<<"$a"
  deps+="<dependency><groupId>$g</groupId><artifactId>$n</artifactId><version>$v</version></dependency>"
done
cat >"$cache/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>odradek.compat</groupId><artifactId>kafka-tools-cache</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>$deps</dependencies>
</project>
POM
mvn -B -q -Dstyle.color=never -f "$cache/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$cache/lib" >&2
echo "$artifacts" >"$stamp"
echo "$cache/lib"
