"""kubelite: a small Kubernetes-compatible container orchestrator."""
