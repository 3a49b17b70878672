"""Deployment: the local no-Docker stack, topic creation, the image health check; the
container images, docker compose and Kubernetes files live beside it (docker/, compose/, k8s/)."""
