"""Training: the SageMaker script-mode job and its local launcher."""
