"""Full MNIST, packaged with fastsgd (data files only; see README.md here)."""
