"""The MAP's build-time tools: the manifests from app.yaml (manifests.py) and the entrypoint (tools.py)."""
