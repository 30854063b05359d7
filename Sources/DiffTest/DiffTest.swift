// DiffTest module
