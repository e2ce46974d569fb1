"""The Kubernetes backends: manifests, Helm values, images, k3d and existing clusters."""
