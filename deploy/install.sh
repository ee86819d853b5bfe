#!/usr/bin/env bash
# Installs a specwatch station from this checkout: the daemon, its models, the ONNX Runtime
# library, the config, the systemd unit with its account and udev rules, and the Prometheus and
# Grafana files. Safe to run again: files are replaced with the same content, an existing config is
# never overwritten (a different one is put beside it as specwatch.toml.new), and a Prometheus
# config it replaces is kept once as prometheus.yml.before-specwatch.
#
# Installed layout (PREFIX defaults to /usr):
#   PREFIX/bin/specwatch                          the daemon
#   PREFIX/share/specwatch/models/                NAME.onnx + NAME.json (model card) pairs
#   PREFIX/lib/specwatch/libonnxruntime.so        ONNX Runtime (+ its provider libraries, if any)
#   PREFIX/share/specwatch/{grafana,prometheus}/  dashboard, provisioning, scrape config, rules
#   PREFIX/share/doc/specwatch/                   deploy.md, metrics.md
#   /etc/specwatch/specwatch.toml                 station config
#   /etc/systemd/system/specwatch.service         the unit (+ specwatch.service.d/backoff.conf on systemd >= 254)
#   /etc/sysusers.d/specwatch.conf                user and group "specwatch"
#   /etc/udev/rules.d/60-specwatch-sdr.rules      USB radios to group plugdev
#   /var/lib/specwatch/                           state; made by systemd (StateDirectory=)
#
# With DESTDIR=/some/dir everything is staged under that folder instead of /, root is not
# needed, and nothing on the running system is touched (no account, udev or systemctl actions).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: deploy/install.sh [options]
  --prefix DIR        installation prefix (default /usr)
  --binary FILE       specwatch binary (default: target/release/specwatch of this checkout,
                      or $CARGO_TARGET_DIR/release/specwatch)
  --models DIR        folder with NAME.onnx + NAME.json model pairs (default: models/)
  --config FILE       station config, installed as /etc/specwatch/specwatch.toml; needed on
                      the first installation (see flowgraphs/)
  --onnxruntime FILE  libonnxruntime.so* to install (default: $ORT_DYLIB_PATH, then the
                      onnxruntime wheel in the scripts/setup environment)
  --grafana           also provision the dashboard and datasource into /etc/grafana/provisioning
  --prometheus        also install the Prometheus config as /etc/prometheus/prometheus.yml
                      (the previous one is kept as prometheus.yml.before-specwatch)
  --enable            enable and (re)start specwatch.service afterwards
  -h, --help          this text
environment:
  DESTDIR             stage the installation under this folder (no root needed, no system changes)
EOF
}

die() {
  echo "install.sh: error: $*" >&2
  exit 1
}

note() {
  echo "install.sh: $*"
}

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix=/usr
binary=""
models="$repo/models"
config=""
onnxruntime=""
with_grafana=0
with_prometheus=0
enable=0

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix | --binary | --models | --config | --onnxruntime)
      [ $# -ge 2 ] || die "$1 needs a value"
      case "$1" in
        --prefix) prefix="$2" ;;
        --binary) binary="$2" ;;
        --models) models="$2" ;;
        --config) config="$2" ;;
        --onnxruntime) onnxruntime="$2" ;;
      esac
      shift 2
      ;;
    --grafana) with_grafana=1; shift ;;
    --prometheus) with_prometheus=1; shift ;;
    --enable) enable=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
  esac
done

destdir="${DESTDIR:-}"
destdir="${destdir%/}"
if [ -n "$destdir" ]; then
  mkdir -p "$destdir"
  destdir="$(cd "$destdir" && pwd)"
elif [ "$(id -u)" -ne 0 ]; then
  die "installing into / needs root (run with sudo), or set DESTDIR to stage into a folder"
fi
case "$prefix" in
  /*) prefix="${prefix%/}" ;;
  *) die "--prefix must be an absolute path, got '$prefix'" ;;
esac
[ -n "$prefix" ] || prefix=/usr
[ "$enable" -eq 0 ] || [ -z "$destdir" ] || die "--enable cannot be used with DESTDIR (nothing is installed on this system)"

bindir="$prefix/bin"
datadir="$prefix/share/specwatch"
libdir="$prefix/lib/specwatch"
docdir="$prefix/share/doc/specwatch"
confdir=/etc/specwatch
unitdir=/etc/systemd/system

# --- Inputs: check everything before installing anything.

shipped=(systemd/specwatch.service systemd/backoff.conf systemd/specwatch.sysusers
  systemd/60-specwatch-sdr.rules deploy/README.md deploy/metrics.md
  deploy/prometheus/prometheus.yml deploy/prometheus/rules.yml
  deploy/grafana/dashboards/specwatch.json deploy/grafana/provisioning/datasources/specwatch.yaml
  deploy/grafana/provisioning/dashboards/specwatch.yaml)
for file in "${shipped[@]}"; do
  [ -f "$repo/$file" ] || die "$repo/$file is missing: run install.sh from a complete checkout"
done

if [ -z "$binary" ]; then
  for candidate in "${CARGO_TARGET_DIR:-$repo/target}/release/specwatch" "$repo/target/release/specwatch"; do
    if [ -x "$candidate" ]; then
      binary="$candidate"
      break
    fi
  done
  [ -n "$binary" ] || die "no specwatch binary found at ${CARGO_TARGET_DIR:-$repo/target}/release/specwatch; build it (cargo build --release --bin specwatch) or pass --binary FILE"
fi
if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
  die "--binary '$binary' is not an executable file"
fi

[ -d "$models" ] || die "--models '$models' is not a folder (it should hold NAME.onnx + NAME.json pairs)"
model_files=()
for onnx in "$models"/*.onnx; do
  [ -e "$onnx" ] || continue
  card="${onnx%.onnx}.json"
  [ -f "$card" ] || die "model '$onnx' has no model card '$card'; the daemon refuses models without one"
  model_files+=("$onnx" "$card")
done
[ ${#model_files[@]} -gt 0 ] || die "no models (NAME.onnx with NAME.json) in '$models'; train and export them (specwatch-train) or pass --models DIR"

if [ -n "$config" ]; then
  [ -f "$config" ] || die "--config '$config' is not a file"
elif [ ! -f "$destdir$confdir/specwatch.toml" ]; then
  available="$(find "$repo/flowgraphs" -maxdepth 1 -name '*.toml' -printf 'flowgraphs/%f ' 2>/dev/null || true)"
  die "no station config installed yet at $destdir$confdir/specwatch.toml: pass --config FILE${available:+ (in this checkout: $available)}"
fi

find_onnxruntime() {
  if [ -n "${ORT_DYLIB_PATH:-}" ]; then
    echo "$ORT_DYLIB_PATH"
    return
  fi
  local homes=() home lib
  [ -n "${SPECWATCH_CACHE:-}" ] && homes+=("$SPECWATCH_CACHE")
  [ -n "${HOME:-}" ] && homes+=("$HOME/.cache/specwatch")
  if [ -n "${SUDO_USER:-}" ]; then
    home="$(getent passwd "$SUDO_USER" | cut -d: -f6 || true)"
    [ -n "$home" ] && homes+=("$home/.cache/specwatch")
  fi
  for home in "${homes[@]}"; do
    for lib in "$home"/venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*; do
      if [ -f "$lib" ]; then
        echo "$lib"
        return
      fi
    done
  done
}
if [ -z "$onnxruntime" ]; then
  onnxruntime="$(find_onnxruntime)"
  [ -n "$onnxruntime" ] || die "no ONNX Runtime library found (ORT_DYLIB_PATH unset, no onnxruntime wheel under \$SPECWATCH_CACHE or ~/.cache/specwatch/venv); run scripts/setup or pass --onnxruntime FILE"
fi
[ -f "$onnxruntime" ] || die "--onnxruntime '$onnxruntime' is not a file"
case "$(basename "$onnxruntime")" in
  libonnxruntime.so*) ;;
  *) die "--onnxruntime '$onnxruntime' is not a libonnxruntime.so* library" ;;
esac

systemd_version="$(systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 }' || true)"

# --- Installing.

# put MODE SOURCE TARGET: installs SOURCE as DESTDIR/TARGET, creating folders.
put() {
  install -D -m "$1" "$2" "$destdir$3"
  note "installed $destdir$3"
}

# put_text MODE TARGET: installs standard input as DESTDIR/TARGET.
put_text() {
  local tmp
  tmp="$(mktemp)"
  cat >"$tmp"
  install -D -m "$1" "$tmp" "$destdir$2"
  rm -f "$tmp"
  note "installed $destdir$2"
}

# Paths inside the shipped files are those of PREFIX=/usr; rewrite them for another prefix.
relocate() {
  sed -e "s|/usr/bin/specwatch|$bindir/specwatch|g" \
    -e "s|/usr/share/specwatch/|$datadir/|g" \
    -e "s|/usr/share/doc/specwatch/|$docdir/|g" \
    -e "s|/usr/lib/specwatch/|$libdir/|g"
}

put 0755 "$binary" "$bindir/specwatch"

for file in "${model_files[@]}"; do
  put 0644 "$file" "$datadir/models/$(basename "$file")"
done

put 0644 "$onnxruntime" "$libdir/libonnxruntime.so"
# The GPU wheel keeps its execution providers beside the runtime; ONNX Runtime looks for them there.
for provider in "$(dirname "$onnxruntime")"/libonnxruntime_providers_*.so; do
  [ -f "$provider" ] || continue
  put 0644 "$provider" "$libdir/$(basename "$provider")"
done

if [ -n "$config" ]; then
  target="$destdir$confdir/specwatch.toml"
  if [ ! -f "$target" ]; then
    put 0644 "$config" "$confdir/specwatch.toml"
  elif cmp -s "$config" "$target"; then
    note "kept $target (unchanged)"
  else
    put 0644 "$config" "$confdir/specwatch.toml.new"
    note "kept the existing $target; the new config is beside it as specwatch.toml.new — merge it by hand"
  fi
fi

relocate <"$repo/systemd/specwatch.service" | put_text 0644 "$unitdir/specwatch.service"
if [ -n "$systemd_version" ] && [ "$systemd_version" -ge 254 ] 2>/dev/null; then
  put 0644 "$repo/systemd/backoff.conf" "$unitdir/specwatch.service.d/backoff.conf"
else
  rm -f "$destdir$unitdir/specwatch.service.d/backoff.conf"
  note "systemd ${systemd_version:-(not found)} is older than 254: restarts keep the fixed RestartSec= delay (no backoff drop-in)"
fi
put 0644 "$repo/systemd/specwatch.sysusers" /etc/sysusers.d/specwatch.conf
put 0644 "$repo/systemd/60-specwatch-sdr.rules" /etc/udev/rules.d/60-specwatch-sdr.rules

put 0644 "$repo/deploy/README.md" "$docdir/deploy.md"
put 0644 "$repo/deploy/metrics.md" "$docdir/metrics.md"

put 0644 "$repo/deploy/prometheus/prometheus.yml" "$datadir/prometheus/prometheus.yml"
put 0644 "$repo/deploy/prometheus/rules.yml" "$datadir/prometheus/rules.yml"
put 0644 "$repo/deploy/grafana/dashboards/specwatch.json" "$datadir/grafana/dashboards/specwatch.json"
put 0644 "$repo/deploy/grafana/provisioning/datasources/specwatch.yaml" "$datadir/grafana/provisioning/datasources/specwatch.yaml"
relocate <"$repo/deploy/grafana/provisioning/dashboards/specwatch.yaml" |
  put_text 0644 "$datadir/grafana/provisioning/dashboards/specwatch.yaml"

if [ "$with_grafana" -eq 1 ]; then
  put 0644 "$repo/deploy/grafana/provisioning/datasources/specwatch.yaml" /etc/grafana/provisioning/datasources/specwatch.yaml
  relocate <"$repo/deploy/grafana/provisioning/dashboards/specwatch.yaml" |
    put_text 0644 /etc/grafana/provisioning/dashboards/specwatch.yaml
fi

if [ "$with_prometheus" -eq 1 ]; then
  target="$destdir/etc/prometheus/prometheus.yml"
  backup="$target.before-specwatch"
  if [ -f "$target" ] && [ ! -e "$backup" ] && ! grep -q "^  - job_name: specwatch$" "$target"; then
    cp -p "$target" "$backup"
    note "kept the previous Prometheus config as $backup"
  fi
  sed -e "s|^  - rules.yml$|  - $datadir/prometheus/rules.yml|" "$repo/deploy/prometheus/prometheus.yml" |
    put_text 0644 /etc/prometheus/prometheus.yml
fi

# --- Activating (only on the running system).

if [ -n "$destdir" ]; then
  note "staged under $destdir; on the target run: systemd-sysusers, udevadm control --reload-rules, systemctl daemon-reload"
  exit 0
fi

if command -v systemd-sysusers >/dev/null 2>&1; then
  systemd-sysusers /etc/sysusers.d/specwatch.conf
  note "account 'specwatch' is in place"
else
  die "systemd-sysusers not found: create the system user and group 'specwatch' (member of plugdev) by hand"
fi
if command -v udevadm >/dev/null 2>&1 && [ -d /run/udev ]; then
  udevadm control --reload-rules
  udevadm trigger --subsystem-match=usb --action=change
  note "udev rules reloaded"
fi
if [ "$with_prometheus" -eq 1 ] && command -v promtool >/dev/null 2>&1; then
  promtool check config /etc/prometheus/prometheus.yml >/dev/null || die "promtool rejects /etc/prometheus/prometheus.yml"
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  [ "$with_prometheus" -eq 0 ] || systemctl try-reload-or-restart prometheus.service
  [ "$with_grafana" -eq 0 ] || systemctl try-restart grafana-server.service
  if [ "$enable" -eq 1 ]; then
    systemctl enable specwatch.service
    systemctl restart specwatch.service
    note "specwatch.service enabled and started; follow it with: journalctl -fu specwatch"
  else
    note "start it with: systemctl enable --now specwatch"
  fi
else
  [ "$enable" -eq 0 ] || die "systemd is not running here, so specwatch.service cannot be enabled"
  note "systemd is not running here: units are installed but nothing was reloaded"
fi
