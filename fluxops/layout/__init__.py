"""The repository model of the Flux tree: clusters, phases, builds, validation, scaffolding, audit."""
