"""NASNet launcher: train a genotype (NASNet-A by default) on CIFAR-10 or scikit-learn digits."""
