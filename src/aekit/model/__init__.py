"""The model: its parts declared without torch (bodies, objectives, ModelConfig), the networks they build, the AutoEncoder."""
