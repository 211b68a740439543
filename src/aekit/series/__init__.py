"""The series wing: a long series scored per time step (``run.series``), from a model of its windows."""
