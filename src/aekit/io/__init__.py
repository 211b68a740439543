"""Reading and writing users' files: one module per format, atomic writes, a table's named columns."""
