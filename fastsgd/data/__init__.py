"""The bundled MNIST sample (data files only)."""
