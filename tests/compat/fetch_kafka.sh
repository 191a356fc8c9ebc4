#!/usr/bin/env bash
# Fetch Kafka's command-line tools (org.apache.kafka:kafka-tools and kafka_2.13, whose
# kafka.admin.ConfigCommand is kafka-configs.sh in 4.1) with their runtime dependencies from
# Maven Central into a cache directory, for tests/compat. Idempotent: a cache that is complete
# (its .complete stamp names the same coordinates) is left alone, so a warm run costs nothing.
#
#   tests/compat/fetch_kafka.sh            -> prints the directory holding the jars
#   KAFKA_TOOLS_VERSION=4.1.1 KAFKA_TOOLS_CACHE=/some/dir tests/compat/fetch_kafka.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
version="${KAFKA_TOOLS_VERSION:-4.1.1}"
cache="${KAFKA_TOOLS_CACHE:-$root/.ci/cache/kafka-$version}"
artifacts="org.apache.kafka:kafka-tools:$version org.apache.kafka:kafka_2.13:$version org.slf4j:slf4j-nop:1.7.36"
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
