#!/usr/bin/env bash
# What the certificate API's worst requests cost the controller in CPU (issue 16, finding 5):
# the largest request allowed, the review's 2 MiB of items, and 20 large requests in a row.
# Needs the test environment up (cargo xtask testenv up) and a debug build (cargo build).
set -euo pipefail
cd "$(dirname "$0")/../.."
eval "$(cargo xtask testenv env)"
K=~/.cache/seal-dev/kubernetes-v1.37.2/kubectl
NS=measure-http-$RANDOM
$K create namespace $NS >/dev/null
W=$(mktemp -d)
./target/debug/seal-controller --key-namespace $NS --namespaces $NS --leader-elect=false \
  --listen-addr 127.0.0.1:18080 --listen-metrics-addr 127.0.0.1:18081 --key-size 4096 \
  --rate-limit 1000 --rate-limit-burst 1000 2> $W/log &
PID=$!
trap 'kill $PID 2>/dev/null; $K delete namespace $NS --wait=false >/dev/null; rm -rf $W' EXIT
for i in $(seq 1 120); do curl -sf http://127.0.0.1:18080/v1/cert.pem -o $W/cert.pem && break; sleep 1; done
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
TICK=$(getconf CLK_TCK)
# The largest request allowed: 256 items.
{ echo "apiVersion: v1"; echo "kind: Secret"; echo "metadata: {name: big, namespace: $NS}"; echo "stringData:";
  for i in $(seq 0 255); do echo "  k$i: v$i"; done; } > $W/big.yaml
./target/debug/seal --cert $W/cert.pem --format json < $W/big.yaml > $W/big.json
# The review's attack shape: 2 MiB of items (refused now at the body limit or the item limit).
python3 - "$W" <<'PY'
import json,sys
w=sys.argv[1]
big=json.load(open(w+'/big.json'))
item=next(iter(big['spec']['encryptedData'].values()))
n=int((2*1024*1024)//(len(item)+12)*0.97)
big['spec']['encryptedData']={f'x{i}':item for i in range(n)}
body=json.dumps(big)
open(w+'/attack.json','w').write(body)
print(f"attack body: {len(body)} bytes, {n} items", file=sys.stderr)
PY
measure() { # name file count
  local before=$(cpu) codes=""
  for i in $(seq 1 $3); do codes+="$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary @$2 http://127.0.0.1:18080/v1/verify) "; done
  local after=$(cpu)
  echo "$1: $3 request(s), answers [$codes], controller CPU $(echo "scale=2; ($after-$before)/$TICK" | bc) s"
}
measure "largest allowed (256 items, RSA-4096)" $W/big.json 1
measure "2 MiB of items" $W/attack.json 1
measure "largest allowed, 20 in a row" $W/big.json 20
