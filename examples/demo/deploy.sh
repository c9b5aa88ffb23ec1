#!/bin/sh
# The demo behind `make run`, on a cluster that `kubelite up` started: builds the
# demo's images here (no registry needed), loads them into every node, applies
# examples/demo/ and waits until it serves.
set -eu
DATA=${KUBELITE_DATA_DIR:-/var/lib/kubelite}
KUBELITE=${KUBELITE:-.venv/bin/kubelite}
HTTP_PORT=${KUBELITE_HTTP_PORT:-80}
export KUBECONFIG="$DATA/kubeconfig"
here=$(dirname "$0")
images="$DATA/demo-images"
mkdir -p "$images"

"$KUBELITE" image build "$here/images/web" -o "$images/web-1.tar"
"$KUBELITE" image build "$here/images/web" --tag kubelite.local/demo-web:2 \
    --env VERSION=2 --env 'COLOR=#c05621' -o "$images/web-2.tar"
"$KUBELITE" image build "$here/images/counter" -o "$images/counter-1.tar"
for archive in "$images"/*.tar; do
    "$KUBELITE" image load "$archive" --data-dir "$DATA"
done

kubectl apply -f "$here/"
kubectl -n demo rollout status deployment/web --timeout=180s
kubectl -n demo rollout status statefulset/counter --timeout=180s
kubectl -n demo get pods -o wide

cat <<NEXT

The demo is running. Open http://127.0.0.1:$HTTP_PORT/ (the web Deployment; reload to
see other pods and nodes answer) and http://127.0.0.1:$HTTP_PORT/counter/ (a StatefulSet
whose count lives in a PersistentVolumeClaim).

Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl -n demo get pods -o wide
  kubectl -n demo scale deployment web --replicas=5
  kubectl -n demo set image deployment/web web=kubelite.local/demo-web:2   # a rolling update
  kubectl -n demo rollout undo deployment/web
  kubectl -n demo delete pod counter-0          # the count survives
  $KUBELITE node stop node-2                     # and watch the web pods move (a
                                                 # counter pod waits: its data is there)
  $KUBELITE node start node-2
  $KUBELITE status
  $KUBELITE down                                 # removes everything (--purge: the data too)
NEXT
