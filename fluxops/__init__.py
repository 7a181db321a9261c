"""fluxops: operate Flux GitOps k3s clusters from one repository."""

__version__ = "0.1.0"
