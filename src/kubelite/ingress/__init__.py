"""Ingress: networking.k8s.io/v1 Ingress served by an asyncio reverse proxy.

`IngressController` (controller.py) watches Ingresses, IngressClasses,
Services, EndpointSlices and Secrets, builds an immutable `RoutingTable`
(routes.py, build.py) and hands it to `IngressProxy` (proxy.py), which serves
HTTP and HTTPS (SNI) on the addresses it was given. `kubelite ingress`
runs both as one API client process; `kubelite server --ingress-http ...`
supervises that process.
"""
