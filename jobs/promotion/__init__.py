"""Promotion: THE system test (one implementation, two invokers) and THE gate orchestration used
by the CLI, the local pipeline and the Lambda handlers."""
