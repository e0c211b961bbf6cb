#!/usr/bin/env bash
# orbit's main job on its embedded defaults: a local network — a satellite on its
# embedded single-member store (the api process, with the segment loop, repair,
# uptime, audit, gc and accounting processes beside it, all checked by a version
# server) and ten storage nodes, all on
# 127.0.0.1 — then a file uploaded through it and downloaded back, and how to keep
# using it with the uplink.
# Intervals are short: a node killed for good is repaired around within two minutes.
# State lives in ./local.orbit (ORBIT_LOCAL_DIR); run it again and it picks up where
# it was. Ctrl-C stops the network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p satellite -p storagenode -p uplink
BIN="$PWD/target/release"
DIR="${ORBIT_LOCAL_DIR:-$PWD/local.orbit}"
NODES=10
mkdir -p "$DIR/logs"

pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT INT TERM

wait_for() { # file pattern seconds
  for _ in $(seq 1 $(( $3 * 10 ))); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:" >&2; tail -20 "$1" >&2; return 1
}

cat > "$DIR/satellite.toml" <<CONF
replica_id = 1
mode = "fixed"
token = "local"
data_dir = "$DIR/satellite"
status_addr = "127.0.0.1:7777"

[api]
addr = "127.0.0.1:7778"

[storage]
# Every node is on 127.0.0.1: one node per /24 would allow only one.
distinct_networks = false
# The identity the satellite signs order limits and filters with.
identity = "$DIR/satellite/satellite.key"
# Nodes check in every 10 s; one silent for 30 s is offline and its pieces missing.
online_window_s = 30

[loop]
interval_s = 20

[repair]
interval_s = 10

[uptime]
interval_s = 10
stale_s = 15

[audit]
interval_s = 20

[gc]
interval_s = 60

[accounting]
interval_s = 30

# The console: web pages to sign up, make projects, API keys and access grants, and
# see usage. Its mail (the confirmation link) is written to satellite/console-mail/.
[console]
addr = "127.0.0.1:7781"

# Every process checks in with the version server before it starts (and every five
# minutes); it allows this build's version for every process by default.
[version]
url = "http://127.0.0.1:7770"

[version.server]
addr = "127.0.0.1:7770"

[[replica]]
id = 1
store_name = "local"
client_url = "http://127.0.0.1:2379"
peer_url = "http://127.0.0.1:2380"
store_node = true
CONF
"$BIN/satellite" run version --config "$DIR/satellite.toml" > "$DIR/logs/version.out" 2> "$DIR/logs/version.log" &
pids+=($!)
wait_for "$DIR/logs/version.out" "version server on" 30
"$BIN/satellite" run all --config "$DIR/satellite.toml" > "$DIR/logs/satellite.out" 2> "$DIR/logs/satellite.log" &
pids+=($!)
wait_for "$DIR/logs/satellite.out" "API on" 30
SAT_KEY=$(sed -n 's/^satellite .* (key \([0-9a-f]*\))$/\1/p' "$DIR/logs/satellite.out")

for i in $(seq 1 $NODES); do
  node="$DIR/node$i"
  # Nodes set up before the API spoke TLS named it http://; it is https:// now.
  if [ -f "$node/storagenode.toml" ]; then
    sed -i 's|url = "http://127.0.0.1:7778"|url = "https://127.0.0.1:7778"|' "$node/storagenode.toml"
  else
    "$BIN/storagenode" setup --dir "$node" --satellite-url https://127.0.0.1:7778 \
      --satellite-key "$SAT_KEY" --capacity $((2 << 30)) --listen "127.0.0.1:$((7800 + i))" --check-in-s 10 > /dev/null
  fi
  "$BIN/storagenode" run --dir "$node" > "$DIR/logs/node$i.out" 2> "$DIR/logs/node$i.log" &
  pids+=($!)
done
for i in $(seq 1 $NODES); do wait_for "$DIR/logs/node$i.out" "serving pieces" 30; done

# A grant made before the API spoke TLS names http://: make a new one.
if [ ! -f "$DIR/access.tls" ]; then rm -f "$DIR/access"; fi
if [ ! -s "$DIR/access" ]; then
  key=$("$BIN/satellite" apikey create --endpoints http://127.0.0.1:2379 --project local)
  "$BIN/uplink" access create --satellite https://127.0.0.1:7778 --satellite-key "$SAT_KEY" \
    --api-key "$key" --passphrase "${ORBIT_PASSPHRASE:-local passphrase}" > "$DIR/access"
  chmod 600 "$DIR/access"
  touch "$DIR/access.tls"
fi
export ORBIT_ACCESS; ORBIT_ACCESS=$(cat "$DIR/access")

"$BIN/uplink" ls | grep -q "orbit://demo$" || "$BIN/uplink" mb orbit://demo
head -c $((20 << 20)) /dev/urandom > "$DIR/hello.bin"
"$BIN/uplink" cp "$DIR/hello.bin" orbit://demo/hello.bin
"$BIN/uplink" cp orbit://demo/hello.bin "$DIR/hello.back"
cmp "$DIR/hello.bin" "$DIR/hello.back"
echo
echo "A local orbit network runs: a satellite (API http://127.0.0.1:7778, store http://127.0.0.1:2379)"
echo "and $NODES storage nodes. A 20 MiB file went up as orbit://demo/hello.bin and came back identical."
echo
echo "Keep using it from another terminal:"
echo "  export ORBIT_ACCESS=\$(cat $DIR/access)"
echo "  $BIN/uplink ls orbit://demo"
echo "  $BIN/uplink cp ./some-file orbit://demo/"
echo "  $BIN/uplink cp orbit://demo/hello.bin ./copy.bin"
echo "Watch repair: kill a node (its pid is in the list below), and within two minutes"
echo "  ORBIT_ACCESS=\$(cat $DIR/access) $BIN/satellite inspect health --endpoints http://127.0.0.1:2379 --config $DIR/satellite.toml orbit://demo/hello.bin"
echo "shows its pieces rebuilt on other nodes (every process's status: http://127.0.0.1:7777/status)."
echo "Audits: $BIN/satellite inspect nodes --endpoints http://127.0.0.1:2379 shows every node's reputation,"
echo "  $BIN/storagenode status --dir $DIR/node1 one node's own view."
echo "Accounting: $BIN/satellite accounting report --endpoints http://127.0.0.1:2379 --period $(date -u +%Y-%m)"
echo "  prints this month's node payouts and project invoices; $BIN/satellite project show --endpoints"
echo "  http://127.0.0.1:2379 --project local the project's usage and limits."
echo "Console: http://127.0.0.1:7781 — sign up, then open the confirmation link written to"
echo "  $DIR/satellite/console-mail/ (no mail server is configured)."
echo "Node pids: ${pids[*]:2}"
echo "Logs in $DIR/logs. Ctrl-C stops the network; run this again to start it on the same data."
wait
