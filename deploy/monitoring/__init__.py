"""Monitoring: the alerting rules (rules.yml, one source) and their Kubernetes form."""
