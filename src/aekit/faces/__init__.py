"""The faces: the command line, the HTTP API and explorer, the report and the scikit-learn estimators."""
