"""Deployment: the local no-Docker stack, topic creation, and (later) compose and Kubernetes."""
