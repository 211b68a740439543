"""The run directory (RunDir: the one owner of its file names) and Run, a handle on a trained run."""
