"""Wire protocols of exec, attach and port-forward, shared by the API server and the
node agent: WebSocket channels (channels.py), SPDY/3.1 framing (spdy.py) and
sessions (session.py), and the server sides of remote commands and port-forward."""
