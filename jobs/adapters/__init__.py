"""The only code that touches the outside: settings, storage, the lake, MLflow tracking, data
capture, source fetching."""
