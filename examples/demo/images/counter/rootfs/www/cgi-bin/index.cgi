#!/bin/sh
# A visit counter kept in the pod's persistent volume: it survives the pod.
# mkdir is atomic, so it serialises the concurrent requests of busybox httpd; a lock
# left by a killed pod is taken over after two seconds.
for _ in $(seq 40); do mkdir /data/.lock 2>/dev/null && break; sleep 0.05; done
count=$(( $(cat /data/count 2>/dev/null || echo 0) + 1 ))
echo "$count" > /data/count.new && mv /data/count.new /data/count
rmdir /data/.lock
printf 'Content-Type: text/plain\r\n\r\n'
echo "$HOSTNAME has counted $count visits"
