"""Training: data loaders, the fast and accurate model families, the trainer, MLflow tracking."""
