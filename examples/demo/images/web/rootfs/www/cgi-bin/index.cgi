#!/bin/sh
# Every page says who served it: the pod, its node and IP (downward API), the image's
# version, a message from a ConfigMap and a value from a Secret.
message=$(cat /config/message 2>/dev/null || echo "(no ConfigMap mounted)")
printf 'Content-Type: text/html\r\n\r\n'
cat <<PAGE
<!doctype html>
<html><head><title>kubelite demo</title></head>
<body style="font-family: sans-serif; border-top: 12px solid $COLOR; padding: 1em">
<h1>Hello from kubelite</h1>
<p>$message</p>
<table>
<tr><td>pod</td><td><b>$POD_NAME</b></td></tr>
<tr><td>node</td><td><b>$NODE_NAME</b></td></tr>
<tr><td>pod IP</td><td>$POD_IP</td></tr>
<tr><td>version</td><td>$VERSION</td></tr>
<tr><td>secret</td><td>${DEMO_TOKEN:+set, ${#DEMO_TOKEN} characters}</td></tr>
</table>
</body></html>
PAGE
