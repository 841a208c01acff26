"""Stand-in for the benchmark only: Lucent imports torchvision for `transforms.Normalize` alone."""
