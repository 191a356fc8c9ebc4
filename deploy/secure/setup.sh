#!/bin/sh
# Makes what deploy/docker-compose.secure.yml mounts, in deploy/secure/generated/ (never
# committed): a CA, a certificate per node, random passwords, the nodes' configuration and
# the client properties files. Run it once from the repository root:
#
#   sh deploy/secure/setup.sh            # or: sh deploy/secure/setup.sh <output dir>
#
# The CA's private key stays in the output directory: keep it, or delete it once the node
# certificates are made (docs/security.md, "The secured compose cluster"). Re-running the
# script keeps what exists and makes only what is missing.
set -eu

OUT=${1:-deploy/secure/generated}
DAYS=${CERT_DAYS:-825}
mkdir -p "$OUT"
cd "$OUT"
umask 077

# --- certificates ---------------------------------------------------------------------
if [ ! -f ca.key ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout ca.key -out ca.pem -days "$DAYS" -subj "/CN=Odradek compose CA" 2>/dev/null
fi
for node in node1 node2 node3; do
  [ -f "$node.pem" ] && continue
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$node.key" -out "$node.csr" -subj "/CN=$node" 2>/dev/null
  # The names clients and the other nodes reach this node by: its compose host name,
  # and localhost for clients on the host (the published ports).
  printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' \
    "$node" > "$node.ext"
  openssl x509 -req -in "$node.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -out "$node.crt" -days "$DAYS" -extfile "$node.ext" 2>/dev/null
  # The node's key store: its key and certificate in one PEM file (ssl.keystore.location).
  cat "$node.key" "$node.crt" > "$node.pem"
  rm -f "$node.csr" "$node.ext"
done

# --- passwords ------------------------------------------------------------------------
secret() { [ -f "$1" ] || openssl rand -hex 16 > "$1"; cat "$1"; }
BROKER_PW=$(secret broker.password)
ADMIN_PW=$(secret admin.password)
APP_PW=$(secret app.password)

# --- the nodes' configuration (mounted as /etc/odradek/node.yaml) ------------------------
cat > node.yaml <<EOF
# Made by deploy/secure/setup.sh. Per node, deploy/docker-compose.secure.yml sets node.id,
# advertised.listeners and ssl.keystore.location through ODRADEK_* variables.
node.id: 1
data.dir: /var/lib/odradek
listeners: INTERNAL://0.0.0.0:19092,EXTERNAL://0.0.0.0:9092
controller.listener: 0.0.0.0:9093
metrics.listener: 0.0.0.0:9100
# INTERNAL: replication, the brokers' own requests and admin tools inside the network;
# EXTERNAL: clients on the host; CONTROLLER: Raft and broker registration (mutual TLS).
listener.security.protocol.map: INTERNAL:SASL_SSL,EXTERNAL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name: INTERNAL
sasl.mechanism.inter.broker.protocol: PLAIN
sasl.enabled.mechanisms: SCRAM-SHA-256,SCRAM-SHA-512
listener.name.internal.sasl.enabled.mechanisms: PLAIN
listener.name.internal.plain.sasl.jaas.config: >-
  org.apache.kafka.common.security.plain.PlainLoginModule required
  username="broker" password="$BROKER_PW"
  user_broker="$BROKER_PW" user_admin="$ADMIN_PW";
ssl.truststore.location: /etc/odradek/certs/ca.pem
authorizer.class.name: org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users: User:broker;User:admin
EOF

# --- clients --------------------------------------------------------------------------
# admin: PLAIN on INTERNAL, inside the compose network (the setup service uses it).
cat > admin.properties <<EOF
security.protocol=SASL_SSL
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$ADMIN_PW";
ssl.truststore.type=PEM
ssl.truststore.location=/etc/odradek/certs/ca.pem
EOF
# app: a SCRAM-SHA-512 user for clients on the host (EXTERNAL, localhost:9092-9094).
cat > app.properties <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="app" password="$APP_PW";
ssl.truststore.type=PEM
ssl.truststore.location=$(pwd)/ca.pem
EOF

# The container runs as uid 10001 (odradek): it must read the keys and the configuration.
# They stay private to that user and root on the host.
chmod 0600 ./*.key ca.key ./*.password admin.properties app.properties
chmod 0644 ca.pem ./*.crt
inside="node1.pem node2.pem node3.pem node.yaml admin.properties app.password"
if [ "$(id -u)" = 0 ]; then
  chown 10001:10001 $inside
  chmod 0600 $inside
else
  chmod 0644 $inside
  echo "setup.sh: not root, so the node keys in $OUT are readable by every local user;" \
       "run it as root to give them to the container's user (uid 10001) only" >&2
fi
echo "made $OUT: CA, node1-3 certificates, node.yaml, admin.properties, app.properties"
