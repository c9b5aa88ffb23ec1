"""`kubelite up`: a whole cluster on one machine, each node a network namespace.

layout.py names everything a cluster owns on the host from its data directory;
machines.py makes and removes the node "machines" (network namespaces on a
bridge); supervisor.py is the long-lived process that runs the API server and
the agents and answers `kubelite node` and `kubelite down` on a unix socket
(control.py is its client); teardown.py removes what a cluster left, whether its
supervisor is alive or not.
"""
