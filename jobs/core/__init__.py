"""Pure core: schema, data split and version, model, metrics, gate decision, drift statistics,
reference profile, golden rows. No I/O, no MLflow, no boto3."""
