#!/usr/bin/env bash
# Prepare the container images the compose files use, on a machine that cannot pull from a
# container registry (podman, root). With a registry at hand you do not need this: `docker
# compose up` pulls debian, prometheus and grafana and builds Odradek itself.
#
#   deploy/podman-images.sh [base] [prometheus] [odradek]     (default: all three)
#
# base        debian:bookworm-slim stand-in: a debootstrap minbase rootfs (python3,
#             python3-venv, ca-certificates) imported as docker.io/library/debian:bookworm-slim,
#             the name deploy/Dockerfile's FROM resolves to. Skipped when the image exists.
# prometheus  prom/prometheus stand-in: Debian's prometheus package on that base, with the
#             official image's entrypoint (/bin/prometheus), user and paths. Skipped when the
#             image exists.
# odradek     `podman build` of deploy/Dockerfile (layers are cached between runs), tagged
#             odradek:latest, the name the compose files use.
#
# Environment: DEBIAN_MIRROR (default: the mirror this machine's apt sources name, else
# http://deb.debian.org/debian), ODRADEK_IMAGE (default odradek:latest).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=docker.io/library/debian:bookworm-slim
PROM_IMAGE=docker.io/prom/prometheus:latest
ODRADEK_IMAGE=${ODRADEK_IMAGE:-odradek:latest}

log() { printf '[podman-images] %s\n' "$*" >&2; }

debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local m
  m=$(grep -hoE '^(URIs:|deb) +[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources \
        /etc/apt/sources.list 2>/dev/null | head -n 1 | awk '{print $2}' || true)
  echo "${m:-http://deb.debian.org/debian}"
}

build_base() {
  if podman image exists "$BASE_IMAGE"; then
    log "$BASE_IMAGE present"
    return
  fi
  command -v debootstrap >/dev/null || { log "debootstrap missing: run deploy/podman-setup.sh"; exit 1; }
  local rootfs mirror
  rootfs=$(mktemp -d /var/tmp/odradek-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' RETURN
  mirror=$(debian_mirror)
  log "debootstrap bookworm from $mirror (about a minute)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
  rm -f "$rootfs.log"
  # Slim like the official image: no docs, man pages or locales now, nor from later installs.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  rm -rf "$rootfs"/usr/share/{man,info}/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/tmp/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias \
    -exec rm -rf {} + 2>/dev/null || true
  tar --numeric-owner -C "$rootfs" -c . \
    | podman import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  log "imported $BASE_IMAGE"
}

build_prometheus() {
  if podman image exists "$PROM_IMAGE"; then
    log "$PROM_IMAGE present"
    return
  fi
  log "building $PROM_IMAGE from Debian's prometheus package"
  # Same entrypoint, default command, user, working dir and volume as the official image,
  # so the compose file's command line means the same to both.
  podman build --pull=never --format docker -t "$PROM_IMAGE" -f - deploy <<'EOF'
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
EXPOSE 9090
VOLUME ["/prometheus"]
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
EOF
}

build_odradek() {
  log "building $ODRADEK_IMAGE from deploy/Dockerfile"
  # Behind a TLS-intercepting proxy pip needs the host's CA bundle: hand it to the build as
  # the optional secret pip-ca (not stored in any layer). Override with PIP_CA_BUNDLE.
  local ca=${PIP_CA_BUNDLE:-${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}
  local secret=()
  [ -r "$ca" ] && secret=(--secret "id=pip-ca,src=$ca")
  local previous
  previous=$(podman image inspect --format '{{.Id}}' "$ODRADEK_IMAGE" 2>/dev/null || true)
  # --format docker keeps the HEALTHCHECK (the OCI image format has no field for it).
  podman build --pull=never --format docker "${secret[@]}" -t "$ODRADEK_IMAGE" \
    -f deploy/Dockerfile .
  # The image the tag left behind (after a source change) is garbage; the build cache is not
  # touched (`podman image prune` would drop the cached dependency layer too).
  if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$ODRADEK_IMAGE")" ]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
  fi
}

targets=("$@")
((${#targets[@]})) || targets=(base prometheus odradek)
for t in "${targets[@]}"; do
  case "$t" in
    base) build_base ;;
    prometheus) build_base; build_prometheus ;;
    odradek) build_base; build_odradek ;;
    *) log "unknown target $t (use base, prometheus, odradek)"; exit 2 ;;
  esac
done
