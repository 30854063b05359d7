// Boot module
